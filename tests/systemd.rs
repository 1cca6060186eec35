//! The systemd cgroup driver against a fake systemd manager on a private D-Bus bus (the test
//! machines run no systemd): pods become slices and containers scopes, with the right names
//! and properties, the container's process lives in its scope with its limits written, and
//! stop/remove stop the units and leave nothing. An unreachable bus fails `RunPodSandbox`
//! with a clear `UNAVAILABLE` naming the address, and leaves nothing either.

#[path = "support/systemd.rs"]
mod fake_systemd;
mod support;

use std::path::Path;

use carrack::proto;
use fake_systemd::{FakeSystemd, MANAGED, slice_path};
use support::cleanup::CGROUP_ROOT;
use support::leaks::leaks;
use support::node::Node;
use support::skip_unless_root;
use support::workload::{
    self, container_config, create, pull_busybox, remove, remove_pod, run_pod_config, start, stop,
    stop_pod,
};
use tonic::Code;

/// A slice name of this test process's own (`<prefix><pid>`: no dashes, so one level).
fn top_slice(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id())
}

/// A node whose daemon uses the systemd driver on `bus`.
fn systemd_node(bus: &str, top: &str) -> Node {
    Node::builder()
        .config(&format!(
            "[cgroups]\ndriver = \"systemd\"\nsystemd_bus_address = \"{bus}\"\n\
             default_parent = \"/{top}\"\n"
        ))
        .start()
}

/// A host-network pod in slice `<top>-pod<name>.slice` with CPU and memory limits.
fn pod_config(node: &Node, top: &str, name: &str) -> proto::PodSandboxConfig {
    let mut config = workload::pod_config(node, name, proto::NamespaceMode::Container);
    let linux = config.linux.get_or_insert_default();
    linux.cgroup_parent = format!("{top}-pod{name}.slice");
    linux.resources = Some(proto::LinuxContainerResources {
        cpu_shares: 512,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        memory_limit_in_bytes: 256 << 20,
        ..Default::default()
    });
    config
}

/// The cgroup directory of `path` (a slice path plus leaf) in `hierarchy`.
fn dir(hierarchy: &str, path: &str) -> std::path::PathBuf {
    Path::new(CGROUP_ROOT).join(hierarchy).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_are_slices_and_containers_scopes() {
    if !skip_unless_root() {
        return;
    }
    let top = top_slice("carracksd");
    let systemd = FakeSystemd::start(&top).await;
    let mut node = systemd_node(&systemd.address(), &top);
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;

    // The pod: a slice started with its limits, then the same files written.
    let pod_config = pod_config(&node, &top, "web");
    let pod = run_pod_config(&mut cri, &pod_config)
        .await
        .unwrap_or_else(|err| panic!("RunPodSandbox: {err}\n{}", node.daemon_log()));
    let slice = format!("{top}-podweb.slice");
    let slice_dir = slice_path(&slice);
    let started = systemd.calls_for("StartTransientUnit", &slice);
    assert_eq!(started.len(), 1, "{:?}", systemd.calls());
    let call = &started[0];
    assert!(!call.property::<bool>("DefaultDependencies"));
    assert_eq!(call.property::<u64>("CPUShares"), 512);
    assert_eq!(call.property::<u64>("CPUQuotaPerSecUSec"), 500_000);
    assert_eq!(call.property::<u64>("MemoryLimit"), 256 << 20);
    assert!(call.property::<bool>("MemoryAccounting"));
    assert_eq!(
        call.property::<Vec<String>>("Wants"),
        [format!("{top}.slice")]
    );
    assert_eq!(
        read(&dir("memory", &slice_dir).join("memory.limit_in_bytes")),
        (256u64 << 20).to_string()
    );
    assert_eq!(
        read(&dir("cpu", &slice_dir).join("cpu.cfs_quota_us")),
        "50000"
    );
    // Hierarchies the manager leaves alone get the directory from carrack, as with runc.
    assert!(dir("cpuset", &slice_dir).is_dir());
    assert!(dir("freezer", &slice_dir).is_dir());

    // The container: a scope created around its first process, before it runs.
    let mut config = container_config("sleeper", &["sleep", "1000"]);
    config.linux = Some(proto::LinuxContainerConfig {
        resources: Some(proto::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 256,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("CreateContainer");
    let scope = format!("carrack-{id}.scope");
    assert!(
        systemd.calls_for("StartTransientUnit", &scope).is_empty(),
        "no scope before start"
    );
    start(&mut cri, &id)
        .await
        .unwrap_or_else(|err| panic!("StartContainer: {err}\n{}", node.daemon_log()));
    let started = systemd.calls_for("StartTransientUnit", &scope);
    assert_eq!(started.len(), 1, "{:?}", systemd.calls());
    let call = &started[0];
    assert_eq!(call.property::<String>("Slice"), slice);
    assert!(call.property::<bool>("Delegate"));
    assert_eq!(call.property::<u64>("MemoryLimit"), 64 << 20);
    assert_eq!(call.property::<u64>("CPUShares"), 256);
    let pids = call.property::<Vec<u32>>("PIDs");
    assert_eq!(pids.len(), 1);
    let pid = pids[0];
    let scope_dir = format!("{slice_dir}/{scope}");
    for hierarchy in MANAGED.into_iter().chain(["cpuset", "freezer"]) {
        let procs = read(&dir(hierarchy, &scope_dir).join("cgroup.procs"));
        assert!(
            procs.lines().any(|line| line == pid.to_string()),
            "{hierarchy}: {procs:?} lacks {pid}"
        );
    }
    let membership = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(
        membership
            .lines()
            .any(|line| line.contains(":memory:") && line.ends_with(&format!("/{scope}"))),
        "{membership}"
    );
    assert_eq!(
        read(&dir("memory", &scope_dir).join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(read(&dir("cpu", &scope_dir).join("cpu.shares")), "256");

    // A restart runs the reconciler, which must recognise the scope as the container's.
    node.restart_daemon().expect("restart daemon");
    let mut cri = node.cri().await;
    let procs = read(&dir("memory", &scope_dir).join("cgroup.procs"));
    assert!(
        procs.lines().any(|line| line == pid.to_string()),
        "scope emptied by the reconciler: {procs:?}\n{}",
        node.daemon_log()
    );
    assert!(systemd.calls_for("StopUnit", &scope).is_empty());
    // Stats read the scope's cgroup files.
    let stats = cri
        .runtime
        .container_stats(proto::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats");
    let memory = stats.memory.expect("memory stats");
    assert!(
        memory.usage_bytes.is_some_and(|usage| usage.value > 0),
        "{memory:?}"
    );

    // Stop and remove: the units are stopped and nothing is left.
    stop(&mut cri, &id, 0).await;
    remove(&mut cri, &id).await;
    assert!(
        !systemd.calls_for("StopUnit", &scope).is_empty(),
        "{:?}",
        systemd.calls()
    );
    for hierarchy in MANAGED.into_iter().chain(["cpuset", "freezer"]) {
        assert!(!dir(hierarchy, &scope_dir).exists(), "{hierarchy}");
    }
    stop_pod(&mut cri, &pod).await.expect("StopPodSandbox");
    remove_pod(&mut cri, &pod).await.expect("RemovePodSandbox");
    remove_pod(&mut cri, &pod)
        .await
        .expect("RemovePodSandbox again");
    assert!(
        !systemd.calls_for("StopUnit", &slice).is_empty(),
        "{:?}",
        systemd.calls()
    );
    assert!(!systemd.calls_for("ResetFailedUnit", &slice).is_empty());
    assert_eq!(systemd.leftovers(), Vec::<std::path::PathBuf>::new());
    assert_eq!(leaks(&node, None, &[]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_bus_fails_the_pod_clearly_and_leaves_nothing() {
    if !skip_unless_root() {
        return;
    }
    let top = top_slice("carracksdnobus");
    let absent = tempfile::tempdir().expect("tempdir");
    let address = format!("unix:path={}/bus.sock", absent.path().display());
    refused_pod_leaves_nothing(&address, &top, "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bus_without_systemd_fails_the_pod_clearly_and_leaves_nothing() {
    if !skip_unless_root() {
        return;
    }
    let top = top_slice("carracksdnosd");
    let bus = FakeSystemd::bus_only(&top).await;
    refused_pod_leaves_nothing(&bus.address(), &top, "does not answer").await;
}

/// `RunPodSandbox` on a node whose systemd bus is `address` fails with `UNAVAILABLE` naming
/// the address (and `detail`), and nothing is left.
async fn refused_pod_leaves_nothing(address: &str, top: &str, detail: &str) {
    let node = systemd_node(address, top);
    let mut cri = node.cri().await;
    let config = pod_config(&node, top, "lonely");
    let err = run_pod_config(&mut cri, &config)
        .await
        .expect_err("no systemd, no pod");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains(address), "{err}");
    assert!(err.message().contains("systemd"), "{err}");
    assert!(err.message().contains(detail), "{err}");
    assert_eq!(leaks(&node, None, &[]), Vec::<String>::new());
    for entry in std::fs::read_dir(CGROUP_ROOT)
        .into_iter()
        .flatten()
        .flatten()
    {
        let top_dir = entry.path().join(format!("{top}.slice"));
        assert!(!top_dir.exists(), "{}", top_dir.display());
    }
}
