//! Results: one JSON record per figure, appended by each `measure` run, and the table
//! `report` prints from them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The runtime whose column comes first and is the numerator of the ratio.
const SUBJECT: &str = "carrack";
/// The runtime it is compared with.
const PEER: &str = "containerd";

/// One line of the results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Row of the table (`RunPodSandbox p50, ipMasq on`); `note` for a remark.
    pub step: String,
    /// Column: the runtime measured.
    pub runtime: String,
    /// The figure, absent when the step failed for this runtime.
    pub value: Option<f64>,
    /// `ms`, `s` or `MiB`.
    pub unit: String,
    /// Why the figure is missing, or what else is worth knowing about it.
    pub note: Option<String>,
}

/// Appends records to the results file.
#[derive(Debug)]
pub struct Writer {
    /// The open results file.
    file: File,
}

impl Writer {
    /// Opens (creating) the results file for appending.
    pub fn open(path: &Path) -> Result<Writer> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        Ok(Writer { file })
    }

    /// Records one figure and echoes it on stderr as progress.
    pub fn value(&mut self, step: &str, runtime: &str, value: f64, unit: &str) -> Result<()> {
        eprintln!("bench: {runtime}: {step}: {}", format_value(value, unit));
        self.write(Record {
            step: step.to_owned(),
            runtime: runtime.to_owned(),
            value: Some(value),
            unit: unit.to_owned(),
            note: None,
        })
    }

    /// Records a duration in milliseconds.
    pub fn millis(&mut self, step: &str, runtime: &str, value: Duration) -> Result<()> {
        self.value(step, runtime, value.as_secs_f64() * 1000.0, "ms")
    }

    /// Records a duration in seconds.
    pub fn seconds(&mut self, step: &str, runtime: &str, value: Duration) -> Result<()> {
        self.value(step, runtime, value.as_secs_f64(), "s")
    }

    /// Records a figure from fewer samples than planned: the cell is marked `(partial)` and
    /// `why` is listed under the table.
    pub fn partial(
        &mut self,
        step: &str,
        runtime: &str,
        value: f64,
        unit: &str,
        why: &str,
    ) -> Result<()> {
        eprintln!(
            "bench: {runtime}: {step}: {} (PARTIAL: {why})",
            format_value(value, unit)
        );
        self.write(Record {
            step: step.to_owned(),
            runtime: runtime.to_owned(),
            value: Some(value),
            unit: unit.to_owned(),
            note: Some(why.to_owned()),
        })
    }

    /// Records that a step failed for a runtime (the table shows `failed`).
    pub fn failed(&mut self, step: &str, runtime: &str, why: &str) -> Result<()> {
        eprintln!("bench: {runtime}: {step}: FAILED: {why}");
        self.write(Record {
            step: step.to_owned(),
            runtime: runtime.to_owned(),
            value: None,
            unit: String::new(),
            note: Some(why.to_owned()),
        })
    }

    /// Records a remark printed under the table.
    pub fn note(&mut self, runtime: &str, text: &str) -> Result<()> {
        eprintln!("bench: {runtime}: note: {text}");
        self.write(Record {
            step: "note".to_owned(),
            runtime: runtime.to_owned(),
            value: None,
            unit: String::new(),
            note: Some(text.to_owned()),
        })
    }

    fn write(&mut self, record: Record) -> Result<()> {
        let mut line = serde_json::to_string(&record)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        Ok(())
    }
}

/// A figure with its unit, rounded for reading.
pub fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "ms" if value >= 100.0 => format!("{value:.0} ms"),
        "ms" => format!("{value:.1} ms"),
        "s" => format!("{value:.2} s"),
        "MiB" if value < 10.0 => format!("{value:.2} MiB"),
        "MiB" => format!("{value:.1} MiB"),
        _ => format!("{value:.2} {unit}"),
    }
}

/// One row of the table: the step and each runtime's record.
#[derive(Debug, Default)]
struct Row {
    /// Record per runtime name (the last one wins).
    cells: BTreeMap<String, Record>,
}

impl Row {
    fn cell(&self, runtime: &str) -> String {
        match self.cells.get(runtime) {
            Some(Record {
                value: Some(value),
                unit,
                note: None,
                ..
            }) => format_value(*value, unit),
            Some(Record {
                value: Some(value),
                unit,
                note: Some(_),
                ..
            }) => format!("{} (partial)", format_value(*value, unit)),
            Some(_) => "failed".to_owned(),
            None => "n/a".to_owned(),
        }
    }

    fn ratio(&self) -> Option<f64> {
        let subject = self.cells.get(SUBJECT)?.value?;
        let peer = self.cells.get(PEER)?.value?;
        (peer > 0.0).then(|| subject / peer)
    }
}

/// Reads the results file and prints the table, the pasteable lines and the notes.
pub fn print(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut order: Vec<String> = Vec::new();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut notes: Vec<Record> = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}", path.display(), number + 1))?;
        if record.step == "note" {
            notes.push(record);
            continue;
        }
        if !rows.contains_key(&record.step) {
            order.push(record.step.clone());
        }
        rows.entry(record.step.clone())
            .or_default()
            .cells
            .insert(record.runtime.clone(), record);
    }

    let header = ["step", SUBJECT, PEER, "ratio (carrack/containerd)"];
    let mut table: Vec<[String; 4]> = vec![header.map(str::to_owned)];
    for step in &order {
        let row = &rows[step];
        table.push([
            step.clone(),
            row.cell(SUBJECT),
            row.cell(PEER),
            row.ratio()
                .map_or_else(|| "—".to_owned(), |ratio| format!("{ratio:.2}")),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|col| {
            table
                .iter()
                .map(|row| row[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let render = |row: &[String; 4]| {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(col, (cell, width))| {
                let pad = width - cell.chars().count();
                if col == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        format!("| {} |", cells.join(" | "))
    };
    println!();
    println!("{}", render(&table[0]));
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &table[1..] {
        println!("{}", render(row));
    }

    println!();
    println!("Figures (one per line, for notes):");
    for step in &order {
        let row = &rows[step];
        let ratio = row
            .ratio()
            .map_or_else(String::new, |ratio| format!(", ratio {ratio:.2}"));
        println!(
            "- {step}: carrack {}, containerd {}{ratio}",
            row.cell(SUBJECT),
            row.cell(PEER)
        );
    }

    let failures: Vec<&Record> = order
        .iter()
        .flat_map(|step| rows[step].cells.values())
        .filter(|record| record.note.is_some())
        .collect();
    if !notes.is_empty() || !failures.is_empty() {
        println!();
        println!("Notes:");
        for record in &notes {
            println!(
                "- {}: {}",
                record.runtime,
                record.note.as_deref().unwrap_or("")
            );
        }
        for record in failures {
            let what = if record.value.is_some() {
                "is partial"
            } else {
                "failed"
            };
            println!(
                "- {} {what} on {}: {}",
                record.step,
                record.runtime,
                record.note.as_deref().unwrap_or("no reason recorded")
            );
        }
    }
    Ok(())
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[Duration]) -> Duration {
    percentile(values, 50.0)
}

/// The `p`th percentile of `values` by linear interpolation between closest ranks.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let fraction = rank - low as f64;
    let low_value = sorted[low].as_secs_f64();
    let high_value = sorted[high].as_secs_f64();
    Duration::from_secs_f64(low_value + (high_value - low_value) * fraction)
}
