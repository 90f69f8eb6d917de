"""``vssim plan --verify N``: the estimate checked against the per-write engine on N VMs.

How it works. A VM's figures depend only on its own writes and its CSV's snapshot epochs (when
each snapshot was made and deleted), on when it ran, and on when its change tracking was reset
— not on the other VMs. So a run on the estimate keeps what it did to the cluster and what it
read from it (:class:`~vssim.scale.model_cluster.Event`); for a sample of VMs, this module builds
the per-write engine's cluster with only their disks (each CSV they are on, without a diff-area
limit: the estimate's deletions are replayed as deletions at the same instants), replays the
events in time order, and reads the exact counters where the run read the estimate's. The
result, one row per read: the VM, the figure, when, the estimate's value and the exact one.

Counters to date (``chunks_copied``, ``bytes_written``) are kept as the increments between
consecutive reads of the same disk (a set's copies, from its point in time to its release; the
writes between backups); the others (``file_size``, ``changed_bytes``, ``changed_blocks``) as
read. :func:`largest_differences` compares each VM's total over the run (one short interval's
count is mostly its own sampling noise).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import polars as pl

from vssim import engine
from vssim.scale.model_cluster import Event, ModelClusterBackend
from vssim.scenario import Scenario, Vm
from vssim.scenario.engine_streams import stream_seed, workload_spec

#: The figures a verification compares, by the event that reads them: what the report calls it.
FIGURES = {
    "chunks_copied": "chunks copied (copy-on-write)",
    "bytes_written": "guest bytes written",
    "file_size": "bytes a full backup reads (VHDX file)",
    "changed_bytes": "bytes an incremental reads (changed blocks)",
    "changed_blocks": "changed blocks",
}
#: Counters read to date, compared as increments.
TO_DATE = ("chunks_copied", "bytes_written")

VERIFY_SCHEMA = {
    "vm": pl.String,
    "figure": pl.String,
    "at_s": pl.Float64,
    "estimate": pl.Float64,
    "exact": pl.Float64,
}


def sample_vms(sc: Scenario, n: int, seed: int | None = None) -> list[Vm]:
    """``n`` of the scenario's VMs (all of them if it has fewer), drawn with the scenario's seed
    (so a plan checks the same VMs every time)."""
    vms = sorted(sc.vms, key=lambda v: v.name)
    rng = random.Random(sc.seed if seed is None else seed)
    return sorted(rng.sample(vms, min(n, len(vms))), key=lambda v: v.name)


def replay(sc: Scenario, backend: ModelClusterBackend, vms: Sequence[Vm]) -> pl.DataFrame:
    """The exact engine's figures for ``vms`` where the run (``backend``, which recorded its
    events) read the estimate's: one row per read (:data:`VERIFY_SCHEMA`)."""
    if backend.events is None:
        raise ValueError("the run kept no events: call backend.record_events() before it")
    model = engine.ModelCluster()
    csv_map: dict[int, int] = {}
    disk_map: dict[int, int] = {}
    disk_name: dict[int, str] = {}
    for vm in vms:
        cid = backend.csv_id[vm.csv]
        if cid not in csv_map:
            csv_map[cid] = model.add_csv(sc.csvs[cid].size)
        spec = workload_spec(vm.workload)
        for j, (d, est) in enumerate(zip(vm.disks, backend.disks[vm.name], strict=True)):
            exact = model.add_vm(
                csv_map[cid],
                d.virtual_size,
                spec,
                allocated=d.allocated_size,
                seed=stream_seed(sc.seed, vm, j),
            )
            if not vm.running:
                model.set_running(exact, False)
            disk_map[est] = exact
            disk_name[est] = vm.name
    n = model.vm_count
    counted = ("writes", "bytes_written", "chunks_copied")
    totals = {k: np.zeros(n, dtype=np.float64) for k in counted}
    csv_t = dict.fromkeys(csv_map.values(), 0.0)
    handles: dict[tuple[int, int], int] = {}
    last: dict[tuple[int, str], tuple[float, float]] = {}
    rows: dict[str, list[object]] = {k: [] for k in VERIFY_SCHEMA}

    def advance(csv: int, t: float) -> None:
        if csv_t[csv] < t:
            r = model.advance_csvs([csv], [csv_t[csv]], t)
            for k, v in totals.items():
                v[r["disks"]] += r[k].astype(np.float64)
            csv_t[csv] = t

    events = sorted(
        (e for e in backend.events if e.csv in csv_map and (e.disk < 0 or e.disk in disk_map)),
        key=lambda e: e.t,
    )
    for e in events:
        cid = csv_map[e.csv]
        advance(cid, e.t)
        _apply(model, e, cid, disk_map, handles, totals, last, rows, disk_name)
    return pl.DataFrame(rows, schema=VERIFY_SCHEMA)


def _apply(
    model: engine.ModelCluster,
    e: Event,
    cid: int,
    disk_map: dict[int, int],
    handles: dict[tuple[int, int], int],
    totals: dict[str, np.ndarray],
    last: dict[tuple[int, str], tuple[float, float]],
    rows: dict[str, list[object]],
    disk_name: dict[int, str],
) -> None:
    """One event on the exact cluster; a read adds its row."""
    if e.op == "snapshot":
        handles[(e.csv, int(e.value))] = model.snapshot(cid)
        return
    if e.op == "delete":
        h = handles.pop((e.csv, int(e.value)), None)
        if h is not None and model.is_live(cid, h):
            model.delete_snapshot(cid, h)
        return
    d = disk_map[e.disk]
    if e.op == "running":
        model.set_running(d, bool(e.value))
        return
    if e.op == "reset":
        model.reset_changes(d)
        return
    if e.op not in FIGURES:
        return
    if e.op in TO_DATE:
        exact_now = float(totals[e.op][d])
        est0, exact0 = last.get((e.disk, e.op), (0.0, 0.0))
        last[(e.disk, e.op)] = (e.value, exact_now)
        est, exact = e.value - est0, exact_now - exact0
    else:
        read = {
            "file_size": model.file_size,
            "changed_bytes": model.changed_bytes,
            "changed_blocks": model.changed_blocks,
        }[e.op]
        est, exact = e.value, float(read(d))
    rows["vm"].append(disk_name[e.disk])
    rows["figure"].append(e.op)
    rows["at_s"].append(e.t)
    rows["estimate"].append(est)
    rows["exact"].append(exact)


def largest_differences(frame: pl.DataFrame) -> pl.DataFrame:
    """Per figure: the VMs compared, the largest relative difference of one VM's total over the
    run (its reads summed: a counter's increments add up to its value at the last read), and the
    relative difference of all the sampled VMs' total (estimate − exact over exact; an exact
    total of 0 counts against 1)."""
    schema = {"figure": pl.String, "vms": pl.Int64, "largest": pl.Float64, "sum": pl.Float64}
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    rel = (pl.col("estimate") - pl.col("exact")) / pl.col("exact").abs().clip(lower_bound=1.0)
    per_vm = frame.group_by("figure", "vm").agg(pl.col("estimate").sum(), pl.col("exact").sum())
    largest = per_vm.group_by("figure").agg(
        pl.len().cast(pl.Int64).alias("vms"), rel.abs().max().alias("largest")
    )
    total = per_vm.group_by("figure").agg(pl.col("estimate").sum(), pl.col("exact").sum())
    return (
        largest.join(total.select("figure", rel.alias("sum")), on="figure")
        .with_columns(pl.col("figure").replace_strict(FIGURES, default=pl.col("figure")))
        .select(list(schema))
        .sort("figure")
    )
