//! Root integration tests of the foundation: the daemon starts in a test
//! node, serves the basic CRI calls, refuses bad configs and a second
//! instance, shuts down cleanly, and the harness itself (registry, images,
//! teardown, leftover sweep) works.
//!
//! Every test needs root and prints `skipped: needs root` otherwise.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use carrack::proto;
use support::images::{self, Expected, LAYERS_EXPECTED, media_type};
use support::node::Node;
use support::{cleanup, netns, skip_unless_root};
use tonic::Code;

/// How long a daemon that should refuse to start may take to do so.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn daemon_serves_version_status_and_runtime_config() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();

    // The daemon runs in the node's network namespace, not the host's.
    let pid = node.daemon_pid().expect("daemon running");
    let daemon_ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).expect("daemon netns");
    let node_ns = std::fs::metadata(node.netns_path()).expect("node netns");
    assert_eq!(
        (daemon_ns.dev(), daemon_ns.ino()),
        (node_ns.dev(), node_ns.ino()),
        "daemon is not in the node's network namespace"
    );

    let mut cri = node.cri().await;
    let version = cri
        .runtime
        .version(proto::VersionRequest::default())
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(version.runtime_name, "carrack");
    assert_eq!(version.runtime_api_version, "v1");

    let status = cri
        .runtime
        .status(proto::StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let conditions = status.status.expect("Status.status").conditions;
    let condition = |kind: &str| {
        conditions
            .iter()
            .find(|condition| condition.r#type == kind)
            .unwrap_or_else(|| panic!("no {kind} condition in {conditions:?}"))
    };
    assert!(condition("RuntimeReady").status, "{conditions:?}");
    let network = condition("NetworkReady");
    assert!(!network.status, "{conditions:?}");
    assert_eq!(network.reason, "NetworkPluginNotReady");

    let verbose = cri
        .runtime
        .status(proto::StatusRequest { verbose: true })
        .await
        .expect("Status verbose")
        .into_inner();
    let config: serde_json::Value =
        serde_json::from_str(verbose.info.get("config").expect("info[\"config\"]"))
            .expect("info[\"config\"] is JSON");
    assert_eq!(
        config["root_dir"].as_str(),
        node.root_dir().to_str(),
        "config: {config}"
    );

    let runtime_config = cri
        .runtime
        .runtime_config(proto::RuntimeConfigRequest::default())
        .await
        .expect("RuntimeConfig")
        .into_inner();
    assert_eq!(
        runtime_config.linux.expect("linux").cgroup_driver,
        proto::CgroupDriver::Cgroupfs as i32
    );
}

/// RPCs whose feature has not landed answer UNIMPLEMENTED rather than
/// pretending; remove an RPC from here when it is built.
#[tokio::test(flavor = "multi_thread")]
async fn unbuilt_rpcs_answer_unimplemented() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;

    let checkpoint = cri
        .runtime
        .checkpoint_container(proto::CheckpointContainerRequest::default())
        .await
        .expect_err("CheckpointContainer");
    assert_eq!(checkpoint.code(), Code::Unimplemented, "{checkpoint:?}");
    assert!(
        checkpoint.message().contains("CheckpointContainer"),
        "{checkpoint:?}"
    );
}

#[test]
fn second_daemon_on_the_same_root_dir_is_refused() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();

    // Same root dir, its own socket, so only the lock can stop it.
    let mut config = node.config().clone();
    let second_socket = node.base_dir().join("run").join("second.sock");
    config.insert(
        "socket_path".to_owned(),
        toml::Value::String(second_socket.display().to_string()),
    );
    let config_path = node.config_dir().join("second.toml");
    node.write_config(&config_path, &config)
        .expect("write second config");

    let run = node
        .run_daemon_until_exit(&config_path, REFUSAL_TIMEOUT)
        .expect("second daemon exits");
    assert!(!run.status.success(), "second daemon: {:?}", run.status);
    assert!(
        run.output.to_lowercase().contains("lock"),
        "refusal does not mention the lock:\n{}",
        run.output
    );
    assert!(!second_socket.exists(), "refused daemon created its socket");
    // The first daemon is untouched.
    assert!(
        std::os::unix::net::UnixStream::connect(node.socket_path()).is_ok(),
        "first daemon stopped accepting connections"
    );
}

#[test]
fn bad_config_is_refused_naming_key_and_file() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();

    // (name, mutation of the node's config, text the error must contain)
    type Mutation = fn(&mut toml::Table);
    let cases: [(&str, Mutation, &str); 4] = [
        (
            "unknown-top-level-key",
            |config| {
                config.insert("bogus_key".to_owned(), toml::Value::Boolean(true));
            },
            "bogus_key",
        ),
        (
            "unknown-nested-key",
            |config| {
                table(config, "log").insert("colour".to_owned(), toml::Value::Boolean(true));
            },
            "colour",
        ),
        (
            "bad-log-level",
            |config| {
                table(config, "log").insert("level".to_owned(), "loud".into());
            },
            "log.level",
        ),
        (
            "bad-cgroup-driver",
            |config| {
                table(config, "cgroups").insert("driver".to_owned(), "cgroupz".into());
            },
            "driver",
        ),
    ];
    for (name, mutate, key) in cases {
        let mut config = node.config().clone();
        // A socket of its own, so a daemon that wrongly starts cannot be
        // mistaken for the fixture's.
        config.insert(
            "socket_path".to_owned(),
            toml::Value::String(
                node.base_dir()
                    .join("run")
                    .join(format!("{name}.sock"))
                    .display()
                    .to_string(),
            ),
        );
        mutate(&mut config);
        let path = node.config_dir().join(format!("{name}.toml"));
        node.write_config(&path, &config).expect("write bad config");

        let run = node
            .run_daemon_until_exit(&path, REFUSAL_TIMEOUT)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(!run.status.success(), "{name}: daemon accepted it: {run:?}");
        assert!(
            run.output.contains(key),
            "{name}: error does not name `{key}`:\n{}",
            run.output
        );
        assert!(
            run.output.contains(&path.display().to_string()),
            "{name}: error does not name the file {}:\n{}",
            path.display(),
            run.output
        );
        assert!(
            !run.output.contains("lock"),
            "{name}: refused for the lock, not the config:\n{}",
            run.output
        );
    }
}

/// The sub-table `key` of `config`, created if missing.
fn table<'a>(config: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    let value = config
        .entry(key.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match value {
        toml::Value::Table(table) => table,
        other => panic!("config key {key} is not a table: {other}"),
    }
}

#[test]
fn registry_serves_pushed_test_images() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let registry = node.registry();

    let pushes = [
        (images::busybox(), "library/busybox:latest"),
        (images::busybox(), "e2e-test-images/busybox:1.29-2"),
        (images::long_running(), "carrack/long-running:1"),
        (images::layers(), "carrack/layers:1"),
    ];
    for (image, reference) in pushes {
        let digest = node
            .push(image, reference)
            .unwrap_or_else(|err| panic!("push {reference}: {err}"));
        assert_eq!(digest, image.digest());

        let (name, tag) = images::split_reference(reference);
        let served = images::fetch_manifest(registry, name, tag).expect("GET manifest");
        assert_eq!(served.status, 200, "GET {reference}: {served:?}");
        assert_eq!(served.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(served.media_type.as_deref(), Some(media_type::OCI_MANIFEST));
        assert_eq!(served.body, image.manifest.data);
    }

    // The same content under another name is the same manifest.
    let by_digest = images::fetch_manifest(registry, "library/busybox", images::busybox().digest())
        .expect("GET manifest by digest");
    assert_eq!(by_digest.status, 200);

    let missing = images::fetch_manifest(registry, "library/busybox", "no-such-tag")
        .expect("GET missing manifest");
    assert_eq!(missing.status, 404);
}

/// The images are what later tests rely on: hard-linked applets, digests
/// that match the bytes, whiteout entries in the right layers.
#[test]
fn test_images_are_well_formed() {
    let busybox = images::busybox();
    assert_eq!(busybox.layers.len(), 1);
    let entries = layer_entries(&busybox.layers[0]);
    let kind = |path: &str| {
        entries
            .get(path)
            .unwrap_or_else(|| panic!("busybox layer has no {path}"))
            .clone()
    };
    assert_eq!(kind("bin/busybox"), Entry::File(0o755));
    for applet in ["sh", "ls", "sleep", "cat", "id", "top", "mount", "echo"] {
        assert_eq!(
            kind(&format!("bin/{applet}")),
            Entry::HardLink("bin/busybox".into()),
            "{applet}"
        );
    }
    assert_eq!(kind("tmp"), Entry::Dir(0o1777));
    assert_eq!(kind("root"), Entry::Dir(0o700));
    assert_eq!(kind("etc/passwd"), Entry::File(0o644));
    assert!(images::BUSYBOX_PASSWD.contains("nobody:x:65534:65534:"));

    let config: serde_json::Value =
        serde_json::from_slice(&busybox.config.data).expect("config JSON");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(config["os"], "linux");
    let manifest: serde_json::Value =
        serde_json::from_slice(&busybox.manifest.data).expect("manifest JSON");
    assert_eq!(manifest["config"]["digest"], busybox.config.digest.as_str());

    for image in [images::busybox(), images::long_running(), images::layers()] {
        let config: serde_json::Value =
            serde_json::from_slice(&image.config.data).expect("config JSON");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
        assert_eq!(diff_ids.len(), image.layers.len());
        for (layer, diff_id) in image.layers.iter().zip(diff_ids) {
            assert_eq!(images::sha256_digest(&layer.gzip), layer.digest);
            assert_eq!(images::sha256_digest(&gunzip(&layer.gzip)), layer.diff_id);
            assert_eq!(diff_id.as_str(), Some(layer.diff_id.as_str()));
        }
    }
    assert_eq!(
        images::long_running().layers[0].digest,
        busybox.layers[0].digest,
        "the busybox layer is shared, not rebuilt"
    );

    let layered = images::layers();
    assert!(layered.layers.len() >= 4, "busybox plus three layers");
    let second = layer_entries(&layered.layers[2]);
    assert!(second.contains_key("layers/.wh.gone.txt"));
    assert!(second.contains_key("layers/opaque/.wh..wh..opq"));
    let third = layer_entries(&layered.layers[3]);
    assert!(third.contains_key("layers/.wh.dir-gone"));
    assert!(
        LAYERS_EXPECTED
            .iter()
            .any(|expected| matches!(expected, Expected::Absent { .. }))
    );

    assert_eq!(
        images::split_reference("e2e-test-images/busybox:1.29-2"),
        ("e2e-test-images/busybox", "1.29-2")
    );
    assert_eq!(
        images::split_reference("localhost:5000/busybox"),
        ("localhost:5000/busybox", "latest")
    );
    assert_eq!(
        images::split_reference("library/busybox@sha256:abc"),
        ("library/busybox", "sha256:abc")
    );
}

/// A tar entry as the image tests care about it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File(u32),
    Dir(u32),
    HardLink(String),
    Symlink(String),
    Other,
}

/// Path → entry of a gzip layer.
fn layer_entries(layer: &images::Layer) -> BTreeMap<String, Entry> {
    let tar = gunzip(&layer.gzip);
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entries = BTreeMap::new();
    for entry in archive.entries().expect("tar entries") {
        let entry = entry.expect("tar entry");
        let header = entry.header();
        let path = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let mode = header.mode().expect("mode") & 0o7777;
        let link = || {
            entry
                .link_name()
                .expect("link name")
                .expect("link target")
                .to_string_lossy()
                .into_owned()
        };
        let kind = match header.entry_type() {
            tar::EntryType::Regular => Entry::File(mode),
            tar::EntryType::Directory => Entry::Dir(mode),
            tar::EntryType::Link => Entry::HardLink(link()),
            tar::EntryType::Symlink => Entry::Symlink(link()),
            _ => Entry::Other,
        };
        entries.insert(path, kind);
    }
    entries
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip layer");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_zero_keeping_root_dir_and_stale_socket_is_replaced() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    {
        let mut cri = node.cri().await;
        cri.runtime
            .version(proto::VersionRequest::default())
            .await
            .expect("Version before stop");
    }

    let before = tree(&node.root_dir());
    let status = node.stop_daemon().expect("daemon stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", node.daemon_log());
    assert_eq!(tree(&node.root_dir()), before, "SIGTERM changed root_dir");

    node.start_daemon().expect("start again after SIGTERM");
    node.kill_daemon().expect("SIGKILL");
    let socket = std::fs::symlink_metadata(node.socket_path()).expect("stale socket file left");
    assert!(socket.file_type().is_socket());
    assert!(
        std::os::unix::net::UnixStream::connect(node.socket_path()).is_err(),
        "nobody should listen on the stale socket"
    );

    node.start_daemon().expect("start over a stale socket");
    let mut cri = node.cri().await;
    let version = cri
        .runtime
        .version(proto::VersionRequest::default())
        .await
        .expect("Version after restart")
        .into_inner();
    assert_eq!(version.runtime_name, "carrack");
}

/// Relative path → (is dir, size) of everything under `root`.
fn tree(root: &Path) -> BTreeMap<PathBuf, (bool, u64)> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let meta = entry.metadata().expect("metadata");
            let relative = entry
                .path()
                .strip_prefix(root)
                .expect("under root")
                .to_path_buf();
            if meta.is_dir() {
                pending.push(entry.path());
                out.insert(relative, (true, 0));
            } else {
                out.insert(relative, (false, meta.len()));
            }
        }
    }
    out
}

/// Dropping a node removes its namespace, cgroups (killing what runs in
/// them), mounts and temp dir.
#[test]
fn node_drop_removes_everything_it_made() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let name = node.name().to_owned();
    let base = node.base_dir().to_path_buf();
    let netns_path = node.netns_path();

    // Stand-ins for what the daemon will leave: a process in a nested cgroup
    // of the node's parent, and a mount under the temp dir.
    let cgroup = Path::new(cleanup::CGROUP_ROOT)
        .join("pids")
        .join(&name)
        .join("pod")
        .join("ctr");
    std::fs::create_dir_all(&cgroup).expect("make cgroup");
    let mut sleeper = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    std::fs::write(cgroup.join("cgroup.procs"), sleeper.id().to_string()).expect("join cgroup");
    let mount_point = base.join("root").join("mnt");
    std::fs::create_dir_all(&mount_point).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mount_point)
        .status()
        .expect("mount tmpfs");
    assert!(mounted.success());

    drop(node);

    let status = sleeper.wait().expect("reap sleep");
    assert!(!status.success(), "sleep in the node cgroup was not killed");
    assert!(!netns_path.exists(), "netns {name} left");
    assert!(
        !Path::new(cleanup::CGROUP_ROOT)
            .join("pids")
            .join(&name)
            .exists(),
        "cgroup left"
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mountinfo.contains(&name), "mount left:\n{mountinfo}");
    assert!(!base.exists(), "temp dir left");
}

/// What a SIGKILLed test process leaves behind is removed by the sweep.
#[test]
fn sweep_removes_leftovers_of_dead_test_processes() {
    if !skip_unless_root() {
        return;
    }
    // A pid that surely no longer exists: a child we have reaped.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let dead_pid = child.id();
    child.wait().expect("reap true");

    let name = format!("{}{dead_pid}-0", support::NAME_PREFIX);
    netns::add(&name).expect("leftover netns");
    let cgroup = Path::new(cleanup::CGROUP_ROOT)
        .join("memory")
        .join(&name)
        .join("pod");
    std::fs::create_dir_all(&cgroup).expect("leftover cgroup");
    let tmp = std::env::temp_dir().join(format!("{name}.leftover"));
    std::fs::create_dir_all(tmp.join("root")).expect("leftover temp dir");

    cleanup::sweep_leftovers();

    assert!(!netns::path(&name).exists(), "netns not swept");
    assert!(
        !Path::new(cleanup::CGROUP_ROOT)
            .join("memory")
            .join(&name)
            .exists(),
        "cgroup not swept"
    );
    assert!(!tmp.exists(), "temp dir not swept");
}

/// Regression: the daemon used to wait its whole 10 s grace for idle client connections to
/// close (kubelet never closes its own), instead of only for RPCs in flight.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_an_idle_client_connection_stops_promptly() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let mut cri = node.cri().await;
    cri.runtime
        .version(proto::VersionRequest::default())
        .await
        .expect("Version");
    let started = std::time::Instant::now();
    let status = node.stop_daemon().expect("daemon stops on SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", node.daemon_log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?} with an idle client connected",
        started.elapsed()
    );
    drop(cri);
}
