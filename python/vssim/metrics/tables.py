"""The result tables (:data:`~vssim.metrics.schemas.SCHEMAS`) from a run's plain records
(:mod:`vssim.sim.records`): one builder per table, :func:`build_tables` for all.

A set's freeze figures come from its timeline's typed records (:class:`~vssim.vss.timeline.
PhaseKind` and the call each step carries out), never from their words:

* the set's **freeze window** runs from the first writer's Freeze to the last writer's Thaw;
* a frozen VM's **freeze** is its guest writers' freeze (seed step ④: prepare, freeze and the
  guest's flush; ``guest_freeze_s``) plus the set's flush-and-hold — from the flush's start to
  the end of the last CommitSnapshots step, the time the host holds the VM's writes
  (``write_hold_s``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import Any

import polars as pl

from vssim.metrics.schemas import SCHEMAS
from vssim.sim.records import BackupRecord, RunRecords, SetRecord
from vssim.vss.enums import hresult_name
from vssim.vss.profile_limits import beyond_supported
from vssim.vss.provider_state import ProviderCall
from vssim.vss.timeline import SCHEMA as TIMELINE_SCHEMA
from vssim.vss.timeline import PhaseKind, Record
from vssim.vss.writer_state import WriterEvent

Columns = dict[str, list[Any]]


def _frame(name: str, rows: Columns) -> pl.DataFrame:
    schema = SCHEMAS[name]
    return pl.DataFrame({k: rows.get(k, []) for k in schema}, schema=schema)


def _cols(name: str) -> Columns:
    return {k: [] for k in SCHEMAS[name]}


def _append(t: Columns, row: dict[str, Any]) -> None:
    for k, v in row.items():
        t[k].append(v)


def _sets(run: RunRecords) -> Iterator[tuple[BackupRecord, int, SetRecord]]:
    """Every snapshot set of the run with its backup and its job number (0, 1 … across the run,
    in the order the sets started)."""
    job = 0
    for rec in run.backups:
        for s in rec.sets:
            yield rec, job, s
            job += 1


def _span(s: SetRecord, first: Callable[[Record], bool], last: Callable[[Record], bool]) -> float:
    """Seconds from the first ``first`` record's start to the last ``last`` record's end."""
    records = s.result.timeline.records
    starts = [r.start for r in records if first(r)]
    ends = [r.end for r in records if last(r)]
    return max(ends) - min(starts) if starts and ends else 0.0


def freeze_window(s: SetRecord) -> float:
    """The set's freeze window: the writers' first Freeze to their last Thaw."""
    return _span(
        s,
        lambda r: r.kind is PhaseKind.WRITER and r.call is WriterEvent.FREEZE,
        lambda r: r.kind is PhaseKind.WRITER and r.call is WriterEvent.THAW,
    )


def held_window(s: SetRecord) -> float:
    """The set's flush-and-hold: the flush's start to the end of its last commit step."""
    return _span(
        s,
        lambda r: r.kind is PhaseKind.FLUSH_AND_HOLD,
        lambda r: r.kind is PhaseKind.PROVIDER and r.call is ProviderCall.COMMIT_SNAPSHOTS,
    )


def guest_freeze(s: SetRecord) -> dict[str, float]:
    """Per VM, how long its guest writers froze (seed step ④; the last such step counts)."""
    return {
        r.vm: r.duration
        for r in s.result.timeline.records
        if r.kind is PhaseKind.GUEST_FREEZE and r.vm is not None
    }


def _bytes_read(s: SetRecord) -> int:
    return sum(c.bytes_read for c in s.vms)


def _stored(run: RunRecords, nbytes: int) -> int:
    """Bytes the backup target stores for ``nbytes`` read (after its compression)."""
    return round(nbytes / run.scenario.target.compression)


def vms_table(run: RunRecords) -> pl.DataFrame:
    """One row per VM and backup."""
    t = _cols("vms")
    cap = run.capacity
    for rec, job, s in _sets(run):
        r = s.result
        held = held_window(s)
        guest = guest_freeze(s)
        frozen = set(r.frozen_vms)
        for c in s.vms:
            vm, name = c.vm, c.vm.name
            result = s.vm_result(c)
            row = {
                "backup": rec.index,
                "kind": rec.kind,
                "job": job,
                "vm": name,
                "vm_guid": str(vm.guid),
                "node": vm.node,
                "csv": vm.csv,
                "requester": s.requester,
                "online": vm.online_backup,
                "frozen": name in frozen,
                "incremental": c.incremental,
                "freeze_s": guest.get(name, 0.0) + held if name in frozen else 0.0,
                "downtime_s": r.downtime.get(name, 0.0),
                "guest_freeze_s": guest.get(name, 0.0) if name in frozen else 0.0,
                "write_hold_s": held if name in frozen else 0.0,
                "snapshot_s": c.snapshot_at,
                "copy_start_s": c.copy_start,
                "copy_end_s": c.copy_end,
                "bytes_read": c.bytes_read,
                "bytes_written": c.bytes_written,
                "chunks_copied": c.chunks_copied,
                "blocks_changed": c.blocks_changed,
                "real_bytes_read": c.real_bytes_read,
                "real_chunks_copied": c.real_chunks_copied,
                "ok": result == "S_OK",
                "result": result,
                "target_bytes": _stored(run, c.bytes_read),
                "paused_critical": cap.paused_at.get(name, float("inf")) <= rec.end,
                "paused_s": cap.paused_s(name, rec.start, rec.end),
            }
            _append(t, row)
    return _frame("vms", t)


def csvs_table(run: RunRecords) -> pl.DataFrame:
    """One row per CSV snapshot (a CSV in a snapshot set). Its capacity columns look at the set's
    span: the warning and the first pause if they came by its end, the CSV's VMs paused by then
    and their paused seconds within it."""
    t = _cols("csvs")
    cap = run.capacity
    # When each CSV's paused VMs paused, in the CSV's VM order (most CSVs have none: looked up
    # once, not per set).
    paused_at = {
        csv: [cap.paused_at[vm.name] for vm in vms if vm.name in cap.paused_at]
        for csv, vms in run.scenario.vms_by_csv.items()
    }
    for rec, job, s in _sets(run):
        r = s.result
        for cs in s.csvs:
            name = cs.csv.name
            paused = [at for at in paused_at[name] if at <= r.end]
            low = cap.low_space_at.get(name)
            copy, life = cs.copy, cs.life
            created = life.created if life else (copy.created if copy and copy.device else None)
            deleted = life.deleted if life else (r.end if created is not None else None)
            row = {
                "backup": rec.index,
                "job": job,
                "csv": cs.csv.name,
                "provider": str(cs.csv.provider),
                "coordinator": copy.service_machine if copy else "",
                "snapshot": None if copy is None else copy.backend_handle,
                "created_s": created,
                "deleted_s": deleted,
                "lifetime_s": (
                    deleted - created if created is not None and deleted is not None else None
                ),
                "deleted_by": life.deleted_by if life else None,
                "diff_area_peak_bytes": life.diff_area_peak if life else 0,
                "chunks_copied": life.chunks_copied if life else 0,
                "redirected_s": cs.redirected_s,
                "redirected_bytes": r.redirected_bytes.get(cs.csv.name, 0),
                "vms": sum(1 for c in s.vms if c.vm.csv == cs.csv.name),
                "diff_area_on_volume": cs.csv.diff_area_on_volume,
                "free_low_bytes": life.free_low if life else None,
                "low_space_s": low if low is not None and low <= r.end else None,
                "paused_critical_s": min(paused, default=None),
                "vms_paused": len(paused),
                "paused_vm_s": sum(max(0.0, r.end - max(r.start, p)) for p in paused),
            }
            _append(t, row)
    return _frame("csvs", t)


def _union(intervals: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def nodes_table(run: RunRecords) -> pl.DataFrame:
    """One row per node and backup. The NIC counters run over the whole run: one figure per
    node, on the last backup's rows."""
    t = _cols("nodes")
    for rec in run.backups:
        spans: dict[str, list[tuple[float, float]]] = {}
        vms: dict[str, int] = {}
        read: dict[str, int] = {}
        for s in rec.sets:
            spans.setdefault(s.requester, []).append((s.result.start, s.result.end))
            vms[s.requester] = vms.get(s.requester, 0) + len(s.vms)
            read[s.requester] = read.get(s.requester, 0) + _bytes_read(s)
        last = rec is run.backups[-1]
        for n in run.scenario.nodes:
            row = {
                "backup": rec.index,
                "node": n.name,
                "jobs": len(spans.get(n.name, [])),
                "vms": vms.get(n.name, 0),
                "bytes_read": read.get(n.name, 0),
                "nic_bytes": run.nic_bytes[n.name] if last else 0,
                "nic_busy_s": run.nic_busy_s[n.name] if last else 0.0,
                "busy_s": _union(spans.get(n.name, [])),
            }
            _append(t, row)
    return _frame("nodes", t)


def jobs_table(run: RunRecords) -> pl.DataFrame:
    """One row per snapshot set."""
    t = _cols("jobs")
    for rec, job, s in _sets(run):
        r = s.result
        ok_vms = sum(1 for c in s.vms if s.vm_result(c) == "S_OK")
        row = {
            "backup": rec.index,
            "kind": rec.kind,
            "job": job,
            "label": s.job.label,
            "requester": s.requester,
            "csvs": ",".join(c.name for c in s.job.volumes),
            "vms": len(s.vms),
            "start_s": r.start,
            "end_s": r.end,
            "window_s": r.end - r.start,
            "freeze_window_s": freeze_window(s),
            "ok": r.ok,
            "result": hresult_name(r.hresult) if not r.ok else "S_OK",
            "successes": ok_vms,
            "failures": len(s.vms) - ok_vms,
            "bytes_read": _bytes_read(s),
            "redirected_bytes": sum(r.redirected_bytes.values()),
            "network_bytes": r.network_bytes,
        }
        _append(t, row)
    return _frame("jobs", t)


def phases_table(run: RunRecords) -> pl.DataFrame:
    """The protocol timeline of every snapshot set, in simulated-time order."""
    t = _cols("phases")
    # One tuple of the record's columns a step (the schema has several, so a tuple always).
    fields = attrgetter(*TIMELINE_SCHEMA)
    columns = [t[k] for k in TIMELINE_SCHEMA]
    for rec, job, s in _sets(run):
        steps = s.result.timeline.ordered()
        t["backup"].extend([rec.index] * len(steps))
        t["job"].extend([job] * len(steps))
        if steps:
            for column, values in zip(columns, zip(*map(fields, steps), strict=True), strict=True):
                column.extend(values)
    return _frame("phases", t)


def summary_table(run: RunRecords) -> pl.DataFrame:
    """One row per backup: the figures a planner compares."""
    t = _cols("summary")
    beyond = "; ".join(beyond_supported(run.scenario))
    for rec in run.backups:
        read = redirected = network = chunks = frozen = failures = peak = 0
        down = 0.0
        cap = run.capacity
        paused = [vm for vm, at in cap.paused_at.items() if at <= rec.end]
        for s in rec.sets:
            r = s.result
            read += _bytes_read(s)
            redirected += sum(r.redirected_bytes.values())
            network += r.network_bytes
            chunks += sum(c.chunks_copied for c in s.vms)
            frozen += len(set(r.frozen_vms))
            failures += s.failures
            down += sum(r.downtime.values())
            for cs in s.csvs:
                peak = max(peak, cs.life.diff_area_peak if cs.life else 0)
        row = {
            "backup": rec.index,
            "profile": str(run.scenario.os),
            "strategy": rec.kind,
            "jobs": len(rec.sets),
            "vms": sum(len(s.vms) for s in rec.sets),
            "start_s": rec.start,
            "end_s": rec.end,
            "backup_window_s": rec.end - rec.start,
            "diff_area_peak_bytes": peak,
            "bytes_read": read,
            "redirected_bytes": redirected,
            "network_bytes": network,
            "chunks_copied": chunks,
            "vms_frozen": frozen,
            "failures": failures,
            "downtime_s": down,
            "beyond_supported_limits": beyond,
            "target_bytes": _stored(run, read),
            "vms_paused": len(paused),
            "paused_vm_s": sum(cap.paused_s(vm, rec.start, rec.end) for vm in paused),
            "engine": run.engine,
        }
        _append(t, row)
    return _frame("summary", t)


#: The builder of each table of :data:`SCHEMAS`.
BUILDERS: dict[str, Callable[[RunRecords], pl.DataFrame]] = {
    "vms": vms_table,
    "csvs": csvs_table,
    "nodes": nodes_table,
    "jobs": jobs_table,
    "phases": phases_table,
    "summary": summary_table,
}
assert BUILDERS.keys() == SCHEMAS.keys()


def build_tables(run: RunRecords) -> dict[str, pl.DataFrame]:
    """Every table of a finished run."""
    return {name: build(run) for name, build in BUILDERS.items()}
