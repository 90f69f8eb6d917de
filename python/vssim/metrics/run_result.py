"""A modelled run's result tables: :func:`run` (``vssim.run``) is
:func:`vssim.scale.runner.simulate` followed by :func:`~vssim.metrics.tables.build_tables`."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec

import polars as pl

from vssim.metrics.tables import build_tables
from vssim.scale.gc_pause import fewer_collections
from vssim.scale.runner import ModelledRun, simulate
from vssim.scenario import Scenario, ScenarioWarning
from vssim.scenario.capacity import LOW_SPACE_WARNING_BYTES, PAUSED_CRITICAL_BYTES
from vssim.vss.profile_limits import beyond_supported

P = ParamSpec("P")
#: The Parquet metadata key of a run's notes beyond its profile's supported limits.
PARQUET_LIMITS_KEY = "vssim.beyond_supported_limits"
#: The Parquet metadata key of the tier that made a table (``exact`` or ``estimate``).
PARQUET_ENGINE_KEY = "vssim.engine"


@dataclass
class RunResult:
    """The tables of a run (schemas in :mod:`vssim.metrics.schemas` and README "Result
    tables")."""

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
    #: The tier that counted: ``exact`` or ``estimate`` (:mod:`vssim.scale.engines`).
    engine: str = "exact"
    #: ``verify``: the exact engine's figures beside the estimate's for the sampled VMs.
    verification: pl.DataFrame | None = None
    #: Materialized runs: one row per backup file (:data:`~vssim.scale.materialize.
    #: BACKUPS_SCHEMA`), and per CSV the model's copy-on-write figures beside the real volume's.
    backups: pl.DataFrame | None = None
    invariant: pl.DataFrame | None = None
    materialized: Path | None = None

    TABLES = ("vms", "csvs", "nodes", "jobs", "phases", "summary")

    @property
    def warnings(self) -> tuple[ScenarioWarning, ...]:
        """What the scenario's loader warned about (an overcommitted CSV, one starting low)."""
        return self.scenario.warnings

    def capacity_notes(self) -> list[str]:
        """The run's capacity events in words: CSVs that fell below Hyper-V's levels, VMs
        paused (Paused-Critical), snapshots a full volume deleted."""
        return capacity_notes(self.csvs, self.summary)

    @classmethod
    def of(cls, done: ModelledRun, wall_s: float = 0.0) -> RunResult:
        t = build_tables(done.records)
        return cls(
            done.records.scenario,
            vms=t["vms"],
            csvs=t["csvs"],
            nodes=t["nodes"],
            jobs=t["jobs"],
            phases=t["phases"],
            summary=t["summary"],
            writes_simulated=done.writes_simulated,
            wall_s=wall_s,
            engine=str(done.engine),
            verification=done.verification,
            backups=done.backups,
            invariant=done.invariant,
            materialized=done.materialized,
        )

    @property
    def beyond_limits(self) -> tuple[str, ...]:
        """Where the scenario goes beyond its profile's supported limits (none: supported)."""
        return beyond_supported(self.scenario)

    def tables(self) -> dict[str, pl.DataFrame]:
        out = {name: getattr(self, name) for name in self.TABLES}
        if self.backups is not None and self.invariant is not None:
            out["backups"] = self.backups
            out["invariant"] = self.invariant
        if self.verification is not None:
            out["verify"] = self.verification
        return out

    def write_parquet(self, out: str | Path) -> list[Path]:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        # Every file says whether the cluster is one its Windows supports, and which engine
        # made it.
        meta = {PARQUET_LIMITS_KEY: "; ".join(self.beyond_limits), PARQUET_ENGINE_KEY: self.engine}
        for name, df in self.tables().items():
            p = d / f"{name}.parquet"
            df.write_parquet(p, metadata=meta)
            paths.append(p)
        return paths


def capacity_notes(csvs: pl.DataFrame, summary: pl.DataFrame) -> list[str]:
    """Sentences on a run's capacity events, from its ``csvs`` and ``summary`` tables."""
    out: list[str] = []
    per = csvs.group_by("csv").agg(
        pl.col("low_space_s").min(),
        pl.col("paused_critical_s").min(),
        pl.col("vms_paused").max(),
        pl.col("free_low_bytes").min(),
        (pl.col("deleted_by") == "volume full").sum().alias("volume_full"),
    )
    for row in per.sort("csv").iter_rows(named=True):
        if row["paused_critical_s"] is not None:
            out.append(
                f"{row['csv']}: free space fell below {PAUSED_CRITICAL_BYTES >> 20} MiB at "
                f"{row['paused_critical_s']:,.1f} s — {row['vms_paused']} VM(s) with dynamic "
                f"disks paused (Paused-Critical) and stay paused until resumed"
            )
        elif row["low_space_s"] is not None:
            out.append(
                f"{row['csv']}: free space below {LOW_SPACE_WARNING_BYTES >> 30} GiB from "
                f"{row['low_space_s']:,.1f} s (Hyper-V logs low-space warnings)"
            )
        if row["volume_full"]:
            out.append(
                f"{row['csv']}: the volume filled: volsnap deleted {row['volume_full']} "
                f"snapshot(s) whose diff area could not grow"
            )
    most = summary["vms_paused"].max() if summary.height else None
    if isinstance(most, int) and most:
        total = float(summary["paused_vm_s"].sum())
        out.append(f"paused VM time inside the backup windows: {total:,.0f} VM-seconds")
    return out


def _with_tables(simulation: Callable[P, ModelledRun]) -> Callable[P, RunResult]:
    @functools.wraps(simulation)
    def tabled(*args: P.args, **kwargs: P.kwargs) -> RunResult:
        wall = time.perf_counter()
        done = simulation(*args, **kwargs)
        # The tables allocate a few objects per record of a run that holds hundreds of
        # thousands: under the default thresholds the collector would walk them all again and
        # again (as in the event loop, :mod:`vssim.scale.gc_pause`).
        with fewer_collections():
            return RunResult.of(done, time.perf_counter() - wall)

    return tabled


#: :func:`vssim.scale.runner.simulate`'s arguments; the result tables of the run.
run = _with_tables(simulate)
