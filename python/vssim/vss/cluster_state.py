"""The cluster's runtime state between (and during) backups: who coordinates each CSV, which CSVs
are in a 2008 R2 backup, which nodes are down, the shadow copies that exist, and the counters that
name new ids. Pure data: the vshadow front end persists it (:mod:`vssim.requester.state_file`), so
a sequence of commands behaves like a sequence on one cluster.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from vssim.scenario import Scenario, derive_guid
from vssim.vss.providers import CowBackend, SnapshotBackend


@dataclass
class ShadowCopy:
    """One volume's shadow copy (``VSS_SNAPSHOT_PROP``)."""

    id: str
    set_id: str
    count: int
    csv: str
    volume_name: str
    mount_point: str
    #: Simulated seconds after the scenario's start.
    created: float
    device: int
    originating_machine: str
    service_machine: str
    provider_id: str
    attributes: int
    backend_handle: int | None = None
    #: ``ExposeSnapshot``: the drive letter, mount point or share it is exposed as, and the
    #: folder of it a share exposes ("" for its root).
    exposed_name: str = ""
    exposed_path: str = ""


@dataclass
class ClusterState:
    scenario: Scenario
    clock: float = 0.0
    counter: int = 0
    device_counter: int = 0
    snapshots: list[ShadowCopy] = field(default_factory=list)
    coordinators: dict[str, str] = field(default_factory=dict)
    backup_in_progress: dict[str, str] = field(default_factory=dict)
    #: 2008 R2: CSVs left "backup in progress" by a dead requester, until this clock time.
    stale_backup_until: dict[str, float] = field(default_factory=dict)
    nodes_down: set[str] = field(default_factory=set)
    #: VM name → (clock of its last backup's snapshot, clock of its last full one).
    last_backup: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: ``<node>|<writer instance id>`` → (``VSS_WRITER_STATE``, failure HRESULT) of a writer that
    #: failed in its last snapshot set: it reports that state (``vssadmin list writers``,
    #: ``vshadow -ws``) until its next snapshot set starts.
    writer_failures: dict[str, tuple[int, int]] = field(default_factory=dict)
    backend: SnapshotBackend = field(default_factory=CowBackend)

    def __post_init__(self) -> None:
        for c in self.scenario.csvs:
            self.coordinators.setdefault(c.name, c.coordinator)

    def csv_backup_holder(self, csv: str, now: float) -> str | None:
        """2008 R2: who holds ``csv`` in backup (``ClusterPrepareSharedVolumeForBackup`` refuses
        a second backup), or None when it is free."""
        holder = self.backup_in_progress.get(csv)
        stale = self.stale_backup_until.get(csv, 0.0)
        if holder is None and stale > now:
            holder = f"a backup whose requester died; clears at {stale:.0f} s"
        return holder

    def new_id(self, kind: str) -> uuid.UUID:
        """A fresh deterministic id (the n-th id this cluster ever made)."""
        self.counter += 1
        return derive_guid(self.scenario.seed, kind, self.counter)

    def new_device(self) -> int:
        self.device_counter += 1
        return self.device_counter

    def is_up(self, node: str) -> bool:
        return node not in self.nodes_down
