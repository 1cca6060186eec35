//! Fault injection: the daemon is killed with SIGKILL at every crash point of
//! `carrack::failpoint` (each step of RunPodSandbox, CreateContainer, StartContainer,
//! StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox, PullImage and image
//! removal and its garbage collection), restarted, and the interrupted operation is retried.
//! After each step the test checks the invariants: the retry succeeds, nothing leaked (mounts,
//! pod and container dirs, cgroups, IP leases, monitors and pod inits, and any file of the
//! root and state dirs outside a record: writable layers, CNI cache entries, temp files),
//! the image store passes a full verify (every blob re-hashed, every image's documents and
//! layers present and consistent, no blob or layer that no image owns), the image pulled
//! before still lists and runs a container, and a sentinel container that was running before
//! the first crash still runs with the same pid.
//!
//! Pause points (`<name>=pause:<ms>`) hold a create half-way instead: the periodic
//! reconciler must spare it, and a client that gave up meanwhile gets it on its retry.
//!
//! Only built with the `failpoints` feature (`tests/run.sh` enables it). Prints a table:
//! step, outcome.

mod support;

use std::fs;
use std::time::Duration;

use carrack::failpoint;
use carrack::proto;
use support::client::CriClient;
use support::cni::write_bridge_conflist;
use support::images;
use support::leaks::{image_store_problems, leaks};
use support::node::Node;
use support::skip_unless_root;
use support::workload::{
    self, pull, remove_image, remove_pod, start as start_container, stop_pod,
    try_remove as remove_container, try_stop as stop_container,
};
use tonic::Code;

/// How long a daemon may take to reach an armed crash point once the RPC is sent.
const CRASH_TIMEOUT: Duration = Duration::from_secs(30);

const IMAGE: &str = "long-running";
const SECOND_IMAGE: &str = "layers";

fn pod_config(name: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "faults".to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    // Own network (CNI) and a shared PID namespace (a pod init).
                    pid: proto::NamespaceMode::Pod.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container of the long-running image (its default command runs until stopped), with
/// `command` instead when given.
fn container_config(name: &str, command: &[&str]) -> proto::ContainerConfig {
    let mut config = workload::container_config(name, command);
    config.image = Some(proto::ImageSpec {
        image: IMAGE.to_owned(),
        ..Default::default()
    });
    config.log_path = String::new();
    config
}

async fn run_pod(cri: &mut CriClient, name: &str) -> Result<String, tonic::Status> {
    workload::run_pod_config(cri, &pod_config(name)).await
}

async fn create_container(
    cri: &mut CriClient,
    pod_id: &str,
    name: &str,
    command: &[&str],
) -> Result<String, tonic::Status> {
    workload::create(
        cri,
        pod_id,
        &pod_config(name),
        container_config(name, command),
    )
    .await
}

async fn image_present(cri: &mut CriClient, image: &str) -> bool {
    workload::image_status(cri, image).await.is_some()
}

async fn container_state(cri: &mut CriClient, id: &str) -> Result<(i32, i64), tonic::Status> {
    let status = workload::try_status(cri, id).await?;
    Ok((status.state, status.started_at))
}

async fn pod_ready(cri: &mut CriClient, id: &str) -> Result<bool, tonic::Status> {
    let status = workload::pod_status(cri, id).await?;
    Ok(status.state == proto::PodSandboxState::SandboxReady as i32)
}

/// Restarts the daemon with `point` armed and returns a client of it.
async fn arm(node: &mut Node, point: &str) -> CriClient {
    node.stop_daemon().expect("stop daemon");
    node.set_daemon_env(failpoint::ENV, Some(point));
    node.start_daemon().expect("start daemon with a failpoint");
    node.cri().await
}

/// Checks that the RPC failed because the daemon died at the armed point, then restarts it
/// disarmed; returns a client of the new daemon or why the crash did not happen.
async fn crashed(node: &mut Node, rpc: Result<(), tonic::Status>) -> Result<CriClient, String> {
    if let Ok(()) = rpc {
        return Err("the RPC succeeded: the crash point was not reached".to_owned());
    }
    node.wait_daemon_exit(CRASH_TIMEOUT)
        .map_err(|err| format!("the daemon did not die: {err}"))?;
    node.set_daemon_env(failpoint::ENV, None);
    node.start_daemon()
        .map_err(|err| format!("restart after the crash: {err}"))?;
    Ok(node.cri().await)
}

fn fail(what: &str, err: impl std::fmt::Debug) -> String {
    format!("{what}: {err:?}")
}

/// Runs one step: crash at `point` during its operation, restart, retry, check.
async fn step(node: &mut Node, point: &str) -> Result<String, String> {
    let step_name = point.replace('.', "-");
    match point {
        failpoint::RUN_POD_AFTER_NAMESPACES
        | failpoint::RUN_POD_AFTER_CGROUP
        | failpoint::RUN_POD_AFTER_RECORD
        | failpoint::RUN_POD_MID_NETWORK
        | failpoint::RUN_POD_AFTER_NETWORK => {
            let mut cri = arm(node, point).await;
            let rpc = run_pod(&mut cri, &step_name).await.map(drop);
            let mut cri = crashed(node, rpc).await?;
            let id = run_pod(&mut cri, &step_name)
                .await
                .map_err(|e| fail("retried RunPodSandbox", e))?;
            if !pod_ready(&mut cri, &id)
                .await
                .map_err(|e| fail("status", e))?
            {
                return Err("the retried pod is not ready".to_owned());
            }
            stop_pod(&mut cri, &id).await.map_err(|e| fail("stop", e))?;
            remove_pod(&mut cri, &id)
                .await
                .map_err(|e| fail("remove", e))?;
            Ok("retried RunPodSandbox got a ready pod".to_owned())
        }
        failpoint::CREATE_CONTAINER_AFTER_SNAPSHOT | failpoint::CREATE_CONTAINER_AFTER_CGROUP => {
            let mut cri = node.cri().await;
            let pod = run_pod(&mut cri, &step_name)
                .await
                .map_err(|e| fail("RunPodSandbox", e))?;
            let mut cri = arm(node, point).await;
            let rpc = create_container(&mut cri, &pod, &step_name, &[])
                .await
                .map(drop);
            let mut cri = crashed(node, rpc).await?;
            let id = create_container(&mut cri, &pod, &step_name, &[])
                .await
                .map_err(|e| fail("retried CreateContainer", e))?;
            start_container(&mut cri, &id)
                .await
                .map_err(|e| fail("start", e))?;
            stop_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("stop", e))?;
            remove_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("remove", e))?;
            Ok("retried CreateContainer made a container that starts".to_owned())
        }
        failpoint::START_CONTAINER_AFTER_SPAWN => {
            let mut cri = node.cri().await;
            let pod = run_pod(&mut cri, &step_name)
                .await
                .map_err(|e| fail("RunPodSandbox", e))?;
            let id = create_container(&mut cri, &pod, &step_name, &[])
                .await
                .map_err(|e| fail("CreateContainer", e))?;
            let mut cri = arm(node, point).await;
            let rpc = start_container(&mut cri, &id).await;
            let mut cri = crashed(node, rpc).await?;
            let (state, _) = container_state(&mut cri, &id)
                .await
                .map_err(|e| fail("status", e))?;
            let outcome = if state == proto::ContainerState::ContainerRunning as i32 {
                "the start the daemon died in was adopted: running"
            } else {
                start_container(&mut cri, &id)
                    .await
                    .map_err(|e| fail("retried StartContainer", e))?;
                "retried StartContainer started it"
            };
            stop_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("stop", e))?;
            remove_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("remove", e))?;
            Ok(outcome.to_owned())
        }
        failpoint::STOP_CONTAINER_AFTER_SIGNAL => {
            let mut cri = node.cri().await;
            let pod = run_pod(&mut cri, &step_name)
                .await
                .map_err(|e| fail("RunPodSandbox", e))?;
            // Plain `sleep` as PID 1 ignores SIGTERM, so the stop reaches its kill step.
            let id = create_container(&mut cri, &pod, &step_name, &["sleep", "3600"])
                .await
                .map_err(|e| fail("CreateContainer", e))?;
            start_container(&mut cri, &id)
                .await
                .map_err(|e| fail("StartContainer", e))?;
            let mut cri = arm(node, point).await;
            let rpc = stop_container(&mut cri, &id, 1).await;
            let mut cri = crashed(node, rpc).await?;
            stop_container(&mut cri, &id, 0)
                .await
                .map_err(|e| fail("retried StopContainer", e))?;
            let (state, _) = container_state(&mut cri, &id)
                .await
                .map_err(|e| fail("status", e))?;
            if state != proto::ContainerState::ContainerExited as i32 {
                return Err(format!("after the retried stop the state is {state}"));
            }
            stop_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("stop", e))?;
            remove_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("remove", e))?;
            Ok("retried StopContainer: exited".to_owned())
        }
        failpoint::REMOVE_CONTAINER_MID_TEARDOWN | failpoint::REMOVE_CONTAINER_AFTER_TEARDOWN => {
            let mut cri = node.cri().await;
            let pod = run_pod(&mut cri, &step_name)
                .await
                .map_err(|e| fail("RunPodSandbox", e))?;
            let id = create_container(&mut cri, &pod, &step_name, &["true"])
                .await
                .map_err(|e| fail("CreateContainer", e))?;
            let mut cri = arm(node, point).await;
            let rpc = remove_container(&mut cri, &id).await;
            let mut cri = crashed(node, rpc).await?;
            remove_container(&mut cri, &id)
                .await
                .map_err(|e| fail("retried RemoveContainer", e))?;
            match container_state(&mut cri, &id).await {
                Err(status) if status.code() == Code::NotFound => {}
                other => return Err(format!("after the retried remove: {other:?}")),
            }
            stop_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("stop", e))?;
            remove_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("remove", e))?;
            Ok("retried RemoveContainer: gone".to_owned())
        }
        failpoint::STOP_POD_AFTER_NETWORK
        | failpoint::STOP_POD_AFTER_INIT_KILL
        | failpoint::REMOVE_POD_AFTER_TEARDOWN => {
            let mut cri = node.cri().await;
            let pod = run_pod(&mut cri, &step_name)
                .await
                .map_err(|e| fail("RunPodSandbox", e))?;
            let id = create_container(&mut cri, &pod, &step_name, &[])
                .await
                .map_err(|e| fail("CreateContainer", e))?;
            start_container(&mut cri, &id)
                .await
                .map_err(|e| fail("StartContainer", e))?;
            if point == failpoint::REMOVE_POD_AFTER_TEARDOWN {
                stop_pod(&mut cri, &pod)
                    .await
                    .map_err(|e| fail("stop", e))?;
            }
            let mut cri = arm(node, point).await;
            let rpc = if point == failpoint::REMOVE_POD_AFTER_TEARDOWN {
                remove_pod(&mut cri, &pod).await
            } else {
                stop_pod(&mut cri, &pod).await
            };
            let mut cri = crashed(node, rpc).await?;
            stop_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("retried StopPodSandbox", e))?;
            remove_pod(&mut cri, &pod)
                .await
                .map_err(|e| fail("retried RemovePodSandbox", e))?;
            match pod_ready(&mut cri, &pod).await {
                Err(status) if status.code() == Code::NotFound => {}
                other => return Err(format!("after the retried remove: {other:?}")),
            }
            Ok("retried stop and remove: gone".to_owned())
        }
        failpoint::PULL_AFTER_FIRST_LAYER | failpoint::PULL_AFTER_LAYERS => {
            let mut cri = node.cri().await;
            if image_present(&mut cri, SECOND_IMAGE).await {
                remove_image(&mut cri, SECOND_IMAGE)
                    .await
                    .map_err(|e| fail("RemoveImage before the pull", e))?;
            }
            let mut cri = arm(node, point).await;
            let rpc = pull(&mut cri, SECOND_IMAGE).await.map(drop);
            let mut cri = crashed(node, rpc).await?;
            if image_present(&mut cri, SECOND_IMAGE).await {
                return Err("a pull cut short left an image record".to_owned());
            }
            pull(&mut cri, SECOND_IMAGE)
                .await
                .map_err(|e| fail("retried PullImage", e))?;
            Ok("retried PullImage: image present".to_owned())
        }
        failpoint::REMOVE_IMAGE_AFTER_RECORD
        | failpoint::GC_AFTER_FIRST_LAYER
        | failpoint::GC_AFTER_LAYERS => {
            let mut cri = node.cri().await;
            if !image_present(&mut cri, SECOND_IMAGE).await {
                pull(&mut cri, SECOND_IMAGE)
                    .await
                    .map_err(|e| fail("PullImage before the removal", e))?;
            }
            let mut cri = arm(node, point).await;
            let rpc = remove_image(&mut cri, SECOND_IMAGE).await;
            let mut cri = crashed(node, rpc).await?;
            remove_image(&mut cri, SECOND_IMAGE)
                .await
                .map_err(|e| fail("retried RemoveImage", e))?;
            if image_present(&mut cri, SECOND_IMAGE).await {
                return Err("the removed image is still listed".to_owned());
            }
            Ok("retried RemoveImage: gone".to_owned())
        }
        other => Err(format!("no scenario for crash point {other}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_every_step_leaks_nothing_and_the_retry_succeeds() {
    if !skip_unless_root() {
        return;
    }
    let mut node = Node::start();
    let ipam_dir = write_bridge_conflist(&node);
    node.push(images::long_running(), &format!("library/{IMAGE}:latest"))
        .expect("push");
    node.push(images::layers(), &format!("library/{SECOND_IMAGE}:latest"))
        .expect("push");
    let mut cri = node.cri().await;
    // The second image is pulled by the pull step and removed by the removal step.
    pull(&mut cri, IMAGE).await.expect("pull");

    // The sentinel: a container in a host-network pod that must survive every crash.
    let mut sentinel_config = pod_config("sentinel");
    if let Some(options) = sentinel_config
        .linux
        .as_mut()
        .and_then(|linux| linux.security_context.as_mut())
        .and_then(|context| context.namespace_options.as_mut())
    {
        options.network = proto::NamespaceMode::Node.into();
    }
    let sentinel_pod = workload::run_pod_config(&mut cri, &sentinel_config)
        .await
        .expect("sentinel pod");
    let sentinel = create_container(&mut cri, &sentinel_pod, "sentinel", &[])
        .await
        .expect("sentinel container");
    start_container(&mut cri, &sentinel)
        .await
        .expect("start sentinel");
    let (_, sentinel_started) = container_state(&mut cri, &sentinel)
        .await
        .expect("sentinel status");

    let mut rows = Vec::new();
    for (index, point) in failpoint::ALL.iter().enumerate() {
        let result = step(&mut node, point).await;
        let mut cri = node.cri().await;
        let mut problems = Vec::new();
        match container_state(&mut cri, &sentinel).await {
            Ok((state, started))
                if state == proto::ContainerState::ContainerRunning as i32
                    && started == sentinel_started => {}
            other => problems.push(format!("sentinel not running as before: {other:?}")),
        }
        // The sentinel pod runs in the node's network (no lease of its own).
        problems.extend(leaks(&node, Some(&ipam_dir), &[&sentinel_pod, &sentinel]));
        problems.extend(image_store_problems(&node).await);
        if let Err(problem) = image_still_runs(&mut cri, &sentinel_pod, index).await {
            problems.push(problem);
        }
        rows.push((*point, result, problems));
    }

    println!("\n{:<36} {:<8} outcome", "crash point", "result");
    for (point, result, problems) in &rows {
        let verdict = if result.is_ok() && problems.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        let outcome = match result {
            Ok(outcome) => outcome.clone(),
            Err(err) => err.clone(),
        };
        println!("{point:<36} {verdict:<8} {outcome}");
        for problem in problems {
            println!("{:<36} {:<8} leak: {problem}", "", "");
        }
    }
    let failed: Vec<_> = rows
        .iter()
        .filter(|(_, result, problems)| result.is_err() || !problems.is_empty())
        .map(|(point, _, _)| *point)
        .collect();
    assert!(
        failed.is_empty(),
        "steps failed: {failed:?}\ndaemon log:\n{}",
        node.daemon_log()
    );

    let mut cri = node.cri().await;
    stop_pod(&mut cri, &sentinel_pod)
        .await
        .expect("stop sentinel");
    remove_pod(&mut cri, &sentinel_pod)
        .await
        .expect("remove sentinel");
}

/// The image pulled before the first crash still lists and runs: a container of it starts in
/// the sentinel pod, then goes.
async fn image_still_runs(cri: &mut CriClient, pod: &str, index: usize) -> Result<(), String> {
    if !image_present(cri, IMAGE).await {
        return Err(format!("image {IMAGE} is no longer listed"));
    }
    let name = format!("probe-{index}");
    let id = create_container(cri, pod, &name, &[])
        .await
        .map_err(|e| fail("probe CreateContainer", e))?;
    start_container(cri, &id)
        .await
        .map_err(|e| fail("probe StartContainer", e))?;
    let (state, _) = container_state(cri, &id)
        .await
        .map_err(|e| fail("probe status", e))?;
    stop_container(cri, &id, 0)
        .await
        .map_err(|e| fail("probe StopContainer", e))?;
    remove_container(cri, &id)
        .await
        .map_err(|e| fail("probe RemoveContainer", e))?;
    if state == proto::ContainerState::ContainerRunning as i32 {
        Ok(())
    } else {
        Err(format!(
            "a container of {IMAGE} is in state {state} after its start"
        ))
    }
}

/// A node whose reconciler runs every second and whose daemon pauses `pauses` (fail point
/// names) for three seconds each time one is passed; busybox is pulled.
async fn paused_node(pauses: &[&str]) -> (Node, CriClient) {
    let mut node = Node::builder()
        .config("[recovery]\nreconcile_interval_secs = 1\n")
        .start();
    let armed: Vec<String> = pauses
        .iter()
        .map(|point| format!("{point}=pause:3000"))
        .collect();
    node.stop_daemon().expect("stop daemon");
    node.set_daemon_env(failpoint::ENV, Some(&armed.join(",")));
    node.start_daemon().expect("start daemon with paused steps");
    let mut cri = node.cri().await;
    workload::pull_busybox(&node, &mut cri).await;
    (node, cri)
}

/// The periodic reconciler runs while a pod and a container are half-built (resources made,
/// no record yet: only the name reservation says they are wanted) and must leave them be.
#[tokio::test(flavor = "multi_thread")]
async fn reconciler_passes_spare_creates_in_flight() {
    if !skip_unless_root() {
        return;
    }
    let (node, mut cri) = paused_node(&[
        failpoint::RUN_POD_AFTER_CGROUP,
        failpoint::CREATE_CONTAINER_AFTER_CGROUP,
    ])
    .await;
    // A leftover the passes must remove meanwhile: proof that they ran.
    let leftover = node.state_dir().join("containers").join("c1".repeat(32));
    fs::create_dir_all(&leftover).expect("leftover");

    let (pod, pod_config) = workload::run_pod(&node, &mut cri, "slow").await;
    let ready = workload::pod_status(&mut cri, &pod)
        .await
        .expect("PodSandboxStatus");
    assert_eq!(ready.state, proto::PodSandboxState::SandboxReady as i32);
    let id = workload::create(
        &mut cri,
        &pod,
        &pod_config,
        workload::container_config("slow", &["sleep", "1000"]),
    )
    .await
    .expect("CreateContainer across reconciler passes");
    start_container(&mut cri, &id)
        .await
        .expect("StartContainer of the container built across passes");
    let echo = workload::exec_sync(&mut cri, &id, &["echo", "whole"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(echo.stdout, b"whole\n");
    assert!(
        !leftover.exists(),
        "no reconciler pass ran during the creates"
    );

    stop_pod(&mut cri, &pod).await.expect("StopPodSandbox");
    remove_pod(&mut cri, &pod).await.expect("RemovePodSandbox");
    let found = leaks(&node, None, &[]);
    assert!(found.is_empty(), "leaked: {found:#?}");
}

/// Creates that outlive their client's deadline finish, and the retry with the same name gets
/// the object the first create is still building (it waits for it) instead of ALREADY_EXISTS.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_gets_the_object_its_timed_out_create_was_building() {
    if !skip_unless_root() {
        return;
    }
    let (node, mut cri) = paused_node(&[
        failpoint::RUN_POD_AFTER_NAMESPACES,
        failpoint::CREATE_CONTAINER_AFTER_SNAPSHOT,
    ])
    .await;
    let (_, mut pod_config) = workload::run_pod(&node, &mut cri, "template").await;
    if let Some(metadata) = pod_config.metadata.as_mut() {
        metadata.name = "impatient".to_owned();
        metadata.uid = "uid-impatient".to_owned();
    }

    let mut hasty = tonic::Request::new(proto::RunPodSandboxRequest {
        config: Some(pod_config.clone()),
        runtime_handler: String::new(),
    });
    hasty.set_timeout(Duration::from_secs(1));
    let gave_up = cri.runtime.run_pod_sandbox(hasty).await;
    assert!(gave_up.is_err(), "the paused create answered in time");
    let pod = workload::run_pod_config(&mut cri, &pod_config)
        .await
        .expect("retried RunPodSandbox");
    let named = workload::pods_named(&mut cri, "impatient").await;
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].id, pod);

    let config = workload::container_config("impatient", &["sleep", "1000"]);
    let mut hasty = tonic::Request::new(proto::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(config.clone()),
        sandbox_config: Some(pod_config.clone()),
    });
    hasty.set_timeout(Duration::from_secs(1));
    let gave_up = cri.runtime.create_container(hasty).await;
    assert!(gave_up.is_err(), "the paused create answered in time");
    let id = workload::create(&mut cri, &pod, &pod_config, config)
        .await
        .expect("retried CreateContainer");
    let listed = workload::pod_containers(&mut cri, &pod).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    start_container(&mut cri, &id)
        .await
        .expect("StartContainer of the handed-over container");

    stop_pod(&mut cri, &pod).await.expect("StopPodSandbox");
    remove_pod(&mut cri, &pod).await.expect("RemovePodSandbox");
}
