//! Root tests of `launch`: real busybox containers on a rootfs built in a temp dir.
//!
//! Each test forks first (`sys::test_support::in_child_process`): `launch` must run in a
//! single-threaded process, and the container is that child's child, so the test process
//! never holds a container's mounts or namespaces. The containers' mounts live in their own
//! mount namespaces and vanish when they exit; the temp dirs are removed on drop.
//! Tests return early (pass) when not run as root or without `/bin/busybox`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::sys::test_support::in_child_process;
use super::*;

/// containerd's default capabilities.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const BUSYBOX: &str = "/bin/busybox";

fn can_run() -> bool {
    rustix::process::geteuid().is_root() && Path::new(BUSYBOX).exists()
}

/// A busybox root filesystem: a copy of the static binary with every applet hard-linked to
/// it (a copy, so a writable container cannot change the host's binary), `/etc/passwd` and
/// `/etc/group` with root and nobody, `/tmp`, and `/secret.txt` and `/secret-dir/key` for
/// the masking tests.
fn busybox_rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for sub in ["bin", "etc", "tmp", "root", "secret-dir"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    std::fs::write(root.join("secret-dir/key"), "hidden\n").expect("secret");
    std::fs::write(root.join("secret.txt"), "hidden\n").expect("secret");
    let binary = root.join("bin/busybox");
    std::fs::copy(BUSYBOX, &binary).expect("copy busybox");
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::fs::hard_link(&binary, link).expect("link applet");
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    dir
}

/// The spec of the tests: containerd-like defaults (mounts without the cgroup one, the 14
/// capabilities, masked and read-only paths, no_new_privs) and a seccomp profile that lets
/// everything through but `sethostname`.
fn base_spec(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "args": args,
            "env": ["PATH=/bin", "HOME=/root"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS
            },
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "carrack-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/secret.txt", "/secret-dir", "/not-there"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
                ]
            }
        }
    })
}

/// What a container printed and how it ended.
#[derive(Debug)]
struct Ran {
    output: String,
    exit: Exit,
}

/// Launches `spec` on `rootfs` with stdout and stderr into one pipe, reads the pipe to its
/// end and reaps the process.
fn run(spec: Value, rootfs: &Path, cgroup_procs_files: Vec<PathBuf>) -> Result<Ran, String> {
    let spec = serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))?;
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let writer = OwnedFd::from(writer);
    let stderr = writer.try_clone().map_err(|e| format!("dup: {e}"))?;
    let stdin = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let launched = launch(LaunchRequest {
        spec,
        rootfs: rootfs.to_owned(),
        stdio: Stdio {
            stdin: Some(stdin.into()),
            stdout: Some(writer),
            stderr: Some(stderr),
        },
        cgroup_procs_files,
    })
    .map_err(|e| format!("launch: {e}"))?;
    let mut output = String::new();
    reader
        .read_to_string(&mut output)
        .map_err(|e| format!("read output: {e}"))?;
    let exit = launched.wait().map_err(|e| format!("wait: {e}"))?;
    Ok(Ran { output, exit })
}

fn check(condition: bool, what: &str, ran: &Ran) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(format!(
            "{what}; the container printed:\n{}\n(exit {:?})",
            ran.output, ran.exit
        ))
    }
}

/// The calling process has no children left (none leaked, all reaped).
fn no_children_left() -> Result<(), String> {
    match rustix::process::waitid(
        rustix::process::WaitId::All,
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
    ) {
        Err(rustix::io::Errno::CHILD) => Ok(()),
        other => Err(format!("a child process is left: {other:?}")),
    }
}

#[test]
fn a_container_runs_isolated_with_caps_no_new_privs_and_seccomp() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let script = "echo hello; echo pid=$$; id; hostname; \
        grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
        hostname other 2>&1; echo kcore=$(cat /proc/kcore | wc -c); \
        echo x > /secret.txt; echo secret=$(cat /secret.txt)$(ls /secret-dir); \
        ls -l /dev/null /dev/ptmx /dev/fd; grep -E '^Sig(Blk|Ign):' /proc/self/status; \
        echo 1 > /proc/sys/kernel/domainname 2>&1 || echo proc-sys-readonly";
    let result = in_child_process(|| {
        // A monitor blocks signals for its signalfd; the container must not inherit that.
        let term = nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGTERM);
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&term), None)
            .map_err(|e| format!("sigprocmask: {e}"))?;
        let ran = run(base_spec(&["sh", "-c", script]), rootfs.path(), vec![])?;
        let out = &ran.output;
        check(ran.exit == Exit::Code(0), "exit code 0", &ran)?;
        check(out.starts_with("hello\n"), "hello first", &ran)?;
        check(out.contains("pid=1\n"), "pid 1 in its namespace", &ran)?;
        check(out.contains("uid=0(root) gid=0(root)"), "root user", &ran)?;
        check(
            out.contains("\ncarrack-test\n"),
            "the spec's hostname",
            &ran,
        )?;
        check(
            out.contains("CapEff:\t00000000a80425fb"),
            "the 14 default caps",
            &ran,
        )?;
        check(
            out.contains("CapBnd:\t00000000a80425fb"),
            "bounding set too",
            &ran,
        )?;
        check(out.contains("NoNewPrivs:\t1"), "no_new_privs", &ran)?;
        check(out.contains("Seccomp:\t2"), "seccomp filter mode", &ran)?;
        check(
            out.contains("Operation not permitted"),
            "sethostname refused by seccomp",
            &ran,
        )?;
        check(
            out.contains("kcore=0\n"),
            "/proc/kcore masked (or absent)",
            &ran,
        )?;
        check(
            out.contains("secret=\n"),
            "masked file and directory read empty",
            &ran,
        )?;
        check(
            out.contains("SigBlk:\t0000000000000000"),
            "no blocked signals",
            &ran,
        )?;
        check(out.contains("/dev/ptmx -> pts/ptmx"), "ptmx link", &ran)?;
        check(out.contains("/dev/fd -> /proc/self/fd"), "fd link", &ran)?;
        check(
            out.contains("proc-sys-readonly"),
            "/proc/sys read-only",
            &ran,
        )?;
        no_children_left()
    });
    result.expect("container run");
}

#[test]
fn a_read_only_rootfs_with_an_unprivileged_user_and_bind_mounts() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let shared = tempfile::tempdir().expect("temp dir");
    std::fs::write(shared.path().join("hello.txt"), "from the host\n").expect("write");
    let writable = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(
        writable.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let script = "touch /newfile 2>&1; id; cat /data/hello.txt; touch /data/x 2>&1; \
        echo written > /rw/out && echo wrote-rw; cat /proc/self/oom_score_adj; \
        grep -E '^(CapEff|CapPrm):' /proc/self/status; pwd";
    let mut spec = base_spec(&["sh", "-c", script]);
    spec["root"]["readonly"] = json!(true);
    spec["process"]["user"] = json!({"uid": 65534, "gid": 65534, "additionalGids": [65534]});
    spec["process"]["cwd"] = json!("/tmp");
    // Below the inherited value: refused here (no CAP_SYS_RESOURCE), which must not fail.
    spec["process"]["oomScoreAdj"] = json!(-999);
    let mounts = spec["mounts"].as_array_mut().expect("mounts");
    mounts.push(json!({"destination": "/data", "type": "bind",
        "source": shared.path(), "options": ["rbind", "ro", "nosuid", "nodev"]}));
    mounts.push(json!({"destination": "/rw", "type": "bind",
        "source": writable.path(), "options": ["bind", "rprivate"]}));
    let result = in_child_process(|| {
        let ran = run(spec, rootfs.path(), vec![])?;
        let out = &ran.output;
        check(ran.exit == Exit::Code(0), "exit code 0", &ran)?;
        check(
            out.contains("/newfile: Read-only file system"),
            "read-only rootfs",
            &ran,
        )?;
        check(
            out.contains("uid=65534(nobody) gid=65534(nogroup)"),
            "user 65534",
            &ran,
        )?;
        check(out.contains("from the host\n"), "bind mount visible", &ran)?;
        check(
            out.contains("/data/x: Read-only file system"),
            "read-only bind",
            &ran,
        )?;
        check(out.contains("wrote-rw"), "writable bind", &ran)?;
        check(
            out.contains("CapEff:\t0000000000000000"),
            "no effective caps as nobody",
            &ran,
        )?;
        check(out.ends_with("/tmp\n"), "cwd", &ran)?;
        no_children_left()
    });
    result.expect("container run");
    let written = std::fs::read_to_string(writable.path().join("out")).expect("written on host");
    assert_eq!(written, "written\n");
    // The mount points were made in the rootfs; the mounts themselves died with the container.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(&*rootfs.path().to_string_lossy()),
        "{mountinfo}"
    );
}

#[test]
fn a_missing_program_is_a_precise_error_and_leaves_no_process() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let result = in_child_process(|| {
        let spec = serde_json::from_value(base_spec(&["/bin/nope"])).map_err(|e| e.to_string())?;
        let err = launch(LaunchRequest {
            spec,
            rootfs: rootfs.path().to_owned(),
            stdio: Stdio::default(),
            cgroup_procs_files: vec![],
        })
        .err()
        .ok_or("launch of a missing program succeeded")?;
        let text = err.to_string();
        if text != "exec /bin/nope: ENOENT (No such file or directory)" {
            return Err(format!("unexpected error: {text}"));
        }
        no_children_left()?;

        let spec = serde_json::from_value(base_spec(&["nope"])).map_err(|e| e.to_string())?;
        let err = launch(LaunchRequest {
            spec,
            rootfs: rootfs.path().to_owned(),
            stdio: Stdio::default(),
            cgroup_procs_files: vec![],
        })
        .err()
        .ok_or("launch of a missing program succeeded")?;
        let text = err.to_string();
        if text != "exec nope (searched PATH /bin): ENOENT (No such file or directory)" {
            return Err(format!("unexpected error: {text}"));
        }
        no_children_left()
    });
    result.expect("precise errors");
}

#[test]
fn a_failing_mount_names_its_destination() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let mut spec = base_spec(&["true"]);
    let mounts = spec["mounts"].as_array_mut().expect("mounts");
    mounts.push(json!({"destination": "/weird", "type": "nosuchfs", "source": "none"}));
    let result = in_child_process(|| {
        let spec = serde_json::from_value(spec).map_err(|e| e.to_string())?;
        let err = launch(LaunchRequest {
            spec,
            rootfs: rootfs.path().to_owned(),
            stdio: Stdio::default(),
            cgroup_procs_files: vec![],
        })
        .err()
        .ok_or("a mount of an unknown filesystem succeeded")?;
        let text = err.to_string();
        if !text.starts_with("mount /weird (nosuchfs): ENODEV") {
            return Err(format!("unexpected error: {text}"));
        }
        no_children_left()
    });
    result.expect("precise mount error");
}

#[test]
fn the_process_starts_in_its_cgroup_with_its_own_cgroup_namespace_and_mount() {
    let hierarchy = Path::new("/sys/fs/cgroup/pids");
    if !can_run() || !hierarchy.join("cgroup.procs").exists() {
        return;
    }
    let rootfs = busybox_rootfs();
    let cgroup = hierarchy.join(format!("carrack-executor-test-{}", std::process::id()));
    std::fs::create_dir(&cgroup).expect("create cgroup");
    let script = "cat /proc/self/cgroup; \
        grep -qx 1 /sys/fs/cgroup/pids/cgroup.procs && echo own-cgroup-visible; \
        ls /sys/fs/cgroup; mkdir /sys/fs/cgroup/x 2>&1; exit 0";
    let mut spec = base_spec(&["sh", "-c", script]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "cgroup"}));
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
    }));
    let procs = cgroup.join("cgroup.procs");
    let result = in_child_process(|| {
        let ran = run(spec, rootfs.path(), vec![procs])?;
        check(ran.exit == Exit::Code(0), "exit code 0", &ran)?;
        let pids_line = ran.output.lines().find(|line| line.contains(":pids:"));
        check(
            pids_line.is_some_and(|line| line.ends_with(":pids:/")),
            "the cgroup namespace is rooted at the container's cgroup",
            &ran,
        )?;
        check(
            ran.output.contains("own-cgroup-visible\n"),
            "the mounted hierarchy shows the container's own cgroup",
            &ran,
        )?;
        check(
            ran.output
                .contains("/sys/fs/cgroup/x': Read-only file system"),
            "a read-only cgroup tmpfs",
            &ran,
        )
    });
    let removed = std::fs::remove_dir(&cgroup);
    result.expect("container in its cgroup");
    removed.expect("remove the test cgroup");
}
