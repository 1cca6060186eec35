//! `carrack history IMAGE`: the steps that built an image, newest first, with the size of
//! the layer each step made.
//!
//! The steps come from the image config's `history` (the runtime's verbose `ImageStatus`
//! returns the config as `info.imageSpec`: Carrack and containerd both do); layer sizes from
//! `info.layers` where the runtime gives them (Carrack: the unpacked size).

use serde::Serialize;
use serde_json::Value;

use super::client::Cri;
use super::error::CliError;
use super::output::{self, Format, Table};

/// Arguments of `carrack history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Do not shorten the CREATED BY column.
    #[arg(long)]
    no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The image (tag, id or id prefix).
    image: String,
}

/// One build step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// When it ran (RFC 3339), if recorded.
    pub created: Option<String>,
    /// The command that made it.
    pub created_by: String,
    /// The layer's DiffID, or `None` for a step that made no layer.
    pub layer: Option<String>,
    /// The layer's size in bytes, when the runtime reports it (0 for no layer).
    pub size: Option<u64>,
    /// The step's comment.
    pub comment: String,
}

/// The steps of an image from the runtime's verbose info, newest first. A config without
/// history gets one step per layer.
pub fn steps(info: &Value) -> Vec<Step> {
    let info = info.get("info").unwrap_or(info);
    let spec = info.get("imageSpec").unwrap_or(&Value::Null);
    let diff_ids: Vec<String> = spec
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let sizes: Vec<Option<u64>> = info
        .get("layers")
        .and_then(Value::as_array)
        .map(|layers| {
            layers
                .iter()
                .map(|layer| layer.get("size").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default();
    let text = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let history = spec
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut steps = Vec::new();
    let mut layer_index = 0;
    if history.is_empty() {
        for (index, diff_id) in diff_ids.iter().enumerate() {
            steps.push(Step {
                created: None,
                created_by: String::new(),
                layer: Some(diff_id.clone()),
                size: sizes.get(index).copied().flatten(),
                comment: String::new(),
            });
        }
    }
    for entry in &history {
        let empty = entry
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (layer, size) = if empty {
            (None, Some(0))
        } else {
            let layer = diff_ids.get(layer_index).cloned();
            let size = sizes.get(layer_index).copied().flatten();
            layer_index += 1;
            (layer, size)
        };
        steps.push(Step {
            created: entry
                .get("created")
                .and_then(Value::as_str)
                .map(str::to_owned),
            created_by: text(entry, "created_by"),
            layer,
            size,
            comment: text(entry, "comment"),
        });
    }
    steps.reverse();
    steps
}

/// Renders the steps as Docker's history table; the newest row carries the image's id.
pub fn table(
    image_id: &str,
    steps: &[Step],
    no_trunc: bool,
    ago: impl Fn(i64) -> String,
) -> String {
    let mut table = Table::new(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for (index, step) in steps.iter().enumerate() {
        let id = if index == 0 {
            output::short_id(image_id)
        } else {
            "<missing>".to_owned()
        };
        let created = step
            .created
            .as_deref()
            .and_then(output::parse_rfc3339)
            .map_or_else(|| "-".to_owned(), &ago);
        let created_by = step.created_by.replace(['\n', '\t'], " ");
        let created_by = if no_trunc {
            created_by
        } else {
            output::truncate(&created_by, 45)
        };
        let size = step.size.map_or_else(|| "-".to_owned(), output::size);
        table.row(vec![id, created, created_by, size, step.comment.clone()]);
    }
    table.render()
}

/// Prints an image's history.
pub async fn history(cri: &mut Cri, args: HistoryArgs) -> Result<(), CliError> {
    let (image, info) = super::inspect::image_status(cri, &args.image).await?;
    let steps = steps(&info);
    if args.format == Format::Json {
        return output::print_json("history", &steps);
    }
    output::print(&table(&image.id, &steps, args.no_trunc, output::ago))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Value {
        serde_json::json!({"info": {
            "layers": [{"size": 4_200_000}, {"size": 1234}],
            "imageSpec": {
                "rootfs": {"type": "layers", "diff_ids": ["sha256:aaa", "sha256:bbb"]},
                "history": [
                    {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /"},
                    {"created": "2024-01-01T00:00:01Z", "created_by": "ENV A=b", "empty_layer": true},
                    {"created": "2024-01-01T00:00:02Z", "created_by": "RUN echo hi > /f", "comment": "built"}
                ]
            }
        }})
    }

    #[test]
    fn steps_pair_history_with_layers_newest_first() {
        let steps = steps(&info());
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].created_by, "RUN echo hi > /f");
        assert_eq!(steps[0].layer.as_deref(), Some("sha256:bbb"));
        assert_eq!(steps[0].size, Some(1234));
        assert_eq!(steps[1].layer, None);
        assert_eq!(steps[1].size, Some(0));
        assert_eq!(steps[2].layer.as_deref(), Some("sha256:aaa"));
        assert_eq!(steps[2].size, Some(4_200_000));
    }

    #[test]
    fn table_layout() {
        let text = table("sha256:0123456789abcdef", &steps(&info()), false, |_| {
            "2 years ago".to_owned()
        });
        assert_eq!(
            text,
            "IMAGE          CREATED       CREATED BY         SIZE      COMMENT\n\
             0123456789ab   2 years ago   RUN echo hi > /f   1.234kB   built\n\
             <missing>      2 years ago   ENV A=b            0B\n\
             <missing>      2 years ago   ADD rootfs.tar /   4.2MB\n"
        );
    }

    #[test]
    fn no_history_means_one_step_per_layer() {
        let info = serde_json::json!({"imageSpec": {"rootfs": {"diff_ids": ["sha256:aaa"]}}});
        let steps = steps(&info);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].size, None);
    }
}
