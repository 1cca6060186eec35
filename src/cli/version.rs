//! The runtime half of `carrack version` (the client half is printed by `main`).

use super::error::CliError;
use crate::proto;

/// The runtime's `Version` reply.
pub async fn query(cri: &mut super::client::Cri) -> Result<proto::VersionResponse, CliError> {
    Ok(cri
        .runtime
        .version(proto::VersionRequest::default())
        .await
        .map_err(CliError::rpc("Version"))?
        .into_inner())
}

/// `Runtime: <name> <version> (CRI <api version>)` from the runtime at `endpoint`.
pub async fn runtime(endpoint: &str) -> Result<String, CliError> {
    let mut cri = super::client::connect(endpoint).await?;
    let version = query(&mut cri).await?;
    Ok(format!(
        "Runtime: {} {} (CRI {})",
        version.runtime_name, version.runtime_version, version.runtime_api_version
    ))
}
