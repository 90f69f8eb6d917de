"""What freezing costs: how long a guest's own VSS sequence takes, what it flushes, and what the
host's flush-and-hold flushes — the one home of these model figures (the protocol's windows are
:mod:`vssim.vss.limits`'s, the fixed step times :mod:`vssim.sim.costs`'s).

* **The guest's writers prepare and freeze** (seed step ④): a lognormal draw per VM and backup,
  seeded by the scenario seed, the VM's GUID and the instant it starts (so a rerun draws the
  same, two backups of a VM draw apart). Its median is the VM's ``guest_vss_seconds`` times
  ``1 + write_iops / FREEZE_LOAD_WRITES``: a guest writing more has more to quiesce (model
  choice). ``FREEZE_SIGMA`` spreads it (model choice: p95 ≈ 2.3 × the median).
* **Then the guest flushes its dirty data** to its VHDX through the CSV: its write rate times
  ``DIRTY_AGE_S``. Windows' cache manager has its lazy writer write an eighth of the dirty pages
  each second (Russinovich, Solomon, Ionescu, *Windows Internals*, 6th ed., part 2, ch. 11,
  "Lazy writing"), so about eight seconds of writes are dirty at any time.
* **The host's flush** (flush-and-hold, step ⑦) writes what is outstanding on the set's volumes:
  their running VMs' write rate times ``HOST_OUTSTANDING_S`` (model choice: Hyper-V writes its
  virtual disks unbuffered, so only about a second of I/O is in flight or in NTFS's metadata),
  at each CSV's storage bandwidth, after the provider's fixed ``costs.FLUSH_S``.
"""

from __future__ import annotations

import math
import random

from vssim.scenario import Csv, Scenario, Vm, Workload

#: Writes per second at which a guest's freeze median doubles (model choice).
FREEZE_LOAD_WRITES = 500.0
#: The lognormal's σ (of the natural log of the seconds; model choice).
FREEZE_SIGMA = 0.5
#: Seconds of a guest's writes its cache holds dirty (the lazy writer's 1/8 a second).
DIRTY_AGE_S = 8.0
#: Seconds of a volume's writes outstanding when the host flushes it (model choice).
HOST_OUTSTANDING_S = 1.0


def write_rate(vm: Vm) -> float:
    """Bytes a second the VM's guest writes."""
    return vm.workload.write_bytes_per_s


def freeze_median(w: Workload) -> float:
    """The median of a guest's prepare-and-freeze draw, in seconds."""
    return w.guest_vss_seconds * (1.0 + w.write_iops / FREEZE_LOAD_WRITES)


def guest_freeze_s(sc: Scenario, vm: Vm, at: float) -> float:
    """Seconds the VM's guest writers take to prepare and freeze, starting at ``at``."""
    median = freeze_median(vm.workload)
    if median <= 0:
        return 0.0
    rng = random.Random(f"guest freeze {sc.seed} {vm.guid} {at:.6f}")
    return median * math.exp(FREEZE_SIGMA * rng.gauss(0.0, 1.0))


def guest_flush_bytes(vm: Vm) -> int:
    """Bytes the guest flushes to its disks before its snapshot: its dirty data."""
    return int(write_rate(vm) * DIRTY_AGE_S)


def host_flush_s(sc: Scenario, volumes: tuple[Csv, ...]) -> float:
    """Seconds the host's flush of the set's volumes writes their outstanding data (the
    volumes flush side by side: the slowest one counts)."""
    longest = 0.0
    for csv in volumes:
        outstanding = sc.running_write_rate_by_csv[csv.name] * HOST_OUTSTANDING_S
        longest = max(longest, outstanding / csv.bandwidth)
    return longest
