//! Root integration tests of pods in their own user namespace (`hostUsers: false`): the pod's
//! namespaces owned by it, busybox containers (and their execs) running as the pod's root,
//! which maps to a host range; their rootfs an overlay on idmapped layers whose writable
//! layer ends up owned by the mapped host ids; idmapped CRI mounts; nothing left behind.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use carrack::proto;
use support::cni::write_bridge_conflist;
use support::leaks::leaks;
use support::node::Node;
use support::skip_unless_root;
use support::workload::{
    self, container_config, create, exec_sync, pull_busybox, remove, remove_pod, run_pod_config,
    start, stop, stop_pod,
};
use tonic::Code;

/// Container root is this host uid and gid.
const HOST_ROOT: u32 = 300_000;
const LENGTH: u32 = 65_536;

fn mapping(host_id: u32) -> Vec<proto::IdMapping> {
    vec![proto::IdMapping {
        host_id,
        container_id: 0,
        length: LENGTH,
    }]
}

fn userns_options(host_id: u32) -> proto::UserNamespace {
    proto::UserNamespace {
        mode: proto::NamespaceMode::Pod.into(),
        uids: mapping(host_id),
        gids: mapping(host_id),
    }
}

/// A pod with its own network namespace and user namespace.
fn pod_config(node: &Node, name: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    userns_options: Some(userns_options(HOST_ROOT)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..workload::named_pod_config(node, "default", name)
    }
}

async fn exec_ok(cri: &mut support::client::CriClient, id: &str, script: &str) -> String {
    let reply = exec_sync(cri, id, &["sh", "-c", script], 20)
        .await
        .expect("ExecSync");
    assert_eq!(
        reply.exit_code,
        0,
        "{script}: {}{}",
        String::from_utf8_lossy(&reply.stdout),
        String::from_utf8_lossy(&reply.stderr)
    );
    String::from_utf8_lossy(&reply.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn user_namespace_pod_maps_root_owns_its_files_and_leaves_nothing() {
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
    let features = status.runtime_handlers[0].features.expect("features");
    let pod_config = pod_config(&node, "userns");
    if !features.user_namespaces {
        // A kernel without idmapped overlay layers (before 6.13): refused, never faked.
        let err = run_pod_config(&mut cri, &pod_config)
            .await
            .expect_err("refused without support");
        assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
        eprintln!("user namespaces unsupported here: {}", err.message());
        return;
    }
    pull_busybox(&node, &mut cri).await;
    let pod = run_pod_config(&mut cri, &pod_config)
        .await
        .expect("RunPodSandbox");
    let reported = cri
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .and_then(|status| status.linux)
        .and_then(|linux| linux.namespaces)
        .and_then(|namespaces| namespaces.options)
        .and_then(|options| options.userns_options);
    assert_eq!(reported, Some(userns_options(HOST_ROOT)));

    // A host directory owned by the host's root, mounted idmapped with the pod's mappings.
    let volume = node.base_dir().join("userns-volume");
    fs::create_dir_all(&volume).expect("volume dir");
    fs::write(volume.join("from-host"), "hello\n").expect("volume file");
    let mut config = container_config("mapped", &["sleep", "300"]);
    config.mounts = vec![proto::Mount {
        container_path: "/vol".to_owned(),
        host_path: volume.to_string_lossy().into_owned(),
        uid_mappings: mapping(HOST_ROOT),
        gid_mappings: mapping(HOST_ROOT),
        ..Default::default()
    }];
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("CreateContainer");
    start(&mut cri, &id).await.expect("StartContainer");

    let maps = exec_ok(&mut cri, &id, "cat /proc/self/uid_map /proc/self/gid_map").await;
    let lines: Vec<Vec<&str>> = maps
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(lines, vec![vec!["0", "300000", "65536"]; 2], "{maps}");
    let ids = exec_ok(&mut cri, &id, "id -u; id -g; stat -c %u:%g / /etc/passwd").await;
    assert_eq!(ids, "0\n0\n0:0\n0:0\n", "root inside, image files root's");
    // The init of the pod's PID namespace is the pod's root too, not the host's.
    let pod_init = exec_ok(&mut cri, &id, "cat /proc/1/uid_map; stat -c %u /proc/1").await;
    let words: Vec<&str> = pod_init.split_whitespace().collect();
    assert_eq!(words, ["0", "300000", "65536", "0"], "{pod_init}");
    // The container's first process too, not only the exec: its uid is the mapped root's.
    let verbose = cri
        .runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).expect("info");
    let pid = info["pid"].as_i64().expect("pid");
    let init = fs::read_to_string(format!("/proc/{pid}/status")).expect("init status");
    assert!(init.contains("Uid:\t300000\t300000"), "{init}");
    assert_eq!(
        info["runtimeSpec"]["linux"]["uidMappings"][0]["hostID"],
        serde_json::json!(HOST_ROOT),
        "the spec in the verbose status shows the mappings"
    );
    exec_ok(
        &mut cri,
        &id,
        "echo new > /made-here && echo more >> /etc/passwd && echo t > /dev/shm/t && \
         echo t > /tmp/t && mkdir /dev/mine && stat -c %u:%g /vol/from-host && \
         echo written > /vol/from-container",
    )
    .await;
    let owners = exec_ok(&mut cri, &id, "stat -c %u:%g /vol/from-host /made-here").await;
    assert_eq!(owners, "0:0\n0:0\n");

    // On the host: the writable layer holds the mapped ids; the idmapped volume the host's.
    let upper = node
        .root_dir()
        .join("snapshots/active")
        .join(&id)
        .join("upper");
    for file in ["made-here", "etc/passwd", "."] {
        let meta = fs::metadata(upper.join(file)).expect("in the upper dir");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (HOST_ROOT, HOST_ROOT),
            "owner of {file} in the upper dir"
        );
    }
    let from_container = fs::metadata(volume.join("from-container")).expect("volume write");
    assert_eq!((from_container.uid(), from_container.gid()), (0, 0));

    // Mappings other than the pod's are refused, for a container and for a mount.
    let mut other = container_config("other", &["true"]);
    other.linux = Some(proto::LinuxContainerConfig {
        security_context: Some(proto::LinuxContainerSecurityContext {
            namespace_options: Some(proto::NamespaceOption {
                userns_options: Some(userns_options(400_000)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = create(&mut cri, &pod, &pod_config, other)
        .await
        .expect_err("other mappings");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut odd_mount = container_config("odd-mount", &["true"]);
    odd_mount.mounts = vec![proto::Mount {
        container_path: "/vol".to_owned(),
        host_path: volume.to_string_lossy().into_owned(),
        uid_mappings: mapping(400_000),
        gid_mappings: mapping(400_000),
        ..Default::default()
    }];
    let err = create(&mut cri, &pod, &pod_config, odd_mount)
        .await
        .expect_err("other mount mappings");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    stop(&mut cri, &id, 5).await;
    remove(&mut cri, &id).await;
    stop_pod(&mut cri, &pod).await.expect("StopPodSandbox");
    remove_pod(&mut cri, &pod).await.expect("RemovePodSandbox");
    assert_eq!(
        leaks(&node, Some(&ipam_dir), &[]),
        Vec::<String>::new(),
        "left behind"
    );
    assert!(!upper.exists());
    let _ = fs::remove_dir_all(PathBuf::from(&volume));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_user_namespace_requests_are_refused_leaving_nothing() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let ipam_dir = write_bridge_conflist(&node);
    let mut cri = node.cri().await;
    let refused = |options: proto::UserNamespace, network: proto::NamespaceMode| {
        let mut config = pod_config(&node, "bad-userns");
        let namespaces = config
            .linux
            .as_mut()
            .and_then(|linux| linux.security_context.as_mut())
            .and_then(|security| security.namespace_options.as_mut())
            .expect("namespace options");
        namespaces.userns_options = Some(options);
        namespaces.network = network.into();
        config
    };
    let cases = [
        // critest's: two mappings, container id 0 unmapped, CONTAINER and TARGET modes.
        (
            proto::UserNamespace {
                uids: [mapping(1000), mapping(2000)].concat(),
                ..userns_options(1000)
            },
            proto::NamespaceMode::Pod,
            Code::InvalidArgument,
        ),
        (
            proto::UserNamespace {
                uids: vec![proto::IdMapping {
                    host_id: 1000,
                    container_id: 1,
                    length: 100,
                }],
                ..userns_options(1000)
            },
            proto::NamespaceMode::Pod,
            Code::InvalidArgument,
        ),
        (
            proto::UserNamespace {
                mode: proto::NamespaceMode::Container.into(),
                ..Default::default()
            },
            proto::NamespaceMode::Pod,
            Code::Unimplemented,
        ),
        (
            proto::UserNamespace {
                mode: proto::NamespaceMode::Target.into(),
                ..Default::default()
            },
            proto::NamespaceMode::Pod,
            Code::InvalidArgument,
        ),
        // Not built: a pod user namespace with the node's network.
        (
            userns_options(HOST_ROOT),
            proto::NamespaceMode::Node,
            Code::Unimplemented,
        ),
    ];
    for (options, network, code) in cases {
        let config = refused(options.clone(), network);
        let err = run_pod_config(&mut cri, &config)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{options:?} {network:?}: {err:?}");
    }
    assert_eq!(
        leaks(&node, Some(&ipam_dir), &[]),
        Vec::<String>::new(),
        "left behind"
    );
}
