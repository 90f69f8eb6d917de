"""The CSVs' own traffic on their storage links, as background flows of the fair-share links
(:meth:`~vssim.scale.fair_share_links.FairShareLinks.set_background`): the copies, guest
snapshots and saved states of a backup share each CSV's storage with it.

* **Guest I/O**: every VM issuing I/O (running, on an up node, not paused for want of space)
  loads its CSV's storage with its mean rate of reads and writes — the engine's stream,
  operations per second × mean request size (a diurnal curve at its mean: model choice), one
  flow per VM. Set at
  the start, again the moment VMs stop (node down: a protocol event), and at every tick of the
  workload clock for the VMs paused (Paused-Critical) since the last one.
* **Copy-on-write**: every chunk volsnap copies is a read of the old chunk from the CSV and a
  write of it into the diff area — on the CSV too when the diff area lives there (2 × 16 KiB a
  chunk), else only the read. The engine knows the copies once time has passed, so at every
  tick the rate set is the last tick interval's: the CSV's chunks copied in it over its length,
  spread over the VMs issuing I/O (each VM's copies ride with its writes; model choice).

Both change only at the workload clock's ticks (every CSV is at that instant then, however the
protocol cut time into windows before it) or at protocol events, so how time is cut into
windows never changes a figure.

Redirected I/O (2008 R2) is the data path's: :mod:`vssim.scale.modelled_path`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vssim import engine
from vssim.sim.links import csv_link

if TYPE_CHECKING:
    from vssim.scale.fair_share_links import FairShareLinks
    from vssim.scale.model_cluster import ModelClusterBackend


def guest_key(csv: str) -> str:
    """The background-load key of a CSV's guest I/O."""
    return f"guest:{csv}"


def cow_key(csv: str) -> str:
    """The background-load key of a CSV's copy-on-write I/O."""
    return f"cow:{csv}"


def flows_of(backend: ModelClusterBackend, vms: list[str]) -> tuple[tuple[float, int], ...]:
    """The VMs' I/O as background flows: (mean rate, how many VMs at it), one group per rate."""
    count: dict[float, int] = {}
    for vm in vms:
        r = backend.io_rate[vm]
        count[r] = count.get(r, 0) + 1
    return tuple(sorted(count.items()))


class StorageLoad:
    """Keeps each CSV's guest and copy-on-write background up to date (see the module doc)."""

    def __init__(self, backend: ModelClusterBackend, links: FairShareLinks) -> None:
        self.backend = backend
        self.links = links
        sc = backend.scenario
        #: Per CSV: copy-on-write bytes moved per chunk copied (the read, and the write when
        #: the diff area is on the CSV).
        self.bytes_per_chunk = {
            c.name: engine.DEFAULT_CHUNK_SIZE * (2 if c.diff_area_on_volume else 1) for c in sc.csvs
        }
        #: Per CSV: its chunks copied at the last tick, and when that was.
        self.chunks_at = {c.name: 0 for c in sc.csvs}
        self.last_tick = 0.0
        self.paused_seen = 0
        backend.on_stopped.append(self.stopped)
        for c in sc.csvs:
            self.guest(c.name)

    def active(self, csv: str) -> list[str]:
        b = self.backend
        return [vm.name for vm in b.scenario.vms_by_csv[csv] if b.active(vm.name)]

    def guest(self, csv: str) -> None:
        """Set ``csv``'s guest I/O: a flow per VM that issues I/O now, at its mean rate."""
        self.links.set_flows(
            guest_key(csv), {csv_link(csv): flows_of(self.backend, self.active(csv))}
        )

    def stopped(self, vms: list[str]) -> None:
        for csv in sorted({self.backend.vm_csv[v] for v in vms}):
            self.guest(csv)

    def tick(self, now: float) -> None:
        """The workload clock's tick: every CSV is at ``now``. The VMs paused since the last
        tick leave their CSVs' guest I/O, and each CSV gets the copy-on-write rate of the
        interval."""
        b = self.backend
        if len(b.paused_at) != self.paused_seen:
            self.paused_seen = len(b.paused_at)
            for csv in sorted({b.vm_csv[vm] for vm in b.paused_at}):
                self.guest(csv)
        dt = now - self.last_tick
        if dt <= 0:
            return
        self.last_tick = now
        for csv, before in self.chunks_at.items():
            chunks = round(b.model.total_chunks_copied(b.csv_id[csv]))
            self.chunks_at[csv] = chunks
            rate = (chunks - before) * self.bytes_per_chunk[csv] / dt
            n = max(1, len(self.active(csv)))
            self.links.set_flows(cow_key(csv), {csv_link(csv): ((rate / n, n),)})
