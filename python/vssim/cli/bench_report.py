"""``vssim bench-report``: aggregate pytest-benchmark JSON files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vssim import benchreport


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench-report",
        help="aggregate pytest-benchmark JSON results (ratios to peers, changes between runs)",
    )
    p.add_argument(
        "results", nargs="+", type=Path, help="pytest-benchmark JSON files, oldest first"
    )
    p.add_argument("--format", choices=["table", "markdown", "csv"], default="table")
    p.add_argument("--out", type=Path, help="also write report.md and report.csv into this folder")
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit with status 1 when a benchmark regressed beyond the noise",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    report = benchreport.build(list(args.results))
    print(benchreport.render(report, args.format))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(benchreport.render(report, "markdown"))
        (args.out / "report.csv").write_text(benchreport.render(report, "csv"))
        print(f"written: {args.out / 'report.md'}, {args.out / 'report.csv'}")
    found = benchreport.regressions(report)
    if found:
        print(f"{found} benchmark(s) regressed beyond the noise (min–max ranges do not overlap)")
    return 1 if found and args.fail_on_regression else 0
