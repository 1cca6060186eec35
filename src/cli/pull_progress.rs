//! What `carrack pull` (and `run` pulling on demand) shows while CRI's `PullImage` runs: a
//! progress bar per layer when the runtime reports layer progress (Carrack's
//! `carrack.images.v1.Images/PullProgress`), else one spinner for the image: CRI itself
//! reports nothing until the pull is done, and the bars are never invented.
//!
//! On a terminal the bars redraw in place; otherwise (a log, a pipe) each layer gets one line
//! when it is done.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::output;
use crate::proto::images::images_client::ImagesClient;
use crate::proto::images::{LayerProgress, PullProgressRequest, PullProgressResponse};

/// Time between the runtime's progress snapshots.
const SNAPSHOT_INTERVAL_MS: u32 = 100;

/// How long to wait for the runtime's last snapshot of a pull that has returned.
const SETTLE: Duration = Duration::from_secs(2);

/// The runtime's stream of progress snapshots.
pub type Snapshots = tonic::Streaming<PullProgressResponse>;

/// The bars of one pull.
#[derive(Debug)]
pub struct PullDisplay {
    image: String,
    quiet: bool,
    bars: MultiProgress,
    spinner: ProgressBar,
    layers: HashMap<String, ProgressBar>,
    /// An earlier pull of the image the runtime still reports: not ours.
    earlier: Option<u64>,
}

impl PullDisplay {
    /// Starts the display with a spinner for `image` (hidden with `quiet`).
    pub fn new(image: &str, quiet: bool) -> Self {
        let bars = MultiProgress::new();
        let spinner = if quiet {
            ProgressBar::hidden()
        } else {
            bars.add(ProgressBar::new_spinner())
        };
        spinner.set_style(
            ProgressStyle::with_template("{spinner} Pulling {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(image.to_owned());
        spinner.enable_steady_tick(Duration::from_millis(120));
        if !quiet && bars.is_hidden() {
            eprintln!("Pulling {image}");
        }
        Self {
            image: image.to_owned(),
            quiet,
            bars,
            spinner,
            layers: HashMap::new(),
            earlier: None,
        }
    }

    /// Whether `snapshot` is of our pull (not nothing, not an earlier pull's leftover).
    fn ours(&self, snapshot: &PullProgressResponse) -> bool {
        snapshot.pull != 0 && Some(snapshot.pull) != self.earlier
    }

    /// Shows a snapshot of the runtime's layer progress.
    fn update(&mut self, layers: &[LayerProgress]) {
        if self.quiet {
            return;
        }
        for layer in layers {
            let bar = match self.layers.get(&layer.digest) {
                Some(bar) => bar,
                None => {
                    let bar = self.bars.add(ProgressBar::new(layer.total_bytes));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(short_digest(&layer.digest));
                    self.layers.entry(layer.digest.clone()).or_insert(bar)
                }
            };
            if bar.is_finished() {
                continue;
            }
            bar.set_position(layer.received_bytes.min(layer.total_bytes));
            bar.set_message(layer.state.clone());
            if layer.state == "done" {
                bar.finish();
                if self.bars.is_hidden() {
                    eprintln!(
                        "{} layer {}: done ({})",
                        self.image,
                        short_digest(&layer.digest),
                        output::size(layer.total_bytes)
                    );
                }
            }
        }
    }

    /// Asks the runtime for progress reports of the image's pulls, before the pull starts;
    /// `None` when it has none (another CRI runtime).
    pub async fn open(&mut self, channel: tonic::transport::Channel) -> Option<Snapshots> {
        let request = PullProgressRequest {
            image: self.image.clone(),
            interval_ms: SNAPSHOT_INTERVAL_MS,
        };
        let mut snapshots = ImagesClient::new(channel)
            .pull_progress(request)
            .await
            .ok()?
            .into_inner();
        // The first snapshot comes at once; a pull it shows finished is an earlier one.
        let first = snapshots.message().await.ok()??;
        if first.finished {
            self.earlier = Some(first.pull);
        }
        Some(snapshots)
    }

    /// Shows the runtime's snapshots until it stops sending them.
    pub async fn follow(&mut self, snapshots: &mut Snapshots) {
        while let Ok(Some(snapshot)) = snapshots.message().await {
            if self.ours(&snapshot) {
                self.update(&snapshot.layers);
            }
        }
    }

    /// After the pull returned: shows the runtime's last snapshot of it (at most [`SETTLE`]
    /// later), so every layer ends as done.
    pub async fn settle(&mut self, snapshots: &mut Snapshots) {
        let last = async {
            while let Ok(Some(snapshot)) = snapshots.message().await {
                if self.ours(&snapshot) && snapshot.finished {
                    return Some(snapshot);
                }
            }
            None
        };
        if let Ok(Some(snapshot)) = tokio::time::timeout(SETTLE, last).await {
            self.update(&snapshot.layers);
        }
    }

    /// Removes the bars (the pull is over).
    pub fn finish(&self) {
        self.spinner.finish_and_clear();
        for bar in self.layers.values() {
            bar.finish_and_clear();
        }
        let _ = self.bars.clear();
    }
}

/// `sha256:0123456789abcdef…` → `0123456789ab`, as Docker names layers.
fn short_digest(digest: &str) -> String {
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_named_by_twelve_hex_digits() {
        assert_eq!(
            short_digest("sha256:4c683a9e730cd872cf7e303bb6b28938"),
            "4c683a9e730c"
        );
        assert_eq!(short_digest("abc"), "abc");
    }
}
