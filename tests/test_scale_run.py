"""Modelled backups of whole (small) clusters: jobs, schedule, data movement, copy-on-write over
each snapshot's real lifetime, and the result tables."""

from __future__ import annotations

import itertools

import polars as pl
import pytest

import vssim
from scale_scenarios import small
from vssim.errors import VssError
from vssim.metrics import SCHEMAS, RunResult, run
from vssim.scale import BackupKind, BackupSpec, Schedule, select_vms
from vssim.scale.progress import RunProgress


def summary(r: RunResult, backup: int = 0) -> dict[str, object]:
    rows = r.summary.filter(pl.col("backup") == backup).to_dicts()
    assert len(rows) == 1
    return rows[0]


@pytest.fixture(scope="module")
def full2012() -> RunResult:
    return run(small("ws2012"), "full")


def test_same_seed_same_tables(full2012: RunResult) -> None:
    again = vssim.run(small("ws2012"), "full")
    for name in RunResult.TABLES:
        assert getattr(again, name).equals(getattr(full2012, name)), name
    other = run(small("ws2012", seed=78), "full")
    assert not other.vms.equals(full2012.vms)


def test_tables_have_their_schema(full2012: RunResult) -> None:
    for name, schema in SCHEMAS.items():
        df = getattr(full2012, name)
        assert dict(df.schema) == schema, name
        assert df.height > 0, name
    vms = full2012.vms
    assert vms.height == 60
    assert vms["ok"].all()
    assert (vms["bytes_read"] >= 512 * 2**20).all()
    assert (vms.filter(pl.col("frozen"))["freeze_s"] > 0).all()
    # Saved-state VMs (no integration services) are down; online ones are not.
    offline = vms.filter(~pl.col("online"))
    assert offline.height > 0
    assert (offline["downtime_s"] > 0).all()
    assert (vms.filter(pl.col("online"))["downtime_s"] == 0).all()
    jobs = full2012.jobs
    assert (jobs["successes"] + jobs["failures"] == jobs["vms"]).all()
    assert jobs["vms"].sum() == 60
    assert full2012.phases["event"].to_list().count("DoSnapshotSet") == jobs.height


def test_every_snapshot_lives_from_commit_to_release(full2012: RunResult) -> None:
    csvs = full2012.csvs
    assert (csvs["deleted_by"] == "released").all()
    assert (csvs["lifetime_s"] > 0).all()
    assert (csvs["diff_area_peak_bytes"] > 0).all()
    assert (csvs["chunks_copied"] > 0).all()
    # The copies happen while the snapshot lives.
    vms = full2012.vms.join(csvs.select("job", "csv", "created_s", "deleted_s"), on=["job", "csv"])
    assert (vms["copy_start_s"] >= vms["created_s"]).all()
    assert (vms["copy_end_s"] <= vms["deleted_s"]).all()
    assert (vms["snapshot_s"] == vms["created_s"]).all()


def test_selective_reads_and_freezes_less(full2012: RunResult) -> None:
    sel = run(small("ws2012"), "selective", fraction=0.1)
    f, s = summary(full2012), summary(sel)
    assert s["vms"] == 6
    assert s["bytes_read"] < f["bytes_read"] / 5  # type: ignore[operator]
    assert s["vms_frozen"] < f["vms_frozen"]  # type: ignore[operator]
    assert s["backup_window_s"] < f["backup_window_s"]  # type: ignore[operator]


def test_2008r2_serialises_per_csv_and_redirects() -> None:
    r12 = run(small("ws2012"), "full")
    r08 = run(small("ws2008r2"), "full")
    s12, s08 = summary(r12), summary(r08)
    assert s08["backup_window_s"] > s12["backup_window_s"]  # type: ignore[operator]
    # 2008 R2 redirects the CSV for the whole set, 2012 only while the snapshot is taken.
    assert s08["redirected_bytes"] > 2 * max(1, s12["redirected_bytes"])  # type: ignore[operator]
    # 2008 R2: one set per (node, CSV), from the node that runs the VMs, never two on a CSV.
    jobs08 = r08.jobs
    assert jobs08.height > r12.jobs.height
    for row in r08.vms.iter_rows(named=True):
        assert row["requester"] == row["node"]
    for csv, part in jobs08.group_by("csvs"):
        spans = sorted(zip(part["start_s"], part["end_s"], strict=True))
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), csv
    # 2012: the CSVs' sets overlap in time.
    j = r12.jobs.sort("start_s")
    assert j["start_s"][1] < j["end_s"][0]
    # 2008 R2's redirected writes crossed the NICs.
    assert r08.nodes["nic_bytes"].sum() >= s08["redirected_bytes"]  # type: ignore[operator]


def test_longer_snapshot_lifetime_costs_more_diff_area() -> None:
    fast = run(small("ws2012", target="4 GB/s"), "full")
    slow = run(small("ws2012", target="300 MB/s"), "full")
    for csv in ("Cluster Disk 1", "Cluster Disk 2"):
        life = {
            name: r.csvs.filter(pl.col("csv") == csv)["lifetime_s"].max()
            for name, r in (("fast", fast), ("slow", slow))
        }
        assert life["slow"] > 1.3 * life["fast"], csv  # type: ignore[operator]
        peak = {
            name: r.csvs.filter(pl.col("csv") == csv)["diff_area_peak_bytes"].max()
            for name, r in (("fast", fast), ("slow", slow))
        }
        assert peak["slow"] > peak["fast"], csv  # type: ignore[operator]


def test_full_diff_area_deletes_snapshots_and_fails_their_backups() -> None:
    r = run(small("ws2012", diff_area_limit="320 MiB", write_iops=400, target="300 MB/s"), "full")
    csvs = r.csvs
    assert (csvs["deleted_by"] == "diff area full").any()
    lost = csvs.filter(pl.col("deleted_by") == "diff area full")
    assert (lost["deleted_s"] < lost["created_s"] + lost["lifetime_s"] + 1e-9).all()
    failed = r.vms.filter(pl.col("csv").is_in(lost["csv"].to_list()))
    assert (~failed["ok"]).all()
    assert set(failed["result"].to_list()) == {"VSS_E_INSUFFICIENT_STORAGE"}
    jobs = r.jobs.filter(~pl.col("ok"))
    assert set(jobs["result"].to_list()) == {"VSS_E_INSUFFICIENT_STORAGE"}
    assert summary(r)["failures"] == failed.height
    assert r.phases.filter(pl.col("event").str.starts_with("VolSnap 24")).height > 0


def test_incremental_after_full_reads_only_changed_blocks() -> None:
    r = run(small("ws2012"), ["full", "incremental"], interval_s=120)
    full, inc = summary(r, 0), summary(r, 1)
    assert 0 < inc["bytes_read"] < full["bytes_read"] / 2  # type: ignore[operator]
    vms = r.vms.filter(pl.col("backup") == 1)
    assert vms["incremental"].all()
    first = r.vms.filter(pl.col("backup") == 0)
    assert not first["incremental"].any()
    # An incremental without a previous backup reads everything (it is a full).
    alone = run(small("ws2012"), "incremental")
    assert not alone.vms["incremental"].any()
    assert summary(alone)["bytes_read"] >= full["bytes_read"] * 0.9  # type: ignore[operator]


def test_copy_backup_keeps_the_incremental_base() -> None:
    r = run(small("ws2012", vms=20), ["full", "copy", "incremental"], interval_s=60)
    inc = r.vms.filter(pl.col("backup") == 2)
    assert inc["incremental"].all()
    # The copy did not reset change tracking: the incremental covers both intervals.
    r2 = run(small("ws2012", vms=20), ["full", "full", "incremental"], interval_s=60)
    assert summary(r, 2)["bytes_read"] > summary(r2, 2)["bytes_read"]  # type: ignore[operator]


def test_component_selection_like_vshadow() -> None:
    sc = small("ws2012")
    vm = sc.vms[3]
    by_component = select_vms(
        sc,
        BackupSpec(
            BackupKind.SELECTIVE, include=(f"Microsoft Hyper-V VSS Writer:{vm.component_name}",)
        ),
    )
    assert [v.name for v in by_component] == [vm.name]
    rest = select_vms(sc, BackupSpec(BackupKind.FULL, exclude=(vm.name, sc.vms[4].name)))
    assert len(rest) == 58
    assert vm.name not in {v.name for v in rest}
    with pytest.raises(VssError, match="VSS_E_OBJECT_NOT_FOUND"):
        select_vms(sc, BackupSpec(BackupKind.SELECTIVE, include=("no-such-vm",)))
    listed = run(sc, "selective", vms=[sc.vms[0].name, sc.vms[1].name])
    assert sorted(listed.vms["vm"].to_list()) == sorted([sc.vms[0].name, sc.vms[1].name])


def test_requester_away_from_the_coordinator_pulls_over_the_network() -> None:
    sc = small("ws2012")
    local = run(sc, "full")
    remote = run(sc, "full", schedule=Schedule(requester="NODE04"))
    assert summary(local)["network_bytes"] < summary(remote)["network_bytes"]  # type: ignore[operator]
    assert set(remote.jobs["requester"].to_list()) == {"NODE04"}


def test_bad_requests_are_refused() -> None:
    sc = small("ws2012", vms=10)
    with pytest.raises(ValueError, match="selective backup needs"):
        run(sc, "selective")
    with pytest.raises(ValueError, match="backup type"):
        run(sc, "differential")
    with pytest.raises(ValueError, match="fraction"):
        run(sc, "selective", fraction=1.5)


def test_progress_reports_every_set() -> None:
    seen: list[RunProgress] = []
    r = run(small("ws2008r2", vms=20), "full", progress=seen.append)
    total = r.jobs.height
    sets = [e for e in seen if e.event == "set"]
    assert [e.sets_done for e in sets] == list(range(1, total + 1))
    assert {e.sets for e in seen} == {total}
    assert seen[0].event == "start"
    assert seen[-1].event == "backup"
    assert seen[-1].vms_copied == seen[-1].vms == r.vms.height
    assert seen[-1].fraction == 1.0


def test_hardware_snapshots_cost_the_host_no_diff_area() -> None:
    r = run(small("ws2012", provider="hardware"), "full")
    csvs = r.csvs
    assert csvs["snapshot"].null_count() == csvs.height
    assert (csvs["diff_area_peak_bytes"] == 0).all()
    assert (r.vms["chunks_copied"] == 0).all()
    assert r.vms["ok"].all()
