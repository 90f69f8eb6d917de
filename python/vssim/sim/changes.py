"""Changed-block tracking for incremental and differential backups: the blocks a VM's guest
changed over an interval, counted with the engine's :class:`~vssim.engine.ChangeTracker` (64 KiB
blocks, as Hyper-V's resilient change tracking would report them) over the guest's seeded write
stream for that interval. At most :data:`CHANGE_WRITES_CAP` writes are generated per interval:
beyond it the count is a lower bound (hot-spot workloads saturate long before)."""

from __future__ import annotations

import zlib

from vssim import engine
from vssim.scenario import Scenario, Vm
from vssim.workloads import hot_spot_writes

#: Guest writes generated per VM and interval for change tracking.
CHANGE_WRITES_CAP = 65_536


def changed_bytes(scenario: Scenario, vm: Vm, seconds: float, salt: int = 0) -> int:
    """Bytes of ``vm``'s disks changed in ``seconds`` of its workload (never more than it has
    allocated)."""
    size = vm.allocated_bytes
    writes = int(vm.workload.write_iops * max(0.0, seconds))
    if writes == 0 or size < 64 * 1024:
        return 0
    n = min(writes, CHANGE_WRITES_CAP)
    seed = scenario.seed * 1_000_003 + salt * 7919 + zlib.crc32(vm.name.encode()) + 17
    stream = hot_spot_writes(n, size, seed=seed)
    cbt = engine.ChangeTracker(str(vm.guid), size)
    cbt.mark(stream.offsets, stream.lengths)
    return min(cbt.changed_bytes, size)
