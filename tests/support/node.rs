//! The test node fixture: everything one root integration test needs to run a
//! real `carrack daemon`, isolated from the host and from other tests.
//!
//! A [`Node`] owns, all named `carrack-test-<pid>-<n>`:
//! - a network namespace (loopback up) that the daemon and the registry run in;
//! - a cgroup parent, `/carrack-test-<pid>-<n>`, under which the daemon creates
//!   pod and container cgroups;
//! - a temp dir with the daemon's root/state dirs, socket, CNI conf dir,
//!   config and logs, and the registry's storage.
//!
//! Dropping the node (also while a test panics) stops the daemon and registry,
//! kills what is left in the namespace and cgroups, unmounts everything under
//! the temp dir, and removes it all. A failing test prints the node's paths and
//! the tail of the daemon log; with `CARRACK_TEST_KEEP=1` the temp dir is kept.
//! Starting a node first sweeps what crashed test processes left behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::netns;
use super::process;
use super::registry::{Registry, RegistryOptions};
use super::{NAME_PREFIX, cleanup};

/// The daemon binary under test, built by cargo for this test run.
pub const DAEMON_BIN: &str = env!("CARGO_BIN_EXE_carrack");

/// How long the daemon gets to accept connections on its socket after start.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the daemon gets to exit after SIGTERM in [`Node::stop_daemon`]
/// before it is SIGKILLed; longer than the daemon's own shutdown grace.
const DAEMON_STOP_GRACE: Duration = Duration::from_secs(15);

/// The same at teardown, where a slow stop only costs time: nothing asserts it.
const TEARDOWN_STOP_GRACE: Duration = Duration::from_secs(5);

/// Environment variable that keeps a failing test's temp dir for inspection.
pub const KEEP_ENV: &str = "CARRACK_TEST_KEEP";

/// Lines of the daemon log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Registry hosts the daemon is told to fetch from the node's registry only,
/// so that no test ever tries the internet.
pub const MIRRORED_REGISTRIES: &[&str] = &[
    "docker.io",
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "quay.io",
    "public.ecr.aws",
    "carrack.test",
];

/// Numbers the nodes of this process; with the pid it makes names unique
/// across parallel test threads and concurrently running test binaries.
static NODE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Numbers the logs of [`Node::run_daemon_until_exit`] runs.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Sweeping leftovers once per test process is enough: later leftovers can
/// only come from processes that are still alive.
static SWEEP: Once = Once::new();

/// Installs [`remember_panics`] once per test binary.
static PANIC_HOOK: Once = Once::new();

thread_local! {
    /// The message of the panic this thread is unwinding from, for the failure report.
    static PANIC_MESSAGE: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// Wraps the panic hook so that a node's failure report can repeat the assertion after the
/// logs: CI shows only the end of a failing test's output, and the logs would push the
/// assertion out of it.
fn remember_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = format!("{info}");
        PANIC_MESSAGE.with(|slot| *slot.borrow_mut() = Some(message));
        previous(info);
    }));
}

/// Options for a [`Node`]; start with [`Node::builder`].
#[derive(Debug, Default)]
pub struct NodeBuilder {
    /// TOML deep-merged over the fixture's daemon config.
    extra_config: Option<String>,
    /// How the node's registry is set up.
    registry: RegistryOptions,
}

impl NodeBuilder {
    /// Adds a TOML snippet merged over the fixture's config: tables merge key
    /// by key, any other value replaces the fixture's (e.g. `"[log]\nlevel = \"trace\""`).
    pub fn config(mut self, toml_snippet: &str) -> Self {
        self.extra_config = Some(toml_snippet.to_owned());
        self
    }

    /// Sets the options of the node's registry (auth, …).
    pub fn registry(mut self, options: RegistryOptions) -> Self {
        self.registry = options;
        self
    }

    /// Starts the node; panics with the reason (and the daemon log) on failure,
    /// after cleaning up whatever had been set up.
    pub fn start(self) -> Node {
        match self.try_start() {
            Ok(node) => node,
            Err(err) => panic!("starting test node: {err}"),
        }
    }

    /// Starts the node, cleaning up whatever had been set up if a step fails.
    pub fn try_start(self) -> io::Result<Node> {
        SWEEP.call_once(cleanup::sweep_leftovers);
        PANIC_HOOK.call_once(remember_panics);

        let name = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            NODE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .tempdir()?;
        // Mount points in /proc/self/mountinfo are canonical paths; compare like with like.
        let base = tmp.path().canonicalize()?;

        let mut node = Node {
            name,
            base,
            tmp: Some(tmp),
            netns_created: false,
            registry: None,
            daemon: None,
            config: toml::Table::new(),
            daemon_starts: 0,
            daemon_env: Vec::new(),
        };
        // From here on, an early return drops `node`, which undoes every step done so far.
        for dir in [
            node.root_dir(),
            node.state_dir(),
            node.run_dir(),
            node.logs_dir(),
            node.config_dir(),
            node.cni_conf_dir(),
        ] {
            std::fs::create_dir_all(dir)?;
        }

        netns::add(&node.name)?;
        node.netns_created = true;

        node.registry = Some(Registry::start(
            &node.netns_path(),
            &node.base.join("registry"),
            self.registry,
        )?);

        node.config = node.base_config()?;
        if let Some(snippet) = &self.extra_config {
            let extra: toml::Table = snippet.parse().map_err(|err| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("extra config: {err}"))
            })?;
            merge_toml(&mut node.config, extra);
        }
        let config_path = node.config_path();
        node.write_config(&config_path, &node.config)?;

        node.start_daemon()?;
        Ok(node)
    }
}

/// One test node: a network namespace, a cgroup parent, temp dirs, a registry
/// and a running daemon. See the module docs.
#[derive(Debug)]
pub struct Node {
    /// `carrack-test-<pid>-<n>`: the netns name and the cgroup parent's name.
    name: String,
    /// Canonical path of the temp dir everything else lives in.
    base: PathBuf,
    /// The temp dir itself; taken on drop to remove or keep it.
    tmp: Option<tempfile::TempDir>,
    /// Whether `ip netns add` succeeded, so drop knows to delete it.
    netns_created: bool,
    /// The node's registry, running inside the node's netns.
    registry: Option<Registry>,
    /// The daemon process while it runs (`nsenter` execs into it, so this is its pid).
    daemon: Option<Child>,
    /// The daemon config as written to [`Node::config_path`].
    config: toml::Table,
    /// How many times the daemon was started; numbers the log markers.
    daemon_starts: u32,
    /// Extra environment of later daemon starts (e.g. armed failpoints).
    daemon_env: Vec<(String, String)>,
}

impl Node {
    /// Starts a node with the default options; panics (after cleaning up) on failure.
    pub fn start() -> Node {
        Node::builder().start()
    }

    /// A builder for a node with options.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// `carrack-test-<pid>-<n>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name of the node's network namespace (as in `ip netns list`).
    pub fn netns_name(&self) -> &str {
        &self.name
    }

    /// Path of the node's network namespace file, `/run/netns/<name>`.
    pub fn netns_path(&self) -> PathBuf {
        netns::path(&self.name)
    }

    /// The cgroup parent the daemon is configured with, `/carrack-test-<pid>-<n>`.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.name)
    }

    /// The temp dir holding everything below.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The daemon's `root_dir` (persistent state: images, snapshots, records).
    pub fn root_dir(&self) -> PathBuf {
        self.base.join("root")
    }

    /// The daemon's `state_dir` (runtime state).
    pub fn state_dir(&self) -> PathBuf {
        self.base.join("state")
    }

    /// The daemon's CRI socket.
    pub fn socket_path(&self) -> PathBuf {
        self.run_dir().join("carrack.sock")
    }

    /// The daemon's CNI `conf_dir` (empty: the network starts not ready).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.base.join("cni").join("net.d")
    }

    /// Directory for config files; tests may write more configs here.
    pub fn config_dir(&self) -> PathBuf {
        self.base.join("config")
    }

    /// The daemon's config file.
    pub fn config_path(&self) -> PathBuf {
        self.config_dir().join("carrack.toml")
    }

    /// The daemon config the node runs with; clone it to derive variants for
    /// [`Node::write_config`] and [`Node::run_daemon_until_exit`].
    pub fn config(&self) -> &toml::Table {
        &self.config
    }

    /// Directory of the daemon's and other processes' output.
    pub fn logs_dir(&self) -> PathBuf {
        self.base.join("logs")
    }

    /// The daemon's combined stdout/stderr, across restarts.
    pub fn daemon_log_path(&self) -> PathBuf {
        self.logs_dir().join("daemon.log")
    }

    /// Everything the daemon has written so far (across restarts, each start
    /// preceded by a `=== carrack test: daemon start N ===` line).
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.daemon_log_path()).unwrap_or_default()
    }

    /// The node's registry.
    pub fn registry(&self) -> &Registry {
        // Set in try_start before the node is handed out; only Drop takes it.
        self.registry
            .as_ref()
            .expect("a started node always has a registry")
    }

    /// `host:port` of the node's registry, as reached from inside the node's netns.
    pub fn registry_addr(&self) -> &'static str {
        self.registry().addr()
    }

    /// Pid of the running daemon, if it is running.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Runs `f` on a fresh thread inside the node's network namespace and
    /// returns its result: sockets made there see the node's loopback, so
    /// this is how tests reach the registry or a pod's host port.
    pub fn run_in_netns<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        netns::run_in(&self.netns_path(), f)
    }

    /// Serialises `config` to `path` (e.g. a variant of [`Node::config`]).
    pub fn write_config(&self, path: &Path, config: &toml::Table) -> io::Result<()> {
        let text = toml::to_string(config).map_err(io::Error::other)?;
        std::fs::write(path, text)
    }

    /// Stops the daemon with SIGTERM and waits for it (SIGKILL after a grace
    /// period, reported as an error). Returns its exit status.
    pub fn stop_daemon(&mut self) -> io::Result<ExitStatus> {
        let Some(mut child) = self.daemon.take() else {
            return Err(io::Error::other("daemon is not running"));
        };
        let (status, killed) = process::terminate(&mut child, DAEMON_STOP_GRACE)?;
        if killed {
            return Err(io::Error::other(format!(
                "daemon ignored SIGTERM for {DAEMON_STOP_GRACE:?} and was killed"
            )));
        }
        Ok(status)
    }

    /// SIGKILLs the daemon (leaving its socket file and state behind, as a
    /// crash would) and reaps it.
    pub fn kill_daemon(&mut self) -> io::Result<ExitStatus> {
        let Some(mut child) = self.daemon.take() else {
            return Err(io::Error::other("daemon is not running"));
        };
        child.kill()?;
        child.wait()
    }

    /// Sets (`Some`) or unsets (`None`) an environment variable for later daemon starts.
    pub fn set_daemon_env(&mut self, key: &str, value: Option<&str>) {
        self.daemon_env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.daemon_env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Waits up to `timeout` for the daemon to exit on its own (a failpoint killed it) and
    /// forgets it; an error if it is still running then (it is left for drop to stop).
    pub fn wait_daemon_exit(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let Some(child) = self.daemon.as_mut() else {
            return Err(io::Error::other("daemon is not running"));
        };
        match process::wait_timeout(child, timeout)? {
            Some(status) => {
                self.daemon = None;
                Ok(status)
            }
            None => Err(io::Error::other(format!(
                "daemon still running after {timeout:?}"
            ))),
        }
    }

    /// Stops the daemon if it runs (SIGTERM), then starts it again with the
    /// same config and waits for its socket.
    pub fn restart_daemon(&mut self) -> io::Result<()> {
        if self.daemon.is_some() {
            self.stop_daemon()?;
        }
        self.start_daemon()
    }

    /// Starts the daemon with [`Node::config_path`] and waits until its socket
    /// accepts connections. Errors if it is already running.
    pub fn start_daemon(&mut self) -> io::Result<()> {
        if self.daemon.is_some() {
            return Err(io::Error::other("daemon is already running"));
        }
        self.daemon_starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.daemon_log_path())?;
        writeln!(
            log,
            "=== carrack test: daemon start {} ===",
            self.daemon_starts
        )?;
        let child = self.spawn_daemon_with(&self.config_path(), log, &self.daemon_env)?;
        self.daemon = Some(child);
        self.wait_daemon_ready()
    }

    /// Runs another daemon in the node's netns with the config at `config`
    /// and waits up to `timeout` for it to exit (it is killed if it does not,
    /// and that is an error). For tests of start-up failures.
    pub fn run_daemon_until_exit(&self, config: &Path, timeout: Duration) -> io::Result<DaemonRun> {
        let log_path = self.logs_dir().join(format!(
            "daemon-run-{}.log",
            RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let log = File::create(&log_path)?;
        let mut child = self.spawn_daemon(config, log)?;
        match process::wait_timeout(&mut child, timeout)? {
            Some(status) => Ok(DaemonRun {
                status,
                output: std::fs::read_to_string(&log_path).unwrap_or_default(),
            }),
            None => {
                child.kill()?;
                child.wait()?;
                Err(io::Error::other(format!(
                    "daemon with {} still running after {timeout:?}; output:\n{}",
                    config.display(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )))
            }
        }
    }

    /// `nsenter --net=<netns> -- carrack daemon --config <config>`, output to `log`.
    ///
    /// `nsenter` rather than `ip netns exec`: the latter remounts `/sys` in a
    /// new mount namespace, which would hide the host's cgroup mounts from
    /// the daemon.
    fn spawn_daemon(&self, config: &Path, log: File) -> io::Result<Child> {
        self.spawn_daemon_with(config, log, &[])
    }

    /// [`Node::spawn_daemon`] with extra environment variables.
    fn spawn_daemon_with(
        &self,
        config: &Path,
        log: File,
        env: &[(String, String)],
    ) -> io::Result<Child> {
        Command::new("nsenter")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .arg(DAEMON_BIN)
            .arg("daemon")
            .arg("--config")
            .arg(config)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("spawn {DAEMON_BIN}: {err}")))
    }

    /// Polls the socket until a connect succeeds, failing early if the daemon
    /// exits and after [`DAEMON_READY_TIMEOUT`] (the daemon is then left for
    /// drop to stop).
    fn wait_daemon_ready(&mut self) -> io::Result<()> {
        let socket = self.socket_path();
        let deadline = Instant::now() + DAEMON_READY_TIMEOUT;
        loop {
            let Some(child) = self.daemon.as_mut() else {
                return Err(io::Error::other("daemon is not running"));
            };
            if let Some(status) = child.try_wait()? {
                self.daemon = None;
                return Err(io::Error::other(format!(
                    "daemon exited during start-up ({status}); log:\n{}",
                    self.daemon_log()
                )));
            }
            // A leftover socket file from a killed daemon refuses connections,
            // so only a successful connect proves the new daemon listens.
            if UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "daemon did not accept connections on {} within {DAEMON_READY_TIMEOUT:?}; log:\n{}",
                    socket.display(),
                    self.daemon_log()
                )));
            }
            std::thread::sleep(process::POLL_INTERVAL);
        }
    }

    /// The fixture's config: every path in the temp dir, the test cgroup
    /// parent, and every well-known registry mirrored to the node's registry.
    fn base_config(&self) -> io::Result<toml::Table> {
        let quote = |path: PathBuf| toml::Value::String(path.display().to_string()).to_string();
        let mut text = format!(
            "root_dir = {root}\n\
             state_dir = {state}\n\
             socket_path = {socket}\n\
             [log]\nlevel = \"debug,h2=info\"\nformat = \"text\"\n\
             [cgroups]\ndriver = \"cgroupfs\"\nroot = \"{cgroup_root}\"\ndefault_parent = \"{parent}\"\n\
             [cni]\nconf_dir = {cni}\nbin_dirs = [\"/usr/lib/cni\"]\n\
             [streaming]\naddress = \"127.0.0.1:0\"\n",
            root = quote(self.root_dir()),
            state = quote(self.state_dir()),
            socket = quote(self.socket_path()),
            cgroup_root = cleanup::CGROUP_ROOT,
            parent = self.cgroup_parent(),
            cni = quote(self.cni_conf_dir()),
        );
        for host in MIRRORED_REGISTRIES {
            text.push_str(&format!(
                "[registry.mirrors.\"{host}\"]\nendpoints = [\"http://{}\"]\nuse_upstream = false\n",
                self.registry_addr()
            ));
        }
        text.parse().map_err(|err| {
            io::Error::other(format!("fixture config does not parse: {err}\n{text}"))
        })
    }

    /// Where the socket lives.
    fn run_dir(&self) -> PathBuf {
        self.base.join("run")
    }

    /// Prints what a failing test needs to investigate: where things are and
    /// the end of the daemon's (and registry's) log.
    fn report_failure(&self, keep: bool) {
        let mut report = format!(
            "\n=== carrack test node {name} (test failed) ===\n\
             temp dir:      {base}{kept}\n\
             netns:         {netns}\n\
             cgroup parent: {parent}\n\
             socket:        {socket}\n\
             daemon log:    {log}\n",
            name = self.name,
            base = self.base.display(),
            kept = if keep {
                " (kept)"
            } else {
                " (removed; set CARRACK_TEST_KEEP=1 to keep)"
            },
            netns = self.netns_path().display(),
            parent = self.cgroup_parent(),
            socket = self.socket_path().display(),
            log = self.daemon_log_path().display(),
        );
        report.push_str(&format!(
            "--- daemon log, last {LOG_TAIL_LINES} lines ---\n{}",
            tail(&self.daemon_log(), LOG_TAIL_LINES)
        ));
        if let Some(registry) = &self.registry {
            report.push_str(&format!(
                "--- registry log, last 20 lines ---\n{}",
                tail(&registry.log(), 20)
            ));
        }
        if let Some(message) = PANIC_MESSAGE.with(|slot| slot.borrow_mut().take()) {
            report.push_str(&format!(
                "--- the failure (repeated from above) ---\n{message}\n"
            ));
        }
        eprintln!("{report}=== end of node {} ===", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let keep = failing && std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1");
        if failing {
            self.report_failure(keep);
        }

        // Stop our own processes first, gracefully, so they can clean up.
        if let Some(mut daemon) = self.daemon.take()
            && let Err(err) = process::terminate(&mut daemon, TEARDOWN_STOP_GRACE)
        {
            eprintln!("carrack test {}: stopping daemon: {err}", self.name);
        }
        if let Some(mut registry) = self.registry.take()
            && let Err(err) = registry.stop()
        {
            eprintln!("carrack test {}: stopping registry: {err}", self.name);
        }

        // Then whatever the daemon left: processes in the namespace (monitors,
        // host-network containers), processes in the cgroups, mounts, and the
        // namespace itself.
        if self.netns_created {
            cleanup::kill_netns_processes(&self.netns_path());
        }
        cleanup::remove_cgroups(&self.name);
        cleanup::unmount_under(&self.base);
        if self.netns_created
            && let Err(err) = netns::delete(&self.name)
        {
            eprintln!("carrack test {}: {err}", self.name);
        }

        if let Some(tmp) = self.tmp.take() {
            if keep {
                // The marker stops a later run's sweep from deleting what was kept.
                let _ = std::fs::write(self.base.join(cleanup::KEPT_MARKER), "");
                let _ = tmp.keep();
            } else if let Err(err) = tmp.close() {
                eprintln!(
                    "carrack test {}: removing {}: {err}",
                    self.name,
                    self.base.display()
                );
            }
        }
    }
}

/// Outcome of [`Node::run_daemon_until_exit`].
#[derive(Debug)]
pub struct DaemonRun {
    /// How the daemon exited.
    pub status: ExitStatus,
    /// Its combined stdout and stderr.
    pub output: String,
}

/// Deep-merges `extra` into `base`: tables merge key by key, anything else replaces.
pub fn merge_toml(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(extra_table)) => {
                merge_toml(base_table, extra_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    out.push('\n');
    out
}
