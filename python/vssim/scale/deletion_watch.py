"""Diff-area overflow and a full volume at the instant they happen.

How it works: volsnap deletes a snapshot at the write that would overflow its CSV's diff area,
or that the volume holding the diff area has no room for; the engine reports that write's time,
but only once the CSV has been advanced past it — and the cluster is advanced in windows. So for
every CSV where a deletion can happen soon — a diff-area limit and a live snapshot, or free
space within reach of empty (:data:`WATCH_FREE_BYTES` plus what its VMs could move in a window)
— the watch asks the engine ahead of time (:meth:`ModelClusterBackend.foresee`: the next window,
run on a copy of the CSV) whether and when a deletion would happen, and sets a SimPy timer for
that instant. The prediction stays right while only time passes (the guests' streams are
fixed); whatever changes the CSV's future — a snapshot made or deleted, VMs stopped — asks
again, and a stale timer (older generation) does nothing. When the timer fires the CSV is
advanced through that write, the engine deletes the snapshot, and every copy reading it is
interrupted there and then: it fails with ``VSS_E_INSUFFICIENT_STORAGE`` and frees its stream
and its share of the links.

(Hyper-V's pause needs no timer: the engine pauses the VMs at the crossing write whatever the
windows, and their load leaves the links at the workload clock's next tick,
:mod:`vssim.scale.storage_load`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

from vssim.scenario.capacity import LOW_SPACE_WARNING_BYTES

if TYPE_CHECKING:
    from vssim.scale.model_cluster import ModelClusterBackend

#: The cause a copy is interrupted with.
SNAPSHOT_DELETED = "snapshot deleted: diff area full"
#: Free bytes below which a CSV without a diff-area limit is watched, beside twice what its VMs
#: move in a horizon (model choice: Hyper-V's warning level).
WATCH_FREE_BYTES = LOW_SPACE_WARNING_BYTES


@dataclass
class DeletionWatch:
    env: simpy.Environment
    backend: ModelClusterBackend
    #: How far ahead each prediction looks (seconds; the workload clock's window).
    horizon: float
    #: Per CSV: (generation, end of the predicted span).
    armed: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: The processes reading each (CSV, snapshot handle) now.
    readers: dict[tuple[str, int], list[simpy.Process]] = field(default_factory=dict)
    #: Predictions made (how often the engine ran a window ahead).
    predictions: int = 0

    def __post_init__(self) -> None:
        self.backend.on_changed = self.changed
        self.backend.on_deleted = self.deleted
        b = self.backend
        #: Per CSV: twice the bytes its VMs read and write in a horizon (a bound on what its
        #: free space can lose in one: copies and new blocks are at most the writes, and reads
        #: weigh as much again).
        self.reach = {
            c.name: 2.0
            * self.horizon
            * sum(b.io_rate[vm.name] for vm in b.scenario.vms_by_csv[c.name])
            for c in b.scenario.csvs
        }

    def _in_reach(self, csv: str) -> bool:
        """Whether the CSV's free space could run out soon."""
        return self.backend.free_bytes_of(csv) < WATCH_FREE_BYTES + self.reach[csv]

    def changed(self, csv: str, dirty: bool) -> None:
        b = self.backend
        gen, until = self.armed.get(csv, (0, -math.inf))
        t = b.csv_t[b.csv_id[csv]]
        if not dirty and t < until:
            return  # only time passed, inside the span already foreseen
        gen += 1
        c = b.scenario.csv_by_name[csv]
        live = b.has_live_snapshot(csv)
        full_volume = live and c.diff_area_on_volume and self._in_reach(csv)
        if not live or not (c.diff_area_limit is not None or full_volume):
            # Nothing to foresee: older timers are void; look again at the next window.
            self.armed[csv] = (gen, t)
            return
        until = t + self.horizon
        self.armed[csv] = (gen, until)
        self.predictions += 1
        when = b.foresee(csv, until).deletion_time
        if when is None:
            return
        timer = self.env.timeout(max(0.0, when - float(self.env.now)))
        timer.callbacks.append(lambda _ev: self._due(csv, gen, when))

    def _due(self, csv: str, gen: int, when: float) -> None:
        if self.armed.get(csv, (0, 0.0))[0] != gen:
            return
        # Through the write that overflows (windows are [t0, t1)).
        self.backend.advance_to(math.nextafter(when, math.inf), (csv,))

    def deleted(self, csv: str, handle: int, when: float) -> None:
        for proc in list(self.readers.get((csv, handle), ())):
            if proc.is_alive:
                proc.interrupt(SNAPSHOT_DELETED)

    def reading(self, csv: str, handle: int, proc: simpy.Process) -> None:
        self.readers.setdefault((csv, handle), []).append(proc)

    def done_reading(self, csv: str, handle: int, proc: simpy.Process) -> None:
        procs = self.readers.get((csv, handle), [])
        if proc in procs:
            procs.remove(proc)
