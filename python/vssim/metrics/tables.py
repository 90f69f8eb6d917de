"""The result tables of a modelled run, as polars DataFrames with fixed schemas.

* ``vms`` — one row per VM and backup: freeze time, downtime, bytes read, copy-on-write chunks
  its writes caused while its snapshot lived, result;
* ``csvs`` — one row per CSV snapshot (a CSV in a snapshot set): lifetime, diff-area peak,
  chunks copied, redirected bytes;
* ``nodes`` — one row per node and backup: bytes over its NIC, busy time;
* ``jobs`` — one row per snapshot set: window, successes, failures;
* ``phases`` — the protocol timeline of every snapshot set;
* ``summary`` — one row per backup: the figures a planner compares.

Times are simulated seconds from the start of the run. The README's "Result tables" section
documents every column; :data:`SCHEMAS` is its single home in code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from vssim.vss.enums import hresult_name
from vssim.vss.timeline import SCHEMA as TIMELINE_SCHEMA

if TYPE_CHECKING:
    from vssim.scale.fair_share_links import SharedResources
    from vssim.scale.model_cluster import ModelClusterBackend
    from vssim.scale.modelled_path import ScaleBackupRun
    from vssim.scale.runner import BackupRecord
    from vssim.scenario import Scenario

S, INT, F, B = pl.Utf8, pl.Int64, pl.Float64, pl.Boolean

#: The protocol's flush-and-hold step (writes held from here to the end of CommitSnapshots).
FLUSH_EVENT = "flush-and-hold: file systems flushed, writes held"

SCHEMAS: dict[str, dict[str, Any]] = {
    "vms": {
        "backup": INT,
        "kind": S,
        "job": INT,
        "vm": S,
        "vm_guid": S,
        "node": S,
        "csv": S,
        "requester": S,
        "online": B,
        "frozen": B,
        "incremental": B,
        "freeze_s": F,
        "downtime_s": F,
        "snapshot_s": F,
        "copy_start_s": F,
        "copy_end_s": F,
        "bytes_read": INT,
        "bytes_written": INT,
        "chunks_copied": INT,
        "blocks_changed": INT,
        "real_bytes_read": INT,
        "real_chunks_copied": INT,
        "ok": B,
        "result": S,
    },
    "csvs": {
        "backup": INT,
        "job": INT,
        "csv": S,
        "provider": S,
        "coordinator": S,
        "snapshot": INT,
        "created_s": F,
        "deleted_s": F,
        "lifetime_s": F,
        "deleted_by": S,
        "diff_area_peak_bytes": INT,
        "chunks_copied": INT,
        "redirected_s": F,
        "redirected_bytes": INT,
        "vms": INT,
    },
    "nodes": {
        "backup": INT,
        "node": S,
        "jobs": INT,
        "vms": INT,
        "bytes_read": INT,
        "nic_bytes": INT,
        "nic_busy_s": F,
        "busy_s": F,
    },
    "jobs": {
        "backup": INT,
        "kind": S,
        "job": INT,
        "label": S,
        "requester": S,
        "csvs": S,
        "vms": INT,
        "start_s": F,
        "end_s": F,
        "window_s": F,
        "freeze_window_s": F,
        "ok": B,
        "result": S,
        "successes": INT,
        "failures": INT,
        "bytes_read": INT,
        "redirected_bytes": INT,
        "network_bytes": INT,
    },
    "phases": {"backup": INT, "job": INT, **TIMELINE_SCHEMA},
    "summary": {
        "backup": INT,
        "profile": S,
        "strategy": S,
        "jobs": INT,
        "vms": INT,
        "start_s": F,
        "end_s": F,
        "backup_window_s": F,
        "diff_area_peak_bytes": INT,
        "bytes_read": INT,
        "redirected_bytes": INT,
        "network_bytes": INT,
        "chunks_copied": INT,
        "vms_frozen": INT,
        "failures": INT,
        "downtime_s": F,
    },
}


def _frame(name: str, rows: dict[str, list[Any]]) -> pl.DataFrame:
    schema = SCHEMAS[name]
    return pl.DataFrame({k: rows.get(k, []) for k in schema}, schema=schema)


def _cols(name: str) -> dict[str, list[Any]]:
    return {k: [] for k in SCHEMAS[name]}


def _window(run: ScaleBackupRun, first: str, last: str) -> float:
    """Seconds from the first ``first`` record's start to the last ``last`` record's end."""
    starts = [r.start for r in run.tl.records if r.event == first]
    ends = [r.end for r in run.tl.records if r.event == last]
    return max(ends) - min(starts) if starts and ends else 0.0


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


def build_tables(
    sc: Scenario,
    records: Sequence[BackupRecord],
    backend: ModelClusterBackend,
    res: SharedResources,
) -> dict[str, pl.DataFrame]:
    """The six tables of a finished run."""
    vms, csvs, nodes, jobs, phases, summary = (
        _cols(n) for n in ("vms", "csvs", "nodes", "jobs", "phases", "summary")
    )
    job_id = 0
    for rec in records:
        node_jobs: dict[str, list[tuple[float, float]]] = {}
        node_vms: dict[str, int] = {}
        node_read: dict[str, int] = {}
        b_read = b_redir = b_net = b_chunks = b_frozen = b_fail = 0
        b_peak, b_down = 0, 0.0
        for run in rec.runs:
            r = run.result
            freeze_window = _window(run, "Freeze", "Thaw")
            held = _window(
                run, "flush-and-hold: file systems flushed, writes held", "CommitSnapshots"
            )
            guest: dict[str, float] = {}
            for t in run.tl.records:
                if t.role.startswith("guest VSS (") and t.event.startswith("guest writers"):
                    guest[t.role[11:-1]] = t.end - t.start
            frozen = set(r.frozen_vms)
            ok_vms = 0
            read = 0
            for name, c in run.vm_copies.items():
                vm = c.vm
                result = run.vm_result(c)
                is_ok = result == "S_OK"
                ok_vms += is_ok
                read += c.bytes_read
                chunks = c.chunks_at[1] - c.chunks_at[0] if c.snapshot_at is not None else 0
                written = c.written_at[1] - c.written_at[0] if c.snapshot_at is not None else 0
                b_chunks += chunks
                vms["backup"].append(rec.index)
                vms["kind"].append(str(rec.spec.kind))
                vms["job"].append(job_id)
                vms["vm"].append(name)
                vms["vm_guid"].append(str(vm.guid))
                vms["node"].append(vm.node)
                vms["csv"].append(vm.csv)
                vms["requester"].append(run.req)
                vms["online"].append(vm.online_backup)
                vms["frozen"].append(name in frozen)
                vms["incremental"].append(c.incremental)
                vms["freeze_s"].append(guest.get(name, 0.0) + held if name in frozen else 0.0)
                vms["downtime_s"].append(r.downtime.get(name, 0.0))
                vms["snapshot_s"].append(c.snapshot_at)
                vms["copy_start_s"].append(c.copy_start)
                vms["copy_end_s"].append(c.copy_end)
                vms["bytes_read"].append(c.bytes_read)
                vms["bytes_written"].append(written)
                vms["chunks_copied"].append(chunks)
                vms["blocks_changed"].append(c.blocks_changed)
                vms["real_bytes_read"].append(c.real_bytes_read)
                real = c.real_chunks_at[1] - c.real_chunks_at[0]
                vms["real_chunks_copied"].append(
                    real if backend.materialized and c.snapshot_at is not None else None
                )
                vms["ok"].append(is_ok)
                vms["result"].append(result)
            for csv in run.job.volumes:
                copy = run.copies.get(csv.name)
                h = None if copy is None else copy.backend_handle
                life = None if h is None else backend.lives.get((csv.name, h))
                csvs["backup"].append(rec.index)
                csvs["job"].append(job_id)
                csvs["csv"].append(csv.name)
                csvs["provider"].append(str(csv.provider))
                csvs["coordinator"].append(copy.service_machine if copy else "")
                csvs["snapshot"].append(h)
                created = life.created if life else (copy.created if copy and copy.device else None)
                csvs["created_s"].append(created)
                deleted = life.deleted if life else (r.end if created is not None else None)
                csvs["deleted_s"].append(deleted)
                lifetime = (
                    deleted - created if created is not None and deleted is not None else None
                )
                csvs["lifetime_s"].append(lifetime)
                csvs["deleted_by"].append(life.deleted_by if life else None)
                peak = life.diff_area_peak if life else 0
                b_peak = max(b_peak, peak)
                csvs["diff_area_peak_bytes"].append(peak)
                csvs["chunks_copied"].append(life.chunks_copied if life else 0)
                csvs["redirected_s"].append(run.redirect_windows.get(csv.name, 0.0))
                csvs["redirected_bytes"].append(r.redirected_bytes.get(csv.name, 0))
                csvs["vms"].append(sum(1 for c in run.vm_copies.values() if c.vm.csv == csv.name))
            redirected = sum(r.redirected_bytes.values())
            jobs["backup"].append(rec.index)
            jobs["kind"].append(str(rec.spec.kind))
            jobs["job"].append(job_id)
            jobs["label"].append(run.job.label)
            jobs["requester"].append(run.req)
            jobs["csvs"].append(",".join(c.name for c in run.job.volumes))
            jobs["vms"].append(len(run.vm_copies))
            jobs["start_s"].append(r.start)
            jobs["end_s"].append(r.end)
            jobs["window_s"].append(r.end - r.start)
            jobs["freeze_window_s"].append(freeze_window)
            jobs["ok"].append(r.ok)
            jobs["result"].append(hresult_name(r.hresult) if not r.ok else "S_OK")
            jobs["successes"].append(ok_vms)
            jobs["failures"].append(len(run.vm_copies) - ok_vms)
            jobs["bytes_read"].append(read)
            jobs["redirected_bytes"].append(redirected)
            jobs["network_bytes"].append(r.network_bytes)
            for t in run.tl.ordered():
                phases["backup"].append(rec.index)
                phases["job"].append(job_id)
                for k in TIMELINE_SCHEMA:
                    phases[k].append(getattr(t, k))
            node_jobs.setdefault(run.req, []).append((r.start, r.end))
            node_vms[run.req] = node_vms.get(run.req, 0) + len(run.vm_copies)
            node_read[run.req] = node_read.get(run.req, 0) + read
            b_read += read
            b_redir += redirected
            b_net += r.network_bytes
            b_frozen += len(frozen)
            b_fail += len(run.vm_copies) - ok_vms
            b_down += sum(r.downtime.values())
            job_id += 1
        for n in sc.nodes:
            nodes["backup"].append(rec.index)
            nodes["node"].append(n.name)
            nodes["jobs"].append(len(node_jobs.get(n.name, [])))
            nodes["vms"].append(node_vms.get(n.name, 0))
            nodes["bytes_read"].append(node_read.get(n.name, 0))
            nodes["nic_bytes"].append(0)
            nodes["nic_busy_s"].append(0.0)
            nodes["busy_s"].append(_union(node_jobs.get(n.name, [])))
        summary["backup"].append(rec.index)
        summary["profile"].append(str(sc.os))
        summary["strategy"].append(str(rec.spec.kind))
        summary["jobs"].append(len(rec.runs))
        summary["vms"].append(sum(len(r.vm_copies) for r in rec.runs))
        summary["start_s"].append(rec.start)
        summary["end_s"].append(rec.end)
        summary["backup_window_s"].append(rec.end - rec.start)
        summary["diff_area_peak_bytes"].append(b_peak)
        summary["bytes_read"].append(b_read)
        summary["redirected_bytes"].append(b_redir)
        summary["network_bytes"].append(b_net)
        summary["chunks_copied"].append(b_chunks)
        summary["vms_frozen"].append(b_frozen)
        summary["failures"].append(b_fail)
        summary["downtime_s"].append(b_down)
    out = {
        "vms": _frame("vms", vms),
        "csvs": _frame("csvs", csvs),
        "nodes": _frame("nodes", nodes),
        "jobs": _frame("jobs", jobs),
        "phases": _frame("phases", phases),
        "summary": _frame("summary", summary),
    }
    # NIC counters run over the whole run: one figure per node, on the last backup's rows.
    if records:
        from vssim.scale.fair_share_links import nic_link

        last = records[-1].index
        nic = {n.name: res.nic_bytes[n.name] for n in sc.nodes}
        busy = {n.name: res.link_busy[nic_link(n.name)] for n in sc.nodes}
        out["nodes"] = out["nodes"].with_columns(
            pl.when(pl.col("backup") == last)
            .then(pl.col("node").replace_strict(nic, return_dtype=pl.Int64))
            .otherwise(pl.lit(0))
            .alias("nic_bytes"),
            pl.when(pl.col("backup") == last)
            .then(pl.col("node").replace_strict(busy, return_dtype=pl.Float64))
            .otherwise(pl.lit(0.0))
            .alias("nic_busy_s"),
        )
    return out
