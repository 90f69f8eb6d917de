"""vssim: what a VSS backup of a Hyper-V failover cluster on Cluster Shared Volumes will cost.

The Rust engine is :mod:`vssim.engine`; errors are :mod:`vssim.errors`; ``vssim.run(scenario,
backup="full")`` runs modelled backups of a whole cluster (:mod:`vssim.scale`) and returns the
result tables (:mod:`vssim.metrics`). The package's layers and what each holds: README "Layout".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vssim import engine
from vssim.errors import EngineStateError, InvalidArgumentError, TrackerFileError, VssimError

__version__ = engine.engine_version

if TYPE_CHECKING:
    from vssim.metrics import RunResult


def run(*args: Any, **kwargs: Any) -> RunResult:
    """Back up a scenario in modelled mode and return the result tables: see
    :func:`vssim.metrics.run` (loaded on first use: it pulls in SimPy and polars)."""
    from vssim.metrics import run as _run

    return _run(*args, **kwargs)


__all__ = [
    "EngineStateError",
    "InvalidArgumentError",
    "TrackerFileError",
    "VssimError",
    "__version__",
    "engine",
    "run",
]
