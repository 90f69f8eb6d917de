"""The cluster's runtime state between (and during) backups: who coordinates each CSV, which CSVs
are in a 2008 R2 backup, which nodes are down, the shadow copies that exist, and the counters that
name new ids. It persists as JSON (the vshadow front end keeps it next to the scenario), so a
sequence of commands behaves like a sequence on one cluster. Copy-on-write trackers are not
persisted: a reloaded shadow copy is listed and deletable, its diff area starts empty.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vssim.errors import VssimError
from vssim.scenario import Scenario, derive_guid
from vssim.vss.providers import CowBackend, SnapshotBackend

STATE_VERSION = 1


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
    backend: SnapshotBackend = field(default_factory=CowBackend)

    def __post_init__(self) -> None:
        for c in self.scenario.csvs:
            self.coordinators.setdefault(c.name, c.coordinator)

    def new_id(self, kind: str) -> uuid.UUID:
        """A fresh deterministic id (the n-th id this cluster ever made)."""
        self.counter += 1
        return derive_guid(self.scenario.seed, kind, self.counter)

    def new_device(self) -> int:
        self.device_counter += 1
        return self.device_counter

    def is_up(self, node: str) -> bool:
        return node not in self.nodes_down

    # --- persistence ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            "clock": self.clock,
            "counter": self.counter,
            "device_counter": self.device_counter,
            "coordinators": self.coordinators,
            "stale_backup_until": self.stale_backup_until,
            "last_backup": {k: list(v) for k, v in self.last_backup.items()},
            "snapshots": [{**asdict(s), "backend_handle": None} for s in self.snapshots],
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, scenario: Scenario, path: Path) -> ClusterState:
        """The state saved at ``path``, or a fresh one when the file does not exist."""
        if not path.exists():
            return cls(scenario)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != STATE_VERSION or raw.get("seed") != scenario.seed:
                raise ValueError("written for another scenario or version")
            st = cls(
                scenario,
                clock=float(raw["clock"]),
                counter=int(raw["counter"]),
                device_counter=int(raw["device_counter"]),
                snapshots=[ShadowCopy(**s) for s in raw["snapshots"]],
                coordinators=dict(raw["coordinators"]),
                stale_backup_until=dict(raw.get("stale_backup_until", {})),
                last_backup={
                    k: (float(v[0]), float(v[1])) for k, v in raw.get("last_backup", {}).items()
                },
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise VssimError(f"{path}: not a vssim cluster state file: {exc}") from None
        return st
