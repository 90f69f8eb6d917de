"""The result tables of a modelled run, from plain records: :mod:`.schemas` (the one home of
every table's columns), :mod:`.tables` (one builder per table), :mod:`.run_result`
(:func:`run`, ``vssim.run``: a run and its tables)."""

from __future__ import annotations

from vssim.metrics.run_result import RunResult, run
from vssim.metrics.schemas import SCHEMAS
from vssim.metrics.tables import build_tables

__all__ = ["SCHEMAS", "RunResult", "build_tables", "run"]
