//! `carrack exec [-it] CONTAINER CMD…`.
//!
//! Without `-i`/`-t` the command runs through CRI's `ExecSync` (output collected, exit code
//! passed through). With them, CRI's `Exec` gives a streaming URL and the session runs over
//! it (`super::stream`); a runtime without a streaming server answers `UNIMPLEMENTED`.

use std::io::Write;
use std::process::ExitCode;

use super::client::Cri;
use super::error::CliError;
use crate::proto;

/// Arguments of `carrack exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep stdin open (needs the streaming server).
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal (needs the streaming server).
    #[arg(short, long)]
    tty: bool,
    /// Seconds to wait for the command (0: no limit).
    #[arg(long, default_value_t = 0)]
    timeout: i64,
    /// The container (name, id or id prefix).
    container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// An `Exec`/`Attach` failure. `UNIMPLEMENTED` means the runtime serves no streaming URL
/// for `rpc` (no streaming server, or not that verb yet): say so, with the runtime's words.
pub fn streaming_rpc(
    rpc: &'static str,
    what: &'static str,
) -> impl FnOnce(tonic::Status) -> CliError {
    move |status| {
        if status.code() == tonic::Code::Unimplemented {
            CliError::Unsupported(format!(
                "{what} needs the runtime's streaming server to serve {rpc}, and this runtime \
                 does not ({}); run without -i/-t",
                status.message()
            ))
        } else {
            CliError::rpc(rpc)(status)
        }
    }
}

/// Runs a command in a container and exits with its exit code.
pub async fn exec(cri: &mut Cri, args: ExecArgs) -> Result<ExitCode, CliError> {
    let container = super::resolve::container(cri, &args.container).await?;
    if args.interactive || args.tty {
        let url = cri
            .runtime
            .exec(proto::ExecRequest {
                container_id: container.id,
                cmd: args.command,
                tty: args.tty,
                stdin: args.interactive,
                stdout: true,
                // A terminal merges stderr into its one stream.
                stderr: !args.tty,
            })
            .await
            .map_err(streaming_rpc("Exec", "exec -i/-t"))?
            .into_inner()
            .url;
        let options = super::stream::Options {
            stdin: args.interactive,
            tty: args.tty,
        };
        return Ok(super::exit_code(
            super::stream::run(&url, options).await.exit?,
        ));
    }
    let reply = cri
        .runtime
        .exec_sync(proto::ExecSyncRequest {
            container_id: container.id,
            cmd: args.command,
            timeout: args.timeout,
        })
        .await
        .map_err(CliError::rpc("ExecSync"))?
        .into_inner();
    std::io::stdout()
        .write_all(&reply.stdout)
        .and_then(|()| std::io::stdout().flush())
        .map_err(CliError::Output)?;
    std::io::stderr()
        .write_all(&reply.stderr)
        .map_err(CliError::Output)?;
    Ok(super::exit_code(reply.exit_code))
}
