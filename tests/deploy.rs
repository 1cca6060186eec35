//! Offline checks of the deployment files: what can be checked without systemd as PID 1, a
//! Docker engine or a cluster. (`deploy/config.toml` loading is a unit test in `config`.)

use std::path::Path;
use std::process::Command;

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
        eprintln!("skipped: systemd-analyze is not installed");
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
