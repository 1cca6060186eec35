//! `carrack inspect NAME…`: a container's, pod's or image's verbose CRI status as JSON (a
//! JSON array, one entry per name, as Docker prints). The runtime's verbose `info` values,
//! which are JSON text, are embedded as JSON.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::client::Cri;
use super::error::CliError;
use crate::proto;

/// Arguments of `carrack inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// What to inspect: container, pod or image (or say which with --type).
    #[arg(long = "type", value_parser = ["container", "pod", "image"])]
    kind: Option<String>,
    /// Names, ids or id prefixes.
    #[arg(required = true)]
    names: Vec<String>,
}

/// The verbose `info` map with JSON values parsed (plain strings stay strings).
fn info_json(info: HashMap<String, String>) -> Value {
    let map = info
        .into_iter()
        .map(|(key, text)| {
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (key, value)
        })
        .collect::<serde_json::Map<_, _>>();
    Value::Object(map)
}

fn to_value(what: &'static str, value: &impl serde::Serialize) -> Result<Value, CliError> {
    serde_json::to_value(value).map_err(|source| CliError::Json { what, source })
}

async fn container(cri: &mut Cri, wanted: &str) -> Result<Value, CliError> {
    let found = super::resolve::container(cri, wanted).await?;
    let reply = cri
        .runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: found.id,
            verbose: true,
        })
        .await
        .map_err(CliError::rpc("ContainerStatus"))?
        .into_inner();
    Ok(json!({
        "kind": "container",
        "status": to_value("container status", &reply.status)?,
        "info": info_json(reply.info),
    }))
}

async fn pod(cri: &mut Cri, wanted: &str) -> Result<Value, CliError> {
    let found = super::resolve::pod(cri, wanted).await?;
    let reply = cri
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: found.id,
            verbose: true,
        })
        .await
        .map_err(CliError::rpc("PodSandboxStatus"))?
        .into_inner();
    Ok(json!({
        "kind": "pod",
        "status": to_value("pod status", &reply.status)?,
        "info": info_json(reply.info),
    }))
}

/// An image's verbose status: the image and the runtime's `info` (for Carrack and
/// containerd, `info.info.imageSpec` is the image config).
pub async fn image_status(cri: &mut Cri, wanted: &str) -> Result<(proto::Image, Value), CliError> {
    let found = super::resolve::image(cri, wanted).await?;
    let reply = cri
        .image
        .image_status(proto::ImageStatusRequest {
            image: Some(proto::ImageSpec {
                image: found.id.clone(),
                ..proto::ImageSpec::default()
            }),
            verbose: true,
        })
        .await
        .map_err(CliError::rpc("ImageStatus"))?
        .into_inner();
    Ok((reply.image.unwrap_or(found), info_json(reply.info)))
}

async fn image(cri: &mut Cri, wanted: &str) -> Result<Value, CliError> {
    let (image, info) = image_status(cri, wanted).await?;
    Ok(json!({
        "kind": "image",
        "status": to_value("image", &image)?,
        "info": info,
    }))
}

/// Prints each named object's verbose status.
pub async fn inspect(cri: &mut Cri, args: InspectArgs) -> Result<(), CliError> {
    let mut found = Vec::new();
    for wanted in &args.names {
        let value = match args.kind.as_deref() {
            Some("container") => container(cri, wanted).await?,
            Some("pod") => pod(cri, wanted).await?,
            Some("image") => image(cri, wanted).await?,
            _ => match container(cri, wanted).await {
                Err(err) if err.is_not_found() => match pod(cri, wanted).await {
                    Err(err) if err.is_not_found() => match image(cri, wanted).await {
                        Err(err) if err.is_not_found() => {
                            return Err(CliError::NotFound {
                                kind: "container, pod or image",
                                name: wanted.clone(),
                            });
                        }
                        other => other?,
                    },
                    other => other?,
                },
                other => other?,
            },
        };
        found.push(value);
    }
    super::output::print_json("inspect output", &found)
}
