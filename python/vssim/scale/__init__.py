"""Modelled backups of a whole cluster: backup jobs, scheduling, data movement and the engine's
workload on one virtual clock (issue "full, selective and incremental backups at scale").

:func:`~vssim.scale.runner.simulate` runs it and returns plain records (``vssim.run`` adds the
result tables, :mod:`vssim.metrics`). :mod:`.schedule` (what to back up, snapshot sets, limits),
:mod:`.model_cluster` (the engine's cluster behind the protocol), :mod:`.fair_share_links`
(shared links), :mod:`.modelled_path` (one snapshot set's data path), :mod:`.deletion_watch`
(diff-area overflow at its instant), :mod:`.runner` (the run), :mod:`.materialize` and
:mod:`.materialized_path` (the same run with real VHDX disks, real snapshots and real backup
chains; :func:`restore`).
"""

from __future__ import annotations

from vssim.scale.materialize import MaterializedBackend, restore
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scale.runner import ModelledRun, simulate
from vssim.scale.schedule import BackupKind, BackupSpec, Schedule, plan_jobs, select_vms

__all__ = [
    "BackupKind",
    "BackupSpec",
    "MaterializedBackend",
    "ModelClusterBackend",
    "ModelledRun",
    "Schedule",
    "plan_jobs",
    "restore",
    "select_vms",
    "simulate",
]
