//! `carrack exec [-it] CONTAINER CMD…`.
//!
//! Without `-i`/`-t` the command runs through CRI's `ExecSync` (output collected, exit code
//! passed through). Interactive sessions need a CRI streaming URL and a client for it, which
//! are not built yet: they fail with a clear message.

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

/// The error for interactive sessions, which need the streaming server.
pub fn needs_streaming(what: &str) -> CliError {
    CliError::Unsupported(format!(
        "{what} needs the streaming server (exec/attach URLs), which is not built yet; \
         run without -i/-t"
    ))
}

/// Runs a command in a container and exits with its exit code.
pub async fn exec(cri: &mut Cri, args: ExecArgs) -> Result<ExitCode, CliError> {
    if args.interactive || args.tty {
        return Err(needs_streaming("exec -i/-t"));
    }
    let container = super::resolve::container(cri, &args.container).await?;
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
    Ok(ExitCode::from(
        u8::try_from(reply.exit_code).unwrap_or(u8::MAX),
    ))
}
