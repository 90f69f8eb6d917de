"""The report's charts (matplotlib, Agg backend): each saved as PNG and SVG under ``charts/``.

Charts show the chosen concurrency of each profile (the headline's) unless they compare
concurrencies; the load and freeze charts show the full backup, the one that sizes the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vssim.report.analysis import CASE, SEGMENTS, Analysis
from vssim.vss.limits import FREEZE_WINDOW_S

GiB = 1024**3
SEGMENT_COLOURS = ("#c7c7c7", "#9ecae1", "#e6550d", "#3182bd", "#a1d99b")
PROFILE_COLOURS = {"ws2008r2": "#d95f02", "ws2012": "#1b9e77"}


@dataclass(frozen=True)
class Chart:
    slug: str
    title: str
    caption: str
    png: Path
    svg: Path


def _save(fig: Figure, out: Path, slug: str, title: str, caption: str) -> Chart:
    fig.suptitle(title, fontsize=13, fontweight="bold")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{slug}.png", out / f"{slug}.svg"
    fig.savefig(png, dpi=110)
    fig.savefig(svg)
    plt.close(fig)
    return Chart(slug, title, caption, png, svg)


def _chosen(frame: pl.DataFrame, a: Analysis) -> pl.DataFrame:
    keep = pl.lit(False)
    for profile, c in a.chosen.items():
        keep = keep | ((pl.col("profile") == profile) & (pl.col("concurrency") == c))
    return frame.filter(keep)


def _natural(frame: pl.DataFrame, col: str) -> pl.DataFrame:
    """Sorted by ``col`` with its trailing number as a number (Cluster Disk 2 before 10)."""
    key = pl.col(col).str.extract(r"([0-9]+)$", 1).cast(pl.Int64, strict=False)
    return frame.with_columns(key.alias("_n")).sort("_n", col).drop("_n")


def _unit(longest_s: float) -> tuple[float, str]:
    """Seconds per axis unit and its name: hours for long spans, minutes for short ones."""
    return (3600.0, "hours") if longest_s >= 2 * 3600 else (60.0, "minutes")


def window_bars(a: Analysis, out: Path) -> Chart:
    w = _chosen(a.windows, a).sort(CASE, descending=True)
    labels = [f"{p} · {s}" for p, s in zip(w["profile"], w["strategy"], strict=True)]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.8))
    left = np.zeros(len(labels))
    per, unit = _unit(max([a.window_s, *w["window_s"].to_list()]))
    for seg, colour in zip(SEGMENTS, SEGMENT_COLOURS, strict=True):
        vals = np.asarray(w[seg].to_list(), dtype=float) / per
        ax.barh(labels, vals, left=left, color=colour, label=seg)
        left += vals
    ax.axvline(a.window_s / per, color="black", linestyle="--", label="target window")
    ax.set_xlabel(unit)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(
        fig,
        out,
        "backup-window",
        "Backup window by strategy: where it is spent",
        "Each bar is a backup window; its segments are the shares of all snapshot sets' time "
        "spent waiting for a slot, preparing and committing, frozen, copying and releasing.",
    )


def concurrency_sweep(a: Analysis, out: Path) -> Chart:
    full = a.summary.filter(pl.col("strategy") == "full")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    per, unit = _unit(max([a.window_s, *full["backup_window_s"].to_list()]))
    for profile in full["profile"].unique().sort().to_list():
        rows = full.filter(pl.col("profile") == profile).sort("concurrency")
        ax.plot(
            rows["concurrency"].to_list(),
            np.asarray(rows["backup_window_s"].to_list(), dtype=float) / per,
            marker="o",
            color=PROFILE_COLOURS.get(profile),
            label=profile,
        )
    ax.axhline(a.window_s / per, color="black", linestyle="--", label="target window")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency (VM copies and snapshot sets per requester node)")
    ax.set_ylabel(f"full backup window, {unit}")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(
        fig,
        out,
        "concurrency",
        "Full backup window against concurrency",
        "The full backup's window at each concurrency of the sweep; below the dashed line fits.",
    )


def diff_area_bars(a: Analysis, out: Path) -> Chart:
    d = _chosen(a.diff_area, a).filter(pl.col("strategy") == "full")
    profiles = d["profile"].unique().sort().to_list() or ["(none)"]
    fig, axes = plt.subplots(len(profiles), 1, figsize=(11, 3.4 * len(profiles)), squeeze=False)
    for ax, profile in zip(axes[:, 0], profiles, strict=True):
        rows = _natural(d.filter(pl.col("profile") == profile), "csv")
        x = np.arange(rows.height)
        ax.bar(
            x, np.asarray(rows["peak_bytes"].to_list(), float) / GiB, color="#3182bd", label="peak"
        )
        ax.scatter(
            x,
            np.asarray(rows["recommended_bytes"].to_list(), float) / GiB,
            marker="_",
            s=300,
            color="black",
            label="recommended",
            zorder=3,
        )
        limits = [v for v in rows["limit_bytes"].to_list() if v is not None]
        if limits:
            ax.axhline(max(limits) / GiB, color="red", linestyle="--", label="current limit")
        ax.set_xticks(x, [c.removeprefix("Cluster Disk ") for c in rows["csv"].to_list()])
        ax.tick_params(axis="x", labelsize=7, rotation=60)
        ax.set_ylabel("GiB")
        ax.set_title(profile, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save(
        fig,
        out,
        "diff-area",
        "Diff-area peak per CSV against its limit (full backup)",
        f"Bars: the largest diff area a CSV reached while its snapshots lived. Ticks: the "
        f"recommended shadow storage (peak + {a.margin:.0%}, at least 320 MiB). Dashed: the "
        f"limit set today.",
    )


def load_heatmap(a: Analysis, out: Path, kind: str, slug: str, title: str) -> Chart:
    ld = _chosen(a.load, a).filter((pl.col("kind") == kind) & (pl.col("strategy") == "full"))
    profiles = ld["profile"].unique().sort().to_list() or ["(none)"]
    fig, axes = plt.subplots(len(profiles), 1, figsize=(11, 3.8 * len(profiles)), squeeze=False)
    for ax, profile in zip(axes[:, 0], profiles, strict=True):
        rows = ld.filter(pl.col("profile") == profile)
        names = rows["name"].unique().to_list()
        times = sorted(rows["t_s"].unique().to_list())
        if not names or not times:
            ax.text(0.5, 0.5, "no load", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(profile, fontsize=10)
            continue
        grid = _natural(
            rows.sort("t_s").pivot(
                on="t_s", index="name", values="bytes_per_s", aggregate_function="sum"
            ),
            "name",
        ).fill_null(0.0)
        matrix = grid.drop("name").to_numpy() / 1e6
        step = times[1] - times[0] if len(times) > 1 else 1.0
        per, unit = _unit(times[-1] + step)
        img = ax.imshow(
            matrix,
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            extent=(0, (times[-1] + step) / per, len(names), 0),
        )
        fig.colorbar(img, ax=ax, label="MB/s")
        tick = max(1, len(names) // 16)
        ax.set_yticks(np.arange(0, len(names), tick) + 0.5, grid["name"].to_list()[::tick])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(f"{unit} since the backup started")
        ax.set_title(profile, fontsize=10)
    return _save(
        fig,
        out,
        slug,
        title,
        "Each row a node or CSV, each column a time bin; colour is the bytes per second it "
        "moved (VM copies spread evenly over their copy time).",
    )


def redirected_lines(a: Analysis, out: Path) -> Chart:
    ld = _chosen(a.load, a).filter(pl.col("kind") == "redirected")
    fig, ax = plt.subplots(figsize=(10, 4.2))
    if ld.height == 0:
        ax.text(
            0.5,
            0.5,
            "no redirected I/O in these runs",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    per, unit = _unit(float(np.max(ld["t_s"].to_numpy())) if ld.height else 0.0)
    for (profile, strategy), rows in ld.group_by(["profile", "strategy"], maintain_order=True):
        total = rows.group_by("t_s").agg(pl.col("bytes_per_s").sum()).sort("t_s")
        ax.plot(
            np.asarray(total["t_s"].to_list(), dtype=float) / per,
            (total["bytes_per_s"] / 1e6).to_list(),
            label=f"{profile} · {strategy}",
        )
    ax.set_xlabel(f"{unit} since the backup started")
    ax.set_ylabel("MB/s over the cluster network")
    if ld.height:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(
        fig,
        out,
        "redirected-io",
        "Redirected I/O over time (2008 R2 redirected access)",
        "Other nodes' writes to a CSV in redirected access travel over the network to its "
        "coordinator; this is that traffic, all CSVs together.",
    )


def freeze_cdf(vms: pl.DataFrame, a: Analysis, out: Path) -> Chart:
    v = _chosen(vms, a).filter(pl.col("strategy") == "full")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for profile in v["profile"].unique().sort().to_list():
        rows = v.filter(pl.col("profile") == profile)
        colour = PROFILE_COLOURS.get(profile)
        for ax, col, flt in (
            (ax1, "freeze_s", pl.col("frozen")),
            (ax2, "downtime_s", pl.col("downtime_s") > 0),
        ):
            xs = np.sort(np.asarray(rows.filter(flt)[col].to_list(), dtype=float))
            if xs.size:
                ax.step(
                    xs,
                    np.arange(1, xs.size + 1) / xs.size,
                    where="post",
                    color=colour,
                    label=f"{profile} ({xs.size} VMs)",
                )
    window = f"freeze window ({FREEZE_WINDOW_S:g} s)"
    ax1.axvline(FREEZE_WINDOW_S, color="red", linestyle="--", label=window)
    ax1.set_xlabel("freeze, seconds")
    ax2.set_xlabel("saved-state downtime, seconds")
    for ax in (ax1, ax2):
        ax.set_ylabel("share of VMs")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax1.set_title("online backups (frozen)", fontsize=10)
    ax2.set_title("saved-state backups (down)", fontsize=10)
    return _save(
        fig,
        out,
        "freeze-cdf",
        "VM freeze and downtime: cumulative distribution (full backup)",
        "The share of VMs frozen (left) or down (right) for at most x seconds.",
    )


def sets_timeline(jobs: pl.DataFrame, a: Analysis, out: Path) -> Chart:
    j = _chosen(jobs, a).filter(pl.col("strategy") == "full")
    profiles = j["profile"].unique().sort().to_list() or ["(none)"]
    fig, axes = plt.subplots(len(profiles), 1, figsize=(11, 3.6 * len(profiles)), squeeze=False)
    for ax, profile in zip(axes[:, 0], profiles, strict=True):
        rows = j.filter(pl.col("profile") == profile).sort("start_s")
        if rows.height == 0:
            continue
        t0 = float(np.min(rows["start_s"].to_numpy()))
        starts = np.asarray(rows["start_s"].to_list(), float) - t0
        ends = np.asarray(rows["end_s"].to_list(), float) - t0
        ok = rows["ok"].to_list()
        y = np.arange(rows.height)
        per, unit = _unit(float(ends.max()))
        ax.hlines(
            y,
            starts / per,
            ends / per,
            colors=["#3182bd" if k else "#de2d26" for k in ok],
            linewidth=max(0.6, min(6.0, 300 / max(1, rows.height))),
        )
        ax.set_ylim(rows.height, -1)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("snapshot set (by start)")
        ax.set_xlabel(f"{unit} since the backup started")
        ax.set_title(f"{profile}: {rows.height} sets (red: failed)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    return _save(
        fig,
        out,
        "timeline",
        "Snapshot sets over time (full backup)",
        "Each line is one snapshot set from its start to its release.",
    )


def draw_all(a: Analysis, tables: dict[str, pl.DataFrame], out: Path) -> list[Chart]:
    """Every chart of the report, written under ``out``."""
    return [
        window_bars(a, out),
        concurrency_sweep(a, out),
        sets_timeline(tables["jobs"], a, out),
        diff_area_bars(a, out),
        load_heatmap(
            a, out, "node", "node-load", "Read load per requester node over time (full backup)"
        ),
        load_heatmap(a, out, "csv", "csv-load", "Read load per CSV over time (full backup)"),
        redirected_lines(a, out),
        freeze_cdf(tables["vms"], a, out),
    ]
