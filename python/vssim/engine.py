"""The public face of vssim's Rust engine.

``from vssim import engine`` then ``engine.CowTracker(...)``, ``engine.ChangeTracker(...)``,
``engine.Volume(root, diff_area_dir)`` (real copy-on-write snapshots of a folder),
``engine.Vhdx.create(...)`` / ``engine.Vhdx.open(...)`` (MS-VHDX files),
``engine.ModelCluster`` (modelled cluster workloads, each VM's an ``engine.WorkloadSpec``;
``materialize_csv``/``materialize_vm`` put them on real VHDX files on real volumes, with the same
counts). Heavy calls take numpy arrays (offsets ``uint64``, lengths ``uint32``) and release the GIL.
The engine's figures (copy unit, snapshot limit, block sizes) are its module attributes,
re-exported here.
"""

from __future__ import annotations

from vssim._engine import (
    DEFAULT_CBT_BLOCK_SIZE,
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_SNAPSHOTS,
    MIN_CHUNK_SIZE,
    VHDX_DEFAULT_BLOCK_SIZE,
    VHDX_MAX_BLOCK_SIZE,
    VHDX_MAX_CHAIN_DEPTH,
    VHDX_MAX_VIRTUAL_SIZE,
    VHDX_MIN_BLOCK_SIZE,
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
    WorkloadSpec,
    WriteResult,
)
from vssim._engine import __version__ as engine_version

__all__ = [
    "DEFAULT_CBT_BLOCK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_SNAPSHOTS",
    "MIN_CHUNK_SIZE",
    "VHDX_DEFAULT_BLOCK_SIZE",
    "VHDX_MAX_BLOCK_SIZE",
    "VHDX_MAX_CHAIN_DEPTH",
    "VHDX_MAX_VIRTUAL_SIZE",
    "VHDX_MIN_BLOCK_SIZE",
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
    "WorkloadSpec",
    "WriteResult",
    "engine_version",
]
