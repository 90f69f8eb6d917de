"""Scenario files: the cluster a simulation runs on (nodes, CSVs, VMs, links, faults).

``load_scenario("examples/seed.toml")`` reads and validates a TOML file (see :mod:`.load` for the
layout, :mod:`.generate` for ``[generate]``); the result is a frozen :class:`Scenario`.
"""

from __future__ import annotations

from vssim.scenario.guids import braced, derive_guid
from vssim.scenario.load import load_scenario, parse_scenario
from vssim.scenario.model import (
    MAX_NODES,
    MAX_VMS_PER_NODE,
    ChangeTracking,
    Csv,
    Disk,
    DiskType,
    Fault,
    FaultKind,
    Links,
    Node,
    OsProfile,
    ProviderKind,
    Scenario,
    ScenarioWarning,
    Target,
    Vm,
    Workload,
)

__all__ = [
    "MAX_NODES",
    "MAX_VMS_PER_NODE",
    "ChangeTracking",
    "Csv",
    "Disk",
    "DiskType",
    "Fault",
    "FaultKind",
    "Links",
    "Node",
    "OsProfile",
    "ProviderKind",
    "Scenario",
    "ScenarioWarning",
    "Target",
    "Vm",
    "Workload",
    "braced",
    "derive_guid",
    "load_scenario",
    "parse_scenario",
]
