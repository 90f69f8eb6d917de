"""``vssim demo``: the engine on a 4,000-VM cluster's write stream.

The demo shows the hot path the simulation is built on: 4,000 VMs of one workload class (by
default ``server``: 127 GiB dynamic VHDX disks with 40 GiB of data, 30 IOPS, 70 % reads, writes
calibrated to its 3 % daily change) on 16 Cluster Shared Volumes of 32 TiB;
one system-provider snapshot per CSV is held for a backup window while every VM keeps writing.
The engine generates every VM's writes, maps them through its VHDX block layout onto its CSV, and
counts what copy-on-write and changed-block tracking cost. The window runs in pieces of at most
:data:`~vssim.scale.runner.WINDOW_WRITES` guest writes (the engine holds a piece's writes at once;
the streams are keyed by time, so the sums are the same), and every option has its range.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import numpy as np

from vssim import engine
from vssim.cli.args import float_in, int_in, size_in
from vssim.errors import InvalidArgumentError
from vssim.scale.runner import WINDOW_WRITES
from vssim.scale.workload_figures import class_workload
from vssim.scenario.capacity import LOW_SPACE_WARNING_BYTES, PAUSED_CRITICAL_BYTES
from vssim.scenario.engine_streams import workload_spec
from vssim.scenario.limits import MAX_CSV_SIZE, MAX_DISK_SIZE
from vssim.scenario.model import MAX_VMS_PER_CLUSTER
from vssim.scenario.workload_classes import CLASSES, DEFAULT_CLASS
from vssim.units import GiB, MiB, TiB

#: The longest window the demo runs (model choice: a backup window longer than a day is not one).
MAX_WINDOW_S = 86_400.0
#: The most I/O operations per second a VM can ask of the engine's generator.
MAX_IOPS = 10_000_000.0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the engine on a 4,000-VM cluster's write stream")
    p.add_argument("--vms", type=int_in(1, MAX_VMS_PER_CLUSTER), default=4000)
    p.add_argument("--csvs", type=int_in(1, 64), default=16)
    p.add_argument(
        "--csv-size", type=size_in(1, MAX_CSV_SIZE), default=32 * TiB, help="bytes per CSV"
    )
    p.add_argument(
        "--class",
        dest="workload_class",
        choices=list(CLASSES),
        default=DEFAULT_CLASS,
        help=f"every VM's workload class (default {DEFAULT_CLASS}: its calibrated daily change, "
        "rate, mix and disk)",
    )
    p.add_argument(
        "--disk-size",
        type=size_in(1, MAX_DISK_SIZE),
        default=None,
        help="bytes per disk (default: the class's disk)",
    )
    p.add_argument(
        "--allocated",
        type=size_in(0, MAX_DISK_SIZE),
        default=None,
        help="allocated bytes per disk (default: the class's data)",
    )
    p.add_argument(
        "--iops",
        type=float_in(0.0, MAX_IOPS),
        default=None,
        help="I/O operations per second per VM, reads and writes (default: the class's)",
    )
    p.add_argument(
        "--window",
        type=float_in(1e-3, MAX_WINDOW_S, "seconds"),
        default=600.0,
        help=f"backup window, seconds (at most {MAX_WINDOW_S:,.0f})",
    )
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=2012)
    p.set_defaults(handler=run)


def advance_in_pieces(
    cluster: engine.ModelCluster, window: float, ops_per_s: float
) -> dict[str, np.ndarray[Any, Any]]:
    """``cluster.advance(0, window)`` in pieces of at most :data:`WINDOW_WRITES` operations,
    their per-VM counters summed and the VMs they paused (``paused_vm``) joined."""
    pieces = max(1, int(np.ceil(ops_per_s * window / WINDOW_WRITES)))
    total: dict[str, np.ndarray[Any, Any]] = {}
    for k in range(pieces):
        got = cluster.advance(window * k / pieces, window * (k + 1) / pieces)
        for key in ("writes", "reads", "chunks_copied", "blocks_allocated"):
            total[key] = total[key] + got[key] if key in total else got[key].copy()
        paused = got["paused_vm"]
        total["paused_vm"] = (
            np.concatenate([total["paused_vm"], paused]) if "paused_vm" in total else paused.copy()
        )
    return total


def run(args: argparse.Namespace) -> int:
    # The class's workload as a scenario VM of it gets it (calibrated to its daily change), so
    # the demo's copy-on-write and changed bytes are those of a plausible cluster, not of an
    # uncalibrated stream.
    workload = class_workload(args.workload_class)
    if args.iops is not None:
        workload = replace(workload, write_iops=args.iops * (1.0 - workload.read_fraction))
    class_disk, class_data = CLASSES[args.workload_class].disk
    disk_size = class_disk if args.disk_size is None else args.disk_size
    allocated = min(class_data, disk_size) if args.allocated is None else args.allocated
    if allocated > disk_size:
        raise InvalidArgumentError(
            f"--allocated {allocated}: expected at most --disk-size ({disk_size})"
        )
    iops = workload.iops
    cluster = engine.ModelCluster()
    for _ in range(args.csvs):
        cluster.add_csv(
            args.csv_size, warn_below=LOW_SPACE_WARNING_BYTES, pause_below=PAUSED_CRITICAL_BYTES
        )
    spec = workload_spec(workload)
    for vm in range(args.vms):
        cluster.add_vm(
            vm % args.csvs,
            disk_size,
            spec,
            allocated=allocated,
            seed=args.seed * 1_000_003 + vm,
        )
    print(
        f"vssim demo: {args.vms} VMs on {args.csvs} CSVs of {args.csv_size / TiB:.0f} TiB, "
        f"{args.workload_class} workload ({iops:g} IOPS, {workload.read_fraction:.0%} reads, "
        f"{disk_size / GiB:g} GiB disks with {allocated / GiB:g} GiB of data), "
        f"one snapshot per CSV held for {args.window:g} s"
    )
    for csv in range(args.csvs):
        cluster.snapshot(csv)
    started = time.perf_counter()
    window = advance_in_pieces(cluster, args.window, iops * args.vms)
    elapsed = time.perf_counter() - started
    writes = window["writes"]
    copied = window["chunks_copied"]
    print(
        f"{'CSV':>4} {'VMs':>5} {'writes':>12} {'chunks copied':>14} {'diff area':>12} "
        f"{'new blocks':>11} {'free':>10} {'paused':>7}"
    )
    paused = np.unique(window["paused_vm"].astype(int))
    for csv in range(args.csvs):
        mine = slice(csv, None, args.csvs)
        print(
            f"{csv + 1:>4} {len(writes[mine]):>5} {int(writes[mine].sum()):>12,} "
            f"{int(copied[mine].sum()):>14,} "
            f"{cluster.diff_area_bytes(csv) / GiB:>8,.1f} GiB "
            f"{int(window['blocks_allocated'][mine].sum()):>11,} "
            f"{cluster.free_bytes(csv) / GiB:>6,.0f} GiB "
            f"{int((paused % args.csvs == csv).sum()):>7,}"
        )
    changed = sum(cluster.changed_bytes(vm) for vm in range(args.vms))
    total = int(writes.sum())
    print(
        f"total: {total:,} writes ({int(window['reads'].sum()):,} reads) in "
        f"{elapsed:.2f} s of engine time = {total / elapsed / 1e6:.2f} M writes/s; "
        f"diff area {sum(cluster.diff_area_bytes(c) for c in range(args.csvs)) / GiB:,.1f} GiB; "
        f"an incremental backup would read {changed / GiB:,.1f} GiB "
        f"({changed / MiB / args.vms:,.0f} MiB per VM)"
    )
    return 0
