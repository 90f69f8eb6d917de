"""Which runs a plan makes (``vssim.report.capacity_plan.collect``): the incremental continues the
chosen full backup's run, sweep points that cannot differ run once, and every shortcut gives the
figures a plain run would (real modelled runs on the small example cluster)."""

from __future__ import annotations

import gc
from typing import Any

import polars as pl
import pytest

from scenarios import EXAMPLES
from vssim.report import capacity_plan as planning
from vssim.report.analysis import CASE, best_concurrency
from vssim.report.strategies import PlanSettings, Strategy
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scenario import OsProfile, Scenario

SMALL = EXAMPLES / "plan-small.toml"
FIGURES = ["backup_window_s", "bytes_read", "diff_area_peak_bytes", "chunks_copied", "failures"]


class Recorder:
    """The real runner on the exact engine (these tests pin which runs the plan makes, on the
    figures of one exact run), noting what it was asked to run and what each run did."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, int, int]] = []
        self.told: list[planning.PlanStart | planning.Step] = []

    @property
    def steps(self) -> list[planning.Step]:
        return [s for s in self.told if isinstance(s, planning.Step)]

    def __call__(
        self, sc: Scenario, strategy: Strategy, settings: PlanSettings, hooks: planning.Hooks
    ) -> dict[str, Any]:
        tables = planning.scale_runner(sc, strategy, settings, hooks, engine="exact")
        backups = tables["summary"].height
        self.runs.append((sc.os.value, strategy.kind, strategy.concurrency, backups))
        return tables


def plan(settings: PlanSettings, vms: int | None = None) -> tuple[dict[str, Any], Recorder]:
    sc, _ = planning.load_for_plan(SMALL, vms)
    rec = Recorder()
    tables = planning.collect(sc, settings, rec, rec.told.append)
    return tables, rec


def figures(tables: dict[str, pl.DataFrame], **case: object) -> list[dict[str, Any]]:
    rows = tables["summary"].filter(*[pl.col(k) == v for k, v in case.items()])
    return rows.select(FIGURES).to_dicts()


def test_incremental_rides_on_the_chosen_full_backup() -> None:
    # 2 h: every full backup fits, so concurrency 1 is chosen and only its run goes on.
    settings = PlanSettings(
        profiles=(OsProfile.WS2012,), window_s=7200.0, fractions=(0.1,), concurrency=(1, 2, 4)
    )
    tables, rec = plan(settings)
    assert rec.runs == [
        ("ws2012", "full", 1, 2),
        ("ws2012", "full", 2, 1),
        ("ws2012", "full", 4, 1),
        ("ws2012", "selective", 1, 1),
    ]
    cases = tables["summary"].select(CASE).rows()
    assert sorted(cases) == [
        ("ws2012", "full", 1),
        ("ws2012", "full", 2),
        ("ws2012", "full", 4),
        ("ws2012", "incremental", 1),
        ("ws2012", "selective 10 %", 1),
    ]
    assert best_concurrency(tables["summary"], settings.window_s) == {"ws2012": 1}
    # The same figures as the plain full + incremental run at concurrency 1.
    sc, _ = planning.load_for_plan(SMALL)
    plain = planning.scale_runner(
        planning.profile_scenario(sc, OsProfile.WS2012),
        Strategy("full", 1),
        settings,
        engine="exact",
    )
    assert (
        figures(tables, strategy="full", concurrency=1)
        == plain["summary"].filter(pl.col("backup") == 0).select(FIGURES).to_dicts()
    )
    assert (
        figures(tables, strategy="incremental")
        == plain["summary"].filter(pl.col("backup") == 1).select(FIGURES).to_dicts()
    )
    done = [s for s in rec.steps if s.done]
    assert [s.backups for s in done] == [
        ("full", "incremental"),
        ("full",),
        ("full",),
        ("selective 10 %",),
    ]
    assert all(s.peak_rss_bytes > 0 for s in rec.steps)
    assert any(not s.done and s.sets > 0 for s in rec.steps), "progress per snapshot set"
    # Told first what the plan is about to do; the work it expects never shrinks below what
    # it has done, and at the end all of it is done.
    start = rec.told[0]
    assert isinstance(start, planning.PlanStart)
    assert (start.profiles, start.planned) == (("ws2012",), 4)
    walked = [s.work_done_s for s in rec.steps]
    assert walked == sorted(walked)
    assert walked[-1] > 0
    assert all(s.work_done_s <= s.work_s for s in rec.steps)
    assert rec.steps[-1].fraction == pytest.approx(1.0)


def test_nothing_fits_reruns_the_best_full_backup_with_its_incremental() -> None:
    # 2008 R2 misses a 2-minute window at every concurrency; the best is not the
    # sweep's last point, so its full backup runs again to carry the incremental.
    settings = PlanSettings(
        profiles=(OsProfile.WS2008R2,), window_s=120.0, fractions=(0.1,), concurrency=(1, 2, 8)
    )
    tables, rec = plan(settings)
    full = tables["summary"].filter(pl.col("strategy") == "full").sort("concurrency")
    windows = dict(zip(full["concurrency"], full["backup_window_s"], strict=True))
    assert min(windows.values()) > settings.window_s
    best = best_concurrency(tables["summary"], settings.window_s)["ws2008r2"]
    assert best == min(windows, key=lambda c: windows[c])
    assert best != 8, "the example must exercise the re-run"
    assert rec.runs[:3] == [("ws2008r2", "full", c, 1) for c in (1, 2, 8)]
    assert rec.runs[3:] == [("ws2008r2", "full", best, 2), ("ws2008r2", "selective", best, 1)]
    inc = tables["summary"].filter(pl.col("strategy") == "incremental")
    assert inc["concurrency"].to_list() == [best]
    # The re-run replaced the sweep's tables of that point: one row per case.
    assert tables["summary"].select(CASE).is_duplicated().sum() == 0


def test_sweep_points_beyond_the_clusters_reach_run_once() -> None:
    # 6 VMs on 2 CSVs: one set per coordinator node, at most 4 VMs in it, so concurrency 4 and 8
    # are one run.
    sc, _ = planning.load_for_plan(SMALL, vms=6)
    variant = planning.profile_scenario(sc, OsProfile.WS2012)
    sets, vms = planning.reach(variant)
    assert (sets, vms) == (1, 4)
    settings = PlanSettings(
        profiles=(OsProfile.WS2012,), window_s=7200.0, fractions=(0.5,), concurrency=(1, 2, 4, 8)
    )
    tables, rec = plan(settings, vms=6)
    assert [r[2] for r in rec.runs if r[1] == "full"] == [1, 2, 4]
    full = tables["summary"].filter(pl.col("strategy") == "full")
    assert sorted(full["concurrency"].to_list()) == [1, 2, 4, 8]
    # Standing in is right: a real run at 8 gives the figures of the run at 4.
    real = planning.scale_runner(variant, Strategy("full", 8), settings, engine="exact")
    at_8 = real["summary"].filter(pl.col("backup") == 0).select(FIGURES).to_dicts()
    assert figures(tables, strategy="full", concurrency=8) == at_8
    assert figures(tables, strategy="full", concurrency=4) == at_8
    for name in ("vms", "jobs", "csvs"):
        t = tables[name].filter(pl.col("strategy") == "full")
        assert (
            t.filter(pl.col("concurrency") == 8).height
            == t.filter(pl.col("concurrency") == 2).height
        )


def test_quick_plan_makes_two_runs_a_profile() -> None:
    settings = PlanSettings(window_s=600.0, fractions=(0.1,), concurrency=(4,))
    _, rec = plan(settings)
    assert [(p, k) for p, k, _, _ in rec.runs] == [
        ("ws2012", "full"),
        ("ws2012", "selective"),
        ("ws2008r2", "full"),
        ("ws2008r2", "selective"),
    ]
    assert [b for *_, b in rec.runs] == [2, 1, 2, 1]


def test_a_runs_engine_state_is_freed_once_its_tables_are_taken() -> None:
    # The backend (and its engine cluster: gigabytes at full size) sits in reference cycles of
    # the run's SimPy processes; the runner frees it before the next run starts.
    sc, settings = planning.load_for_plan(SMALL)
    gc.collect()
    gc.disable()
    try:
        tables = planning.scale_runner(sc, Strategy("full", 4), settings)
        alive = [o for o in gc.get_objects() if isinstance(o, ModelClusterBackend)]
    finally:
        gc.enable()
    assert tables["summary"].height == 2
    assert alive == []
