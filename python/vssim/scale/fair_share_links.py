"""Shared bandwidth on the virtual clock: the backup target, each CSV's storage path and each
node's NIC split their bandwidth among the transfers crossing them.

How it works (a fluid model): a transfer crosses a path of links; every link gives each transfer
on it an equal share of its bandwidth, and a transfer moves at the smallest share along its path.
Shares change only when a transfer starts or ends, so between those instants every rate is
constant. Transfers with the same path form a class that progresses as one (a class's cumulative
``work`` per transfer; each transfer finishes when ``work`` reaches its own finish mark), so an
event costs O(active classes), not O(active transfers). One pending timer wakes the model at the
next completion; a newer timer supersedes older ones (generation counter).

:class:`FairShareLinks` is the protocol's :class:`~vssim.sim.links.Links` (``transfer(nbytes,
csv, nodes, target)``), so the writers' guest snapshots, saved states and auto-recovery share the
links with the copies. It also counts, per link, the bytes
carried and the time it was busy.

Background load: constant-rate flows that are not transfers of a known size — the guests' writes
a CSV in redirected access sends over the network (writing node's NIC → coordinator's NIC) — are
set per key with :meth:`FairShareLinks.set_background`. A link's background is one more flow in
its fair share, capped at its demand: with ``n`` transfers on a link of bandwidth ``B`` and a
background demand ``D``, the background gets ``min(D, B / (n + 1))`` and each transfer an equal
share of the rest.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from vssim.scenario import Csv, Scenario
from vssim.sim.links import link_bandwidths, link_path

#: Bytes of a transfer left when it counts as done (floating-point slack).
_SLACK = 1e-3


@dataclass
class _Class:
    path: tuple[str, ...]
    work: float = 0.0
    rate: float = 0.0
    #: (finish mark, sequence, bytes, done event)
    heap: list[tuple[float, int, int, simpy.Event]] = field(default_factory=list)


class FairShareLinks:
    """Fair-share links for every transfer of a run (see the module doc)."""

    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        self.env = env
        self.bandwidth = link_bandwidths(scenario)
        #: Bytes each node's NIC carried.
        self.nic_bytes = {n.name: 0 for n in scenario.nodes}
        self.users = dict.fromkeys(self.bandwidth, 0)
        self.link_bytes = dict.fromkeys(self.bandwidth, 0)
        self.link_busy = dict.fromkeys(self.bandwidth, 0.0)
        self.classes: dict[tuple[str, ...], _Class] = {}
        #: Background flows: key → {link: bytes/s}; and each link's total demand.
        self.background: dict[str, dict[str, float]] = {}
        self.load = dict.fromkeys(self.bandwidth, 0.0)
        self.loaded: set[str] = set()
        self.last = float(env.now)
        self.generation = 0
        self.seq = 0
        self.transfers = 0

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
        self._settle()
        cls = self.classes.get(key)
        if cls is None:
            cls = self.classes[key] = _Class(key)
        done = self.env.event()
        self.seq += 1
        seq = self.seq
        heapq.heappush(cls.heap, (cls.work + nbytes, seq, nbytes, done))
        for link in key:
            self.users[link] += 1
        self.transfers += 1
        self._reschedule()
        try:
            yield done
        except simpy.Interrupt:
            # The reader stopped (its snapshot was deleted): what it moved so far counts.
            moved = self._cancel(cls, seq, nbytes)
            for n in set(nodes):
                self.nic_bytes[n] += moved
            raise
        for n in set(nodes):
            self.nic_bytes[n] += nbytes
        return float(self.env.now - start)

    def _cancel(self, cls: _Class, seq: int, nbytes: int) -> int:
        """Take transfer ``seq`` off its class now; returns the bytes it had moved."""
        self._settle()
        for i, (mark, s, _, _) in enumerate(cls.heap):
            if s == seq:
                moved = max(0, min(nbytes, round(nbytes - (mark - cls.work))))
                cls.heap.pop(i)
                heapq.heapify(cls.heap)
                for link in cls.path:
                    self.users[link] -= 1
                    self.link_bytes[link] += moved
                if not cls.heap and self.classes.get(cls.path) is cls:
                    del self.classes[cls.path]
                self._reschedule()
                return moved
        return 0

    def set_background(self, key: str, rates: dict[str, float]) -> None:
        """Set the background flows of ``key`` to ``rates`` (link → bytes/s; empty: none)."""
        self._settle()
        old = self.background.pop(key, {})
        if rates:
            self.background[key] = dict(rates)
        for link in set(old) | set(rates):
            self.load[link] = sum(b.get(link, 0.0) for b in self.background.values())
            if self.load[link] > 0:
                self.loaded.add(link)
            else:
                self.loaded.discard(link)
        self._reschedule()

    def _background_rate(self, link: str) -> float:
        """What a link's background flows get now."""
        d = self.load[link]
        if d <= 0:
            return 0.0
        return min(d, self.bandwidth[link] / (self.users[link] + 1))

    def _share(self, link: str) -> float:
        """Each transfer's share of ``link`` now."""
        return (self.bandwidth[link] - self._background_rate(link)) / self.users[link]

    def _settle(self) -> None:
        """Progress every active class (and the background flows) up to now."""
        now = float(self.env.now)
        dt = now - self.last
        if dt > 0:
            for cls in self.classes.values():
                if cls.heap:
                    cls.work += cls.rate * dt
            for link, n in self.users.items():
                if n:
                    self.link_busy[link] += dt
            for link in self.loaded:
                if not self.users[link]:
                    self.link_busy[link] += dt
                self.link_bytes[link] += round(self._background_rate(link) * dt)
        self.last = now

    def _reschedule(self) -> None:
        """Finish what is done, recompute the shares, and set the timer for the next finish."""
        while True:
            finished = False
            for key, cls in list(self.classes.items()):
                while cls.heap and cls.heap[0][0] - cls.work <= _SLACK:
                    _, _, nbytes, done = heapq.heappop(cls.heap)
                    for link in cls.path:
                        self.users[link] -= 1
                        self.link_bytes[link] += nbytes
                    done.succeed()
                    finished = True
                if not cls.heap:
                    del self.classes[key]
            next_in = float("inf")
            for cls in self.classes.values():
                cls.rate = min(self._share(link) for link in cls.path)
                next_in = min(next_in, (cls.heap[0][0] - cls.work) / cls.rate)
            if next_in > 0 or not finished:
                break
        if next_in == float("inf"):
            return
        self.generation += 1
        gen = self.generation
        timer = self.env.timeout(max(next_in, 0.0))
        timer.callbacks.append(lambda _ev: self._wake(gen))

    def _wake(self, gen: int) -> None:
        if gen != self.generation:
            return
        self._settle()
        # Whatever is due now is done (the timer was set for the earliest finish). Late in a long
        # run a finish closer than the clock's resolution cannot move the clock (now + dt == now):
        # what is left of it within a few ulps of now at its rate is due too, or the timer would
        # fire again and again at the same instant.
        tick = max(1e-9, abs(float(self.env.now)) * 1e-14)
        for cls in self.classes.values():
            if not cls.heap:
                continue
            left = cls.heap[0][0] - cls.work
            if left <= max(_SLACK, 1e-9 * cls.heap[0][2], cls.rate * tick):
                cls.work = max(cls.work, cls.heap[0][0])
        self._reschedule()
