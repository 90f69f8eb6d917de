"""Shared bandwidth on the virtual clock: the backup target, each CSV's storage path and each
node's NIC are shared max-min fairly among the transfers and background flows crossing them.

How it works (a fluid model): a transfer crosses a path of links; the rates are the max-min fair
allocation, found by progressive filling (the engine's ``links::max_min`` computes it) — every
flow's rate rises together from zero; when a link is full, the flows crossing it keep the rate
they reached (that link is their bottleneck) and the others go on rising; a background flow
stops at its demand. So a transfer whose path has room moves faster instead of leaving capacity
idle: every transfer is bottlenecked — on some link of its path, the link is full and no flow on
it moves faster than it.

Rates change only when a transfer starts or ends, or a background changes, so between those
instants every rate is constant, and the allocation is recomputed at each of them (once per
instant, after its other events: many transfers starting together cost one allocation). Transfers
with the same path form a class that progresses as one (a class's cumulative ``work`` per
transfer; each transfer finishes when ``work`` reaches its own finish mark), so an event costs
O(active classes × fills), not O(active transfers). One pending timer wakes the model at the
next completion; a newer timer supersedes older ones (generation counter).

Where it lives: the classes, the links' counters, the background flows and every rule that moves
them are the engine's :class:`vssim.engine.FairShare` (``rust/engine/src/links/fair_share.rs``,
the arithmetic this module did, float for float); this class keeps the SimPy side — the clock,
each transfer's event, the timer — and the NICs' byte counts, and calls in at each instant
something changes.

:class:`FairShareLinks` is the protocol's :class:`~vssim.sim.links.Links` (``transfer(nbytes,
csv, nodes, target)``), so the writers' guest snapshots, saved states and auto-recovery share the
links with the copies. It also counts, per link, the bytes carried and the time it was busy.

Background load: constant-rate flows that are not transfers of a known size — the guests' own
I/O and copy-on-write on a CSV's storage, the I/O a CSV in redirected access sends over the
network (writing node's NIC → coordinator's NIC) — are set per key with
:meth:`FairShareLinks.set_flows` (link → groups of equal flows: demand per flow, bytes/s, and
how many) or :meth:`FairShareLinks.set_background` (one flow per link): each flow takes part in
the same filling, capped at its demand. Each VM's I/O is its own flow, so a cluster's many small
streams get their demand while a link has room for them, as a guest's I/O does beside a copy.

Compression at the backup target (``[target] compression``): what a copy moves over the CSV and
the NICs is what it reads; over the target it moves that divided by the ratio. The target's
capacity is counted in bytes read (its bandwidth × the ratio), and its ``link_bytes`` in bytes
stored.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

import simpy

from vssim import engine
from vssim.scenario import Csv, Scenario
from vssim.sim.links import TARGET, link_bandwidths, link_path


def max_min_rates(
    capacity: Mapping[str, float],
    classes: Sequence[tuple[tuple[str, ...], int]],
    background: Sequence[tuple[str, float, int]],
) -> tuple[list[float], list[float]]:
    """The max-min fair rates, by progressive filling (the engine's ``links::max_min``): the
    links of ``capacity`` by name, ``classes`` (path, number of transfers) — every transfer of a
    class gets the same rate —, ``background`` (link, demand per flow > 0, number of flows)
    groups of equal flows on one link each. Returns the per-transfer rate of each class and the
    per-flow rate of each background group."""
    index = {link: i for i, link in enumerate(capacity)}
    return engine.max_min_rates(
        list(capacity.values()),
        [(tuple(index[link] for link in path), n) for path, n in classes],
        [(index[link], demand, n) for link, demand, n in background],
    )


class FairShareLinks:
    """Max-min fair links for every transfer of a run (see the module doc)."""

    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        self.env = env
        self.bandwidth = link_bandwidths(scenario)
        #: Bytes a link carries per byte a transfer moves (the target: 1 / compression).
        self.weight = dict.fromkeys(self.bandwidth, 1.0)
        self.weight[TARGET] = 1.0 / scenario.target.compression
        #: Capacity in bytes moved (read) per second.
        self.capacity = {link: bw / self.weight[link] for link, bw in self.bandwidth.items()}
        #: Each link's index in the engine's arrays.
        self.index = {link: i for i, link in enumerate(self.capacity)}
        self._names = list(self.capacity)
        by_name = {link: r for r, link in enumerate(sorted(self._names))}
        self.core = engine.FairShare(
            list(self.capacity.values()),
            [self.weight[link] for link in self._names],
            [by_name[link] for link in self._names],
            float(env.now),
        )
        #: Bytes each node's NIC carried.
        self.nic_bytes = {n.name: 0 for n in scenario.nodes}
        #: Each path's links as the engine's indices.
        self._paths: dict[tuple[str, ...], list[int]] = {}
        #: The event of each transfer under way, by the engine's number.
        self._done: dict[int, simpy.Event] = {}
        self.generation = 0
        self._pending = False

    @property
    def transfers(self) -> int:
        """Transfers started."""
        return self.core.transfers

    def transfer(
        self,
        nbytes: int,
        csv: Csv | None = None,
        nodes: tuple[str, ...] = (),
        target: bool = False,
    ) -> Generator[Any, Any, float]:
        """Move ``nbytes`` over the backup target, the CSV's storage and the NICs of ``nodes``;
        returns the simulated seconds it took."""
        key = link_path(csv, nodes, target)
        if not key or nbytes <= 0:
            return 0.0
        start = self.env.now
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = [self.index[link] for link in key]
        seq = self.core.start(float(start), path, int(nbytes))
        done = self._done[seq] = self.env.event()
        self._later()
        try:
            yield done
        except simpy.Interrupt:
            # The reader stopped (its snapshot was deleted): what it moved so far counts.
            self._done.pop(seq, None)
            moved = self.core.cancel(seq, float(self.env.now))
            if moved is None:
                moved = 0
            else:
                self._later()
            for n in set(nodes):
                self.nic_bytes[n] += moved
            raise
        for n in set(nodes):
            self.nic_bytes[n] += nbytes
        return float(self.env.now - start)

    @property
    def link_bytes(self) -> dict[str, int]:
        """Bytes each link carried up to the last settle (after compression on the target):
        the transfers' and the background's. Read only, as :meth:`moved`."""
        return dict(zip(self._names, self.core.link_bytes(), strict=True))

    @property
    def link_busy(self) -> dict[str, float]:
        """Seconds each link had a transfer or a background flow on it."""
        return dict(zip(self._names, self.core.link_busy(), strict=True))

    @property
    def background(self) -> dict[str, dict[str, tuple[tuple[float, int], ...]]]:
        """The background flows as set: key → {link → groups (demand per flow, flows)}."""
        names = self._names
        return {
            key: {names[link]: tuple(groups) for link, groups in table}
            for key, table in self.core.background()
        }

    @property
    def users(self) -> dict[str, int]:
        """How many transfers cross each link now."""
        return dict(zip(self._names, self.core.users(), strict=True))

    @property
    def load(self) -> dict[str, float]:
        """Each link's background demand now (bytes/s)."""
        return dict(zip(self._names, self.core.load(), strict=True))

    def moved(self, link: str) -> float:
        """Bytes moved (read, before compression) over ``link`` so far, those of transfers under
        way included — of transfers alone on a link no background crosses, such as the backup
        target. Read only: asking never settles the classes, so the figures do not depend on
        when it is asked."""
        return float(self.core.moved(self.index[link], float(self.env.now)))

    def set_background(self, key: str, rates: dict[str, float]) -> None:
        """Set the background of ``key`` to one flow per link of ``rates`` (link → bytes/s;
        empty: none)."""
        self.set_flows(key, {link: ((r, 1),) for link, r in rates.items()})

    def set_flows(self, key: str, flows: Mapping[str, Sequence[tuple[float, int]]]) -> None:
        """Set the background of ``key``: per link, groups of equal flows (demand per flow in
        bytes/s, how many); empty: none. Groups with no demand or no flow are dropped (by the
        engine's ``FairShare.set_flows``)."""
        index = self.index
        table = [
            (index[link], [(float(d), int(n)) for d, n in groups]) for link, groups in flows.items()
        ]
        if self.core.set_flows(key, float(self.env.now), table):
            self._later()

    def _later(self) -> None:
        """Recompute once the current instant's other events have run: transfers that start
        or stop together (a set's copies) cost one allocation, and no time passes meanwhile."""
        if self._pending:
            return
        self._pending = True
        ev = self.env.timeout(0)
        ev.callbacks.append(self._recompute)

    def _recompute(self, _ev: simpy.Event) -> None:
        self._pending = False
        self.core.settle(float(self.env.now))
        self._schedule(*self.core.reschedule())

    def _wake(self, gen: int) -> None:
        if gen != self.generation:
            return
        self._schedule(*self.core.wake(float(self.env.now)))

    def _schedule(self, finished: list[int], next_in: float) -> None:
        """The engine's answer: the transfers it found done (their events succeed, in its
        order) and the time to the next finish (the timer; inf: none)."""
        done = self._done
        for seq in finished:
            done.pop(seq).succeed()
        if next_in == float("inf"):
            return
        self.generation += 1
        gen = self.generation
        timer = self.env.timeout(max(next_in, 0.0))
        timer.callbacks.append(lambda _ev: self._wake(gen))
