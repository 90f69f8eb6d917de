"""The VSS protocol on a simulated failover cluster (spec ``vss-csv.md``).

Modules: :mod:`.enums` (names and values), :mod:`.ids` (writer/provider ids), :mod:`.metadata`
(writer metadata, XML and vshadow listings), the sans-I/O roles :mod:`.backup_state` (requester
call order), :mod:`.writer_state`, :mod:`.provider_state`; :mod:`.writers` (Hyper-V and CSV
writers), :mod:`.providers` (system, hardware, CSV providers; :class:`SnapshotBackend`),
:mod:`.profiles` (ws2008r2, ws2012), :mod:`.cluster` (runtime state), :mod:`.requester` (the API).

Python API (see :mod:`vssim.vss.requester`)::

    from vssim.scenario import load_scenario
    from vssim import vss
    result = vss.run_backup(load_scenario("examples/seed.toml"), node="E8920-ND1",
                            components=["W808-Build8370-02"])
    result.ok, result.timeline.steps(), vss.to_polars(result.timeline)

The heavy parts load on first use, so ``vssim.vss.enums`` stays importable from the scenario
layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vssim.sim.jobs import BackupJob, BackupResult
    from vssim.sim.timeline import to_polars
    from vssim.vss.cluster import ClusterState
    from vssim.vss.requester import make_job, run_backup, run_backups

_LAZY = {
    "run_backup": "vssim.vss.requester",
    "run_backups": "vssim.vss.requester",
    "make_job": "vssim.vss.requester",
    "ClusterState": "vssim.vss.cluster",
    "BackupJob": "vssim.sim.jobs",
    "BackupResult": "vssim.sim.jobs",
    "to_polars": "vssim.sim.timeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vssim.vss' has no attribute {name!r}")


__all__ = [
    "BackupJob",
    "BackupResult",
    "ClusterState",
    "make_job",
    "run_backup",
    "run_backups",
    "to_polars",
]
