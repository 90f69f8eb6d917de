"""A capacity plan, end to end: run the strategies (:mod:`.strategies`) on the scenario under each
profile, gather their result tables, compute the figures (:mod:`.analysis`), draw the charts
(:mod:`.charts`) and write ``report.html``, ``report.md``, ``charts/*.png|svg`` and the combined
result tables (``tables/*.parquet``).

The runs are modelled runs of :func:`vssim.run` on the scenario with its diff areas **unbounded**
— so a CSV's peak is what its backups really need — and the limits the scenario (or
``[plan] diff_area_limit``) sets today are judged against those peaks afterwards.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from vssim.errors import PlanError
from vssim.report import advice, charts, html
from vssim.report.analysis import CASE, Analysis, analyse
from vssim.report.strategies import (
    PlanSettings,
    Strategy,
    followups,
    plan_profiles,
    read_plan,
    sweep,
)
from vssim.report.units import duration
from vssim.scenario import OsProfile, Scenario, parse_scenario

#: Runs one strategy on one (profile-adjusted) scenario: the result tables of that backup.
Runner = Callable[[Scenario, Strategy, PlanSettings], dict[str, pl.DataFrame]]
#: Told after each run: (runs done, runs planned so far, profile, strategy, wall seconds).
Progress = Callable[[int, int, str, Strategy, float], None]
TABLES = ("vms", "csvs", "nodes", "jobs", "phases", "summary")


def scale_runner(sc: Scenario, strategy: Strategy, settings: PlanSettings) -> dict[str, Any]:
    """One strategy through :func:`vssim.scale.run` (modelled mode): the result tables of its
    backups (column ``backup``: 0, 1 … in :attr:`Strategy.backups` order)."""
    from vssim.scale import Schedule, run

    schedule = Schedule(per_node=strategy.concurrency, streams_per_node=strategy.concurrency)
    result = run(
        sc,
        strategy.backups,
        fraction=strategy.fraction,
        schedule=schedule,
        interval_s=settings.incremental_after_s,
    )
    tables: dict[str, Any] = result.tables()
    return tables


def profile_scenario(sc: Scenario, profile: OsProfile) -> Scenario:
    """The scenario under ``profile``, every diff area unbounded."""
    csvs = tuple(dataclasses.replace(c, diff_area_limit=None) for c in sc.csvs)
    return dataclasses.replace(sc, os=profile, csvs=csvs)


def _tag(
    tables: dict[str, pl.DataFrame], profile: str, strategy: Strategy
) -> list[dict[str, pl.DataFrame]]:
    """One set of tables per backup of the run, with the case columns in front."""
    out = []
    for index, label in enumerate(strategy.labels):
        one = {}
        for name in TABLES:
            t = tables[name].filter(pl.col("backup") == index)
            t = t.drop([c for c in CASE if c in t.columns])
            one[name] = t.select(
                pl.lit(profile).alias("profile"),
                pl.lit(label).alias("strategy"),
                pl.lit(strategy.concurrency, dtype=pl.Int64).alias("concurrency"),
                pl.all(),
            )
        out.append(one)
    return out


def collect(
    sc: Scenario,
    settings: PlanSettings,
    runner: Runner = scale_runner,
    progress: Progress | None = None,
) -> dict[str, pl.DataFrame]:
    """Run the plan's strategies; the result tables of all runs, with the case columns."""
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in TABLES}
    profiles = plan_profiles(settings, sc.os)
    planned = len(profiles) * (len(settings.concurrency) + len(settings.fractions))
    done = 0

    def one(variant: Scenario, profile: OsProfile, strategy: Strategy) -> pl.DataFrame:
        nonlocal done
        started = time.perf_counter()
        tagged = _tag(runner(variant, strategy, settings), profile.value, strategy)
        for one_backup in tagged:
            for name in TABLES:
                parts[name].append(one_backup[name])
        done += 1
        if progress is not None:
            progress(done, planned, profile.value, strategy, time.perf_counter() - started)
        summary: pl.DataFrame = tagged[0]["summary"]
        return summary

    for profile in profiles:
        variant = profile_scenario(sc, profile)
        windows = {}
        for strategy in sweep(settings):
            s = one(variant, profile, strategy)
            failures = int(s["failures"].sum())
            windows[strategy.concurrency] = (failures > 0, float(s["backup_window_s"].sum()))
        fitting = [
            c for c, (failed, w) in sorted(windows.items()) if not failed and w <= settings.window_s
        ]
        best = fitting[0] if fitting else min(windows, key=lambda c: (windows[c], c))
        for strategy in followups(settings, best):
            one(variant, profile, strategy)
    return {name: pl.concat(frames, how="vertical_relaxed") for name, frames in parts.items()}


@dataclass(frozen=True)
class PlanReport:
    out: Path
    html: Path
    markdown: Path
    charts: list[charts.Chart]
    analysis: Analysis
    advice: dict[str, list[str]]


def limits_of(sc: Scenario, settings: PlanSettings) -> dict[str, int | None]:
    """Shadow-storage limit per CSV today: its own, else the plan's default (None: unbounded)."""
    return {c.name: c.diff_area_limit or settings.diff_area_limit for c in sc.csvs}


def write_report(
    sc: Scenario,
    settings: PlanSettings,
    tables: dict[str, pl.DataFrame],
    out: Path,
    wall_s: float | None = None,
    note: str = "",
) -> PlanReport:
    """Analyse ``tables`` (from :func:`collect`) and write the report files into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = out / "tables"
    data.mkdir(exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(data / f"{name}.parquet")
    limits = limits_of(sc, settings)
    a = analyse(tables, limits, settings.window_s, settings.margin)
    words = advice.recommend(a, limits)
    drawn = charts.draw_all(a, tables, out / "charts")
    title = (
        f"Capacity plan: {sc.name} ({len(sc.nodes)} nodes, {len(sc.csvs)} CSVs, {len(sc.vms)} VMs)"
    )
    runs = tables["summary"].select(CASE).unique().height
    meta = (
        f"Scenario {sc.path}{note}; {runs} backups in modelled runs"
        + (f" in {duration(wall_s)} of wall time" if wall_s is not None else "")
        + f"; target window {duration(settings.window_s)}; vssim plan."
    )
    page = out / "report.html"
    page.write_text(html.render_html(title, meta, a, words, drawn), encoding="utf-8")
    md = out / "report.md"
    md.write_text(html.render_markdown(title, meta, a, words, drawn, out), encoding="utf-8")
    return PlanReport(out, page, md, drawn, a, words)


def load_for_plan(path: Path, vms: int | None = None) -> tuple[Scenario, PlanSettings]:
    """The scenario at ``path`` and its ``[plan]`` settings; ``vms`` replaces the file's
    ``[generate] vms`` (a what-if: the same nodes and CSVs with more or fewer VMs)."""
    pf = read_plan(path)
    raw = pf.raw
    if vms is not None:
        gen = raw.get("generate")
        if not isinstance(gen, dict) or "vms" not in gen:
            raise PlanError(f"{path}: --vms needs a [generate] table with vms (none here)")
        if vms < 1:
            raise PlanError(f"--vms {vms}: expected at least 1 VM")
        raw = {**raw, "generate": {**gen, "vms": vms}}
    return parse_scenario(raw, path), pf.settings


def build(
    path: Path,
    out: Path,
    options: dict[str, Any] | None = None,
    runner: Runner = scale_runner,
    progress: Progress | None = None,
    vms: int | None = None,
) -> PlanReport:
    """``vssim plan``: read the scenario and its ``[plan]`` table, apply ``options`` (those not
    None override the file), run, analyse, write."""
    sc, from_file = load_for_plan(path, vms)
    chosen = from_file.with_options(**(options or {}))
    started = time.perf_counter()
    tables = collect(sc, chosen, runner, progress)
    note = f" (--vms {vms}: the file's cluster with {vms} VMs)" if vms is not None else ""
    return write_report(sc, chosen, tables, out, time.perf_counter() - started, note)
