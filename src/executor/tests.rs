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
    // Copied by `cp`, not `fs::copy`: a writable fd of ours would be inherited by any child
    // another test thread clones meanwhile, and executing the copy while such a child still
    // holds it fails with ETXTBSY. Only `cp` ever holds this one open for writing.
    let copied = std::process::Command::new("cp")
        .arg(BUSYBOX)
        .arg(&binary)
        .status()
        .expect("run cp");
    assert!(copied.success(), "cp busybox: {copied}");
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
        place: None,
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

/// Launches `spec` on `rootfs`, joining `cgroup_procs_files`, and returns the error the launch
/// must end with; `unexpected` if it succeeded.
fn failed_launch(
    spec: Value,
    rootfs: &Path,
    cgroup_procs_files: Vec<PathBuf>,
    unexpected: &str,
) -> Result<ExecutorError, String> {
    let spec = serde_json::from_value(spec).map_err(|e| e.to_string())?;
    launch(LaunchRequest {
        spec,
        rootfs: rootfs.to_owned(),
        stdio: Stdio::default(),
        cgroup_procs_files,
        place: None,
    })
    .err()
    .ok_or_else(|| unexpected.to_owned())
}

#[test]
fn a_missing_program_is_a_precise_error_and_leaves_no_process() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let result = in_child_process(|| {
        let err = failed_launch(
            base_spec(&["/bin/nope"]),
            rootfs.path(),
            vec![],
            "launch of a missing program succeeded",
        )?;
        let text = err.to_string();
        if text != "exec /bin/nope: ENOENT (No such file or directory)" {
            return Err(format!("unexpected error: {text}"));
        }
        no_children_left()?;

        let err = failed_launch(
            base_spec(&["nope"]),
            rootfs.path(),
            vec![],
            "launch of a missing program succeeded",
        )?;
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
        let err = failed_launch(
            spec,
            rootfs.path(),
            vec![],
            "a mount of an unknown filesystem succeeded",
        )?;
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
    // `cgroup.procs` gets the pid from the parent; the process writes itself into `tasks`.
    let result = ["cgroup.procs", "tasks"].into_iter().try_for_each(|file| {
        let join = cgroup.join(file);
        in_child_process(|| {
            let ran = run(spec.clone(), rootfs.path(), vec![join])?;
            check_cgroup_run(&ran)
        })
        .map_err(|err| format!("joined through {file}: {err}"))
    });
    let removed = std::fs::remove_dir(&cgroup);
    result.expect("container in its cgroup");
    removed.expect("remove the test cgroup");
}

#[test]
fn a_cgroup_the_process_cannot_join_is_named() {
    // A new v1 cpuset cgroup has no CPUs: joining it fails with ENOSPC.
    let hierarchy = Path::new("/sys/fs/cgroup/cpuset");
    if !can_run() || !hierarchy.join("tasks").exists() {
        return;
    }
    let rootfs = busybox_rootfs();
    let cgroup = hierarchy.join(format!("carrack-executor-empty-{}", std::process::id()));
    std::fs::create_dir(&cgroup).expect("create cgroup");
    let empty = std::fs::read_to_string(cgroup.join("cpuset.cpus")).expect("cpuset.cpus");
    let tasks = cgroup.join("tasks");
    let result = in_child_process(|| {
        if !empty.trim().is_empty() {
            return Ok(());
        }
        let err = failed_launch(
            base_spec(&["true"]),
            rootfs.path(),
            vec![tasks.clone()],
            "joining a cpuset without CPUs succeeded",
        )?;
        let expected = format!("add process to cgroup {}: ", tasks.display());
        match &err {
            ExecutorError::Cgroup { source, .. }
                if err.to_string().starts_with(&expected)
                    && source.raw_os_error() == Some(libc::ENOSPC) => {}
            _ => return Err(format!("unexpected error: {err}")),
        }
        no_children_left()
    });
    let removed = std::fs::remove_dir(&cgroup);
    result.expect("precise cgroup error");
    removed.expect("remove the test cgroup");
}

/// What the container of the cgroup test printed: its cgroup namespace is rooted at its own
/// cgroup, which the read-only cgroup mount shows.
fn check_cgroup_run(ran: &Ran) -> Result<(), String> {
    check(ran.exit == Exit::Code(0), "exit code 0", ran)?;
    let pids_line = ran.output.lines().find(|line| line.contains(":pids:"));
    check(
        pids_line.is_some_and(|line| line.ends_with(":pids:/")),
        "the cgroup namespace is rooted at the container's cgroup",
        ran,
    )?;
    check(
        ran.output.contains("own-cgroup-visible\n"),
        "the mounted hierarchy shows the container's own cgroup",
        ran,
    )?;
    check(
        ran.output
            .contains("/sys/fs/cgroup/x': Read-only file system"),
        "a read-only cgroup tmpfs",
        ran,
    )
}

/// The container of the exec tests: `sleep 30` as user 1000 with two ambient capabilities
/// (so that the exec'd process's user and capabilities can only come from the spec) and a
/// seccomp profile that fails `sethostname` with ENOSYS (an errno no other check gives).
fn exec_container_spec(args: &[&str]) -> Value {
    let mut spec = base_spec(args);
    let caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    spec["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [1000]});
    spec["process"]["capabilities"] = json!({
        "bounding": DEFAULT_CAPS, "effective": caps, "permitted": caps,
        "inheritable": caps, "ambient": caps
    });
    spec["linux"]["seccomp"]["syscalls"] = json!([
        {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}
    ]);
    spec
}

/// Launches the exec tests' `sleep 30` container on `rootfs`.
fn launch_sleeper(rootfs: &Path, cgroup_procs_files: Vec<PathBuf>) -> Result<Launched, String> {
    let spec = serde_json::from_value(exec_container_spec(&["sleep", "30"]))
        .map_err(|e| format!("spec: {e}"))?;
    let stdin = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    launch(LaunchRequest {
        spec,
        rootfs: rootfs.to_owned(),
        stdio: Stdio {
            stdin: Some(stdin.into()),
            ..Stdio::default()
        },
        cgroup_procs_files,
        place: None,
    })
    .map_err(|e| format!("launch: {e}"))
}

/// The request to run `args` in the container of `target`, with stdout and stderr into a
/// pipe whose read end is returned.
fn exec_request(
    args: &[&str],
    target: &Launched,
    cgroup_procs_files: Vec<PathBuf>,
) -> Result<(ExecRequest, std::io::PipeReader), String> {
    let spec = serde_json::from_value(exec_container_spec(args)).map_err(|e| e.to_string())?;
    let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let writer = OwnedFd::from(writer);
    let stderr = writer.try_clone().map_err(|e| format!("dup: {e}"))?;
    let stdin = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let request = ExecRequest {
        spec,
        target_pid: target.pid.as_raw_nonzero().get(),
        stdio: Stdio {
            stdin: Some(stdin.into()),
            stdout: Some(writer),
            stderr: Some(stderr),
        },
        cgroup_procs_files,
    };
    Ok((request, reader))
}

/// Kills and reaps the container of the exec tests.
fn kill(container: &Launched) -> Result<(), String> {
    rustix::process::pidfd_send_signal(&container.pidfd, rustix::process::Signal::KILL)
        .map_err(|e| format!("kill the container: {e}"))?;
    let exit = container.wait().map_err(|e| format!("wait: {e}"))?;
    if exit != Exit::Signal(libc::SIGKILL) {
        return Err(format!("the container ended with {exit:?}"));
    }
    Ok(())
}

/// No child of ours has exited without being reaped (running ones are fine).
fn no_zombie_children() -> Result<(), String> {
    match rustix::process::waitid(
        rustix::process::WaitId::All,
        rustix::process::WaitIdOptions::EXITED
            | rustix::process::WaitIdOptions::NOHANG
            | rustix::process::WaitIdOptions::NOWAIT,
    ) {
        Ok(None) | Err(rustix::io::Errno::CHILD) => Ok(()),
        other => Err(format!("an exited child is left unreaped: {other:?}")),
    }
}

#[test]
fn exec_in_joins_the_containers_namespaces_cgroup_user_caps_and_seccomp() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    std::fs::write(rootfs.path().join("exec-marker"), "inside the rootfs\n").expect("marker");
    let hierarchy = Path::new("/sys/fs/cgroup/pids");
    let cgroup = hierarchy.join(format!("carrack-exec-test-{}", std::process::id()));
    let cgroup_files = if hierarchy.join("cgroup.procs").exists() {
        std::fs::create_dir(&cgroup).expect("create cgroup");
        vec![cgroup.join("cgroup.procs")]
    } else {
        vec![]
    };
    let script = "echo pid=$$; hostname; cat /exec-marker; \
        grep -E '^(CapEff|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; id; \
        hostname other 2>&1; grep pids /proc/self/cgroup; pwd";
    let host_hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let result = in_child_process(|| {
        let container = launch_sleeper(rootfs.path(), cgroup_files.clone())?;
        let outcome = (|| {
            let (request, mut reader) =
                exec_request(&["sh", "-c", script], &container, cgroup_files.clone())?;
            let exec = exec_in(request).map_err(|e| format!("exec_in: {e}"))?;
            let mut output = String::new();
            reader
                .read_to_string(&mut output)
                .map_err(|e| format!("read output: {e}"))?;
            let exit = exec.wait().map_err(|e| format!("wait: {e}"))?;
            let ran = Ran { output, exit };
            let out = &ran.output;
            check(ran.exit == Exit::Code(0), "exit code 0", &ran)?;
            let pid: i32 = out
                .lines()
                .find_map(|line| line.strip_prefix("pid="))
                .and_then(|pid| pid.parse().ok())
                .ok_or_else(|| format!("no pid printed:\n{out}"))?;
            check(
                pid > 1 && pid != exec.pid.as_raw_nonzero().get(),
                "a pid of the container's namespace, not the host's",
                &ran,
            )?;
            check(
                out.contains("\ncarrack-test\n") && host_hostname != "carrack-test",
                "the container's hostname",
                &ran,
            )?;
            check(
                out.contains("inside the rootfs\n"),
                "the container's rootfs",
                &ran,
            )?;
            check(
                out.contains("CapEff:\t0000000000000420")
                    && out.contains("CapAmb:\t0000000000000420"),
                "the spec's capabilities (kill, net_bind_service)",
                &ran,
            )?;
            check(out.contains("NoNewPrivs:\t1"), "no_new_privs", &ran)?;
            check(out.contains("Seccomp:\t2"), "seccomp filter mode", &ran)?;
            check(out.contains("uid=1000 gid=1000"), "the spec's user", &ran)?;
            check(
                out.contains("Function not implemented"),
                "sethostname fails with the profile's ENOSYS",
                &ran,
            )?;
            check(
                cgroup_files.is_empty() || out.contains(":pids:/carrack-exec-test-"),
                "the container's cgroup",
                &ran,
            )?;
            check(out.ends_with("\n/\n"), "the spec's cwd", &ran)?;
            no_zombie_children()
        })();
        kill(&container)?;
        outcome?;
        no_children_left()
    });
    let removed = if cgroup.exists() {
        std::fs::remove_dir(&cgroup)
    } else {
        Ok(())
    };
    result.expect("exec in the container");
    removed.expect("remove the test cgroup");
}

#[test]
fn exec_in_a_missing_program_names_it_and_leaves_no_process() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let result = in_child_process(|| {
        let container = launch_sleeper(rootfs.path(), vec![])?;
        let outcome = (|| {
            let (request, _reader) = exec_request(&["/bin/nope"], &container, vec![])?;
            let err = exec_in(request)
                .err()
                .ok_or("exec of a missing program succeeded")?;
            let text = err.to_string();
            if text != "exec /bin/nope: ENOENT (No such file or directory)" {
                return Err(format!("unexpected error: {text}"));
            }
            if !err.program_not_found() {
                return Err(format!("not reported as a missing program: {err:?}"));
            }
            no_zombie_children()?;
            // A pid that is no container: a process of ours sharing our mount namespace.
            let (request, _reader) = exec_request(&["true"], &container, vec![])?;
            let request = ExecRequest {
                target_pid: rustix::process::getpid().as_raw_nonzero().get(),
                ..request
            };
            let err = exec_in(request)
                .err()
                .ok_or("exec in a process that is no container succeeded")?;
            if !err.to_string().contains("not a container") {
                return Err(format!("unexpected error: {err}"));
            }
            Ok(())
        })();
        kill(&container)?;
        outcome?;
        // The container is gone: its pid can no longer be exec'd in.
        let (request, _reader) = exec_request(&["true"], &container, vec![])?;
        match exec_in(request) {
            Err(ExecutorError::Target { reason, .. }) if reason.contains("no such process") => {}
            other => return Err(format!("exec in an exited container: {other:?}")),
        }
        no_children_left()
    });
    result.expect("precise exec errors");
}

#[test]
fn an_execd_process_dies_with_its_helper() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let result = in_child_process(|| {
        let container = launch_sleeper(rootfs.path(), vec![])?;
        let outcome = (|| {
            let (mut pid_reader, mut pid_writer) =
                std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
            let (request, _reader) = exec_request(&["sleep", "100"], &container, vec![])?;
            // The helper: runs the exec, reports the pid, waits for it. (In this process the
            // closure, with the pipe's write end, is dropped once the helper is forked.)
            let helper = sys::test_support::fork_running(move || {
                let Ok(exec) = exec_in(request) else {
                    return 1;
                };
                let pid = exec.pid.as_raw_nonzero().get().to_string();
                if std::io::Write::write_all(&mut pid_writer, pid.as_bytes()).is_err() {
                    return 2;
                }
                drop(pid_writer);
                match exec.wait() {
                    Ok(_) => 0,
                    Err(_) => 3,
                }
            })?;
            let mut pid = String::new();
            pid_reader
                .read_to_string(&mut pid)
                .map_err(|e| format!("read the pid: {e}"))?;
            let pid: i32 = pid
                .parse()
                .map_err(|_| format!("the helper reported no pid: {pid:?}"))?;
            let stat = PathBuf::from(format!("/proc/{pid}/stat"));
            let state = |stat: &Path| {
                std::fs::read_to_string(stat)
                    .ok()
                    .and_then(|text| text.rsplit_once(") ")?.1.chars().next())
            };
            if state(&stat).is_none_or(|state| state == 'Z') {
                return Err(format!("the exec'd process {pid} is not running"));
            }
            rustix::process::kill_process(helper, rustix::process::Signal::KILL)
                .map_err(|e| format!("kill the helper: {e}"))?;
            rustix::process::waitpid(Some(helper), rustix::process::WaitOptions::empty())
                .map_err(|e| format!("reap the helper: {e}"))?;
            // It dies at once; the container's init (`sleep`, which never reaps) keeps it as
            // a zombie until the container ends.
            for _ in 0..500 {
                if state(&stat).is_none_or(|state| state == 'Z') {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(format!("the exec'd process {pid} outlived its helper"))
        })();
        kill(&container)?;
        outcome?;
        no_children_left()
    });
    result.expect("the exec'd process dies with its helper");
}

#[test]
fn a_container_joins_a_user_namespace_with_mapped_mounts_and_exec_follows() {
    if !can_run() {
        return;
    }
    let rootfs = busybox_rootfs();
    let volume = tempfile::tempdir().expect("temp dir");
    std::fs::write(volume.path().join("owned-by-root"), "volume\n").expect("write");
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id; \
        grep -E '^(CapEff|CapBnd):' /proc/self/status; \
        stat -c 'dev=%u:%g' /dev; stat -c 'null=%u:%g' /dev/null; \
        stat -c 'vol=%u:%g' /vol/owned-by-root; echo new > /vol/made && echo vol-written; \
        echo shm > /dev/shm/x && echo shm-written; mkdir /dev/mine && echo dev-writable; \
        sleep 30";
    let mut spec = base_spec(&["sh", "-c", script]);
    let map = json!([{"containerID": 0, "hostID": 100_000, "size": 65_536}]);
    spec["linux"]["uidMappings"] = map.clone();
    spec["linux"]["gidMappings"] = map.clone();
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/vol", "type": "bind", "source": volume.path(),
        "options": ["rbind", "rw"], "uidMappings": map, "gidMappings": map
    }));
    let result = in_child_process(|| {
        let parked = sys::park_in_new_user_namespace(sys::NewNamespaces::default())
            .map_err(|e| format!("park: {e}"))?;
        let proc_dir = format!("/proc/{}", parked.pid.as_raw_nonzero());
        for file in ["uid_map", "gid_map"] {
            std::fs::write(format!("{proc_dir}/{file}"), "0 100000 65536\n")
                .map_err(|e| format!("{file}: {e}"))?;
        }
        spec["linux"]["namespaces"]
            .as_array_mut()
            .ok_or("namespaces")?
            .push(json!({"type": "user", "path": format!("{proc_dir}/ns/user")}));
        let spec: oci_spec::runtime::Spec =
            serde_json::from_value(spec).map_err(|e| format!("spec: {e}"))?;
        let (mut reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let writer = OwnedFd::from(writer);
        let stderr = writer.try_clone().map_err(|e| format!("dup: {e}"))?;
        let container = launch(LaunchRequest {
            spec,
            rootfs: rootfs.path().to_owned(),
            stdio: Stdio {
                stdin: None,
                stdout: Some(writer),
                stderr: Some(stderr),
            },
            cgroup_procs_files: vec![],
            place: None,
        })
        .map_err(|e| format!("launch: {e}"))?;
        let outcome = (|| {
            // The container's own output, up to its `sleep`.
            let mut output = String::new();
            let mut buf = [0u8; 4096];
            while !output.contains("dev-writable") && !output.contains("Permission denied") {
                let n = reader.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    break;
                }
                output.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            let ran = Ran {
                output,
                exit: Exit::Code(0),
            };
            let out = &ran.output;
            let maps = out.lines().filter(|line| {
                line.split_whitespace().collect::<Vec<_>>() == ["0", "100000", "65536"]
            });
            check(maps.count() == 2, "the pod's uid and gid maps", &ran)?;
            check(out.contains("uid=0(root) gid=0(root)"), "root inside", &ran)?;
            check(
                out.contains("CapEff:\t00000000a80425fb")
                    && out.contains("CapBnd:\t00000000a80425fb"),
                "the 14 default caps, bounding set trimmed after the join",
                &ran,
            )?;
            check(
                out.contains("dev=0:0"),
                "/dev owned by the container's root",
                &ran,
            )?;
            check(out.contains("null=0:0"), "device nodes too", &ran)?;
            check(out.contains("vol=0:0"), "the idmapped volume", &ran)?;
            check(out.contains("vol-written"), "the volume writable", &ran)?;
            check(out.contains("shm-written"), "/dev/shm writable", &ran)?;
            check(out.contains("dev-writable"), "/dev writable", &ran)?;
            let (request, mut reader) = exec_request(
                &[
                    "sh",
                    "-c",
                    "cat /proc/self/uid_map; id -u; stat -c %u /vol/made",
                ],
                &container,
                vec![],
            )?;
            let mut request = request;
            request.spec = {
                let mut spec = exec_container_spec(&[]);
                spec["process"]["args"] = json!([
                    "sh",
                    "-c",
                    "cat /proc/self/uid_map; id -u; stat -c %u /vol/made"
                ]);
                spec["process"]["user"] = json!({"uid": 0, "gid": 0});
                serde_json::from_value(spec).map_err(|e| e.to_string())?
            };
            let exec = exec_in(request).map_err(|e| format!("exec_in: {e}"))?;
            let mut output = String::new();
            reader
                .read_to_string(&mut output)
                .map_err(|e| format!("read exec output: {e}"))?;
            let exit = exec.wait().map_err(|e| format!("wait: {e}"))?;
            let ran = Ran { output, exit };
            let words: Vec<_> = ran.output.split_whitespace().collect();
            check(
                ran.exit == Exit::Code(0) && words == ["0", "100000", "65536", "0", "0"],
                "exec joins the user namespace",
                &ran,
            )?;
            no_zombie_children()
        })();
        kill(&container)?;
        drop(parked.release);
        rustix::process::waitid(
            rustix::process::WaitId::PidFd(std::os::fd::AsFd::as_fd(&parked.pidfd)),
            rustix::process::WaitIdOptions::EXITED,
        )
        .map_err(|e| format!("reap holder: {e}"))?;
        outcome?;
        no_children_left()
    });
    result.expect("container in a user namespace");
    // Written by the container's root through the idmapped volume: the host's root on disk.
    let made = std::fs::metadata(volume.path().join("made")).expect("written on the host");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), 0);
}
