"""Workload classes: what a kind of guest does, taken from published figures.

A class is a set of workload keys (as a ``[[vms]] workload`` table writes them) that a VM starts
from before its own keys; a scenario assigns classes by share (``[workloads] mix`` for every VM,
``[generate] mix`` for the generated ones) or per VM (``workload = { class = "database" }``), and
may override a class's keys (``[workloads.database] write_iops = 300``). ``server`` is the
default class: it sets nothing, so its figures are :class:`~vssim.scenario.model.Workload`'s own
defaults (documented there, with their sources).

Each class's ``daily_change`` is the fraction of its data a day's writes change at the
change-tracking granularity (64 KiB); the engine sizes the hot spot so the generator reaches it
on each disk (``vssim.engine.calibrate``). ``band`` is the range that figure must lie in, from the
sources; ``tests/test_workload_classes.py`` measures every class with the exact engine against it
and ``vssim workloads`` shows the measured figures.

Sources (the README's calibration table lists each figure beside its source):

* [Veeam] Veeam Best Practices, "Repository storage" (bp.veeam.com/vbr/2_Design_Structures/
  D_Veeam_Components/D_backup_repositories/repositories%20storage.html): "Typical daily change
  rate is between 2% and 5% …; Database servers have high change rates … calculate with higher
  values like (e.g. 10%)".
* [LiveOptics] Live Optics, "Read/Write Ratio" (support.liveoptics.com/hc/en-us/articles/
  229590547): "The observed average R/W ratio globally is approximately R:W::70:30".
* [BP1024] Dell EqualLogic BP1024, "Scaling and Best Practices for Virtual Workload Environments
  with the FS7500", table 3: infrastructure and application servers 30 IOPS, 8 KiB, 70/30,
  random; OLTP SQL 1,200 IOPS at 8 KiB 70/30 + 300 log IOPS at 8 KiB, all writes; IIS web 100
  IOPS, 8/32 KiB, all reads.
* [BP1018] Dell EqualLogic BP1018 (XenDesktop, Login VSI "Light"), table 7: 7–8 IOPS a desktop in
  steady state, 0.2 % reads, writes of 9 KB.
* [Iometer] The Iometer file-server access pattern (Intel), as Tweakers.net describes it
  (tweakers.net/reviews/557/20): 100 % random, 80/20 reads/writes, 512 B–64 KB, 4 KB 60 %,
  512 B 10 %, 64 KB 10 % (1, 2, 8, 16, 32 KB: 5, 5, 2, 4, 4 %).
* Industry calculators (corroboration only): file servers 1–3 %/day, high-transaction
  databases 10–20 %.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class WorkloadClass:
    name: str
    #: What kind of guest it is, and where its figures come from.
    description: str
    #: Workload keys, as a ``[[vms]] workload`` table writes them (the VM's own keys win).
    keys: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The disk a generated VM of the class gets unless ``[generate]`` sets one:
    #: (virtual size, allocated) in bytes (model choice).
    disk: tuple[int, int] = (127 * GIB, 40 * GIB)
    #: The published range its daily change lies in (fraction of the data a day).
    band: tuple[float, float] = (0.02, 0.05)


def _keys(**kw: Any) -> Mapping[str, Any]:
    return MappingProxyType(kw)


#: The classes by name; ``server`` first (the default).
CLASSES: Mapping[str, WorkloadClass] = MappingProxyType(
    {
        c.name: c
        for c in (
            WorkloadClass(
                "server",
                "Windows infrastructure and application servers (AD, DNS, print, line-of-"
                "business): 30 IOPS, 8 KiB, 70/30 random [BP1024, LiveOptics]; 3 %/day, inside "
                "the typical 2–5 % [Veeam]. Workload()'s own defaults.",
                _keys(),
                disk=(127 * GIB, 40 * GIB),
                band=(0.02, 0.05),
            ),
            WorkloadClass(
                "file",
                "File servers: the Iometer file-server mix, 80/20 [Iometer], 50 IOPS (model "
                "choice); 2 %/day (calculators: 1–3 %).",
                _keys(
                    write_iops=10.0,
                    read_fraction=0.8,
                    sizes=[512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
                    weights=[10, 5, 5, 60, 2, 4, 4, 10],
                    daily_change=0.02,
                    hot_share=0.99,
                ),
                disk=(500 * GIB, 200 * GIB),
                band=(0.01, 0.03),
            ),
            WorkloadClass(
                "database",
                "SQL Server / Exchange: OLTP SQL's 1,200 data IOPS at 8 KiB 70/30 plus 300 log "
                "writes [BP1024] — 660 writes of 1,500 operations a second; 10 %/day, the "
                "figure to plan databases with [Veeam] (calculators: 10–20 %). 16 GiB of memory "
                "(model choice).",
                _keys(
                    write_iops=660.0,
                    read_fraction=0.56,
                    daily_change=0.10,
                    hot_share=0.999,
                    memory="16 GiB",
                    guest_vss_seconds=5.0,
                ),
                disk=(250 * GIB, 100 * GIB),
                band=(0.05, 0.20),
            ),
            WorkloadClass(
                "vdi",
                "Virtual desktops (persistent): 8 IOPS, 99.8 % writes of 9 KB on average "
                "[BP1018] (8 and 16 KiB, 7:1); 5 %/day (model choice: write-heavy on a small "
                "disk, above the server band). 2 GiB of memory (model choice).",
                _keys(
                    write_iops=8.0,
                    read_fraction=0.002,
                    sizes=[8192, 16384],
                    weights=[7, 1],
                    daily_change=0.05,
                    hot_share=0.995,
                    memory="2 GiB",
                    guest_vss_seconds=2.0,
                ),
                disk=(40 * GIB, 15 * GIB),
                band=(0.03, 0.08),
            ),
            WorkloadClass(
                "web",
                "IIS web servers: 100 IOPS at 8/32 KiB, reads [BP1024]; 5 % writes (model "
                "choice: the logs); 1 %/day (model choice: static content, below the server "
                "band).",
                _keys(
                    write_iops=5.0,
                    read_fraction=0.95,
                    sizes=[8192, 32768],
                    weights=[1, 1],
                    daily_change=0.01,
                    hot_share=0.998,
                ),
                disk=(60 * GIB, 20 * GIB),
                band=(0.005, 0.02),
            ),
        )
    }
)
DEFAULT_CLASS = "server"


def shares(mix: Mapping[str, float]) -> list[tuple[str, float]]:
    """The classes of a mix with a positive share, in the catalogue's order."""
    return [(name, float(mix[name])) for name in CLASSES if mix.get(name, 0) > 0]


def assign(n: int, mix: Mapping[str, float], seed: int) -> list[str]:
    """Classes for ``n`` VMs by ``mix`` (shares summing to 1): exact counts by largest remainder,
    in an order shuffled with ``seed`` (the same mix and seed always give the same list)."""
    parts = shares(mix)
    counts = [int(n * s) for _, s in parts]
    rest = sorted(range(len(parts)), key=lambda i: (-(n * parts[i][1] - counts[i]), i))
    for i in rest[: n - sum(counts)]:
        counts[i] += 1
    out = [name for (name, _), k in zip(parts, counts, strict=True) for _ in range(k)]
    random.Random(f"workload mix {seed}").shuffle(out)
    return out
