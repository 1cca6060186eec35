//! Parsing `carrack run`'s Docker-style flag values (`-v`, `-p`, `-e`, `--memory`, `--cpus`,
//! `--user`) into CRI fields. Pure functions: no runtime, no files.

use std::path::{Component, Path, PathBuf};

use crate::cli::error::CliError;
use crate::proto;

/// CFS period used with `--cpus` (the kernel's default, and Docker's).
pub const CPU_PERIOD_US: i64 = 100_000;

fn bad(flag: &'static str, value: &str, reason: &str) -> CliError {
    CliError::Flag {
        flag,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `-v HOST:CONTAINER[:ro|:rw]`; a relative host path is taken from `cwd`.
pub fn volume(value: &str, cwd: &Path) -> Result<proto::Mount, CliError> {
    let parts: Vec<&str> = value.split(':').collect();
    let (host, container, readonly) = match parts.as_slice() {
        [host, container] => (*host, *container, false),
        [host, container, "ro"] => (*host, *container, true),
        [host, container, "rw"] => (*host, *container, false),
        [_, _, _] => return Err(bad("-v", value, "the mode must be ro or rw")),
        _ => return Err(bad("-v", value, "expected HOST:CONTAINER[:ro]")),
    };
    if host.is_empty() || container.is_empty() {
        return Err(bad("-v", value, "expected HOST:CONTAINER[:ro]"));
    }
    if !container.starts_with('/') {
        return Err(bad("-v", value, "the container path must be absolute"));
    }
    let host_path = normalize(&cwd.join(host));
    Ok(proto::Mount {
        container_path: container.to_owned(),
        host_path: host_path.display().to_string(),
        readonly,
        ..proto::Mount::default()
    })
}

/// `a/./b/../c` → `a/c`, lexically (the host path need not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `-p [IP:]HOST:CONTAINER[/tcp|udp|sctp]`.
pub fn publish(value: &str) -> Result<proto::PortMapping, CliError> {
    let (ports, protocol) = match value.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, proto::Protocol::Tcp),
        Some((ports, "udp")) => (ports, proto::Protocol::Udp),
        Some((ports, "sctp")) => (ports, proto::Protocol::Sctp),
        Some(_) => return Err(bad("-p", value, "the protocol must be tcp, udp or sctp")),
        None => (value, proto::Protocol::Tcp),
    };
    let port = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .map(i32::from)
            .ok_or_else(|| bad("-p", value, "ports are numbers from 1 to 65535"))
    };
    let (host_ip, host_port, container_port) = match ports.rsplitn(3, ':').collect::<Vec<_>>()[..] {
        [container, host] => (String::new(), port(host)?, port(container)?),
        [container, host, ip] => (ip.to_owned(), port(host)?, port(container)?),
        _ => return Err(bad("-p", value, "expected [IP:]HOSTPORT:CONTAINERPORT")),
    };
    Ok(proto::PortMapping {
        protocol: protocol.into(),
        container_port,
        host_port,
        host_ip,
    })
}

/// `-e KEY=VALUE`; a bare `-e KEY` takes the value from this process's environment, as
/// Docker does (and is left out when unset).
pub fn env(value: &str) -> Result<Option<proto::KeyValue>, CliError> {
    match value.split_once('=') {
        Some(("", _)) => Err(bad("-e", value, "the name is empty")),
        Some((key, val)) => Ok(Some(proto::KeyValue {
            key: key.to_owned(),
            value: val.as_bytes().to_vec(),
        })),
        None if value.is_empty() => Err(bad("-e", value, "the name is empty")),
        None => Ok(std::env::var_os(value).map(|val| proto::KeyValue {
            key: value.to_owned(),
            value: std::os::unix::ffi::OsStringExt::into_vec(val),
        })),
    }
}

/// `--memory 512m` (b, k, m, g suffixes, powers of 1024, as Docker) in bytes.
pub fn memory(value: &str) -> Result<i64, CliError> {
    let text = value.trim().to_ascii_lowercase();
    let text = text
        .strip_suffix('b')
        .filter(|t| !t.is_empty() && t.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&text);
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let multiplier: i64 = match unit {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(bad(
                "--memory",
                value,
                "use a number with an optional b, k, m, g or t suffix",
            ));
        }
    };
    number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| {
            bad(
                "--memory",
                value,
                "use a positive number with an optional b, k, m, g or t suffix",
            )
        })
}

/// `--cpus 1.5` as a CFS quota over [`CPU_PERIOD_US`].
pub fn cpus(value: f64) -> Result<i64, CliError> {
    if !value.is_finite() || value <= 0.0 || value > 4096.0 {
        return Err(bad(
            "--cpus",
            &value.to_string(),
            "use a positive number of CPUs",
        ));
    }
    // Bounded above, so the product fits; rounding to whole microseconds is the intent.
    #[allow(clippy::cast_possible_truncation)]
    let quota = (value * CPU_PERIOD_US as f64).round() as i64;
    Ok(quota.max(1000))
}

/// `--user UID[:GID]` or `--user NAME` (resolved by the runtime in the image).
pub fn user(
    value: &str,
    security: &mut proto::LinuxContainerSecurityContext,
) -> Result<(), CliError> {
    let (user, group) = match value.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (value, None),
    };
    if user.is_empty() {
        return Err(bad("--user", value, "the user is empty"));
    }
    match user.parse::<i64>() {
        Ok(uid) if uid >= 0 => security.run_as_user = Some(proto::Int64Value { value: uid }),
        Ok(_) => return Err(bad("--user", value, "ids are not negative")),
        Err(_) => security.run_as_username = user.to_owned(),
    }
    if let Some(group) = group {
        let gid = group
            .parse::<i64>()
            .ok()
            .filter(|gid| *gid >= 0)
            .ok_or_else(|| bad("--user", value, "the group must be a numeric gid"))?;
        security.run_as_group = Some(proto::Int64Value { value: gid });
    }
    Ok(())
}

/// Checks a container name (`--name`): Docker's alphabet, so it is also a valid CRI name
/// and a safe path component for the pod's log directory.
pub fn name(value: &str) -> Result<(), CliError> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && value.len() <= 128 {
        Ok(())
    } else {
        Err(bad(
            "--name",
            value,
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        let cwd = Path::new("/home/me");
        let mount = volume("/srv/data:/data:ro", cwd).unwrap();
        assert_eq!(mount.host_path, "/srv/data");
        assert_eq!(mount.container_path, "/data");
        assert!(mount.readonly);
        let mount = volume("./a/../b:/b", cwd).unwrap();
        assert_eq!(mount.host_path, "/home/me/b");
        assert!(!mount.readonly);
        assert!(volume("/a:relative", cwd).is_err());
        assert!(volume("/a", cwd).is_err());
        assert!(volume("/a:/b:rx", cwd).is_err());
    }

    #[test]
    fn published_ports() {
        let port = publish("8080:80").unwrap();
        assert_eq!((port.host_port, port.container_port), (8080, 80));
        assert_eq!(port.protocol, i32::from(proto::Protocol::Tcp));
        let port = publish("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(port.host_ip, "127.0.0.1");
        assert_eq!((port.host_port, port.container_port), (53, 5353));
        assert_eq!(port.protocol, i32::from(proto::Protocol::Udp));
        assert!(publish("80").is_err());
        assert!(publish("0:80").is_err());
        assert!(publish("80:70000").is_err());
        assert!(publish("80:80/icmp").is_err());
    }

    #[test]
    fn env_values() {
        let kv = env("A=b=c").unwrap().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_slice()), ("A", &b"b=c"[..]));
        assert!(env("=x").is_err());
        assert!(env("CARRACK_SURELY_UNSET_VARIABLE").unwrap().is_none());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("512m").unwrap(), 512 << 20);
        assert_eq!(memory("1g").unwrap(), 1 << 30);
        assert_eq!(memory("1GB").unwrap(), 1 << 30);
        assert_eq!(memory("4096").unwrap(), 4096);
        assert_eq!(memory("100b").unwrap(), 100);
        assert!(memory("-1m").is_err());
        assert!(memory("lots").is_err());
        assert!(memory("0").is_err());
    }

    #[test]
    fn cpu_quotas() {
        assert_eq!(cpus(1.5).unwrap(), 150_000);
        assert_eq!(cpus(0.001).unwrap(), 1000);
        assert!(cpus(0.0).is_err());
        assert!(cpus(f64::NAN).is_err());
    }

    #[test]
    fn users() {
        let mut security = proto::LinuxContainerSecurityContext::default();
        user("1000:100", &mut security).unwrap();
        assert_eq!(security.run_as_user.as_ref().unwrap().value, 1000);
        assert_eq!(security.run_as_group.as_ref().unwrap().value, 100);
        let mut security = proto::LinuxContainerSecurityContext::default();
        user("nobody", &mut security).unwrap();
        assert_eq!(security.run_as_username, "nobody");
        assert!(user("nobody:users", &mut security).is_err());
        assert!(user("", &mut security).is_err());
    }

    #[test]
    fn names() {
        assert!(name("web-1.a_b").is_ok());
        assert!(name("-x").is_err());
        assert!(name("a/b").is_err());
        assert!(name("..").is_err());
        assert!(name("").is_err());
    }
}
