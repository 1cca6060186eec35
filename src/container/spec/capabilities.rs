//! Capabilities: containerd's default set changed by the request's add/drop lists, or every
//! capability the host has for a privileged container, never more than the host's bounding
//! set (asking for a capability the runtime lacks would only fail the container).

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::{SecurityContext, SpecError};

/// The kernel's capabilities by number: the OCI value and the name without `CAP_`.
const TABLE: [(Capability, &str); 41] = [
    (Capability::Chown, "CHOWN"),
    (Capability::DacOverride, "DAC_OVERRIDE"),
    (Capability::DacReadSearch, "DAC_READ_SEARCH"),
    (Capability::Fowner, "FOWNER"),
    (Capability::Fsetid, "FSETID"),
    (Capability::Kill, "KILL"),
    (Capability::Setgid, "SETGID"),
    (Capability::Setuid, "SETUID"),
    (Capability::Setpcap, "SETPCAP"),
    (Capability::LinuxImmutable, "LINUX_IMMUTABLE"),
    (Capability::NetBindService, "NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "NET_BROADCAST"),
    (Capability::NetAdmin, "NET_ADMIN"),
    (Capability::NetRaw, "NET_RAW"),
    (Capability::IpcLock, "IPC_LOCK"),
    (Capability::IpcOwner, "IPC_OWNER"),
    (Capability::SysModule, "SYS_MODULE"),
    (Capability::SysRawio, "SYS_RAWIO"),
    (Capability::SysChroot, "SYS_CHROOT"),
    (Capability::SysPtrace, "SYS_PTRACE"),
    (Capability::SysPacct, "SYS_PACCT"),
    (Capability::SysAdmin, "SYS_ADMIN"),
    (Capability::SysBoot, "SYS_BOOT"),
    (Capability::SysNice, "SYS_NICE"),
    (Capability::SysResource, "SYS_RESOURCE"),
    (Capability::SysTime, "SYS_TIME"),
    (Capability::SysTtyConfig, "SYS_TTY_CONFIG"),
    (Capability::Mknod, "MKNOD"),
    (Capability::Lease, "LEASE"),
    (Capability::AuditWrite, "AUDIT_WRITE"),
    (Capability::AuditControl, "AUDIT_CONTROL"),
    (Capability::Setfcap, "SETFCAP"),
    (Capability::MacOverride, "MAC_OVERRIDE"),
    (Capability::MacAdmin, "MAC_ADMIN"),
    (Capability::Syslog, "SYSLOG"),
    (Capability::WakeAlarm, "WAKE_ALARM"),
    (Capability::BlockSuspend, "BLOCK_SUSPEND"),
    (Capability::AuditRead, "AUDIT_READ"),
    (Capability::Perfmon, "PERFMON"),
    (Capability::Bpf, "BPF"),
    (Capability::CheckpointRestore, "CHECKPOINT_RESTORE"),
];

/// Bit numbers of the capabilities the seccomp profile and the tests refer to.
pub(super) mod bit {
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_RAWIO: u32 = 17;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_PACCT: u32 = 20;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const SYS_NICE: u32 = 23;
    pub const SYS_TIME: u32 = 25;
    pub const SYS_TTY_CONFIG: u32 = 26;
    pub const SYSLOG: u32 = 34;
    pub const PERFMON: u32 = 38;
    pub const BPF: u32 = 39;
}

/// Every capability this build knows (bits 0..=40).
pub const ALL_CAPABILITIES: u64 = (1 << TABLE.len()) - 1;

/// containerd's default set: CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID,
/// SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE.
pub const DEFAULT_CAPABILITIES: u64 = 1 << 0
    | 1 << 1
    | 1 << 4
    | 1 << 3
    | 1 << 27
    | 1 << 13
    | 1 << 6
    | 1 << 7
    | 1 << 31
    | 1 << 8
    | 1 << 10
    | 1 << 18
    | 1 << 5
    | 1 << 29;

/// `CAP_SYS_ADMIN`-style name of capability `number`.
pub fn capability_name(number: u32) -> String {
    TABLE.get(number as usize).map_or_else(
        || format!("capability {number}"),
        |(_, name)| format!("CAP_{name}"),
    )
}

/// The bounding set from `/proc/self/status` text (its `CapBnd:` hex mask).
pub fn parse_cap_bnd(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The number of a capability given as CRI does (`NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin`).
pub(super) fn parse(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    TABLE
        .iter()
        .position(|(_, known)| *known == bare)
        .and_then(|at| u32::try_from(at).ok())
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The capability sets the process gets, as masks (bit n = capability n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CapabilitySets {
    /// Bounding, effective and permitted.
    pub granted: u64,
    /// Inheritable and ambient (kept across `execve` by a non-root process).
    pub ambient: u64,
}

/// Applies the request to containerd's defaults, in containerd's order: add `ALL`, drop `ALL`,
/// then the single adds, then the single drops (so `drop: [ALL], add: [X]` leaves only X and
/// `add: [ALL], drop: [X]` everything but X). Privileged containers get the host's whole set
/// and ignore the lists. Unknown names are refused either way.
pub(super) fn effective_set(
    security: &SecurityContext,
    host_bounding: u64,
) -> Result<CapabilitySets, SpecError> {
    let changes = &security.capabilities;
    let parse_list = |field: &'static str, list: &[String]| -> Result<u64, SpecError> {
        list.iter()
            .filter(|name| !is_all(name))
            .try_fold(0u64, |mask, name| {
                parse(name)
                    .map(|bit| mask | 1 << bit)
                    .ok_or_else(|| SpecError::UnknownCapability {
                        field,
                        name: name.clone(),
                    })
            })
    };
    let add = parse_list("capabilities.add_capabilities", &changes.add)?;
    let drop = parse_list("capabilities.drop_capabilities", &changes.drop)?;
    let ambient = parse_list(
        "capabilities.add_ambient_capabilities",
        &changes.add_ambient,
    )?;
    if changes.add_ambient.iter().any(|name| is_all(name)) {
        return Err(SpecError::invalid(
            "capabilities.add_ambient_capabilities",
            "ALL is not allowed for ambient capabilities",
        ));
    }
    if security.privileged {
        return Ok(CapabilitySets {
            granted: host_bounding & ALL_CAPABILITIES,
            ambient: 0,
        });
    }
    let mut set = DEFAULT_CAPABILITIES;
    if changes.add.iter().any(|name| is_all(name)) {
        set = ALL_CAPABILITIES;
    }
    if changes.drop.iter().any(|name| is_all(name)) {
        set = 0;
    }
    set = (set | add | ambient) & !drop;
    let granted = set & host_bounding;
    Ok(CapabilitySets {
        granted,
        ambient: ambient & granted,
    })
}

impl CapabilitySets {
    /// The OCI form.
    pub fn to_oci(self) -> LinuxCapabilities {
        let set = |mask: u64| -> Option<Capabilities> {
            (mask != 0).then(|| {
                TABLE
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| mask & (1 << bit) != 0)
                    .map(|(_, (cap, _))| *cap)
                    .collect()
            })
        };
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(set(self.granted).unwrap_or_default()))
            .set_effective(Some(set(self.granted).unwrap_or_default()))
            .set_permitted(Some(set(self.granted).unwrap_or_default()))
            .set_inheritable(set(self.ambient))
            .set_ambient(set(self.ambient));
        caps
    }

    /// Whether capability `bit` is granted.
    #[cfg(test)]
    pub fn has(self, bit: u32) -> bool {
        self.granted & (1 << bit) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::CapabilityChanges;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn sets(add: &[&str], drop: &[&str], privileged: bool, host: u64) -> CapabilitySets {
        let security = SecurityContext {
            capabilities: CapabilityChanges {
                add: strings(add),
                drop: strings(drop),
                add_ambient: Vec::new(),
            },
            privileged,
            ..SecurityContext::default()
        };
        effective_set(&security, host).expect("capabilities")
    }

    fn bits(names: &[&str]) -> u64 {
        names
            .iter()
            .map(|name| 1u64 << parse(name).expect(name))
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn the_table_matches_the_kernel_numbers_and_oci_names() {
        for (number, (cap, name)) in TABLE.iter().enumerate() {
            let json = serde_json::to_value(cap).expect("serialize");
            assert_eq!(json, serde_json::json!(format!("CAP_{name}")), "{number}");
        }
        assert_eq!(parse("SYS_ADMIN"), Some(bit::SYS_ADMIN));
        assert_eq!(parse("CAP_SYS_PTRACE"), Some(bit::SYS_PTRACE));
        assert_eq!(parse("cap_bpf"), Some(bit::BPF));
        assert_eq!(parse("Perfmon"), Some(bit::PERFMON));
        assert_eq!(parse("SYSLOG"), Some(bit::SYSLOG));
        for (name, number) in [
            ("DAC_READ_SEARCH", bit::DAC_READ_SEARCH),
            ("SYS_MODULE", bit::SYS_MODULE),
            ("SYS_RAWIO", bit::SYS_RAWIO),
            ("SYS_CHROOT", bit::SYS_CHROOT),
            ("SYS_PACCT", bit::SYS_PACCT),
            ("SYS_BOOT", bit::SYS_BOOT),
            ("SYS_NICE", bit::SYS_NICE),
            ("SYS_TIME", bit::SYS_TIME),
            ("SYS_TTY_CONFIG", bit::SYS_TTY_CONFIG),
        ] {
            assert_eq!(parse(name), Some(number), "{name}");
        }
        assert_eq!(parse("NOT_A_CAP"), None);
        assert_eq!(capability_name(21), "CAP_SYS_ADMIN");
        assert_eq!(capability_name(64), "capability 64");
    }

    #[test]
    fn the_default_set_is_containerds() {
        let expected = bits(&[
            "CHOWN",
            "DAC_OVERRIDE",
            "FSETID",
            "FOWNER",
            "MKNOD",
            "NET_RAW",
            "SETGID",
            "SETUID",
            "SETFCAP",
            "SETPCAP",
            "NET_BIND_SERVICE",
            "SYS_CHROOT",
            "KILL",
            "AUDIT_WRITE",
        ]);
        assert_eq!(DEFAULT_CAPABILITIES, expected);
        assert_eq!(DEFAULT_CAPABILITIES.count_ones(), 14);
        assert_eq!(DEFAULT_CAPABILITIES, 0xa80425fb, "the well-known mask");
        let defaults = sets(&[], &[], false, ALL_CAPABILITIES);
        assert_eq!(defaults.granted, DEFAULT_CAPABILITIES);
        assert_eq!(defaults.ambient, 0);
    }

    #[test]
    fn add_and_drop_by_any_spelling() {
        let changed = sets(
            &["NET_ADMIN", "cap_sys_admin"],
            &["CAP_NET_RAW", "kill"],
            false,
            ALL_CAPABILITIES,
        );
        assert_eq!(
            changed.granted,
            (DEFAULT_CAPABILITIES | bits(&["NET_ADMIN", "SYS_ADMIN"]))
                & !bits(&["NET_RAW", "KILL"])
        );
        let both = sets(&["NET_ADMIN"], &["NET_ADMIN"], false, ALL_CAPABILITIES);
        assert!(
            !both.has(12),
            "a drop wins over an add of the same capability"
        );
    }

    #[test]
    fn all_in_either_list() {
        assert_eq!(
            sets(&["ALL"], &[], false, ALL_CAPABILITIES).granted,
            ALL_CAPABILITIES
        );
        assert_eq!(
            sets(&["all"], &["NET_RAW"], false, ALL_CAPABILITIES).granted,
            ALL_CAPABILITIES & !bits(&["NET_RAW"])
        );
        assert_eq!(sets(&[], &["ALL"], false, ALL_CAPABILITIES).granted, 0);
        assert_eq!(
            sets(&["NET_ADMIN"], &["ALL"], false, ALL_CAPABILITIES).granted,
            bits(&["NET_ADMIN"]),
            "drop ALL then add one"
        );
        assert_eq!(sets(&["ALL"], &["ALL"], false, ALL_CAPABILITIES).granted, 0);
    }

    #[test]
    fn never_more_than_the_host_has() {
        let host = ALL_CAPABILITIES & !bits(&["SYS_RESOURCE", "NET_RAW"]);
        assert_eq!(sets(&["ALL"], &[], false, host).granted, host);
        assert_eq!(
            sets(&[], &[], false, host).granted,
            DEFAULT_CAPABILITIES & !bits(&["NET_RAW"])
        );
        assert!(!sets(&["SYS_RESOURCE"], &[], false, host).has(24));
        let privileged = sets(&[], &["ALL"], true, host);
        assert_eq!(
            privileged.granted, host,
            "privileged: the host's set, lists ignored"
        );
        let wide_host = u64::MAX;
        assert_eq!(sets(&[], &[], true, wide_host).granted, ALL_CAPABILITIES);
    }

    #[test]
    fn unknown_names_are_refused() {
        let security = SecurityContext {
            capabilities: CapabilityChanges {
                add: strings(&["NET_ADMIN", "FLY"]),
                ..CapabilityChanges::default()
            },
            ..SecurityContext::default()
        };
        let err = effective_set(&security, ALL_CAPABILITIES).expect_err("unknown");
        assert!(
            matches!(&err, SpecError::UnknownCapability { name, .. } if name == "FLY"),
            "{err}"
        );
        assert_eq!(err.kind(), crate::error_kind::ErrorKind::InvalidArgument);
        let privileged = SecurityContext {
            privileged: true,
            ..security
        };
        assert!(effective_set(&privileged, ALL_CAPABILITIES).is_err());
    }

    #[test]
    fn ambient_capabilities_are_granted_and_inheritable() {
        let security = SecurityContext {
            capabilities: CapabilityChanges {
                add_ambient: strings(&["NET_BIND_SERVICE", "NET_ADMIN"]),
                ..CapabilityChanges::default()
            },
            ..SecurityContext::default()
        };
        let host = ALL_CAPABILITIES & !bits(&["NET_ADMIN"]);
        let sets = effective_set(&security, host).expect("ambient");
        assert_eq!(sets.ambient, bits(&["NET_BIND_SERVICE"]));
        let oci = sets.to_oci();
        assert_eq!(
            oci.ambient().as_ref().map(|set| set.len()),
            Some(1),
            "{oci:?}"
        );
        assert_eq!(oci.inheritable(), oci.ambient());
        assert_eq!(oci.bounding().as_ref().map(|set| set.len()), Some(14));
    }

    #[test]
    fn cap_bnd_is_read_from_proc_status() {
        let status = "Name:\tcarrack\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(parse_cap_bnd(status), Some(0x1fffeffffff));
        assert_eq!(parse_cap_bnd("Name: x\n"), None);
    }
}
