//! Capabilities: the OCI sets turned into bit masks against what the host's bounding set
//! offers, and their application in the container process.
//!
//! A capability the host's bounding set lacks (here, for example, `CAP_SYS_RESOURCE`) can never
//! be gained, so asking for it would only fail the container: such capabilities are left out
//! quietly, as a privileged container gets "everything the host has".

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::error::{ChildFailure, Step};

/// The kernel's number of an OCI capability.
pub fn number(capability: Capability) -> u32 {
    match capability {
        Capability::Chown => 0,
        Capability::DacOverride => 1,
        Capability::DacReadSearch => 2,
        Capability::Fowner => 3,
        Capability::Fsetid => 4,
        Capability::Kill => 5,
        Capability::Setgid => 6,
        Capability::Setuid => 7,
        Capability::Setpcap => 8,
        Capability::LinuxImmutable => 9,
        Capability::NetBindService => 10,
        Capability::NetBroadcast => 11,
        Capability::NetAdmin => 12,
        Capability::NetRaw => 13,
        Capability::IpcLock => 14,
        Capability::IpcOwner => 15,
        Capability::SysModule => 16,
        Capability::SysRawio => 17,
        Capability::SysChroot => 18,
        Capability::SysPtrace => 19,
        Capability::SysPacct => 20,
        Capability::SysAdmin => 21,
        Capability::SysBoot => 22,
        Capability::SysNice => 23,
        Capability::SysResource => 24,
        Capability::SysTime => 25,
        Capability::SysTtyConfig => 26,
        Capability::Mknod => 27,
        Capability::Lease => 28,
        Capability::AuditWrite => 29,
        Capability::AuditControl => 30,
        Capability::Setfcap => 31,
        Capability::MacOverride => 32,
        Capability::MacAdmin => 33,
        Capability::Syslog => 34,
        Capability::WakeAlarm => 35,
        Capability::BlockSuspend => 36,
        Capability::AuditRead => 37,
        Capability::Perfmon => 38,
        Capability::Bpf => 39,
        Capability::CheckpointRestore => 40,
    }
}

/// Kernel names of the capabilities, indexed by number.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The kernel name of capability `number` (`capability 41` for one newer than this table).
pub fn name(number: u32) -> String {
    NAMES
        .get(number as usize)
        .map_or_else(|| format!("capability {number}"), |name| (*name).to_owned())
}

/// The capabilities in the calling thread's bounding set, as a mask (bit n = capability n).
pub fn host_bounding_set() -> u64 {
    let mut mask = 0;
    for cap in 0..64u32 {
        let set = CapabilitySet::from_bits_retain(1 << cap);
        match rustix::thread::capability_is_in_bounding_set(set) {
            Ok(true) => mask |= 1 << cap,
            Ok(false) => {}
            // Past the kernel's last capability the query fails (EINVAL): stop there.
            Err(_) => break,
        }
    }
    mask
}

/// Every capability the kernel knows, as a mask.
pub fn kernel_capabilities() -> u64 {
    let mut mask = 0;
    for cap in 0..64u32 {
        let set = CapabilitySet::from_bits_retain(1 << cap);
        // Past the kernel's last capability the query fails (EINVAL).
        if rustix::thread::capability_is_in_bounding_set(set).is_err() {
            break;
        }
        mask |= 1 << cap;
    }
    mask
}

/// The capability state the container process takes on, as masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityPlan {
    /// Capabilities to drop from the bounding set (host's set minus the spec's).
    pub drop_bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

impl CapabilityPlan {
    /// The plan for `spec` on a host whose bounding set is `host_bounding`.
    pub fn new(spec: &LinuxCapabilities, host_bounding: u64) -> CapabilityPlan {
        let mask = |set: &Option<Capabilities>| -> u64 {
            set.iter()
                .flatten()
                .fold(0u64, |mask, cap| mask | 1 << number(*cap))
                & host_bounding
        };
        let bounding = mask(spec.bounding());
        CapabilityPlan {
            drop_bounding: host_bounding & !bounding,
            effective: mask(spec.effective()),
            permitted: mask(spec.permitted()),
            inheritable: mask(spec.inheritable()),
            ambient: mask(spec.ambient()),
        }
    }

    /// For a process that joins a user namespace before step 1: joining refills its bounding
    /// set with every capability (valid inside that namespace only), so step 1 must drop all
    /// it does not keep, not only what the host's set (`host_bounding`) had.
    pub fn after_user_namespace_join(&mut self, host_bounding: u64) {
        let kept = host_bounding & !self.drop_bounding;
        self.drop_bounding = kernel_capabilities() & !kept;
    }

    /// Step 1, while still root with every capability: shrinks the bounding set.
    pub fn drop_bounding_set(&self) -> Result<(), ChildFailure> {
        for cap in bits(self.drop_bounding) {
            rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
                1 << cap,
            ))
            .map_err(ChildFailure::at(Step::BoundingSet, cap as usize))?;
        }
        Ok(())
    }

    /// Step 2, after the switch to the container's user (made with keep-caps): sets the
    /// effective, permitted and inheritable sets, then raises the ambient ones.
    pub fn apply(&self) -> Result<(), ChildFailure> {
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: CapabilitySet::from_bits_retain(self.effective),
                permitted: CapabilitySet::from_bits_retain(self.permitted),
                inheritable: CapabilitySet::from_bits_retain(self.inheritable),
            },
        )
        .map_err(ChildFailure::at(Step::Capabilities, 0))?;
        rustix::thread::clear_ambient_capability_set()
            .map_err(ChildFailure::at(Step::Ambient, 0))?;
        for cap in bits(self.ambient) {
            rustix::thread::configure_capability_in_ambient_set(
                CapabilitySet::from_bits_retain(1 << cap),
                true,
            )
            .map_err(ChildFailure::at(Step::Ambient, cap as usize))?;
        }
        Ok(())
    }
}

/// The numbers of the bits set in `mask`.
fn bits(mask: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |bit| mask & (1 << bit) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd's default set.
    const DEFAULT: [Capability; 14] = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ];

    #[test]
    fn the_default_set_is_containerds_mask() {
        let set: Capabilities = DEFAULT.into_iter().collect();
        let mut spec = LinuxCapabilities::default();
        spec.set_bounding(Some(set.clone()))
            .set_effective(Some(set.clone()))
            .set_permitted(Some(set))
            .set_inheritable(None)
            .set_ambient(None);
        let host = (1u64 << 41) - 1;
        let plan = CapabilityPlan::new(&spec, host);
        assert_eq!(plan.effective, 0xa80425fb);
        assert_eq!(plan.permitted, 0xa80425fb);
        assert_eq!(plan.inheritable, 0);
        assert_eq!(plan.ambient, 0);
        assert_eq!(plan.drop_bounding, host & !0xa80425fb);
    }

    #[test]
    fn capabilities_the_host_lacks_are_left_out() {
        let mut spec = LinuxCapabilities::default();
        let set: Capabilities = [Capability::SysResource, Capability::Kill]
            .into_iter()
            .collect();
        spec.set_bounding(Some(set.clone()))
            .set_effective(Some(set.clone()))
            .set_permitted(Some(set.clone()))
            .set_ambient(Some(set))
            .set_inheritable(None);
        let host = ((1u64 << 41) - 1) & !(1 << 24);
        let plan = CapabilityPlan::new(&spec, host);
        assert_eq!(plan.effective, 1 << 5);
        assert_eq!(plan.ambient, 1 << 5);
        assert_eq!(
            plan.drop_bounding & (1 << 24),
            0,
            "cannot drop what is absent"
        );
        assert_ne!(plan.drop_bounding & (1 << 21), 0, "CAP_SYS_ADMIN dropped");
    }

    #[test]
    fn every_capability_has_its_kernel_number() {
        for (expected, kernel_name) in NAMES.iter().enumerate() {
            let cap: Capability =
                serde_json::from_value(serde_json::json!(kernel_name)).expect("known capability");
            assert_eq!(number(cap) as usize, expected, "{kernel_name}");
        }
        assert_eq!(name(21), "CAP_SYS_ADMIN");
        assert_eq!(name(99), "capability 99");
    }
}
