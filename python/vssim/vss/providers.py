"""Providers: who makes a CSV's point-in-time copy, and what it costs the host.

* **System provider** (Microsoft Software Shadow Copy provider 1.0, volsnap): copy-on-write on the
  node that owns the volume; diff area counted by a :class:`SnapshotBackend`.
* **Hardware provider** (an array snapshot): no host copy-on-write; transportable.
* **CSV Shadow Copy Provider + Helper Provider** (2012): the CSV provider on the requester's node
  asks the helper on the CSV's coordinator node, which makes one distributed snapshot of the CSV
  through the system or hardware provider (spec §8, model choice).

The protocol talks to copy-on-write only through :class:`SnapshotBackend`; :class:`CowBackend` is
the default, on :class:`vssim.engine.CowTracker` (one per CSV, created on first use).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from vssim import engine
from vssim.scenario import Csv, ProviderKind
from vssim.vss.enums import ProviderType, SnapshotAttr
from vssim.vss.well_known_ids import (
    CSV_HELPER_PROVIDER_ID,
    CSV_HELPER_PROVIDER_NAME,
    CSV_PROVIDER_ID,
    CSV_PROVIDER_NAME,
    HARDWARE_PROVIDER_ID,
    HARDWARE_PROVIDER_NAME,
    SYSTEM_PROVIDER_ID,
    SYSTEM_PROVIDER_NAME,
)


@dataclass(frozen=True)
class WriteCost:
    chunks_copied: int
    bytes_copied: int
    #: Backend snapshot handles deleted because the diff area could not grow.
    deleted: tuple[int, ...]


class SnapshotBackend(Protocol):
    """Copy-on-write accounting for software snapshots of CSVs."""

    def create_snapshot(self, csv: Csv, allocated_bytes: int) -> int:
        """Make a snapshot of ``csv`` (blocks past ``allocated_bytes`` are free); a handle."""
        ...

    def delete_snapshot(self, csv: Csv, handle: int) -> None: ...

    def apply_writes(
        self, csv: Csv, offsets: npt.NDArray[np.uint64], lengths: npt.NDArray[np.uint32]
    ) -> WriteCost:
        """Writes to the live volume while snapshots exist."""
        ...

    def diff_area_bytes(self, csv: Csv) -> int: ...


class CowBackend:
    """:class:`SnapshotBackend` on the engine's volsnap model (16 KiB copy unit)."""

    def __init__(self) -> None:
        self.trackers: dict[str, engine.CowTracker] = {}

    def tracker(self, csv: Csv) -> engine.CowTracker:
        t = self.trackers.get(csv.name)
        if t is None:
            t = engine.CowTracker(csv.size, diff_area_limit=csv.diff_area_limit)
            self.trackers[csv.name] = t
        return t

    def create_snapshot(self, csv: Csv, allocated_bytes: int) -> int:
        return self.tracker(csv).create_snapshot(allocated_bytes)

    def delete_snapshot(self, csv: Csv, handle: int) -> None:
        t = self.trackers.get(csv.name)
        if t is not None and t.is_live(handle):
            t.delete_snapshot(handle)

    def apply_writes(
        self, csv: Csv, offsets: npt.NDArray[np.uint64], lengths: npt.NDArray[np.uint32]
    ) -> WriteCost:
        t = self.trackers.get(csv.name)
        if t is None or len(offsets) == 0:
            return WriteCost(0, 0, ())
        r = t.apply_writes(offsets, lengths)
        return WriteCost(r.chunks_copied, r.bytes_copied, tuple(r.deleted_snapshots))

    def diff_area_bytes(self, csv: Csv) -> int:
        t = self.trackers.get(csv.name)
        return 0 if t is None else t.diff_area_bytes


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    id: uuid.UUID
    type: ProviderType

    def attributes(self) -> SnapshotAttr:
        """What the provider's shadow copies always are: volsnap's are copy-on-write
        (``Differential``, as ``vshadow -q`` and ``diskshadow`` list them), an array's are
        hardware-assisted."""
        if self.type is ProviderType.HARDWARE:
            return SnapshotAttr.HARDWARE_ASSISTED
        if self.type is ProviderType.SYSTEM:
            return SnapshotAttr.DIFFERENTIAL
        return SnapshotAttr.NONE

    @property
    def transportable(self) -> bool:
        """Only an array snapshot can be moved to another host (vshadow ``-t``)."""
        return self.type is ProviderType.HARDWARE


SYSTEM_PROVIDER = ProviderInfo(SYSTEM_PROVIDER_NAME, SYSTEM_PROVIDER_ID, ProviderType.SYSTEM)
HARDWARE_PROVIDER = ProviderInfo(
    HARDWARE_PROVIDER_NAME, HARDWARE_PROVIDER_ID, ProviderType.HARDWARE
)
CSV_PROVIDER = ProviderInfo(CSV_PROVIDER_NAME, CSV_PROVIDER_ID, ProviderType.SOFTWARE)
CSV_HELPER_PROVIDER = ProviderInfo(
    CSV_HELPER_PROVIDER_NAME, CSV_HELPER_PROVIDER_ID, ProviderType.SOFTWARE
)


def volume_provider(csv: Csv) -> ProviderInfo:
    """The provider that really makes ``csv``'s snapshot (behind the CSV providers on 2012)."""
    return HARDWARE_PROVIDER if csv.provider is ProviderKind.HARDWARE else SYSTEM_PROVIDER
