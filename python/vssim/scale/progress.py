"""Where a modelled run is, as plain counts for a front end to render (:mod:`vssim.cli.progress`).

The runner (:mod:`.runner`) emits a :class:`RunProgress` when it has planned its snapshot sets
(``start``), every :data:`TICK_S` simulated seconds as the workload clock advances the engine's
cluster (``window``: that is where the wall time goes), after each snapshot set (``set``) and
after each backup (``backup``). The event says nothing about wall time: the front end has a clock.

The run's expected simulated length (:attr:`RunProgress.expected_s`) is what a time-left estimate
weighs the work by (the engine's cost grows with the simulated seconds it walks). Before a
backup copies anything it is the data-bound floor of :func:`backup_floor_s` (the bytes to read
over the run's narrowest links); once VMs are copied, the backup's elapsed simulated time over
the share of its VMs copied, if that is longer. Finished backups count their real length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from vssim.scale.schedule import BackupKind
from vssim.scenario import OsProfile, Scenario, Vm
from vssim.sim.records import VmCopy
from vssim.vss.enums import HResult
from vssim.vss.jobs import BackupJob

#: A ``window`` event at most every this many simulated seconds (model choice: the workload
#: clock's default window; a run whose window had to shrink does not flood its front end).
TICK_S = 60.0
#: Seconds in a day, for a workload's ``daily_change``.
DAY_S = 86_400.0


@dataclass(frozen=True)
class RunProgress:
    """One modelled run's counts at one instant of its virtual clock."""

    #: "start", "window", "set" or "backup" (see the module doc).
    event: str
    backups_done: int
    backups: int
    sets_done: int
    sets: int
    #: VM copies finished (read from the shadow copy, or failed) of the VMs the backups copy.
    vms_copied: int
    vms: int
    #: Simulated seconds reached, and the run's expected simulated end (revised as it goes).
    sim_s: float
    expected_s: float

    @property
    def fraction(self) -> float:
        """The share of the run's simulated time walked (0 to 1)."""
        return min(1.0, self.sim_s / self.expected_s) if self.expected_s > 0 else 0.0


#: Told as a modelled run goes (:func:`vssim.scale.runner.simulate`'s ``progress``).
Progress = Callable[[RunProgress], None]


def vm_bytes(vm: Vm, kind: BackupKind, since_s: float) -> float:
    """The bytes a backup of ``vm`` is expected to read (see :func:`backup_floor_s`)."""
    data = float(vm.allocated_bytes)
    if kind is BackupKind.INCREMENTAL:
        w = vm.workload
        daily = w.daily_change if w.daily_change is not None else w.hot_fraction
        data *= min(1.0, daily * since_s / DAY_S)
    return data


def backup_floor_s(
    sc: Scenario, kind: BackupKind, reads: Iterable[tuple[str, Vm]], since_s: float
) -> float:
    """The simulated seconds a backup's copies take at least: the bytes of ``reads`` (requester
    node, VM) over the backup target, each CSV's storage and — on ws2008r2, where a node reads
    one snapshot set at a time — each node's sets in a row. An incremental reads the VMs'
    daily change for ``since_s`` (capped at the data; model choice: change grows linearly, an
    over-estimate for hot spots). Protocol steps (freezes, snapshots) are left out: the
    estimate is revised as copies finish.
    """
    total = 0.0
    per_csv: dict[str, float] = {}
    per_node: dict[str, float] = {}
    for node, vm in reads:
        data = vm_bytes(vm, kind, since_s)
        total += data
        csv = sc.csv_by_name[vm.csv]
        per_csv[csv.name] = per_csv.get(csv.name, 0.0) + data / csv.bandwidth
        per_node[node] = per_node.get(node, 0.0) + data / csv.bandwidth
    # The target takes what is read shrunk by its compression.
    target = sc.links.backup_target_bandwidth * sc.target.compression
    floors = [total / target, *per_csv.values()]
    if sc.os is OsProfile.WS2008R2:
        floors.extend(per_node.values())
    return max(floors, default=0.0)


class _Copies(Protocol):
    """A snapshot set's data path, as far as progress reads it."""

    vm_copies: dict[str, VmCopy]


class RunCounter:
    """The counts of one run, kept as the runner tells it what happens; :meth:`emit` makes the
    event (nothing is counted when no one listens)."""

    def __init__(
        self,
        progress: Progress | None,
        start_s: float,
        interval_s: float,
        moved: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.progress = progress
        self.start_s, self.interval_s = start_s, interval_s
        #: Bytes the backup target has taken so far (the copies' progress, finished or not).
        self.moved = moved
        #: Per backup: its floor length (:func:`backup_floor_s`), the VMs it copies and the
        #: bytes it is expected to read (:func:`vm_bytes`).
        self.floors: list[float] = []
        self.backup_vms: list[int] = []
        self.backup_bytes: list[float] = []
        #: The bytes the current backup's VMs read as planned at their snapshots, and how many
        #: VMs that is (of the sets that ended; the live ones are read from their copies).
        self.planned_bytes = 0
        self.planned_vms = 0
        self.moved_before = 0.0
        #: When the running backup's copies were first seen moving data (its snapshots and
        #: freezes come before: a pace measured from the backup's start would count them twice).
        self.first_moved: float | None = None
        self.backups_done = 0
        self.backup_start: float | None = None
        self.last_end = 0.0
        self.copied = 0
        #: The sets still going (their VMs copied so far are counted from their copies).
        self.live: list[_Copies] = []
        self.last_tick = -TICK_S

    def planned(
        self, sc: Scenario, kinds: Sequence[BackupKind], plans: Sequence[Sequence[BackupJob]]
    ) -> None:
        for i, (kind, jobs) in enumerate(zip(kinds, plans, strict=True)):
            # The first backup of a run has no base: an incremental there is a full.
            since = self.interval_s + self.floors[-1] if self.floors else 0.0
            reads = [(j.node, s.vm) for j in jobs for s in j.selected]
            first = BackupKind.FULL if i == 0 else kind
            self.floors.append(backup_floor_s(sc, first, reads, since))
            self.backup_vms.append(len(reads))
            self.backup_bytes.append(sum(vm_bytes(vm, first, since) for _, vm in reads))

    def backup_started(self, now: float) -> None:
        self.backup_start = now
        self.moved_before = self.moved()
        self.first_moved = None
        self.planned_bytes = self.planned_vms = 0

    def backup_ended(self, now: float) -> None:
        self.backup_start, self.last_end = None, now
        self.backups_done += 1

    def set_started(self, path: _Copies) -> None:
        self.live.append(path)

    def set_ended(self, path: _Copies, vms: int) -> None:
        self.live.remove(path)
        self.copied += vms
        self.planned_vms += vms
        self.planned_bytes += sum(c.planned for c in path.vm_copies.values())

    def tick(self, now: float, sets_done: int, sets: int) -> None:
        """The workload clock advanced: an event every :data:`TICK_S` simulated seconds."""
        if now - self.last_tick >= TICK_S:
            self.last_tick = now
            self.emit("window", now, sets_done, sets)

    def emit(self, event: str, now: float, sets_done: int, sets: int) -> None:
        if self.progress is None:
            return
        copied = self.copied + sum(
            1
            for p in self.live
            for c in p.vm_copies.values()
            if c.copy_end is not None or c.hresult != HResult.S_OK
        )
        i = self.backups_done
        if self.backup_start is not None:
            # The running backup: its floor, or its pace so far over the share of its bytes
            # read (those planned at the snapshots taken, the a-priori mean for the rest).
            elapsed = now - self.backup_start
            vms = self.backup_vms[i]
            known = [c.planned for p in self.live for c in p.vm_copies.values()]
            known_vms = self.planned_vms + len(known)
            mean = self.backup_bytes[i] / vms if vms else 0.0
            total = self.planned_bytes + sum(known) + mean * max(0, vms - known_vms)
            share = (self.moved() - self.moved_before) / total if total > 0 else 0.0
            if share > 0 and self.first_moved is None:
                self.first_moved = now
            paced = 0.0
            if share > 0 and self.first_moved is not None and now > self.first_moved:
                lead = self.first_moved - self.backup_start
                paced = lead + (now - self.first_moved) / share
            length = max(self.floors[i], elapsed, paced)
            end, rest = self.backup_start + length, self.floors[i + 1 :]
            gaps = len(rest)
        elif i == len(self.floors):
            end, rest, gaps = now, [], 0
        else:
            end = max(now, self.start_s if i == 0 else self.last_end + self.interval_s)
            rest = self.floors[i:]
            gaps = max(0, len(rest) - 1)
        expected = end + sum(rest) + gaps * self.interval_s
        self.progress(
            RunProgress(
                event,
                i,
                len(self.floors),
                sets_done,
                sets,
                copied,
                sum(self.backup_vms),
                now,
                max(expected, now),
            )
        )
