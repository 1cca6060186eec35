//! Root integration tests of the Docker-like command line: the `carrack` binary's client
//! verbs run as a person would run them, against a real daemon in a test node (pods on a
//! bridge + portmap network inside the node's namespace), checking what they print and
//! their exit codes. Table layouts are compared with golden files in `tests/golden/cli/`
//! after masking what changes from run to run (ids, times, sizes).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::cni::write_bridge_conflist;
use support::images;
use support::node::{DAEMON_BIN, Node};
use support::skip_unless_root;

/// How long a test waits for something the CLI started to show up (a bound, not a timing
/// assertion: only a hung daemon hits it).
const SETTLE: Duration = Duration::from_secs(30);

/// A test node with busybox in its registry and a bridge network with port mapping.
fn node() -> Node {
    let node = Node::start();
    node.push(images::busybox(), "library/busybox:latest")
        .expect("push busybox");
    write_bridge_conflist(&node);
    node
}

/// The `carrack` command aimed at the node's daemon, with pod logs in the node's temp dir.
fn carrack(node: &Node) -> Command {
    carrack_at(node, &node.socket_path())
}

/// The `carrack` command aimed at the runtime listening on `socket`, run in the node's network
/// namespace as a user on the node would (the streaming server listens on the node's
/// loopback).
fn carrack_at(node: &Node, socket: &Path) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={}", node.netns_path().display()))
        .arg("--")
        .arg(DAEMON_BIN)
        .arg("--runtime-endpoint")
        .arg(format!("unix://{}", socket.display()))
        .env("CARRACK_LOG_DIR", node.base_dir().join("cli-logs"))
        .env(
            "CARRACK_CONFIG",
            node.base_dir().join("no-such-config.toml"),
        )
        .stdin(Stdio::null());
    command
}

/// Runs `carrack ARGS…` to completion.
fn cli(node: &Node, args: &[&str]) -> Output {
    carrack(node).args(args).output().expect("run carrack")
}

/// Runs `carrack ARGS…` against the runtime on `socket` inside the node's network namespace
/// (as on a real node: a streaming server listens on the loopback of its namespace), writes
/// `input` to its stdin and closes it, and waits for it.
fn piped_at(node: &Node, socket: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", node.netns_path().display()))
        .arg("--")
        .arg(DAEMON_BIN)
        .arg("--runtime-endpoint")
        .arg(format!("unix://{}", socket.display()))
        .env("CARRACK_LOG_DIR", node.base_dir().join("cli-logs"))
        .env(
            "CARRACK_CONFIG",
            node.base_dir().join("no-such-config.toml"),
        )
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn carrack");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// `carrack exec -i ticker …` against the runtime on `socket`: the line typed reaches the
/// command, its stdout and stderr come back apart, and its exit code is the CLI's.
fn exec_i_passes_the_streams(node: &Node, socket: &Path) {
    let output = piped_at(
        node,
        socket,
        &[
            "exec",
            "-i",
            "ticker",
            "sh",
            "-c",
            "read line; echo got $line; echo err >&2; exit 3",
        ],
        "typed\n",
    );
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "got typed\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");
}

/// Runs `carrack ARGS…` against the runtime on `socket` inside the node's network namespace
/// on a terminal (`script` gives it one), as a person types `carrack exec -it …`.
fn on_terminal_at(node: &Node, socket: &Path, args: &str) -> Output {
    terminal_command(node, socket, args)
        .stdin(Stdio::null())
        .output()
        .expect("run script")
}

/// `carrack ARGS…` against the runtime on `socket`, in the node's network namespace, on the
/// terminal `script` gives it.
fn terminal_command(node: &Node, socket: &Path, args: &str) -> Command {
    let command = format!(
        "{DAEMON_BIN} --runtime-endpoint unix://{} {args}",
        socket.display()
    );
    let mut script = Command::new("nsenter");
    script
        .arg(format!("--net={}", node.netns_path().display()))
        .args(["--", "script", "-qec", &command, "/dev/null"])
        .env("CARRACK_LOG_DIR", node.base_dir().join("cli-logs"))
        .env(
            "CARRACK_CONFIG",
            node.base_dir().join("no-such-config.toml"),
        );
    script
}

/// [`on_terminal_at`] with `input` typed on the terminal (`script` passes its stdin on).
fn on_terminal_typing(node: &Node, socket: &Path, args: &str, input: &str) -> Output {
    let mut child = terminal_command(node, socket, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
        .expect("type on the terminal");
    child.wait_with_output().expect("wait for script")
}

/// The log file of the one container `carrack run` made on `node`.
fn container_log(node: &Node) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(node.base_dir().join("cli-logs"))
        .expect("the CLI's pod log directories")
        .map(|entry| entry.expect("log dir entry").path())
        .collect();
    assert_eq!(dirs.len(), 1, "one pod log directory: {dirs:?}");
    dirs[0].join("container.log")
}

/// Rotates container `id`'s log the way kubelet does: renames the file away, then asks the
/// runtime to reopen it (ReopenContainerLog), which makes a new file at the path.
fn rotate_log(node: &Node, id: &str) {
    let log = container_log(node);
    fs::rename(&log, log.with_extension("log.1")).expect("rename the log away");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        node.cri()
            .await
            .runtime
            .reopen_container_log(carrack::proto::ReopenContainerLogRequest {
                container_id: id.to_owned(),
            })
            .await
            .expect("ReopenContainerLog");
    });
    assert!(log.exists(), "the runtime made a new log file");
}

/// Runs `carrack ARGS…`, which must succeed; returns its stdout.
fn ok(node: &Node, args: &[&str]) -> String {
    let output = cli(node, args);
    assert!(
        output.status.success(),
        "carrack {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        tail(&node.daemon_log(), 30),
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `check` until it returns `Some`, up to [`SETTLE`].
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Masks what changes between runs in a table (ids, times, sizes), re-aligning the columns
/// at the header's offsets. Also checks that every cell of the raw table starts exactly where
/// its header does (the layout).
fn masked_table(text: &str, ids: &[&str]) -> String {
    // Offsets are in characters: cells may hold multi-byte ones ("…").
    let mut lines = text.lines().map(|line| line.chars().collect::<Vec<char>>());
    let header = lines.next().expect("a header line");
    // Headers are separated by 3+ spaces; single spaces are inside a header ("IMAGE ID").
    let mut starts = vec![0];
    for at in 3..header.len() {
        if header[at] != ' ' && header[at - 3..at] == [' ', ' ', ' '] {
            starts.push(at);
        }
    }
    let mut rows: Vec<Vec<String>> = vec![cells(&header, &starts)];
    for line in lines {
        for (index, start) in starts.iter().enumerate().skip(1) {
            if line.len() > *start {
                assert!(
                    line[start - 1] == ' ' && line[*start] != ' ',
                    "column {index} of {line:?} does not start at its header's offset {start}:\n{text}"
                );
            }
        }
        let line = &line;
        rows.push(
            cells(line, &starts)
                .into_iter()
                .map(|cell| mask(&cell, ids))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..starts.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let line: String = row
                .iter()
                .enumerate()
                .map(|(column, cell)| format!("{cell:width$}   ", width = widths[column]))
                .collect();
            format!("{}\n", line.trim_end())
        })
        .collect()
}

fn cells(line: &[char], starts: &[usize]) -> Vec<String> {
    starts
        .iter()
        .enumerate()
        .map(|(index, start)| {
            let end = starts
                .get(index + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            let start = (*start).min(end);
            line[start..end]
                .iter()
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .collect()
}

fn mask(cell: &str, ids: &[&str]) -> String {
    if ids.iter().any(|id| !id.is_empty() && cell == *id) {
        return "<ID>".to_owned();
    }
    if cell.ends_with(" ago") {
        return "<AGO>".to_owned();
    }
    let number = cell.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !number.is_empty() && cell.ends_with('B') && number.parse::<f64>().is_ok() {
        return "<SIZE>".to_owned();
    }
    cell.to_owned()
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/cli")
        .join(name)
}

/// Compares with a golden file; `CARRACK_UPDATE_GOLDEN=1` rewrites it instead.
fn assert_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("CARRACK_UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "read {}: {err} (CARRACK_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

fn ps_ids(node: &Node) -> Vec<String> {
    ok(node, &["ps", "-a", "-q"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn run_rm_prints_the_output_and_exits_with_the_command_code() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    let output = cli(
        &node,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo hello; echo oops >&2; exit 3",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "stdout {stdout:?} stderr {stderr:?}"
    );
    assert_eq!(stdout, "hello\n");
    assert!(stderr.contains("oops\n"), "stderr {stderr:?}");
    // The image was pulled on demand, with a line saying so.
    assert!(
        stderr.contains("Unable to find image 'busybox' locally"),
        "{stderr:?}"
    );
    // --rm left neither container nor pod nor log directory.
    assert!(ps_ids(&node).is_empty());
    assert_eq!(ok(&node, &["pods", "-q"]), "");
    let logs = node.base_dir().join("cli-logs");
    assert_eq!(fs::read_dir(&logs).map(Iterator::count).unwrap_or(0), 0);

    // A second run finds the image; a plain success exits 0; env and user flags apply.
    let output = cli(
        &node,
        &[
            "run",
            "--rm",
            "-e",
            "GREETING=hi there",
            "--user",
            "1234:5678",
            "busybox",
            "sh",
            "-c",
            "echo $GREETING $(id -u):$(id -g)",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hi there 1234:5678\n"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("Unable to find image"));

    // Errors are one line and a non-zero exit.
    let output = cli(&node, &["run", "--rm", "busybox", "/no/such/program"]);
    assert!(!output.status.success());
    let output = cli(&node, &["logs", "no-such-container"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "carrack: error: no such container: no-such-container\n"
    );
    assert!(ps_ids(&node).is_empty(), "a failed run leaves nothing");
}

#[test]
fn detached_container_ps_logs_exec_stop_rm() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    let id = ok(
        &node,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo started; echo warn >&2; while :; do sleep 1 & wait $!; done",
        ],
    );
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64, "run -d prints the container id: {id:?}");

    // ps shows it running, by name, with a 12-character id.
    let ps = ok(&node, &["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE     CREATED"), "{ps}");
    let row = ps.lines().nth(1).expect("one container");
    assert!(row.starts_with(&id[..12]), "{ps}");
    assert!(
        row.contains("busybox") && row.contains(" Up ") && row.contains("ticker"),
        "{ps}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&node, &["ps", "--format", "json"])).expect("ps json");
    assert_eq!(json[0]["id"], id.as_str());
    assert_eq!(json[0]["state"], "CONTAINER_RUNNING");
    let pods = ok(&node, &["pods"]);
    assert!(pods.contains("ticker") && pods.contains("Ready"), "{pods}");

    // logs by name and by id prefix; stdout and stderr stay apart.
    let logs = eventually("the first lines in the log", || {
        let output = cli(&node, &["logs", "ticker"]);
        (String::from_utf8_lossy(&output.stdout) == "started\n"
            && String::from_utf8_lossy(&output.stderr) == "warn\n")
            .then_some(output)
    });
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "warn\n");
    // The last two lines are "started" (stdout) and "warn" (stderr).
    let stamped = ok(&node, &["logs", "--timestamps", "--tail", "2", &id[..8]]);
    assert!(
        stamped.ends_with("Z started\n") && stamped.starts_with("20"),
        "{stamped:?}"
    );
    assert_eq!(ok(&node, &["logs", "--tail", "0", "ticker"]), "");

    // exec runs in the container and passes the exit code through.
    assert_eq!(ok(&node, &["exec", "ticker", "hostname"]), "ticker\n");
    let output = cli(&node, &["exec", "ticker", "sh", "-c", "exit 7"]);
    assert_eq!(output.status.code(), Some(7));
    // Interactive sessions over Carrack's streaming server (WebSocket): stdin reaches the
    // command, stdout and stderr come back apart, the exit code too.
    exec_i_passes_the_streams(&node, &node.socket_path());
    // -t: the command's stdin and stdout are a terminal (`[ -t ]`: the pty is the daemon's,
    // so its name in the container's own /dev/pts means nothing, see `tty`).
    let output = on_terminal_at(
        &node,
        &node.socket_path(),
        "exec -it ticker sh -c '[ -t 0 ] && [ -t 1 ] && echo on a terminal; exit 5'",
    );
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains("on a terminal\r\n"), "{output:?}");
    // run -i attaches to the container's own stdin (CRI Attach): the line typed reaches the
    // command, and --rm leaves nothing behind.
    let output = piped_at(
        &node,
        &node.socket_path(),
        &[
            "run",
            "--rm",
            "-i",
            "--name",
            "attached",
            "busybox",
            "sh",
            "-c",
            "read line; echo got $line",
        ],
        "attached\n",
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("got attached"),
        "{output:?}"
    );
    assert_eq!(ps_ids(&node).len(), 1, "run --rm -i left its container");

    // logs -f follows until the container exits, across a rotation (what kubelet does: the
    // file renamed away, then ReopenContainerLog): stop ends it with the trap's last line,
    // written to the new file.
    let mut follower = carrack(&node)
        .args(["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let (lines, followed_lines) = std::sync::mpsc::channel();
    let follower_stdout = follower.stdout.take().expect("logs -f stdout");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(follower_stdout)) {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(
        followed_lines.recv_timeout(SETTLE).as_deref(),
        Ok("started"),
        "logs -f printed the log so far"
    );
    rotate_log(&node, &id);
    // rm refuses a running container without -f.
    let output = cli(&node, &["rm", "ticker"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is running"));
    assert_eq!(ok(&node, &["stop", "ticker"]), "ticker\n");
    let followed = follower
        .wait_with_output()
        .expect("logs -f exits when the container does");
    assert!(followed.status.success(), "{followed:?}");
    reader.join().expect("logs -f reader");
    let rest: Vec<String> = followed_lines.try_iter().collect();
    assert_eq!(rest, ["bye"], "logs -f after the rotation");
    assert!(
        fs::read_to_string(container_log(&node).with_extension("log.1"))
            .expect("the rotated log")
            .contains(" stdout F started\n"),
        "the rotated file kept the first line"
    );

    let ps = ok(&node, &["ps"]);
    assert_eq!(ps.lines().count(), 1, "only the header: {ps}");
    let all = ok(&node, &["ps", "-a"]);
    assert!(all.contains("Exited (0)"), "{all}");

    // inspect gives the container's verbose status as JSON.
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&node, &["inspect", "ticker"])).expect("inspect json");
    assert_eq!(inspect[0]["kind"], "container");
    assert_eq!(inspect[0]["status"]["id"], id.as_str());
    assert_eq!(inspect[0]["status"]["state"], "CONTAINER_EXITED");

    assert_eq!(ok(&node, &["rm", "ticker"]), "ticker\n");
    assert!(ps_ids(&node).is_empty());
    assert_eq!(
        ok(&node, &["pods", "-q"]),
        "",
        "the pod went with its container"
    );
}

/// The network namespace `run --rm [extra…] busybox` sees, as `net:[inode]`.
fn netns_seen_by_run(node: &Node, extra: &[&str]) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.extend(["busybox", "readlink", "/proc/self/ns/net"]);
    ok(node, &args).trim().to_owned()
}

#[test]
fn run_it_gets_a_terminal_and_network_host_the_nodes_namespace() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    // -it: the container's stdin and stdout are a terminal, the line typed reaches it (read
    // first, so that what it prints comes after the attach), the exit code comes back, and
    // --rm leaves nothing.
    let output = on_terminal_typing(
        &node,
        &node.socket_path(),
        "run --rm -it busybox sh -c 'read line; [ -t 0 ] && [ -t 1 ] && echo on a terminal $line; exit 6'",
        "typed\n",
    );
    assert_eq!(output.status.code(), Some(6), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("on a terminal typed\r\n"),
        "{output:?}"
    );
    assert!(ps_ids(&node).is_empty(), "run --rm -it left its container");
    // A command quicker than the attach still shows its output (from the log).
    let output = on_terminal_at(
        &node,
        &node.socket_path(),
        "run --rm -it busybox sh -c 'echo quick; exit 7'",
    );
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("quick"),
        "{output:?}"
    );

    // --network host: the container is in the node's network namespace (where the daemon
    // runs); without it, in a pod namespace of its own.
    use std::os::unix::fs::MetadataExt;
    let node_netns = format!(
        "net:[{}]",
        fs::metadata(node.netns_path()).expect("node netns").ino()
    );
    assert_eq!(netns_seen_by_run(&node, &["--network", "host"]), node_netns);
    assert_ne!(netns_seen_by_run(&node, &[]), node_netns);
    assert!(ps_ids(&node).is_empty());
    assert_eq!(ok(&node, &["pods", "-q"]), "");
}

#[test]
fn volumes_are_visible_and_published_ports_reachable() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    let shared = node.base_dir().join("shared");
    fs::create_dir_all(&shared).expect("shared dir");
    fs::write(shared.join("index.html"), "served from the host\n").expect("write file");
    let volume = format!("{}:/www:ro", shared.display());

    let output = cli(
        &node,
        &[
            "run",
            "--rm",
            "-v",
            &volume,
            "busybox",
            "cat",
            "/www/index.html",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "served from the host\n"
    );
    let output = cli(
        &node,
        &["run", "--rm", "-v", &volume, "busybox", "touch", "/www/new"],
    );
    assert_ne!(output.status.code(), Some(0), ":ro mounts are read-only");

    // httpd in a pod on the bridge, its port 80 published as the node's 8080.
    ok(
        &node,
        &[
            "run", "-d", "--name", "web", "-v", &volume, "-p", "8080:80", "busybox", "httpd", "-f",
            "-p", "80", "-h", "/www",
        ],
    );
    let body = eventually("the published port to answer", || {
        node.run_in_netns(|| http_get("10.99.0.1:8080"))
            .expect("enter the node's netns")
            .ok()
    });
    assert!(body.ends_with("served from the host\n"), "{body:?}");
    assert_eq!(ok(&node, &["rm", "-f", "web"]), "web\n");
    assert!(ps_ids(&node).is_empty());
}

/// `GET /` over plain TCP, returning the whole response.
fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &addr.parse().map_err(std::io::Error::other)?,
        Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn images_history_and_inspect_output() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    let output = cli(&node, &["pull", "busybox"]);
    assert!(output.status.success(), "{output:?}");
    let pulled = String::from_utf8_lossy(&output.stdout).into_owned();
    // Progress per layer from Carrack's reports: on a pipe, one line per layer when done.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let layers: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("busybox layer ") && line.contains(": done ("))
        .collect();
    assert_eq!(layers.len(), 1, "one line per layer:\n{stderr}");
    assert!(stderr.starts_with("Pulling busybox\n"), "{stderr}");
    let image_id = pulled.trim().to_owned();
    assert!(image_id.starts_with("sha256:"), "{pulled:?}");
    let short = &image_id[7..19];

    let images = ok(&node, &["images"]);
    assert_golden("images.txt", &masked_table(&images, &[short]));
    assert!(images.contains(short), "{images}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&node, &["images", "--format", "json"])).expect("json");
    assert_eq!(json[0]["id"], image_id.as_str());

    let history = ok(&node, &["history", "busybox"]);
    assert_golden("history.txt", &masked_table(&history, &[short]));
    // The layer's size is the runtime's unpacked size, not unknown.
    assert!(
        !history.lines().nth(1).expect("a layer row").contains(" - "),
        "{history}"
    );
    let steps: serde_json::Value =
        serde_json::from_str(&ok(&node, &["history", "--format", "json", short])).expect("json");
    assert!(
        steps[0]["createdBy"]
            .as_str()
            .expect("created by")
            .starts_with("carrack test harness")
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&node, &["inspect", short])).expect("json");
    assert_eq!(inspect[0]["kind"], "image");
    assert_eq!(inspect[0]["status"]["id"], image_id.as_str());
    assert_eq!(
        inspect[0]["info"]["info"]["imageSpec"]["config"]["Cmd"][0],
        "sh"
    );

    let info = ok(&node, &["info"]);
    assert!(info.contains("Runtime:          carrack"), "{info}");
    assert!(info.contains("Images:           1"), "{info}");
    let version = ok(&node, &["version"]);
    assert!(version.contains("Runtime: carrack "), "{version}");

    assert_eq!(
        ok(&node, &["rmi", "busybox"]),
        format!("Deleted: {image_id}\n")
    );
    assert_eq!(ok(&node, &["images", "-q"]), "");
}

#[test]
fn stats_show_running_containers() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    ok(
        &node,
        &[
            "run",
            "-d",
            "--name",
            "busy",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
        ],
    );
    let stats = ok(&node, &["stats", "--no-stream"]);
    let row = stats.lines().nth(1).expect("a row");
    assert!(row.contains("busy") && row.contains('%'), "{stats}");
    // The memory limit is the one asked for (64 MiB ≈ 67.11MB).
    assert!(row.contains("/ 67.11MB"), "{stats}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&node, &["stats", "--format", "json"])).expect("json");
    assert_eq!(json[0]["name"], "busy");
    ok(&node, &["rm", "-f", "busy"]);
}

#[test]
fn imported_archives_run_and_export_round_trips_keep_the_image_id() {
    if !skip_unless_root() {
        return;
    }
    // No registry involved: the image comes only from the archives.
    let node = Node::start();
    write_bridge_conflist(&node);
    let image = images::busybox();
    let dir = node.base_dir().join("archives");
    fs::create_dir_all(&dir).expect("archives dir");

    // A docker save archive, imported from a file, then run.
    let saved = dir.join("saved.tar");
    fs::write(
        &saved,
        support::archive::docker_save(image, &["example.com/tools/box:1.0"]).expect("archive"),
    )
    .expect("write archive");
    let loaded = ok(
        &node,
        &["image", "import", saved.to_str().expect("utf-8 path")],
    );
    assert_eq!(loaded, "Loaded image: example.com/tools/box:1.0\n");
    let id = ok(&node, &["images", "-q"]).trim().to_owned();
    assert_eq!(
        format!("sha256:{id}"),
        image.id()[..19],
        "the image id is the config digest"
    );
    let output = cli(
        &node,
        &["run", "--rm", "example.com/tools/box:1.0", "echo", "hello"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("Pulling"),
        "nothing is pulled"
    );

    // Export → remove → import from stdin gives the same image id.
    let exported = dir.join("exported.tar");
    ok(
        &node,
        &[
            "image",
            "export",
            "-o",
            exported.to_str().expect("utf-8"),
            "example.com/tools/box:1.0",
        ],
    );
    assert!(!dir.join("exported.tar.partial").exists());
    ok(&node, &["rmi", "example.com/tools/box:1.0"]);
    assert_eq!(ok(&node, &["images", "-q"]), "");
    let reimported = carrack(&node)
        .args(["image", "import", "-"])
        .stdin(fs::File::open(&exported).expect("open export"))
        .output()
        .expect("import from stdin");
    assert!(reimported.status.success(), "{reimported:?}");
    assert_eq!(
        String::from_utf8_lossy(&reimported.stdout),
        "Loaded image: example.com/tools/box:1.0\n"
    );
    let inspect: serde_json::Value = serde_json::from_str(&ok(
        &node,
        &["inspect", "--type", "image", "example.com/tools/box:1.0"],
    ))
    .expect("json");
    assert_eq!(inspect[0]["status"]["id"], image.id());
    // Exporting twice gives the same bytes (fixed headers, blobs as stored).
    let again = dir.join("again.tar");
    ok(
        &node,
        &["image", "export", "-o", again.to_str().expect("utf-8"), &id],
    );
    assert_eq!(
        fs::read(&again).expect("read"),
        fs::read(&exported).expect("read")
    );

    // An OCI layout (gzip layers, the manifest kept as is) imports too, with its digest.
    let oci = dir.join("oci.tar");
    fs::write(
        &oci,
        support::archive::oci_layout(image, "docker.io/library/other:1.0").expect("archive"),
    )
    .expect("write");
    assert_eq!(
        ok(&node, &["image", "import", oci.to_str().expect("utf-8")]),
        "Loaded image: docker.io/library/other:1.0\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&node, &["inspect", "--type", "image", "other:1.0"]))
            .expect("json");
    let digests = inspect[0]["status"]["repo_digests"].clone();
    assert!(
        digests.to_string().contains(image.digest()),
        "the OCI manifest's digest is the image's repo digest: {digests}"
    );

    // Garbage is refused with one line, and nothing is stored.
    let junk = dir.join("junk.tar");
    fs::write(&junk, b"not an archive at all").expect("write");
    let output = cli(&node, &["image", "import", junk.to_str().expect("utf-8")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let leftovers: Vec<_> = fs::read_dir(node.root_dir().join("content/ingest"))
        .expect("ingest dir")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "imports leave no temporary files: {leftovers:?}"
    );
}

#[test]
fn pulled_images_export_and_import_again_with_the_same_id_and_run() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    ok(&node, &["pull", "-q", "busybox"]);
    let id = ok(&node, &["images", "-q"]).trim().to_owned();
    let out = node.base_dir().join("pulled.tar");
    let path = out.to_str().expect("utf-8");
    ok(&node, &["image", "export", "-o", path, "busybox"]);
    ok(&node, &["rmi", "busybox"]);
    assert_eq!(ok(&node, &["images", "-q"]), "");
    assert_eq!(
        ok(&node, &["image", "import", path]),
        "Loaded image: docker.io/library/busybox:latest\n"
    );
    // The pulled manifest and blobs went out unchanged, so the image is the same one.
    assert_eq!(ok(&node, &["images", "-q"]).trim(), id);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&node, &["inspect", "--type", "image", "busybox"])).expect("json");
    assert_eq!(
        inspect[0]["status"]["id"],
        images::busybox().id(),
        "{inspect}"
    );
    // It runs from the imported layers (present, so nothing is pulled).
    let output = cli(
        &node,
        &["run", "--rm", "busybox", "echo", "from the archive"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "from the archive\n"
    );
}

/// Imports `archive` (written to `dir/name`) and checks that it is refused with one line
/// containing `reason`, leaving no image and no temporary file behind.
fn assert_import_refused(node: &Node, dir: &Path, name: &str, archive: &[u8], reason: &str) {
    let path = dir.join(name);
    fs::write(&path, archive).expect("write archive");
    let output = cli(node, &["image", "import", path.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(1), "{name}: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    assert!(stderr.contains(reason), "{name}: {stderr}");
    assert_eq!(ok(node, &["images", "-q"]), "", "{name}");
    let leftovers: Vec<_> = fs::read_dir(node.root_dir().join("content/ingest"))
        .expect("ingest dir")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
}

#[test]
fn archives_whose_layers_do_not_match_their_digests_are_refused() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let dir = node.base_dir().join("archives");
    fs::create_dir_all(&dir).expect("archives dir");
    let image = images::busybox();
    // A valid layer tar, but not the one the config names.
    let other_layer = {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(9);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, "tampered", &b"tampered\n"[..])
            .expect("tar");
        builder.into_inner().expect("tar")
    };

    // docker save: a layer.tar swapped for another valid tar; its DiffID no longer matches
    // the config's.
    let saved = support::archive::docker_save(image, &["example.com/tampered:1"]).expect("save");
    let swapped =
        support::archive::rewrite_member(&saved, "layer0/layer.tar", |_| other_layer.clone())
            .expect("rewrite");
    assert_import_refused(&node, &dir, "swapped.tar", &swapped, "diff id");

    // OCI layout: a byte of a layer blob flipped; the blob no longer has its digest.
    let oci = support::archive::oci_layout(image, "example.com/tampered:2").expect("oci");
    let layer = format!(
        "blobs/sha256/{}",
        image.layers[0]
            .digest
            .strip_prefix("sha256:")
            .expect("sha256")
    );
    let flipped = support::archive::rewrite_member(&oci, &layer, |blob| {
        let mut blob = blob.to_vec();
        let middle = blob.len() / 2;
        blob[middle] ^= 0xff;
        blob
    })
    .expect("rewrite");
    assert_import_refused(&node, &dir, "flipped.tar", &flipped, "digest");
}

#[test]
fn bundled_test_image_imports_and_runs() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let archive = node.base_dir().join("busybox.tar");
    let built = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/test-image.sh"))
        .arg(&archive)
        .output()
        .expect("run deploy/test-image.sh");
    assert!(built.status.success(), "{built:?}");
    assert_eq!(
        ok(
            &node,
            &["image", "import", archive.to_str().expect("utf-8")]
        ),
        "Loaded image: carrack.local/busybox:latest\n"
    );
    let output = cli(
        &node,
        &["run", "--rm", "carrack.local/busybox", "echo", "hello"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
}

/// Debian's containerd 1.6 in the node's namespace, as a second CRI runtime for the CLI:
/// its own root, state and socket in the node's temp dir, the node's CNI config and
/// registry, and a pause stand-in (busybox that sleeps until SIGTERM) as its sandbox image.
/// `restrict_oom_score_adj`: the test process may not lower OOM scores below its own (a
/// sandboxed root), which runc would otherwise try for the sandbox. Dropping it removes what
/// the CLI made there and stops it; the node then removes the rest
/// (shims in its namespace, mounts under its temp dir, cgroups under its parent).
struct Containerd<'a> {
    node: &'a Node,
    process: std::process::Child,
    socket: PathBuf,
}

impl<'a> Containerd<'a> {
    /// Starts containerd, or `None` (with a notice) when the package is not installed.
    fn start(node: &'a Node) -> Option<Self> {
        let installed = ["containerd", "runc", "containerd-shim-runc-v2"]
            .iter()
            .all(|binary| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {binary}")])
                    .output()
                    .is_ok_and(|output| output.status.success())
            });
        if !installed {
            support::missing("Debian's containerd and runc packages are not installed");
            return None;
        }
        node.push(images::long_running(), "library/pause-standin:v1")
            .expect("push the pause stand-in");
        let dir = node.base_dir().join("containerd");
        fs::create_dir_all(&dir).expect("containerd dir");
        let socket = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             [grpc]\n  address = \"{socket}\"\n[ttrpc]\n  address = \"{socket}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{dir}/opt\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"docker.io/library/pause-standin:v1\"\n\
             restrict_oom_score_adj = true\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{cni}\"\n  max_conf_num = 1\n\
             [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"http://{registry}\"]\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = socket.display(),
            dir = dir.display(),
            cni = node.cni_conf_dir().display(),
            registry = node.registry_addr(),
        );
        let config_path = dir.join("config.toml");
        fs::write(&config_path, config).expect("containerd config");
        let log = fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let process = Command::new("nsenter")
            .arg(format!("--net={}", node.netns_path().display()))
            .arg("--")
            .arg("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let peer = Containerd {
            node,
            process,
            socket,
        };
        eventually("containerd to serve CRI", || {
            peer.cli(&["info"]).status.success().then_some(())
        });
        Some(peer)
    }

    fn cli(&self, args: &[&str]) -> Output {
        carrack_at(self.node, &self.socket)
            .args(args)
            .output()
            .expect("run carrack")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "carrack {args:?} against containerd failed: {output:?}\ncontainerd log tail:\n{}",
            tail(
                &fs::read_to_string(self.node.base_dir().join("containerd/containerd.log"))
                    .unwrap_or_default(),
                30
            )
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        let ids = self.cli(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.cli(&["rm", "-f", id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.process.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.process.wait();
    }
}

#[test]
fn the_cli_drives_containerd_through_cri_alone() {
    if !skip_unless_root() {
        return;
    }
    let node = node();
    let Some(containerd) = Containerd::start(&node) else {
        return;
    };
    let parent = node.cgroup_parent();
    let info = containerd.ok(&["info"]);
    assert!(info.contains("Runtime:          containerd"), "{info}");

    let output = containerd.cli(&[
        "run",
        "--rm",
        "--cgroup-parent",
        &parent,
        "busybox",
        "sh",
        "-c",
        "echo hello; exit 4",
    ]);
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");

    containerd.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--cgroup-parent",
        &parent,
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo started; while :; do sleep 1 & wait $!; done",
    ]);
    let ps = containerd.ok(&["ps"]);
    assert!(ps.contains("ticker") && ps.contains(" Up "), "{ps}");
    let json: serde_json::Value =
        serde_json::from_str(&containerd.ok(&["ps", "--format", "json"])).expect("ps json");
    assert_eq!(json[0]["state"], "CONTAINER_RUNNING", "{json}");
    let inspect: serde_json::Value =
        serde_json::from_str(&containerd.ok(&["inspect", "ticker"])).expect("inspect json");
    assert_eq!(inspect[0]["kind"], "container", "{inspect}");
    eventually("the container's first line", || {
        (containerd.ok(&["logs", "ticker"]) == "started\n").then_some(())
    });
    assert_eq!(containerd.ok(&["exec", "ticker", "echo", "in"]), "in\n");
    // Interactive sessions over containerd's streaming server (WebSocket, v4/v5 channels):
    // stdin reaches the command, stdout and stderr come back apart, the exit code too.
    // The CLI runs in the node's namespace, as on a real node: containerd's streaming server
    // listens on the loopback of the namespace it runs in.
    let piped = |args: &[&str], input: &str| piped_at(&node, &containerd.socket, args, input);
    exec_i_passes_the_streams(&node, &containerd.socket);
    // -t: a terminal on both ends (`script` gives this side one).
    let output = on_terminal_at(
        &node,
        &containerd.socket,
        "exec -it ticker sh -c 'tty; exit 5'",
    );
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("/dev/pts/"),
        "{output:?}"
    );
    let output = piped(
        &[
            "run",
            "--rm",
            "-i",
            "--cgroup-parent",
            &parent,
            "busybox",
            "sh",
            "-c",
            "read line; echo got $line",
        ],
        "attached\n",
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("got attached"),
        "{output:?}"
    );
    let output = on_terminal_typing(
        &node,
        &containerd.socket,
        &format!(
            "run --rm -it --cgroup-parent {parent} busybox sh -c 'read line; [ -t 0 ] && [ -t 1 ] && echo on a terminal $line; exit 6'"
        ),
        "typed\n",
    );
    assert_eq!(output.status.code(), Some(6), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("on a terminal typed"),
        "{output:?}"
    );
    // logs -f follows until the container exits.
    let follower = carrack_at(&node, &containerd.socket)
        .args(["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    assert_eq!(containerd.ok(&["stop", "ticker"]), "ticker\n");
    let followed = follower
        .wait_with_output()
        .expect("logs -f ends with the container");
    assert!(followed.status.success(), "{followed:?}");
    assert!(
        String::from_utf8_lossy(&followed.stdout).ends_with("bye\n"),
        "{followed:?}"
    );
    assert_eq!(containerd.ok(&["logs", "ticker"]), "started\nbye\n");
    assert!(containerd.ok(&["ps", "-a"]).contains("Exited (0)"));
    assert_eq!(containerd.ok(&["rm", "ticker"]), "ticker\n");
    assert_eq!(containerd.ok(&["ps", "-a", "-q"]), "");
    // The pause stand-in's pod is gone with the container: only the CLI's pods count.
    assert_eq!(containerd.ok(&["pods", "-q"]), "");

    // -v and -p: a read-only host directory served by httpd on the bridge, published as the
    // node's port 8081 (containerd's CNI uses the node's bridge conflist); rm -f ends it.
    let shared = node.base_dir().join("shared");
    fs::create_dir_all(&shared).expect("shared dir");
    fs::write(shared.join("index.html"), "served to containerd\n").expect("write file");
    let volume = format!("{}:/www:ro", shared.display());
    containerd.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--cgroup-parent",
        &parent,
        "-v",
        &volume,
        "-p",
        "8081:80",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let body = eventually("the published port to answer", || {
        node.run_in_netns(|| http_get("10.99.0.1:8081"))
            .expect("enter the node's netns")
            .ok()
    });
    assert!(body.ends_with("served to containerd\n"), "{body:?}");
    assert_eq!(containerd.ok(&["rm", "-f", "web"]), "web\n");
    assert_eq!(containerd.ok(&["ps", "-a", "-q"]), "");

    let images = containerd.ok(&["images"]);
    assert!(images.contains("docker.io/library/busybox"), "{images}");
    let history = containerd.ok(&["history", "busybox"]);
    assert!(history.contains("carrack test harness"), "{history}");
    let inspect: serde_json::Value =
        serde_json::from_str(&containerd.ok(&["inspect", "busybox"])).expect("json");
    assert_eq!(inspect[0]["kind"], "image");
    let output = containerd.cli(&["image", "export", "-o", "/dev/null", "busybox"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("only Carrack does"),
        "{output:?}"
    );
    containerd.ok(&["rmi", "busybox"]);
}
