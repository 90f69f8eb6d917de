"""Capacity plans and modelled backups on the estimate engine, against the exact engine and the
issue's targets (issue 13: plan the 4,000-VM examples in under a minute).

- ``test_full_size_plan`` (group ``plan-full-size``): ``vssim plan EXAMPLE`` with the default
  sweep (both profiles, concurrency 1/2/4/8, three selective shares), each example in a child
  process of its own; ``extra_info``: its wall time and peak RSS beside the targets (60 s, 2 GiB)
  and their ratios, the runs and the backups' figures of the headline.
- ``test_full_backup_estimate_vs_exact`` (group ``full-backup-estimate-vs-exact``): the ws2012
  example's full backup on both engines, on the same scenario in the same run — the example's 64
  nodes and 16 CSVs with fewer VMs (``EXACT_VMS``: the exact engine on all 4,000 takes hours) —
  with the speed ratio and each summary figure's relative difference; the estimate's 4,000-VM
  full backup's wall time beside it.
- ``test_full_backup_scaling`` (group ``estimate-run-scaling``): one full backup of the ws2012
  example at 1,000 / 2,000 / 4,000 / 8,000 VMs on the estimate (a CSV per 250 VMs, at least the
  example's 16: its 20 TiB CSVs hold 250 VMs' data each): wall seconds per VM.
- ``test_plan_at_8000_vms`` (group ``plan-8000``): ``vssim plan --quick`` of that 8,000-VM
  cluster (the released ws2012's limit: 64 nodes, 8,000 VMs), ws2012.

``make bench`` runs the full sizes; ``make test`` small ones (40 VMs, ``--quick``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "ws2012": ROOT / "examples" / "ws2012-64n-4000vm.toml",
    "ws2008r2": ROOT / "examples" / "ws2008r2-64n-4000vm.toml",
}
#: The issue's targets for a full-size plan of one example on the 2-core machine.
TARGET_WALL_S = 60.0
TARGET_RSS_BYTES = 2 << 30
#: VMs of the example both engines back up in the same run (the exact engine's cost grows with
#: VMs × window, the window with the VMs).
EXACT_VMS = {True: 250, False: 24}

#: A plan in a child process (so its peak RSS is its own), with ``vssim plan``'s default runs at
#: once (worker processes): prints wall seconds, the jobs, peak RSS — the plan's own plus each
#: worker at the largest worker's peak (a bound on the processes' sum) — and the headline's rows
#: as JSON.
PLAN_CHILD = """
import json, resource, sys, time
from pathlib import Path
from vssim.report import capacity_plan as planning
from vssim.report.plan_workers import default_jobs
from vssim.report.strategies import parse_profiles
example, out, vms, quick = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
opts = {"fractions": (0.1,), "concurrency": (4,)} if quick else {}
if sys.argv[5]:
    opts["profiles"] = parse_profiles(sys.argv[5])
jobs = default_jobs()
t = time.perf_counter()
report = planning.build(Path(example), out, opts, vms=int(vms) if vms != "0" else None, jobs=jobs)
wall = time.perf_counter() - t
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
head = report.analysis.headline
runs = report.analysis.summary.height
rss = own + (jobs if jobs > 1 else 0) * worker
print(json.dumps({"wall_s": wall, "jobs": jobs, "peak_rss_bytes": rss, "backups": runs,
                  "headline": head.select(head.columns[:6]).rows()}))
"""


def plan_in_child(
    example: Path, out: Path, vms: int, quick: bool, profiles: str = ""
) -> dict[str, Any]:
    args = [str(example), str(out), str(vms), str(int(quick)), profiles]
    done = subprocess.run(
        [sys.executable, "-c", PLAN_CHILD, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.benchmark(group="plan-full-size")
@pytest.mark.parametrize("profile", sorted(EXAMPLES))
def test_full_size_plan(benchmark: Any, profile: str, full_scale: bool, tmp_path: Path) -> None:
    vms, quick = (0, False) if full_scale else (40, True)
    got: dict[str, Any] = {}

    def plan() -> None:
        got.update(plan_in_child(EXAMPLES[profile], tmp_path / "report", vms, quick))

    benchmark.pedantic(plan, rounds=1, warmup_rounds=0)
    assert got["backups"] >= 3
    assert (tmp_path / "report" / "report.html").exists()
    benchmark.extra_info.update(
        example=EXAMPLES[profile].name,
        vms=vms or 4000,
        sweep="default" if not quick else "--quick",
        wall_s=got["wall_s"],
        jobs=got["jobs"],
        target_wall_s=TARGET_WALL_S,
        wall_over_target=got["wall_s"] / TARGET_WALL_S,
        peak_rss_bytes=got["peak_rss_bytes"],
        target_rss_bytes=TARGET_RSS_BYTES,
        rss_over_target=got["peak_rss_bytes"] / TARGET_RSS_BYTES,
        backups=got["backups"],
        headline=got["headline"],
    )


def sized_raw(vms: int) -> dict[str, Any]:
    """The ws2012 example's scenario with ``vms`` VMs and a CSV per 250 of them (at least 16)."""
    import tomllib

    raw = tomllib.loads(EXAMPLES["ws2012"].read_text(encoding="utf-8"))
    raw["generate"] = {**raw["generate"], "vms": vms, "csvs": max(16, vms // 250)}
    return raw


def full_backup(vms: int, engine: str) -> tuple[dict[str, float], float]:
    """The ws2012 example's full backup with ``vms`` VMs (:func:`sized_raw`) on ``engine``: its
    summary figures and the wall seconds."""
    from vssim.metrics import run
    from vssim.scenario import parse_scenario

    sc = parse_scenario(sized_raw(vms), EXAMPLES["ws2012"])
    t = time.perf_counter()
    result = run(sc, ["full"], engine=engine)
    wall = time.perf_counter() - t
    row = result.summary.row(0, named=True)
    keys = ("backup_window_s", "bytes_read", "chunks_copied", "diff_area_peak_bytes", "failures")
    return {k: float(row[k]) for k in keys}, wall


@pytest.mark.benchmark(group="full-backup-estimate-vs-exact")
def test_full_backup_estimate_vs_exact(benchmark: Any, full_scale: bool) -> None:
    vms = EXACT_VMS[full_scale]
    exact, exact_s = full_backup(vms, "exact")
    est: dict[str, float] = {}
    times: list[float] = []

    def estimate() -> None:
        figures, wall = full_backup(vms, "estimate")
        est.update(figures)
        times.append(wall)

    benchmark.pedantic(estimate, rounds=1, warmup_rounds=0)
    diffs = {k: (est[k] - exact[k]) / max(exact[k], 1.0) for k in exact}
    # The estimate is an expectation: the sums of many VMs agree closely.
    for k in ("bytes_read", "chunks_copied", "backup_window_s"):
        assert abs(diffs[k]) < 0.02, f"{k}: {est[k]:.4g} vs exact {exact[k]:.4g}"
    big = 4000 if full_scale else 80
    _, big_s = full_backup(big, "estimate")
    benchmark.extra_info.update(
        scenario=f"{EXAMPLES['ws2012'].name} with {vms} VMs (exact on 4,000 takes hours)",
        vms=vms,
        exact_seconds=exact_s,
        estimate_seconds=times[0],
        speed_ratio=exact_s / times[0],
        **{f"{k}_exact": v for k, v in exact.items()},
        **{f"{k}_estimate": v for k, v in est.items()},
        **{f"{k}_relative_difference": d for k, d in diffs.items()},
        estimate_full_size_vms=big,
        estimate_full_size_seconds=big_s,
    )


@pytest.mark.benchmark(group="estimate-run-scaling")
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_full_backup_scaling(benchmark: Any, scale: int, full_scale: bool) -> None:
    vms = 1000 * scale if full_scale else 20 * scale
    got: dict[str, Any] = {}

    def backup() -> None:
        got["figures"], got["wall"] = full_backup(vms, "estimate")

    benchmark.pedantic(backup, rounds=1, warmup_rounds=0)
    figures = got["figures"]
    assert figures["bytes_read"] > 0
    assert figures["chunks_copied"] > 0
    benchmark.extra_info.update(
        vms=vms, seconds=got["wall"], milliseconds_per_vm=got["wall"] / vms * 1e3, **figures
    )


@pytest.mark.benchmark(group="plan-8000")
def test_plan_at_8000_vms(benchmark: Any, full_scale: bool, tmp_path: Path) -> None:
    vms = 8000 if full_scale else 160
    text = EXAMPLES["ws2012"].read_text(encoding="utf-8")
    assert "vms = 4000" in text
    assert "csvs = 16" in text
    path = tmp_path / f"ws2012-64n-{vms}vm.toml"
    csvs = max(16, vms // 250)
    path.write_text(
        text.replace("vms = 4000", f"vms = {vms}").replace("csvs = 16", f"csvs = {csvs}"),
        encoding="utf-8",
    )
    got: dict[str, Any] = {}

    def plan() -> None:
        got.update(plan_in_child(path, tmp_path / "report", 0, True, "ws2012"))

    benchmark.pedantic(plan, rounds=1, warmup_rounds=0)
    assert got["backups"] >= 3
    benchmark.extra_info.update(
        vms=vms,
        sweep="--quick",
        wall_s=got["wall_s"],
        peak_rss_bytes=got["peak_rss_bytes"],
        backups=got["backups"],
        headline=got["headline"],
    )
