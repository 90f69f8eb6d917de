"""The cluster's shared links as a backup run sees them: each node's NIC, each CSV's storage path
and the backup target, named by :func:`link_path`.

A backup run moves data only through a :class:`Links` object (``transfer``): the writers' guest
snapshots, saved states and auto-recovery, and the data path's copies. Two implementations:

* :class:`QueuedLinks` (here, for protocol runs): a transfer holds every link on its path (in
  :func:`link_path`'s fixed order, so transfers never deadlock) for ``bytes / slowest
  bandwidth`` simulated seconds; transfers that share a link queue behind each other, which is how
  concurrent backups slow each other down;
* :class:`vssim.scale.fair_share_links.FairShareLinks` (modelled runs): links split their
  bandwidth among the transfers crossing them.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol

import simpy

from vssim.scenario import Csv, Scenario

#: The backup target's link.
TARGET = "target"


def csv_link(name: str) -> str:
    return f"csv:{name}"


def nic_link(name: str) -> str:
    return f"nic:{name}"


def link_path(csv: Csv | None, nodes: tuple[str, ...], target: bool) -> tuple[str, ...]:
    """The links a transfer crosses, in the one order every implementation takes them: the backup
    target, the CSV's storage, then the NICs of ``nodes`` by name."""
    path = ([TARGET] if target else []) + ([csv_link(csv.name)] if csv is not None else [])
    return (*path, *(nic_link(n) for n in sorted(set(nodes))))


def link_bandwidths(scenario: Scenario) -> dict[str, float]:
    """Every link of the scenario and its bandwidth (bytes/s)."""
    out = {TARGET: scenario.links.backup_target_bandwidth}
    out.update({csv_link(c.name): c.bandwidth for c in scenario.csvs})
    out.update({nic_link(n.name): n.nic_bandwidth for n in scenario.nodes})
    return out


class Links(Protocol):
    """What a backup run moves data through."""

    #: Bytes each node's NIC carried (by node name).
    nic_bytes: dict[str, int]

    def transfer(
        self,
        nbytes: int,
        csv: Csv | None = None,
        nodes: tuple[str, ...] = (),
        target: bool = False,
    ) -> Generator[Any, Any, float]:
        """A SimPy process step: move ``nbytes`` over the backup target (``target``), the CSV's
        storage and the NICs of ``nodes``; returns the simulated seconds it took."""
        ...


class QueuedLinks:
    """:class:`Links` where a transfer holds its whole path and others queue (see the module)."""

    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        self.env = env
        self.bandwidth = link_bandwidths(scenario)
        self.resources = {link: simpy.Resource(env, capacity=1) for link in self.bandwidth}
        self.nic_bytes = {n.name: 0 for n in scenario.nodes}

    def transfer(
        self,
        nbytes: int,
        csv: Csv | None = None,
        nodes: tuple[str, ...] = (),
        target: bool = False,
    ) -> Generator[Any, Any, float]:
        start = self.env.now
        path = link_path(csv, nodes, target)
        if not path or nbytes <= 0:
            return 0.0
        requests = []
        try:
            for link in path:
                req = self.resources[link].request()
                requests.append((self.resources[link], req))
                yield req
            yield self.env.timeout(nbytes / min(self.bandwidth[link] for link in path))
            for n in set(nodes):
                self.nic_bytes[n] += nbytes
        finally:
            for res, req in requests:
                res.release(req)
        return float(self.env.now - start)
