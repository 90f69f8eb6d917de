"""The requester side, above the SimPy driver: what drives the clock and touches files.

:mod:`.backups` runs backup jobs on a cluster (the Python API below); :mod:`.vshadow_tool` is the
``vshadow`` front end (options, exit codes), its VSS calls in :mod:`.vshadow_client` and the
modules built on it (:mod:`.vshadow_create`, :mod:`.vshadow_restore`, :mod:`.vshadow_manage`),
:mod:`.vshadow_select` its component selection, :mod:`.vshadow_volumes` a node's volumes and
:mod:`.vshadow_text` its lines; :mod:`.state_file` keeps a cluster's state between vshadow
invocations, under a lock.

Python API::

    from vssim.scenario import load_scenario
    from vssim.requester import run_backup, to_polars
    result = run_backup(load_scenario("examples/seed.toml"), node="E8920-ND1",
                        components=["W808-Build8370-02"])
    result.ok, result.timeline.steps(), to_polars(result.timeline)
"""

from __future__ import annotations

from vssim.requester.backups import make_job, run_backup, run_backups, run_jobs
from vssim.vss.cluster_state import ClusterState
from vssim.vss.jobs import BackupJob, BackupResult
from vssim.vss.timeline import to_polars

__all__ = [
    "BackupJob",
    "BackupResult",
    "ClusterState",
    "make_job",
    "run_backup",
    "run_backups",
    "run_jobs",
    "to_polars",
]
