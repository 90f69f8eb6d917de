"""Diff-area overflow at the instant it happens.

How it works: volsnap deletes a snapshot at the write that would overflow its CSV's diff area;
the engine reports that write's time, but only once the CSV has been advanced past it — and the
cluster is advanced in windows. So for every CSV with a diff-area limit and a live snapshot, the
watch asks the engine ahead of time (:meth:`ModelClusterBackend.first_deletion`: the next
window, run on a copy of the CSV) whether and when a deletion would happen, and sets a SimPy
timer for that instant. The prediction stays right while only time passes (the guests' streams
are fixed); whatever changes the CSV's future — a snapshot made or deleted, VMs stopped — asks
again, and a stale timer (older generation) does nothing. When the timer fires the CSV is
advanced through that write, the engine deletes the snapshot, and every copy reading it is
interrupted there and then: it fails with ``VSS_E_INSUFFICIENT_STORAGE`` and frees its stream
and its share of the links.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

if TYPE_CHECKING:
    from vssim.scale.model_cluster import ModelClusterBackend

#: The cause a copy is interrupted with.
SNAPSHOT_DELETED = "snapshot deleted: diff area full"


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

    def changed(self, csv: str, dirty: bool) -> None:
        b = self.backend
        if b.scenario.csv_by_name[csv].diff_area_limit is None:
            return
        gen, until = self.armed.get(csv, (0, -math.inf))
        t = b.csv_t[b.csv_id[csv]]
        if not dirty and t < until:
            return  # only time passed, inside the span already foreseen
        gen += 1
        if not b.has_live_snapshot(csv):
            self.armed[csv] = (gen, math.inf)
            return
        until = t + self.horizon
        self.armed[csv] = (gen, until)
        self.predictions += 1
        got = b.first_deletion(csv, until)
        if got is None:
            return
        when = got[1]
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
