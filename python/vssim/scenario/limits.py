"""What a scenario may ask for: the sizes, rates and durations the loader accepts, each limit with
where it comes from. A value past one is refused at load (:class:`~vssim.errors.ScenarioError`
naming the key and the limit), so no run starts that cannot fit in memory or cannot end. Cluster
counts (nodes, VMs per node and per cluster) are in :mod:`vssim.scenario.model` (spec §8).
"""

from __future__ import annotations

from vssim import engine
from vssim.units import TiB

#: A CSV is an NTFS volume; NTFS in Windows Server 2012 addresses 2^32 clusters of at most
#: 64 KiB: 256 TiB (Microsoft, "Large Logical Unit Support and Windows Server"). The same bound
#: holds a diff area, which lives on an NTFS volume.
MAX_CSV_SIZE = 256 * TiB
CSV_SIZE_SOURCE = "NTFS's largest volume in Windows Server 2012"
#: A VM disk is a VHDX: at most 64 TiB (MS-VHDX, Virtual Disk Size; the engine's own limit).
MAX_DISK_SIZE: int = engine.VHDX_MAX_VIRTUAL_SIZE
DISK_SIZE_SOURCE = "MS-VHDX's largest virtual disk"
#: Guest memory: Hyper-V in Windows Server 2012 gives a VM at most 1 TB (Microsoft, "Hyper-V
#: scalability in Windows Server 2012": 1 TB per VM, 4 TB per host).
MAX_VM_MEMORY = 1 * TiB
VM_MEMORY_SOURCE = "Hyper-V's largest VM in Windows Server 2012"
#: Any one duration a scenario gives — a guest's own VSS sequence, a fault's delay — is at most a
#: day (model choice: many times every VSS time limit, 10 s flush-and-hold, 60 s freeze, 30 min
#: of CSV backup state; the run's virtual clock must reach its end).
MAX_STEP_S = 86_400.0
#: A diurnal curve's period and its peak's offset: at most a week (model choice: the longest
#: cycle a backup plan looks at).
MAX_PERIOD_S = 7 * 86_400.0
#: Link bandwidths, bytes/s: from 1 Mbit/s (model choice: slower, a 64 TiB disk's copy would
#: take years of virtual time) to 1 Tbit/s (model choice: ten times the fastest Ethernet of the
#: time, 100 GbE).
MIN_BANDWIDTH = 1e6 / 8
MAX_BANDWIDTH = 1e12 / 8
