//! `carrack stats [--no-stream] [CONTAINER…]`: running containers' CPU and memory, redrawn
//! every two seconds until interrupted, or printed once.
//!
//! CPU % is the runtime's `usage_nano_cores` where it gives one, else the change of
//! `usage_core_nano_seconds` between two samples (so the first table waits one second).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::client::Cri;
use super::error::CliError;
use super::output::{self, Format, Table};
use crate::proto;

/// Time between two samples of the live table.
const REFRESH: Duration = Duration::from_secs(2);

/// Time between the two samples of a one-shot table.
const FIRST_SAMPLE_GAP: Duration = Duration::from_secs(1);

/// Arguments of `carrack stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print one table and exit.
    #[arg(long)]
    no_stream: bool,
    /// Output format (JSON implies --no-stream).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Containers (names, ids or id prefixes); default all running ones.
    containers: Vec<String>,
}

/// One container's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// CPU use in percent of one CPU, if known.
    pub cpu_percent: Option<f64>,
    /// Working-set memory in bytes.
    pub memory_bytes: Option<u64>,
    /// The memory limit (working set + available), if the container has one.
    pub memory_limit_bytes: Option<u64>,
    /// Bytes used by the writable layer.
    pub writable_layer_bytes: Option<u64>,
}

/// (timestamp ns, cumulative CPU ns) of a container's last sample.
type CpuSample = (i64, u64);

fn cpu_sample(stats: &proto::ContainerStats) -> Option<CpuSample> {
    let cpu = stats.cpu.as_ref()?;
    Some((cpu.timestamp, cpu.usage_core_nano_seconds.as_ref()?.value))
}

/// The figures of `stats`, with CPU from `previous` samples when the runtime gives no rate,
/// and the memory limit from `limit` (the container's configured one) when the runtime
/// reports no available bytes.
pub fn row(
    stats: &proto::ContainerStats,
    previous: &HashMap<String, CpuSample>,
    limit: Option<u64>,
) -> Row {
    let attributes = stats.attributes.clone().unwrap_or_default();
    let nano_cores = stats
        .cpu
        .as_ref()
        .and_then(|cpu| cpu.usage_nano_cores.as_ref())
        .map(|value| value.value)
        .filter(|value| *value > 0);
    // Display arithmetic: f64's precision is ample for a percentage.
    #[allow(clippy::cast_precision_loss)]
    let cpu_percent = nano_cores.map(|cores| cores as f64 / 1e7).or_else(|| {
        let (then, then_ns) = previous.get(&attributes.id)?;
        let (now, now_ns) = cpu_sample(stats)?;
        let elapsed = now.checked_sub(*then).filter(|elapsed| *elapsed > 0)?;
        Some(now_ns.saturating_sub(*then_ns) as f64 / elapsed as f64 * 100.0)
    });
    let memory = stats.memory.as_ref();
    let working_set = memory
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|v| v.value);
    let available = memory
        .and_then(|m| m.available_bytes.as_ref())
        .map(|v| v.value)
        .filter(|value| *value > 0);
    Row {
        id: attributes.id,
        name: attributes.metadata.map(|m| m.name).unwrap_or_default(),
        cpu_percent,
        memory_bytes: working_set,
        memory_limit_bytes: working_set
            .zip(available)
            .map(|(used, free)| used + free)
            .or(limit),
        writable_layer_bytes: stats
            .writable_layer
            .as_ref()
            .and_then(|layer| layer.used_bytes.as_ref())
            .map(|v| v.value),
    }
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut table = Table::new(&[
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "WRITABLE",
    ]);
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    for row in rows {
        let memory = row.memory_bytes.map(output::size);
        let limit = row
            .memory_limit_bytes
            .map_or_else(|| "-".to_owned(), output::size);
        // Display arithmetic only.
        #[allow(clippy::cast_precision_loss)]
        let percent = row
            .memory_bytes
            .zip(row.memory_limit_bytes)
            .filter(|(_, limit)| *limit > 0)
            .map(|(used, limit)| format!("{:.2}%", used as f64 / limit as f64 * 100.0));
        table.row(vec![
            output::short_id(&row.id),
            row.name.clone(),
            or_dash(row.cpu_percent.map(|cpu| format!("{cpu:.2}%"))),
            format!("{} / {limit}", or_dash(memory)),
            or_dash(percent),
            or_dash(row.writable_layer_bytes.map(output::size)),
        ]);
    }
    table.render()
}

async fn sample(cri: &mut Cri, ids: &[String]) -> Result<Vec<proto::ContainerStats>, CliError> {
    let mut stats = cri
        .runtime
        .list_container_stats(proto::ListContainerStatsRequest::default())
        .await
        .map_err(CliError::rpc("ListContainerStats"))?
        .into_inner()
        .stats;
    stats.retain(|s| s.attributes.as_ref().is_some_and(|a| ids.contains(&a.id)));
    stats.sort_by_key(|s| {
        s.attributes
            .as_ref()
            .and_then(|a| a.metadata.as_ref())
            .map(|m| m.name.clone())
    });
    Ok(stats)
}

/// The container's configured memory limit, if it has one.
async fn memory_limit(cri: &mut Cri, id: &str) -> Result<Option<u64>, CliError> {
    let status = match super::wait::status(cri, id).await {
        Ok(status) => status,
        Err(err) if err.is_not_found() => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(status
        .resources
        .and_then(|resources| resources.linux)
        .and_then(|linux| u64::try_from(linux.memory_limit_in_bytes).ok())
        .filter(|limit| *limit > 0))
}

async fn running_ids(cri: &mut Cri, wanted: &[String]) -> Result<Vec<String>, CliError> {
    if !wanted.is_empty() {
        let mut ids = Vec::new();
        for name in wanted {
            ids.push(super::resolve::container(cri, name).await?.id);
        }
        return Ok(ids);
    }
    let running = cri
        .runtime
        .list_containers(proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                state: Some(proto::ContainerStateValue {
                    state: proto::ContainerState::ContainerRunning.into(),
                }),
                ..proto::ContainerFilter::default()
            }),
        })
        .await
        .map_err(CliError::rpc("ListContainers"))?
        .into_inner()
        .containers;
    Ok(running.into_iter().map(|c| c.id).collect())
}

/// Shows container stats.
pub async fn stats(cri: &mut Cri, args: StatsArgs) -> Result<(), CliError> {
    let once = args.no_stream || args.format == Format::Json;
    let mut previous: HashMap<String, CpuSample> = HashMap::new();
    let mut first = true;
    loop {
        let ids = running_ids(cri, &args.containers).await?;
        let stats = sample(cri, &ids).await?;
        let needs_second_sample = first
            && stats.iter().any(|s| {
                s.cpu
                    .as_ref()
                    .and_then(|c| c.usage_nano_cores.as_ref())
                    .is_none_or(|v| v.value == 0)
            });
        for s in &stats {
            if let (Some(attributes), Some(sample)) = (s.attributes.as_ref(), cpu_sample(s)) {
                previous.entry(attributes.id.clone()).or_insert(sample);
            }
        }
        if needs_second_sample {
            first = false;
            tokio::time::sleep(FIRST_SAMPLE_GAP).await;
            continue;
        }
        first = false;
        let mut rows = Vec::with_capacity(stats.len());
        for s in &stats {
            let limit = match s.attributes.as_ref() {
                Some(attributes) => memory_limit(cri, &attributes.id).await?,
                None => None,
            };
            rows.push(row(s, &previous, limit));
        }
        for s in &stats {
            if let (Some(attributes), Some(sample)) = (s.attributes.as_ref(), cpu_sample(s)) {
                previous.insert(attributes.id.clone(), sample);
            }
        }
        if args.format == Format::Json {
            return output::print_json("stats", &rows);
        }
        if once {
            return output::print(&table(&rows));
        }
        // Clear the screen and redraw, as `docker stats` does.
        output::print(&format!("\x1b[2J\x1b[H{}", table(&rows)))?;
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(
        id: &str,
        timestamp: i64,
        core_ns: u64,
        nano_cores: Option<u64>,
    ) -> proto::ContainerStats {
        proto::ContainerStats {
            attributes: Some(proto::ContainerAttributes {
                id: id.to_owned(),
                metadata: Some(proto::ContainerMetadata {
                    name: "web".to_owned(),
                    attempt: 0,
                }),
                ..proto::ContainerAttributes::default()
            }),
            cpu: Some(proto::CpuUsage {
                timestamp,
                usage_core_nano_seconds: Some(proto::UInt64Value { value: core_ns }),
                usage_nano_cores: nano_cores.map(|value| proto::UInt64Value { value }),
                ..proto::CpuUsage::default()
            }),
            memory: Some(proto::MemoryUsage {
                working_set_bytes: Some(proto::UInt64Value { value: 25_000_000 }),
                available_bytes: Some(proto::UInt64Value { value: 75_000_000 }),
                ..proto::MemoryUsage::default()
            }),
            ..proto::ContainerStats::default()
        }
    }

    #[test]
    fn cpu_from_the_rate_or_from_two_samples() {
        let rate = row(
            &stats("abc", 0, 0, Some(250_000_000)),
            &HashMap::new(),
            None,
        );
        assert_eq!(rate.cpu_percent, Some(25.0));
        let previous = HashMap::from([("abc".to_owned(), (1_000_000_000, 0))]);
        let delta = row(
            &stats("abc", 2_000_000_000, 500_000_000, None),
            &previous,
            None,
        );
        assert_eq!(delta.cpu_percent, Some(50.0));
        assert_eq!(
            row(&stats("abc", 1, 1, None), &HashMap::new(), None).cpu_percent,
            None
        );
    }

    #[test]
    fn table_layout() {
        let rows = [row(
            &stats("0123456789abcdef", 0, 0, Some(10_000_000)),
            &HashMap::new(),
            None,
        )];
        assert_eq!(
            table(&rows),
            "CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT   MEM %    WRITABLE\n\
             0123456789ab   web    1.00%   25MB / 100MB        25.00%   -\n"
        );
    }
}
