"""``vssim run SCENARIO``: full, selective and incremental backups of a whole cluster in modelled
mode; writes the result tables as Parquet and prints a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from vssim.cli.args import float_in, int_in, share
from vssim.cli.progress import RunWatcher, View
from vssim.errors import VssimError
from vssim.metrics import RunResult
from vssim.metrics import run as run_backups
from vssim.scale.engines import Engine
from vssim.scale.runner import MAX_INTERVAL_S
from vssim.scale.schedule import SCHEDULE_RANGES, BackupKind, Schedule
from vssim.scenario import load_scenario


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="back up a whole scenario (modelled) and write the result tables"
    )
    p.add_argument("scenario", type=Path, help="scenario TOML file")
    p.add_argument(
        "--backup",
        nargs="+",
        default=["full"],
        choices=[k.value for k in BackupKind],
        help="backups to run, one after the other (default: full)",
    )
    p.add_argument("--fraction", type=share, help="back up this share of the VMs (selective)")
    p.add_argument("--vms", nargs="+", default=[], metavar="VM", help="VM names or GUIDs")
    p.add_argument(
        "-wi",
        dest="include",
        action="append",
        default=[],
        metavar="COMPONENT",
        help="vshadow-style include: writer, writer:component, VM",
    )
    p.add_argument(
        "-wx",
        dest="exclude",
        action="append",
        default=[],
        metavar="COMPONENT",
        help="vshadow-style exclude",
    )
    p.add_argument(
        "--requester",
        default="coordinator",
        help="ws2012 requester node: coordinator, round-robin or a node name",
    )
    r = SCHEDULE_RANGES
    p.add_argument(
        "--per-node", type=int_in(*r["per_node"]), help="concurrent snapshot sets per node"
    )
    p.add_argument("--per-csv", type=int_in(*r["per_csv"]), help="concurrent snapshot sets per CSV")
    p.add_argument(
        "--streams",
        type=int_in(*r["streams_per_node"]),
        default=8,
        help="concurrent VM copies per node",
    )
    p.add_argument(
        "--batch-vms",
        type=int_in(*r["batch_vms"]),
        default=0,
        help="VMs per snapshot set (0: no limit)",
    )
    p.add_argument(
        "--interval",
        type=float_in(0.0, MAX_INTERVAL_S, "seconds"),
        default=600.0,
        help=f"simulated seconds between consecutive backups (at most {MAX_INTERVAL_S:,.0f})",
    )
    p.add_argument("--out", type=Path, help="write vms/csvs/nodes/jobs/phases/summary.parquet here")
    p.add_argument(
        "--materialize",
        type=Path,
        metavar="DIR",
        help="also run it for real in DIR (new or empty): VHDX disks on copy-on-write volumes, "
        "backups as VHDX chains, each verified (size the scenario for your disk)",
    )
    p.add_argument(
        "--engine",
        choices=[e.value for e in Engine],
        default=Engine.EXACT.value,
        help="exact: every guest write simulated (default; materialized runs need it); "
        "estimate: the expected counts in closed form, in seconds at any size",
    )
    p.add_argument(
        "--no-qemu-check",
        dest="qemu_check",
        action="store_false",
        help="materialized: skip qemu-img check of the backup files",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(handler=run)


def summary_table(result: RunResult) -> Table:
    t = Table(
        title=f"{result.scenario.name} ({result.scenario.os}): modelled backups, "
        f"{result.engine} engine"
    )
    cols = [
        ("backup", "strategy", str),
        ("sets", "jobs", str),
        ("VMs", "vms", str),
        ("window", "backup_window_s", lambda v: f"{v:,.0f} s"),
        ("read", "bytes_read", lambda v: f"{v / 2**30:,.1f} GiB"),
        ("stored", "target_bytes", lambda v: f"{v / 2**30:,.1f} GiB"),
        ("diff area peak", "diff_area_peak_bytes", lambda v: f"{v / 2**30:,.2f} GiB"),
        ("redirected", "redirected_bytes", lambda v: f"{v / 2**30:,.2f} GiB"),
        ("frozen", "vms_frozen", str),
        ("paused", "vms_paused", str),
        ("failures", "failures", str),
    ]
    for head, _, _ in cols:
        t.add_column(head, justify="right" if head != "backup" else "left")
    for row in result.summary.iter_rows(named=True):
        t.add_row(*(fmt(row[key]) for _, key, fmt in cols))  # type: ignore[operator]
    return t


def materialized_table(result: RunResult) -> Table:
    """What the real files did beside what the model said (the invariant), and the backups."""
    assert result.backups is not None
    assert result.invariant is not None
    t = Table(title="materialized run: model vs real volumes")
    for head in ("CSV", "chunks copied (model)", "(real)", "diff-area peak (model)", "(real)"):
        t.add_column(head, justify="left" if head == "CSV" else "right")
    for row in result.invariant.iter_rows(named=True):
        t.add_row(
            row["csv"],
            f"{row['chunks_copied']:,}",
            f"{row['real_chunks_copied']:,}",
            f"{row['peak_diff_area_bytes'] / 2**20:,.1f} MiB",
            f"{row['real_peak_diff_area_bytes'] / 2**20:,.1f} MiB",
        )
    b = result.backups.filter(pl.col("committed"))
    vms = result.vms.filter(pl.col("real_bytes_read").is_not_null())
    same_bytes = int((vms["bytes_read"] == vms["real_bytes_read"]).sum())
    same_chunks = int((vms["chunks_copied"] == vms["real_chunks_copied"]).sum())
    incr = b.filter(pl.col("kind") == "incremental").height
    checks = b.filter(pl.col("kind") != "incremental")["qemu_img_check"].drop_nulls()
    t.caption = (
        f"{b.height} backup files ({incr} incremental) in {result.materialized}/backups, "
        f"{int(b['verified'].sum())} verified against the snapshot; qemu-img check ok: "
        f"{int((checks == 'ok').sum())}/{checks.len()} non-differencing; per VM, bytes read "
        f"equal: {same_bytes}/{vms.height}, chunks copied equal: {same_chunks}/{vms.height}"
    )
    return t


def run(args: argparse.Namespace) -> int:
    schedule = Schedule(
        requester=args.requester,
        per_node=args.per_node,
        per_csv=args.per_csv,
        streams_per_node=args.streams,
        batch_vms=args.batch_vms,
    )
    console = Console() if sys.stdout.isatty() else Console(width=160)
    kwargs: dict[str, Any] = dict(
        vms=args.vms,
        fraction=args.fraction,
        include=args.include,
        exclude=args.exclude,
        schedule=schedule,
        interval_s=args.interval,
        materialize=args.materialize,
        check_files=args.qemu_check,
        engine=args.engine,
    )
    try:
        if args.quiet:
            result = run_backups(args.scenario, args.backup, **kwargs)
        else:
            with View() as view:
                # The scenario first (quick), so the first line comes before the heavy steps.
                sc = load_scenario(args.scenario)
                watch = RunWatcher(view, sc, args.backup)
                result = run_backups(sc, args.backup, progress=watch, **kwargs)
    except (ValueError, KeyError) as exc:
        if isinstance(exc, VssimError):
            raise
        raise VssimError(str(exc).strip("'\"")) from None
    for w in result.warnings:
        console.print(f"[bold yellow]warning[/]: {w}", markup=True, highlight=False)
    console.print(summary_table(result))
    for note in result.beyond_limits:
        console.print(f"[bold yellow]note[/]: {note}")
    for note in result.capacity_notes():
        console.print(f"[bold red]capacity[/]: {note}", markup=True, highlight=False)
    if result.engine == Engine.ESTIMATE:
        console.print(f"estimated (closed form, no write simulated) in {result.wall_s:.1f} s")
    else:
        console.print(
            f"{result.writes_simulated:,} guest writes simulated in {result.wall_s:.1f} s"
        )
    if result.materialized is not None:
        console.print(materialized_table(result))
    if args.out:
        paths = result.write_parquet(args.out)
        console.print("written: " + ", ".join(str(p) for p in paths))
    return 0
