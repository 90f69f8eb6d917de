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
import functools
import gc
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from vssim.errors import NotEstimatedError, PlanError
from vssim.report import advice
from vssim.report.analysis import CASE, Analysis, analyse
from vssim.report.formatting import duration
from vssim.report.strategies import (
    PlanSettings,
    Strategy,
    followups,
    plan_profiles,
    read_plan,
    sweep,
)
from vssim.scale.engines import Engine
from vssim.scenario import OsProfile, Scenario, parse_scenario
from vssim.scenario.model import ScenarioWarning

if TYPE_CHECKING:
    from vssim.report import charts
    from vssim.scale.progress import RunProgress
    from vssim.scale.runner import KeepGoing
    from vssim.sim.records import BackupRecord

#: Told when the plan starts (:class:`PlanStart`), as a run goes (each event of the runner's,
#: :class:`~vssim.scale.progress.RunProgress`) and once when it ends (:class:`Step`).
Progress = Callable[["PlanStart | Step"], None]
TABLES = ("vms", "csvs", "nodes", "jobs", "phases", "summary")


@dataclass(frozen=True)
class Step:
    """Where a plan is: run ``run`` of ``planned`` so far (the plan adds runs as it decides)."""

    run: int
    planned: int
    profile: str
    strategy: Strategy
    #: Snapshot sets done and in all (of every backup the run may do).
    sets_done: int
    sets: int
    wall_s: float
    #: The run ended; ``backups`` are the labels of the backups it ran.
    done: bool = False
    backups: tuple[str, ...] = ()
    #: The process's peak resident memory so far.
    peak_rss_bytes: int = 0
    #: The runner's latest event for this run (None: none yet).
    at: RunProgress | None = None
    #: The plan's simulated seconds walked so far and expected in all (runs done at their
    #: length, this one at its expected end, the runs to come at their floor): the work
    #: fraction a time-left estimate reads.
    work_done_s: float = 0.0
    work_s: float = 0.0

    @property
    def fraction(self) -> float:
        return min(1.0, self.work_done_s / self.work_s) if self.work_s > 0 else 0.0


@dataclass(frozen=True)
class PlanStart:
    """Told before the first run: what the plan is about to do."""

    scenario: Scenario
    profiles: tuple[str, ...]
    planned: int


@dataclass(frozen=True)
class Hooks:
    """What the plan hands a runner: whether to go on after a backup, and set progress."""

    keep_going: KeepGoing | None = None
    on_set: Callable[[RunProgress], None] | None = None


#: Runs one strategy on one (profile-adjusted) scenario: the result tables of its backups
#: (column ``backup``: 0, 1 … in :attr:`Strategy.backups` order; fewer if ``keep_going`` said
#: stop).
Runner = Callable[[Scenario, Strategy, PlanSettings, Hooks], dict[str, pl.DataFrame]]


def scale_runner(
    sc: Scenario,
    strategy: Strategy,
    settings: PlanSettings,
    hooks: Hooks | None = None,
    engine: str = "estimate",
    verify: int = 0,
) -> dict[str, Any]:
    """One strategy through :func:`vssim.metrics.run` (modelled mode) on ``engine``; with
    ``verify``, that many sampled VMs re-run on the exact engine (table ``verify``). A run the
    estimate refuses (:class:`~vssim.errors.NotEstimatedError`: a CSV that reaches Hyper-V's
    pause level, say) runs again on the exact engine, and table ``notes`` says why (the
    summary's ``engine`` column says which engine made each backup)."""
    from vssim.metrics import run
    from vssim.scale import Schedule

    hooks = hooks or Hooks()
    schedule = Schedule(per_node=strategy.concurrency, streams_per_node=strategy.concurrency)

    def once(tier: str, checked: int) -> Any:
        return run(
            sc,
            strategy.backups,
            fraction=strategy.fraction,
            schedule=schedule,
            interval_s=settings.incremental_after_s,
            progress=hooks.on_set,
            keep_going=hooks.keep_going,
            engine=tier,
            verify=checked,
        )

    note = None
    try:
        result = once(engine, verify)
    except NotEstimatedError as exc:
        if engine != "estimate":
            raise
        note = f"{sc.os} {strategy.label} (concurrency {strategy.concurrency}): {exc}"
        gc.collect()
        result = once("exact", 0)
    tables: dict[str, Any] = result.tables()
    if note is not None:
        tables["notes"] = pl.DataFrame({"note": [note]})
    del result
    # The run's engine cluster (gigabytes at full size) sits in reference cycles of the SimPy
    # processes; free it now, before the next run builds its own.
    gc.collect()
    return tables


def profile_scenario(sc: Scenario, profile: OsProfile) -> Scenario:
    """The scenario under ``profile``, every diff area unbounded."""
    csvs = tuple(dataclasses.replace(c, diff_area_limit=None) for c in sc.csvs)
    return dataclasses.replace(sc, os=profile, csvs=csvs)


def _tag(
    tables: dict[str, pl.DataFrame], profile: str, strategy: Strategy
) -> list[dict[str, pl.DataFrame]]:
    """One set of tables per backup the run did, with the case columns in front."""
    out = []
    ran = set(tables["summary"]["backup"].to_list())
    for index, label in enumerate(strategy.labels):
        if index not in ran:
            continue
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


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Collector:
    """The runs of one plan and their tagged tables."""

    def __init__(
        self, settings: PlanSettings, runner: Runner, progress: Progress | None, profiles: int
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.progress = progress
        self.parts: dict[tuple[str, str, int], dict[str, pl.DataFrame]] = {}
        #: ``--verify``: each run's verification rows, with its case.
        self.verified: list[pl.DataFrame] = []
        #: Why runs the estimate refused ran on the exact engine.
        self.notes: list[str] = []
        self.done = 0
        # A first guess, corrected as the plan decides (a re-run of the chosen full backup).
        self.planned = profiles * (len(settings.concurrency) + len(settings.fractions))
        #: The runs to come as first guessed, (profile, kind, fraction) → expected simulated
        #: seconds each (:func:`_guesses`), and the simulated seconds of the runs done.
        self.to_come: list[tuple[tuple[str, str, float | None], float]] = []
        self.walked = 0.0

    def run(
        self,
        variant: Scenario,
        profile: OsProfile,
        strategy: Strategy,
        keep_going: KeepGoing | None = None,
    ) -> list[dict[str, pl.DataFrame]]:
        started = time.perf_counter()
        run_no = self.done + 1
        self._took(profile.value, strategy.kind, strategy.fraction)
        last: list[RunProgress] = []

        def on_set(at: RunProgress) -> None:
            last[:] = [at]
            if self.progress is not None:
                self.progress(
                    Step(
                        run_no,
                        self.planned,
                        profile.value,
                        strategy,
                        at.sets_done,
                        at.sets,
                        time.perf_counter() - started,
                        peak_rss_bytes=_peak_rss(),
                        at=at,
                        work_done_s=self.walked + at.sim_s,
                        work_s=self.walked + at.expected_s + self._still_to_come(),
                    )
                )

        tables = self.runner(variant, strategy, self.settings, Hooks(keep_going, on_set))
        if "notes" in tables:
            self.notes.extend(tables["notes"]["note"].to_list())
        if "verify" in tables:
            self.verified.append(
                tables["verify"].select(
                    pl.lit(str(profile)).alias("profile"),
                    pl.lit(strategy.label).alias("strategy"),
                    pl.lit(strategy.concurrency, dtype=pl.Int64).alias("concurrency"),
                    pl.all(),
                )
            )
        tagged = _tag(tables, profile.value, strategy)
        del tables
        for one_backup in tagged:
            key = one_backup["summary"].select(CASE).row(0)
            self.parts[key] = one_backup
        self.done += 1
        if len(tagged) > 1:
            self._took(profile.value, "incremental", None)
        self.walked += last[0].sim_s if last else 0.0
        if self.progress is not None:
            labels = tuple(strategy.labels[: len(tagged)])
            self.progress(
                Step(
                    run_no,
                    self.planned,
                    profile.value,
                    strategy,
                    0,
                    0,
                    time.perf_counter() - started,
                    done=True,
                    backups=labels,
                    peak_rss_bytes=_peak_rss(),
                    at=last[0] if last else None,
                    work_done_s=self.walked,
                    work_s=self.walked + self._still_to_come(),
                )
            )
        return tagged

    def _took(self, profile: str, kind: str, fraction: float | None) -> None:
        """A run (or a backup riding on one) the first guess counted is under way."""
        for i, (key, _) in enumerate(self.to_come):
            if key == (profile, kind, fraction):
                del self.to_come[i]
                return

    def _still_to_come(self) -> float:
        return sum(s for _, s in self.to_come)

    def copy(self, profile: OsProfile, concurrency: int, to: int) -> None:
        """The full backup at ``to`` is the run at ``concurrency``: its tables, relabelled."""
        one = self.parts[(profile.value, "full", concurrency)]
        self.parts[(profile.value, "full", to)] = {
            name: t.with_columns(pl.lit(to, dtype=pl.Int64).alias("concurrency"))
            for name, t in one.items()
        }
        self.planned -= 1

    def tables(self) -> dict[str, pl.DataFrame]:
        out = {
            name: pl.concat([p[name] for p in self.parts.values()], how="vertical_relaxed")
            for name in TABLES
        }
        if self.verified:
            out["verify"] = pl.concat(self.verified, how="vertical_relaxed")
        if self.notes:
            out["notes"] = pl.DataFrame({"note": self.notes})
        return out


class _Sweep:
    """One profile's concurrency sweep: which point carries the incremental.

    The points run in ascending concurrency; the first whose full backup fits the window (no
    failures) is the chosen one, as :func:`vssim.report.analysis.best_concurrency` picks it. If
    none fits, the best is known at the end: the last point goes on if it is the best so far.
    """

    def __init__(self, settings: PlanSettings) -> None:
        self.window_s = settings.window_s
        self.ranks: dict[int, tuple[Any, ...]] = {}
        self.chosen: int | None = None

    def rank(self, failures: int, window: float, concurrency: int) -> tuple[Any, ...]:
        """Fitting points first (lowest concurrency), then the fewest failures, the shortest
        window."""
        fits = failures == 0 and window <= self.window_s
        return (0, concurrency) if fits else (1, failures, window, concurrency)

    def after_full(self, concurrency: int, last: bool, rec: BackupRecord) -> bool:
        """Asked when the full backup at ``concurrency`` ends: go on with its incremental?"""
        rank = self.ranks[concurrency] = self.rank(rec.failures, rec.window_s, concurrency)
        if self.chosen is None and (rank[0] == 0 or (last and rank == min(self.ranks.values()))):
            self.chosen = concurrency
            return True
        return False

    def best(self) -> int:
        return min(self.ranks, key=lambda k: self.ranks[k])


def reach(sc: Scenario) -> tuple[int, int]:
    """The most snapshot sets and the most VMs any requester node has in a full backup of
    ``sc``: concurrency beyond both (sets at once per node, copy streams per node) cannot change
    the run, so sweep points past them are the same run."""
    from vssim.scale.schedule import BackupSpec, Schedule, plan_jobs

    sets: dict[str, int] = {}
    vms: dict[str, int] = {}
    for job in plan_jobs(sc, BackupSpec(), Schedule()):
        sets[job.node] = sets.get(job.node, 0) + 1
        vms[job.node] = vms.get(job.node, 0) + len(job.selected)
    return max(sets.values(), default=1), max(vms.values(), default=1)


def _guesses(
    variants: dict[OsProfile, Scenario],
    reaches: dict[OsProfile, tuple[int, int]],
    settings: PlanSettings,
) -> list[tuple[tuple[str, str, float | None], float]]:
    """The runs a plan first expects to make, each with its expected simulated seconds (the
    data-bound floor of :func:`vssim.scale.progress.backup_floor_s`; a selective backup its
    share of the full one): every distinct sweep point's full backup, one incremental, the
    selective backups."""
    from vssim.scale.progress import backup_floor_s
    from vssim.scale.schedule import BackupKind

    out: list[tuple[tuple[str, str, float | None], float]] = []
    for profile, v in variants.items():
        reads = [(vm.node, vm) for vm in v.vms]
        full = backup_floor_s(v, BackupKind.FULL, reads, 0.0)
        since = settings.incremental_after_s + full
        incr = backup_floor_s(v, BackupKind.INCREMENTAL, reads, since)
        most_sets, most_vms = reaches[profile]
        points = {(min(k, most_sets), min(k, most_vms)) for k in settings.concurrency}
        out += [((profile.value, "full", None), full)] * len(points)
        out.append(((profile.value, "incremental", None), settings.incremental_after_s + incr))
        out += [((profile.value, "selective", f), f * full) for f in settings.fractions]
    return out


def collect(
    sc: Scenario,
    settings: PlanSettings,
    runner: Runner = scale_runner,
    progress: Progress | None = None,
) -> dict[str, pl.DataFrame]:
    """Run the plan's strategies; the result tables of all runs, with the case columns.

    Per profile, the sweep runs its full backups in ascending concurrency. The incremental
    needs a full backup before it, so it continues the run of the concurrency the plan chooses
    (:class:`_Sweep`); the sweep's other points stop after their full backup. Only when the best
    point was not the last one is its full backup run again (runs are deterministic: the same
    figures) to carry the incremental. Sweep points past the cluster's :func:`reach` are the
    same run as the first of them: it runs once and its tables stand for the others. The
    selective backups then run at the chosen concurrency.
    """
    profiles = plan_profiles(settings, sc.os)
    c = _Collector(settings, runner, progress, len(profiles))
    if progress is not None:
        progress(PlanStart(sc, tuple(p.value for p in profiles), c.planned))
    variants = {p: profile_scenario(sc, p) for p in profiles}
    reaches = {p: reach(v) for p, v in variants.items()}
    if progress is not None:
        c.to_come = _guesses(variants, reaches, settings)
    for profile in profiles:
        variant = variants[profile]
        s = _Sweep(settings)
        points = sweep(settings)
        most_sets, most_vms = reaches[profile]
        same_as: dict[tuple[int, int], int] = {}
        for i, strategy in enumerate(points):
            k = strategy.concurrency
            effective = (min(k, most_sets), min(k, most_vms))
            if effective in same_as:
                c.copy(profile, same_as[effective], k)
                s.ranks[k] = (*s.ranks[same_as[effective]][:-1], k)
                continue
            same_as[effective] = k
            ask = functools.partial(s.after_full, k, i == len(points) - 1)
            c.run(variant, profile, strategy, ask)
        if s.chosen is None:
            s.chosen = s.best()
            c.planned += 1
            c.run(variant, profile, Strategy("full", s.chosen))
        for strategy in followups(settings, s.chosen):
            c.run(variant, profile, strategy)
    return c.tables()


@dataclass(frozen=True)
class PlanReport:
    out: Path
    html: Path
    markdown: Path
    charts: list[charts.Chart]
    analysis: Analysis
    advice: dict[str, list[str]]
    #: What the scenario's loader warned about (``ScenarioWarning`` as text), then the runs.
    warnings: tuple[str, ...] = ()
    #: The scenario's own load-time warnings (the first of :attr:`warnings`).
    scenario_warnings: tuple[ScenarioWarning, ...] = ()

    @property
    def run_warnings(self) -> tuple[str, ...]:
        """The warnings the runs gave (after the scenario's)."""
        return self.warnings[len(self.scenario_warnings) :]


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
    # Imported here: matplotlib takes a third of a second to import, and a plan's first
    # progress line should not wait for the charts it draws at the very end.
    from vssim.report import charts, html

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
    made_by = " and ".join(Engine(e).description for e in a.engines)
    meta = (
        f"Scenario {sc.path}{note}; {runs} backups in modelled runs by {made_by}"
        + (f" in {duration(wall_s)} of wall time" if wall_s is not None else "")
        + f"; target window {duration(settings.window_s)}; vssim plan."
        + "".join(
            f" {advice.NAMES.get(p, p)}: " + "; ".join(notes) + "."
            for p, notes in sorted(a.beyond.items())
        )
    )
    warned = [str(w) for w in sc.warnings]
    if "notes" in tables:
        # Runs the estimate refused went to the exact engine: the report says which and why.
        warned += [
            f"run on the exact engine (the estimate refused it): {n}"
            for n in tables["notes"]["note"].to_list()
        ]
    page = out / "report.html"
    page.write_text(html.render_html(title, meta, a, words, drawn, warned), encoding="utf-8")
    md = out / "report.md"
    md.write_text(html.render_markdown(title, meta, a, words, drawn, out, warned), encoding="utf-8")
    return PlanReport(out, page, md, drawn, a, words, tuple(warned), tuple(sc.warnings))


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
    runner: Runner | None = None,
    progress: Progress | None = None,
    vms: int | None = None,
    engine: str = "estimate",
    verify: int = 0,
) -> PlanReport:
    """``vssim plan``: read the scenario and its ``[plan]`` table, apply ``options`` (those not
    None override the file), run (on ``engine``; ``verify`` VMs re-run on the exact engine),
    analyse, write."""
    sc, from_file = load_for_plan(path, vms)
    chosen = from_file.with_options(**(options or {}))
    started = time.perf_counter()
    if runner is None:
        runner = functools.partial(scale_runner, engine=str(Engine.of(engine)), verify=verify)
    tables = collect(sc, chosen, runner, progress)
    note = f" (--vms {vms}: the file's cluster with {vms} VMs)" if vms is not None else ""
    return write_report(sc, chosen, tables, out, time.perf_counter() - started, note)
