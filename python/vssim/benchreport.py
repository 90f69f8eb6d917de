"""Aggregates pytest-benchmark JSON files with polars: ``vssim bench-report``.

Conventions the report relies on (the project's benchmarks follow them):

- A benchmark's *peer* is the same test with another ``impl`` parameter in the same group: the row
  whose ``impl`` is ``"engine"`` is the reference, and every other row of its group gets the ratio
  ``its median / the engine's median`` (how many times slower the peer is). The row whose ``impl``
  is ``"limit"`` is not a peer but the *limit*: the same work done the plainest way the hardware
  allows (``engine.bitset_limit``). The summary table gives, per case, the two figures the
  benchmarks are read by: engine/peer (the fastest peer's median over the engine's: how many times
  faster the engine is) and engine/limit (the limit's median over the engine's: the engine's speed
  as a fraction of the limit's, 1 = at the limit).
- Ratios a benchmark measured inside one run (``extra_info`` keys ending in ``_ratio``, such as a
  materialized run against a plain copy of the same files) are listed as they were recorded.
- Simulated outcomes live in ``extra_info``; rows carrying ``profile`` and ``strategy`` form the
  simulated full-vs-selective table.
- Given several files, the last is compared with the first: a benchmark whose new min is above the
  old max is a regression beyond the noise (their min–max ranges do not overlap); new max below old
  min is an improvement; anything else is noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from vssim.errors import VssimError

ENGINE = "engine"
LIMIT = "limit"
#: The simulated outcomes shown in the full-vs-selective table, in order, when present.
SIMULATED_COLUMNS = [
    "backup_window_s",
    "diff_area_peak_bytes",
    "bytes_read",
    "redirected_bytes",
    "vms_frozen",
    "failures",
]


class BenchReportError(VssimError, ValueError):
    """A benchmark results file cannot be used."""


@dataclass(frozen=True)
class Report:
    """Every table of a report, as polars frames."""

    groups: pl.DataFrame
    summary: pl.DataFrame
    ratios: pl.DataFrame
    simulated: pl.DataFrame
    changes: pl.DataFrame | None


#: A results file larger than this is refused unread (model choice: pytest-benchmark writes a few
#: MB for hundreds of benchmarks, more with --benchmark-save-data).
MAX_FILE_BYTES = 1 << 30


def _number(path: Path, where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BenchReportError(f"{path}: {where} = {value!r}: expected a number")
    f = float(value)
    if not math.isfinite(f) or f < 0:
        raise BenchReportError(f"{path}: {where} = {value!r}: expected a finite number >= 0")
    return f


def _float_or_none(value: object) -> float | None:
    """A recorded figure as a float, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value) if abs(value) < 1e300 else math.inf
    return f if math.isfinite(f) else None


def _read(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise BenchReportError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise BenchReportError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not read")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BenchReportError(f"{path}: not UTF-8 text (byte {exc.start}): not JSON") from exc
    except json.JSONDecodeError as exc:
        raise BenchReportError(
            f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except RecursionError:
        raise BenchReportError(f"{path}: JSON nested too deeply to be a results file") from None


def load(path: Path, run: int = 0) -> pl.DataFrame:
    """One pytest-benchmark JSON file as a frame, one row per benchmark; every field it uses is
    checked (a wrong type names the file, the benchmark and the field)."""
    doc = _read(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise BenchReportError(
            f"{path}: not a pytest-benchmark results file (expected an object with a "
            f"'benchmarks' list, found {type(doc).__name__})"
        )
    rows: list[dict[str, Any]] = []
    for i, b in enumerate(doc["benchmarks"]):
        stats = b.get("stats") if isinstance(b, dict) else None
        if not isinstance(stats, dict):
            raise BenchReportError(f"{path}: benchmarks[{i}] has no 'stats' object")
        missing = [k for k in ("min", "max", "median", "ops") if k not in stats]
        if missing:
            raise BenchReportError(f"{path}: benchmarks[{i}].stats lacks {', '.join(missing)}")
        st = {
            k: _number(path, f"benchmarks[{i}].stats.{k}", stats[k])
            for k in ("min", "max", "median", "ops")
        }
        rounds = stats.get("rounds", 0)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise BenchReportError(
                f"{path}: benchmarks[{i}].stats.rounds = {rounds!r}: expected an integer >= 0"
            )
        params = b.get("params") or {}
        extra = b.get("extra_info") or {}
        for key, value in (("params", params), ("extra_info", extra)):
            if not isinstance(value, dict):
                raise BenchReportError(
                    f"{path}: benchmarks[{i}].{key} = {value!r:.60}: expected an object"
                )
        rows.append(
            {
                "run": run,
                "file": str(path),
                "datetime": str(doc.get("datetime", "")),
                "group": str(b.get("group") or "(none)"),
                "name": str(b.get("name", "")),
                "fullname": str(b.get("fullname", b.get("name", ""))),
                "impl": str(params.get("impl", "")),
                "case": _case(str(b.get("fullname", "")), params),
                "min_s": st["min"],
                "max_s": st["max"],
                "median_s": st["median"],
                "ops": st["ops"],
                "rounds": rounds,
                "extra": json.dumps(extra, sort_keys=True),
            }
        )
    schema = {
        "run": pl.Int64,
        "file": pl.String,
        "datetime": pl.String,
        "group": pl.String,
        "name": pl.String,
        "fullname": pl.String,
        "impl": pl.String,
        "case": pl.String,
        "min_s": pl.Float64,
        "max_s": pl.Float64,
        "median_s": pl.Float64,
        "ops": pl.Float64,
        "rounds": pl.Int64,
        "extra": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def _case(fullname: str, params: dict[str, Any]) -> str:
    """The benchmark's identity without its ``impl``: the test plus its other parameters."""
    base = fullname.split("[", 1)[0]
    rest = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "impl")
    return f"{base}[{rest}]" if rest else base


def group_table(runs: pl.DataFrame) -> pl.DataFrame:
    """Per benchmark of the newest run: median and ops with min–max, and the ratio to the engine
    row of the same case (peer median / engine median)."""
    newest = runs.filter(pl.col("run") == runs["run"].max())
    engine = newest.filter(pl.col("impl") == ENGINE).select(
        "group", "case", pl.col("median_s").alias("engine_median_s")
    )
    return (
        newest.join(engine, on=["group", "case"], how="left")
        .with_columns(
            (pl.col("median_s") / pl.col("engine_median_s")).alias("x_engine"),
            (1.0 / pl.col("max_s")).alias("ops_min"),
            (1.0 / pl.col("min_s")).alias("ops_max"),
        )
        .select(
            "group", "name", "median_s", "min_s", "max_s", "ops", "ops_min", "ops_max", "x_engine"
        )
        .sort("group", "median_s")
    )


def summary_table(runs: pl.DataFrame) -> pl.DataFrame:
    """Per case of the newest run with an engine row: the engine's median, the fastest peer's and
    the limit's, with engine/peer and engine/limit (see the module doc)."""
    newest = runs.filter(pl.col("run") == runs["run"].max())
    keys = ["group", "case"]
    engine = newest.filter(pl.col("impl") == ENGINE).select(
        *keys, pl.col("median_s").alias("engine_s")
    )
    peers = (
        newest.filter(~pl.col("impl").is_in([ENGINE, LIMIT, ""]))
        .sort("median_s")
        .group_by(keys, maintain_order=True)
        .first()
        .select(*keys, pl.col("impl").alias("best_peer"), pl.col("median_s").alias("peer_s"))
    )
    limit = newest.filter(pl.col("impl") == LIMIT).select(
        *keys, pl.col("median_s").alias("limit_s")
    )
    return (
        engine.join(peers, on=keys, how="left")
        .join(limit, on=keys, how="left")
        .with_columns(
            (pl.col("peer_s") / pl.col("engine_s")).alias("engine_per_peer"),
            (pl.col("limit_s") / pl.col("engine_s")).alias("engine_per_limit"),
        )
        .select(
            *keys,
            "engine_s",
            "best_peer",
            "peer_s",
            "engine_per_peer",
            "limit_s",
            "engine_per_limit",
        )
        .sort(keys)
    )


def ratio_table(runs: pl.DataFrame) -> pl.DataFrame:
    """The ratios the newest run's benchmarks recorded (``extra_info`` keys ending ``_ratio``)."""
    newest = runs.filter(pl.col("run") == runs["run"].max())
    rows = []
    for group, name, extra in zip(newest["group"], newest["name"], newest["extra"], strict=True):
        for key, value in json.loads(extra).items():
            if key.endswith("_ratio") and isinstance(value, int | float):
                rows.append({"group": group, "name": name, "ratio": key, "value": float(value)})
    schema = {"group": pl.String, "name": pl.String, "ratio": pl.String, "value": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort("group", "name", "ratio")


def simulated_table(runs: pl.DataFrame) -> pl.DataFrame:
    """The simulated outcomes of the newest run's scenario benchmarks, by profile and strategy."""
    newest = runs.filter(pl.col("run") == runs["run"].max())
    rows = []
    for name, extra in zip(newest["name"], newest["extra"], strict=True):
        info = json.loads(extra)
        if "profile" in info and "strategy" in info:
            row: dict[str, object] = {
                "profile": str(info["profile"]),
                "strategy": str(info["strategy"]),
            }
            for col in SIMULATED_COLUMNS:
                value = info.get(col)
                row[col] = _float_or_none(value)
            row["benchmark"] = name
            rows.append(row)
    schema: dict[str, Any] = {"profile": pl.String, "strategy": pl.String}
    schema.update({c: pl.Float64 for c in SIMULATED_COLUMNS})
    schema["benchmark"] = pl.String
    return pl.DataFrame(rows, schema=schema).sort("strategy", "profile")


def change_table(runs: pl.DataFrame) -> pl.DataFrame | None:
    """First run against last: relative change of the median and a verdict beyond the noise."""
    first, last = runs["run"].min(), runs["run"].max()
    if first == last:
        return None
    old = runs.filter(pl.col("run") == first).select(
        "fullname",
        pl.col("median_s").alias("old_median_s"),
        pl.col("min_s").alias("old_min_s"),
        pl.col("max_s").alias("old_max_s"),
    )
    new = runs.filter(pl.col("run") == last).select(
        "group", "fullname", "median_s", "min_s", "max_s"
    )
    return (
        new.join(old, on="fullname", how="inner")
        .with_columns(
            (pl.col("median_s") / pl.col("old_median_s") - 1.0).alias("change"),
            pl.when(pl.col("min_s") > pl.col("old_max_s"))
            .then(pl.lit("REGRESSION"))
            .when(pl.col("max_s") < pl.col("old_min_s"))
            .then(pl.lit("improved"))
            .otherwise(pl.lit("noise"))
            .alias("verdict"),
        )
        .select("group", "fullname", "old_median_s", "median_s", "change", "verdict")
        .sort("group", "fullname")
    )


def build(paths: list[Path]) -> Report:
    if not paths:
        raise BenchReportError("no results file given")
    runs = pl.concat([load(p, i) for i, p in enumerate(paths)])
    return Report(
        groups=group_table(runs),
        summary=summary_table(runs),
        ratios=ratio_table(runs),
        simulated=simulated_table(runs),
        changes=change_table(runs),
    )


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 1e6 or (value.is_integer() and abs(value) >= 100):
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    return str(value)


#: Columns shown as ratios ("5.41×").
RATIO_COLUMNS = ("x_engine", "engine_per_peer", "engine_per_limit")


def _change_cell(col: str, value: object) -> str:
    if col == "change" and isinstance(value, float):
        return f"{value:+.1%}"
    if col in RATIO_COLUMNS and isinstance(value, float) and value == value:
        return f"{value:.2f}×"
    return _fmt(value)


def markdown(frame: pl.DataFrame) -> str:
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.iter_rows():
        lines.append(
            "| " + " | ".join(_change_cell(c, v) for c, v in zip(cols, row, strict=True)) + " |"
        )
    return "\n".join(lines)


def text_table(frame: pl.DataFrame) -> str:
    cols = frame.columns
    cells = [
        [_change_cell(c, v) for c, v in zip(cols, row, strict=True)] for row in frame.iter_rows()
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def render(report: Report, fmt: str) -> str:
    """The report as ``table`` (terminal), ``markdown`` or ``csv`` text."""
    sections = [("Benchmarks (newest run)", report.groups)]
    if report.summary.height:
        sections.append(
            (
                "Engine against its fastest peer and the limit (median over median: engine/peer "
                "= times faster than the peer, engine/limit = fraction of the limit's speed)",
                report.summary,
            )
        )
    if report.ratios.height:
        sections.append(("Ratios measured within a benchmark run", report.ratios))
    if report.simulated.height:
        sections.append(("Simulated backups: full vs selective, 2008 R2 vs 2012", report.simulated))
    if report.changes is not None:
        sections.append(("Change, first run → last run", report.changes))
    parts = []
    for title, frame in sections:
        if fmt == "csv":
            parts.append(f"# {title}\n{frame.write_csv()}")
        elif fmt == "markdown":
            parts.append(f"## {title}\n\n{markdown(frame)}\n")
        else:
            parts.append(f"{title}\n{text_table(frame)}\n")
    return "\n".join(parts)


def regressions(report: Report) -> int:
    """Number of benchmarks that regressed beyond the noise."""
    if report.changes is None:
        return 0
    return int((report.changes["verdict"] == "REGRESSION").sum())
