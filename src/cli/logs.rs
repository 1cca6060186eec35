//! `carrack logs [-f] [--tail N] [-t] CONTAINER`: reads the container's CRI log file (the
//! path its status names) and prints it as the container wrote it, stdout to stdout and
//! stderr to stderr; `-f` follows it, across rotations, until the container exits.

use std::path::PathBuf;

use super::client::Cri;
use super::cri_log::{self, Follower, Printer};
use super::error::CliError;

/// Arguments of `carrack logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    follow: bool,
    /// Print only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Prefix each line with its time (RFC 3339, nanoseconds).
    #[arg(short, long)]
    timestamps: bool,
    /// The container (name, id or id prefix).
    container: String,
}

/// Prints a container's log.
pub async fn logs(cri: &mut Cri, args: LogsArgs) -> Result<(), CliError> {
    let container = super::resolve::container(cri, &args.container).await?;
    if args.follow {
        super::wait::follow_until_exit(cri, &container.id, args.tail, args.timestamps, false)
            .await?;
        return Ok(());
    }
    let status = super::wait::status(cri, &container.id).await?;
    if status.log_path.is_empty() {
        return Err(CliError::Unsupported(format!(
            "container {} has no log file (it was created without a log path)",
            args.container
        )));
    }
    let path = PathBuf::from(&status.log_path);
    let mut follower = Follower::open(&path).map_err(CliError::io("open log", &path))?;
    let records = super::wait::read_records(&mut follower, &path)?;
    let shown = args
        .tail
        .map_or(&records[..], |lines| cri_log::tail(&records, lines));
    let mut printer = Printer::new(std::io::stdout(), std::io::stderr(), args.timestamps);
    for record in shown {
        printer.print(record).map_err(CliError::Output)?;
    }
    Ok(())
}
