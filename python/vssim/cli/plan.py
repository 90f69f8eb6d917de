"""``vssim plan SCENARIO --out DIR``: the capacity-planning report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vssim.benchreport import text_table
from vssim.cli.args import int_in
from vssim.cli.progress import PlanWatcher, View
from vssim.cli.scenario_warnings import condensed
from vssim.errors import PlanError
from vssim.report import capacity_plan as planning
from vssim.report.formatting import humanize
from vssim.report.plan_workers import DEFAULT_JOBS_MAX, default_jobs
from vssim.report.strategies import (
    parse_concurrency,
    parse_duration,
    parse_fractions,
    parse_profiles,
)
from vssim.scale.engines import Engine
from vssim.scale.runner import MAX_VERIFY_VMS
from vssim.units import parse_size

#: ``--quick``: one selective fraction and one concurrency (the profile default of vssim.run).
QUICK = {"fractions": (0.1,), "concurrency": (4,)}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="capacity planning: run full/selective/incremental backups, write an HTML report",
        description="Run the backup strategies a planner compares on SCENARIO (both profiles "
        "unless its [plan] table pins one) and write DIR/report.html, DIR/report.md and "
        "DIR/charts/*.png|svg. Options override the scenario's [plan] table.",
    )
    p.add_argument("scenario", type=Path, help="scenario file (TOML)")
    p.add_argument("--out", type=Path, help="report folder (default: reports/<scenario name>)")
    p.add_argument("--profiles", help="ws2008r2,ws2012 (default: both, or the file's [plan])")
    p.add_argument("--fractions", help="selective shares, e.g. 0.01,0.1,0.25")
    p.add_argument("--concurrency", help="concurrency sweep, e.g. 1,2,4,8")
    p.add_argument("--window", help="backup window to fit, e.g. '8 h' (default 8 h)")
    p.add_argument("--margin", type=float, help="shadow-storage margin over the peak (0.25)")
    p.add_argument("--incremental-after", help="time between full and incremental ('1 h')")
    p.add_argument("--diff-area-limit", help="shadow storage MaxSize set today ('20 GiB')")
    p.add_argument(
        "--vms",
        type=int,
        help="what-if: replace the file's [generate] vms (same nodes and CSVs, N VMs)",
    )
    p.add_argument(
        "--quick", action="store_true", help="one fraction (10 %%) and one concurrency (4)"
    )
    p.add_argument(
        "--engine",
        choices=[e.value for e in Engine],
        default=Engine.ESTIMATE.value,
        help="estimate: expected counts in closed form (default; a 4,000-VM plan in about a minute "
        "on 2 cores); "
        "exact: every guest write simulated (hours at 4,000 VMs)",
    )
    p.add_argument(
        "--verify",
        type=int_in(0, MAX_VERIFY_VMS),
        default=0,
        metavar="N",
        help="re-run N sampled VMs of every run on the exact engine over the same snapshot "
        "epochs; the report gives the largest difference per figure (estimate only)",
    )
    p.add_argument(
        "--jobs",
        type=int_in(1, 64),
        metavar="N",
        help=f"runs at once, each in its own process (default: the usable cores, at most "
        f"{DEFAULT_JOBS_MAX})",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(handler=run)


def options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = dict(QUICK) if args.quick else {}
    if args.profiles:
        opts["profiles"] = parse_profiles(args.profiles)
    if args.fractions:
        opts["fractions"] = parse_fractions(args.fractions)
    if args.concurrency:
        opts["concurrency"] = parse_concurrency(args.concurrency)
    if args.window:
        opts["window_s"] = _duration("--window", args.window)
    if args.incremental_after:
        opts["incremental_after_s"] = _duration("--incremental-after", args.incremental_after)
    if args.margin is not None:
        if not 0 <= args.margin <= 10:
            raise PlanError(f"--margin {args.margin}: expected a share in 0..10")
        opts["margin"] = args.margin
    if args.diff_area_limit:
        limit = parse_size(args.diff_area_limit)
        if limit is None or limit <= 0:
            raise PlanError(f"--diff-area-limit {args.diff_area_limit!r}: not a size")
        opts["diff_area_limit"] = limit
    return opts


def _duration(flag: str, text: str) -> float:
    value = parse_duration(float(text) if text.replace(".", "", 1).isdigit() else text)
    if value is None:
        raise PlanError(f"{flag} {text!r}: expected a duration ('8 h', '90 min', 3600)")
    return value


def run(args: argparse.Namespace) -> int:
    out = args.out or Path("reports") / args.scenario.stem
    opts = options(args)
    if args.verify and args.engine != Engine.ESTIMATE:
        raise PlanError(
            "--verify checks the estimate against the exact engine: use it with --engine estimate"
        )
    jobs = args.jobs or default_jobs()
    how = {"vms": args.vms, "engine": args.engine, "verify": args.verify, "jobs": jobs}
    if args.quiet:
        report = planning.build(args.scenario, out, opts, **how)
    else:
        with View() as view:
            report = planning.build(args.scenario, out, opts, progress=PlanWatcher(view), **how)
    for line in condensed(report.scenario_warnings, f"every one is in {report.html.name}"):
        print(f"warning: {line}")
    for text in report.run_warnings:
        print(f"warning: {text}")
    print(f"report: {report.html}")
    print(f"        {report.markdown}  (charts in {out / 'charts'})")
    print()
    print(text_table(humanize(report.analysis.headline)))
    print()
    for sentences in report.advice.values():
        print(" ".join(sentences))
        print()
    return 0
