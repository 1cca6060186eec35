//! Process metrics read from `/proc` at scrape time: the daemon's own (the conventional
//! `process_*` set) and the resident memory of monitor processes.

use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The daemon's own figures, as far as `/proc/self` gave them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStat {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: f64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
}

/// Parses `/proc/<pid>/stat` with `/proc/stat`'s boot time. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from its closing parenthesis.
pub fn parse_stat(
    stat: &str,
    boot_time: u64,
    ticks_per_second: u64,
    page_size: u64,
) -> Option<ProcessStat> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); utime is field 14.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    Some(ProcessStat {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
    })
}

/// The `btime` line of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// Resident memory of process `pid` from `<proc>/<pid>/statm`; `None` when it is gone.
pub fn resident_bytes(proc_root: &Path, pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(proc_root.join(pid.to_string()).join("statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(rustix::param::page_size() as u64))
}

fn own_stat() -> Option<ProcessStat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    parse_stat(
        &stat,
        boot,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
    )
}

fn open_fds() -> Option<i64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
}

fn max_fds() -> Option<i64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .and_then(|limit| i64::try_from(limit).ok())
}

/// Encodes the `process_*` metrics at each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stat) = own_stat() {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            for (name, help, value) in [
                (
                    "process_start_time_seconds",
                    "Start time of the process since the epoch, in seconds",
                    stat.start_time_seconds,
                ),
                (
                    "process_resident_memory_bytes",
                    "Resident memory size, in bytes",
                    stat.resident_bytes as f64,
                ),
                (
                    "process_virtual_memory_bytes",
                    "Virtual memory size, in bytes",
                    stat.virtual_bytes as f64,
                ),
            ] {
                encode_gauge(&mut encoder, name, help, value)?;
            }
        }
        for (name, help, value) in [
            ("process_open_fds", "Open file descriptors", open_fds()),
            (
                "process_max_fds",
                "Limit of open file descriptors",
                max_fds(),
            ),
        ] {
            if let Some(value) = value {
                encode_gauge(&mut encoder, name, help, value as f64)?;
            }
        }
        Ok(())
    }
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_the_name_parses() {
        let stat = "4242 (car rack) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    8 0 1000 123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1";
        let parsed = parse_stat(stat, 1_700_000_000, 100, 4096).unwrap();
        assert_eq!(parsed.cpu_seconds, 3.0);
        assert_eq!(parsed.start_time_seconds, 1_700_000_010.0);
        assert_eq!(parsed.virtual_bytes, 123_456_789);
        assert_eq!(parsed.resident_bytes, 300 * 4096);
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn own_process_is_readable() {
        let stat = own_stat().unwrap();
        assert!(stat.resident_bytes > 0);
        assert!(open_fds().unwrap() > 0);
        let pid = std::process::id() as i32;
        assert!(resident_bytes(Path::new("/proc"), pid).unwrap() > 0);
        assert_eq!(resident_bytes(Path::new("/proc"), -1), None);
    }
}
