//! CRI clients of the runtimes under test, over their unix sockets.
//!
//! tonic's endpoints are URIs, so the channel gets a placeholder URI and a connector that
//! ignores it and dials the socket instead.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use carrack::proto;
use carrack::proto::image_service_client::ImageServiceClient;
use carrack::proto::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// One runtime under test: its name, socket, daemon pid and CRI clients.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// `carrack` or `containerd`: the column of the table.
    pub name: String,
    /// The daemon's CRI socket.
    pub socket: PathBuf,
    /// The daemon's pid, for memory figures.
    pub pid: Option<u32>,
    /// `runtime.v1.RuntimeService`.
    pub runtime: RuntimeServiceClient<Channel>,
    /// `runtime.v1.ImageService`.
    pub image: ImageServiceClient<Channel>,
    /// `runtime_name runtime_version` from `Version`.
    pub version: String,
}

impl Runtime {
    /// Connects to `name=socket[,pid]` and checks the daemon answers `Version`.
    pub async fn connect(spec: &str) -> Result<Runtime> {
        let Some((name, rest)) = spec.split_once('=') else {
            bail!("runtime {spec:?} is not name=socket[,pid]");
        };
        let (socket, pid) = match rest.split_once(',') {
            Some((socket, pid)) => (
                socket,
                Some(
                    pid.parse::<u32>()
                        .with_context(|| format!("pid in {spec:?}"))?,
                ),
            ),
            None => (rest, None),
        };
        let socket = PathBuf::from(socket);
        let channel = connect_channel(socket.clone())
            .await
            .with_context(|| format!("connect to {}", socket.display()))?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let version = tokio::time::timeout(
            Duration::from_secs(10),
            runtime.version(proto::VersionRequest {
                version: "v1".to_owned(),
            }),
        )
        .await
        .context("Version timed out")?
        .context("Version")?
        .into_inner();
        Ok(Runtime {
            name: name.to_owned(),
            socket,
            pid,
            runtime,
            image: ImageServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
            version: format!("{} {}", version.runtime_name, version.runtime_version),
        })
    }
}

/// Opens a channel to the CRI server listening on the unix socket `socket`.
async fn connect_channel(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    carrack::cli::client::unix_channel(&socket).await
}

/// Runs `future` with a time limit, turning a time-out into an error naming `what`.
pub async fn bounded<T, F>(what: &str, limit: Duration, future: F) -> Result<T>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => bail!("{what}: {:?}: {}", status.code(), status.message()),
        Err(_) => bail!("{what}: no answer within {limit:?}"),
    }
}

/// Waits until the daemon at `spec` (`name=socket`) takes connections, answers `Version`
/// and reports both RuntimeReady and NetworkReady in `Status`.
pub async fn wait_ready(spec: &str, limit: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let err = match check_ready(spec).await {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("not ready within {limit:?}: {err:#}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn check_ready(spec: &str) -> Result<()> {
    let mut runtime = Runtime::connect(spec).await?;
    let status = bounded(
        "Status",
        Duration::from_secs(10),
        runtime
            .runtime
            .status(proto::StatusRequest { verbose: false }),
    )
    .await?;
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    for wanted in ["RuntimeReady", "NetworkReady"] {
        match conditions.iter().find(|c| c.r#type == wanted) {
            Some(condition) if condition.status => {}
            Some(condition) => bail!(
                "{wanted} is false: {} {}",
                condition.reason,
                condition.message
            ),
            None => bail!("Status has no {wanted} condition"),
        }
    }
    Ok(())
}
