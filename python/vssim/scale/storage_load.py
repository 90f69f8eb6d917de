"""The CSVs' own traffic on their storage links, as background flows of the fair-share links
(:meth:`~vssim.scale.fair_share_links.FairShareLinks.set_background`): the copies, guest
snapshots and saved states of a backup share each CSV's storage with it.

* **Guest I/O**: every VM issuing I/O (running, on an up node, not paused for want of space)
  loads its CSV's storage with its mean rate of reads and writes — the engine's stream,
  operations per second × mean request size (a diurnal curve at its mean: model choice). Set at
  the start, and again the moment VMs stop (node down) or pause (Paused-Critical).
* **Copy-on-write**: every chunk volsnap copies is a read of the old chunk from the CSV and a
  write of it into the diff area — on the CSV too when the diff area lives there (2 × 16 KiB a
  chunk), else only the read. The engine knows the copies once a window has run, so the rate
  set is the last window's: the chunks it copied over its length, windows shorter than
  :data:`MIN_WINDOW_S` adding up until they reach it (model choice).

Redirected I/O (2008 R2) is the data path's: :mod:`vssim.scale.modelled_path`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vssim import engine
from vssim.sim.links import csv_link

if TYPE_CHECKING:
    from vssim.scale.fair_share_links import FairShareLinks
    from vssim.scale.model_cluster import ModelClusterBackend, Report

#: Shortest stretch of simulated time a copy-on-write rate is measured over (model choice).
MIN_WINDOW_S = 1.0


def guest_key(csv: str) -> str:
    """The background-load key of a CSV's guest I/O."""
    return f"guest:{csv}"


def cow_key(csv: str) -> str:
    """The background-load key of a CSV's copy-on-write I/O."""
    return f"cow:{csv}"


class StorageLoad:
    """Keeps each CSV's guest and copy-on-write background up to date (see the module doc)."""

    def __init__(self, backend: ModelClusterBackend, links: FairShareLinks) -> None:
        self.backend = backend
        self.links = links
        sc = backend.scenario
        self.csv_index = {c.name: i for i, c in enumerate(sc.csvs)}
        disk_csv = np.zeros(backend.model.vm_count, dtype=np.int64)
        for vm in sc.vms:
            for d in backend.disks[vm.name]:
                disk_csv[d] = self.csv_index[vm.csv]
        self.disk_csv = disk_csv
        #: Per CSV: copy-on-write bytes moved per chunk copied (the read, and the write when
        #: the diff area is on the CSV).
        self.bytes_per_chunk = np.asarray(
            [engine.DEFAULT_CHUNK_SIZE * (2 if c.diff_area_on_volume else 1) for c in sc.csvs],
            dtype=np.float64,
        )
        #: Per CSV: chunks and seconds not yet turned into a rate.
        self.pending_chunks = np.zeros(len(sc.csvs), dtype=np.float64)
        self.pending_s = np.zeros(len(sc.csvs), dtype=np.float64)
        backend.on_window.append(self.window)
        backend.on_paused.append(lambda csv, _vms, _t: self.guest(csv))
        backend.on_stopped.append(self.stopped)
        for c in sc.csvs:
            self.guest(c.name)

    def guest(self, csv: str) -> None:
        """Set ``csv``'s guest I/O: the mean rates of its VMs that issue I/O now."""
        b = self.backend
        rate = sum(b.io_rate[vm.name] for vm in b.scenario.vms_by_csv[csv] if b.active(vm.name))
        self.links.set_background(guest_key(csv), {csv_link(csv): rate})

    def stopped(self, vms: list[str]) -> None:
        for csv in sorted({self.backend.vm_csv[v] for v in vms}):
            self.guest(csv)

    def window(self, r: Report, before: dict[str, float]) -> None:
        """A window ran: each CSV it advanced gets the copy-on-write rate it measured."""
        chunks = np.bincount(
            self.disk_csv,
            weights=r["chunks_copied"].astype(np.float64),
            minlength=len(self.bytes_per_chunk),
        )
        b = self.backend
        for csv, t0 in before.items():
            i = self.csv_index[csv]
            self.pending_chunks[i] += chunks[i]
            self.pending_s[i] += b.csv_t[b.csv_id[csv]] - t0
            if self.pending_s[i] < MIN_WINDOW_S:
                continue
            rate = self.pending_chunks[i] * self.bytes_per_chunk[i] / self.pending_s[i]
            self.pending_chunks[i] = self.pending_s[i] = 0.0
            self.links.set_background(cow_key(csv), {csv_link(csv): float(rate)})
