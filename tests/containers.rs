//! Root integration tests of containers: busybox containers in host-network pods of the test
//! node (the node's netns is the pods' "host"), run by a real daemon through its monitors.
//! Each test leaves nothing behind: the node fixture checks and removes cgroups, mounts and
//! processes, and the tests assert the daemon removed what it created.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carrack::proto;
use support::client::CriClient;
use support::images;
use support::node::Node;
use support::skip_unless_root;
use tonic::Code;

const BUSYBOX: &str = "busybox";

/// Pulls the busybox image (pushed to the node's registry first).
async fn pull_busybox(node: &Node, cri: &mut CriClient) {
    node.push(images::busybox(), "library/busybox:latest")
        .expect("push busybox");
    cri.image
        .pull_image(proto::PullImageRequest {
            image: Some(proto::ImageSpec {
                image: BUSYBOX.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("PullImage");
}

/// Runs a host-network pod logging to `<node>/pod-logs/<name>`.
async fn run_pod(
    node: &Node,
    cri: &mut CriClient,
    name: &str,
) -> (String, proto::PodSandboxConfig) {
    let log_directory = node.base_dir().join("pod-logs").join(name);
    let config = proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    network: proto::NamespaceMode::Node.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    (id, config)
}

fn container_config(name: &str, command: &[&str]) -> proto::ContainerConfig {
    proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(proto::ImageSpec {
            image: BUSYBOX.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("container".to_owned(), name.to_owned())]),
        linux: Some(proto::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

async fn create(
    cri: &mut CriClient,
    pod_id: &str,
    pod_config: &proto::PodSandboxConfig,
    config: proto::ContainerConfig,
) -> Result<String, tonic::Status> {
    cri.runtime
        .create_container(proto::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .map(|reply| reply.into_inner().container_id)
}

async fn start(cri: &mut CriClient, id: &str) -> Result<(), tonic::Status> {
    cri.runtime
        .start_container(proto::StartContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .map(drop)
}

async fn status(cri: &mut CriClient, id: &str) -> proto::ContainerStatus {
    cri.runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .expect("status")
}

/// Waits (up to 20 s) until the container has exited and returns its status.
async fn wait_exited(cri: &mut CriClient, id: &str) -> proto::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = status(cri, id).await;
        if status.state == proto::ContainerState::ContainerExited as i32 {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not exit: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exec_sync(
    cri: &mut CriClient,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<proto::ExecSyncResponse, tonic::Status> {
    cri.runtime
        .exec_sync(proto::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn stop(cri: &mut CriClient, id: &str, timeout: i64) {
    cri.runtime
        .stop_container(proto::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        })
        .await
        .expect("StopContainer");
}

async fn remove(cri: &mut CriClient, id: &str) {
    cri.runtime
        .remove_container(proto::RemoveContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .expect("RemoveContainer");
}

/// The CRI log lines of a file: `(stream, tag, content)`.
fn log_lines(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let timestamp = parts.next().unwrap_or_default();
            assert!(
                timestamp.len() >= 20 && timestamp.contains('T'),
                "bad timestamp in {line:?}"
            );
            (
                parts.next().unwrap_or_default().to_owned(),
                parts.next().unwrap_or_default().to_owned(),
                parts.next().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn log_path(pod_config: &proto::PodSandboxConfig, name: &str) -> PathBuf {
    Path::new(&pod_config.log_directory).join(format!("{name}/0.log"))
}

/// What the daemon keeps for a container: runtime dir, writable layer.
fn container_leftovers(node: &Node, id: &str) -> Vec<PathBuf> {
    [
        node.state_dir().join("containers").join(id),
        node.root_dir().join("snapshots").join("active").join(id),
    ]
    .into_iter()
    .filter(|path| path.exists())
    .collect()
}

fn container_cgroup_dirs(node: &Node, id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let parent = hierarchy
            .path()
            .join(node.cgroup_parent().trim_start_matches('/'));
        let mut pending = vec![parent];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    if entry.file_name().to_string_lossy().contains(id) {
                        found.push(entry.path());
                    }
                    pending.push(entry.path());
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn container_runs_exits_logs_and_is_removed_without_leftovers() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "lifecycle").await;

    let mut config = container_config(
        "printer",
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; echo $GREETING; pwd; printf partial; exit 3",
        ],
    );
    config.envs = vec![proto::KeyValue {
        key: "GREETING".to_owned(),
        value: b"hi there".to_vec(),
    }];
    config.working_dir = "/tmp".to_owned();
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("CreateContainer");
    let created = status(&mut cri, &id).await;
    assert_eq!(
        created.state,
        proto::ContainerState::ContainerCreated as i32
    );
    assert_eq!(
        created.metadata.as_ref().map(|m| m.name.as_str()),
        Some("printer")
    );

    // The same name in the same pod is reserved.
    let again = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("printer", &["true"]),
    )
    .await
    .expect_err("duplicate name");
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");

    start(&mut cri, &id).await.expect("StartContainer");
    let exited = wait_exited(&mut cri, &id).await;
    assert_eq!(exited.exit_code, 3);
    assert_eq!(exited.reason, "Error");
    assert!(exited.started_at > 0 && exited.finished_at >= exited.started_at);
    assert_eq!(
        exited.log_path,
        log_path(&pod_config, "printer").to_string_lossy()
    );

    let lines = log_lines(&log_path(&pod_config, "printer"));
    let stdout: Vec<_> = lines
        .iter()
        .filter(|(stream, _, _)| stream == "stdout")
        .map(|(_, tag, text)| (tag.as_str(), text.as_str()))
        .collect();
    assert_eq!(
        stdout,
        vec![
            ("F", "hello"),
            ("F", "hi there"),
            ("F", "/tmp"),
            ("P", "partial")
        ],
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".to_owned(), "F".to_owned(), "oops".to_owned())),
        "{lines:?}"
    );

    // A second start is refused; list filters work.
    let err = start(&mut cri, &id)
        .await
        .expect_err("start of an exited container");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let listed = cri
        .runtime
        .list_containers(proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                state: Some(proto::ContainerStateValue {
                    state: proto::ContainerState::ContainerExited.into(),
                }),
                label_selector: HashMap::from([("container".to_owned(), "printer".to_owned())]),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    remove(&mut cri, &id).await;
    remove(&mut cri, &id).await;
    let err = cri
        .runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("status after remove");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(container_leftovers(&node, &id), Vec::<PathBuf>::new());
    assert_eq!(container_cgroup_dirs(&node, &id), Vec::<PathBuf>::new());

    // The name is free again.
    let reused = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("printer", &["true"]),
    )
    .await
    .expect("create with the released name");
    remove(&mut cri, &reused).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn running_container_execs_stats_updates_and_survives_a_daemon_restart() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "runner").await;
    let config = container_config("server", images::LONG_RUNNING_CMD);
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("CreateContainer");
    start(&mut cri, &id).await.expect("StartContainer");
    let running = status(&mut cri, &id).await;
    assert_eq!(
        running.state,
        proto::ContainerState::ContainerRunning as i32
    );

    // ExecSync: output, exit codes, the container's view, the timeout.
    let out = exec_sync(
        &mut cri,
        &id,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; test -x /bin/busybox && echo in-rootfs; exit 7",
        ],
        10,
    )
    .await
    .expect("ExecSync");
    assert_eq!(out.exit_code, 7);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nin-rootfs\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let missing = exec_sync(&mut cri, &id, &["/bin/nope"], 10)
        .await
        .expect("ExecSync nope");
    assert_eq!(missing.exit_code, 127, "{missing:?}");
    let started = Instant::now();
    let timed_out = exec_sync(&mut cri, &id, &["sleep", "30"], 1)
        .await
        .expect_err("exec past its timeout");
    assert_eq!(timed_out.code(), Code::DeadlineExceeded, "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Stats and a live resource update.
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
    let cpu = stats
        .cpu
        .and_then(|cpu| cpu.usage_core_nano_seconds)
        .map(|v| v.value);
    assert!(cpu.unwrap_or(0) > 0, "cpu {cpu:?}");
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value);
    assert!(memory.unwrap_or(0) > 0, "memory {memory:?}");
    cri.runtime
        .update_container_resources(proto::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(proto::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_quota: 20_000,
                cpu_period: 100_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("UpdateContainerResources");
    let limit = exec_sync(
        &mut cri,
        &id,
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        10,
    )
    .await
    .expect("read limit");
    assert_eq!(
        String::from_utf8_lossy(&limit.stdout).trim(),
        (96u64 << 20).to_string()
    );
    let shown = status(&mut cri, &id).await;
    let resources = shown.resources.and_then(|r| r.linux).expect("resources");
    assert_eq!(resources.memory_limit_in_bytes, 96 << 20);
    assert_eq!(resources.cpu_quota, 20_000);

    // A kill -9 of the daemon leaves the container running, and the new daemon adopts it.
    node.kill_daemon().expect("kill daemon");
    node.start_daemon().expect("restart daemon");
    let mut cri = node.cri().await;
    let adopted = status(&mut cri, &id).await;
    assert_eq!(
        adopted.state,
        proto::ContainerState::ContainerRunning as i32
    );
    assert_eq!(adopted.started_at, running.started_at);

    // Stop: the image's trap exits 0 on SIGTERM.
    stop(&mut cri, &id, 10).await;
    let stopped = status(&mut cri, &id).await;
    assert_eq!(stopped.state, proto::ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 0, "{stopped:?}");
    assert_eq!(stopped.reason, "Completed");
    stop(&mut cri, &id, 10).await;

    // Stopping the pod stops and removing it removes its containers.
    let second = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("sleeper", &["sleep", "1000"]),
    )
    .await
    .expect("create second");
    start(&mut cri, &second).await.expect("start second");
    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("StopPodSandbox");
    let killed = status(&mut cri, &second).await;
    assert_eq!(killed.state, proto::ContainerState::ContainerExited as i32);
    assert_eq!(killed.exit_code, 137, "{killed:?}");
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox");
    for container in [&id, &second] {
        assert_eq!(container_leftovers(&node, container), Vec::<PathBuf>::new());
        assert_eq!(
            container_cgroup_dirs(&node, container),
            Vec::<PathBuf>::new()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_while_the_daemon_is_down_is_recorded_with_the_real_code() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "downtime").await;
    let id = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("short", &["sh", "-c", "sleep 2; exit 42"]),
    )
    .await
    .expect("CreateContainer");
    start(&mut cri, &id).await.expect("StartContainer");
    node.stop_daemon().expect("stop daemon");
    std::thread::sleep(Duration::from_secs(3));
    node.start_daemon().expect("start daemon");
    let mut cri = node.cri().await;
    let exited = status(&mut cri, &id).await;
    assert_eq!(exited.state, proto::ContainerState::ContainerExited as i32);
    assert_eq!(exited.exit_code, 42);
    remove(&mut cri, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn security_context_user_caps_readonly_rootfs_and_oom() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "secure").await;

    let mut config = container_config(
        "locked",
        &[
            "sh",
            "-c",
            "id -u; id -g; grep CapEff /proc/self/status; touch /x 2>&1 || echo ro",
        ],
    );
    config.linux = Some(proto::LinuxContainerConfig {
        security_context: Some(proto::LinuxContainerSecurityContext {
            run_as_user: Some(proto::Int64Value { value: 65534 }),
            run_as_group: Some(proto::Int64Value { value: 65534 }),
            readonly_rootfs: true,
            capabilities: Some(proto::Capability {
                drop_capabilities: vec!["ALL".to_owned()],
                ..Default::default()
            }),
            no_new_privs: true,
            seccomp: Some(proto::SecurityProfile {
                profile_type: proto::security_profile::ProfileType::RuntimeDefault.into(),
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("CreateContainer");
    start(&mut cri, &id).await.expect("StartContainer");
    let exited = wait_exited(&mut cri, &id).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    let user = exited.user.and_then(|u| u.linux).expect("user");
    assert_eq!((user.uid, user.gid), (65534, 65534));
    let lines: Vec<String> = log_lines(&log_path(&pod_config, "locked"))
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(lines[1], "65534");
    assert_eq!(lines[2], "CapEff:\t0000000000000000");
    assert!(lines.last().is_some_and(|l| l == "ro"), "{lines:?}");
    remove(&mut cri, &id).await;

    // A memory hog in a 32 MiB container is OOM-killed and says so.
    let mut hog = container_config("hog", &["tail", "/dev/zero"]);
    hog.linux = Some(proto::LinuxContainerConfig {
        resources: Some(proto::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut cri, &pod, &pod_config, hog)
        .await
        .expect("create hog");
    start(&mut cri, &id).await.expect("start hog");
    let killed = wait_exited(&mut cri, &id).await;
    assert_eq!(killed.exit_code, 137, "{killed:?}");
    assert_eq!(killed.reason, "OOMKilled", "{killed:?}");
    remove(&mut cri, &id).await;

    // A start failure is reported and recorded.
    let id = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("broken", &["/bin/does-not-exist"]),
    )
    .await
    .expect("create broken");
    let err = start(&mut cri, &id)
        .await
        .expect_err("start of a missing program");
    assert!(err.message().contains("does-not-exist"), "{err:?}");
    let failed = status(&mut cri, &id).await;
    assert_eq!(failed.state, proto::ContainerState::ContainerExited as i32);
    assert_eq!(failed.reason, "StartError");
    remove(&mut cri, &id).await;
}
