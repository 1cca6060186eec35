//! The composition root: builds the store and services, serves CRI, and shuts down cleanly.
//!
//! Start order: directories, the root-dir lock (so a second daemon refuses before touching
//! anything), the boot-id check, the store's recovery scan, the reconcilers, the streaming
//! server, then the socket. On SIGTERM or SIGINT the server stops accepting, lets in-flight RPCs finish for at
//! most [`SHUTDOWN_GRACE`], and exits. It never stops containers or pods: they outlive the daemon.

mod census;
mod error;
mod lock;
mod memory_trim;
mod monitor_binary;
mod notify;
mod reconcile;
mod socket;
mod streaming;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::Instrument;

pub use error::DaemonError;

use crate::cgroups::{CgroupManager, CgroupSettings};
use crate::cni::{CniManager, CniSettings};
use crate::config::{Config, SELF_SIGNED_TLS};
use crate::container::{ContainerService, ContainerSettings, detect_host};
use crate::cri::image::ImageServer;
use crate::cri::image_transfer::ImageTransferServer;
use crate::cri::instrument;
use crate::cri::runtime::RuntimeServer;
use crate::events::EventHub;
use crate::image_service::ImageService;
use crate::proto::image_service_server::ImageServiceServer;
use crate::proto::images::images_server::ImagesServer;
use crate::proto::runtime_service_server::RuntimeServiceServer;
use crate::sandbox::{SandboxService, SandboxSettings};
use crate::snapshot::{Snapshotter, SnapshotterOptions};
use crate::store::Store;
use crate::streaming::{StreamingServer, StreamingSettings, TlsSource};
use crate::telemetry::traceparent::TraceParentLayer;
use crate::telemetry::{Telemetry, metrics};

/// How long in-flight RPCs may run after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// kubelet's own limit for CRI messages; large nodes list thousands of containers (lists
/// beyond it are refused with a pointer to their streamed twins, see `cri::lists`).
const MAX_MESSAGE_BYTES: usize = crate::config::MAX_GRPC_MESSAGE_BYTES;

/// How long queued spans may take to reach the collector at shutdown.
const TRACE_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config, telemetry: Telemetry) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    let level_signals = telemetry.spawn_level_signals();
    make_private_dir(&config.root_dir)?;
    make_private_dir(&config.state_dir)?;
    let lock = lock::acquire(&config.root_dir)?;
    tracing::debug!(lock = %lock.path().display(), "root dir locked");
    check_boot_id(&config.state_dir)?;

    // Everything from here to the monitors' re-attachment is recovery; each step is a child
    // span, so a slow start shows which one took the time.
    let recovery = tracing::info_span!("daemon.recovery");
    let (store, report) = recovery.in_scope(|| {
        tracing::info_span!("recovery.store_open").in_scope(|| Store::open(&config.root_dir))
    })?;
    reconcile::leftover_removed(
        "store_temp_records",
        report.pods.removed_temp + report.containers.removed_temp + report.images.removed_temp,
    );
    tracing::info!(
        pods = report.pods.loaded,
        containers = report.containers.loaded,
        images = report.images.loaded,
        removed_temp =
            report.pods.removed_temp + report.containers.removed_temp + report.images.removed_temp,
        quarantined =
            report.pods.quarantined + report.containers.quarantined + report.images.quarantined,
        "state recovered"
    );
    let store = Arc::new(store);
    let mut cgroup_settings =
        CgroupSettings::new(config.cgroups.driver, config.cgroups.root.clone());
    cgroup_settings.systemd_bus = systemd_bus_address(&config.cgroups.systemd_bus_address);
    let cgroups = Arc::new(CgroupManager::new(cgroup_settings)?);
    let binary = monitor_binary::resolve()?;
    let events = Arc::new(EventHub::default());
    let sandboxes = Arc::new(build_sandboxes(
        &config,
        Arc::clone(&store),
        Arc::clone(&cgroups),
        binary.clone(),
        Arc::clone(&events),
    ));
    recovery.in_scope(|| {
        tracing::info_span!("recovery.reconcile_pods").in_scope(|| reconcile::pods(&sandboxes));
    });
    let undone = sandboxes
        .undo_interrupted_creates()
        .instrument(tracing::info_span!(parent: &recovery, "recovery.undo_creates"))
        .await;
    if undone > 0 {
        tracing::info!(pods = undone, "interrupted pod creates undone");
    }
    let teardowns = tokio::spawn(retry_network_teardowns(Arc::clone(&sandboxes)));
    let (snapshots, snapshot_report) = recovery.in_scope(|| {
        tracing::info_span!("recovery.snapshots_open")
            .in_scope(|| Snapshotter::open_with(&config.root_dir, SnapshotterOptions::default()))
    })?;
    reconcile::leftover_removed("snapshot_ingest", snapshot_report.removed_ingest);
    reconcile::leftover_removed("broken_snapshots", snapshot_report.removed_broken);
    let snapshots = Arc::new(snapshots);
    // Opening the image service also collects unreferenced content (its `images.gc` span).
    let images = Arc::new(recovery.in_scope(|| {
        tracing::info_span!("recovery.images_open")
            .in_scope(|| ImageService::new(&config, Arc::clone(&store), Arc::clone(&snapshots)))
    })?);
    reconcile::leftover_removed("content_ingest", images.ingest_leftovers_removed());
    let containers = ContainerService::new(
        ContainerSettings {
            state_dir: config.state_dir.clone(),
            binary,
            host: detect_host(Path::new("/proc"), Path::new("/dev")),
        },
        Arc::clone(&store),
        cgroups,
        snapshots,
        Arc::clone(&images),
        Arc::clone(&events),
    );
    recovery.in_scope(|| {
        tracing::info_span!("recovery.reconcile_containers")
            .in_scope(|| reconcile::containers(&containers));
    });
    let recovered = containers
        .recover()
        .instrument(tracing::info_span!(parent: &recovery, "recovery.containers"))
        .await;
    drop(recovery);
    if recovered.running + recovered.exited > 0 {
        tracing::info!(
            running = recovered.running,
            exited = recovered.exited,
            "containers recovered"
        );
    }

    let reconciler = match config.recovery.reconcile_interval_secs {
        0 => None,
        secs => Some(tokio::spawn(reconcile::periodic(
            Arc::clone(&sandboxes),
            Arc::clone(&containers),
            Duration::from_secs(secs),
        ))),
    };

    let streaming = StreamingServer::start(
        streaming_settings(&config)?,
        Arc::new(streaming::RuntimeBridge {
            containers: Arc::clone(&containers),
            sandboxes: Arc::clone(&sandboxes),
        }),
    )
    .await?;
    tracing::info!(address = %streaming.address, "streaming server listening");
    metrics::global().set_census(census::census(Arc::clone(&store), PathBuf::from("/proc")));
    let metrics_server = match config.metrics.listen_address() {
        Ok(Some(address)) => {
            let (task, bound) = crate::telemetry::serve_metrics(address).await?;
            tracing::info!(address = %bound, "serving metrics at /metrics");
            Some(task)
        }
        _ => None,
    };

    let listener = socket::bind(&config.socket_path)?;
    let runtime = RuntimeServiceServer::new(RuntimeServer::new(
        Arc::clone(&config),
        sandboxes,
        containers,
        streaming.urls.clone(),
        events,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let image_transfer = ImagesServer::new(ImageTransferServer::new(Arc::clone(&images)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let image = ImageServiceServer::new(ImageServer::new(images, config.grpc.max_message_bytes))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let notify_socket = std::env::var_os("NOTIFY_SOCKET");
    let stopping_notify = notify_socket.clone();
    // Installed here, before READY=1, not in the task: a SIGTERM right after the readiness
    // notification (systemd may send one at once) must not meet the default action.
    let stop_signals = StopSignals::install();
    let signals = tokio::spawn(async move {
        stop_signals.wait().await;
        // Tell systemd first: the stop is under way (it waits for the exit, not for this).
        notify::notify(stopping_notify.as_deref(), "STOPPING=1");
        let _ = stop_tx.send(());
        let _ = stopping_tx.send(());
    });

    tracing::info!(
        socket = %config.socket_path.display(),
        version = env!("CARGO_PKG_VERSION"),
        "carrack serving CRI v1"
    );
    // The socket is bound and listening: connections made from now on are served.
    notify::notify(notify_socket.as_deref(), "READY=1");
    // Start-up is done (configuration, recovery, the stores' audits): its code pages and
    // freed heap need not stay resident while the daemon serves.
    match crate::executor::sys::memory::release_start_up_memory() {
        Ok(bytes) => tracing::debug!(bytes, "start-up memory released"),
        Err(err) => tracing::debug!(error = %err, "releasing start-up memory failed"),
    }
    let trimmer = tokio::spawn(memory_trim::trim_after_bursts(&instrument::LIFECYCLE_ENDED));
    let serve = tonic::transport::Server::builder()
        .layer(TraceParentLayer)
        .add_service(runtime)
        .add_service(image)
        // Carrack's own extension (image import/export), apart from the CRI services.
        .add_service(image_transfer)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    // After a stop signal, wait for the RPCs in flight (at most SHUTDOWN_GRACE), not for
    // clients to close their idle connections: kubelet keeps its connection open.
    let grace = async {
        if stopping_rx.await.is_ok() {
            tracing::info!("stop signal received; finishing in-flight requests");
            let drained =
                tokio::time::timeout(SHUTDOWN_GRACE, instrument::IN_FLIGHT.wait_idle()).await;
            if drained.is_err() {
                tracing::warn!(
                    grace_s = SHUTDOWN_GRACE.as_secs(),
                    "in-flight requests outlived the grace period"
                );
            }
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = serve => result.map_err(|source| DaemonError::Serve {
            path: config.socket_path.clone(),
            source,
        }),
        () = grace => Ok(()),
    };
    signals.abort();
    teardowns.abort();
    trimmer.abort();
    drop(streaming);
    for task in [level_signals, metrics_server, reconciler]
        .into_iter()
        .flatten()
    {
        task.abort();
    }
    telemetry.flush(TRACE_FLUSH_GRACE).await;
    // The socket is ours (we bound it); removing it tells clients at once that nobody serves.
    let _ = fs::remove_file(&config.socket_path);
    tracing::info!("carrack stopped");
    drop(lock);
    result
}

/// The streaming server's settings from the `[streaming]` section.
/// The bus of systemd's manager: the configured address, else `DBUS_SYSTEM_BUS_ADDRESS` (as
/// sd-bus and libdbus honour it), else the system bus.
fn systemd_bus_address(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .filter(|address| !address.is_empty())
        .unwrap_or_else(|| crate::cgroups::DEFAULT_SYSTEM_BUS.to_owned())
}

fn streaming_settings(config: &Config) -> Result<StreamingSettings, DaemonError> {
    let section = &config.streaming;
    let tls = match (&section.tls_cert, &section.tls_key) {
        (Some(cert), Some(key)) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ if section.tls == SELF_SIGNED_TLS => TlsSource::SelfSigned,
        _ => TlsSource::None,
    };
    Ok(StreamingSettings {
        address: config.streaming_address()?,
        advertise_address: section.advertise_address.clone(),
        tls,
        idle_timeout: Duration::from_secs(section.idle_timeout_secs),
        token_ttl: Duration::from_secs(section.token_ttl_secs),
    })
}

/// The pod sandbox service with its CNI.
fn build_sandboxes(
    config: &Config,
    store: Arc<Store>,
    cgroups: Arc<CgroupManager>,
    binary: PathBuf,
    events: Arc<EventHub>,
) -> SandboxService {
    // CNI results live under the root dir: host-local's leases in /var/lib/cni survive a
    // reboot, so the records needed to release them must too.
    let cni = CniManager::new(CniSettings::new(
        &config.cni,
        config.root_dir.join("cni").join("results"),
    ));
    SandboxService::new(
        SandboxSettings {
            state_dir: config.state_dir.clone(),
            default_cgroup_parent: config.cgroups.default_parent.clone(),
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            host_hosts: PathBuf::from("/etc/hosts"),
            binary,
            user_namespaces: user_namespaces_supported(config),
        },
        store,
        cgroups,
        Arc::new(cni),
        events,
    )
}

/// Whether containers of pods with their own user namespace can get their rootfs here: an
/// overlay stacked on idmapped layers, tried in the root dir (where the layers are).
fn user_namespaces_supported(config: &Config) -> bool {
    match crate::container::userns_rootfs::probe(&config.root_dir) {
        Ok(()) => true,
        Err(reason) => {
            tracing::warn!(%reason, "pod user namespaces (hostUsers: false) unsupported on this node");
            false
        }
    }
}

/// How often cut-short network teardowns are retried after the pass at start.
const TEARDOWN_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// Releases pod networks whose teardown a crash or a plugin failure cut short: once at start,
/// then periodically until each DEL succeeded.
async fn retry_network_teardowns(sandboxes: Arc<SandboxService>) {
    loop {
        let report = sandboxes.finish_pending_teardowns().await;
        reconcile::leftover_removed("cni_teardowns", report.released);
        if report.released + report.failed > 0 {
            tracing::info!(
                released = report.released,
                failed = report.failed,
                "pending network teardowns"
            );
        }
        tokio::time::sleep(TEARDOWN_RETRY_INTERVAL).await;
    }
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct StopSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl StopSignals {
    /// Installs the handlers (must run within the async runtime).
    fn install() -> Self {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => StopSignals(Some((term, int))),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                StopSignals(None)
            }
        }
    }

    /// Waits for either signal (forever without handlers).
    async fn wait(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Creates `dir` (and parents) and restricts it to 0711: others may traverse to the socket
/// or a pod's files but not list what the node runs.
fn make_private_dir(dir: &Path) -> Result<(), DaemonError> {
    let io = |action, source| DaemonError::Io {
        action,
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(|err| io("create directory", err))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711))
        .map_err(|err| io("set mode of directory", err))
}

/// Records the current boot id in the state dir. State written under an earlier boot id
/// describes processes that no longer exist (on hosts where `/run` is not a tmpfs it survives
/// the reboot); recovery treats it as stale.
fn check_boot_id(state_dir: &Path) -> Result<bool, DaemonError> {
    let current = fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default();
    let path = state_dir.join("boot_id");
    let previous = fs::read_to_string(&path)
        .ok()
        .map(|id| id.trim().to_owned());
    let rebooted = previous.as_deref().is_some_and(|id| id != current);
    if rebooted {
        tracing::info!("runtime state is from an earlier boot; treating it as stale");
    }
    if previous.as_deref() != Some(current.as_str()) {
        fs::write(&path, format!("{current}\n")).map_err(|source| DaemonError::Io {
            action: "write boot id",
            path,
            source,
        })?;
    }
    Ok(rebooted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_signal_sent_before_anyone_waits_is_caught() {
        // The deploy test once sent SIGTERM right after READY=1, before the task that was to
        // install the handler had run: the daemon died without STOPPING=1.
        let signals = StopSignals::install();
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).expect("raise SIGINT");
        tokio::time::timeout(Duration::from_secs(5), signals.wait())
            .await
            .expect("the signal raised before the wait is seen");
    }
}
