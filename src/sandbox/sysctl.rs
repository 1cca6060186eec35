//! Pod sysctls: which are allowed, and where each is written.
//!
//! Only namespaced sysctls may be set for a pod, and only in the pod's own namespaces:
//! `net.*` in its network namespace, the IPC ones in its IPC namespace. Anything else — a
//! node-wide sysctl, a name or value outside the grammar (the CVE-2022-0811 class of
//! injection), a net sysctl on a host-network pod — is refused before anything is touched.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNamespace {
    /// The network namespace.
    Net,
    /// The IPC namespace.
    Ipc,
}

/// A validated sysctl: where to write what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// The name as requested.
    pub name: String,
    /// Path relative to `/proc/sys`.
    pub relative_path: PathBuf,
    /// The value to write.
    pub value: String,
    /// The namespace it must be written in.
    pub namespace: SysctlNamespace,
}

/// IPC sysctls that are namespaced (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*).
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
];

/// Sysctls every pod with its own network namespace gets unless it sets them itself, as
/// containerd 2 does: unprivileged low ports and unprivileged ping.
pub const NETWORK_DEFAULTS: [(&str, &str); 2] = [
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

/// Validates `requested` for a pod with (or without) its own network and IPC namespaces.
pub fn validate(
    requested: &BTreeMap<String, String>,
    own_network: bool,
    own_ipc: bool,
) -> Result<Vec<Sysctl>, String> {
    let mut sysctls = Vec::with_capacity(requested.len());
    for (name, value) in requested {
        let sysctl = parse(name, value)?;
        match sysctl.namespace {
            SysctlNamespace::Net if !own_network => {
                return Err(format!(
                    "sysctl {name:?} is not allowed for a pod in the host network namespace"
                ));
            }
            SysctlNamespace::Ipc if !own_ipc => {
                return Err(format!(
                    "sysctl {name:?} is not allowed for a pod in the host IPC namespace"
                ));
            }
            _ => sysctls.push(sysctl),
        }
    }
    if own_network {
        for (name, value) in NETWORK_DEFAULTS {
            if !requested.contains_key(name) && !requested.contains_key(&name.replace('.', "/")) {
                sysctls.push(parse(name, value)?);
            }
        }
    }
    Ok(sysctls)
}

fn parse(name: &str, value: &str) -> Result<Sysctl, String> {
    let valid_name = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !name.starts_with(['.', '/'])
        && !name.ends_with(['.', '/']);
    if !valid_name {
        return Err(format!("invalid sysctl name {name:?}"));
    }
    // Names use '.' as separator unless they contain '/', in which case '/' separates and '.'
    // is part of a component (interface names such as eth0.100).
    let relative: PathBuf = if name.contains('/') {
        name.split('/').collect()
    } else {
        name.split('.').collect()
    };
    if relative
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
        || name
            .split(['/', '.'])
            .any(|part| part.is_empty() || part == "..")
    {
        return Err(format!("invalid sysctl name {name:?}"));
    }
    if value.len() > 4096
        || value
            .bytes()
            .any(|b| b == b'\n' || b == b'\0' || b == b'\r')
    {
        return Err(format!("invalid value for sysctl {name:?}"));
    }
    let dotted = name.replace('/', ".");
    let namespace = if dotted.starts_with("net.") {
        SysctlNamespace::Net
    } else if dotted.starts_with("fs.mqueue.") || IPC_SYSCTLS.contains(&dotted.as_str()) {
        SysctlNamespace::Ipc
    } else {
        return Err(format!(
            "sysctl {name:?} is not namespaced; only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* may be set for a pod"
        ));
    };
    Ok(Sysctl {
        name: name.to_owned(),
        relative_path: relative,
        value: value.to_owned(),
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn namespaced_sysctls_are_accepted_with_defaults_added() {
        let sysctls = validate(
            &map(&[
                ("kernel.shm_rmid_forced", "1"),
                ("fs.mqueue.msg_max", "100"),
            ]),
            true,
            true,
        )
        .unwrap();
        assert_eq!(sysctls[0].namespace, SysctlNamespace::Ipc);
        assert_eq!(sysctls[0].relative_path, PathBuf::from("fs/mqueue/msg_max"));
        let names: Vec<&str> = sysctls.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"net.ipv4.ip_unprivileged_port_start"));
        assert!(names.contains(&"net.ipv4.ping_group_range"));
    }

    #[test]
    fn slash_form_keeps_dots_in_components() {
        let sysctls = validate(
            &map(&[("net/ipv4/conf/eth0.100/forwarding", "1")]),
            true,
            true,
        )
        .unwrap();
        assert_eq!(
            sysctls[0].relative_path,
            PathBuf::from("net/ipv4/conf/eth0.100/forwarding")
        );
    }

    #[test]
    fn node_wide_and_hostile_sysctls_are_refused() {
        for (name, value) in [
            ("kernel.hostname", "x"),
            ("vm.overcommit_memory", "1"),
            ("net/../kernel/core_pattern", "|/evil"),
            ("net.ipv4..x", "1"),
            ("kernel.shm_rmid_forced", "1\nkernel.core_pattern=|/evil"),
            ("net.ipv4.ip_forward+kernel.core_pattern", "1"),
            ("", "1"),
        ] {
            assert!(
                validate(&map(&[(name, value)]), true, true).is_err(),
                "{name}={value:?}"
            );
        }
    }

    #[test]
    fn host_namespaces_refuse_their_sysctls_and_get_no_defaults() {
        assert!(validate(&map(&[("net.ipv4.ip_forward", "1")]), false, true).is_err());
        assert!(validate(&map(&[("kernel.shmmax", "1")]), true, false).is_err());
        assert!(validate(&BTreeMap::new(), false, true).unwrap().is_empty());
    }

    #[test]
    fn explicit_value_overrides_default() {
        let sysctls = validate(
            &map(&[("net.ipv4.ip_unprivileged_port_start", "1024")]),
            true,
            true,
        )
        .unwrap();
        let matching: Vec<_> = sysctls
            .iter()
            .filter(|s| s.name == "net.ipv4.ip_unprivileged_port_start")
            .collect();
        assert_eq!(matching.len(), 1);
        assert_eq!(matching[0].value, "1024");
    }
}
