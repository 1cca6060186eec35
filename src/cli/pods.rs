//! `carrack pods`: the pod sandboxes, as a table or JSON.

use super::client::Cri;
use super::error::CliError;
use super::output::{self, Format, Table};
use crate::proto;

/// Arguments of `carrack pods`.
#[derive(Debug, clap::Args)]
pub struct PodsArgs {
    /// Print only pod ids.
    #[arg(short, long)]
    quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Lists pods.
pub async fn pods(cri: &mut Cri, args: PodsArgs) -> Result<(), CliError> {
    let mut pods = super::resolve::all_pods(cri).await?;
    pods.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    if args.quiet {
        let ids: String = pods
            .iter()
            .map(|p| format!("{}\n", output::short_id(&p.id)))
            .collect();
        return output::print(&ids);
    }
    if args.format == Format::Json {
        return output::print_json("pods", &pods);
    }
    let mut table = Table::new(&["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT"]);
    for pod in &pods {
        let state = match proto::PodSandboxState::try_from(pod.state) {
            Ok(proto::PodSandboxState::SandboxReady) => "Ready",
            _ => "NotReady",
        };
        let metadata = pod.metadata.clone().unwrap_or_default();
        table.row(vec![
            output::short_id(&pod.id),
            output::ago(pod.created_at),
            state.to_owned(),
            metadata.name,
            metadata.namespace,
            metadata.attempt.to_string(),
        ]);
    }
    output::print(&table.render())
}
