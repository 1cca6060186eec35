//! `carrack image verify`: asks the runtime for a full verify of its image store and prints
//! what it checked and every problem found.

use std::io::Write;

use super::{client, rpc_error};
use crate::cli::client::Cri;
use crate::cli::error::CliError;
use crate::proto::images as proto;

/// Verifies the image store; fails (non-zero exit) when a problem was found.
pub async fn verify(cri: &mut Cri) -> Result<(), CliError> {
    let report = client(cri)
        .verify(proto::VerifyRequest {})
        .await
        .map_err(rpc_error("Verify", &cri.endpoint))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    for problem in &report.problems {
        writeln!(out, "problem: {problem}").map_err(CliError::Output)?;
    }
    writeln!(
        out,
        "{} images, {} blobs, {} layers checked: {}",
        report.images,
        report.blobs,
        report.layers,
        if report.problems.is_empty() {
            "ok".to_owned()
        } else {
            format!("{} problem(s)", report.problems.len())
        }
    )
    .map_err(CliError::Output)?;
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Damaged {
            what: "image store",
            count: report.problems.len(),
        })
    }
}
