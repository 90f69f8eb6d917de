"""vssim: what a VSS backup of a Hyper-V failover cluster on Cluster Shared Volumes will cost.

The Rust engine is :mod:`vssim.engine`; errors are :mod:`vssim.errors`.
"""

from __future__ import annotations

from vssim import engine
from vssim.errors import EngineStateError, InvalidArgumentError, TrackerFileError, VssimError

__version__ = engine.engine_version

__all__ = [
    "EngineStateError",
    "InvalidArgumentError",
    "TrackerFileError",
    "VssimError",
    "__version__",
    "engine",
]
