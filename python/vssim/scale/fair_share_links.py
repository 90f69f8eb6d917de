"""Shared bandwidth on the virtual clock: the backup target, each CSV's storage path and each
node's NIC are shared max-min fairly among the transfers and background flows crossing them.

How it works (a fluid model): a transfer crosses a path of links; the rates are the max-min fair
allocation, found by progressive filling — every flow's rate rises together from zero; when a
link is full, the flows crossing it keep the rate they reached (that link is their bottleneck)
and the others go on rising; a background flow stops at its demand. So a transfer whose path
has room moves faster instead of leaving capacity idle: every transfer is bottlenecked — on some
link of its path, the link is full and no flow on it moves faster than it.

Rates change only when a transfer starts or ends, or a background changes, so between those
instants every rate is constant, and the allocation is recomputed at each of them (once per
instant, after its other events: many transfers starting together cost one allocation). Transfers
with the same path form a class that progresses as one (a class's cumulative ``work`` per
transfer; each transfer finishes when ``work`` reaches its own finish mark), so an event costs
O(active classes × fills), not O(active transfers). One pending timer wakes the model at the
next completion; a newer timer supersedes older ones (generation counter).

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

import heapq
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from vssim.scenario import Csv, Scenario
from vssim.sim.links import TARGET, link_bandwidths, link_path

#: Bytes of a transfer left when it counts as done (floating-point slack).
_SLACK = 1e-3
#: A link counts as full when less than this share of its capacity is left, a background flow
#: as at its demand within this share of it (floating point).
_FULL = 1e-9


@dataclass
class _Class:
    path: tuple[str, ...]
    work: float = 0.0
    rate: float = 0.0
    #: (finish mark, sequence, bytes, done event)
    heap: list[tuple[float, int, int, simpy.Event]] = field(default_factory=list)


def _fill_one_link(
    capacity: float, groups: list[int], background: list[tuple[str, float, int]], out: list[float]
) -> None:
    """Progressive filling on a link only background flows cross (closed form): in ascending
    demand, a group gets its demand while the flows left could all have it, else every flow
    left gets an equal share of what is left."""
    left = capacity
    flows = sum(background[j][2] for j in groups)
    for k, j in enumerate(sorted(groups, key=lambda j: background[j][1])):
        _, demand, n = background[j]
        if demand * flows <= left:
            out[j] = demand
            left -= demand * n
            flows -= n
            continue
        share = left / flows
        for j2 in sorted(groups, key=lambda j: background[j][1])[k:]:
            out[j2] = share
        return


def max_min_rates(
    capacity: dict[str, float],
    classes: list[tuple[tuple[str, ...], int]],
    background: list[tuple[str, float, int]],
) -> tuple[list[float], list[float]]:
    """The max-min fair rates, by progressive filling: ``classes`` are (path, number of
    transfers) — every transfer of a class gets the same rate —, ``background`` (link, demand
    per flow > 0, number of flows) groups of equal flows on one link each. Returns the
    per-transfer rate of each class and the per-flow rate of each background group.

    Each round raises every open flow by the same step, to the first link to fill or the first
    demand met, and closes the flows that it stops. Links that no transfer crosses do not
    interact with the others: their background is filled on its own, in closed form."""
    class_rate = [0.0] * len(classes)
    bg_rate = [0.0] * len(background)
    shared = {link for path, _ in classes for link in path}
    alone: dict[str, list[int]] = {}
    for j, (link, _, _) in enumerate(background):
        if link not in shared:
            alone.setdefault(link, []).append(j)
    for link, groups in alone.items():
        _fill_one_link(capacity[link], groups, background, bg_rate)
    rem = {link: capacity[link] for link in shared}
    n_on = dict.fromkeys(shared, 0)
    on_link: dict[str, list[int]] = {link: [] for link in shared}
    bg_on: dict[str, list[int]] = {link: [] for link in shared}
    for i, (path, n) in enumerate(classes):
        for link in path:
            n_on[link] += n
            on_link[link].append(i)
    demands: list[tuple[float, int]] = []
    for j, (link, demand, n) in enumerate(background):
        if link in shared:
            n_on[link] += n
            bg_on[link].append(j)
            demands.append((demand, j))
    heapq.heapify(demands)
    open_classes = set(range(len(classes)))
    open_bg = {j for _, j in demands}
    level = 0.0
    while open_classes:
        busy = [(link, n) for link, n in n_on.items() if n > 0]
        step = min(rem[link] / n for link, n in busy)
        while demands and demands[0][1] not in open_bg:
            heapq.heappop(demands)
        if demands:
            step = min(step, demands[0][0] - level)
        step = max(step, 0.0)
        level += step
        frozen_classes: set[int] = set()
        frozen_bg: set[int] = set()
        for link, n in busy:
            rem[link] -= step * n
            if rem[link] <= _FULL * capacity[link]:
                frozen_classes.update(i for i in on_link[link] if i in open_classes)
                frozen_bg.update(j for j in bg_on[link] if j in open_bg)
        while demands and demands[0][0] - level <= _FULL * demands[0][0]:
            frozen_bg.add(heapq.heappop(demands)[1])
        for i in frozen_classes:
            class_rate[i] = level
            open_classes.discard(i)
            path, n = classes[i]
            for link in path:
                n_on[link] -= n
        for j in frozen_bg:
            if j in open_bg:
                bg_rate[j] = min(level, background[j][1])
                open_bg.discard(j)
                n_on[background[j][0]] -= background[j][2]
    # Background flows on shared links still open once every transfer is placed: their links
    # have room left for them alone.
    for link in shared:
        groups = [j for j in bg_on[link] if j in open_bg]
        if groups:
            left = rem[link] + sum(level * background[j][2] for j in groups)
            _fill_one_link(left, groups, background, bg_rate)
    return class_rate, bg_rate


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
        #: Bytes each node's NIC carried.
        self.nic_bytes = {n.name: 0 for n in scenario.nodes}
        self.users = dict.fromkeys(self.bandwidth, 0)
        self.link_bytes = dict.fromkeys(self.bandwidth, 0)
        self.link_busy = dict.fromkeys(self.bandwidth, 0.0)
        self.classes: dict[tuple[str, ...], _Class] = {}
        #: Background flows: key → {link: groups of (demand per flow, flows)}; each link's total
        #: demand; per link, its equal flows whatever their key (demand → how many) and the
        #: rate each such flow gets now; per link, all its background's bytes/s now.
        self.background: dict[str, dict[str, tuple[tuple[float, int], ...]]] = {}
        self.load = dict.fromkeys(self.bandwidth, 0.0)
        self.flows: dict[str, dict[float, int]] = {}
        self.flow_rate: dict[str, dict[float, float]] = {}
        self.bg_link_rate: dict[str, float] = {}
        self.loaded: set[str] = set()
        #: Links whose flows changed since their rates were filled (a link no transfer crosses
        #: keeps its rates until then).
        self._refill: set[str] = set()
        self.last = float(env.now)
        self.generation = 0
        self._pending = False
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
        self._later()
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

    def _carried(self, link: str, nbytes: float) -> None:
        self.link_bytes[link] += round(nbytes * self.weight[link])

    def moved(self, link: str) -> float:
        """Bytes moved (read, before compression) over ``link`` so far, those of transfers under
        way included — of transfers alone on a link no background crosses, such as the backup
        target. Read only: asking never settles the classes, so the figures do not depend on
        when it is asked."""
        work_ahead = float(self.env.now) - self.last
        out = self.link_bytes[link] / self.weight[link]
        for cls in self.classes.values():
            if link in cls.path:
                work = cls.work + cls.rate * work_ahead
                out += sum(max(0.0, n - (mark - work)) for mark, _, n, _ in cls.heap)
        return out

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
                    self._carried(link, moved)
                if not cls.heap and self.classes.get(cls.path) is cls:
                    del self.classes[cls.path]
                self._later()
                return moved
        return 0

    def set_background(self, key: str, rates: dict[str, float]) -> None:
        """Set the background of ``key`` to one flow per link of ``rates`` (link → bytes/s;
        empty: none)."""
        self.set_flows(key, {link: ((r, 1),) for link, r in rates.items()})

    def set_flows(self, key: str, flows: Mapping[str, Sequence[tuple[float, int]]]) -> None:
        """Set the background of ``key``: per link, groups of equal flows (demand per flow in
        bytes/s, how many); empty: none."""
        kept: dict[str, tuple[tuple[float, int], ...]] = {}
        for link, groups in flows.items():
            g = tuple((float(d), int(n)) for d, n in groups if d > 0 and n > 0)
            if g:
                kept[link] = g
        if kept == self.background.get(key, {}):
            return
        self._settle()
        old = self.background.pop(key, {})
        if kept:
            self.background[key] = kept
        for sign, table in ((-1, old), (1, kept)):
            for link, groups in table.items():
                per = self.flows.setdefault(link, {})
                for d, n in groups:
                    per[d] = per.get(d, 0) + sign * n
                    if not per[d]:
                        del per[d]
                self.load[link] += sign * sum(d * n for d, n in groups)
        for link in set(old) | set(kept):
            self._refill.add(link)
            if self.flows.get(link):
                self.loaded.add(link)
            else:
                self.flows.pop(link, None)
                self.flow_rate.pop(link, None)
                self.bg_link_rate.pop(link, None)
                self.load[link] = 0.0
                self.loaded.discard(link)
        self._later()

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
            for link, rate in self.bg_link_rate.items():
                self._carried(link, rate * dt)
        self.last = now

    def _allocate(self) -> None:
        """The max-min fair rates of every class and background flow now. Links no transfer
        crosses are filled on their own, again only when their flows changed."""
        classes = list(self.classes.values())
        shared = {link for c in classes for link in c.path}
        groups = [
            (link, d) for link in sorted(shared & self.flows.keys()) for d in self.flows[link]
        ]
        class_rates, bg_rates = max_min_rates(
            self.capacity,
            [(c.path, len(c.heap)) for c in classes],
            [(link, d / self.weight[link], self.flows[link][d]) for link, d in groups],
        )
        for c, r in zip(classes, class_rates, strict=True):
            c.rate = r
        for link in shared & self.flows.keys():
            self.flow_rate[link] = {}
            self._refill.add(link)  # filled with transfers: refill when they are gone
        for (link, d), r in zip(groups, bg_rates, strict=True):
            self.flow_rate[link][d] = r * self.weight[link]
        for link in self._refill - shared:
            if link in self.flows:
                w = self.weight[link]
                ds = list(self.flows[link])
                alone = [(link, d / w, self.flows[link][d]) for d in ds]
                _, rates = max_min_rates(self.capacity, [], alone)
                self.flow_rate[link] = {d: r * w for d, r in zip(ds, rates, strict=True)}
        self._refill &= shared
        for link in self.flows:
            self.bg_link_rate[link] = sum(
                self.flow_rate[link][d] * n for d, n in self.flows[link].items()
            )

    def _reschedule(self) -> None:
        """Finish what is done, recompute the rates, and set the timer for the next finish."""
        while True:
            finished = False
            for key, cls in list(self.classes.items()):
                while cls.heap and cls.heap[0][0] - cls.work <= _SLACK:
                    _, _, nbytes, done = heapq.heappop(cls.heap)
                    for link in cls.path:
                        self.users[link] -= 1
                        self._carried(link, nbytes)
                    done.succeed()
                    finished = True
                if not cls.heap:
                    del self.classes[key]
            self._allocate()
            next_in = float("inf")
            for cls in self.classes.values():
                if cls.rate > 0:
                    next_in = min(next_in, (cls.heap[0][0] - cls.work) / cls.rate)
            if next_in > 0 or not finished:
                break
        if next_in == float("inf"):
            return
        self.generation += 1
        gen = self.generation
        timer = self.env.timeout(max(next_in, 0.0))
        timer.callbacks.append(lambda _ev: self._wake(gen))

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
        self._settle()
        self._reschedule()

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
