"""The shared links of the modelled runs as Python held them before the engine's
``links::FairShare`` took them over (``vssim.scale.fair_share_links`` up to then, with the
engine's ``MaxMinLayout`` replaced by the call it made): the model the golden figures were
recorded with. ``test_fair_share_engine`` drives it and ``FairShareLinks`` through the same
random runs and checks every figure is the same float.

A copy kept for the tests only (the tool's rules live in the engine): every line below is the
old module's, bar the two names above."""

from __future__ import annotations

import heapq
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import simpy

from vssim import engine
from vssim.scenario import Csv, Scenario
from vssim.sim.links import TARGET, link_bandwidths, link_path

#: Bytes of a transfer left when it counts as done (floating-point slack).
_SLACK = 1e-3

#: How far below a link's capacity its background's total demand must stay for
#: :func:`_demands_if_they_fit` to answer (relative).
_FIT_MARGIN = 1e-9


class _Fill:
    """What ``engine.MaxMinLayout`` did: the layout held, each fill given the counts."""

    def __init__(
        self,
        capacities: list[float],
        paths: list[tuple[int, ...]],
        background: list[tuple[int, float, int]],
    ) -> None:
        self.capacities, self.paths, self.background = capacities, paths, background

    def rates(self, counts: list[int]) -> tuple[list[float], list[float]]:
        classes = list(zip(self.paths, counts, strict=True))
        return engine.max_min_rates(self.capacities, classes, self.background)


def _demands_if_they_fit(
    capacity: float, groups: Sequence[tuple[int, float, int]]
) -> list[float] | None:
    total = sum(d * n for _, d, n in groups)
    if total > capacity * (1.0 - _FIT_MARGIN):
        return None
    return [d for _, d, _ in groups]


@dataclass
class _Class:
    path: tuple[str, ...]
    #: ``path`` as indices of the links (:attr:`FairShareLinks.index`), what the engine takes.
    links: tuple[int, ...]
    work: float = 0.0
    rate: float = 0.0
    #: (finish mark, sequence, bytes, done event)
    heap: list[tuple[float, int, int, simpy.Event]] = field(default_factory=list)


class _Layout(NamedTuple):
    """What :meth:`FairShareLinks._layout` makes."""

    shared: set[str]
    filled: list[str]
    #: How many background groups each of ``filled`` has, in ``fill``'s order.
    counts: list[int]
    #: The engine's copy of the capacities, the classes' paths and the filled links' groups.
    fill: _Fill


class ReferenceLinks:
    """The links as ``FairShareLinks`` held them in Python (see the module doc)."""

    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        self.env = env
        self.bandwidth = link_bandwidths(scenario)
        #: Bytes a link carries per byte a transfer moves (the target: 1 / compression).
        self.weight = dict.fromkeys(self.bandwidth, 1.0)
        self.weight[TARGET] = 1.0 / scenario.target.compression
        #: Capacity in bytes moved (read) per second.
        self.capacity = {link: bw / self.weight[link] for link, bw in self.bandwidth.items()}
        #: Each link's index in the engine's arrays, and the capacities in that order.
        self.index = {link: i for i, link in enumerate(self.capacity)}
        self._capacities = list(self.capacity.values())
        #: Bytes each node's NIC carried.
        self.nic_bytes = {n.name: 0 for n in scenario.nodes}
        self.users = dict.fromkeys(self.bandwidth, 0)
        #: The links some transfer crosses now (``users`` > 0), so :meth:`_settle` visits only
        #: the busy ones.
        self._crossed: set[str] = set()
        #: The links :meth:`_settle` visits (``_crossed`` and ``loaded``), made again only when
        #: one of them changes (None: to be made).
        self._busy: tuple[str, ...] | None = None
        #: Bytes each link carried (:attr:`link_bytes`), but its background's since
        #: ``_bg_since[link]``, added when the link's background rate changes or is read.
        self._link_bytes = dict.fromkeys(self.bandwidth, 0)
        self._bg_since: dict[str, float] = {}
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
        #: Per link, its background groups as the engine takes them (:meth:`_groups`).
        self._group_args: dict[
            str, tuple[list[float], list[tuple[int, float, int]], list[int]]
        ] = {}
        #: Per link, the engine's rates its flow rates were last set from (:meth:`_set_flow_rates`).
        self._engine_rates: dict[str, list[float]] = {}
        #: Per link, the engine's rates for its flows with no transfer on it.
        self._alone_rates: dict[str, list[float]] = {}
        #: Counts the changes of the background flows (:meth:`set_flows`), so that
        #: :meth:`_layout` knows when what it made still holds.
        self._flows_version = 0
        self._layout_cache: tuple[tuple[Any, ...], _Layout] | None = None
        #: The layout and background rates the shared links' flows were last set from.
        self._last_fill: tuple[_Layout, list[float]] | None = None
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
            cls = self.classes[key] = _Class(key, tuple(self.index[link] for link in key))
        done = self.env.event()
        self.seq += 1
        seq = self.seq
        heapq.heappush(cls.heap, (cls.work + nbytes, seq, nbytes, done))
        for link in key:
            self.users[link] += 1
            if link not in self._crossed:
                self._crossed.add(link)
                self._busy = None
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

    def _release(self, link: str) -> None:
        """A transfer left ``link``."""
        self.users[link] -= 1
        if not self.users[link]:
            self._crossed.discard(link)
            self._busy = None

    def _carried(self, link: str, nbytes: float) -> None:
        self._link_bytes[link] += round(nbytes * self.weight[link])

    def _bg_pending(self, link: str) -> int:
        """``link``'s background bytes since ``_bg_since`` up to the last settle (its rate was
        constant meanwhile: one product, not one per settle)."""
        rate = self.bg_link_rate.get(link)
        if rate is None:
            return 0
        since = self._bg_since.get(link, self.last)
        return round(rate * (self.last - since) * self.weight[link])

    def _fold(self, link: str) -> None:
        """``link``'s background rate is about to change: count what it carried so far."""
        self._link_bytes[link] += self._bg_pending(link)
        self._bg_since[link] = self.last

    @property
    def link_bytes(self) -> dict[str, int]:
        """Bytes each link carried up to the last settle (after compression on the target):
        the transfers' and the background's. Read only, as :meth:`moved`."""
        return {link: n + self._bg_pending(link) for link, n in self._link_bytes.items()}

    def moved(self, link: str) -> float:
        """Bytes moved (read, before compression) over ``link`` so far, those of transfers under
        way included — of transfers alone on a link no background crosses, such as the backup
        target. Read only: asking never settles the classes, so the figures do not depend on
        when it is asked."""
        work_ahead = float(self.env.now) - self.last
        out = (self._link_bytes[link] + self._bg_pending(link)) / self.weight[link]
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
                    self._release(link)
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
            g = tuple([(float(d), int(n)) for d, n in groups if d > 0 and n > 0])
            if g:
                kept[link] = g
        if kept == self.background.get(key, {}):
            return
        self._settle()
        self._flows_version += 1
        self._busy = None
        old = self.background.pop(key, {})
        if kept:
            self.background[key] = kept
        all_flows, load = self.flows, self.load
        for sign, table in ((-1, old), (1, kept)):
            for link, groups in table.items():
                per = all_flows.setdefault(link, {})
                for d, n in groups:
                    left = per.get(d, 0) + sign * n
                    if left:
                        per[d] = left
                    else:
                        del per[d]
                load[link] += sign * sum([d * n for d, n in groups])
        # A redirected CSV's key sets the flows of every node's NIC at once: the per-link
        # caches below are dropped in one pass each.
        changed = old.keys() | kept.keys()
        self._refill |= changed
        for cache in (self._group_args, self._engine_rates, self._alone_rates):
            for link in changed:
                cache.pop(link, None)
        for link in changed:
            if all_flows.get(link):
                self.loaded.add(link)
            else:
                all_flows.pop(link, None)
                self.flow_rate.pop(link, None)
                self._fold(link)
                self.bg_link_rate.pop(link, None)
                load[link] = 0.0
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
            # Once per link a transfer or a background flow crosses.
            busy = self._busy
            if busy is None:
                busy = self._busy = tuple(self._crossed | self.loaded)
            link_busy = self.link_busy
            for link in busy:
                link_busy[link] += dt
        self.last = now

    def _groups(self, link: str) -> tuple[list[float], list[tuple[int, float, int]], list[int]]:
        """``link``'s background groups as the engine takes them — their demands (the keys of
        ``flows[link]``, in its order), (link index, demand in bytes moved, flows), and the
        flows — made once per change of its flows (:meth:`set_flows` drops them)."""
        got = self._group_args.get(link)
        if got is None:
            w, i = self.weight[link], self.index[link]
            per = self.flows[link]
            got = (list(per), [(i, d / w, n) for d, n in per.items()], list(per.values()))
            self._group_args[link] = got
        return got

    def _set_flow_rates(self, link: str, rates: list[float]) -> None:
        """``link``'s per-flow rates (bytes/s, in ``flows[link]``'s order) from the engine's, and
        its background total — unless the engine gave the same rates as last time for the same
        flows (then both are as they were)."""
        if self._engine_rates.get(link) == rates:
            return
        self._engine_rates[link] = rates
        ds, _, ns = self._groups(link)
        w = self.weight[link]
        per_flow = [r * w for r in rates]
        self.flow_rate[link] = dict(zip(ds, per_flow, strict=True))
        self._fold(link)
        self.bg_link_rate[link] = sum([r * n for r, n in zip(per_flow, ns, strict=True)])

    def _layout(self) -> _Layout:
        """The links the classes cross, those of them with background flows (sorted), those
        links' groups as the engine takes them and how many each has — made again only when a
        class came or went or the flows changed (a set's copies finish one by one: between two
        finishes only the classes' counts change)."""
        key = (tuple(self.classes), self._flows_version)
        cached = self._layout_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        shared = {link for path in self.classes for link in path}
        filled = sorted(shared & self.flows.keys())
        background: list[tuple[int, float, int]] = []
        counts: list[int] = []
        for link in filled:
            groups = self._groups(link)[1]
            background += groups
            counts.append(len(groups))
        paths = [c.links for c in self.classes.values()]
        fill = _Fill(self._capacities, paths, background)
        layout = _Layout(shared, filled, counts, fill)
        self._layout_cache = (key, layout)
        return layout

    def _allocate(self) -> float:
        """The max-min fair rates of every class and background flow now; returns the time to
        the next finish (inf: none). Links no transfer crosses are filled on their own, again
        only when their flows changed; a link's background total is summed again only when its
        rates were filled, and the links the classes share are not looked at one by one when
        the filling gave their flows the same rates as last time for the same layout (between
        two finishes of a set's copies, mostly)."""
        classes = list(self.classes.values())
        layout = self._layout()
        shared, filled, counts, fill = layout
        class_rates, bg_rates = fill.rates([len(c.heap) for c in classes])
        next_in = float("inf")
        for c, r in zip(classes, class_rates, strict=True):
            c.rate = r
            if r > 0:
                next_in = min(next_in, (c.heap[0][0] - c.work) / r)
        last = self._last_fill
        if last is None or last[0] is not layout or last[1] != bg_rates:
            at = 0
            for link, n in zip(filled, counts, strict=True):
                self._set_flow_rates(link, bg_rates[at : at + n])
                at += n
            self._last_fill = (layout, bg_rates)
        for link in self._refill - shared:
            if link in self.flows:
                self._fill_alone(link)
        # Those filled with transfers are filled again when the transfers are gone.
        self._refill = (self._refill & shared) | set(filled)
        return next_in

    def _fill_alone(self, link: str) -> None:
        """The rates of ``link``'s flows with no transfer on it. The same flows alone on the same
        link fill the same way: computed once per change of the link's flows. On a link that
        weighs a byte as a byte (all but a compressing target) whose flows fit, straight from
        the flows: what the general path below computes, float for float — the engine's groups
        ``(index, d / 1.0, n)`` are the demands themselves, :func:`demands_if_they_fit` gives
        them back, each flow's rate is its demand times 1.0, and the link's total is the sum of
        ``d × n`` in the flows' order, the very sum the fit was tested with. (A 2008 R2 set's
        redirected I/O fills every node's NIC this way, twice a set.)"""
        rates = self._alone_rates.get(link)
        if rates is None and self.weight[link] == 1.0:
            per = self.flows[link]
            total = sum([d * n for d, n in per.items()])
            if total <= self._capacities[self.index[link]] * (1.0 - _FIT_MARGIN):
                rates = self._alone_rates[link] = list(per)
                if self._engine_rates.get(link) != rates:
                    self._engine_rates[link] = rates
                    self.flow_rate[link] = dict(zip(rates, rates, strict=True))
                    self._fold(link)
                    self.bg_link_rate[link] = total
                return
        if rates is None:
            groups = self._groups(link)[1]
            rates = _demands_if_they_fit(self._capacities[self.index[link]], groups)
            if rates is None:
                _, rates = engine.max_min_rates(self._capacities, [], groups)
            self._alone_rates[link] = rates
        self._set_flow_rates(link, rates)

    def _reschedule(self) -> None:
        """Finish what is done, recompute the rates, and set the timer for the next finish."""
        while True:
            finished = False
            for key, cls in list(self.classes.items()):
                while cls.heap and cls.heap[0][0] - cls.work <= _SLACK:
                    _, _, nbytes, done = heapq.heappop(cls.heap)
                    for link in cls.path:
                        self._release(link)
                        self._carried(link, nbytes)
                    done.succeed()
                    finished = True
                if not cls.heap:
                    del self.classes[key]
            next_in = self._allocate()
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
