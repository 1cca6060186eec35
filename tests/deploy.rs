//! Offline checks of the deployment files: what can be checked without systemd as PID 1, a
//! Docker engine or a cluster. (`deploy/config.toml` loading is a unit test in `config`.)

use std::path::Path;
use std::process::Command;

/// A tool the test needs is missing: skipped, or failed where `CARRACK_REQUIRE_ALL` or `CI` is
/// set (as `tests/support::missing`, which this file does not build in).
fn missing(what: &str) {
    if std::env::var_os("CARRACK_REQUIRE_ALL").is_some() || std::env::var_os("CI").is_some() {
        panic!("{what} (deploy/packages.sh installs it; CARRACK_REQUIRE_ALL or CI is set)");
    }
    eprintln!("skipped: {what}");
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Ok(output) = Command::new("systemd-analyze")
        .args(["verify", &repo("deploy/systemd/carrack.service")])
        .output()
    else {
        missing("systemd-analyze (Debian's systemd package) is not installed");
        return;
    };
    // verify exits 0 even for ignored settings; any complaint is a failure here.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        // ExecStart's binary need not be installed on a build machine.
        .filter(|line| !line.contains("/usr/local/bin/carrack") && !line.trim().is_empty())
        .collect();
    assert!(output.status.success() && complaints.is_empty(), "{stderr}");
    let unit = std::fs::read_to_string(repo("deploy/systemd/carrack.service")).expect("unit");
    for setting in [
        "Type=notify",
        "Delegate=yes",
        "KillMode=process",
        "LimitNOFILE=",
        "OOMScoreAdjust=",
    ] {
        assert!(unit.contains(setting), "the unit lacks {setting}");
    }
}

#[test]
fn shell_scripts_parse() {
    for script in [
        "deploy/install.sh",
        "deploy/packages.sh",
        "deploy/test-image.sh",
        "deploy/kind/seed-images.sh",
        "deploy/kind/ctr-shim.sh",
    ] {
        let status = Command::new("bash")
            .args(["-n", &repo(script)])
            .status()
            .expect("run bash");
        assert!(status.success(), "{script} does not parse");
    }
}

#[test]
fn kind_files_are_well_formed() {
    let dockerfile = std::fs::read_to_string(repo("deploy/kind/Dockerfile")).expect("Dockerfile");
    let first = dockerfile
        .lines()
        .find(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .expect("an instruction");
    assert!(
        first.starts_with("ARG ") || first.starts_with("FROM "),
        "{first}"
    );
    // Every instruction line (after continuations) starts with a known keyword.
    let keywords = [
        "FROM",
        "ARG",
        "RUN",
        "COPY",
        "ENV",
        "LABEL",
        "ENTRYPOINT",
        "CMD",
        "WORKDIR",
        "USER",
    ];
    let mut continued = false;
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if !continued && !trimmed.is_empty() && !trimmed.starts_with('#') {
            let word = trimmed.split_whitespace().next().unwrap_or_default();
            assert!(
                keywords.contains(&word),
                "unknown instruction {word:?} in {line:?}"
            );
        }
        continued = trimmed.ends_with('\\');
    }
    let cluster = std::fs::read_to_string(repo("deploy/kind/cluster.yaml")).expect("cluster");
    assert!(cluster.contains("kind: Cluster") && cluster.matches("- role:").count() >= 3);
}

/// `Type=notify`: the daemon says READY=1 once its socket serves and STOPPING=1 when a
/// stop begins, on the datagram socket `$NOTIFY_SOCKET` names.
#[test]
fn daemon_notifies_readiness_and_stopping() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path();
    let parent = format!("carrack-notify-test-{}", std::process::id());
    let config = format!(
        "root_dir = \"{root}\"\nstate_dir = \"{state}\"\nsocket_path = \"{socket}\"\n\
         [cgroups]\ndriver = \"cgroupfs\"\ndefault_parent = \"/{parent}\"\n\
         [cni]\nconf_dir = \"{cni}\"\n",
        root = base.join("root").display(),
        state = base.join("state").display(),
        socket = base.join("carrack.sock").display(),
        cni = base.join("cni").display(),
    );
    std::fs::write(base.join("config.toml"), config).expect("config");
    let notify = std::os::unix::net::UnixDatagram::bind(base.join("notify.sock")).expect("bind");
    notify
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_carrack"))
        .args(["daemon", "--config"])
        .arg(base.join("config.toml"))
        .env("NOTIFY_SOCKET", base.join("notify.sock"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(base.join("daemon.log")).expect("log"))
        .spawn()
        .expect("start the daemon");
    let mut buffer = [0u8; 64];
    let ready = receive(&notify, &mut buffer);
    let socket_served = base.join("carrack.sock").exists();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    );
    let stopping = receive(&notify, &mut buffer);
    let status = daemon.wait().expect("wait for the daemon");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(hierarchy.path().join(&parent));
    }
    let log = std::fs::read_to_string(base.join("daemon.log")).unwrap_or_default();
    assert_eq!(
        ready.as_deref().ok(),
        Some(&b"READY=1"[..]),
        "{ready:?}\n{log}"
    );
    assert!(socket_served, "READY=1 came before the socket existed");
    assert_eq!(
        stopping.as_deref().ok(),
        Some(&b"STOPPING=1"[..]),
        "{stopping:?}\n{log}"
    );
    assert!(status.success(), "{status:?}\n{log}");
}

/// One notification datagram. A receive with a timeout is never restarted after a signal
/// (signal(7)), even with `SA_RESTART`, so an interrupted one is simply tried again.
fn receive(
    socket: &std::os::unix::net::UnixDatagram,
    buffer: &mut [u8],
) -> std::io::Result<Vec<u8>> {
    loop {
        match socket.recv(buffer) {
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            received => return received.map(|n| buffer[..n].to_vec()),
        }
    }
}
