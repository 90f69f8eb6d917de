"""The planner's figures, computed with polars from the result tables of many runs.

Every frame here is a result table of :mod:`vssim.metrics` (``vms``, ``csvs``, ``jobs``,
``summary``) with the three *case* columns in front — ``profile``, ``strategy`` (a label such as
``"selective 10 %"``) and ``concurrency`` — one case per run the plan compared
(:func:`vssim.report.capacity_plan.collect` builds them). Only the columns named in
:data:`NEEDS` are read.

How the figures are defined (the report states them too):

* **Where the window is spent.** Each snapshot set's life is split into *waiting for a slot*
  (backup start → set start: node/CSV concurrency limits, 2008 R2's one set per CSV), *freeze*
  (Freeze → Thaw), *prepare & commit* (the rest up to its first VM copy), *copy* (first copy
  start → last copy end) and *release* (→ set end). The shares of all sets' time, times the
  backup window, give the bar's segments: a bar as long as the window, cut by where the sets'
  time went.
* **Shadow storage.** A CSV's diff-area peak is the largest volume diff area seen during any of
  its snapshots' lives. The recommendation is the peak plus the margin, rounded up to 64 MiB and
  never below volsnap's 320 MiB minimum. A snapshot whose life saw the volume's diff area above
  the limit is one volsnap deletes (oldest copy first; with one snapshot per CSV at a time,
  exactly that one) — its VMs' backups fail.
* **Load over time.** A VM's bytes are spread evenly over its copy (start → end) and binned per
  requester node (the node that reads) and per CSV; a CSV's redirected bytes (2008 R2) over the
  last ``redirected_s`` seconds of its snapshot set.
* **Freeze and downtime.** Percentiles are linear-interpolated (numpy's default). A VM misses the
  freeze window when its freeze lasted longer than the writer's (:data:`~vssim.vss.limits.
  FREEZE_WINDOW_S`) or its writer timed out.
* **CSV free space.** Per case and CSV: the fewest free bytes seen during its snapshots' lives
  (the diff area counted when it lives on the CSV), when it fell below Hyper-V's warning and
  pause levels (:mod:`vssim.scenario.capacity`), the VMs paused (Paused-Critical) and their
  paused seconds inside the backup, and the snapshots a full volume deleted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from vssim.scale.verify import largest_differences
from vssim.scenario.model import MIN_DIFF_AREA
from vssim.vss.limits import FREEZE_WINDOW_S

CASE = ["profile", "strategy", "concurrency"]
#: Shadow storage is recommended in whole steps of this size.
SIZE_STEP = 64 * 1024**2
#: The columns each result table must have for the report.
NEEDS: dict[str, tuple[str, ...]] = {
    "vms": (
        "job",
        "vm",
        "node",
        "csv",
        "requester",
        "frozen",
        "freeze_s",
        "downtime_s",
        "copy_start_s",
        "copy_end_s",
        "bytes_read",
        "ok",
        "result",
    ),
    "csvs": (
        "job",
        "csv",
        "provider",
        "diff_area_peak_bytes",
        "deleted_by",
        "redirected_s",
        "redirected_bytes",
        "vms",
        "lifetime_s",
        "diff_area_on_volume",
        "free_low_bytes",
        "low_space_s",
        "paused_critical_s",
        "vms_paused",
        "paused_vm_s",
    ),
    "jobs": ("job", "requester", "start_s", "end_s", "freeze_window_s", "ok", "failures"),
    "summary": (
        "start_s",
        "end_s",
        "backup_window_s",
        "vms",
        "bytes_read",
        "redirected_bytes",
        "network_bytes",
        "vms_frozen",
        "failures",
        "vms_paused",
        "paused_vm_s",
    ),
}
SEGMENTS = ("waiting for a slot", "prepare & commit", "freeze", "copy", "release")
TIMEOUT = "VSS_E_WRITERERROR_TIMEOUT"


def recommend_shadow_storage(peak_bytes: int, margin: float) -> int:
    """Peak × (1 + margin), rounded up to :data:`SIZE_STEP`, never below 320 MiB."""
    if peak_bytes < 0 or margin < 0:
        raise ValueError(f"peak {peak_bytes}, margin {margin}: expected both >= 0")
    wanted = math.ceil(peak_bytes * (1.0 + margin) / SIZE_STEP) * SIZE_STEP
    return max(MIN_DIFF_AREA, wanted)


def window_breakdown(jobs: pl.DataFrame, vms: pl.DataFrame, summary: pl.DataFrame) -> pl.DataFrame:
    """Per case: the backup window and the seconds of it each segment (:data:`SEGMENTS`) takes."""
    copies = vms.group_by([*CASE, "job"]).agg(
        pl.col("copy_start_s").min().alias("first_copy"),
        pl.col("copy_end_s").max().alias("last_copy"),
    )
    starts = summary.group_by(CASE).agg(
        pl.col("start_s").min().alias("b_start"),
        pl.col("backup_window_s").sum().alias("b_window"),
    )
    j = jobs.join(copies, on=[*CASE, "job"], how="left").join(starts, on=CASE, how="left")
    copy_from = pl.coalesce("first_copy", "end_s")
    copy_to = pl.coalesce("last_copy", "end_s")
    j = j.with_columns(
        (pl.col("start_s") - pl.col("b_start")).clip(lower_bound=0).alias(SEGMENTS[0]),
        (copy_from - pl.col("start_s") - pl.col("freeze_window_s"))
        .clip(lower_bound=0)
        .alias(SEGMENTS[1]),
        pl.col("freeze_window_s").alias(SEGMENTS[2]),
        (copy_to - copy_from).clip(lower_bound=0).alias(SEGMENTS[3]),
        (pl.col("end_s") - copy_to).clip(lower_bound=0).alias(SEGMENTS[4]),
    )
    agg = j.group_by(CASE).agg(
        pl.col("b_window").first().alias("window_s"),
        pl.len().alias("sets"),
        *[pl.col(s).sum() for s in SEGMENTS],
    )
    total = pl.sum_horizontal(*[pl.col(s) for s in SEGMENTS])
    return agg.with_columns(
        [
            pl.when(total > 0).then(pl.col(s) / total * pl.col("window_s")).otherwise(0.0).alias(s)
            for s in SEGMENTS
        ]
    ).sort(CASE)


def diff_area(csvs: pl.DataFrame, limits: dict[str, int | None], margin: float) -> pl.DataFrame:
    """Per case and CSV: diff-area peak, the limit, the recommended shadow storage, and the
    snapshot deletions (and failed VM backups) the limit would cause."""
    limit_frame = pl.DataFrame(
        {"csv": list(limits), "limit_bytes": [limits[c] for c in limits]},
        schema={"csv": pl.Utf8, "limit_bytes": pl.Int64},
    )
    per = csvs.join(limit_frame, on="csv", how="left").with_columns(
        (
            pl.col("limit_bytes").is_not_null()
            & (pl.col("diff_area_peak_bytes") > pl.col("limit_bytes"))
        ).alias("over")
    )
    out = per.group_by([*CASE, "csv"]).agg(
        pl.col("provider").first(),
        pl.col("diff_area_peak_bytes").max().alias("peak_bytes"),
        pl.col("limit_bytes").first(),
        pl.len().alias("snapshots"),
        pl.col("over").sum().cast(pl.Int64).alias("deletions"),
        pl.col("vms").filter(pl.col("over")).sum().cast(pl.Int64).alias("vms_failing"),
        (pl.col("deleted_by") == "diff area full").sum().cast(pl.Int64).alias("deleted_in_run"),
        pl.col("lifetime_s").max().alias("longest_life_s"),
    )
    rec = [recommend_shadow_storage(int(p or 0), margin) for p in out["peak_bytes"]]
    return out.with_columns(pl.Series("recommended_bytes", rec, dtype=pl.Int64)).sort(
        [*CASE, "csv"]
    )


def free_space(csvs: pl.DataFrame) -> pl.DataFrame:
    """Per case and CSV that came near Hyper-V's levels: its fewest free bytes, when it fell
    below the warning and the pause levels, the VMs paused and their paused seconds, the
    snapshots a full volume deleted, and its diff-area peak if the diff area lives on it."""
    per = csvs.group_by([*CASE, "csv"]).agg(
        pl.col("free_low_bytes").min(),
        pl.col("low_space_s").min(),
        pl.col("paused_critical_s").min(),
        pl.col("vms_paused").max(),
        pl.col("paused_vm_s").sum(),
        (pl.col("deleted_by") == "volume full").sum().cast(pl.Int64).alias("volume_full"),
        pl.col("diff_area_peak_bytes")
        .filter(pl.col("diff_area_on_volume"))
        .max()
        .alias("diff_area_on_csv_bytes"),
    )
    return per.filter(
        pl.col("low_space_s").is_not_null()
        | pl.col("paused_critical_s").is_not_null()
        | (pl.col("volume_full") > 0)
    ).sort([*CASE, "csv"])


def _spread(
    starts: np.ndarray, ends: np.ndarray, amounts: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """Bytes per bin when each amount flows evenly over [start, end] (rows × bins)."""
    dur = np.maximum(ends - starts, 1e-9)
    rate = amounts / dur
    # cumulative bytes of each row at each edge, then per-bin differences
    cum = rate[:, None] * np.clip(edges[None, :] - starts[:, None], 0.0, dur[:, None])
    out: np.ndarray = np.diff(cum, axis=1)
    return out


def _bins(t_end: float, bins: int) -> np.ndarray:
    return np.linspace(0.0, max(t_end, 1.0), bins + 1)


def load_over_time(
    vms: pl.DataFrame, csvs: pl.DataFrame, jobs: pl.DataFrame, bins: int = 96
) -> pl.DataFrame:
    """Long frame: case, ``kind`` (``node`` read load, ``csv`` read load, ``redirected``),
    ``name``, ``t_s`` (bin start, seconds since the backup started), ``bytes_per_s``."""
    rows: list[pl.DataFrame] = []
    copied = vms.filter(
        pl.col("copy_start_s").is_not_null()
        & pl.col("copy_end_s").is_not_null()
        & (pl.col("bytes_read") > 0)
    )
    redirected = csvs.filter(pl.col("redirected_bytes") > 0).join(
        jobs.select([*CASE, "job", "start_s", "end_s"]), on=[*CASE, "job"], how="left"
    )
    cases = jobs.select(CASE).unique().sort(CASE)
    for case in cases.iter_rows(named=True):
        match = [pl.col(k) == v for k, v in case.items()]
        j = jobs.filter(*match)
        t0 = float(np.min(j["start_s"].to_numpy()))
        t1 = float(np.max(j["end_s"].to_numpy()))
        edges = _bins(t1 - t0, bins)
        width = edges[1] - edges[0]
        c = copied.filter(*match)
        series: list[tuple[str, str, np.ndarray]] = []
        if c.height:
            flow = _spread(
                c["copy_start_s"].to_numpy() - t0,
                c["copy_end_s"].to_numpy() - t0,
                c["bytes_read"].to_numpy().astype(np.float64),
                edges,
            )
            for kind, col in (("node", "requester"), ("csv", "csv")):
                names = c[col].to_list()
                for name in sorted(set(names)):
                    mask = np.asarray([n == name for n in names])
                    series.append((kind, name, flow[mask].sum(axis=0)))
        r = redirected.filter(*match)
        if r.height:
            ends = r["end_s"].to_numpy() - t0
            flow = _spread(
                ends - r["redirected_s"].to_numpy(),
                ends,
                r["redirected_bytes"].to_numpy().astype(np.float64),
                edges,
            )
            names = r["csv"].to_list()
            for name in sorted(set(names)):
                mask = np.asarray([n == name for n in names])
                series.append(("redirected", name, flow[mask].sum(axis=0)))
        for kind, name, per_bin in series:
            rows.append(
                pl.DataFrame(
                    {
                        **{k: [v] * bins for k, v in case.items()},
                        "kind": [kind] * bins,
                        "name": [name] * bins,
                        "t_s": edges[:-1],
                        "bytes_per_s": per_bin / width,
                    }
                )
            )
    schema = {
        "profile": pl.Utf8,
        "strategy": pl.Utf8,
        "concurrency": pl.Int64,
        "kind": pl.Utf8,
        "name": pl.Utf8,
        "t_s": pl.Float64,
        "bytes_per_s": pl.Float64,
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.concat([r.cast(schema) for r in rows]).select(list(schema))  # type: ignore[arg-type]


def freeze_stats(vms: pl.DataFrame, freeze_window_s: float = FREEZE_WINDOW_S) -> pl.DataFrame:
    """Per case: freeze p50/p95/max over frozen VMs, saved-state downtime p50/p95/max over VMs
    that went down, and the VMs that missed the freeze window."""
    frozen = pl.col("freeze_s").filter(pl.col("frozen"))
    down = pl.col("downtime_s").filter(pl.col("downtime_s") > 0)
    missed = (pl.col("frozen") & (pl.col("freeze_s") > freeze_window_s)) | (
        pl.col("result") == TIMEOUT
    )
    return (
        vms.group_by(CASE)
        .agg(
            pl.col("frozen").sum().cast(pl.Int64).alias("vms_frozen"),
            frozen.quantile(0.5, "linear").alias("freeze_p50_s"),
            frozen.quantile(0.95, "linear").alias("freeze_p95_s"),
            frozen.max().alias("freeze_max_s"),
            (pl.col("downtime_s") > 0).sum().cast(pl.Int64).alias("vms_down"),
            down.quantile(0.5, "linear").alias("downtime_p50_s"),
            down.quantile(0.95, "linear").alias("downtime_p95_s"),
            down.max().alias("downtime_max_s"),
            missed.sum().cast(pl.Int64).alias("missed_freeze_window"),
        )
        .sort(CASE)
    )


def missed_freeze(vms: pl.DataFrame, freeze_window_s: float = FREEZE_WINDOW_S) -> pl.DataFrame:
    """The VMs that missed the freeze window, longest freeze first."""
    missed = (pl.col("frozen") & (pl.col("freeze_s") > freeze_window_s)) | (
        pl.col("result") == TIMEOUT
    )
    return (
        vms.filter(missed)
        .select(*CASE, "vm", "node", "csv", "freeze_s", "result")
        .sort("freeze_s", descending=True)
    )


def node_totals(vms: pl.DataFrame) -> pl.DataFrame:
    """Per case and requester node: VMs backed up and bytes read."""
    return (
        vms.group_by([*CASE, "requester"])
        .agg(pl.len().alias("vms"), pl.col("bytes_read").sum().alias("bytes_read"))
        .sort([*CASE, "bytes_read"], descending=[False, False, False, True])
    )


@dataclass(frozen=True)
class Analysis:
    """Every figure of a plan."""

    summary: pl.DataFrame
    windows: pl.DataFrame
    diff_area: pl.DataFrame
    load: pl.DataFrame
    freeze: pl.DataFrame
    missed: pl.DataFrame
    nodes: pl.DataFrame
    headline: pl.DataFrame
    #: CSVs that came near Hyper-V's free-space levels (:func:`free_space`).
    space: pl.DataFrame
    chosen: dict[str, int]
    window_s: float
    margin: float
    #: Per profile, where the cluster goes beyond what that Windows supports
    #: (:mod:`vssim.vss.profile_limits`; the summary table's ``beyond_supported_limits``).
    beyond: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The engines that made the runs (the summary table's ``engine``: ``exact``, ``estimate``).
    engines: tuple[str, ...] = ()
    #: ``--verify``: per figure, the largest relative difference of the estimate from the
    #: exact engine over the sampled VMs (:func:`vssim.scale.verify.largest_differences`), and
    #: how many VMs were checked.
    verification: pl.DataFrame | None = None
    verified_vms: int = 0


def case_summary(summary: pl.DataFrame) -> pl.DataFrame:
    return (
        summary.group_by(CASE)
        .agg(
            pl.col("backup_window_s").sum(),
            pl.col("vms").sum(),
            pl.col("bytes_read").sum(),
            pl.col("redirected_bytes").sum(),
            pl.col("network_bytes").sum(),
            pl.col("failures").sum(),
            pl.col("vms_paused").max(),
            pl.col("paused_vm_s").sum(),
        )
        .sort(CASE)
    )


def best_concurrency(summary: pl.DataFrame, window_s: float) -> dict[str, int]:
    """Per profile, the full backup's concurrency to use: the smallest that fits the window
    without failures, else the one with the shortest window."""
    full = case_summary(summary.filter(pl.col("strategy") == "full"))
    out: dict[str, int] = {}
    for profile in full["profile"].unique().sort().to_list():
        rows = full.filter(pl.col("profile") == profile)
        fits = rows.filter((pl.col("backup_window_s") <= window_s) & (pl.col("failures") == 0))
        if fits.height:
            out[profile] = int(fits.sort("concurrency")["concurrency"][0])
        else:
            best = rows.sort(["failures", "backup_window_s", "concurrency"])
            out[profile] = int(best["concurrency"][0])
    return out


def headline(
    summary: pl.DataFrame,
    diff: pl.DataFrame,
    freeze: pl.DataFrame,
    chosen: dict[str, int],
    window_s: float,
) -> pl.DataFrame:
    """One row per profile and strategy, at the chosen concurrency: what a planner compares."""
    keep = pl.lit(False)
    for profile, c in chosen.items():
        keep = keep | ((pl.col("profile") == profile) & (pl.col("concurrency") == c))
    per_case_diff = diff.group_by(CASE).agg(
        pl.col("peak_bytes").max().alias("diff_area_peak_bytes"),
        pl.col("recommended_bytes").max().alias("shadow_storage_bytes"),
        pl.col("deletions").sum().alias("deletions_at_limit"),
    )
    out = (
        case_summary(summary)
        .filter(keep)
        .join(per_case_diff, on=CASE, how="left")
        .join(
            freeze.select([*CASE, "freeze_p95_s", "downtime_max_s", "missed_freeze_window"]),
            on=CASE,
            how="left",
        )
        .with_columns(
            ((pl.col("backup_window_s") <= window_s) & (pl.col("failures") == 0)).alias("fits")
        )
    )
    order = {"full": 0, "incremental": 2}
    return (
        out.with_columns(
            pl.col("strategy")
            .map_elements(lambda s: order.get(s, 1), return_dtype=pl.Int64)
            .alias("_o"),
            pl.col("strategy")
            .str.extract(r"([0-9.]+) %", 1)
            .cast(pl.Float64, strict=False)
            .fill_null(0.0)
            .alias("_f"),
        )
        .sort(["profile", "_o", "_f"])
        .select(
            "profile",
            "strategy",
            "concurrency",
            "backup_window_s",
            "fits",
            "vms",
            "bytes_read",
            "diff_area_peak_bytes",
            "shadow_storage_bytes",
            "deletions_at_limit",
            "redirected_bytes",
            "freeze_p95_s",
            "missed_freeze_window",
            "downtime_max_s",
            "vms_paused",
            "failures",
        )
    )


def analyse(
    tables: dict[str, pl.DataFrame],
    limits: dict[str, int | None],
    window_s: float,
    margin: float,
    bins: int = 96,
) -> Analysis:
    """Every figure of the report from the combined result tables."""
    for name, cols in NEEDS.items():
        missing = [c for c in (*CASE, *cols) if c not in tables[name].columns]
        if missing:
            raise ValueError(f"result table {name!r} lacks {', '.join(missing)}")
    summary, vms, csvs, jobs = (tables[n] for n in ("summary", "vms", "csvs", "jobs"))
    diff = diff_area(csvs, limits, margin)
    freeze = freeze_stats(vms)
    chosen = best_concurrency(summary, window_s)
    return Analysis(
        summary=case_summary(summary),
        windows=window_breakdown(jobs, vms, summary),
        diff_area=diff,
        load=load_over_time(vms, csvs, jobs, bins),
        freeze=freeze,
        missed=missed_freeze(vms),
        nodes=node_totals(vms),
        headline=headline(summary, diff, freeze, chosen, window_s),
        space=free_space(csvs),
        chosen=chosen,
        window_s=window_s,
        margin=margin,
        beyond=beyond_limits(summary),
        engines=engines_of(summary),
        verification=None if "verify" not in tables else largest_differences(tables["verify"]),
        verified_vms=0 if "verify" not in tables else tables["verify"]["vm"].n_unique(),
    )


def engines_of(summary: pl.DataFrame) -> tuple[str, ...]:
    """The engines that made the runs (tables without the column: the exact one, the only
    engine before the estimate tier)."""
    if "engine" not in summary.columns:
        return ("exact",)
    return tuple(sorted(set(summary["engine"].to_list())))


def beyond_limits(summary: pl.DataFrame) -> dict[str, tuple[str, ...]]:
    """Per profile, the notes of its runs beyond the supported limits (tables without the
    column have none)."""
    if "beyond_supported_limits" not in summary.columns:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for profile, notes in summary.select("profile", "beyond_supported_limits").unique().rows():
        if notes:
            out[profile] = tuple(dict.fromkeys((*out.get(profile, ()), *notes.split("; "))))
    return out
