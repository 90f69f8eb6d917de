"""The recommendation in words: which strategy fits the window, at what concurrency, on which node,
how much shadow storage, and what the freeze and the network will cost — one paragraph a profile."""

from __future__ import annotations

import polars as pl

from vssim.report.analysis import CASE, Analysis
from vssim.report.formatting import duration, size
from vssim.scenario.capacity import LOW_SPACE_WARNING_BYTES, PAUSED_CRITICAL_BYTES
from vssim.vss.limits import FREEZE_WINDOW_S

NAMES = {"ws2008r2": "Windows Server 2008 R2", "ws2012": "Windows Server 2012"}


def _row(frame: pl.DataFrame, **match: object) -> dict[str, object] | None:
    f = frame.filter(*[pl.col(k) == v for k, v in match.items()])
    return f.row(0, named=True) if f.height else None


def _f(v: object) -> float:
    return float(v) if isinstance(v, int | float) else 0.0


def recommend(a: Analysis, limits: dict[str, int | None]) -> dict[str, list[str]]:
    """Per profile, the recommendation as a list of sentences."""
    out: dict[str, list[str]] = {}
    for profile, c in sorted(a.chosen.items()):
        said: list[str] = []
        name = NAMES.get(profile, profile)
        for note in a.beyond.get(profile, ()):
            said.append(f"{name} does not support this cluster: {note}; its figures are a what-if.")
        full = a.summary.filter(
            (pl.col("profile") == profile) & (pl.col("strategy") == "full")
        ).sort("concurrency")
        fitting = full.filter((pl.col("backup_window_s") <= a.window_s) & (pl.col("failures") == 0))
        chosen = _row(full, concurrency=c)
        window = _f(chosen["backup_window_s"]) if chosen else 0.0
        if fitting.height:
            said.append(
                f"{name}: a full backup fits the {duration(a.window_s)} window at "
                f"concurrency {c} ({duration(window)})"
                + (
                    "; that is the lowest concurrency that fits, so it loads the cluster least."
                    if full.height > 1
                    else " (the only concurrency tried: --concurrency sweeps more)."
                )
            )
        else:
            said.append(
                f"{name}: no full backup fits the {duration(a.window_s)} window; the shortest "
                f"is {duration(window)} at concurrency {c}."
            )
        others = a.headline.filter((pl.col("profile") == profile) & (pl.col("strategy") != "full"))
        fit = others.filter(pl.col("fits"))["strategy"].to_list()
        miss = others.filter(~pl.col("fits"))["strategy"].to_list()
        if fit:
            said.append(f"At concurrency {c}, these fit the window too: {', '.join(fit)}.")
        if miss:
            said.append(f"These do not: {', '.join(miss)}.")
        if fit and not fitting.height:
            pick = "incremental" if "incremental" in fit else fit[-1]
            said.append(
                f"Plan the nights around {pick}; a full backup needs a longer window (a weekend) "
                f"or more bandwidth to the backup target."
            )
        nodes = a.nodes.filter((pl.col("profile") == profile) & (pl.col("concurrency") == c))
        nodes = nodes.filter(pl.col("strategy") == "full")
        if nodes.height:
            top = nodes.row(0, named=True)
            if profile == "ws2008r2":
                where = (
                    "every node backs up its own VMs (2008 R2 sees only the local Hyper-V "
                    "writer), one CSV at a time"
                )
            elif (a.diff_area.filter(pl.col("profile") == profile)["provider"] == "system").all():
                where = (
                    f"request from {nodes.height} node(s) — each CSV's coordinator, where the "
                    f"system provider's snapshot lives, so no data crosses the cluster network"
                )
            else:
                where = f"request from {nodes.height} node(s), each CSV's coordinator"
            said.append(
                f"Run it where the data is: {where}; the busiest requester is {top['requester']} "
                f"({size(_f(top['bytes_read']))} from {top['vms']} VMs)."
            )
        diff = a.diff_area.filter(
            (pl.col("profile") == profile)
            & (pl.col("concurrency") == c)
            & (pl.col("strategy") == "full")
        )
        if diff.height and (diff["provider"] == "hardware").all():
            said.append(
                "Shadow storage: none needed on the host — the hardware provider's array "
                "snapshots make no host copy-on-write; size the array's snapshot reserve instead."
            )
        elif diff.height:
            worst = diff.sort("recommended_bytes", descending=True).row(0, named=True)
            said.append(
                f"Shadow storage: set at least {size(_f(worst['recommended_bytes']))} on "
                f"{worst['csv']} (peak {size(_f(worst['peak_bytes']))} + "
                f"{a.margin:.0%} margin, full backup); per-CSV sizes are in the table below."
            )
            deletions = int(diff["deletions"].sum())
            if deletions:
                failing = int(diff["vms_failing"].sum())
                said.append(
                    f"The limit set today would delete {deletions} snapshot(s) during a full "
                    f"backup (VolSnap event 24) and fail {failing} VM backup(s): raise it first."
                )
            elif all(limits.get(x) is None for x in diff["csv"].unique().to_list()):
                said.append(
                    "No shadow-storage limit is set: volsnap would grow the diff area into the "
                    "volume's free space — set MaxSize to the recommendation to bound it."
                )
        fr = a.freeze.filter(
            (pl.col("profile") == profile)
            & (pl.col("concurrency") == c)
            & (pl.col("strategy") == "full")
        )
        if fr.height:
            row = fr.row(0, named=True)
            missed = int(_f(row["missed_freeze_window"]))
            said.append(
                f"Freeze: p95 {duration(row['freeze_p95_s'])} (max "
                f"{duration(row['freeze_max_s'])}); "
                + (
                    f"{missed} VM(s) miss the {FREEZE_WINDOW_S:g} s freeze window."
                    if missed
                    else f"every VM thaws inside the {FREEZE_WINDOW_S:g} s freeze window."
                )
                + (
                    f" {row['vms_down']} VM(s) without integration services go down (saved "
                    f"state) for up to {duration(row['downtime_max_s'])}."
                    if _f(row["vms_down"])
                    else ""
                )
            )
        said += _space(a, profile, c)
        if chosen and _f(chosen["redirected_bytes"]):
            said.append(
                f"Redirected access sends {size(_f(chosen['redirected_bytes']))} of the other "
                f"nodes' I/O over the cluster network during the full backup."
            )
        out[profile] = said
    return out


def _space(a: Analysis, profile: str, c: int) -> list[str]:
    """What the CSVs' free space did at the chosen concurrency: VMs paused (Paused-Critical),
    snapshots a full volume deleted, CSVs below the warning level."""
    rows = a.space.filter((pl.col("profile") == profile) & (pl.col("concurrency") == c))
    said: list[str] = []
    for r in rows.iter_rows(named=True):
        paused = int(_f(r["vms_paused"]))
        on_csv = _f(r["diff_area_on_csv_bytes"])
        diff = (
            f" (its diff area, up to {size(on_csv)}, lives on the CSV: move the shadow storage "
            f"to another volume or bound it with MaxSize)"
            if on_csv
            else ""
        )
        if paused:
            said.append(
                f"Capacity: {r['csv']}'s free space fell below {size(PAUSED_CRITICAL_BYTES)} "
                f"during the {r['strategy']} backup — Hyper-V paused {paused} VM(s) with "
                f"dynamic disks (Paused-Critical) for {duration(_f(r['paused_vm_s']))} of VM "
                f"time in the backup, and they stay paused until an administrator frees space "
                f"and resumes them{diff}; grow the CSV or convert those disks to fixed size."
            )
        elif r["low_space_s"] is not None:
            said.append(
                f"Capacity: {r['csv']}'s free space fell to {size(_f(r['free_low_bytes']))} "
                f"during the {r['strategy']} backup, below Hyper-V's "
                f"{size(LOW_SPACE_WARNING_BYTES)} warning level{diff}."
            )
        if _f(r["volume_full"]):
            said.append(
                f"{r['csv']} filled during the {r['strategy']} backup: volsnap deleted "
                f"{int(_f(r['volume_full']))} snapshot(s) whose diff area could not grow, and "
                f"their VMs' backups failed."
            )
    return said


def case_label(row: dict[str, object]) -> str:
    return " · ".join(str(row[k]) for k in CASE)
