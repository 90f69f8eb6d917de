"""The capacity-planning figures on small hand-built result tables (answers worked out by hand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from report_frames import GiB, MiB, combine, frames
from vssim.errors import PlanError
from vssim.metrics import SCHEMAS
from vssim.report import advice
from vssim.report.analysis import (
    NEEDS,
    SEGMENTS,
    SIZE_STEP,
    analyse,
    best_concurrency,
    diff_area,
    freeze_stats,
    load_over_time,
    missed_freeze,
    recommend_shadow_storage,
    window_breakdown,
)
from vssim.report.strategies import (
    PlanSettings,
    followups,
    parse_duration,
    parse_plan_table,
    plan_profiles,
    sweep,
)
from vssim.scenario import OsProfile
from vssim.scenario.model import MIN_DIFF_AREA

HOUR = 3600.0


def test_the_report_reads_only_columns_the_metrics_schemas_have() -> None:
    for table, cols in NEEDS.items():
        missing = [c for c in cols if c not in SCHEMAS[table]]
        assert not missing, (table, missing)


@pytest.mark.parametrize("peak", [0, 1, 100 * MiB, 255 * MiB, 256 * MiB])
def test_recommended_shadow_storage_is_never_below_320_mib(peak: int) -> None:
    assert recommend_shadow_storage(peak, 0.25) == MIN_DIFF_AREA


@pytest.mark.parametrize(
    ("peak", "margin"), [(10 * GiB, 0.25), (1 * GiB + 1, 0.1), (700 * MiB, 0.0), (5 * GiB, 1.0)]
)
def test_recommended_shadow_storage_is_the_peak_plus_the_margin(peak: int, margin: float) -> None:
    rec = recommend_shadow_storage(peak, margin)
    wanted = peak * (1 + margin)
    assert wanted <= rec < wanted + SIZE_STEP
    assert rec % SIZE_STEP == 0
    assert recommend_shadow_storage(10 * GiB, 0.25) == 12.5 * GiB


def test_recommended_shadow_storage_rejects_negative_input() -> None:
    with pytest.raises(ValueError, match="margin"):
        recommend_shadow_storage(GiB, -0.1)


def test_deletions_are_predicted_where_the_peak_exceeds_the_limit() -> None:
    # CSV0 peaks at 200 MiB, CSV1 at 2 GiB (report_frames' default peaks); 4 VMs each.
    t = frames(peaks=(200 * MiB, 2 * GiB))
    d = diff_area(t["csvs"], {"CSV0": 1 * GiB, "CSV1": 1 * GiB}, 0.25).sort("csv")
    assert d["deletions"].to_list() == [0, 1]
    assert d["vms_failing"].to_list() == [0, 4]
    assert d["recommended_bytes"].to_list() == [MIN_DIFF_AREA, int(2.5 * GiB)]
    # No limit (None): nothing is deleted, whatever the peak; a limit above the peak: nothing.
    d = diff_area(t["csvs"], {"CSV0": None, "CSV1": 3 * GiB}, 0.25)
    assert d["deletions"].sum() == 0


def test_freeze_percentiles_and_missed_freeze_window() -> None:
    freeze = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 70.0, 0.0)
    t = frames(vms=8, freeze=freeze, downtime=(0, 0, 0, 0, 0, 0, 0, 40.0))
    f = freeze_stats(t["vms"]).row(0, named=True)
    frozen = np.asarray(freeze[:7])
    assert f["vms_frozen"] == 7
    assert f["freeze_p50_s"] == pytest.approx(np.percentile(frozen, 50)) == 4.0
    assert f["freeze_p95_s"] == pytest.approx(np.percentile(frozen, 95))
    assert f["freeze_max_s"] == 70.0
    assert f["missed_freeze_window"] == 1  # 70 s > the writer's 60 s
    assert (f["vms_down"], f["downtime_p50_s"], f["downtime_max_s"]) == (1, 40.0, 40.0)
    assert missed_freeze(t["vms"])["vm"].to_list() == ["VM06"]


def test_a_writer_timeout_counts_as_a_missed_freeze_window() -> None:
    t = frames(vms=4, freeze=(1.0, 1.0, 1.0, 1.0))
    vms = t["vms"].with_columns(
        pl.when(pl.col("vm") == "VM01")
        .then(pl.lit("VSS_E_WRITERERROR_TIMEOUT"))
        .otherwise(pl.col("result"))
        .alias("result")
    )
    assert freeze_stats(vms)["missed_freeze_window"].to_list() == [1]


def test_window_breakdown_adds_up_to_the_window() -> None:
    # 2 sets: start 1000 and 1010; 5 s (1 s freeze) to the first copy, 4 × 100 s copies, 2 s.
    t = frames(vms=8, csvs=2, copy_s=100.0)
    w = window_breakdown(t["jobs"], t["vms"], t["summary"]).row(0, named=True)
    assert w["window_s"] == 10 + 5 + 400 + 2
    assert sum(w[s] for s in SEGMENTS) == pytest.approx(w["window_s"])
    total = (0 + 10) + 2 * 4 + 2 * 1 + 2 * 400 + 2 * 2  # set-seconds per segment
    assert w["waiting for a slot"] == pytest.approx(10 / total * w["window_s"])
    assert w["freeze"] == pytest.approx(2 / total * w["window_s"])
    assert w["copy"] == pytest.approx(800 / total * w["window_s"])


def test_load_over_time_conserves_bytes_and_splits_by_node_and_csv() -> None:
    t = frames(vms=8, csvs=2, copy_s=100.0, vm_bytes=GiB, redirected=3 * GiB)
    ld = load_over_time(t["vms"], t["csvs"], t["jobs"], bins=40)
    step = ld["t_s"].unique().sort().diff().drop_nulls()[0]
    moved = ld.group_by("kind").agg((pl.col("bytes_per_s") * step).sum().alias("b"))
    got = dict(zip(moved["kind"], moved["b"], strict=True))
    assert got["node"] == pytest.approx(8 * GiB)
    assert got["csv"] == pytest.approx(8 * GiB)
    assert got["redirected"] == pytest.approx(6 * GiB)
    nodes = ld.filter(pl.col("kind") == "node")["name"].unique().sort().to_list()
    assert nodes == ["N0", "N1"]
    # One copy at a time per set, 1 GiB per 100 s: a node never reads faster than that.
    peak = ld.filter(pl.col("kind") == "node")["bytes_per_s"].max()
    assert peak == pytest.approx(GiB / 100, rel=1e-6)


def test_best_concurrency_is_the_smallest_that_fits_else_the_fastest() -> None:
    t = combine(
        frames("ws2012", "full", 1, copy_s=3 * HOUR),
        frames("ws2012", "full", 4, copy_s=1 * HOUR),
        frames("ws2012", "full", 8, copy_s=0.5 * HOUR),
        frames("ws2008r2", "full", 1, copy_s=5 * HOUR),
        frames("ws2008r2", "full", 4, copy_s=4 * HOUR),
    )
    # ws2012 windows ≈ 12 h, 4 h, 2 h; ws2008r2 ≈ 20 h, 16 h: 8 h fits 2012 at 4, never 2008 R2.
    assert best_concurrency(t["summary"], 8 * HOUR) == {"ws2012": 4, "ws2008r2": 4}
    assert best_concurrency(t["summary"], 3 * HOUR) == {"ws2012": 8, "ws2008r2": 4}


def test_headline_and_advice_name_the_strategy_concurrency_and_storage() -> None:
    t = combine(
        frames("ws2012", "full", 2, copy_s=3 * HOUR),
        frames("ws2012", "full", 4, copy_s=1 * HOUR),
        frames("ws2012", "selective 10 %", 4, copy_s=600.0),
        frames("ws2012", "incremental", 4, copy_s=60.0),
    )
    limits = {"CSV0": 1 * GiB, "CSV1": 1 * GiB}
    a = analyse(t, limits, 8 * HOUR, 0.25)
    assert a.chosen == {"ws2012": 4}
    assert a.headline["strategy"].to_list() == ["full", "selective 10 %", "incremental"]
    assert a.headline["fits"].to_list() == [True, True, True]
    assert a.headline["deletions_at_limit"].to_list() == [1, 1, 1]
    assert a.headline["shadow_storage_bytes"][0] == int(2.5 * GiB)
    words = " ".join(advice.recommend(a, limits)["ws2012"])
    assert "fits the 8.0 h window at concurrency 4" in words
    assert "2.5 GiB on CSV1" in words
    assert "would delete 1 snapshot(s)" in words


def test_hardware_provider_needs_no_host_shadow_storage() -> None:
    t = frames("ws2008r2", "full", 1, peaks=(0,), provider="hardware")
    a = analyse(t, {"CSV0": None, "CSV1": None}, 8 * HOUR, 0.25)
    assert a.diff_area["peak_bytes"].to_list() == [0, 0]
    words = " ".join(advice.recommend(a, {})["ws2008r2"])
    assert "none needed on the host" in words


def test_plan_table_pins_profiles_and_parses_durations() -> None:
    s = parse_plan_table(
        {"profiles": ["ws2012"], "window": "6 h", "concurrency": [8, 2], "fractions": [0.5]},
        Path("x.toml"),
    )
    assert s.profiles == (OsProfile.WS2012,)
    assert s.window_s == 6 * HOUR
    assert s.concurrency == (2, 8)
    assert plan_profiles(s, OsProfile.WS2008R2) == (OsProfile.WS2012,)
    assert plan_profiles(PlanSettings(), OsProfile.WS2008R2) == (
        OsProfile.WS2008R2,
        OsProfile.WS2012,
    )
    assert [x.label for x in sweep(s)] == ["full", "full"]
    assert [x.labels for x in sweep(s)] == [["full", "incremental"]] * 2
    assert [x.label for x in followups(s, 8)] == ["selective 50 %"]
    assert parse_duration("90 min") == 5400
    assert parse_duration("1 d") == 86400
    assert parse_duration("soon") is None
    assert parse_duration(0) is None
    with pytest.raises(PlanError, match=r"plan\.windw"):
        parse_plan_table({"windw": "6 h"}, Path("x.toml"))
    with pytest.raises(PlanError, match=r"plan\.profiles"):
        parse_plan_table({"profiles": ["ws2016"]}, Path("x.toml"))
