"""The result tables of a modelled run, as polars DataFrames with fixed schemas.

* ``vms`` — one row per VM and backup: freeze time, downtime, bytes read, copy-on-write chunks
  its writes caused while its snapshot lived, whether it was paused (Paused-Critical), result;
* ``csvs`` — one row per CSV snapshot (a CSV in a snapshot set): lifetime, diff-area peak,
  chunks copied, redirected bytes, free space at its lowest, VMs paused;
* ``nodes`` — one row per node and backup: bytes over its NIC, busy time;
* ``jobs`` — one row per snapshot set: window, successes, failures;
* ``phases`` — the protocol timeline of every snapshot set;
* ``summary`` — one row per backup: the figures a planner compares.

Times are simulated seconds from the start of the run. The README's "Result tables" section
documents every column; :data:`SCHEMAS` is its single home in code (one builder per table in
:mod:`vssim.metrics.tables`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from vssim.vss.timeline import SCHEMA as TIMELINE_SCHEMA

S, INT, F, B = pl.Utf8, pl.Int64, pl.Float64, pl.Boolean

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
        "guest_freeze_s": F,
        "write_hold_s": F,
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
        "target_bytes": INT,
        "paused_critical": B,
        "paused_s": F,
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
        "diff_area_on_volume": B,
        "free_low_bytes": INT,
        "low_space_s": F,
        "paused_critical_s": F,
        "vms_paused": INT,
        "paused_vm_s": F,
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
        "beyond_supported_limits": S,
        "target_bytes": INT,
        "vms_paused": INT,
        "paused_vm_s": F,
        "engine": S,
    },
}
