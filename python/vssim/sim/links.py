"""Shared resources of the simulated cluster: each node's NIC, each CSV's storage path and the
backup target. A transfer holds every resource on its path (in a fixed order, so transfers never
deadlock) for ``bytes / slowest bandwidth`` simulated seconds; transfers that share a resource queue
behind each other, which is how concurrent backups slow each other down."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from vssim.scenario import Csv, Scenario


class ClusterResources:
    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        self.env = env
        self.scenario = scenario
        self.nics = {n.name: simpy.Resource(env, capacity=1) for n in scenario.nodes}
        self.csvs = {c.name: simpy.Resource(env, capacity=1) for c in scenario.csvs}
        self.target = simpy.Resource(env, capacity=1)
        #: Bytes each node's NIC carried.
        self.nic_bytes = dict.fromkeys(self.nics, 0)

    def transfer(
        self,
        nbytes: int,
        csv: Csv | None = None,
        nodes: tuple[str, ...] = (),
        target: bool = False,
    ) -> Generator[Any, Any, float]:
        """Move ``nbytes`` over the CSV's storage, the NICs of ``nodes`` and/or the backup
        target; returns the simulated seconds it took (queueing included)."""
        start = self.env.now
        path: list[tuple[simpy.Resource, float]] = []
        if target:
            path.append((self.target, self.scenario.links.backup_target_bandwidth))
        if csv is not None:
            path.append((self.csvs[csv.name], csv.bandwidth))
        for n in sorted(set(nodes)):
            path.append((self.nics[n], self.scenario.node(n).nic_bandwidth))
        if not path or nbytes <= 0:
            return 0.0
        requests = []
        try:
            for res, _ in path:
                req = res.request()
                requests.append((res, req))
                yield req
            yield self.env.timeout(nbytes / min(bw for _, bw in path))
            for n in set(nodes):
                self.nic_bytes[n] += nbytes
        finally:
            for res, req in requests:
                res.release(req)
        return float(self.env.now - start)
