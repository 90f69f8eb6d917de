"""What finished backups leave, as plain records: the metric tables (:mod:`vssim.metrics`) are
built from these alone.

A data path fills one :class:`VmCopy` per VM it backs up and, where it models copy-on-write per
snapshot, a :class:`SnapshotLife` per snapshot; a run of several backups gathers them, with the
protocol's job, result and timeline, into :class:`SetRecord` (one snapshot set),
:class:`BackupRecord` (one backup, all its sets) and :class:`RunRecords` (the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vssim.hresults import HResult, hresult_name
from vssim.scenario import Csv, Scenario, Vm
from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.jobs import BackupJob, BackupResult


@dataclass
class VmCopy:
    """What one VM's backup did (filled by the data path as the set goes)."""

    vm: Vm
    snapshot_at: float | None = None
    #: Bytes the backup reads (set at the point in time).
    planned: int = 0
    bytes_read: int = 0
    incremental: bool = False
    copy_start: float | None = None
    copy_end: float | None = None
    hresult: int = int(HResult.S_OK)
    #: Cumulative counters of the VM's disks at the snapshot instant and at release.
    chunks_at: tuple[int, int] = (0, 0)
    written_at: tuple[int, int] = (0, 0)
    #: Change-tracking blocks changed since the VM's previous backup (at the snapshot instant).
    blocks_changed: int = 0
    #: Materialized runs: real files behind the VM (set at its snapshot), the changed runs per
    #: disk an incremental reads, the chunks the real volume copied because of the VM (at the
    #: snapshot instant and at release), bytes read from the real snapshot.
    real: bool = False
    extents: list[tuple[np.ndarray, np.ndarray]] | None = None
    disk_bytes: list[int] = field(default_factory=list)
    real_chunks_at: tuple[int, int] = (0, 0)
    real_bytes_read: int | None = None

    @property
    def chunks_copied(self) -> int:
        """Copy-on-write chunks the VM's writes caused while its snapshot lived."""
        return self.chunks_at[1] - self.chunks_at[0] if self.snapshot_at is not None else 0

    @property
    def bytes_written(self) -> int:
        return self.written_at[1] - self.written_at[0] if self.snapshot_at is not None else 0

    @property
    def real_chunks_copied(self) -> int | None:
        return self.real_chunks_at[1] - self.real_chunks_at[0] if self.real else None


@dataclass
class SnapshotLife:
    """One copy-on-write snapshot of one CSV, from creation to deletion."""

    csv: str
    handle: int
    created: float
    chunks_at_create: int
    deleted: float | None = None
    #: "released" (deleted by its backup), or deleted by volsnap because the diff area could not
    #: grow: "diff area full" (its limit) or "volume full" (no room left on the volume).
    deleted_by: str | None = None
    diff_area_peak: int = 0
    chunks_copied: int = 0
    #: The CSV's fewest free bytes during the life (its diff area included when on the volume).
    free_low: int = 0


@dataclass(frozen=True)
class CsvSnapshot:
    """One CSV of a snapshot set."""

    csv: Csv
    #: The set's shadow copy of the CSV (None when the set never got that far).
    copy: ShadowCopy | None
    #: Its copy-on-write snapshot's life, where the data path models one.
    life: SnapshotLife | None
    #: Seconds the CSV was in redirected access during the set.
    redirected_s: float


@dataclass(frozen=True)
class SetRecord:
    """One snapshot set: the protocol's job and result (timeline included), and its data."""

    job: BackupJob
    #: The node the requester ran on.
    requester: str
    result: BackupResult
    vms: tuple[VmCopy, ...]
    csvs: tuple[CsvSnapshot, ...]

    def vm_result(self, c: VmCopy) -> str:
        """A VM's result: its own failure, else its set's (no partial backups)."""
        if c.hresult != HResult.S_OK:
            return hresult_name(c.hresult)
        return "S_OK" if self.result.ok else hresult_name(self.result.hresult)

    @property
    def failures(self) -> int:
        return sum(1 for c in self.vms if self.vm_result(c) != "S_OK")


@dataclass
class BackupRecord:
    """One backup of a run (all its snapshot sets)."""

    index: int
    #: The backup's kind, as the run names it ("full", "incremental", …).
    kind: str
    sets: list[SetRecord] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0

    @property
    def window_s(self) -> float:
        return self.end - self.start

    @property
    def failures(self) -> int:
        """VM backups that failed (their own error, or their set's: no partial backups)."""
        return sum(s.failures for s in self.sets)


@dataclass(frozen=True)
class CapacityRecord:
    """What the CSVs' free space did over a run (:mod:`vssim.scenario.capacity`)."""

    #: When each VM was paused (Paused-Critical) for want of space; it stays paused.
    paused_at: dict[str, float] = field(default_factory=dict)
    #: Why: "low space" (below Hyper-V's level) or "volume full" (a write's block did not fit).
    pause_cause: dict[str, str] = field(default_factory=dict)
    #: When each CSV's free space fell below Hyper-V's warning level.
    low_space_at: dict[str, float] = field(default_factory=dict)

    def paused_s(self, vm: str, start: float, end: float) -> float:
        """Seconds of ``[start, end]`` the VM spent paused."""
        at = self.paused_at.get(vm)
        return 0.0 if at is None else max(0.0, end - max(start, at))


@dataclass(frozen=True)
class RunRecords:
    """A finished run: its backups, what each node's NIC carried over the whole run, and what
    the CSVs' free space did."""

    scenario: Scenario
    backups: list[BackupRecord]
    nic_bytes: dict[str, int]
    nic_busy_s: dict[str, float]
    capacity: CapacityRecord = field(default_factory=CapacityRecord)
    #: Which tier counted the guests' writes: ``exact`` or ``estimate`` (``vssim.scale.engines``).
    engine: str = "exact"
