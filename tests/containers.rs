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
use support::leaks::cgroup_dirs;
use support::node::Node;
use support::skip_unless_root;
use support::workload::{
    container_config, create, exec_sync, pod_containers, pods_named, pull_busybox, remove, run_pod,
    run_pod_with, run_privileged_pod, start, status, stop, wait_exited,
};
use tonic::Code;

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
    assert_eq!(cgroup_dirs(&node, &id), Vec::<PathBuf>::new());

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
    let timed_out = exec_sync(&mut cri, &id, &["tail", "-f", "/dev/null"], 1)
        .await
        .expect_err("exec past its timeout");
    assert_eq!(timed_out.code(), Code::DeadlineExceeded, "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The timed-out command is gone when the reply comes, not left as a zombie (critest's
    // "execSync with timeout" looks right away).
    let ps = exec_sync(&mut cri, &id, &["ps", "-o", "pid,stat,comm"], 10)
        .await
        .expect("ps");
    let listing = String::from_utf8_lossy(&ps.stdout);
    assert!(!listing.contains("tail"), "{listing}");
    // An exec'd process is in the container's cgroups, in every hierarchy (on v1 it moved
    // itself in through `tasks`; where the helper already shared the cgroup, it stayed).
    let cgroups = exec_sync(
        &mut cri,
        &id,
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup",
        ],
        10,
    )
    .await
    .expect("cgroups");
    let cgroups = String::from_utf8_lossy(&cgroups.stdout);
    let (exec_cgroups, init_cgroups) = cgroups.split_once("--\n").expect("two listings");
    assert_eq!(exec_cgroups, init_cgroups, "{cgroups}");

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
        assert_eq!(cgroup_dirs(&node, container), Vec::<PathBuf>::new());
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

fn with_pid_mode(
    mut config: proto::ContainerConfig,
    pid: proto::NamespaceMode,
) -> proto::ContainerConfig {
    config.linux = Some(proto::LinuxContainerConfig {
        security_context: Some(proto::LinuxContainerSecurityContext {
            namespace_options: Some(proto::NamespaceOption {
                network: proto::NamespaceMode::Node.into(),
                pid: pid.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn pid_namespaces_are_shared_per_pod_or_kept_per_container() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;

    // A pod sharing one PID namespace: its init is PID 1, and containers see each other.
    let (pod, pod_config) =
        run_pod_with(&node, &mut cri, "shared", proto::NamespaceMode::Pod).await;
    let sleeper = create(
        &mut cri,
        &pod,
        &pod_config,
        with_pid_mode(
            container_config("sleeper", &["sleep", "1000"]),
            proto::NamespaceMode::Pod,
        ),
    )
    .await
    .expect("create sleeper");
    start(&mut cri, &sleeper).await.expect("start sleeper");
    let looker = create(
        &mut cri,
        &pod,
        &pod_config,
        with_pid_mode(
            container_config("looker", &["sh", "-c", "cat /proc/1/comm; pidof sleep"]),
            proto::NamespaceMode::Pod,
        ),
    )
    .await
    .expect("create looker");
    start(&mut cri, &looker).await.expect("start looker");
    let seen = wait_exited(&mut cri, &looker).await;
    assert_eq!(seen.exit_code, 0, "pidof found no sleep: {seen:?}");
    let lines: Vec<String> = log_lines(&log_path(&pod_config, "looker"))
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    // PID 1 is the pod's init, `carrack-monitor pod-init`.
    assert_eq!(
        lines.first().map(String::as_str),
        Some("carrack-monitor"),
        "{lines:?}"
    );

    assert_eq!(pod_inits(&pod), 1);
    // Stopping the pod ends its PID namespace, init included.
    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("StopPodSandbox");
    assert_eq!(pod_inits(&pod), 0);
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox");

    // Per-container PID namespaces: the container's command is PID 1 and sees nothing else.
    let (pod, pod_config) = run_pod(&node, &mut cri, "private").await;
    let alone = create(
        &mut cri,
        &pod,
        &pod_config,
        with_pid_mode(
            container_config(
                "alone",
                &["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"],
            ),
            proto::NamespaceMode::Container,
        ),
    )
    .await
    .expect("create alone");
    start(&mut cri, &alone).await.expect("start alone");
    wait_exited(&mut cri, &alone).await;
    let lines: Vec<String> = log_lines(&log_path(&pod_config, "alone"))
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    assert_eq!(lines.first().map(String::as_str), Some("1"), "{lines:?}");
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox");
}

/// Live `carrack pod-init` processes in the cgroup of pod `pod_id`.
fn pod_inits(pod_id: &str) -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|entry| {
            let is_init = std::fs::read(entry.path().join("cmdline"))
                .map(|c| c.split(|b| *b == 0).nth(1) == Some(b"pod-init".as_slice()))
                .unwrap_or(false);
            let in_pod = std::fs::read_to_string(entry.path().join("cgroup"))
                .map(|c| c.contains(pod_id))
                .unwrap_or(false);
            is_init && in_pod
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciler_removes_what_a_lost_record_left_behind() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "crashy").await;
    let running = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("running", &["sleep", "1000"]),
    )
    .await
    .expect("create running");
    start(&mut cri, &running).await.expect("start running");
    let created = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("created", &["true"]),
    )
    .await
    .expect("create created");
    assert!(!cgroup_dirs(&node, &running).is_empty());

    // A crash in the middle of creating (or removing) leaves resources but no record.
    node.kill_daemon().expect("kill daemon");
    for id in [&running, &created] {
        let record = node
            .root_dir()
            .join("store")
            .join("containers")
            .join(format!("{id}.json"));
        std::fs::remove_file(&record).expect("drop record");
    }
    node.start_daemon().expect("restart daemon");
    let _cri = node.cri().await;
    for id in [&running, &created] {
        assert_eq!(
            container_leftovers(&node, id),
            Vec::<PathBuf>::new(),
            "{id}"
        );
        assert_eq!(cgroup_dirs(&node, id), Vec::<PathBuf>::new(), "{id}");
    }
    assert!(node.daemon_log().contains("reconciler removed leftovers"));
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_cut_short_by_the_client_deadline_are_resumed_by_the_retry() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (_, pod_config) = run_pod(&node, &mut cri, "template").await;
    let mut pod_config = pod_config;
    if let Some(metadata) = pod_config.metadata.as_mut() {
        metadata.name = "hasty".to_owned();
        metadata.uid = "uid-hasty".to_owned();
    }

    // The client gives up after 1 ms; the pod is made anyway, and the retry gets it.
    let mut hasty = tonic::Request::new(proto::RunPodSandboxRequest {
        config: Some(pod_config.clone()),
        runtime_handler: String::new(),
    });
    hasty.set_timeout(Duration::from_millis(1));
    let _ = cri.runtime.run_pod_sandbox(hasty).await;
    let pod = cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("retried RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(pods_named(&mut cri, "hasty").await.len(), 1);

    let mut hasty = tonic::Request::new(proto::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(container_config("quick", &["true"])),
        sandbox_config: Some(pod_config.clone()),
    });
    hasty.set_timeout(Duration::from_millis(1));
    let _ = cri.runtime.create_container(hasty).await;
    let id = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("quick", &["true"]),
    )
    .await
    .expect("retried CreateContainer");
    let listed = pod_containers(&mut cri, &pod).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    // Once claimed, the name is taken as usual.
    let again = create(
        &mut cri,
        &pod,
        &pod_config,
        container_config("quick", &["true"]),
    )
    .await
    .expect_err("a second create of a claimed name");
    assert_eq!(again.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread")]
async fn mounts_masks_log_reopen_and_exec_output_cap() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "volumes").await;
    let volume = node.base_dir().join("volume");
    std::fs::create_dir_all(&volume).expect("volume dir");
    std::fs::write(volume.join("hello.txt"), "from the host\n").expect("volume file");

    let mut config = container_config("reader", images::LONG_RUNNING_CMD);
    config.mounts = vec![
        proto::Mount {
            container_path: "/data".to_owned(),
            host_path: volume.to_string_lossy().into_owned(),
            readonly: false,
            ..Default::default()
        },
        proto::Mount {
            container_path: "/ro".to_owned(),
            host_path: volume.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        },
    ];
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("create");
    start(&mut cri, &id).await.expect("start");

    let read = exec_sync(&mut cri, &id, &["cat", "/data/hello.txt"], 10)
        .await
        .expect("read");
    assert_eq!(String::from_utf8_lossy(&read.stdout), "from the host\n");
    let write = exec_sync(
        &mut cri,
        &id,
        &["sh", "-c", "echo back > /data/back.txt"],
        10,
    )
    .await
    .expect("write");
    assert_eq!(write.exit_code, 0, "{write:?}");
    assert_eq!(
        std::fs::read_to_string(volume.join("back.txt")).unwrap_or_default(),
        "back\n"
    );
    let denied = exec_sync(&mut cri, &id, &["touch", "/ro/nope"], 10)
        .await
        .expect("ro write");
    assert_ne!(denied.exit_code, 0, "read-only mount was writable");
    // Default masked paths read as empty (a bound /dev/null); /proc/sys is read-only.
    let masked = [
        "/proc/timer_list",
        "/proc/keys",
        "/proc/sched_debug",
        "/proc/kcore",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists());
    if let Some(masked) = masked {
        let read = exec_sync(
            &mut cri,
            &id,
            &["sh", "-c", &format!("wc -c < {masked}")],
            10,
        )
        .await
        .expect("masked read");
        assert_eq!(
            String::from_utf8_lossy(&read.stdout).trim(),
            "0",
            "{masked}: {read:?}"
        );
    }
    let sysctl = exec_sync(
        &mut cri,
        &id,
        &["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"],
        10,
    )
    .await
    .expect("proc sys write");
    assert_ne!(sysctl.exit_code, 0);

    // Output beyond 16 MiB is cut, not buffered without bound, and the reply still fits one
    // gRPC message (regression: a full 16 MiB stdout made the reply too large to send).
    let big = exec_sync(&mut cri, &id, &["head", "-c", "20000000", "/dev/zero"], 30)
        .await
        .expect("big output");
    assert_eq!(big.stdout.len(), (16 << 20) - 1024);

    // Log rotation: rename the log, reopen, and new output goes to a fresh file.
    let log = log_path(&pod_config, "reader");
    let rotated = log.with_extension("log.1");
    exec_sync(
        &mut cri,
        &id,
        &["sh", "-c", "echo before > /proc/1/fd/1"],
        10,
    )
    .await
    .expect("write before");
    std::fs::rename(&log, &rotated).expect("rotate");
    cri.runtime
        .reopen_container_log(proto::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ReopenContainerLog");
    exec_sync(
        &mut cri,
        &id,
        &["sh", "-c", "echo after > /proc/1/fd/1"],
        10,
    )
    .await
    .expect("write after");
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_lines(&log).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh: Vec<String> = log_lines(&log).into_iter().map(|(_, _, t)| t).collect();
    let old: Vec<String> = log_lines(&rotated).into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(fresh, vec!["after".to_owned()]);
    assert!(old.contains(&"before".to_owned()), "{old:?}");

    stop(&mut cri, &id, 10).await;
    let err = cri
        .runtime
        .reopen_container_log(proto::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("reopen on a stopped container");
    assert_eq!(err.code(), Code::FailedPrecondition);
    remove(&mut cri, &id).await;
}

/// Runs `command` in a fresh container with `security` and returns its exit code and log lines.
async fn run_once(
    cri: &mut CriClient,
    pod: &str,
    pod_config: &proto::PodSandboxConfig,
    name: &str,
    command: &[&str],
    security: proto::LinuxContainerSecurityContext,
) -> (i32, Vec<String>) {
    let mut config = container_config(name, command);
    config.linux = Some(proto::LinuxContainerConfig {
        security_context: Some(security),
        ..Default::default()
    });
    let id = create(cri, pod, pod_config, config).await.expect("create");
    start(cri, &id).await.expect("start");
    let exited = wait_exited(cri, &id).await;
    let lines = log_lines(&log_path(pod_config, name))
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    remove(cri, &id).await;
    (exited.exit_code, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn privileged_added_capabilities_and_a_localhost_seccomp_profile() {
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let log_directory = node.base_dir().join("pod-logs").join("powerful");
    let pod_config = proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: "powerful".to_owned(),
            uid: "uid-powerful".to_owned(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        log_directory: log_directory.to_string_lossy().into_owned(),
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                privileged: true,
                namespace_options: Some(proto::NamespaceOption {
                    network: proto::NamespaceMode::Node.into(),
                    pid: proto::NamespaceMode::Container.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;

    // Privileged: every capability this runtime has, and it may mount.
    let host_caps = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:").map(|v| v.trim().to_owned()))
        .expect("CapBnd");
    let (code, lines) = run_once(
        &mut cri,
        &pod,
        &pod_config,
        "privileged",
        &["sh", "-c", "grep CapEff /proc/self/status; mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted"],
        proto::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0], format!("CapEff:\t{host_caps}"));
    assert_eq!(lines[1], "mounted");

    // An added capability appears in the effective set (CAP_NET_ADMIN is bit 12).
    let (code, lines) = run_once(
        &mut cri,
        &pod,
        &pod_config,
        "netadmin",
        &["sh", "-c", "grep CapEff /proc/self/status"],
        proto::LinuxContainerSecurityContext {
            capabilities: Some(proto::Capability {
                add_capabilities: vec!["NET_ADMIN".to_owned()],
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(code, 0);
    let caps = u64::from_str_radix(lines[0].trim_start_matches("CapEff:").trim(), 16).expect("hex");
    assert_ne!(caps & (1 << 12), 0, "{lines:?}");

    // A Localhost profile that makes mkdir fail with EPERM: the syscall is blocked.
    let profile = node.base_dir().join("no-mkdir.json");
    std::fs::write(
        &profile,
        serde_json::to_vec(&serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }))
        .expect("json"),
    )
    .expect("write profile");
    let (code, lines) = run_once(
        &mut cri,
        &pod,
        &pod_config,
        "nomkdir",
        &[
            "sh",
            "-c",
            "mkdir /tmp/blocked 2>&1; test ! -d /tmp/blocked && echo blocked",
        ],
        proto::LinuxContainerSecurityContext {
            seccomp: Some(proto::SecurityProfile {
                profile_type: proto::security_profile::ProfileType::Localhost.into(),
                localhost_ref: profile.to_string_lossy().into_owned(),
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("blocked"),
        "{lines:?}"
    );
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .expect("RemovePodSandbox");
}

/// A bidirectional volume (`rootfsPropagation: rshared`): mounts made on the host below it
/// appear in the container, and mounts the container makes below it appear on the host
/// (critest's "mount with 'rshared'"; regression: the executor refused rshared).
#[tokio::test(flavor = "multi_thread")]
async fn bidirectional_mount_propagates_both_ways() {
    use nix::mount::{MsFlags, mount};
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_privileged_pod(&node, &mut cri, "bidirectional").await;
    // The volume is a shared mount of its own, as kubelet's pod dirs are; the node fixture
    // unmounts everything under its base dir when dropped.
    let volume = node.base_dir().join("shared-volume");
    let from_host = node.base_dir().join("from-host");
    std::fs::create_dir_all(volume.join("host-mnt")).expect("volume dir");
    std::fs::create_dir_all(&from_host).expect("source dir");
    std::fs::write(from_host.join("flag"), "").expect("flag file");
    let none: Option<&str> = None;
    mount(
        Some(&volume),
        &volume,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .expect("bind the volume onto itself");
    mount(
        none,
        &volume,
        none,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        none,
    )
    .expect("make it rshared");

    let mut config = container_config("bidirectional", images::LONG_RUNNING_CMD);
    config.linux = Some(proto::LinuxContainerConfig {
        security_context: Some(proto::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let volume_path = volume.to_string_lossy().into_owned();
    config.mounts = vec![proto::Mount {
        container_path: volume_path.clone(),
        host_path: volume_path.clone(),
        propagation: proto::MountPropagation::PropagationBidirectional.into(),
        ..Default::default()
    }];
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("create");
    start(&mut cri, &id).await.expect("start");

    // Host to container.
    mount(
        Some(&from_host),
        &volume.join("host-mnt"),
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .expect("mount below the volume on the host");
    let listed = exec_sync(
        &mut cri,
        &id,
        &["ls", "-A", &format!("{volume_path}/host-mnt")],
        10,
    )
    .await
    .expect("ls in the container");
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "flag",
        "{listed:?}"
    );

    // Container to host.
    let mounted = exec_sync(
        &mut cri,
        &id,
        &[
            "sh",
            "-c",
            &format!("mkdir -p {volume_path}/ctr-mnt && mount --bind /etc {volume_path}/ctr-mnt"),
        ],
        10,
    )
    .await
    .expect("mount in the container");
    assert_eq!(mounted.exit_code, 0, "{mounted:?}");
    let seen = std::fs::read_dir(volume.join("ctr-mnt"))
        .expect("read dir")
        .count();
    assert!(seen > 0, "the container's mount did not reach the host");

    stop(&mut cri, &id, 10).await;
    remove(&mut cri, &id).await;
}

/// `recursive_read_only`: a read-only bind whose submounts are read-only too (critest's
/// "should support recursive readonly mounts"); a plain read-only bind leaves them writable.
#[tokio::test(flavor = "multi_thread")]
async fn recursive_read_only_mounts_cover_submounts() {
    use nix::mount::{MsFlags, mount};
    if !skip_unless_root() {
        return;
    }
    let node = Node::start();
    let mut cri = node.cri().await;
    pull_busybox(&node, &mut cri).await;
    let (pod, pod_config) = run_pod(&node, &mut cri, "rro").await;
    // A tmpfs below the volume; the node fixture unmounts it when dropped.
    let volume = node.base_dir().join("rro-volume");
    std::fs::create_dir_all(volume.join("tmpfs")).expect("volume dir");
    let none: Option<&str> = None;
    mount(
        Some("tmpfs"),
        &volume.join("tmpfs"),
        Some("tmpfs"),
        MsFlags::empty(),
        none,
    )
    .expect("tmpfs below the volume");

    let mut config = container_config("rro", images::LONG_RUNNING_CMD);
    let host_path = volume.to_string_lossy().into_owned();
    config.mounts = vec![
        proto::Mount {
            container_path: "/rro".to_owned(),
            host_path: host_path.clone(),
            readonly: true,
            recursive_read_only: true,
            ..Default::default()
        },
        proto::Mount {
            container_path: "/ro".to_owned(),
            host_path,
            readonly: true,
            ..Default::default()
        },
    ];
    let id = create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("create");
    start(&mut cri, &id).await.expect("start");
    let recursive = exec_sync(&mut cri, &id, &["touch", "/rro/tmpfs/file"], 10)
        .await
        .expect("touch below the recursive read-only mount");
    assert_ne!(recursive.exit_code, 0, "{recursive:?}");
    assert!(
        String::from_utf8_lossy(&recursive.stderr).contains("Read-only file system"),
        "{recursive:?}"
    );
    let plain = exec_sync(&mut cri, &id, &["touch", "/ro/tmpfs/file"], 10)
        .await
        .expect("touch below the plain read-only mount");
    assert_eq!(plain.exit_code, 0, "{plain:?}");

    // Recursive read-only needs a read-only, private mount: anything else is refused.
    let mut writable = container_config("rro-rw", &["true"]);
    writable.mounts = vec![proto::Mount {
        container_path: "/rro".to_owned(),
        host_path: volume.to_string_lossy().into_owned(),
        readonly: false,
        recursive_read_only: true,
        ..Default::default()
    }];
    let err = create(&mut cri, &pod, &pod_config, writable)
        .await
        .expect_err("recursive read-only without read-only");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    stop(&mut cri, &id, 10).await;
    remove(&mut cri, &id).await;
}
