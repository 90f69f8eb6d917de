"""A workload class's figures as vssim runs them: each class on its typical disk, one VM on the
exact engine for a day (every write generated, marked in its change tracker, mapped through its
VHDX layout) — what ``vssim workloads`` prints and the README's calibration table quotes.

The day's change is counted as an incremental backup would read it: change-tracking blocks
written in the 24 hours over the blocks of the disk's data; the growth is what the VHDX file grew
by. Beside them, the closed form the hot spot was sized with (``engine.change_fraction``), so a
reader sees the calibration hold on the per-write engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vssim import engine
from vssim.scenario import Workload, parse_scenario
from vssim.scenario.engine_streams import workload_spec
from vssim.scenario.workload_classes import CLASSES
from vssim.sim import freeze_costs
from vssim.units import TiB


@dataclass(frozen=True)
class ClassFigures:
    name: str
    workload: Workload
    disk_size: int
    allocated: int
    #: The spec the disk runs (its hot spot sized to the daily change).
    hot_fraction: float | None
    hot_share: float | None
    #: The daily change it is calibrated to, the closed form's and the exact engine's.
    target: float | None
    closed_form: float
    measured: float
    #: Bytes the VHDX file grew by in the measured time.
    file_growth: int
    seconds: float
    #: Reads' share of the operations the engine issued, and the mean request size.
    read_share: float
    mean_size: float
    #: The guest freeze's median (seconds, before its dirty-data flush).
    freeze_median_s: float


def class_workload(name: str) -> Workload:
    """The workload a VM of class ``name`` gets in a scenario that says nothing else."""
    raw = {
        "nodes": [{"name": "N1"}],
        "csvs": [
            {
                "name": "C1",
                "mount_point": "C:\\ClusterStorage\\Volume1",
                "coordinator": "N1",
                "size": "64 TiB",
            }
        ],
        "vms": [{"name": "V1", "node": "N1", "csv": "C1", "workload": {"class": name}}],
    }
    return parse_scenario(raw, Path(f"class-{name}.toml")).vms[0].workload


def measure(name: str, seconds: float = engine.DAY_S, seed: int = 1) -> ClassFigures:
    """Class ``name`` on its typical disk, run for ``seconds`` on the exact engine."""
    w = class_workload(name)
    size, alloc = CLASSES[name].disk
    spec = workload_spec(w)
    c = engine.ModelCluster()
    c.add_csv(64 * TiB)
    vm = c.add_vm(0, size, spec, allocated=alloc, seed=seed)
    before = c.file_size(vm)
    r = c.advance(0.0, seconds)
    ran = c.workload(vm)
    units = -(-alloc // engine.DEFAULT_CBT_BLOCK_SIZE)
    ops = int(r["writes"][vm]) + int(r["reads"][vm])
    return ClassFigures(
        name=name,
        workload=w,
        disk_size=size,
        allocated=alloc,
        hot_fraction=ran.hot_fraction,
        hot_share=ran.hot_share,
        target=w.daily_change,
        closed_form=engine.change_fraction(ran, size, alloc, int(seconds), seed=seed),
        measured=c.changed_blocks(vm) / units,
        file_growth=c.file_size(vm) - before,
        seconds=seconds,
        read_share=int(r["reads"][vm]) / ops if ops else 0.0,
        mean_size=spec.mean_size,
        freeze_median_s=freeze_costs.freeze_median(w),
    )
