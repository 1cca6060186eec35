//! `carrack image export IMAGE… -o FILE`: writes the runtime's archive of the images to a
//! file (atomically: a partial export never takes the file's name) or to stdout.

use std::io::Write;
use std::path::PathBuf;

use tokio_stream::StreamExt;

use super::{client, rpc_error};
use crate::cli::client::Cri;
use crate::cli::error::CliError;
use crate::proto::images as proto;

/// Arguments of `carrack image export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Where to write the archive (`-`: stdout).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Images (tags, ids or id prefixes).
    #[arg(required = true)]
    images: Vec<String>,
}

/// Exports images.
pub async fn export(cri: &mut Cri, args: ExportArgs) -> Result<(), CliError> {
    let mut stream = client(cri)
        .export(proto::ExportRequest {
            images: args.images,
        })
        .await
        .map_err(rpc_error("Export", &cri.endpoint))?
        .into_inner();
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(CliError::Unsupported(
            "refusing to write an archive to a terminal: use -o FILE or redirect stdout".to_owned(),
        ));
    }
    let partial = {
        let mut name = args.output.clone().into_os_string();
        name.push(".partial");
        PathBuf::from(name)
    };
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&partial).map_err(CliError::io("create", &partial))?,
        ))
    };
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(rpc_error("Export", &cri.endpoint))?;
            out.write_all(&chunk.data)
                .map_err(CliError::io("write", &partial))?;
        }
        out.flush().map_err(CliError::io("write", &partial))
    }
    .await;
    drop(out);
    if to_stdout {
        return result;
    }
    match result {
        Ok(()) => {
            std::fs::rename(&partial, &args.output).map_err(CliError::io("rename to", &args.output))
        }
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            Err(err)
        }
    }
}
