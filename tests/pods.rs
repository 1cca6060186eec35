//! Root integration tests of pod sandboxes: pinned namespaces, pod files, the pod cgroup,
//! sysctls and CNI networking with Debian's plugins (bridge + host-local + portmap), all
//! inside the test node's network namespace.

mod support;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use carrack::proto;
use support::cni::{leased_ips, write_bridge_conflist, write_conflist, write_plugin};
use support::node::Node;
use support::{netns, skip_unless_root, workload};
use tonic::Code;

fn pod_config(name: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        dns_config: Some(proto::DnsConfig {
            servers: vec!["10.96.0.10".to_owned()],
            searches: vec!["default.svc.cluster.local".to_owned()],
            options: vec!["ndots:5".to_owned()],
        }),
        labels: HashMap::from([("app".to_owned(), name.to_owned())]),
        linux: Some(proto::LinuxPodSandboxConfig {
            sysctls: HashMap::from([("kernel.shm_rmid_forced".to_owned(), "1".to_owned())]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `config` in the node's network namespace (no netns, no CNI).
fn on_node_network(mut config: proto::PodSandboxConfig) -> proto::PodSandboxConfig {
    config.linux = Some(proto::LinuxPodSandboxConfig {
        security_context: Some(proto::LinuxSandboxSecurityContext {
            namespace_options: Some(proto::NamespaceOption {
                network: proto::NamespaceMode::Node.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

fn run_request(config: proto::PodSandboxConfig) -> proto::RunPodSandboxRequest {
    proto::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    }
}

async fn verbose_status(
    cri: &mut support::client::CriClient,
    id: &str,
) -> (proto::PodSandboxStatus, serde_json::Value) {
    let reply = cri
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let info = serde_json::from_str(&reply.info["info"]).expect("verbose info json");
    (reply.status.expect("status"), info)
}

/// Reads a file from inside a pinned namespace's view (net or ipc sysctls).
fn read_in_netns(netns_pin: &Path, path: &str) -> String {
    let path = path.to_owned();
    netns::run_in(netns_pin, move || fs::read_to_string(path))
        .expect("enter pod netns")
        .expect("read in pod netns")
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_lifecycle_with_network_files_cgroup_and_sysctls() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let ipam_dir = write_bridge_conflist(&node);
    let mut cri = node.cri().await;

    let status = cri
        .runtime
        .status(proto::StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let network = status
        .status
        .expect("conditions")
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady");
    assert!(network.status, "NetworkReady: {network:?}");

    let id = cri
        .runtime
        .run_pod_sandbox(run_request(pod_config("web")))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(id.len(), 64);

    let (status, info) = verbose_status(&mut cri, &id).await;
    assert_eq!(status.state, proto::PodSandboxState::SandboxReady as i32);
    let ip = status.network.expect("network").ip;
    assert!(ip.starts_with("10.99.0."), "pod ip {ip:?}");
    assert_eq!(leased_ips(&ipam_dir), vec![ip.clone()]);

    // Pod files.
    let pod_dir = PathBuf::from(info["podDir"].as_str().expect("podDir"));
    assert_eq!(
        fs::read_to_string(pod_dir.join("hostname")).unwrap(),
        "web-host\n"
    );
    let resolv = fs::read_to_string(pod_dir.join("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let shm = PathBuf::from(info["shm"].as_str().expect("shm"));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(&format!(" {} ", shm.display())),
        "shm tmpfs not mounted"
    );

    // Namespaces: the pod's netns has the default unprivileged-port sysctl and eth0 with the IP.
    let netns_pin = PathBuf::from(info["netns"].as_str().expect("netns"));
    assert_eq!(
        read_in_netns(&netns_pin, "/proc/sys/net/ipv4/ip_unprivileged_port_start").trim(),
        "0"
    );
    let host_rmid = fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
    assert_eq!(host_rmid.trim(), "0", "host sysctl must be untouched");

    // The pod cgroup sits under the node's cgroup parent.
    let cgroup_path = info["cgroupPath"].as_str().expect("cgroupPath").to_owned();
    assert!(
        cgroup_path.starts_with(&node.cgroup_parent()),
        "{cgroup_path}"
    );
    let memory_cgroup = PathBuf::from(format!("/sys/fs/cgroup/memory{cgroup_path}"));
    assert!(memory_cgroup.is_dir(), "{}", memory_cgroup.display());

    // A duplicate name is refused, naming the holder.
    let duplicate = cri
        .runtime
        .run_pod_sandbox(run_request(pod_config("web")))
        .await
        .expect_err("duplicate name");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert!(duplicate.message().contains(&id), "{}", duplicate.message());

    // List with filters.
    let listed = cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest {
            filter: Some(proto::PodSandboxFilter {
                label_selector: HashMap::from([("app".to_owned(), "web".to_owned())]),
                ..Default::default()
            }),
        })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    // Stop releases the IP and the netns; it is repeatable.
    for _ in 0..2 {
        cri.runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .expect("StopPodSandbox");
    }
    let (status, _) = verbose_status(&mut cri, &id).await;
    assert_eq!(status.state, proto::PodSandboxState::SandboxNotready as i32);
    assert!(leased_ips(&ipam_dir).is_empty(), "IP leaked after stop");
    assert!(!netns_pin.exists(), "netns pin left after stop");

    // Remove releases everything; it is repeatable, and unknown ids succeed.
    for pod in [id.as_str(), id.as_str(), "0123456789abcdef"] {
        cri.runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: pod.to_owned(),
            })
            .await
            .expect("RemovePodSandbox");
    }
    assert!(!pod_dir.exists(), "pod dir left after remove");
    assert!(!memory_cgroup.exists(), "pod cgroup left after remove");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount of the pod is left");
    let gone = cri
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("status of removed pod");
    assert_eq!(gone.code(), Code::NotFound);

    // The name is free again.
    let again = cri
        .runtime
        .run_pod_sandbox(run_request(pod_config("web")))
        .await
        .expect("RunPodSandbox after remove")
        .into_inner()
        .pod_sandbox_id;
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: again,
        })
        .await
        .expect("RemovePodSandbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_reach_each_other_over_the_bridge() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    let mut pods = Vec::new();
    for name in ["a", "b"] {
        let id = cri
            .runtime
            .run_pod_sandbox(run_request(pod_config(name)))
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        let (status, info) = verbose_status(&mut cri, &id).await;
        let netns_pin = PathBuf::from(info["netns"].as_str().expect("netns"));
        pods.push((id, status.network.expect("network").ip, netns_pin));
    }
    let (server_ip, server_ns) = (pods[0].1.clone(), pods[0].2.clone());
    let client_ns = pods[1].2.clone();
    let listener = netns::run_in(&server_ns, move || {
        std::net::TcpListener::bind(format!("{server_ip}:8080"))
    })
    .expect("enter pod a")
    .expect("listen in pod a");
    let target = format!("{}:8080", pods[0].1);
    let connected = netns::run_in(&client_ns, move || {
        std::net::TcpStream::connect_timeout(
            &target.parse().expect("addr"),
            std::time::Duration::from_secs(5),
        )
    })
    .expect("enter pod b");
    connected.expect("pod b reaches pod a");
    drop(listener);
    for (id, _, _) in pods {
        cri.runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .expect("RemovePodSandbox");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_pod_has_no_netns_and_no_ip() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    let config = on_node_network(pod_config("hostnet"));
    let id = cri
        .runtime
        .run_pod_sandbox(run_request(config))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let (status, info) = verbose_status(&mut cri, &id).await;
    assert_eq!(status.network.expect("network").ip, "");
    assert!(info["netns"].is_null());
    let pod_dir = PathBuf::from(info["podDir"].as_str().expect("podDir"));
    assert!(
        pod_dir.join("hosts").exists(),
        "host-network pods get a hosts file"
    );
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .expect("RemovePodSandbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sysctls_and_handlers_are_refused_leaving_nothing() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    for (name, value) in [
        ("kernel.core_pattern", "|/tmp/evil"),
        ("net.ipv4.ip_forward", "1\nkernel.core_pattern=|/tmp/evil"),
        ("net/../kernel/hostname", "x"),
    ] {
        let mut config = pod_config("bad");
        config.linux = Some(proto::LinuxPodSandboxConfig {
            sysctls: HashMap::from([(name.to_owned(), value.to_owned())]),
            ..Default::default()
        });
        let err = cri
            .runtime
            .run_pod_sandbox(run_request(config))
            .await
            .expect_err("bad sysctl");
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
    }
    let err = cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(pod_config("handler")),
            runtime_handler: "kata".to_owned(),
        })
        .await
        .expect_err("unknown handler");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("kata"));
    let pods_dir = node.state_dir().join("pods");
    let left: Vec<_> = fs::read_dir(&pods_dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_cni_plugin_leaves_no_netns_cgroup_or_ip_behind() {
    if !skip_unless_root() {
        return;
    }
    // A chained plugin that always fails, after bridge + host-local succeeded.
    let bin_dir = tempfile::tempdir().expect("plugin dir");
    write_plugin(
        bin_dir.path(),
        "failer",
        "if [ \"$CNI_COMMAND\" = ADD ]; then echo '{\"code\":11,\"msg\":\"injected failure\"}'; exit 1; fi\nexit 0\n",
    );
    let restarted = Node::builder()
        .config(&format!(
            "[cni]\nbin_dirs = [\"/usr/lib/cni\", \"{}\"]\n",
            bin_dir.path().display()
        ))
        .start();
    let ipam_dir = write_bridge_conflist(&restarted);
    let conflist_path = restarted.cni_conf_dir().join("10-carrack-test.conflist");
    let mut conflist: serde_json::Value =
        serde_json::from_slice(&fs::read(&conflist_path).unwrap()).unwrap();
    conflist["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "failer"}));
    fs::write(&conflist_path, serde_json::to_vec(&conflist).unwrap()).unwrap();
    let mut cri = restarted.cri().await;

    let err = cri
        .runtime
        .run_pod_sandbox(run_request(pod_config("doomed")))
        .await
        .expect_err("CNI failure");
    assert!(
        err.message().contains("injected failure"),
        "{}",
        err.message()
    );
    assert!(leased_ips(&ipam_dir).is_empty(), "IP leaked");
    let pods_dir = restarted.state_dir().join("pods");
    let left: Vec<_> = fs::read_dir(&pods_dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pod files left: {left:?}");
    let cgroups = PathBuf::from(format!(
        "/sys/fs/cgroup/memory{}",
        restarted.cgroup_parent()
    ));
    let cgroup_children: Vec<_> = fs::read_dir(&cgroups)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        cgroup_children.is_empty(),
        "pod cgroup left: {cgroup_children:?}"
    );
    let listed = cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert!(listed.is_empty(), "a record is left: {listed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_pod_sandbox_resources_sets_the_pod_cgroup_limits() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    let id = cri
        .runtime
        .run_pod_sandbox(run_request(pod_config("limited")))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let (_, info) = verbose_status(&mut cri, &id).await;
    let cgroup_path = info["cgroupPath"].as_str().expect("cgroupPath").to_owned();
    cri.runtime
        .update_pod_sandbox_resources(proto::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id.clone(),
            overhead: Some(proto::LinuxContainerResources {
                memory_limit_in_bytes: 16 << 20,
                ..Default::default()
            }),
            resources: Some(proto::LinuxContainerResources {
                memory_limit_in_bytes: 48 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
        })
        .await
        .expect("UpdatePodSandboxResources");
    let limit = fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{cgroup_path}/memory.limit_in_bytes"
    ))
    .expect("memory limit");
    assert_eq!(
        limit.trim(),
        (64u64 << 20).to_string(),
        "overhead + resources"
    );
    let unknown = cri
        .runtime
        .update_pod_sandbox_resources(proto::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "f".repeat(64),
            ..Default::default()
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(unknown.code(), Code::NotFound);
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .expect("RemovePodSandbox");
}

/// A crash between CNI ADD and the pod record (simulated: the record is deleted while the
/// daemon is down) must not leak the pod's IP: the start-up pass runs the DEL.
#[tokio::test(flavor = "multi_thread")]
async fn interrupted_network_setup_is_torn_down_at_start() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let ipam_dir = write_bridge_conflist(&node);
    let id = {
        let mut cri = node.cri().await;
        cri.runtime
            .run_pod_sandbox(run_request(pod_config("crashy")))
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id
    };
    assert_eq!(leased_ips(&ipam_dir).len(), 1);
    node.kill_daemon().expect("SIGKILL daemon");
    let record = node
        .root_dir()
        .join("store")
        .join("pods")
        .join(format!("{id}.json"));
    fs::remove_file(&record).expect("drop the pod record");
    node.start_daemon().expect("restart daemon");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !leased_ips(&ipam_dir).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        leased_ips(&ipam_dir).is_empty(),
        "the IP of the interrupted pod leaked\n{}",
        node.daemon_log()
    );
}

/// The leak loop: 200 run/stop/remove cycles (each with a container) leave
/// host-local's store, the pods' state dirs and the cgroup parent empty.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_cycles_leak_no_ip_dir_or_cgroup() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let ipam_dir = write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    for cycle in 0..200 {
        let mut config = pod_config("cycle");
        if let Some(metadata) = config.metadata.as_mut() {
            metadata.attempt = cycle;
        }
        let id = cri
            .runtime
            .run_pod_sandbox(run_request(config))
            .await
            .unwrap_or_else(|err| panic!("RunPodSandbox in cycle {cycle}: {err:?}"))
            .into_inner()
            .pod_sandbox_id;
        cri.runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .expect("StopPodSandbox");
        cri.runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .expect("RemovePodSandbox");
    }
    assert!(leased_ips(&ipam_dir).is_empty(), "IP leaked");
    let pods_left: Vec<_> = fs::read_dir(node.state_dir().join("pods"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(pods_left.is_empty(), "{pods_left:?}");
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        let parent = hierarchy
            .path()
            .join(node.cgroup_parent().trim_start_matches('/'));
        let children: Vec<_> = fs::read_dir(&parent)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(children.is_empty(), "{children:?}");
    }
}

/// `tc qdisc show` in the node's network namespace.
fn node_qdiscs(node: &Node) -> String {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", node.netns_name(), "tc", "qdisc", "show"])
        .output()
        .expect("run tc");
    assert!(output.status.success(), "tc: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A pod on the bridge whose containers log under the node's temp dir.
fn logged_pod_config(node: &Node, name: &str) -> proto::PodSandboxConfig {
    let mut config = pod_config(name);
    config.log_directory = node
        .base_dir()
        .join("pod-logs")
        .join(name)
        .display()
        .to_string();
    config
}

/// Creates and starts a busybox container running `command` in the pod.
async fn start_container(
    cri: &mut support::client::CriClient,
    pod_id: &str,
    pod_config: &proto::PodSandboxConfig,
    name: &str,
    command: &[&str],
) -> String {
    let id = workload::create(
        cri,
        pod_id,
        pod_config,
        workload::container_config(name, command),
    )
    .await
    .expect("CreateContainer");
    workload::start(cri, &id).await.expect("StartContainer");
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn bandwidth_annotations_and_pod_cidr_reach_the_cni_plugins() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    // The bridge declares `ipRanges` (host-local then allocates from the pod CIDR), and the
    // bandwidth plugin shapes the pod's host-side veth (ingress) and an ifb device (egress).
    write_conflist(
        &node,
        "bridge",
        serde_json::json!({"ipRanges": true}),
        vec![serde_json::json!({"type": "bandwidth", "capabilities": {"bandwidth": true}})],
    );
    let mut cri = node.cri().await;
    cri.runtime
        .update_runtime_config(proto::UpdateRuntimeConfigRequest {
            runtime_config: Some(proto::RuntimeConfig {
                network_config: Some(proto::NetworkConfig {
                    pod_cidr: "10.98.7.0/24".to_owned(),
                }),
            }),
        })
        .await
        .expect("UpdateRuntimeConfig");

    let mut bad = pod_config("bad-bandwidth");
    bad.annotations.insert(
        "kubernetes.io/ingress-bandwidth".to_owned(),
        "fast".to_owned(),
    );
    let err = cri
        .runtime
        .run_pod_sandbox(run_request(bad))
        .await
        .expect_err("an unparsable bandwidth");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("ingress-bandwidth"), "{err:?}");

    let mut config = pod_config("shaped");
    config.annotations.extend([
        (
            "kubernetes.io/ingress-bandwidth".to_owned(),
            "3M".to_owned(),
        ),
        ("kubernetes.io/egress-bandwidth".to_owned(), "5M".to_owned()),
    ]);
    let id = cri
        .runtime
        .run_pod_sandbox(run_request(config))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let (status, _) = verbose_status(&mut cri, &id).await;
    let ip = status.network.expect("network").ip;
    assert!(ip.starts_with("10.98.7."), "the pod CIDR's address: {ip}");
    let qdiscs = node_qdiscs(&node);
    assert!(
        qdiscs.contains("tbf") && qdiscs.contains("rate 3Mbit") && qdiscs.contains("rate 5Mbit"),
        "{qdiscs}"
    );
    assert!(qdiscs.contains("qdisc ingress"), "{qdiscs}");
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .expect("RemovePodSandbox");
    let qdiscs = node_qdiscs(&node);
    assert!(!qdiscs.contains("rate 5Mbit"), "ifb left: {qdiscs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_shm_is_shared_within_a_pod_and_not_across_pods() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    workload::pull_busybox(&node, &mut cri).await;
    let mut containers = Vec::new();
    let mut pods = Vec::new();
    for (pod, names) in [
        ("shm-a", &["writer", "reader"][..]),
        ("shm-b", &["other"][..]),
    ] {
        let config = logged_pod_config(&node, pod);
        let pod_id = workload::run_pod_config(&mut cri, &config)
            .await
            .expect("RunPodSandbox");
        for name in names {
            containers
                .push(start_container(&mut cri, &pod_id, &config, name, &["sleep", "1000"]).await);
        }
        pods.push(pod_id);
    }
    let (writer, reader, other) = (&containers[0], &containers[1], &containers[2]);
    let wrote = workload::exec_sync(
        &mut cri,
        writer,
        &["sh", "-c", "echo from-writer > /dev/shm/marker"],
        10,
    )
    .await
    .expect("ExecSync");
    assert_eq!(wrote.exit_code, 0, "{wrote:?}");
    let read = workload::exec_sync(&mut cri, reader, &["cat", "/dev/shm/marker"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(
        (
            read.exit_code,
            String::from_utf8_lossy(&read.stdout).as_ref()
        ),
        (0, "from-writer\n"),
        "the pod's containers share /dev/shm: {read:?}"
    );
    let absent = workload::exec_sync(&mut cri, other, &["cat", "/dev/shm/marker"], 10)
        .await
        .expect("ExecSync");
    assert_ne!(absent.exit_code, 0, "another pod's /dev/shm: {absent:?}");
    for pod_id in pods {
        workload::stop_pod(&mut cri, &pod_id)
            .await
            .expect("StopPodSandbox");
        workload::remove_pod(&mut cri, &pod_id)
            .await
            .expect("RemovePodSandbox");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_port_answers_on_node_loopback_and_host_network_pods_see_node_links() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    workload::pull_busybox(&node, &mut cri).await;

    // httpd on port 80 of a bridged pod, published as the node's 18081.
    let mut config = logged_pod_config(&node, "published");
    config.port_mappings = vec![proto::PortMapping {
        protocol: proto::Protocol::Tcp.into(),
        container_port: 80,
        host_port: 18081,
        host_ip: String::new(),
    }];
    let pod_id = workload::run_pod_config(&mut cri, &config)
        .await
        .expect("RunPodSandbox");
    start_container(
        &mut cri,
        &pod_id,
        &config,
        "web",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo via-host-port > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    )
    .await;
    let mut answer = Err(std::io::Error::other("not tried"));
    for _ in 0..100 {
        answer = node
            .run_in_netns(|| http_get("127.0.0.1:18081"))
            .expect("enter the node netns");
        if answer.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let body = answer.expect("the host port answers on the node's 127.0.0.1");
    assert!(body.ends_with("via-host-port\n"), "{body:?}");

    // A host-network pod's container sees the node netns's links: the bridge and the
    // published pod's veth, which the test's node netns alone has.
    let host_config = on_node_network(logged_pod_config(&node, "hostnet"));
    let host_pod = workload::run_pod_config(&mut cri, &host_config)
        .await
        .expect("RunPodSandbox");
    let container = start_container(
        &mut cri,
        &host_pod,
        &host_config,
        "links",
        &["sleep", "1000"],
    )
    .await;
    let links = workload::exec_sync(&mut cri, &container, &["cat", "/proc/net/dev"], 10)
        .await
        .expect("ExecSync");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let node_links = node
        // `thread-self`: `/proc/self/net` is the main thread's namespace.
        .run_in_netns(|| fs::read_to_string("/proc/thread-self/net/dev"))
        .expect("enter the node netns")
        .expect("node links");
    assert!(links.contains("cr0:") && links.contains("veth"), "{links}");
    let names = |table: &str| -> Vec<String> {
        let mut names: Vec<String> = table
            .lines()
            .filter_map(|line| line.split_once(':').map(|(name, _)| name.trim().to_owned()))
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&links), names(&node_links));
    for id in [pod_id, host_pod] {
        workload::stop_pod(&mut cri, &id)
            .await
            .expect("StopPodSandbox");
        workload::remove_pod(&mut cri, &id)
            .await
            .expect("RemovePodSandbox");
    }
}

/// `GET /` over plain TCP, returning the whole response.
fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &addr.parse().map_err(std::io::Error::other)?,
        std::time::Duration::from_secs(2),
    )?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}
