"""A modelled run: one or more backups of a whole scenario on one virtual clock.

How it works: :func:`simulate` builds the engine's cluster (:class:`ModelClusterBackend`), the
shared links (:class:`~vssim.scale.fair_share_links.FairShareLinks`) and one SimPy environment.
Three kinds of process share it:

* the **workload clock** advances the engine's cluster every ``window_s`` simulated seconds (the
  backup runs also advance it at each snapshot's creation and deletion, so those instants are
  exact); after each window the CSVs' guest and copy-on-write I/O load their storage links
  (:mod:`~vssim.scale.storage_load`), and a CSV near a free-space level is foreseen
  (:mod:`~vssim.scale.deletion_watch`);
* the **scheduler** starts each backup's snapshot sets (:func:`~vssim.scale.schedule.plan_jobs`) as
  soon as their requester node and their CSVs have room (per-node and per-CSV limits);
* each **snapshot set** is a protocol backup run (:class:`~vssim.sim.backup_run.BackupRun`)
  with the modelled data path (:class:`~vssim.scale.modelled_path.ModelledPath`).

Backups listed together run one after the other, ``interval_s`` apart (the guests keep writing in
between, which is what an incremental then reads). The result is a :class:`ModelledRun`: plain
records, which :func:`vssim.metrics.run` (``vssim.run``) turns into the result tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import simpy

from vssim.errors import InvalidArgumentError
from vssim.scale.deletion_watch import DeletionWatch
from vssim.scale.engines import ESTIMATE_WINDOW_S, Engine
from vssim.scale.fair_share_links import FairShareLinks
from vssim.scale.gc_pause import fewer_collections
from vssim.scale.materialize import MaterializedBackend
from vssim.scale.materialized_path import RealFiles
from vssim.scale.model_cluster import EstimateClusterBackend, ModelClusterBackend
from vssim.scale.modelled_path import BackupContext, ModelledPath
from vssim.scale.progress import Progress, RunCounter
from vssim.scale.schedule import BackupKind, BackupSpec, Schedule, parse_kinds, plan_jobs
from vssim.scale.storage_load import StorageLoad
from vssim.scale.verify import replay, sample_vms
from vssim.scenario import Scenario, load_scenario
from vssim.sim.backup_run import BackupRun
from vssim.sim.links import TARGET, nic_link
from vssim.sim.records import (
    BackupRecord,
    CapacityRecord,
    CsvSnapshot,
    RunRecords,
    SetRecord,
)
from vssim.vss.cluster_state import ClusterState
from vssim.vss.enums import HResult
from vssim.vss.jobs import BackupJob

#: The first backup's start and the time between backups: at most a week each (model choice: a
#: weekly full is the longest cadence plans compare; the workload clock walks every window of it).
MAX_INTERVAL_S = 7 * 86_400.0
#: The workload clock's window, seconds (model choice).
MIN_WINDOW_S, MAX_WINDOW_S = 0.01, 3_600.0
#: Guest writes one window may generate: the engine holds a window's writes at once (about 20
#: bytes each), so the window shrinks until the cluster's peak write rate fits (model choice:
#: 16 Mi writes, ~320 MiB), and a cluster that does not fit even the shortest window is refused.
WINDOW_WRITES = 1 << 24


#: ``verify``: the most VMs a run replays on the exact engine (model choice: each costs what
#: the exact run of one VM does, and a few dozen bound the estimate's error well).
MAX_VERIFY_VMS = 1_000

#: Asked after each backup but the last: go on with the next one (False ends the run there).
KeepGoing = Callable[[BackupRecord], bool]


@dataclass
class ModelledRun:
    """A finished modelled run: its records (:mod:`vssim.sim.records`, what the metric tables
    are built from) and the guest writes the engine simulated; a materialized run adds one row per
    backup file (:data:`~vssim.scale.materialize.BACKUPS_SCHEMA`) and, per CSV, the model's
    copy-on-write figures beside the real volume's."""

    records: RunRecords
    writes_simulated: int
    #: The tier that counted (:class:`~vssim.scale.engines.Engine`).
    engine: Engine = Engine.EXACT
    #: ``verify``: the exact engine's figures beside the estimate's for the sampled VMs
    #: (:data:`~vssim.scale.verify.VERIFY_SCHEMA`).
    verification: pl.DataFrame | None = None
    backups: pl.DataFrame | None = None
    invariant: pl.DataFrame | None = None
    materialized: Path | None = None


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


def simulate(
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
    engine: str | Engine = Engine.EXACT,
    verify: int = 0,
) -> ModelledRun:
    """Run the backups ``backup`` (a type, a :class:`BackupSpec`, or several, one after the
    other) on ``scenario`` in modelled mode; :func:`vssim.metrics.run` turns the records into the
    result tables.

    ``selective`` needs ``vms``, ``fraction`` or ``include``; the other types take them as a
    narrowing too. The guests write from time 0; the first backup starts at ``start_s``, the
    next ``interval_s`` after the previous one ends. The engine's cluster advances at least
    every ``window_s`` simulated seconds. ``keep_going``, asked after each backup but the last
    with its record, may end the run there (the records then hold the backups that ran).
    ``progress`` is told where the run is as it goes (:class:`~vssim.scale.progress.RunProgress`:
    sets, VM copies, simulated seconds against those expected).

    ``materialize``: a new (or empty) folder; the run then also keeps real VHDX disks on real
    copy-on-write volumes there and writes every backup as real VHDX files, each verified
    against the disk at its snapshot instant (:mod:`vssim.scale.materialize`; ``check_files``
    adds ``qemu-img check`` of every backup file). Size the scenario for the disk you have.

    ``engine``: ``exact`` (every guest write simulated) or ``estimate`` (the expected counts in
    closed form, :mod:`vssim.scale.engines`; not with ``materialize``: real disks need every
    write). ``verify``: with the estimate, replay that many sampled VMs on the exact engine over
    the run's snapshot epochs (:mod:`vssim.scale.verify`; ``ModelledRun.verification``).
    """
    tier = Engine.of(engine)
    if not (isinstance(verify, int) and 0 <= verify <= MAX_VERIFY_VMS):
        raise InvalidArgumentError(f"verify = {verify!r}: expected 0 to {MAX_VERIFY_VMS} VMs")
    if verify and tier is not Engine.ESTIMATE:
        raise InvalidArgumentError(
            "verify: checks the estimate against the exact engine; it needs engine 'estimate'"
        )
    if tier is Engine.ESTIMATE and materialize is not None:
        raise InvalidArgumentError(
            "materialize: real disks need every guest write, which only the exact engine "
            "makes; run materialized with engine 'exact' (vssim run --engine exact)"
        )
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    specs = _specs(backup, vms, fraction, include, exclude)
    for s in specs:
        if s.kind is BackupKind.SELECTIVE and not (s.vms or s.fraction or s.include):
            raise ValueError("a selective backup needs vms, fraction or include")
    _check_seconds("interval_s", interval_s, 0.0, MAX_INTERVAL_S)
    _check_seconds("start_s", start_s, 0.0, MAX_INTERVAL_S)
    _check_seconds("window_s", window_s, MIN_WINDOW_S, MAX_WINDOW_S)
    env = simpy.Environment()
    clock = lambda: float(env.now)  # noqa: E731
    backend: ModelClusterBackend
    if materialize is not None:
        backend = MaterializedBackend(sc, materialize, clock=clock)
    elif tier is Engine.ESTIMATE:
        backend = EstimateClusterBackend(sc, clock=clock)
    else:
        backend = ModelClusterBackend(sc, clock=clock)
    if verify:
        backend.record_events()
    try:
        # After the backend: the engine names a VM whose own rate it refuses first. The
        # estimate holds no writes: its window is the longest.
        window_s = (
            max(window_s, ESTIMATE_WINDOW_S)
            if tier is Engine.ESTIMATE
            else _window_for(sc, window_s)
        )
        run = _Run(env, sc, backend, schedule or Schedule(), window_s, progress)
        with fewer_collections():
            records = run.backups(specs, start_s, interval_s, keep_going)
        backend.advance_to(float(env.now))
        links = run.links
        out = ModelledRun(
            RunRecords(
                sc,
                records,
                nic_bytes={n.name: links.nic_bytes[n.name] for n in sc.nodes},
                nic_busy_s={n.name: links.link_busy[nic_link(n.name)] for n in sc.nodes},
                capacity=CapacityRecord(
                    dict(backend.paused_at), dict(backend.pause_cause), dict(backend.low_space_at)
                ),
                engine=str(tier),
            ),
            writes_simulated=backend.writes_simulated,
            engine=tier,
        )
        if verify:
            out.verification = replay(sc, backend, sample_vms(sc, verify))
        if isinstance(backend, MaterializedBackend):
            backend.finish(check=check_files)
            out.backups = backend.store.frame()
            out.invariant = backend.invariant()
            out.materialized = backend.root
    except BaseException:
        # An error, a full disk, Ctrl-C: what the run had not committed goes (the backup store
        # keeps what its manifest lists).
        if isinstance(backend, MaterializedBackend):
            backend.abort()
        raise
    return out


def _check_seconds(name: str, value: float, least: float, most: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and least <= value <= most):
        raise InvalidArgumentError(
            f"{name} = {value!r}: expected seconds from {least:g} to {most:g}"
        )


def _window_for(sc: Scenario, window_s: float) -> float:
    """The workload clock's window: ``window_s``, shorter when the cluster's peak write rate
    would put more than :data:`WINDOW_WRITES` writes in it (the streams are keyed by time, so
    the figures do not depend on it)."""
    peak = sum(
        len(vm.disks) * vm.workload.write_iops * (1.0 + vm.workload.diurnal_amplitude)
        for vm in sc.vms
    )
    if peak * MIN_WINDOW_S > WINDOW_WRITES:
        raise InvalidArgumentError(
            f"{sc.path}: the VMs write up to {peak:,.0f} times a second: more than "
            f"{WINDOW_WRITES:,} writes in the shortest window ({MIN_WINDOW_S:g} s), the most "
            "vssim holds at once; give the VMs a lower write_iops"
        )
    return window_s if peak * window_s <= WINDOW_WRITES else WINDOW_WRITES / peak


class _Run:
    """The processes of one modelled run on one SimPy environment (see the module doc)."""

    def __init__(
        self,
        env: simpy.Environment,
        sc: Scenario,
        backend: ModelClusterBackend,
        sched: Schedule,
        window_s: float,
        progress: Progress | None,
    ) -> None:
        self.env, self.sc, self.backend, self.sched = env, sc, backend, sched
        self.window_s = window_s
        self.progress = progress
        self.state = ClusterState(sc, backend=backend)
        self.links = FairShareLinks(env, sc)
        self.storage = StorageLoad(backend, self.links)
        self.watch = DeletionWatch(env, backend, window_s)
        self.per_node, self.per_csv = sched.limits(sc)
        self.streams = {
            n.name: simpy.Resource(env, capacity=sched.streams_per_node) for n in sc.nodes
        }
        self.has_base: set[str] = set()
        self.done = 0
        self.total = 0
        self.counter = RunCounter(progress, 0.0, 0.0)

    def backups(
        self,
        specs: list[BackupSpec],
        start_s: float,
        interval_s: float,
        keep_going: KeepGoing | None,
    ) -> list[BackupRecord]:
        """Runs ``specs`` one after the other; the records of those that ran."""
        env, sc = self.env, self.sc
        plans = [plan_jobs(sc, s, self.sched, label=f"{i}:{s.kind}") for i, s in enumerate(specs)]
        self.total = sum(len(p) for p in plans)
        records = [BackupRecord(i, str(s.kind)) for i, s in enumerate(specs)]
        finished = env.event()
        count = self.counter = RunCounter(
            self.progress, start_s, interval_s, lambda: self.links.moved(TARGET)
        )
        count.planned(sc, [s.kind for s in specs], plans)
        count.emit("start", float(env.now), 0, self.total)

        def driver() -> simpy.events.ProcessGenerator:
            if start_s:
                yield env.timeout(start_s)
            for i, (rec, jobs, spec) in enumerate(zip(records, plans, specs, strict=True)):
                if i and keep_going is not None and not keep_going(records[i - 1]):
                    del records[i:]
                    break
                if i and interval_s:
                    yield env.timeout(interval_s)
                count.backup_started(float(env.now))
                yield env.process(self._one_backup(rec, spec.kind, jobs))
                count.backup_ended(float(env.now))
                count.emit("backup", float(env.now), self.done, self.total)
            finished.succeed()

        def workload_clock() -> simpy.events.ProcessGenerator:
            while not finished.triggered:
                yield env.any_of([env.timeout(self.window_s), finished])
                self.backend.advance_to(float(env.now))
                self.storage.tick(float(env.now))
                if not finished.triggered:
                    count.tick(float(env.now), self.done, self.total)

        env.process(driver())
        env.process(workload_clock())
        env.run(until=finished)
        return records

    def _one_backup(
        self, rec: BackupRecord, kind: BackupKind, jobs: list[BackupJob]
    ) -> simpy.events.ProcessGenerator:
        """One backup's snapshot sets, each started as soon as its requester node and its CSVs
        have room."""
        env, sc = self.env, self.sc
        real = (
            RealFiles(self.backend, rec.index)
            if isinstance(self.backend, MaterializedBackend)
            else None
        )
        ctx = BackupContext(
            env,
            self.state,
            self.backend,
            self.links,
            kind,
            self.streams,
            self.has_base,
            self.watch,
            real,
        )
        rec.start = float(env.now)
        # The sets waiting, in the order they start when they have room; a set's end frees its
        # node and its CSVs, so only the sets of that node or of those CSVs can start then (the
        # others lacked room before and starting sets only takes room): those are looked at.
        pending: dict[int, tuple[BackupJob, ModelledPath, str, tuple[str, ...]]] = {}
        by_node: dict[str, list[int]] = {}
        by_csv: dict[str, list[int]] = {}
        for i, j in enumerate(jobs):
            req = sc.node(j.node).name
            csvs = tuple(c.name for c in j.volumes)
            pending[i] = (j, ModelledPath(ctx, j), req, csvs)
            by_node.setdefault(req, []).append(i)
            for c in csvs:
                by_csv.setdefault(c, []).append(i)
        started: list[tuple[BackupRun, ModelledPath]] = []
        node_busy = dict.fromkeys(self.streams, 0)
        csv_busy = {c.name: 0 for c in sc.csvs}
        all_done = env.event()
        running = [0]

        def one_set(r: BackupRun, path: ModelledPath) -> simpy.events.ProcessGenerator:
            yield from r.process()
            node_busy[r.req] -= 1
            for c in r.job.volumes:
                csv_busy[c.name] -= 1
            running[0] -= 1
            self.done += 1
            self.counter.set_ended(path, len(r.job.selected))
            self.counter.emit("set", float(env.now), self.done, self.total)
            # A backup in the history (not copy) is the next incremental's base; a failed one
            # whose change tracking restarted at its snapshot leaves none (the next is full).
            if real is not None:
                for vc in path.vm_copies.values():
                    real.settle(vc, r.result.ok and vc.hresult == HResult.S_OK)
                real.commit()
            if kind is not BackupKind.COPY:
                for name, vc in path.vm_copies.items():
                    if r.result.ok and vc.hresult == HResult.S_OK:
                        self.has_base.add(name)
                    elif vc.snapshot_at is not None:
                        self.has_base.discard(name)
            freed = {i for c in r.job.volumes for i in by_csv[c.name] if i in pending}
            freed.update(i for i in by_node[r.req] if i in pending)
            start_ready(sorted(freed))

        def start_ready(candidates: list[int] | None = None) -> None:
            for i in list(pending) if candidates is None else candidates:
                job, path, req, csvs = pending[i]
                if node_busy[req] >= self.per_node:
                    continue
                if any(csv_busy[c] >= self.per_csv for c in csvs):
                    continue
                del pending[i]
                node_busy[req] += 1
                for c in csvs:
                    csv_busy[c] += 1
                running[0] += 1
                r = BackupRun(env, self.state, self.links, job, path)
                started.append((r, path))
                self.counter.set_started(path)
                env.process(one_set(r, path))
            if not pending and not running[0] and not all_done.triggered:
                all_done.succeed()

        start_ready()
        yield all_done
        rec.end = float(env.now)
        rec.sets = [self._set_record(r, path) for r, path in started]

    def _set_record(self, r: BackupRun, path: ModelledPath) -> SetRecord:
        csvs = []
        for csv in r.job.volumes:
            copy = r.copies.get(csv.name)
            h = None if copy is None else copy.backend_handle
            life = None if h is None else self.backend.lives.get((csv.name, h))
            csvs.append(CsvSnapshot(csv, copy, life, r.csvs.redirect_windows.get(csv.name, 0.0)))
        return SetRecord(r.job, r.req, r.result, tuple(path.vm_copies.values()), tuple(csvs))
