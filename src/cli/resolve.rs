//! Turns what people type — a name, a full id or an id prefix — into the one container, pod
//! or image it means, through the runtime's list RPCs (so it works with any CRI runtime).

use super::client::Cri;
use super::error::CliError;
use crate::proto;

/// Picks the one candidate `wanted` names: an exact id, then an exact name, then a unique id
/// prefix. `names` gives each candidate's names.
fn pick<T>(
    kind: &'static str,
    wanted: &str,
    candidates: Vec<T>,
    id: impl Fn(&T) -> &str,
    names: impl Fn(&T) -> Vec<String>,
) -> Result<T, CliError> {
    let bare = |text: &str| text.split_once(':').map_or(text, |(_, hex)| hex).to_owned();
    let wanted_bare = bare(wanted);
    let mut by_name = Vec::new();
    let mut by_prefix = Vec::new();
    for candidate in candidates {
        if id(&candidate) == wanted || bare(id(&candidate)) == wanted_bare {
            return Ok(candidate);
        }
        if names(&candidate).iter().any(|name| name == wanted) {
            by_name.push(candidate);
        } else if !wanted_bare.is_empty() && bare(id(&candidate)).starts_with(&wanted_bare) {
            by_prefix.push(candidate);
        }
    }
    let matches = if by_name.is_empty() {
        by_prefix
    } else {
        by_name
    };
    match matches.len() {
        0 => Err(CliError::NotFound {
            kind,
            name: wanted.to_owned(),
        }),
        1 => Ok(matches
            .into_iter()
            .next()
            .ok_or_else(|| CliError::NotFound {
                kind,
                name: wanted.to_owned(),
            })?),
        _ => Err(CliError::Ambiguous {
            kind,
            name: wanted.to_owned(),
            candidates: matches
                .iter()
                .map(|candidate| super::output::short_id(id(candidate)))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Every container the runtime has, in any state.
pub async fn all_containers(cri: &mut Cri) -> Result<Vec<proto::Container>, CliError> {
    Ok(cri
        .runtime
        .list_containers(proto::ListContainersRequest::default())
        .await
        .map_err(CliError::rpc("ListContainers"))?
        .into_inner()
        .containers)
}

/// Every pod the runtime has, in any state.
pub async fn all_pods(cri: &mut Cri) -> Result<Vec<proto::PodSandbox>, CliError> {
    Ok(cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest::default())
        .await
        .map_err(CliError::rpc("ListPodSandbox"))?
        .into_inner()
        .items)
}

/// Every image the runtime has.
pub async fn all_images(cri: &mut Cri) -> Result<Vec<proto::Image>, CliError> {
    Ok(cri
        .image
        .list_images(proto::ListImagesRequest::default())
        .await
        .map_err(CliError::rpc("ListImages"))?
        .into_inner()
        .images)
}

/// The container `wanted` names (its name, id or id prefix).
pub async fn container(cri: &mut Cri, wanted: &str) -> Result<proto::Container, CliError> {
    let containers = all_containers(cri).await?;
    pick(
        "container",
        wanted,
        containers,
        |c| &c.id,
        |c| c.metadata.iter().map(|m| m.name.clone()).collect(),
    )
}

/// The pod `wanted` names (its name, id or id prefix).
pub async fn pod(cri: &mut Cri, wanted: &str) -> Result<proto::PodSandbox, CliError> {
    let pods = all_pods(cri).await?;
    pick(
        "pod",
        wanted,
        pods,
        |p| &p.id,
        |p| p.metadata.iter().map(|m| m.name.clone()).collect(),
    )
}

/// The image `wanted` names: whatever the runtime's `ImageStatus` resolves (a reference or
/// an id), else a tag, id or id prefix from the list.
pub async fn image(cri: &mut Cri, wanted: &str) -> Result<proto::Image, CliError> {
    let reply = cri
        .image
        .image_status(proto::ImageStatusRequest {
            image: Some(proto::ImageSpec {
                image: wanted.to_owned(),
                ..proto::ImageSpec::default()
            }),
            verbose: false,
        })
        .await;
    // Some runtimes refuse an id prefix as a reference instead of answering "not found";
    // the list below decides then.
    if let Ok(Some(image)) = reply.map(|reply| reply.into_inner().image) {
        return Ok(image);
    }
    let images = all_images(cri).await?;
    pick("image", wanted, images, |i| &i.id, |i| i.repo_tags.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(id: &str, name: &str) -> (String, String) {
        (id.to_owned(), name.to_owned())
    }

    fn choose(wanted: &str, all: &[(String, String)]) -> Result<String, CliError> {
        pick(
            "container",
            wanted,
            all.to_vec(),
            |(id, _)| id,
            |(_, name)| vec![name.clone()],
        )
        .map(|(id, _)| id)
    }

    #[test]
    fn ids_then_names_then_unique_prefixes() {
        let all = [
            named("abc123", "web"),
            named("abd456", "abc"),
            named("fff", "db"),
        ];
        assert_eq!(choose("abc123", &all).unwrap(), "abc123");
        // An exact name wins over the id prefix it also is.
        assert_eq!(choose("abc", &all).unwrap(), "abd456");
        assert_eq!(choose("web", &all).unwrap(), "abc123");
        assert_eq!(choose("ff", &all).unwrap(), "fff");
        assert!(matches!(
            choose("ab", &all),
            Err(CliError::Ambiguous { .. })
        ));
        assert!(matches!(
            choose("zzz", &all),
            Err(CliError::NotFound { .. })
        ));
        assert!(matches!(choose("", &all), Err(CliError::NotFound { .. })));
    }

    #[test]
    fn image_ids_match_with_or_without_the_algorithm() {
        let all = [named("sha256:0123abcd", "busybox:latest")];
        assert_eq!(choose("0123", &all).unwrap(), "sha256:0123abcd");
        assert_eq!(choose("sha256:0123", &all).unwrap(), "sha256:0123abcd");
        assert_eq!(choose("0123abcd", &all).unwrap(), "sha256:0123abcd");
    }
}
