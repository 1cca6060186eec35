//! `Exec`, `Attach` and `PortForward`: validate the request against the container or pod
//! and return the streaming server's one-time URL for it.

use tonic::{Response, Status};

use super::containers::required;
use super::instrument;
use super::runtime::RuntimeServer;
use crate::proto;
use crate::streaming::{AttachRequest, ExecRequest, PortForwardRequest, StreamOptions};

impl RuntimeServer {
    pub(super) async fn exec_rpc(
        &self,
        request: proto::ExecRequest,
    ) -> Result<Response<proto::ExecResponse>, Status> {
        let id = request.container_id.clone();
        let span = tracing::info_span!("cri.Exec", container_id = %id, tty = request.tty);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            let streams =
                stream_options(request.stdin, request.stdout, request.stderr, request.tty)?;
            if request.cmd.is_empty() {
                return Err(Status::invalid_argument("cmd is required"));
            }
            let container = self
                .containers()
                .require_running(&id, "commands can only run in a running container")?;
            let url = self.streaming().exec(ExecRequest {
                container_id: container.id.clone(),
                cmd: request.cmd,
                streams,
            })?;
            Ok(proto::ExecResponse { url })
        })
        .await
    }

    pub(super) async fn attach_rpc(
        &self,
        request: proto::AttachRequest,
    ) -> Result<Response<proto::AttachResponse>, Status> {
        let id = request.container_id.clone();
        let span = tracing::info_span!("cri.Attach", container_id = %id, tty = request.tty);
        instrument::rpc(span, async {
            required(&id, "container_id")?;
            let streams =
                stream_options(request.stdin, request.stdout, request.stderr, request.tty)?;
            let container = self
                .containers()
                .require_running(&id, "attach needs a running container")?;
            let url = self.streaming().attach(AttachRequest {
                container_id: container.id.clone(),
                streams,
            })?;
            Ok(proto::AttachResponse { url })
        })
        .await
    }

    pub(super) async fn port_forward_rpc(
        &self,
        request: proto::PortForwardRequest,
    ) -> Result<Response<proto::PortForwardResponse>, Status> {
        let id = request.pod_sandbox_id.clone();
        let span = tracing::info_span!("cri.PortForward", pod_sandbox_id = %id);
        instrument::rpc(span, async {
            required(&id, "pod_sandbox_id")?;
            let ports = request
                .port
                .iter()
                .map(|port| {
                    u16::try_from(*port)
                        .ok()
                        .filter(|port| *port > 0)
                        .ok_or_else(|| {
                            Status::invalid_argument(format!("port {port} is not in 1..=65535"))
                        })
                })
                .collect::<Result<Vec<u16>, Status>>()?;
            let pod = self.sandboxes().require_ready(&id)?;
            let url = self.streaming().port_forward(PortForwardRequest {
                pod_id: pod.id.clone(),
                ports,
            })?;
            Ok(proto::PortForwardResponse { url })
        })
        .await
    }
}

/// The validated stdio streams of an `Exec` or `Attach` request.
fn stream_options(
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<StreamOptions, Status> {
    let streams = StreamOptions {
        stdin,
        stdout,
        stderr,
        tty,
    };
    streams.validate()?;
    Ok(streams)
}
