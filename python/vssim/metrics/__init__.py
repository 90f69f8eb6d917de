"""The result tables of a modelled run (:mod:`.tables`)."""

from __future__ import annotations

from vssim.metrics.tables import SCHEMAS, build_tables

__all__ = ["SCHEMAS", "build_tables"]
