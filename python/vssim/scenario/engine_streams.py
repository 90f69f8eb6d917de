"""How a scenario VM's workload becomes the engine's I/O streams: its
:class:`engine.WorkloadSpec` (built once per VM, for :meth:`engine.ModelCluster.add_vm` and
:class:`engine.WorkloadGenerator` alike) and each disk's stream key."""

from __future__ import annotations

from vssim import engine
from vssim.scenario.guids import derive_guid
from vssim.scenario.model import Vm, Workload


def stream_seed(scenario_seed: int, vm: Vm, disk: int) -> int:
    """The engine stream key of one VM disk: 64 bits of a UUID-5 of (seed, VM GUID, disk)."""
    return derive_guid(scenario_seed, "workload", vm.guid, disk).int & (2**64 - 1)


def workload_spec(w: Workload) -> engine.WorkloadSpec:
    """The engine's spec of a VM's workload, built once for all its disks (and checked there);
    its daily-change target is calibrated per disk when the disk is added (the disk's data is its
    allocated extent)."""
    return engine.WorkloadSpec(
        iops=w.iops,
        read_fraction=w.read_fraction,
        sizes=list(w.sizes) or None,
        weights=list(w.weights) or None,
        locality=w.locality,
        hot_fraction=w.hot_fraction,
        hot_share=w.hot_share,
        theta=w.theta,
        region_fraction=w.region_fraction,
        diurnal_amplitude=w.diurnal_amplitude,
        diurnal_period_s=w.diurnal_period_s,
        diurnal_peak_s=w.diurnal_peak_s,
        growth_per_day=w.growth_per_day,
        daily_change=w.daily_change,
    )
