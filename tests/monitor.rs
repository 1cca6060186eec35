//! Root integration tests of `carrack-monitor monitor <dir>`: the real binary runs busybox
//! containers from a runtime directory in a temp dir (a plain rootfs directory, which the
//! executor bind-mounts; no cgroups), and the tests check its start report, the CRI log, the
//! control socket and the exit record.
//!
//! Every test returns early (passes) unless run as root with `/bin/busybox` present. A
//! [`Monitor`] kills its container and its monitor on drop if a test fails half-way, and
//! the temp dirs are removed.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use carrack::monitor::client;
use carrack::monitor::protocol::{
    CONFIG_FILE, ExitRecord, MONITOR_FILE, MonitorConfig, ROOTFS_DIR, Request, Response,
    SOCKET_FILE, StartReport,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

const BUSYBOX: &str = "/bin/busybox";

/// The applets the test containers use.
const APPLETS: [&str; 9] = [
    "sh", "echo", "printf", "sleep", "stty", "test", "[", "cat", "true",
];

/// How long anything in these tests may take.
const TIMEOUT: Duration = Duration::from_secs(20);

fn can_run() -> bool {
    if nix::unistd::geteuid().is_root() && Path::new(BUSYBOX).exists() {
        true
    } else {
        eprintln!("skipped: needs root and {BUSYBOX}");
        false
    }
}

/// How a test container is set up.
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    /// Run it in its own PID namespace (as pid 1, which ignores SIGTERM).
    pid_namespace: bool,
    /// Give it a terminal.
    tty: bool,
    /// Have the monitor ask us to place the process (as for a systemd scope) and answer
    /// with this line.
    placement_answer: Option<&'static str>,
}

/// A monitor process started on a fresh runtime directory, with its start report.
struct Monitor {
    dir: tempfile::TempDir,
    child: Child,
    report: StartReport,
    /// The `Placing` line that came before the report, with `placement_answer`.
    placing: Option<StartReport>,
}

impl Monitor {
    /// Writes a runtime directory for `args` and starts `carrack monitor` on it.
    fn start(args: &[&str], options: Options) -> Monitor {
        let dir = tempfile::Builder::new()
            .prefix("carrack-monitor-test-")
            .tempdir()
            .expect("temp dir");
        let rootfs = dir.path().join(ROOTFS_DIR);
        busybox_rootfs(&rootfs);
        let mut namespaces = vec![json!({"type": "mount"}), json!({"type": "ipc"})];
        if options.pid_namespace {
            namespaces.push(json!({"type": "pid"}));
        }
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": options.tty,
                "args": args,
                "env": ["PATH=/bin"],
                "cwd": "/",
                "user": {"uid": 0, "gid": 0}
            },
            "root": {"path": ROOTFS_DIR},
            // A fresh /dev, which the executor fills with the standard devices (the shell's
            // background jobs read /dev/null).
            "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "mode=755", "size=1024k"]}],
            "linux": {"namespaces": namespaces}
        });
        std::fs::write(dir.path().join(CONFIG_FILE), spec.to_string()).expect("config.json");
        let config = MonitorConfig {
            container_id: "test".to_owned(),
            rootfs,
            // In a directory that does not exist yet: the monitor creates it.
            log_path: Some(dir.path().join("logs").join("0.log")),
            cgroup_procs_files: Vec::new(),
            placed_by_daemon: options.placement_answer.is_some(),
            oom_counter_files: Vec::new(),
            tty: options.tty,
            stdin: false,
            stdin_once: false,
        };
        std::fs::write(
            dir.path().join(MONITOR_FILE),
            serde_json::to_vec(&config).expect("json"),
        )
        .expect("monitor.json");

        // The small binary the daemon starts monitors from (`carrack monitor` is the same code).
        let mut child = Command::new(env!("CARGO_BIN_EXE_carrack-monitor"))
            .arg("monitor")
            .arg(dir.path())
            .stdin(if options.placement_answer.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn carrack-monitor monitor");
        // The monitor closes its stdout after the report line: read to the end, bounded.
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout pipe"));
        let stdin = child.stdin.take();
        let answer = options.placement_answer;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut placing = String::new();
            if let (Some(answer), Some(mut stdin)) = (answer, stdin) {
                if let Err(err) = stdout.read_line(&mut placing) {
                    let _ = sender.send(Err(err));
                    return;
                }
                let _ = writeln!(stdin, "{answer}");
            }
            let mut text = String::new();
            let result = stdout.read_to_string(&mut text).map(|_| (placing, text));
            let _ = sender.send(result);
        });
        let (placing, text) = match receiver.recv_timeout(TIMEOUT) {
            Ok(Ok(text)) => text,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no start report: {other:?}");
            }
        };
        let report = match serde_json::from_str(text.trim_end()) {
            Ok(report) => report,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("bad start report {text:?}: {err}");
            }
        };
        let placing = (!placing.is_empty())
            .then(|| serde_json::from_str(placing.trim_end()).expect("placing line"));
        Monitor {
            dir,
            child,
            report,
            placing,
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("logs").join("0.log")
    }

    /// The container's pid (the test fails if it did not start).
    fn container_pid(&self) -> i32 {
        match &self.report {
            StartReport::Started { pid, .. } => *pid,
            StartReport::Failed { message } => panic!("start failed: {message}"),
            StartReport::Placing { pid } => panic!("not started: {pid} waits to be placed"),
        }
    }

    fn request(&self, request: Request) -> Response {
        client::request(self.dir(), &request, Duration::from_secs(5)).expect("request")
    }

    /// Waits for the monitor to exit and returns its exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the monitor did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit record, which must exist.
    fn exit_record(&self) -> ExitRecord {
        client::read_exit(self.dir())
            .expect("read exit.json")
            .expect("exit.json written")
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // A test failed with the container running: kill it, and the monitor follows.
        if let StartReport::Started { pid, .. } = self.report {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A busybox root filesystem at `root`: a copy of the binary and the applets hard-linked.
fn busybox_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).expect("mkdir rootfs");
    let binary = root.join("bin/busybox");
    // `cp` holds the only writable fd: one of ours could be inherited by a child another test
    // thread spawns meanwhile, and executing the copy then fails with ETXTBSY.
    let copied = Command::new("cp")
        .arg(BUSYBOX)
        .arg(&binary)
        .status()
        .expect("run cp");
    assert!(copied.success(), "cp busybox: {copied}");
    for applet in APPLETS {
        std::fs::hard_link(&binary, root.join("bin").join(applet)).expect("link applet");
    }
}

/// The records of a CRI log file as (stream, tag, content), checking each timestamp's shape.
fn log_records(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_terminator('\n')
        .map(|line| {
            let mut fields = line.splitn(4, ' ');
            let stamp = fields.next().unwrap_or_default();
            assert!(
                stamp.len() == 30 && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z'),
                "bad timestamp in {line:?}"
            );
            let mut field = || fields.next().expect("field").to_owned();
            (field(), field(), field())
        })
        .collect()
}

fn record(stream: &str, tag: &str, content: &str) -> (String, String, String) {
    (stream.to_owned(), tag.to_owned(), content.to_owned())
}

/// Waits until the log at `path` has a record whose content starts with `content`.
fn wait_for_log(path: &Path, content: &str) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let records = log_records(path);
        if records.iter().any(|(_, _, c)| c.starts_with(content)) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{content:?} never logged; log: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` exists (a zombie counts).
fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn output_goes_to_the_cri_log_and_the_exit_is_recorded() {
    if !can_run() {
        return;
    }
    let mut monitor = Monitor::start(
        &["sh", "-c", "echo hello; echo err >&2; printf partial"],
        Options {
            pid_namespace: true,
            tty: false,
            placement_answer: None,
        },
    );
    let StartReport::Started {
        pid,
        monitor_pid,
        started_at_ns,
        ..
    } = monitor.report
    else {
        panic!("start failed: {:?}", monitor.report);
    };
    assert!(pid > 0 && started_at_ns > 0);
    assert_eq!(u32::try_from(monitor_pid).ok(), Some(monitor.child.id()));
    assert_eq!(monitor.wait(), 0);

    let exit = monitor.exit_record();
    assert_eq!(
        (
            exit.exit_code,
            exit.signal,
            exit.oom_killed,
            &exit.start_error
        ),
        (0, None, false, &None)
    );
    assert!(exit.finished_at_ns >= started_at_ns);
    let mut records = log_records(&monitor.log_path());
    // The two streams are separate pipes: their relative order is not defined.
    records.sort();
    assert_eq!(
        records,
        vec![
            record("stderr", "F", "err"),
            record("stdout", "F", "hello"),
            record("stdout", "P", "partial"),
        ]
    );
    assert!(!monitor.dir().join(SOCKET_FILE).exists());
    assert_eq!(
        client::read_pid(monitor.dir()).expect("pid"),
        Some(monitor_pid)
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(monitor.log_path())
            .expect("log")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn a_signal_request_stops_the_container_but_sigterm_to_the_monitor_does_not() {
    if !can_run() {
        return;
    }
    let mut monitor = Monitor::start(&["sleep", "100"], Options::default());
    let pid = monitor.container_pid();
    let StartReport::Started { monitor_pid, .. } = monitor.report else {
        unreachable!("checked by container_pid");
    };
    assert_eq!(client::read_exit(monitor.dir()).expect("read"), None);

    // The monitor ignores the termination signals.
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        kill(Pid::from_raw(monitor_pid), signal).expect("signal the monitor");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(monitor.child.try_wait().expect("try_wait").is_none());
    assert!(process_exists(pid));

    // Requests it cannot honour get an error answer, and it keeps serving.
    let no_tty = monitor.request(Request::Resize {
        width: 80,
        height: 24,
    });
    assert!(matches!(no_tty, Response::Error { .. }), "{no_tty:?}");
    let realtime = monitor.request(Request::Signal { signal: 40 });
    assert!(matches!(realtime, Response::Error { .. }), "{realtime:?}");
    assert_eq!(monitor.request(Request::ReopenLog), Response::Ok);

    assert_eq!(
        monitor.request(Request::Signal { signal: 15 }),
        Response::Ok
    );
    assert_eq!(monitor.wait(), 0);
    let exit = monitor.exit_record();
    assert_eq!((exit.exit_code, exit.signal), (143, Some(15)));
    assert!(!process_exists(pid));
    // Its socket is gone: the monitor is unreachable.
    let err = client::request(
        monitor.dir(),
        &Request::Signal { signal: 9 },
        Duration::from_secs(1),
    )
    .expect_err("monitor gone");
    assert_eq!(err.kind(), carrack::error_kind::ErrorKind::Unavailable);
}

#[test]
fn a_failed_start_is_reported_and_recorded() {
    if !can_run() {
        return;
    }
    let mut monitor = Monitor::start(&["/bin/nope"], Options::default());
    let StartReport::Failed { message } = &monitor.report else {
        panic!("started: {:?}", monitor.report);
    };
    assert!(message.contains("/bin/nope"), "{message}");
    let message = message.clone();
    assert_ne!(monitor.wait(), 0);
    let exit = monitor.exit_record();
    assert_eq!(exit.exit_code, 128);
    assert_eq!(exit.start_error, Some(message));
    assert!(!monitor.dir().join(SOCKET_FILE).exists());
}

#[test]
fn reopen_log_moves_later_output_to_a_new_file() {
    if !can_run() {
        return;
    }
    let mut monitor = Monitor::start(
        &[
            "sh",
            "-c",
            "echo one; while [ ! -e /go ]; do sleep 0.05; done; echo two",
        ],
        Options::default(),
    );
    monitor.container_pid();
    let log = monitor.log_path();
    wait_for_log(&log, "one");
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    assert_eq!(monitor.request(Request::ReopenLog), Response::Ok);
    std::fs::write(monitor.dir().join(ROOTFS_DIR).join("go"), "").expect("go");
    assert_eq!(monitor.wait(), 0);
    assert_eq!(monitor.exit_record().exit_code, 0);
    assert_eq!(log_records(&rotated), vec![record("stdout", "F", "one")]);
    assert_eq!(log_records(&log), vec![record("stdout", "F", "two")]);
}

#[test]
fn a_terminal_merges_output_and_can_be_resized() {
    if !can_run() {
        return;
    }
    let mut monitor = Monitor::start(
        &[
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo tty; echo err >&2; \
             while [ ! -e /go ]; do sleep 0.05; done; stty size",
        ],
        Options {
            pid_namespace: true,
            tty: true,
            placement_answer: None,
        },
    );
    monitor.container_pid();
    wait_for_log(&monitor.log_path(), "err\r");
    assert_eq!(
        monitor.request(Request::Resize {
            width: 100,
            height: 40
        }),
        Response::Ok
    );
    std::fs::write(monitor.dir().join(ROOTFS_DIR).join("go"), "").expect("go");
    assert_eq!(monitor.wait(), 0);
    assert_eq!(monitor.exit_record().exit_code, 0);
    // The terminal turns "\n" into "\r\n"; the "\r" is content.
    assert_eq!(
        log_records(&monitor.log_path()),
        vec![
            record("stdout", "F", "tty\r"),
            record("stdout", "F", "err\r"),
            record("stdout", "F", "40 100\r"),
        ]
    );
}

#[test]
fn orphans_are_reaped_and_cannot_hold_the_monitor_after_the_exit() {
    if !can_run() {
        return;
    }
    // Without a PID namespace, the container's orphans are reparented to the monitor (its
    // subreaper). The first exits at once and must be reaped; the second outlives the
    // container holding its stdout open.
    let mut monitor = Monitor::start(
        &[
            "sh",
            "-c",
            "sh -c 'sleep 0.1 & echo short=$!'; sh -c 'sleep 100 & echo long=$!'; \
             while [ ! -e /go ]; do sleep 0.05; done",
        ],
        Options::default(),
    );
    monitor.container_pid();
    let records = wait_for_log(&monitor.log_path(), "long=");
    let pid_of = |name: &str| {
        records
            .iter()
            .find_map(|(_, _, content)| content.strip_prefix(name)?.parse::<i32>().ok())
            .unwrap_or_else(|| panic!("no {name} pid in {records:?}"))
    };
    let short = pid_of("short=");
    let long = pid_of("long=");
    // Killed at the end whatever happens (the pid cannot be reused while it is our
    // grandchild's orphan or a zombie, and it is gone from /proc once reaped).
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let _long_guard = KillOnDrop(long);

    let deadline = Instant::now() + Duration::from_secs(5);
    while process_exists(short) {
        assert!(Instant::now() < deadline, "orphan {short} was not reaped");
        std::thread::sleep(Duration::from_millis(50));
    }

    std::fs::write(monitor.dir().join(ROOTFS_DIR).join("go"), "").expect("go");
    let stopping = Instant::now();
    assert_eq!(monitor.wait(), 0);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the monitor waited for the orphan's pipe"
    );
    assert_eq!(monitor.exit_record().exit_code, 0);
    assert!(process_exists(long));
}

#[test]
fn a_process_placed_by_the_daemon_runs_once_the_daemon_says_so() {
    if !can_run() {
        return;
    }
    let mut monitor = Monitor::start(
        &["echo", "placed"],
        Options {
            placement_answer: Some("placed"),
            ..Options::default()
        },
    );
    let Some(StartReport::Placing { pid }) = monitor.placing.clone() else {
        panic!("no placing line before {:?}", monitor.report);
    };
    assert_eq!(monitor.container_pid(), pid);
    assert_eq!(monitor.wait(), 0);
    let log = wait_for_log(&monitor.log_path(), "placed");
    assert_eq!(log, [record("stdout", "F", "placed")]);
}

#[test]
fn a_refused_placement_fails_the_start_and_kills_the_waiting_process() {
    if !can_run() {
        return;
    }
    let mut monitor = Monitor::start(
        &["echo", "ran"],
        Options {
            placement_answer: Some("systemd refused the scope"),
            ..Options::default()
        },
    );
    let Some(StartReport::Placing { pid }) = monitor.placing.clone() else {
        panic!("no placing line before {:?}", monitor.report);
    };
    match &monitor.report {
        StartReport::Failed { message } => {
            assert!(message.contains("systemd refused the scope"), "{message}");
            assert!(message.contains(&pid.to_string()), "{message}");
        }
        other => panic!("started anyway: {other:?}"),
    }
    monitor.wait();
    assert!(!process_exists(pid), "the waiting process {pid} lives on");
    assert!(
        !monitor.log_path().exists()
            || !std::fs::read_to_string(monitor.log_path())
                .unwrap_or_default()
                .contains("ran")
    );
}
