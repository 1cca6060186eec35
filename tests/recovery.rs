//! Faults from outside the daemon, and what recovery makes of them: a container's monitor
//! SIGKILLed (while the daemon runs and while it is down), a container killed behind
//! Carrack's back, a CNI plugin hanging past its timeout, the disk filling up during a pull,
//! corrupted state records and records of a newer Carrack (what they own is kept, never
//! reconciled away), and leftovers that appear while the daemon runs (removed by the
//! periodic reconciler, which must never touch what a concurrent create is building).
//!
//! Each test checks the node-wide invariant afterwards: nothing outside the objects the test
//! still expects is left (mounts, runtime dirs, cgroups, IP leases, processes).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carrack::proto;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::client::CriClient;
use support::cni::{write_conflist_with_bridge, write_plugin};
use support::images;
use support::leaks::{cgroup_dirs, image_store_problems, leaks};
use support::node::{DAEMON_BIN, Node};
use support::skip_unless_root;
use support::workload::{
    self, BUSYBOX, container_config, create, exec_sync, pull, pull_busybox, remove_pod, run_pod,
    run_pod_with, start, status, stop_pod, try_status, wait_exited,
};
use tonic::Code;

/// Bound of the waits for something the daemon does on its own (an exit noticed, a periodic
/// pass); only a hang reaches it.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, panicking with `what` after [`WAIT_LIMIT`].
async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The container's runtime directory.
fn runtime_dir(node: &Node, id: &str) -> PathBuf {
    node.state_dir().join("containers").join(id)
}

/// The pid of the container's monitor, from the pid file it writes.
fn monitor_pid(node: &Node, id: &str) -> i32 {
    fs::read_to_string(runtime_dir(node, id).join("monitor.pid"))
        .expect("monitor.pid")
        .trim()
        .parse()
        .expect("monitor pid")
}

/// The processes in the container's cgroup.
fn container_pids(node: &Node, id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_dirs(node, id)
        .iter()
        .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}

/// Creates and starts a busybox container running `command` in the pod.
async fn run_container(
    cri: &mut CriClient,
    pod: &str,
    pod_config: &proto::PodSandboxConfig,
    name: &str,
    command: &[&str],
) -> String {
    let id = create(cri, pod, pod_config, container_config(name, command))
        .await
        .expect("CreateContainer");
    start(cri, &id).await.expect("StartContainer");
    id
}

/// Stops and removes the pods, asserting each step succeeds.
async fn remove_pods(cri: &mut CriClient, pods: &[&str]) {
    for pod in pods {
        stop_pod(cri, pod).await.expect("StopPodSandbox");
        remove_pod(cri, pod).await.expect("RemovePodSandbox");
    }
}

fn assert_no_leaks(node: &Node, ipam_dir: Option<&Path>, keep: &[&str]) {
    let found = leaks(node, ipam_dir, keep);
    assert!(found.is_empty(), "leaked: {found:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_monitor_leaves_its_container_exited_with_error() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "orphaned").await;
    let live = run_container(&mut cri, &pod, &pod_config, "live", &["sleep", "1000"]).await;
    let down = run_container(&mut cri, &pod, &pod_config, "down", &["sleep", "1000"]).await;
    let down_pids = container_pids(&node, &down);
    assert!(
        !down_pids.is_empty(),
        "no process in the container's cgroup"
    );

    // While the daemon runs: the watcher notices the monitor's death.
    kill(Pid::from_raw(monitor_pid(&node, &live)), Signal::SIGKILL).expect("kill monitor");
    let exited = wait_exited(&mut cri, &live).await;
    assert_eq!(exited.reason, "Error", "{exited:?}");
    assert!(exited.message.contains("monitor"), "{exited:?}");
    assert_ne!(exited.exit_code, 0);

    // While the daemon is down: recovery notices it.
    node.stop_daemon().expect("stop daemon");
    kill(Pid::from_raw(monitor_pid(&node, &down)), Signal::SIGKILL).expect("kill monitor");
    node.start_daemon().expect("start daemon");
    let mut cri = node.cri().await;
    let exited = status(&mut cri, &down).await;
    assert_eq!(
        exited.state,
        proto::ContainerState::ContainerExited as i32,
        "{exited:?}"
    );
    assert_eq!(exited.reason, "Error", "{exited:?}");
    assert!(exited.message.contains("monitor"), "{exited:?}");
    // Its processes lost their watcher: they are killed, not left running unwatched.
    for pid in down_pids {
        wait_for("the unwatched container process to die", async || {
            (!process_exists(pid)).then_some(())
        })
        .await;
    }

    remove_pods(&mut cri, &[&pod]).await;
    assert_no_leaks(&node, None, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_killed_behind_carracks_back_exits_with_the_real_signal() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    // In a pod-wide PID namespace the container's process is not its namespace's init, so a
    // SIGTERM from outside ends it as it would any process.
    let (pod, pod_config) =
        run_pod_with(&node, &mut cri, "victims", proto::NamespaceMode::Pod).await;
    let mut cases = Vec::new();
    for (name, signal) in [("termed", Signal::SIGTERM), ("killed", Signal::SIGKILL)] {
        let id = run_container(&mut cri, &pod, &pod_config, name, &["sleep", "1000"]).await;
        cases.push((id, signal));
    }
    for (id, signal) in &cases {
        let pids = container_pids(&node, id);
        assert_eq!(pids.len(), 1, "container {id}: {pids:?}");
        kill(Pid::from_raw(pids[0]), *signal).expect("kill the container's process");
        let exited = wait_exited(&mut cri, id).await;
        assert_eq!(
            exited.exit_code,
            128 + *signal as i32,
            "{signal}: {exited:?}"
        );
        assert_eq!(exited.reason, "Error", "{exited:?}");
    }
    remove_pods(&mut cri, &[&pod]).await;
    assert_no_leaks(&node, None, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cni_plugin_hanging_past_its_timeout_fails_the_pod_and_leaves_nothing() {
    if !skip_unless_root() {
        return;
    }
    // A bridge plugin that hangs on ADD while the gate file exists.
    let plugins = tempfile::tempdir().expect("plugin dir");
    let gate = plugins.path().join("hang");
    write_plugin(
        plugins.path(),
        "gated-bridge",
        &format!(
            "if [ \"$CNI_COMMAND\" = ADD ] && [ -e {gate} ]; then exec sleep 600; fi\nexec /usr/lib/cni/bridge\n",
            gate = gate.display()
        ),
    );
    let node = Node::builder()
        .config(&format!(
            "[cni]\nbin_dirs = [\"{}\", \"/usr/lib/cni\"]\nplugin_timeout_secs = 2\n",
            plugins.path().display()
        ))
        .start();
    let ipam_dir = write_conflist_with_bridge(&node, "gated-bridge");
    let mut cri = node.cri().await;
    let config = proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: "stuck".to_owned(),
            uid: "uid-stuck".to_owned(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        ..Default::default()
    };

    fs::write(&gate, "").expect("close the gate");
    let err = workload::run_pod_config(&mut cri, &config)
        .await
        .expect_err("RunPodSandbox with a hanging plugin");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("timed out"), "{err:?}");
    let pods = workload::pods_named(&mut cri, "stuck").await;
    assert!(pods.is_empty(), "{pods:?}");
    let records: Vec<_> = fs::read_dir(node.root_dir().join("store").join("pods"))
        .expect("pod records")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(records.is_empty(), "{records:?}");
    assert_no_leaks(&node, Some(&ipam_dir), &[]);

    // Once the plugin works, the same name runs (no reservation was left behind).
    fs::remove_file(&gate).expect("open the gate");
    let pod = workload::run_pod_config(&mut cri, &config)
        .await
        .expect("RunPodSandbox with the plugin fixed");
    let ready = workload::pod_status(&mut cri, &pod)
        .await
        .expect("PodSandboxStatus");
    assert_eq!(ready.state, proto::PodSandboxState::SandboxReady as i32);
    assert!(
        ready
            .network
            .as_ref()
            .is_some_and(|network| !network.ip.is_empty()),
        "{ready:?}"
    );
    remove_pods(&mut cri, &[&pod]).await;
    assert_no_leaks(&node, Some(&ipam_dir), &[]);
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap_or(&path).to_owned());
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_pull_cleanly_and_existing_images_still_work() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    // The root dir becomes a small tmpfs (the node's drop unmounts it).
    node.stop_daemon().expect("stop daemon");
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=24m,mode=0700",
            "carrack-test-full",
        ])
        .arg(node.root_dir())
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount tmpfs on the root dir");
    node.start_daemon()
        .expect("start daemon on the small root dir");
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let big = images::big(1, 48 << 20, 7).expect("big image");
    node.push(&big, "library/big:latest").expect("push big");

    let before = files_below(&node.root_dir());
    let err = pull(&mut cri, "big")
        .await
        .expect_err("a pull larger than the disk");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        workload::image_status(&mut cri, "big").await.is_none(),
        "the failed image is listed"
    );
    let after = files_below(&node.root_dir());
    let new: Vec<_> = after.iter().filter(|path| !before.contains(path)).collect();
    assert!(new.is_empty(), "the failed pull left {new:#?}");

    // The image pulled before is whole and runs.
    let problems = image_store_problems(&node).await;
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(workload::image_status(&mut cri, BUSYBOX).await.is_some());
    let (pod, pod_config) = run_pod(&node, &mut cri, "after-full").await;
    let id = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("runs", &["sh", "-c", "exit 7"]),
    )
    .await
    .expect("CreateContainer from the earlier image");
    start(&mut cri, &id).await.expect("StartContainer");
    assert_eq!(wait_exited(&mut cri, &id).await.exit_code, 7);
    remove_pods(&mut cri, &[&pod]).await;
    assert_no_leaks(&node, None, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_records_are_quarantined_and_the_rest_loads() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::builder()
        .config("[recovery]\nreconcile_interval_secs = 1\n")
        .start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "keeper").await;
    let victim = run_container(&mut cri, &pod, &pod_config, "victim", &["sleep", "1000"]).await;
    let survivor = run_container(&mut cri, &pod, &pod_config, "survivor", &["sleep", "1000"]).await;
    let (broken_pod, _) = run_pod(&node, &mut cri, "broken").await;
    // A pod (with a pod init) whose record is lost while a container of it runs.
    let (headless, headless_config) =
        run_pod_with(&node, &mut cri, "headless", proto::NamespaceMode::Pod).await;
    let tenant = run_container(
        &mut cri,
        &headless,
        &headless_config,
        "tenant",
        &["sleep", "1000"],
    )
    .await;

    node.stop_daemon().expect("stop daemon");
    let store = node.root_dir().join("store");
    let victim_record = store.join("containers").join(format!("{victim}.json"));
    let pod_record = store.join("pods").join(format!("{broken_pod}.json"));
    fs::write(
        &victim_record,
        b"{\"schema_version\": 1, \"kind\": \"contai",
    )
    .expect("garble");
    fs::write(&pod_record, [0xff, 0x00, 0x13, 0x37]).expect("garble");
    let headless_record = store.join("pods").join(format!("{headless}.json"));
    fs::write(&headless_record, b"").expect("garble");
    node.start_daemon().expect("start daemon");
    let mut cri = node.cri().await;

    let log = node.daemon_log();
    for record in [&victim_record, &pod_record, &headless_record] {
        assert!(
            log.lines()
                .any(|line| line.contains("quarantined")
                    && line.contains(&*record.to_string_lossy())),
            "no quarantine line for {}",
            record.display()
        );
        assert!(
            record.with_extension("json.corrupt").exists(),
            "{} not kept aside",
            record.display()
        );
    }
    // The rest loaded and works.
    let kept = status(&mut cri, &survivor).await;
    assert_eq!(kept.state, proto::ContainerState::ContainerRunning as i32);
    let echo = exec_sync(&mut cri, &survivor, &["echo", "alive"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(echo.stdout, b"alive\n");
    let err = try_status(&mut cri, &victim)
        .await
        .expect_err("a quarantined container");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = workload::pod_status(&mut cri, &broken_pod)
        .await
        .expect_err("a quarantined pod");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // What the quarantined records owned is kept (it is not known what they were), and
    // nothing else is left; their names are free again.
    assert!(
        runtime_dir(&node, &victim).exists(),
        "the quarantined container's dir went"
    );
    assert!(
        !cgroup_dirs(&node, &broken_pod).is_empty(),
        "the quarantined pod's cgroup went"
    );
    assert_no_leaks(
        &node,
        None,
        &[&pod, &survivor, &headless, &tenant, &victim, &broken_pod],
    );
    let echo = exec_sync(&mut cri, &tenant, &["echo", "still"], 10)
        .await
        .expect("ExecSync in the container of the lost pod");
    assert_eq!(echo.stdout, b"still\n");
    // Once an operator has removed the quarantined files (and the lost pod's last container
    // is gone), what they owned goes with the next pass.
    workload::stop(&mut cri, &tenant, 0).await;
    workload::remove(&mut cri, &tenant).await;
    for record in [&victim_record, &pod_record, &headless_record] {
        fs::remove_file(record.with_extension("json.corrupt")).expect("remove quarantined");
    }
    wait_for("the lost pod's leftovers to be reconciled", async || {
        leaks(&node, None, &[&pod, &survivor])
            .is_empty()
            .then_some(())
    })
    .await;
    let (again, _) = run_pod(&node, &mut cri, "broken").await;
    let renamed = run_container(&mut cri, &pod, &pod_config, "victim", &["true"]).await;
    wait_exited(&mut cri, &renamed).await;
    remove_pods(&mut cri, &[&pod, &again]).await;
    assert_no_leaks(&node, None, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_periodic_reconciler_removes_leftovers_but_never_a_create_in_flight() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::builder()
        .config("[recovery]\nreconcile_interval_secs = 1\n")
        .start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "steady").await;
    let steady = run_container(&mut cri, &pod, &pod_config, "steady", &["sleep", "1000"]).await;

    // Leftovers that appear behind the daemon's back: a runtime dir, a pod dir and a
    // container cgroup under the live pod's cgroup, each named like an id no record owns.
    let orphan_container = "c0".repeat(32);
    let orphan_pod = "d0".repeat(32);
    let orphan_cgroup = "e0".repeat(32);
    let mut leftovers = vec![
        runtime_dir(&node, &orphan_container),
        node.state_dir().join("pods").join(&orphan_pod),
    ];
    for dir in &leftovers {
        fs::create_dir_all(dir.join("sub")).expect("leftover dir");
    }
    let pod_cgroups = cgroup_dirs(&node, &pod);
    assert!(!pod_cgroups.is_empty(), "no cgroup of pod {pod}");
    for pod_cgroup in pod_cgroups {
        let dir = pod_cgroup.join(&orphan_cgroup);
        fs::create_dir(&dir).expect("leftover cgroup");
        leftovers.push(dir);
    }

    // Creates and removes run while the passes do: none may lose what it is building.
    for round in 0..8 {
        let name = format!("churn-{round}");
        let id = run_container(&mut cri, &pod, &pod_config, &name, &["sleep", "1000"]).await;
        let running = status(&mut cri, &id).await;
        assert_eq!(
            running.state,
            proto::ContainerState::ContainerRunning as i32,
            "{running:?}"
        );
        let (other, other_config) = run_pod(&node, &mut cri, &format!("pod-{round}")).await;
        let inner = create(
            &mut cri,
            &other,
            &other_config,
            container_config(&name, &["true"]),
        )
        .await
        .expect("CreateContainer in a new pod");
        start(&mut cri, &inner).await.expect("StartContainer");
        wait_exited(&mut cri, &inner).await;
        workload::stop(&mut cri, &id, 0).await;
        workload::remove(&mut cri, &id).await;
        remove_pods(&mut cri, &[&other]).await;
    }

    wait_for(
        "the periodic reconciler to remove the leftovers",
        async || leftovers.iter().all(|dir| !dir.exists()).then_some(()),
    )
    .await;
    let kept = status(&mut cri, &steady).await;
    assert_eq!(kept.state, proto::ContainerState::ContainerRunning as i32);
    assert!(node.daemon_log().contains("reconciler removed"));
    assert_no_leaks(&node, None, &[&pod, &steady]);
    remove_pods(&mut cri, &[&pod]).await;
    assert_no_leaks(&node, None, &[]);
}

/// Sets the schema version of a pod record on disk (the daemon must be stopped).
fn set_schema_version(record: &Path, version: u64) {
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&fs::read(record).expect("read record")).expect("record json");
    envelope["schema_version"] = serde_json::Value::from(version);
    fs::write(record, serde_json::to_vec(&envelope).expect("encode")).expect("write record");
}

/// A record written by a newer Carrack is left untouched and not loaded; what it owns (here a
/// pod's directory with its pinned namespaces, its cgroup and its pod init) is unknown to
/// this binary, so the reconcilers keep it instead of removing it as an orphan.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_newer_carracks_record_owns_is_kept() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::builder()
        .config("[recovery]\nreconcile_interval_secs = 1\n")
        .start();
    let mut cri = node.cri().await;
    let (pod, _) = run_pod_with(&node, &mut cri, "future", proto::NamespaceMode::Pod).await;
    let pod_dir = node.state_dir().join("pods").join(&pod);
    let record = node
        .root_dir()
        .join("store")
        .join("pods")
        .join(format!("{pod}.json"));
    let original: serde_json::Value =
        serde_json::from_slice(&fs::read(&record).expect("read record")).expect("record json");
    let version = original["schema_version"].as_u64().expect("schema version");

    node.stop_daemon().expect("stop daemon");
    set_schema_version(&record, version + 100);
    // A leftover the passes must remove: proof that they ran.
    let leftover = node.state_dir().join("pods").join("d1".repeat(32));
    fs::create_dir_all(&leftover).expect("leftover");
    node.start_daemon().expect("start daemon");
    let mut cri = node.cri().await;
    wait_for("a reconciler pass", async || {
        (!leftover.exists()).then_some(())
    })
    .await;
    assert!(
        node.daemon_log()
            .contains("record written by a newer carrack"),
        "no log line for the newer record"
    );
    let err = workload::pod_status(&mut cri, &pod)
        .await
        .expect_err("a pod this binary cannot read");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(pod_dir.exists(), "the newer pod's dir was removed");
    assert!(
        !cgroup_dirs(&node, &pod).is_empty(),
        "the newer pod's cgroup was removed"
    );
    let init_alive = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .any(|entry| {
            fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&pod))
        });
    assert!(init_alive, "the newer pod's init was killed");
    let kept: serde_json::Value =
        serde_json::from_slice(&fs::read(&record).expect("read record")).expect("record json");
    assert_eq!(
        kept["schema_version"].as_u64(),
        Some(version + 100),
        "the record was not left untouched"
    );
    assert_no_leaks(&node, None, &[&pod]);

    // Back to a version this binary reads: the pod is whole and goes the normal way.
    node.stop_daemon().expect("stop daemon");
    set_schema_version(&record, version);
    node.start_daemon().expect("start daemon");
    let mut cri = node.cri().await;
    remove_pods(&mut cri, &[&pod]).await;
    assert_no_leaks(&node, None, &[]);
}

/// `carrack image verify` (the image store's full verify, which the fault tests run after
/// every crash) and the leak check find what they claim to: a blob whose bytes changed, a
/// blob no image owns, a layer missing its files, ingest leftovers; and files outside any
/// record (a writable layer, a CNI cache entry, a temp record, an unknown file).
#[tokio::test(flavor = "multi_thread")]
async fn the_image_verify_and_the_leak_check_find_damage_and_strays() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let verify = || {
        std::process::Command::new(DAEMON_BIN)
            .arg("--runtime-endpoint")
            .arg(format!("unix://{}", node.socket_path().display()))
            .args(["image", "verify"])
            .env(
                "CARRACK_CONFIG",
                node.base_dir().join("no-such-config.toml"),
            )
            .output()
            .expect("run carrack image verify")
    };
    let clean = verify();
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{clean:?}");
    assert!(
        stdout.contains("1 images") && stdout.ends_with("ok\n"),
        "{stdout}"
    );

    let root = node.root_dir();
    let blobs = root.join("content").join("blobs").join("sha256");
    let tampered = fs::read_dir(&blobs)
        .expect("blobs")
        .flatten()
        .next()
        .expect("a blob")
        .path();
    fs::write(&tampered, b"tampered").expect("tamper");
    let orphan = b"owned by no image";
    let orphan_digest = images::sha256_digest(orphan);
    let orphan_hex = orphan_digest.trim_start_matches("sha256:");
    fs::write(blobs.join(orphan_hex), orphan).expect("orphan blob");
    let layer = fs::read_dir(root.join("snapshots").join("layers"))
        .expect("layers")
        .flatten()
        .next()
        .expect("a layer")
        .path();
    fs::remove_dir_all(layer.join("fs")).expect("remove layer content");
    fs::write(root.join("content").join("ingest").join("junk"), b"x").expect("ingest junk");
    fs::create_dir(root.join("snapshots").join("ingest").join("junk")).expect("ingest junk");

    let problems = image_store_problems(&node).await;
    for needle in [
        format!(
            "{}",
            tampered.file_name().unwrap_or_default().to_string_lossy()
        ),
        format!("blob {orphan_digest} is owned by no image"),
        format!("{} is missing", layer.join("fs").display()),
        "content ingest leftover".to_owned(),
        "snapshot ingest leftover".to_owned(),
    ] {
        assert!(
            problems.iter().any(|problem| problem.contains(&needle)),
            "no problem mentions {needle:?}: {problems:#?}"
        );
    }
    let damaged = verify();
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    assert!(!damaged.status.success(), "{damaged:?}");
    assert!(stdout.contains("problem: "), "{stdout}");

    let writable = root.join("snapshots").join("active").join("f0".repeat(32));
    let cni_entry = root
        .join("cni")
        .join("results")
        .join(format!("{}.json", "f1".repeat(32)));
    let temp_record = root.join("store").join("pods").join(".x.0.tmp");
    let unknown = root.join("surprise");
    fs::create_dir_all(&writable).expect("stray writable layer");
    for file in [&cni_entry, &temp_record, &unknown] {
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).expect("parent");
        }
        fs::write(file, b"{}").expect("stray file");
    }
    let found = leaks(&node, None, &[]);
    for stray in [&writable, &cni_entry, &temp_record, &unknown] {
        let text = stray.to_string_lossy();
        assert!(
            found.iter().any(|leak| leak.contains(&*text)),
            "{text} not reported: {found:#?}"
        );
    }
}

/// The daemon's Prometheus text, fetched inside the node's network namespace from `addr`.
fn scrape(node: &Node, addr: &str) -> String {
    use std::io::{Read, Write};
    node.run_in_netns(|| {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok::<String, std::io::Error>(reply)
    })
    .expect("enter the node's netns")
    .expect("GET /metrics")
}

/// What the stores remove as they open (half-written records, blobs and layers left by a
/// crash) is counted in `carrack_reconciler_removals_total`, each under its own kind.
#[tokio::test(flavor = "multi_thread")]
async fn leftovers_the_stores_remove_at_start_are_counted() {
    if !skip_unless_root() {
        return;
    }
    const METRICS_ADDR: &str = "127.0.0.1:9464";
    let mut node = Node::builder()
        .config(&format!("[metrics]\naddress = \"{METRICS_ADDR}\"\n"))
        .start();
    node.stop_daemon().expect("stop daemon");
    let root = node.root_dir();
    fs::write(
        root.join("content").join("ingest").join("blob-1-0"),
        b"half",
    )
    .expect("blob");
    fs::create_dir(root.join("snapshots").join("ingest").join("layer-7")).expect("layer");
    fs::write(root.join("store").join("pods").join(".x.0.tmp"), b"{").expect("record");
    node.start_daemon().expect("start daemon");
    let _cri = node.cri().await;
    let text = scrape(&node, METRICS_ADDR);
    for kind in ["content_ingest", "snapshot_ingest", "store_temp_records"] {
        let line = format!("carrack_reconciler_removals_total{{state=\"{kind}\"}} 1");
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert_no_leaks(&node, None, &[]);
}
