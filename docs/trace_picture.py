#!/usr/bin/python3
"""Draws a pod-start trace as a timeline PNG.

Input: the span JSON that `tests/telemetry.rs` writes when `CARRACK_TRACE_JSON=<file>` is set
(name, trace/span/parent ids, start/end in ns since the epoch). Output: one bar per span,
children under their parent (depth-first, in start order), x = milliseconds since the first
span began. Needs Debian's python3-matplotlib.

    CARRACK_TRACE_JSON=/tmp/trace.json cargo test --test telemetry pod_start
    /usr/bin/python3 docs/trace_picture.py /tmp/trace.json docs/pod-start-trace.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)


def ordered(spans):
    """(depth, span) depth-first: roots (the RPC spans) then their children, by start time."""
    ids = {span["span_id"] for span in spans}
    children = {}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(span)
    rows = []

    def visit(parent, depth):
        for span in sorted(children.get(parent, []), key=lambda s: s["start_ns"]):
            rows.append((depth, span))
            visit(span["span_id"], depth + 1)

    visit(None, 0)
    return rows


def main(source, target):
    with open(source, encoding="utf-8") as file:
        spans = json.load(file)
    rows = ordered(spans)
    origin = min(span["start_ns"] for span in spans)
    colours = ["#1f4e79", "#2e75b6", "#5b9bd5", "#9dc3e6", "#c9def0"]
    height = max(4.0, 0.22 * len(rows) + 1.2)
    figure, axes = plt.subplots(figsize=(13, height))
    for row, (depth, span) in enumerate(rows):
        start = (span["start_ns"] - origin) / 1e6
        width = max((span["end_ns"] - span["start_ns"]) / 1e6, 0.05)
        axes.barh(row, width, left=start, height=0.7, color=colours[min(depth, len(colours) - 1)])
        axes.text(
            start + width + 1,
            row,
            f"{width:.1f} ms",
            va="center",
            fontsize=7,
            color="#444444",
        )
    axes.set_yticks(range(len(rows)))
    axes.set_yticklabels(["    " * depth + span["name"] for depth, span in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("milliseconds since the pull began")
    axes.set_title("Carrack: PullImage, RunPodSandbox, CreateContainer, StartContainer (one trace)")
    axes.grid(axis="x", linestyle=":", linewidth=0.5)
    figure.tight_layout()
    figure.savefig(target, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: trace_picture.py <spans.json> <picture.png>")
    main(sys.argv[1], sys.argv[2])
