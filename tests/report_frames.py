"""Small hand-built result tables (the columns of vssim.metrics the report reads) for the report's
unit tests: every figure in them is chosen so the expected answers can be worked out by hand."""

from __future__ import annotations

from typing import Any

import polars as pl

MiB = 1024**2
GiB = 1024**3


def case(profile: str, strategy: str, concurrency: int) -> dict[str, Any]:
    return {"profile": profile, "strategy": strategy, "concurrency": concurrency}


def frames(
    profile: str = "ws2012",
    strategy: str = "full",
    concurrency: int = 4,
    *,
    vms: int = 8,
    csvs: int = 2,
    copy_s: float = 100.0,
    vm_bytes: int = 10 * GiB,
    peaks: tuple[int, ...] = (200 * MiB, 2 * GiB),
    freeze: tuple[float, ...] | None = None,
    downtime: tuple[float, ...] = (),
    redirected: int = 0,
    start: float = 1000.0,
    provider: str = "system",
) -> dict[str, pl.DataFrame]:
    """One backup: ``csvs`` snapshot sets (one per CSV, each from node N<i>) starting at
    ``start`` + 10 s × set, 5 s to the first copy (1 s of freeze), then its VMs copied one after
    the other for ``copy_s`` each, 2 s to release."""
    c = case(profile, strategy, concurrency)
    freeze = freeze if freeze is not None else tuple(2.0 + i for i in range(vms))
    v: dict[str, list[Any]] = {k: [] for k in ("job", "vm", "node", "csv", "requester")}
    v.update({k: [] for k in ("frozen", "freeze_s", "downtime_s", "copy_start_s")})
    v.update({k: [] for k in ("copy_end_s", "bytes_read", "ok", "result")})
    jobs: dict[str, list[Any]] = {
        k: []
        for k in (
            "job",
            "requester",
            "start_s",
            "end_s",
            "window_s",
            "freeze_window_s",
            "ok",
            "failures",
        )
    }
    cs: dict[str, list[Any]] = {
        k: []
        for k in (
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
        )
    }
    end = start
    for j in range(csvs):
        mine = [i for i in range(vms) if i % csvs == j]
        s = start + 10.0 * j
        t = s + 5.0
        for i in mine:
            down = float(downtime[i]) if i < len(downtime) else 0.0
            v["job"].append(j)
            v["vm"].append(f"VM{i:02d}")
            v["node"].append(f"N{i % 3}")
            v["csv"].append(f"CSV{j}")
            v["requester"].append(f"N{j}")
            v["frozen"].append(down == 0.0)
            v["freeze_s"].append(freeze[i] if down == 0.0 else 0.0)
            v["downtime_s"].append(down)
            v["copy_start_s"].append(t)
            v["copy_end_s"].append(t + copy_s)
            v["bytes_read"].append(vm_bytes)
            v["ok"].append(True)
            v["result"].append("S_OK")
            t += copy_s
        e = t + 2.0
        end = max(end, e)
        jobs["job"].append(j)
        jobs["requester"].append(f"N{j}")
        jobs["start_s"].append(s)
        jobs["end_s"].append(e)
        jobs["window_s"].append(e - s)
        jobs["freeze_window_s"].append(1.0)
        jobs["ok"].append(True)
        jobs["failures"].append(0)
        cs["job"].append(j)
        cs["csv"].append(f"CSV{j}")
        cs["provider"].append(provider)
        cs["diff_area_peak_bytes"].append(peaks[j % len(peaks)])
        cs["deleted_by"].append("released")
        cs["redirected_s"].append(e - s if redirected else 0.0)
        cs["redirected_bytes"].append(redirected)
        cs["vms"].append(len(mine))
        cs["lifetime_s"].append(e - s - 5.0)
        cs["diff_area_on_volume"].append(True)
        cs["free_low_bytes"].append(100 * GiB)
        cs["low_space_s"].append(None)
        cs["paused_critical_s"].append(None)
        cs["vms_paused"].append(0)
        cs["paused_vm_s"].append(0.0)
    summary = {
        "start_s": [start],
        "end_s": [end],
        "backup_window_s": [end - start],
        "vms": [vms],
        "bytes_read": [vms * vm_bytes],
        "redirected_bytes": [redirected * csvs],
        "network_bytes": [0],
        "vms_frozen": [sum(v["frozen"])],
        "failures": [0],
        "vms_paused": [0],
        "paused_vm_s": [0.0],
    }

    def tag(d: dict[str, list[Any]]) -> pl.DataFrame:
        n = len(next(iter(d.values())))
        return pl.DataFrame({**{k: [x] * n for k, x in c.items()}, **d}).with_columns(
            pl.col("concurrency").cast(pl.Int64)
        )

    return {
        "vms": tag(v),
        "jobs": tag(jobs),
        "csvs": tag(cs),
        "summary": tag(summary),
    }


def combine(*parts: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {k: pl.concat([p[k] for p in parts], how="vertical_relaxed") for k in parts[0]}
