"""Freezes and downtime that vary, saved VMs that stop, profile limits and change tracking
(issue 12, items 4 and 5), on modelled runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

import vssim
from vssim.errors import ScenarioError
from vssim.report import capacity_plan
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scenario import load_scenario, parse_scenario
from vssim.sim import freeze_costs
from vssim.vss.profile_limits import LIMITS, beyond_supported

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def small_cluster(os: str = "ws2012", nodes: int = 4, **gen: Any) -> dict[str, Any]:
    return {
        "cluster": {"name": "T", "os": os, "seed": 5, **gen.pop("cluster", {})},
        "links": {"backup_target_bandwidth": "2 GB/s", "csv_bandwidth": "1 GB/s"},
        "generate": {
            "nodes": nodes,
            "csvs": 2,
            "vms": 40,
            "disk_size": "8 GiB",
            "allocated": "2 GiB",
            "integration_services": 0.9,
            **gen,
        },
    }


def test_freezes_vary_and_split_into_guest_and_write_hold() -> None:
    r = vssim.run(parse_scenario(small_cluster(), Path("t.toml")), "full")
    frozen = r.vms.filter(pl.col("frozen") & pl.col("online"))
    assert frozen.height > 30
    f = frozen["freeze_s"]
    p50, p95 = f.quantile(0.5, "linear"), f.quantile(0.95, "linear")
    assert p50 is not None
    assert p95 is not None
    assert p50 < p95 < f.max()  # type: ignore[operator]
    # freeze = the guest's own (drawn) + the host's write-hold (the set's, the same for its VMs).
    assert ((frozen["guest_freeze_s"] + frozen["write_hold_s"] - f).abs() < 1e-9).all()
    assert frozen["guest_freeze_s"].n_unique() == frozen.height
    per_set = frozen.group_by("job").agg(pl.col("write_hold_s").n_unique())
    assert (per_set["write_hold_s"] == 1).all()
    assert (frozen["write_hold_s"] > 0).all()


def test_a_busier_guest_freezes_longer() -> None:
    busy = small_cluster(workload={"write_iops": 1000, "daily_change": 0.3})
    quiet = vssim.run(parse_scenario(small_cluster(), Path("q.toml")), "full").vms
    loud = vssim.run(parse_scenario(busy, Path("b.toml")), "full").vms
    online = pl.col("frozen") & pl.col("online")
    q, b = (t.filter(online)["guest_freeze_s"].median() for t in (quiet, loud))
    assert b > 2 * q  # type: ignore[operator]
    sc = parse_scenario(busy, Path("b.toml"))
    assert freeze_costs.guest_flush_bytes(sc.vms[0]) == (1000 * 8192 * 8)


def test_saved_vms_write_nothing_while_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[tuple[bool, int]]] = {}
    original = ModelClusterBackend.set_saved

    def watch(self: ModelClusterBackend, vm: str, saved: bool) -> None:
        if not saved:
            seen[vm].append((saved, self.vm_total("writes", vm)))
        original(self, vm, saved)
        if saved:
            seen.setdefault(vm, []).append((saved, self.vm_total("writes", vm)))

    monkeypatch.setattr(ModelClusterBackend, "set_saved", watch)
    sc = parse_scenario(small_cluster(integration_services=0.5), Path("s.toml"))
    r = vssim.run(sc, "full")
    down = r.vms.filter(pl.col("downtime_s") > 0)
    assert down.height > 5
    assert set(seen) == set(down["vm"].to_list())
    for vm, marks in seen.items():
        assert [s for s, _ in marks] == [True, False], vm
        assert marks[0][1] == marks[1][1], vm  # no write between save and resume
    # Downtime is the memory at the CSV's storage rate, there and back, plus the snapshot.
    mem = sc.vms[0].workload.memory_bytes
    assert (down["downtime_s"] > 2 * mem / sc.csvs[0].bandwidth).all()


def test_memory_drives_saved_state_time() -> None:
    small = small_cluster(integration_services=0.0, workload={"memory": "1 GiB"})
    big = small_cluster(integration_services=0.0, workload={"memory": "8 GiB"})
    d = [
        vssim.run(parse_scenario(raw, Path("m.toml")), "full").vms["downtime_s"].median()
        for raw in (small, big)
    ]
    assert d[1] > 4 * d[0]  # type: ignore[operator]


def test_the_same_vms_full_backup_reads_the_same_bytes_on_both_profiles() -> None:
    read = {
        os: vssim.run(parse_scenario(small_cluster(os), Path(f"{os}.toml")), "full")
        .summary["bytes_read"]
        .item()
        for os in ("ws2008r2", "ws2012")
    }
    assert read["ws2008r2"] == pytest.approx(read["ws2012"], rel=0.02)


def test_a_17_node_2008r2_cluster_is_beyond_the_supported_limit(tmp_path: Path) -> None:
    raw = small_cluster("ws2008r2", nodes=17)
    sc = parse_scenario(raw, Path("n17.toml"))
    notes = beyond_supported(sc)
    assert len(notes) == 1
    assert "beyond the supported limit of 16 nodes" in notes[0]
    r = vssim.run(sc, "full")
    assert r.summary["beyond_supported_limits"].to_list() == [notes[0]]
    for p in r.write_parquet(tmp_path / "out"):
        assert pl.read_parquet_metadata(p)["vssim.beyond_supported_limits"] == notes[0]
    # The same cluster on 2012 is supported; 16 nodes on 2008 R2 too.
    assert beyond_supported(parse_scenario(small_cluster("ws2012", nodes=17), Path("a"))) == ()
    assert beyond_supported(parse_scenario(small_cluster("ws2008r2", nodes=16), Path("b"))) == ()
    # The plan says it in its header and its advice.
    f = tmp_path / "n17.toml"
    lines = [
        "[cluster]",
        'name = "N17"',
        'os = "ws2008r2"',
        "[generate]",
        "nodes = 17",
        "csvs = 2",
        "vms = 20",
        'disk_size = "4 GiB"',
        'allocated = "1 GiB"',
        "[plan]",
        'profiles = ["ws2008r2"]',
        'window = "8 h"',
        "fractions = [0.5]",
        "concurrency = [1]",
    ]
    f.write_text("\n".join(lines) + "\n")
    rep = capacity_plan.build(f, tmp_path / "plan")
    md = rep.markdown.read_text()
    header = md.split("##", 1)[0]
    assert "beyond the supported limit of 16 nodes" in header
    assert any("beyond the supported limit of 16 nodes" in s for s in rep.advice["ws2008r2"])


def test_running_vms_per_node_and_cluster_limits() -> None:
    raw = small_cluster("ws2008r2", nodes=2, vms=1001, disk_size="1 GiB", allocated="64 MiB")
    notes = beyond_supported(parse_scenario(raw, Path("v.toml")))
    lim = LIMITS[parse_scenario(raw, Path("v.toml")).os]
    assert len(notes) == 2
    assert f"{lim.vms_per_cluster:,} running VMs per cluster" in notes[0]
    assert f"{lim.vms_per_node} running VMs per node" in notes[1]
    # Stopped VMs do not count.
    idle = small_cluster("ws2008r2", nodes=2, vms=1001, disk_size="1 GiB", allocated="64 MiB")
    idle["generate"]["running"] = 0.0
    assert beyond_supported(parse_scenario(idle, Path("i.toml"))) == ()


def test_without_change_tracking_an_incremental_reads_whole_files() -> None:
    out = {}
    for tracking in ("filter", "none"):
        raw = small_cluster(cluster={"change_tracking": tracking})
        r = vssim.run(parse_scenario(raw, Path("c.toml")), ["full", "incremental"], interval_s=3600)
        s = r.summary.sort("backup")["bytes_read"].to_list()
        inc = r.vms.filter(pl.col("kind") == "incremental")
        out[tracking] = (s, inc["incremental"].to_list())
    (full_f, inc_f), flags_f = out["filter"]
    (full_n, inc_n), flags_n = out["none"]
    assert inc_f < 0.05 * full_f
    assert all(flags_f)
    assert inc_n == pytest.approx(full_n, rel=0.02)
    assert not any(flags_n)
    with pytest.raises(ScenarioError, match="change_tracking"):
        parse_scenario(small_cluster(cluster={"change_tracking": "rct"}), Path("x.toml"))


def test_the_64_node_2008r2_example_says_it_is_beyond_its_limits() -> None:
    sc = load_scenario(EXAMPLES / "ws2008r2-64n-4000vm.toml")
    notes = beyond_supported(sc)
    assert any("64 nodes" in n and "16 nodes" in n for n in notes)
    assert beyond_supported(load_scenario(EXAMPLES / "ws2012-64n-4000vm.toml")) == ()
