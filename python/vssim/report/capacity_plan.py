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
from vssim.report.plan_runs import ProfileRuns, RunTask
from vssim.report.plan_workers import Workers, peak_rss, rebuilt
from vssim.report.strategies import (
    PlanSettings,
    Strategy,
    plan_profiles,
    read_plan,
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


class _Collector:
    """The runs of one plan: their progress as they go, their tables once done."""

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
        self.started = 0
        # A first guess, corrected as the plan decides (a re-run of the chosen full backup).
        self.planned = profiles * (len(settings.concurrency) + len(settings.fractions))
        #: The runs to come as first guessed, (profile, kind, fraction) → expected simulated
        #: seconds each (:func:`_guesses`), and the simulated seconds of the runs done.
        self.to_come: list[tuple[tuple[str, str, float | None], float]] = []
        self.walked = 0.0
        #: The runs under way: their number, start (wall clock) and latest progress.
        self.running: dict[RunTask, tuple[int, float, RunProgress | None]] = {}
        #: Each run's tables once done (put in order by :meth:`assemble`).
        self.results: dict[RunTask, dict[str, pl.DataFrame]] = {}
        #: The peak resident memory of the plan's other processes (workers), by worker.
        self.other_peaks: dict[int, int] = {}

    def _peak(self) -> int:
        return peak_rss() + sum(self.other_peaks.values())

    def begin(self, task: RunTask) -> None:
        self.started += 1
        if task.strategy.kind == "full" and not task.asks:
            self.planned += 1  # the best full backup again, to carry the incremental
        self.running[task] = (self.started, time.perf_counter(), None)
        self._took(task.profile.value, task.strategy.kind, task.strategy.fraction)

    def _work(self) -> tuple[float, float]:
        """Simulated seconds walked and expected in all (see :attr:`Step.work_s`)."""
        done = self.walked + sum(at.sim_s for _, _, at in self.running.values() if at)
        expected = self.walked + sum(at.expected_s for _, _, at in self.running.values() if at)
        return done, expected + self._still_to_come()

    def _tell(
        self,
        task: RunTask,
        run: tuple[int, float, RunProgress | None],
        sets: tuple[int, int] = (0, 0),
        backups: tuple[str, ...] | None = None,
    ) -> None:
        """The progress callback's :class:`Step` for ``task`` (``run``: its number, start and
        latest progress; ``backups``: it ended with those)."""
        if self.progress is None:
            return
        run_no, started, at = run
        done, expected = self._work()
        self.progress(
            Step(
                run_no,
                self.planned,
                task.profile.value,
                task.strategy,
                *sets,
                time.perf_counter() - started,
                done=backups is not None,
                backups=backups or (),
                peak_rss_bytes=self._peak(),
                at=at,
                work_done_s=done,
                work_s=expected,
            )
        )

    def on_progress(self, task: RunTask, at: RunProgress) -> None:
        run_no, started, _ = self.running[task]
        self.running[task] = (run_no, started, at)
        self._tell(task, self.running[task], (at.sets_done, at.sets))

    def finish(self, task: RunTask, tables: dict[str, pl.DataFrame]) -> None:
        run = self.running.pop(task)
        self.results[task] = tables
        backups = tables["summary"]["backup"].n_unique()
        if backups > 1:
            self._took(task.profile.value, "incremental", None)
        last = run[2]
        self.walked += last.sim_s if last is not None else 0.0
        self._tell(task, run, backups=tuple(task.strategy.labels[:backups]))

    def assemble(self, plans: list[ProfileRuns]) -> None:
        """The tables in the order one run after another makes them (a later run of a case —
        the best full backup run again — replaces the earlier one in its place)."""
        for pr in plans:
            for what, item in pr.order():
                if what == "copy":
                    self.copy(pr.profile, *item)
                    continue
                task: RunTask = item
                tables = self.results.pop(task)
                if "notes" in tables:
                    self.notes.extend(tables["notes"]["note"].to_list())
                if "verify" in tables:
                    self.verified.append(
                        tables["verify"].select(
                            pl.lit(str(task.profile)).alias("profile"),
                            pl.lit(task.strategy.label).alias("strategy"),
                            pl.lit(task.strategy.concurrency, dtype=pl.Int64).alias("concurrency"),
                            pl.all(),
                        )
                    )
                for one_backup in _tag(tables, task.profile.value, task.strategy):
                    key = one_backup["summary"].select(CASE).row(0)
                    self.parts[key] = one_backup

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
    jobs: int = 1,
) -> dict[str, pl.DataFrame]:
    """Run the plan's strategies (:mod:`vssim.report.plan_runs` says which); the result tables
    of all runs, with the case columns. With ``jobs`` above one, that many runs go at once in
    worker processes (:mod:`vssim.report.plan_workers`; ``runner`` must then pickle); the
    tables are the same as one run after another gives."""
    profiles = plan_profiles(settings, sc.os)
    c = _Collector(settings, runner, progress, len(profiles))
    if progress is not None:
        progress(PlanStart(sc, tuple(p.value for p in profiles), c.planned))
    variants = {p: profile_scenario(sc, p) for p in profiles}
    reaches = {p: reach(v) for p, v in variants.items()}
    if progress is not None:
        c.to_come = _guesses(variants, reaches, settings)
    plans = [ProfileRuns(p, settings, reaches[p]) for p in profiles]
    # A sweep point another run stands for is no run of its own.
    c.planned -= sum(by is not None for pr in plans for _, by in pr.points)
    if jobs > 1:
        _in_workers(c, plans, variants, jobs)
    else:
        for pr in plans:
            _one_after_another(c, pr, variants[pr.profile])
    c.assemble(plans)
    return c.tables()


def _one_after_another(c: _Collector, pr: ProfileRuns, variant: Scenario) -> None:
    """A profile's runs in this process, in order."""
    todo = pr.sweep_runs()
    while todo:
        task = todo.pop(0)

        def keep_going(rec: BackupRecord, k: int = task.strategy.concurrency) -> bool:
            pr.ask(k, rec.failures, rec.window_s)
            answer = pr.answer(k)
            assert answer is not None, "in order, every lower point has asked"
            return answer

        c.begin(task)
        hooks = Hooks(keep_going if task.asks else None, functools.partial(c.on_progress, task))
        c.finish(task, c.runner(variant, task.strategy, c.settings, hooks))
        todo += pr.take_ready()


def _in_workers(
    c: _Collector, plans: list[ProfileRuns], variants: dict[OsProfile, Scenario], jobs: int
) -> None:
    """Every profile's runs in ``jobs`` worker processes, handed out in order: the profile with
    the most snapshot sets (the costliest runs) first, each profile's sweep in ascending
    concurrency, the runs after a sweep as soon as its chosen concurrency is known."""
    by_profile = {pr.profile: pr for pr in plans}
    costly_first = sorted(plans, key=lambda pr: -_sets_of(variants[pr.profile]))
    todo: list[RunTask] = [t for pr in costly_first for t in pr.sweep_runs()]
    waiting: dict[RunTask, int] = {}  # sweep runs that asked, by worker, not yet answered
    with Workers(min(jobs, len(todo))) as pool:
        while todo or pool.busy:
            for worker in pool.idle:
                if not todo:
                    break
                task = todo.pop(0)
                c.begin(task)
                pool.submit(worker, task, variants[task.profile], c.settings, c.runner)
            for ev in pool.events():
                c.other_peaks[ev.worker] = ev.peak_rss_bytes
                pr = by_profile[ev.task.profile]
                if ev.kind == "progress":
                    c.on_progress(ev.task, ev.payload)
                elif ev.kind == "ask":
                    pr.ask(ev.task.strategy.concurrency, *ev.payload)
                    waiting[ev.task] = ev.worker
                    for t, worker in list(waiting.items()):
                        answer = by_profile[t.profile].answer(t.strategy.concurrency)
                        if answer is not None:
                            pool.answer(worker, answer)
                            del waiting[t]
                elif ev.kind == "done":
                    c.finish(ev.task, ev.payload)
                else:
                    raise rebuilt(ev.payload)
                todo += pr.take_ready()
                if pool.idle and todo:
                    break  # hand out the next run before waiting again


def _sets_of(sc: Scenario) -> int:
    """Snapshot sets of a full backup of ``sc`` (what a run's cost grows with)."""
    from vssim.scale.schedule import BackupSpec, Schedule, plan_jobs

    return len(plan_jobs(sc, BackupSpec(), Schedule()))


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
    jobs: int = 1,
) -> PlanReport:
    """``vssim plan``: read the scenario and its ``[plan]`` table, apply ``options`` (those not
    None override the file), run (on ``engine``; ``verify`` VMs re-run on the exact engine;
    ``jobs`` runs at once), analyse, write."""
    sc, from_file = load_for_plan(path, vms)
    chosen = from_file.with_options(**(options or {}))
    started = time.perf_counter()
    if runner is None:
        runner = functools.partial(scale_runner, engine=str(Engine.of(engine)), verify=verify)
    tables = collect(sc, chosen, runner, progress, jobs)
    note = f" (--vms {vms}: the file's cluster with {vms} VMs)" if vms is not None else ""
    return write_report(sc, chosen, tables, out, time.perf_counter() - started, note)
