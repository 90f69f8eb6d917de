"""A modelled run: one or more backups of a whole scenario on one virtual clock.

How it works: :func:`run` builds the engine's cluster (:class:`ModelClusterBackend`), the shared
links (:class:`SharedResources`) and one SimPy environment. Three kinds of process share it:

* the **workload clock** advances the engine's cluster every ``window_s`` simulated seconds (the
  backup runs also advance it at each snapshot's creation and deletion, so those instants are
  exact);
* the **scheduler** starts each backup's snapshot sets (:func:`~vssim.scale.schedule.plan_jobs`) as
  soon as their requester node and their CSVs have room (per-node and per-CSV limits);
* each **snapshot set** is a protocol backup run (:class:`ScaleBackupRun`).

Backups listed together run one after the other, ``interval_s`` apart (the guests keep writing in
between, which is what an incremental then reads). The result is a :class:`RunResult` with the
five metric tables (:mod:`vssim.metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import simpy

from vssim.scale.deletion_watch import DeletionWatch
from vssim.scale.fair_share_links import SharedResources
from vssim.scale.materialize import MaterializedBackend
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scale.modelled_path import RunContext, ScaleBackupRun
from vssim.scale.schedule import BackupKind, BackupSpec, Schedule, parse_kinds, plan_jobs
from vssim.scenario import Scenario, load_scenario
from vssim.vss.cluster_state import ClusterState
from vssim.vss.enums import HResult

#: Called after each snapshot set ends: (sets done, sets in all).
Progress = Callable[[int, int], None]


@dataclass
class BackupRecord:
    """One backup of the run (all its snapshot sets)."""

    index: int
    spec: BackupSpec
    runs: list[ScaleBackupRun] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0

    @property
    def window_s(self) -> float:
        return self.end - self.start

    @property
    def failures(self) -> int:
        """VM backups that failed (their own error, or their set's: no partial backups)."""
        return sum(1 for r in self.runs for c in r.vm_copies.values() if r.vm_result(c) != "S_OK")


#: Asked after each backup but the last: go on with the next one (False ends the run there).
KeepGoing = Callable[[BackupRecord], bool]


@dataclass
class RunResult:
    """The tables of a run (schemas in :mod:`vssim.metrics` and README "Result tables")."""

    scenario: Scenario
    vms: pl.DataFrame
    csvs: pl.DataFrame
    nodes: pl.DataFrame
    jobs: pl.DataFrame
    phases: pl.DataFrame
    summary: pl.DataFrame
    #: Guest writes the engine simulated, and the run's wall-clock seconds.
    writes_simulated: int = 0
    wall_s: float = 0.0
    #: Materialized runs: one row per backup file (:data:`~vssim.scale.materialize.
    #: BACKUPS_SCHEMA`), and per CSV the model's copy-on-write figures beside the real volume's.
    backups: pl.DataFrame | None = None
    invariant: pl.DataFrame | None = None
    materialized: Path | None = None

    TABLES = ("vms", "csvs", "nodes", "jobs", "phases", "summary")

    def tables(self) -> dict[str, pl.DataFrame]:
        out = {name: getattr(self, name) for name in self.TABLES}
        if self.backups is not None and self.invariant is not None:
            out["backups"] = self.backups
            out["invariant"] = self.invariant
        return out

    def write_parquet(self, out: str | Path) -> list[Path]:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, df in self.tables().items():
            p = d / f"{name}.parquet"
            df.write_parquet(p)
            paths.append(p)
        return paths


def _specs(
    backup: str | BackupKind | BackupSpec | Sequence[str | BackupKind | BackupSpec],
    vms: Sequence[str],
    fraction: float | None,
    include: Sequence[str],
    exclude: Sequence[str],
) -> list[BackupSpec]:
    items = [backup] if isinstance(backup, str | BackupSpec) else list(backup)
    out = []
    for item in items:
        if isinstance(item, BackupSpec):
            out.append(item)
            continue
        (kind,) = parse_kinds([str(item)])
        selective = kind is BackupKind.SELECTIVE
        out.append(
            BackupSpec(
                kind,
                vms=tuple(vms),
                fraction=fraction if selective or fraction is not None else None,
                include=tuple(include),
                exclude=tuple(exclude),
            )
        )
    return out


def run(
    scenario: Scenario | str | Path,
    backup: str | BackupKind | BackupSpec | Sequence[str | BackupKind | BackupSpec] = "full",
    *,
    vms: Sequence[str] = (),
    fraction: float | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    schedule: Schedule | None = None,
    start_s: float = 0.0,
    interval_s: float = 600.0,
    window_s: float = 60.0,
    progress: Progress | None = None,
    keep_going: KeepGoing | None = None,
    materialize: str | Path | None = None,
    check_files: bool = True,
) -> RunResult:
    """Run the backups ``backup`` (a type, a :class:`BackupSpec`, or several, one after the
    other) on ``scenario`` in modelled mode and return the result tables.

    ``selective`` needs ``vms``, ``fraction`` or ``include``; the other types take them as a
    narrowing too. The guests write from time 0; the first backup starts at ``start_s``, the
    next ``interval_s`` after the previous one ends. The engine's cluster advances at least
    every ``window_s`` simulated seconds. ``keep_going``, asked after each backup but the last
    with its record, may end the run there (the tables then hold the backups that ran).

    ``materialize``: a new (or empty) folder; the run then also keeps real VHDX disks on real
    copy-on-write volumes there and writes every backup as real VHDX files, each verified
    against the disk at its snapshot instant (:mod:`vssim.scale.materialize`; ``check_files``
    adds ``qemu-img check`` of every backup file). Size the scenario for the disk you have.
    """
    from vssim.metrics import build_tables

    wall = time.perf_counter()
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    specs = _specs(backup, vms, fraction, include, exclude)
    for s in specs:
        if s.kind is BackupKind.SELECTIVE and not (s.vms or s.fraction or s.include):
            raise ValueError("a selective backup needs vms, fraction or include")
    if window_s <= 0 or interval_s < 0 or start_s < 0:
        raise ValueError(f"window_s={window_s}, interval_s={interval_s}, start_s={start_s}")
    sched = schedule or Schedule()
    env = simpy.Environment()
    clock = lambda: float(env.now)  # noqa: E731
    backend = (
        ModelClusterBackend(sc, clock=clock)
        if materialize is None
        else MaterializedBackend(sc, materialize, clock=clock)
    )
    state = ClusterState(sc, backend=backend)
    res = SharedResources(env, sc)
    watch = DeletionWatch(env, backend, window_s)
    per_node, per_csv = sched.limits(sc)
    streams = {n.name: simpy.Resource(env, capacity=sched.streams_per_node) for n in sc.nodes}
    plans = [plan_jobs(sc, s, sched, label=f"{i}:{s.kind}") for i, s in enumerate(specs)]
    total = sum(len(p) for p in plans)
    records = [BackupRecord(i, s) for i, s in enumerate(specs)]
    finished = env.event()
    done_count = [0]
    has_base: set[str] = set()

    def one_backup(rec: BackupRecord, jobs: list[object]) -> simpy.events.ProcessGenerator:
        ctx = RunContext(
            env, state, backend, res, rec.spec.kind, streams, has_base, watch, rec.index
        )
        rec.start = float(env.now)
        pending = [ScaleBackupRun(ctx, j) for j in jobs]  # type: ignore[arg-type]
        node_busy = dict.fromkeys(streams, 0)
        csv_busy = {c.name: 0 for c in sc.csvs}
        all_done = env.event()
        running = [0]

        def job(r: ScaleBackupRun) -> simpy.events.ProcessGenerator:
            yield from r.process()
            node_busy[r.req] -= 1
            for c in r.job.volumes:
                csv_busy[c.name] -= 1
            running[0] -= 1
            done_count[0] += 1
            if progress is not None:
                progress(done_count[0], total)
            # A backup in the history (not copy) is the next incremental's base; a failed one
            # whose change tracking restarted at its snapshot leaves none (the next is full).
            if isinstance(backend, MaterializedBackend):
                for name, vc in r.vm_copies.items():
                    backend.settle(name, r.result.ok and vc.hresult == HResult.S_OK)
            if rec.spec.kind is not BackupKind.COPY:
                for name, vc in r.vm_copies.items():
                    if r.result.ok and vc.hresult == HResult.S_OK:
                        has_base.add(name)
                    elif vc.snapshot_at is not None:
                        has_base.discard(name)
            start_ready()

        def start_ready() -> None:
            for r in list(pending):
                if node_busy[r.req] >= per_node:
                    continue
                if any(csv_busy[c.name] >= per_csv for c in r.job.volumes):
                    continue
                pending.remove(r)
                node_busy[r.req] += 1
                for c in r.job.volumes:
                    csv_busy[c.name] += 1
                running[0] += 1
                rec.runs.append(r)
                env.process(job(r))
            if not pending and not running[0] and not all_done.triggered:
                all_done.succeed()

        start_ready()
        yield all_done
        rec.end = float(env.now)

    def driver() -> simpy.events.ProcessGenerator:
        if start_s:
            yield env.timeout(start_s)
        for i, (rec, jobs) in enumerate(zip(records, plans, strict=True)):
            if i and keep_going is not None and not keep_going(records[i - 1]):
                del records[i:]
                break
            if i and interval_s:
                yield env.timeout(interval_s)
            yield env.process(one_backup(rec, list(jobs)))
        finished.succeed()

    def workload_clock() -> simpy.events.ProcessGenerator:
        while not finished.triggered:
            yield env.any_of([env.timeout(window_s), finished])
            backend.advance_to(float(env.now))

    env.process(driver())
    env.process(workload_clock())
    env.run(until=finished)
    backend.advance_to(float(env.now))
    tables = build_tables(sc, records, backend, res)
    result = RunResult(
        sc,
        vms=tables["vms"],
        csvs=tables["csvs"],
        nodes=tables["nodes"],
        jobs=tables["jobs"],
        phases=tables["phases"],
        summary=tables["summary"],
        writes_simulated=backend.writes_simulated,
    )
    if isinstance(backend, MaterializedBackend):
        backend.finish(check=check_files)
        result.backups = backend.store.frame()
        result.invariant = backend.invariant()
        result.materialized = backend.root
    result.wall_s = time.perf_counter() - wall
    return result
