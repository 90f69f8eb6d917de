"""What a backup is asked to do (:class:`BackupJob`) and what it yields (:class:`BackupResult`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from vssim.scenario import Csv, Scenario, Vm
from vssim.scenario.model import LocalVolume
from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import BackupType, HResult, SnapshotContext, WriterState, hresult_name
from vssim.vss.metadata import Component, WriterMetadata
from vssim.vss.timeline import Timeline


@dataclass(frozen=True)
class Selected:
    """One component the requester adds (``AddComponent``): from which writer, standing for
    which VM."""

    writer: WriterMetadata
    component: Component
    vm: Vm


def volumes_for(scenario: Scenario, selected: Sequence[Selected]) -> tuple[Csv, ...]:
    """The CSVs a selection's VMs live on, in mount-point order: a job's default snapshot set."""
    names = sorted({s.vm.csv for s in selected}, key=lambda n: scenario.csv_by_name[n].mount_point)
    return tuple(scenario.csv_by_name[n] for n in names)


@dataclass(frozen=True)
class BackupJob:
    #: The node the requester runs on.
    node: str
    selected: tuple[Selected, ...]
    volumes: tuple[Csv, ...]
    backup_type: BackupType = BackupType.FULL
    context: SnapshotContext = SnapshotContext.BACKUP
    #: False for vshadow ``-nar``: shadow copies without auto-recovery.
    auto_recovery: bool = True
    #: Copy the selected VMs' data from the shadow copies to the backup target.
    copy_data: bool = True
    #: vshadow ``-t``: a transportable set (hardware provider only).
    transportable: bool = False
    label: str = "backup"
    #: The requester node's own volumes in the set (vshadow ``C:``): shadow copies by the system
    #: provider on that node, outside everything CSV-specific.
    local_volumes: tuple[LocalVolume, ...] = ()
    #: Snapshot attributes asked for beyond the context (vshadow ``-ad``: differential, ``-tr``:
    #: TxF recovery); the shadow copies carry them.
    attributes: int = 0

    @property
    def volume_count(self) -> int:
        return len(self.volumes) + len(self.local_volumes)

    @property
    def persistent(self) -> bool:
        return self.context in (SnapshotContext.APP_ROLLBACK, SnapshotContext.NAS_ROLLBACK)

    @property
    def with_writers(self) -> bool:
        return self.context.with_writers


@dataclass(frozen=True)
class WriterStatus:
    """One line of ``GatherWriterStatus``."""

    name: str
    writer_id: uuid.UUID
    instance_id: uuid.UUID
    node: str
    state: WriterState
    failure: int

    @property
    def failure_name(self) -> str:
        return hresult_name(self.failure)


@dataclass
class BackupResult:
    job: BackupJob
    timeline: Timeline
    ok: bool = False
    hresult: int = HResult.S_OK
    message: str = ""
    set_id: uuid.UUID | None = None
    #: Shadow copies that exist after the run (persistent ones, or none).
    shadow_copies: list[ShadowCopy] = field(default_factory=list)
    #: Shadow copies the run created (even if they were released or aborted since).
    created_copies: list[ShadowCopy] = field(default_factory=list)
    writer_status: list[WriterStatus] = field(default_factory=list)
    #: VMs whose guest took a snapshot or that were put in a saved state.
    frozen_vms: list[str] = field(default_factory=list)
    #: Seconds each saved-state VM was down.
    downtime: dict[str, float] = field(default_factory=dict)
    redirected_bytes: dict[str, int] = field(default_factory=dict)
    network_bytes: int = 0
    copied_bytes: int = 0
    autorecovery_bytes: int = 0
    cow_chunks_copied: int = 0
    diff_area_bytes: dict[str, int] = field(default_factory=dict)
    start: float = 0.0
    end: float = 0.0

    @property
    def hresult_name(self) -> str:
        return hresult_name(self.hresult)

    def failed_writers(self) -> list[WriterStatus]:
        return [w for w in self.writer_status if w.state.is_failed]
