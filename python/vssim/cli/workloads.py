"""``vssim workloads``: every workload class's figures as vssim runs them — its rates and mix,
the daily change it is calibrated to beside what a day on the exact engine changes, its growth
and its freeze (:mod:`vssim.scale.workload_figures`; the README's calibration table)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from vssim.scale.workload_figures import measure
from vssim.scenario.workload_classes import CLASSES
from vssim.units import GiB, MiB


def register(sub: Any) -> None:
    p = sub.add_parser(
        "workloads",
        help="the workload classes' figures, each measured for a day on the exact engine",
    )
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours to measure")
    p.add_argument("classes", nargs="*", choices=[[], *CLASSES], help="classes (default: all)")
    p.set_defaults(handler=run)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def run(args: argparse.Namespace) -> int:
    names = args.classes or list(CLASSES)
    t = Table(title=f"workload classes, one VM each for {args.hours:g} h on the exact engine")
    for col in (
        "class",
        "disk (data)",
        "write IOPS",
        "reads",
        "mean I/O",
        "daily change: target",
        "closed form",
        "measured",
        "hot spot",
        "VHDX growth",
        "memory",
        "freeze median",
    ):
        t.add_column(col, justify="left" if col == "class" else "right")
    for name in names:
        f = measure(name, args.hours * 3600.0)
        w = f.workload
        hot = (
            f"{100 * f.hot_fraction:.2f} % ← {100 * (f.hot_share or 0):.1f} %"
            if f.hot_fraction is not None
            else "—"
        )
        t.add_row(
            name,
            f"{f.disk_size / GiB:g} GiB ({f.allocated / GiB:g})",
            f"{w.write_iops:g}",
            f"{100 * f.read_share:.1f} %",
            f"{f.mean_size / 1024:.1f} KiB",
            _pct(f.target),
            _pct(f.closed_form),
            _pct(f.measured),
            hot,
            f"{f.file_growth / MiB:.0f} MiB",
            f"{w.memory_bytes / GiB:g} GiB",
            f"{f.freeze_median_s:.1f} s",
        )
    Console(width=200).print(t)
    print(
        "daily change: change-tracking blocks (64 KiB) written in the time over the blocks of the "
        "disk's data; hot spot: its share of the data ← the share of writes landing in it."
    )
    return 0
