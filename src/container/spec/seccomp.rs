//! Which seccomp filter a container gets, and `Localhost` profile files.
//!
//! A profile file may be in the OCI form (`linux.seccomp` of a runtime spec) or in Docker's
//! (the OCI form plus `archMap`, a `name` per rule, and rules that apply only `includes` or
//! `excludes` given capabilities or architectures), which kubelet users write by hand. Rules
//! conditioned on capabilities are resolved against the container's granted set, those on
//! architectures against the native one; `minKernel` is taken as met (carrack's hosts run
//! recent kernels).

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};
use serde::Deserialize;

use super::seccomp_default::{native_arches, runtime_default_profile};
use super::{SeccompProfile, SpecError};

/// Largest profile file read.
const MAX_PROFILE_BYTES: u64 = 4 * 1024 * 1024;

/// The filter for a non-privileged container (privileged ones get none).
pub(super) fn select(
    profile: &SeccompProfile,
    granted: u64,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => runtime_default_profile(granted).map(Some),
        SeccompProfile::Localhost(path) => load(path, granted).map(Some),
    }
}

/// Docker's profile file format (a superset of OCI's `linux.seccomp`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<std::path::PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<SyscallRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallRule {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

/// Docker's short name of the native architecture (`runtime.GOARCH`).
fn native_arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn has_capability(granted: u64, name: &str) -> bool {
    super::capabilities::parse(name).is_some_and(|bit| granted & (1 << bit) != 0)
}

impl SyscallRule {
    /// Whether the rule applies to this container.
    fn applies(&self, granted: u64) -> bool {
        let arch = native_arch_name();
        if let Some(includes) = &self.includes {
            if !includes.arches.is_empty() && !includes.arches.iter().any(|a| a == arch) {
                return false;
            }
            if !includes.caps.iter().all(|cap| has_capability(granted, cap)) {
                return false;
            }
        }
        if let Some(excludes) = &self.excludes {
            if excludes.arches.iter().any(|a| a == arch) {
                return false;
            }
            if excludes.caps.iter().any(|cap| has_capability(granted, cap)) {
                return false;
            }
        }
        true
    }
}

fn profile_error(path: &Path, reason: impl Into<String>) -> SpecError {
    SpecError::SeccompProfile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and converts a `Localhost` profile.
fn load(path: &Path, granted: u64) -> Result<LinuxSeccomp, SpecError> {
    if !path.is_absolute() {
        return Err(SpecError::RelativePath {
            field: "security_context.seccomp.localhost_ref".to_owned(),
            path: path.display().to_string(),
        });
    }
    let file = std::fs::File::open(path).map_err(|err| profile_error(path, err.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| profile_error(path, err.to_string()))?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(profile_error(
            path,
            format!("larger than {MAX_PROFILE_BYTES} bytes"),
        ));
    }
    parse(&bytes, granted).map_err(|reason| profile_error(path, reason))
}

/// Converts a profile document for a container holding the `granted` capabilities.
pub(super) fn parse(bytes: &[u8], granted: u64) -> Result<LinuxSeccomp, String> {
    let file: ProfileFile = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
    if file.listener_path.is_some() {
        return Err("seccomp notify listeners (listenerPath) are not supported".to_owned());
    }
    let architectures = match (&file.architectures, &file.arch_map) {
        (Some(list), _) if !list.is_empty() => Some(list.clone()),
        (_, Some(map)) => {
            // Keep the native architecture and its sub-architectures, as Docker does.
            let native = native_arches();
            let mut arches = Vec::new();
            for entry in map {
                if native.first() == Some(&entry.architecture) {
                    arches.push(entry.architecture);
                    arches.extend(entry.sub_architectures.iter().flatten().copied());
                }
            }
            (!arches.is_empty()).then_some(arches)
        }
        _ => None,
    };

    let mut syscalls = Vec::new();
    for (at, rule) in file.syscalls.iter().flatten().enumerate() {
        let mut names: Vec<String> = rule.names.clone().unwrap_or_default();
        names.extend(rule.name.clone());
        names.retain(|name| !name.is_empty());
        if names.is_empty() {
            return Err(format!("syscalls[{at}] names no system call"));
        }
        if !rule.applies(granted) {
            continue;
        }
        let mut syscall = LinuxSyscall::default();
        syscall
            .set_names(names)
            .set_action(rule.action)
            .set_errno_ret(rule.errno_ret)
            .set_args(rule.args.clone().filter(|args| !args.is_empty()));
        syscalls.push(syscall);
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(file.default_action)
        .set_default_errno_ret(file.default_errno_ret)
        .set_architectures(architectures)
        .set_flags(file.flags.filter(|flags| !flags.is_empty()))
        .set_listener_path(None)
        .set_listener_metadata(file.listener_metadata)
        .set_syscalls((!syscalls.is_empty()).then_some(syscalls));
    Ok(seccomp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::capabilities::{DEFAULT_CAPABILITIES, bit};

    /// critest's profile that blocks `sethostname`.
    const BLOCK_HOSTNAME: &str = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]
    }"#;

    fn names(seccomp: &LinuxSeccomp) -> Vec<Vec<String>> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .map(|rule| rule.names().clone())
            .collect()
    }

    #[test]
    fn critest_profile_is_read_from_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("block-host-name.json");
        std::fs::write(&path, BLOCK_HOSTNAME).expect("write");
        let seccomp = select(&SeccompProfile::Localhost(path), DEFAULT_CAPABILITIES)
            .expect("profile")
            .expect("some");
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(names(&seccomp), [vec!["sethostname".to_owned()]]);
        let rule = seccomp
            .syscalls()
            .as_ref()
            .and_then(|s| s.first())
            .expect("rule");
        assert_eq!(rule.action(), LinuxSeccompAction::ScmpActErrno);
    }

    #[test]
    fn docker_profiles_with_conditions_and_arch_map() {
        let native = match native_arches().first() {
            Some(Arch::ScmpArchAarch64) => "SCMP_ARCH_AARCH64",
            _ => "SCMP_ARCH_X86_64",
        };
        let profile = format!(
            r#"{{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "archMap": [
                {{"architecture": "{native}", "subArchitectures": ["SCMP_ARCH_X86"]}},
                {{"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]}}
            ],
            "syscalls": [
                {{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "x"}},
                {{"name": "getpid", "action": "SCMP_ACT_ALLOW"}},
                {{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {{"caps": ["CAP_SYS_ADMIN"]}}}},
                {{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}}],
                  "excludes": {{"caps": ["CAP_SYS_ADMIN"]}}}},
                {{"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {{"arches": ["s390x"]}}}},
                {{"names": ["not_here"], "action": "SCMP_ACT_ALLOW", "excludes": {{"arches": ["amd64", "arm64"]}}}},
                {{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {{"minKernel": "4.8"}}}}
            ]
        }}"#
        );
        let plain = parse(profile.as_bytes(), DEFAULT_CAPABILITIES).expect("parse");
        assert_eq!(plain.default_errno_ret(), Some(38));
        assert_eq!(plain.architectures().as_ref().map(Vec::len), Some(2));
        assert_eq!(
            names(&plain),
            [
                vec!["read".to_owned(), "write".to_owned()],
                vec!["getpid".to_owned()],
                vec!["clone".to_owned()],
                vec!["ptrace".to_owned()],
            ]
        );
        let clone = plain
            .syscalls()
            .iter()
            .flatten()
            .find(|rule| rule.names().contains(&"clone".to_owned()))
            .expect("clone");
        assert_eq!(clone.args().as_ref().map(Vec::len), Some(1));
        let admin = parse(
            profile.as_bytes(),
            DEFAULT_CAPABILITIES | 1 << bit::SYS_ADMIN,
        )
        .expect("parse");
        let admin_names = names(&admin);
        assert!(admin_names.contains(&vec!["mount".to_owned()]));
        assert!(!admin_names.contains(&vec!["clone".to_owned()]));
    }

    #[test]
    fn unusable_profiles_are_invalid_arguments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.json");
        let err = select(&SeccompProfile::Localhost(missing.clone()), 0).expect_err("missing");
        assert!(matches!(&err, SpecError::SeccompProfile { path, .. } if *path == missing));
        assert_eq!(err.kind(), crate::error_kind::ErrorKind::InvalidArgument);

        let relative = SeccompProfile::Localhost("profiles/x.json".into());
        assert!(matches!(
            select(&relative, 0),
            Err(SpecError::RelativePath { .. })
        ));

        let cases = [
            ("not json", "expected"),
            ("{}", "defaultAction"),
            (r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#, "unknown variant"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#,
                "names no system call",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#,
                "unknown variant",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#,
                "listener",
            ),
        ];
        for (at, (content, expected)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{at}.json"));
            std::fs::write(&path, content).expect("write");
            let err = select(&SeccompProfile::Localhost(path), 0).expect_err(content);
            assert!(err.to_string().contains(expected), "{content}: {err}");
        }
    }

    #[test]
    fn legacy_profile_paths() {
        assert_eq!(
            SeccompProfile::from_legacy_path("").ok(),
            Some(SeccompProfile::Unconfined)
        );
        assert_eq!(
            SeccompProfile::from_legacy_path("unconfined").ok(),
            Some(SeccompProfile::Unconfined)
        );
        assert_eq!(
            SeccompProfile::from_legacy_path("runtime/default").ok(),
            Some(SeccompProfile::RuntimeDefault)
        );
        assert_eq!(
            SeccompProfile::from_legacy_path("docker/default").ok(),
            Some(SeccompProfile::RuntimeDefault)
        );
        assert_eq!(
            SeccompProfile::from_legacy_path("localhost//tmp/p.json").ok(),
            Some(SeccompProfile::Localhost("/tmp/p.json".into()))
        );
        // critest: a profile path without the localhost/ prefix must fail the create.
        assert!(SeccompProfile::from_legacy_path("/tmp/p.json").is_err());
        assert!(SeccompProfile::from_legacy_path("localhost/p.json").is_err());
    }
}
