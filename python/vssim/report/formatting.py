"""Human units for the report: bytes as MiB/GiB/TiB, seconds as s/min/h, rates as MB/s."""

from __future__ import annotations

import math

import polars as pl

_BYTES = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def size(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    for unit, scale in _BYTES:
        if abs(n) >= scale:
            v = n / scale
            return f"{v:,.1f} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    return f"{n:,.0f} B"


def duration(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def rate(bps: float) -> str:
    return f"{bps / 1e6:,.0f} MB/s"


#: How each headline column reads in the report.
HEADINGS = {
    "profile": "profile",
    "strategy": "strategy",
    "concurrency": "concurrency",
    "backup_window_s": "backup window",
    "fits": "fits window",
    "vms": "VMs",
    "bytes_read": "data read",
    "diff_area_peak_bytes": "diff-area peak",
    "shadow_storage_bytes": "shadow storage (rec.)",
    "deletions_at_limit": "deletions at limit",
    "redirected_bytes": "redirected I/O",
    "freeze_p95_s": "freeze p95",
    "missed_freeze_window": "missed freeze",
    "downtime_max_s": "downtime max",
    "vms_paused": "paused VMs",
    "failures": "failures",
}


def cell(column: str, value: object) -> str:
    """One value of a report table, in the unit its column name says."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int | float) and (column.endswith("_bytes") or column == "bytes_read"):
        return size(float(value))
    if isinstance(value, int | float) and column.endswith("_s"):
        return duration(float(value))
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def humanize(frame: pl.DataFrame, headings: dict[str, str] | None = None) -> pl.DataFrame:
    """All-string copy of ``frame`` in human units, columns renamed by ``headings``."""
    names = headings or HEADINGS
    return pl.DataFrame(
        {
            names.get(c, c.replace("_", " ")): [cell(c, v) for v in frame[c].to_list()]
            for c in frame.columns
        },
        schema={names.get(c, c.replace("_", " ")): pl.Utf8 for c in frame.columns},
    )
