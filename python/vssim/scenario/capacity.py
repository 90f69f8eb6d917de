"""A CSV's space as Hyper-V acts on it: the free-space levels, and the warnings a scenario gets at
load when its CSVs are overcommitted or start (nearly) full.

Hyper-V polls the free space of the volumes that hold VM files: "If the free space falls under 2
gigabyte we will start to log warning messages in the event log. If the free space falls under
200 megabyte we will pause the virtual machine and mark it as 'Paused-Critical'" (Ben Armstrong,
Microsoft, "Why is my virtual machine Paused-Critical? [Hyper-V]", Virtual PC Guy blog,
2009-04-22); only VMs with dynamic or differencing disks are paused, fixed disks are not (John
Savill, *Mastering Hyper-V 2016*, ch. 7, for Windows Server 2012 R2). A paused VM stays paused
until an operator resumes it after freeing space (Savill, ibid., for 2016; model choice for
2008 R2 and 2012). Windows' MB and GB are read as 2^20 and 2^30 bytes (model choice).

A CSV's free space is its size less its VM files and, since volsnap keeps the diff area (shadow
storage) on the volume itself unless told otherwise (spec §9), less the diff area while
snapshots live. The engine tracks it write by write (:class:`vssim.engine.ModelCluster`,
``add_csv(…, warn_below=, pause_below=, diff_area_on_volume=)``).
"""

from __future__ import annotations

from collections.abc import Iterable

from vssim.scenario.model import Csv, DiskType, ScenarioWarning, Vm
from vssim.units import GiB, MiB

#: Below this many free bytes Hyper-V logs low-space warnings (Armstrong 2009: "2 gigabyte").
LOW_SPACE_WARNING_BYTES = 2 * GiB
#: Below this many free bytes Hyper-V pauses VMs with dynamic or differencing disks
#: (Paused-Critical; Armstrong 2009: "200 megabyte"; Savill 2016 for 2012 R2).
PAUSED_CRITICAL_BYTES = 200 * MiB


def pauses_when_full(vm: Vm) -> bool:
    """Whether Hyper-V pauses ``vm`` when its CSV runs low: it has a disk that grows (dynamic or
    differencing); fixed disks have all their space already."""
    return any(d.type is not DiskType.FIXED for d in vm.disks)


def _size(n: float) -> str:
    for unit, div in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if abs(n) >= div:
            return f"{n / div:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def capacity_warnings(file: str, csvs: Iterable[Csv], vms: Iterable[Vm]) -> list[ScenarioWarning]:
    """Per CSV: virtual disk sizes that overcommit it (the ratio Σ virtual / CSV size), and an
    allocation that leaves less free than Hyper-V's warning or pause level at the start."""
    by_csv: dict[str, list[Vm]] = {}
    for vm in vms:
        by_csv.setdefault(vm.csv, []).append(vm)
    out: list[ScenarioWarning] = []
    for i, c in enumerate(csvs):
        mine = by_csv.get(c.name, [])
        virtual = sum(d.virtual_size for vm in mine for d in vm.disks)
        allocated = sum(vm.allocated_bytes for vm in mine)
        where = f"csvs[{i}]"
        ratio = virtual / c.size
        if ratio > 1.0:
            growing = sum(1 for vm in mine if pauses_when_full(vm))
            out.append(
                ScenarioWarning(
                    file,
                    where,
                    "overcommit",
                    f"CSV {c.name!r}: its VMs' virtual disks total {_size(virtual)} on "
                    f"{_size(c.size)} — overcommitted {ratio:.2f}× (Σ virtual / CSV size); "
                    f"{growing} VM(s) with dynamic disks are paused (Paused-Critical) if the "
                    f"free space falls below {_size(PAUSED_CRITICAL_BYTES)}",
                    ratio,
                )
            )
        free = c.size - allocated
        if free < LOW_SPACE_WARNING_BYTES:
            level = (
                f"below Hyper-V's {_size(PAUSED_CRITICAL_BYTES)} level: its VMs with dynamic "
                "disks are paused (Paused-Critical) from the start"
                if free < PAUSED_CRITICAL_BYTES
                else f"below Hyper-V's {_size(LOW_SPACE_WARNING_BYTES)} warning level"
            )
            out.append(
                ScenarioWarning(
                    file,
                    where,
                    "low space",
                    f"CSV {c.name!r} starts with {_size(free)} free of {_size(c.size)} "
                    f"(allocated {_size(allocated)}): {level}",
                    free / c.size,
                )
            )
    return out
