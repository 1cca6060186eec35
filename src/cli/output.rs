//! How listings are printed: aligned tables for people, JSON for scripts (`--format json`),
//! and the short forms tables use (12-character ids, SI sizes, "3 minutes ago").

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::error::CliError;

/// Columns are separated by at least this many spaces, as in Docker's tables.
const COLUMN_GAP: usize = 3;

/// The output format of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    #[default]
    Table,
    /// The runtime's replies as JSON.
    Json,
}

/// A table: a header row and data rows, printed with aligned columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, with no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                let width = cell.chars().count();
                match widths.get_mut(column) {
                    Some(current) => *current = (*current).max(width),
                    None => widths.push(width),
                }
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                line.push_str(cell);
                let pad = widths[column].saturating_sub(cell.chars().count()) + COLUMN_GAP;
                line.extend(std::iter::repeat_n(' ', pad));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Writes `text` to stdout.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::Output)
}

/// Prints `value` as pretty JSON.
pub fn print_json(what: &'static str, value: &impl Serialize) -> Result<(), CliError> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|source| CliError::Json { what, source })?;
    text.push('\n');
    print(&text)
}

/// The 12-character short form of an id (`sha256:` dropped), as Docker shows ids.
pub fn short_id(id: &str) -> String {
    let bare = id.split_once(':').map_or(id, |(_, hex)| hex);
    bare.chars().take(12).collect()
}

/// A byte count in SI units, as Docker prints sizes: `4.26MB`, `812kB`, `0B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    // Display only: the precision lost converting to f64 is far below what is shown.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    // Four significant digits, trailing zeros dropped (Go's `%.4g`, what Docker prints).
    let decimals = if value < 10.0 {
        3
    } else if value < 100.0 {
        2
    } else {
        1
    };
    let text = format!("{value:.decimals$}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}{}", UNITS[unit])
}

/// How long ago a CRI timestamp (nanoseconds since the epoch) was: `5 seconds ago`.
pub fn ago(timestamp_ns: i64) -> String {
    let then = UNIX_EPOCH + Duration::from_nanos(u64::try_from(timestamp_ns).unwrap_or(0));
    match SystemTime::now().duration_since(then) {
        Ok(elapsed) => format!("{} ago", duration(elapsed)),
        Err(_) => "just now".to_owned(),
    }
}

/// A duration in the largest whole unit: `5 seconds`, `About a minute`, `3 hours`.
pub fn duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match seconds {
        0 => "Less than a second".to_owned(),
        1..60 => plural(seconds, "second"),
        60..120 => "About a minute".to_owned(),
        120..3600 => plural(seconds / 60, "minute"),
        3600..7200 => "About an hour".to_owned(),
        7200..172_800 => plural(seconds / 3600, "hour"),
        _ => plural(seconds / 86_400, "day"),
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time (`2024-05-01T12:00:00.5+02:00`), as image
/// configs write them; `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
    );
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = hms.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (
        clock_parts.next()?.ok()?,
        clock_parts.next()?.ok()?,
        clock_parts.next()?.ok()?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let nanos: i64 = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        digits.parse::<i64>().ok()? * 10_i64.pow(9 - u32::try_from(digits.len()).ok()?)
    };
    let offset_seconds = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone.get(1..)?.split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Cuts `text` to `max` characters, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let mut table = Table::new(&["ID", "NAME", "STATE"]);
        table.row(vec!["abc".into(), "a-long-name".into(), "Running".into()]);
        table.row(vec!["abcdef123".into(), "x".into(), String::new()]);
        assert_eq!(
            table.render(),
            "ID          NAME          STATE\n\
             abc         a-long-name   Running\n\
             abcdef123   x\n"
        );
    }

    #[test]
    fn sizes_are_si_like_docker() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1000), "1kB");
        assert_eq!(size(1_234_567), "1.235MB");
        assert_eq!(size(4_260_000), "4.26MB");
        assert_eq!(size(812_000), "812kB");
        assert_eq!(size(12_345_678_901), "12.35GB");
    }

    #[test]
    fn short_ids_drop_the_algorithm() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("fedcba9876543210fedc"), "fedcba987654");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(duration(Duration::from_secs(1)), "1 second");
        assert_eq!(duration(Duration::from_secs(59)), "59 seconds");
        assert_eq!(duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(duration(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(duration(Duration::from_secs(3 * 86_400)), "3 days");
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00+02:00"),
            Some(1_709_200_800 * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T10:00:00.000000001Z"),
            Some(1_709_200_800 * 1_000_000_000 + 1)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("/bin/sh -c echo hello", 10), "/bin/sh -…");
    }
}
