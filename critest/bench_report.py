#!/usr/bin/env python3
"""Summarises `critest -benchmark` results: per-operation p50, p90 and mean in milliseconds,
one column per runtime and, with two runtimes, the ratio of the first to the second.

    python3 critest/bench_report.py carrack=DIR [containerd=DIR] [--json OUT]

DIR is what critest wrote with `--benchmarking-output-dir` (`container_benchmark_data.json`,
`pod_benchmark_data.json`, `image_lifecycle_benchmark_data.json`,
`image_listing_benchmark_data.json`: every sample's per-operation durations) plus its Ginkgo
JSON report as `report.json`: the "start a container from scratch" benchmark writes no data
file, only a gmeasure experiment in the report, and the report says which specs passed.
`--json OUT` also writes every figure as JSON (for pasting elsewhere or comparing runs).
A benchmark whose data file is missing (its spec failed or was skipped) shows `—`.

Only the Python 3 standard library is used.
"""

import json
import os
import sys

# (data file, what critest measures in it), in the order of the table.
DATA_FILES = [
    ("pod_benchmark_data.json", "pod lifecycle"),
    ("container_benchmark_data.json", "container lifecycle"),
    ("image_lifecycle_benchmark_data.json", "image lifecycle"),
    ("image_listing_benchmark_data.json", "image listing"),
]
SCRATCH_EXPERIMENT = "start-container-benchmark"
SCRATCH_ROW = ("start a container from scratch: run pod, create + start container, stop + remove pod")


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil, at least the first
    return ordered[int(rank) - 1]


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def data_rows(directory):
    """{row name: (value in ms, sample count)} from critest's data files in `directory`."""
    rows = {}
    for file_name, what in DATA_FILES:
        data = load_json(os.path.join(directory, file_name))
        if not data:
            continue
        names = data.get("operationsNames") or []
        points = data.get("datapoints") or []
        for index, name in enumerate(names):
            values = [p["operationsDurationsNs"][index] / 1e6 for p in points
                      if len(p.get("operationsDurationsNs") or []) > index]
            if not values:
                continue
            n = len(values)
            rows[f"{what}: {name} p50 ({n})"] = percentile(values, 0.5)
            rows[f"{what}: {name} p90 ({n})"] = percentile(values, 0.9)
            rows[f"{what}: {name} mean ({n})"] = sum(values) / n
        if len(names) > 1 and points:
            cycles = [(p["endTime"] - p["startTime"]) / 1e6 for p in points]
            n = len(cycles)
            rows[f"{what}: whole cycle p50 ({n})"] = percentile(cycles, 0.5)
            rows[f"{what}: whole cycle p90 ({n})"] = percentile(cycles, 0.9)
    return rows


def report_specs(report):
    """The benchmark specs of a Ginkgo report: [(name, state, failure message)]."""
    specs = []
    for suite in report or []:
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue
            message = " ".join(((spec.get("Failure") or {}).get("Message") or "").split())
            specs.append((spec.get("LeafNodeText", "?"), spec.get("State", "?"), message[:300]))
    return specs


def scratch_durations(report):
    """Durations (ms) of the "start a container from scratch" experiment in a Ginkgo report."""
    values = []
    for suite in report or []:
        for spec in suite.get("SpecReports") or []:
            for entry in spec.get("ReportEntries") or []:
                if entry.get("Name") != SCRATCH_EXPERIMENT:
                    continue
                try:
                    experiment = json.loads((entry.get("Value") or {}).get("AsJSON") or "null")
                except ValueError:
                    continue
                for measurement in (experiment or {}).get("Measurements") or []:
                    values += [d / 1e6 for d in measurement.get("Durations") or []]
    return values


def figures(directory):
    report = load_json(os.path.join(directory, "report.json"))
    rows = data_rows(directory)
    scratch = scratch_durations(report)
    if scratch:
        rows[f"{SCRATCH_ROW} ({len(scratch)})"] = sum(scratch) / len(scratch)
    return {"rows": rows, "specs": report_specs(report)}


def fmt_ms(value):
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def main():
    args = sys.argv[1:]
    json_out = None
    if "--json" in args:
        at = args.index("--json")
        if at + 1 >= len(args):
            sys.exit(__doc__)
        json_out = args[at + 1]
        del args[at:at + 2]
    if not 1 <= len(args) <= 2 or any("=" not in a for a in args):
        sys.exit(__doc__)
    runtimes = [tuple(a.split("=", 1)) for a in args]
    results = {name: figures(directory) for name, directory in runtimes}
    names = [name for name, _ in runtimes]

    order = []
    for name in names:
        order += [row for row in results[name]["rows"] if row not in order]
    header = ["critest benchmark", *names]
    if len(names) == 2:
        header.append(f"ratio ({names[0]}/{names[1]})")
    table = []
    for row in order:
        values = [results[name]["rows"].get(row) for name in names]
        cells = [row, *map(fmt_ms, values)]
        if len(names) == 2:
            first, second = values
            cells.append(f"{first / second:.2f}" if first is not None and second else "—")
        table.append(cells)
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]

    def line(cells):
        body = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "| " + " | ".join(body) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in table:
        print(line(cells))

    failed = False
    for name in names:
        specs = results[name]["specs"]
        counts = {}
        for _, state, _ in specs:
            counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "no report"
        print(f"\n{name}: critest benchmark specs: {summary}")
        for spec, state, message in specs:
            if state not in ("passed", "skipped"):
                failed = True
                print(f"  {state}: {spec}: {message}")
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
