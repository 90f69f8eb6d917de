"""CSV capacity as Windows behaves (issue 12 item 2): overcommit warned at load, free space that
counts the diff area, Hyper-V's Paused-Critical for dynamic-disk VMs below 200 MB, no write
dropped unreported."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from scale_scenarios import small_raw
from vssim.errors import ScenarioError
from vssim.metrics import run
from vssim.scenario import DiskType, Scenario, parse_scenario
from vssim.scenario.capacity import LOW_SPACE_WARNING_BYTES, PAUSED_CRITICAL_BYTES
from vssim.units import GiB, MiB

#: More than the VHDX metadata and alignment of a 4 GiB disk on the CSV (headers, log, BAT,
#: metadata region: about 4 MiB).
OVERHEAD = 8 * MiB


def filling_raw(free: int = 1200 * MiB, diff_area_volume: str | None = None) -> dict[str, Any]:
    """One CSV, six VMs with dynamic 4 GiB disks allocated whole and two with fixed ones,
    writing all over them: nothing grows but the diff area, which takes the CSV's last ``free``
    bytes during a full backup (unless it lives elsewhere)."""
    raw = small_raw(
        "ws2012",
        nodes=2,
        csvs=1,
        vms=6,
        write_iops=300,
        disk_size="4 GiB",
        allocated="4 GiB",
        workload={"locality": "uniform", "read_fraction": 0.3},
    )
    raw["vms"] = [
        {
            "name": f"FIXED{i}",
            "node": "NODE01",
            "csv": "Cluster Disk 1",
            "disks": [{"size": "4 GiB", "type": "fixed"}],
            # 64 KiB writes: four copy-on-write chunks each, so the fixed disks' copies fill
            # the volume after the dynamic-disk VMs are paused.
            "workload": {"write_iops": 300, "locality": "uniform", "sizes": [65536]},
        }
        for i in (1, 2)
    ]
    raw["csvs"][0]["size"] = 8 * (4 * GiB + OVERHEAD) + free
    if diff_area_volume is not None:
        raw["csvs"][0]["diff_area_volume"] = diff_area_volume
    return raw


def scenario(raw: dict[str, Any]) -> Scenario:
    return parse_scenario(raw, Path("capacity.toml"))


# --- at load -----------------------------------------------------------------------------------


def test_an_overcommitted_csv_warns_at_load_with_its_ratio() -> None:
    raw = small_raw(csvs=1, vms=10, disk_size="127 GiB", allocated="10 GiB")
    raw["csvs"][0]["size"] = "500 GiB"
    sc = scenario(raw)
    (w,) = [w for w in sc.warnings if w.kind == "overcommit"]
    assert w.where == "csvs[0]"
    assert w.value == pytest.approx(1270 / 500)
    assert "overcommitted 2.54× (Σ virtual / CSV size)" in str(w)
    assert "capacity.toml: csvs[0]: CSV 'Cluster Disk 1'" in str(w)
    # Virtual sizes that fit: no warning.
    raw["csvs"][0]["size"] = "2 TiB"
    assert scenario(raw).warnings == ()


def test_a_csv_that_starts_low_warns_at_load() -> None:
    low = scenario(filling_raw(free=1200 * MiB))
    assert [w.kind for w in low.warnings] == ["low space"]
    assert "below Hyper-V's 2.0 GiB warning level" in str(low.warnings[0])
    lower = scenario(filling_raw(free=100 * MiB))
    assert "paused (Paused-Critical) from the start" in str(lower.warnings[0])
    assert 2 * GiB == LOW_SPACE_WARNING_BYTES
    assert 200 * MiB == PAUSED_CRITICAL_BYTES


def test_vssim_run_and_plan_show_the_warning(tmp_path: Path, capsys: Any) -> None:
    from vssim.cli import main

    raw = copy.deepcopy(small_raw(csvs=1, vms=6, disk_size="127 GiB", allocated="1 GiB"))
    raw["csvs"][0]["size"] = "300 GiB"
    raw["plan"] = {"window": "1 h", "fractions": [0.5], "concurrency": [2]}
    path = tmp_path / "over.toml"
    path.write_text(_toml(raw), encoding="utf-8")
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning" in out
    assert "overcommitted 2.54×" in out
    assert main(["plan", str(path), "--quick", "--out", str(tmp_path / "plan")]) == 0
    out = capsys.readouterr().out
    assert "overcommitted 2.54×" in out
    for report in ("report.md", "report.html"):
        text = (tmp_path / "plan" / report).read_text(encoding="utf-8")
        assert "Warnings" in text
        assert "overcommitted 2.54×" in text


def _toml(raw: dict[str, Any]) -> str:
    """Just enough TOML for these scenarios (tables, arrays of tables, inline tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return "'" + v + "'"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines: list[str] = []
    for name, t in raw.items():
        if isinstance(t, list):
            for item in t:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{name}]")
            lines += [f"{k} = {value(v)}" for k, v in t.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r["csvs"][0].update(diff_area_volume="C:\\ClusterStorage\\Volume2"), "csvs[0]"),
        (lambda r: r["vms"][0]["disks"][0].update(type="thin"), "vms[0].disks[0].type"),
        (
            lambda r: r["vms"][0]["disks"][0].update(allocated="1 GiB"),
            "vms[0].disks[0].allocated",
        ),
        (lambda r: r.update(target={"compression": 0.5}), "target.compression"),
        (lambda r: r.update(target={"ratio": 2.0}), "target.ratio"),
    ],
)
def test_bad_capacity_keys_are_precise_errors(change: Any, where: str) -> None:
    raw = filling_raw()
    raw["csvs"].append(
        {
            "name": "Cluster Disk 2",
            "mount_point": "C:\\ClusterStorage\\Volume2",
            "coordinator": "NODE02",
            "size": "1 TiB",
        }
    )
    change(raw)
    with pytest.raises(ScenarioError, match=where.replace("[", r"\[").replace("]", r"\]")):
        scenario(raw)


def test_disk_types_and_the_diff_area_volume_load() -> None:
    raw = filling_raw(diff_area_volume="D:\\")
    sc = scenario(raw)
    assert {d.type for vm in sc.vms for d in vm.disks} == {DiskType.DYNAMIC, DiskType.FIXED}
    assert sc.csvs[0].diff_area_volume == "D:\\"
    assert not sc.csvs[0].diff_area_on_volume
    # Its own mount point is the default: on the volume.
    raw["csvs"][0]["diff_area_volume"] = "c:\\clusterstorage\\volume1\\"
    assert scenario(raw).csvs[0].diff_area_on_volume


# --- during a run ------------------------------------------------------------------------------


def test_a_filling_csv_pauses_its_dynamic_disk_vms() -> None:
    r = run(scenario(filling_raw()), "full")
    vms = r.vms
    dynamic = vms.filter(~pl.col("vm").str.starts_with("FIXED"))
    fixed = vms.filter(pl.col("vm").str.starts_with("FIXED"))
    (csv,) = r.csvs.iter_rows(named=True)
    paused_at = csv["paused_critical_s"]
    assert paused_at is not None
    assert csv["created_s"] < paused_at < csv["deleted_s"]
    # Every dynamic-disk VM is paused (Paused-Critical) from that instant to the backup's end;
    # the fixed-disk VMs keep running.
    end = float(r.summary["end_s"][0])
    assert dynamic["paused_critical"].all()
    assert dynamic.height == 6
    assert dynamic["paused_s"].to_list() == pytest.approx([end - paused_at] * 6)
    assert not fixed["paused_critical"].any()
    assert fixed["paused_s"].sum() == 0
    assert csv["vms_paused"] == 6
    assert csv["paused_vm_s"] == pytest.approx(6 * (end - paused_at))
    assert r.summary["vms_paused"][0] == 6
    # The free space went under the pause level (the diff area, on the CSV, took it) ...
    assert csv["diff_area_on_volume"]
    assert csv["low_space_s"] == 0.0  # it started below the warning level
    assert csv["free_low_bytes"] < PAUSED_CRITICAL_BYTES
    assert csv["diff_area_peak_bytes"] > 1100 * MiB  # it had taken the CSV's last room
    # ... and the fixed-disk VMs' copy-on-write then filled the volume: volsnap deleted the
    # snapshot (its diff area could not grow) and the backup failed, said in the tables.
    assert csv["deleted_by"] == "volume full"
    assert set(vms["result"].to_list()) == {"VSS_E_INSUFFICIENT_STORAGE"}
    notes = " ".join(r.capacity_notes())
    assert "6 VM(s) with dynamic disks paused (Paused-Critical)" in notes
    assert "the volume filled" in notes


def test_the_plan_advises_on_the_paused_vms(tmp_path: Path, capsys: Any) -> None:
    """vssim plan on the filling CSV: the capacity lines and the report's advice say Hyper-V
    paused the dynamic-disk VMs (Paused-Critical), for how long, and what to do."""
    from vssim.cli import main

    raw = filling_raw()
    raw["plan"] = {"window": "1 h", "fractions": [0.5], "concurrency": [1]}
    path = tmp_path / "filling.toml"
    path.write_text(_toml(raw), encoding="utf-8")
    out_dir = tmp_path / "plan"
    assert main(["plan", str(path), "--profiles", "ws2012", "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "Paused-Critical" in printed
    text = (out_dir / "report.md").read_text(encoding="utf-8")
    advice = text[text.index("Cluster Disk 1's free space fell below") :].split("\n")[0]
    assert "Hyper-V paused 6 VM(s) with dynamic disks (Paused-Critical)" in advice
    assert "of VM time in the backup" in advice
    assert "convert those disks to fixed size" in advice


def test_the_paused_vms_issue_no_io_after_the_pause() -> None:
    from vssim.scale.model_cluster import ModelClusterBackend

    sc = scenario(filling_raw())
    b = ModelClusterBackend(sc)
    b.create_snapshot(sc.csvs[0], 1)
    for t in range(5, 65, 5):
        b.advance_to(float(t))
    assert len(b.paused_at) == 6
    assert set(b.pause_cause.values()) == {"low space"}
    at = {vm.name: (b.vm_total("writes", vm.name), b.vm_total("reads", vm.name)) for vm in sc.vms}
    b.advance_to(120.0)
    for vm in sc.vms:
        now = (b.vm_total("writes", vm.name), b.vm_total("reads", vm.name))
        if vm.name in b.paused_at:
            assert now == at[vm.name], vm.name  # neither writes nor reads
        else:
            assert now[0] > at[vm.name][0], vm.name
            assert now[1] > at[vm.name][1], vm.name


def test_the_diff_area_counts_against_free_space() -> None:
    from vssim.scale.model_cluster import ModelClusterBackend

    on = run(scenario(filling_raw()), "full")
    sc_off = scenario(filling_raw(diff_area_volume="D:\\"))
    off = run(sc_off, "full")
    c_on, c_off = on.csvs.row(0, named=True), off.csvs.row(0, named=True)
    assert not c_off["diff_area_on_volume"]
    # Elsewhere, the diff area costs the CSV nothing: it keeps the room it started with, no VM
    # pauses, nothing fails.
    at_start = ModelClusterBackend(sc_off).free_bytes_of("Cluster Disk 1")
    assert 1200 * MiB < at_start < 1200 * MiB + 8 * OVERHEAD
    assert c_off["free_low_bytes"] == at_start
    assert c_off["diff_area_peak_bytes"] > 1200 * MiB
    assert c_off["paused_critical_s"] is None
    assert off.summary["vms_paused"][0] == 0
    assert off.summary["failures"][0] == 0
    assert c_on["paused_critical_s"] is not None


def test_a_full_volume_is_never_silent() -> None:
    """Dynamic disks that grow into a CSV with no room: their VMs pause at the write that takes
    the free space below Hyper-V's level (nothing dropped, no counter left unread) and the tables
    say so. The disks are new (nothing allocated: the guest's data is the whole disk), so the
    guests' writes allocate blocks. (The engine's own tests pause a VM at the write whose block
    no longer fits, with no level set.)"""
    raw = small_raw(csvs=1, vms=0)
    raw["vms"] = [
        {
            "name": f"NEW{i}",
            "node": f"NODE0{i}",
            "csv": "Cluster Disk 1",
            "disks": [{"size": "4 GiB", "allocated": "0 B"}],
            "workload": {"write_iops": 200, "locality": "uniform", "read_fraction": 0.3},
        }
        for i in (1, 2, 3, 4)
    ]
    raw["csvs"][0]["size"] = "3 GiB"
    r = run(scenario(raw), "full")
    assert r.summary["vms_paused"][0] == 4
    assert r.vms["paused_critical"].all()
    assert r.csvs["free_low_bytes"][0] < PAUSED_CRITICAL_BYTES
    assert "dropped_writes" not in str(r.tables())


def test_the_csv_full_example_does_what_the_readme_says() -> None:
    from scenarios import EXAMPLES
    from vssim.scenario import load_scenario

    sc = load_scenario(EXAMPLES / "csv-full.toml")
    assert sorted(w.kind for w in sc.warnings) == ["low space", "overcommit"]
    r = run(sc, "full")
    disk1 = r.csvs.filter(pl.col("csv") == "Cluster Disk 1").row(0, named=True)
    disk2 = r.csvs.filter(pl.col("csv") == "Cluster Disk 2").row(0, named=True)
    assert disk1["vms_paused"] == 6
    assert disk1["deleted_by"] == "volume full"
    assert disk2["vms_paused"] == 0
    assert disk2["deleted_by"] == "released"
    notes = r.capacity_notes()
    assert any("free space fell below 200 MiB at 24.7 s" in n for n in notes), notes
