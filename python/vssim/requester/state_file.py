"""The cluster's state as a JSON file (the vshadow front end keeps one next to the scenario), so
that ``-p`` then ``-q`` then ``-da`` behave like a sequence on one cluster. Copy-on-write trackers
are not persisted: a reloaded shadow copy is listed and deletable, its diff area starts empty.
A file written for another scenario seed or format version is refused, and nothing is loaded."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vssim.errors import VssimError
from vssim.scenario import Scenario
from vssim.vss.cluster_state import ClusterState, ShadowCopy

STATE_VERSION = 1


def to_json(state: ClusterState) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "scenario": state.scenario.name,
        "seed": state.scenario.seed,
        "clock": state.clock,
        "counter": state.counter,
        "device_counter": state.device_counter,
        "coordinators": state.coordinators,
        "stale_backup_until": state.stale_backup_until,
        "last_backup": {k: list(v) for k, v in state.last_backup.items()},
        "snapshots": [{**asdict(s), "backend_handle": None} for s in state.snapshots],
    }


def save(state: ClusterState, path: Path) -> None:
    path.write_text(json.dumps(to_json(state), indent=1) + "\n", encoding="utf-8")


def load(scenario: Scenario, path: Path) -> ClusterState:
    """The state saved at ``path``, or a fresh one when the file does not exist."""
    if not path.exists():
        return ClusterState(scenario)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != STATE_VERSION or raw.get("seed") != scenario.seed:
            raise ValueError("written for another scenario or version")
        st = ClusterState(
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
