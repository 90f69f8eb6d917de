"""The public face of vssim's Rust engine.

``from vssim import engine`` then ``engine.CowTracker(...)``, ``engine.ChangeTracker(...)``,
``engine.Volume(root, diff_area_dir)`` (real copy-on-write snapshots of a folder),
``engine.Vhdx.create(...)`` / ``engine.Vhdx.open(...)`` (MS-VHDX files),
``engine.ModelCluster`` (modelled cluster workloads, each VM's an ``engine.WorkloadSpec``;
``materialize_csv``/``materialize_vm`` put them on real VHDX files on real volumes, with the same
counts), ``engine.EstimateCluster`` (the same questions answered in closed form: expectations and
variances of what ModelCluster would count, at a cost that does not grow with the writes),
``engine.calibrate`` / ``engine.change_fraction`` (the closed form of how much of a disk's data a
stream changes, and the hot spot that makes a day's change a target). Heavy calls take numpy
arrays (offsets ``uint64``, lengths ``uint32``) and release the GIL.
The engine's figures (copy unit, snapshot limit, block sizes) are its module attributes,
re-exported here.
"""

from __future__ import annotations

from vssim._engine import (
    CONTENT_DIGEST_SCHEME,
    DAY_S,
    DEFAULT_CBT_BLOCK_SIZE,
    DEFAULT_CHUNK_SIZE,
    GROWTH_WRITE,
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
    EstimateCluster,
    FairShare,
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
    bitset_limit,
    calibrate,
    change_fraction,
    demands_if_they_fit,
    max_min_rates,
)
from vssim._engine import __version__ as engine_version

__all__ = [
    "CONTENT_DIGEST_SCHEME",
    "DAY_S",
    "DEFAULT_CBT_BLOCK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "GROWTH_WRITE",
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
    "EstimateCluster",
    "FairShare",
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
    "bitset_limit",
    "calibrate",
    "change_fraction",
    "demands_if_they_fit",
    "engine_version",
    "max_min_rates",
]
