"""The public face of vssim's Rust engine.

``from vssim import engine`` then ``engine.CowTracker(...)``, ``engine.ChangeTracker(...)``,
``engine.Volume(root, diff_area_dir)`` (real copy-on-write snapshots of a folder),
``engine.Vhdx.create(...)`` / ``engine.Vhdx.open(...)`` (MS-VHDX files),
``engine.ModelCluster`` (modelled cluster workloads; ``materialize_csv``/``materialize_vm`` put
them on real VHDX files on real volumes, with the same counts).
Heavy calls take numpy arrays (offsets ``uint64``, lengths ``uint32``) and release the GIL.
"""

from __future__ import annotations

from vssim._engine import (
    ChangeTracker,
    CowTracker,
    ModelCluster,
    Snapshot,
    SnapshotInfo,
    SnapshotView,
    Vhdx,
    VhdxFinding,
    Volume,
    VolumeFile,
    VolumeSnapshotInfo,
    WorkloadGenerator,
    WriteResult,
)
from vssim._engine import __version__ as engine_version

#: volsnap's copy unit.
DEFAULT_CHUNK_SIZE = 16 * 1024
#: Changed-block tracking default granularity.
DEFAULT_CBT_BLOCK_SIZE = 64 * 1024
#: At most 512 shadow copies per volume.
MAX_SNAPSHOTS = 512

__all__ = [
    "DEFAULT_CBT_BLOCK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "MAX_SNAPSHOTS",
    "ChangeTracker",
    "CowTracker",
    "ModelCluster",
    "Snapshot",
    "SnapshotInfo",
    "SnapshotView",
    "Vhdx",
    "VhdxFinding",
    "Volume",
    "VolumeFile",
    "VolumeSnapshotInfo",
    "WorkloadGenerator",
    "WriteResult",
    "engine_version",
]
