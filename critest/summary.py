#!/usr/bin/env python3
"""Summarises a critest (Ginkgo) JSON report: counts per state, then each spec that did not
pass or skip with where and why it failed.

    python3 critest/summary.py report.json [--all]

`--all` also lists the passed and skipped specs (with the skip reason).
"""

import json
import sys


def spec_name(spec):
    return " ".join(spec.get("ContainerHierarchyTexts") or []) + " " + spec.get("LeafNodeText", "")


def main():
    args = [a for a in sys.argv[1:] if a != "--all"]
    if len(args) != 1:
        sys.exit(__doc__)
    show_all = "--all" in sys.argv[1:]
    with open(args[0]) as f:
        suites = json.load(f)
    counts, failed, others = {}, [], []
    for suite in suites:
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue
            state = spec.get("State", "?")
            counts[state] = counts.get(state, 0) + 1
            failure = spec.get("Failure") or {}
            lines = [l.strip() for l in (failure.get("Message") or "").splitlines() if l.strip()]
            message = " ".join(lines)[:300]
            if state in ("passed", "skipped", "pending"):
                others.append((state, spec_name(spec), message))
                continue
            where = failure.get("Location") or {}
            place = f'{where.get("FileName", "?").rsplit("/", 1)[-1]}:{where.get("LineNumber", "?")}'
            failed.append((state, spec_name(spec), place, message))
    print("critest specs: " + ", ".join(f"{state} {n}" for state, n in sorted(counts.items())))
    for state, name, place, message in failed:
        print(f"  {state}: {name}\n      at {place}: {message}")
    if show_all:
        for state, name, message in sorted(others):
            print(f"  {state}: {name}" + (f" ({message})" if message else ""))


if __name__ == "__main__":
    main()
