"""Modelled backups of a whole cluster: backup jobs, scheduling, data movement and the engine's
workload on one virtual clock (issue "full, selective and incremental backups at scale").

``vssim.run(scenario, backup="full")`` (= :func:`vssim.scale.runner.run`) returns the result
tables; :mod:`.backend` (the engine's cluster behind the protocol), :mod:`.network` (shared
links), :mod:`.plan` (what to back up, snapshot sets, limits), :mod:`.backup_run` (one snapshot
set), :mod:`.runner` (the run), :mod:`.materialize` (the same run with real VHDX disks, real
snapshots and real backup chains; :func:`restore`).
"""

from __future__ import annotations

from vssim.scale.materialize import MaterializedBackend, restore
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scale.runner import RunResult, run
from vssim.scale.schedule import BackupKind, BackupSpec, Schedule, plan_jobs, select_vms

__all__ = [
    "BackupKind",
    "BackupSpec",
    "MaterializedBackend",
    "ModelClusterBackend",
    "RunResult",
    "Schedule",
    "plan_jobs",
    "restore",
    "run",
    "select_vms",
]
