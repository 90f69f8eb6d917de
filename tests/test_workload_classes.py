"""Guest workloads that write where a guest writes (issue 12, item 1), measured on the exact
engine (every write generated and tracked), not on the closed form the hot spot is sized with."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from vssim import engine
from vssim.errors import InvalidArgumentError, ScenarioError
from vssim.scale.workload_figures import class_workload, measure
from vssim.scenario import Workload, parse_scenario
from vssim.scenario.engine_streams import workload_spec
from vssim.scenario.workload_classes import CLASSES
from vssim.units import GiB, TiB

HOUR = 3600.0


def one_vm(w: Workload, size: int = 127 * GiB, alloc: int = 40 * GiB) -> tuple[Any, int]:
    c = engine.ModelCluster()
    c.add_csv(64 * TiB)
    return c, c.add_vm(0, size, workload_spec(w), allocated=alloc, seed=7)


def day_change(w: Workload, size: int = 127 * GiB, alloc: int = 40 * GiB) -> float:
    c, vm = one_vm(w, size, alloc)
    c.advance(0.0, engine.DAY_S)
    return c.changed_blocks(vm) / (alloc // engine.DEFAULT_CBT_BLOCK_SIZE)


def test_a_default_vm_grows_its_vhdx_by_less_than_a_gib_in_8_hours() -> None:
    c, vm = one_vm(Workload())
    before = c.file_size(vm)
    r = c.advance(0.0, 8 * HOUR)
    assert int(r["writes"][vm]) > 200_000
    assert c.file_size(vm) - before < GiB


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_growth_per_day_grows_the_disk_by_that_rate(rate: float) -> None:
    w = Workload(growth_per_day=rate, daily_change=None, hot_fraction=0.02)
    c, vm = one_vm(w)
    before = c.allocated_bytes(vm)
    c.advance(0.0, 8 * HOUR)
    want = rate * 40 * GiB * 8 / 24
    assert c.allocated_bytes(vm) - before == pytest.approx(want, rel=0.05)


def test_the_default_workload_changes_2_to_5_percent_a_day() -> None:
    assert 0.02 <= day_change(Workload()) <= 0.05


@pytest.mark.parametrize("name", list(CLASSES))
def test_each_class_changes_what_its_band_says(name: str) -> None:
    f = measure(name)
    lo, hi = CLASSES[name].band
    assert lo <= f.measured <= hi, f
    # And the figures are the class's: its mix of reads, not one VM's copy of another's.
    assert f.read_share == pytest.approx(f.workload.read_fraction, abs=0.01)


@pytest.mark.parametrize("target", [0.015, 0.07, 0.2])
def test_daily_change_is_what_a_day_changes(target: float) -> None:
    assert day_change(Workload(daily_change=target)) == pytest.approx(target, rel=0.10)


def test_classes_shape_the_vms() -> None:
    raw: dict[str, Any] = {
        "cluster": {"seed": 3},
        "workloads": {
            "mix": {"server": 0.4, "file": 0.2, "database": 0.1, "vdi": 0.2, "web": 0.1},
            "database": {"write_iops": 300},
        },
        "generate": {"nodes": 4, "csvs": 2, "vms": 50, "workload": {"diurnal": True}},
        "vms": [
            {"name": "W1", "node": "NODE01", "csv": "Cluster Disk 1"},
            {"name": "W2", "node": "NODE01", "csv": "Cluster Disk 1"},
        ],
    }
    sc = parse_scenario(raw, Path("mix.toml"))
    gen = [v for v in sc.vms if v.name.startswith("VM")]
    counts = Counter(v.workload.workload_class for v in gen)
    assert counts == {"server": 20, "file": 10, "database": 5, "vdi": 10, "web": 5}
    for v in gen:
        w = v.workload
        assert (v.disks[0].virtual_size, v.disks[0].allocated_size) == CLASSES[
            w.workload_class
        ].disk
        assert w.diurnal_amplitude == 0.5
        # 14:00 on the scenario's clock (it starts at 09:00 by default): 5 hours in.
        assert w.diurnal_peak_s == 5 * HOUR
    db = next(v for v in gen if v.workload.workload_class == "database").workload
    assert (db.write_iops, db.daily_change, db.memory_bytes) == (300, 0.10, 16 * GiB)
    # The written VMs take classes from the mix too.
    assert all(v.workload.workload_class in CLASSES for v in sc.vms[:2])
    # The same file gives the same cluster.
    again = parse_scenario(raw, Path("mix.toml"))
    assert [v.workload for v in again.vms] == [v.workload for v in sc.vms]


def test_explicit_keys_override_the_class() -> None:
    w = class_workload("vdi")
    assert (w.write_iops, w.read_fraction, w.daily_change) == (8.0, 0.002, 0.05)
    raw = {
        "nodes": [{"name": "N"}],
        "csvs": [{"name": "C", "mount_point": "C:\\ClusterStorage\\Volume1", "coordinator": "N",
                  "size": "1 TiB"}],
        "vms": [
            {"name": "A", "node": "N", "csv": "C",
             "workload": {"class": "vdi", "write_iops": 30, "hot_fraction": 0.2}},
            {"name": "B", "node": "N", "csv": "C", "workload": {"class": "file", "sizes": [4096]}},
            {"name": "Z", "node": "N", "csv": "C", "workload": {"locality": "zipf"}},
        ],
    }  # fmt: skip
    a, b, z = (v.workload for v in parse_scenario(raw, Path("x.toml")).vms)
    # An explicit hot spot turns the calibration off; new sizes get equal weights.
    assert (a.write_iops, a.hot_fraction, a.daily_change) == (30, 0.2, None)
    assert (b.sizes, b.weights, b.daily_change) == ((4096,), (1.0,), 0.02)
    assert (z.locality, z.daily_change) == ("zipf", None)


@pytest.mark.parametrize(
    ("patch", "where", "expected"),
    [
        ({"workloads": {"mix": {"server": 0.5}}}, "workloads.mix", "summing to 1"),
        ({"workloads": {"mix": {"mainframe": 1.0}}}, "workloads.mix.mainframe", "workload class"),
        ({"workloads": {"sql": {"write_iops": 1}}}, "workloads.sql", "workload class"),
        ({"workloads": {"web": {"write_iops": -1}}}, "workloads.web.write_iops", ">= 0"),
        ({"generate": {"vms": 2, "mix": {"web": 2.0}}}, "generate.mix.web", "between 0 and 1"),
        ({"wl": {"class": "nosuch"}}, "vms[0].workload.class", "workload class"),
        ({"wl": {"locality": "log", "daily_change": 0.03}}, "vms[0].workload.daily_change", "hot"),
        ({"wl": {"daily_change": 1.5}}, "vms[0].workload.daily_change", "(0, 1)"),
        ({"wl": {"memory": "2 TiB"}}, "vms[0].workload.memory", "a size from 0"),
        ({"wl": {"diurnal": "yes"}}, "vms[0].workload.diurnal", "true or false"),
    ],
)
def test_bad_workload_tables_are_refused(patch: dict[str, Any], where: str, expected: str) -> None:
    raw: dict[str, Any] = {
        "nodes": [{"name": "N"}],
        "csvs": [{"name": "C", "mount_point": "C:\\ClusterStorage\\Volume1", "coordinator": "N",
                  "size": "1 TiB"}],
        "vms": [{"name": "A", "node": "N", "csv": "C", "workload": patch.pop("wl", {})}],
    }  # fmt: skip
    raw.update(patch)
    with pytest.raises(ScenarioError) as e:
        parse_scenario(raw, Path("bad.toml"))
    assert where in str(e.value)
    assert expected in str(e.value)


def test_an_unreachable_target_is_refused_with_the_reachable_bound() -> None:
    spec = engine.WorkloadSpec(iops=1.0, locality="hotspot", daily_change=0.5)
    with pytest.raises(InvalidArgumentError, match=r"daily_change.*at most"):
        engine.calibrate(spec, 127 * GiB, 40 * GiB)
