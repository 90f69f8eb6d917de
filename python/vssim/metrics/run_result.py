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
from vssim.scale.runner import ModelledRun, simulate
from vssim.scenario import Scenario
from vssim.vss.profile_limits import beyond_supported

P = ParamSpec("P")
#: The Parquet metadata key of a run's notes beyond its profile's supported limits.
PARQUET_LIMITS_KEY = "vssim.beyond_supported_limits"


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
    #: Materialized runs: one row per backup file (:data:`~vssim.scale.materialize.
    #: BACKUPS_SCHEMA`), and per CSV the model's copy-on-write figures beside the real volume's.
    backups: pl.DataFrame | None = None
    invariant: pl.DataFrame | None = None
    materialized: Path | None = None

    TABLES = ("vms", "csvs", "nodes", "jobs", "phases", "summary")

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
        return out

    def write_parquet(self, out: str | Path) -> list[Path]:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        # Every file says whether the cluster is one its Windows supports.
        meta = {PARQUET_LIMITS_KEY: "; ".join(self.beyond_limits)}
        for name, df in self.tables().items():
            p = d / f"{name}.parquet"
            df.write_parquet(p, metadata=meta)
            paths.append(p)
        return paths


def _with_tables(simulation: Callable[P, ModelledRun]) -> Callable[P, RunResult]:
    @functools.wraps(simulation)
    def tabled(*args: P.args, **kwargs: P.kwargs) -> RunResult:
        wall = time.perf_counter()
        done = simulation(*args, **kwargs)
        return RunResult.of(done, time.perf_counter() - wall)

    return tabled


#: :func:`vssim.scale.runner.simulate`'s arguments; the result tables of the run.
run = _with_tables(simulate)
