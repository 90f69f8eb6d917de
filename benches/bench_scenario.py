"""Whole modelled backups: full, selective (1 %, 10 %) and incremental, on Windows Server 2008 R2
and 2012, at 64 nodes × 4,000 VMs (``make bench``; a 8-node × 200-VM cluster under
``--benchmark-disable``). Every VM issues 100 IOPS (70 writes/s) for the whole backup window.

Each case runs its scenario once, timed (one round: a full-size run takes minutes), checks the
outcome, and stores the simulated figures in ``extra_info`` (``vssim bench-report`` pivots them).
The throughput cases compare the whole run's guest writes per second with the raw
``engine.CowTracker.apply_writes`` rate on a stream of the same size measured in the same run
(target: at least 50 %), where the wall time went (``engine_window_s`` in the engine's CSV
windows, ``protocol_s`` the rest), and the run's peak RSS (target: at most 4 GiB); the scaling case
reports the cost per simulated write at 1,000 / 2,000 / 4,000 / 8,000 VMs.
"""

from __future__ import annotations

import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import psutil
import pytest

from numpy_workload import hot_spot_writes
from vssim import engine
from vssim.metrics import RunResult, run
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scenario import Scenario, parse_scenario
from vssim.units import TiB

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def bench_scenario(os: str, full_scale: bool, vms: int | None = None) -> Scenario:
    """The example cluster of ``os`` with every VM at 100 IOPS on a system-provider CSV; VHDX
    files of 1 GiB growing up to 4 GiB (so a full backup's window is minutes, not days). The
    CSVs' storage runs at 8 GB/s: 250 guests at 100 IOPS take about 1 GB/s of it (their I/O
    loads the CSV, ``vssim.scale.storage_load``), and on the examples' 1 GB/s nothing would be
    left for the copies."""
    raw: dict[str, Any] = tomllib.loads((EXAMPLES / f"{os}-64n-4000vm.toml").read_text())
    g = raw["generate"]
    g.update(
        allocated="1 GiB",
        disk_size="4 GiB",
        provider="system",
        write_iops=70,
        workload={"read_fraction": 0.3, "locality": "hotspot"},
    )
    if not full_scale:
        g.update(nodes=8, csvs=4, vms=200)
    if vms is not None:
        g["vms"] = vms
    raw["links"]["backup_target_bandwidth"] = "16 GB/s"
    raw["links"]["csv_bandwidth"] = "8 GB/s"
    return parse_scenario(raw, Path(f"bench-{os}.toml"))


STRATEGIES = {
    "full": ("full", {}),
    "selective-1%": ("selective", {"fraction": 0.01}),
    "selective-10%": ("selective", {"fraction": 0.10}),
    "incremental": (["full", "incremental"], {"interval_s": 600.0}),
}


def figures(r: RunResult, backup: int) -> dict[str, Any]:
    s = r.summary.filter(pl.col("backup") == backup).to_dicts()[0]
    return {
        "profile": s["profile"],
        "backup_window_s": s["backup_window_s"],
        "diff_area_peak_bytes": s["diff_area_peak_bytes"],
        "bytes_read": s["bytes_read"],
        "redirected_bytes": s["redirected_bytes"],
        "vms_frozen": s["vms_frozen"],
        "failures": s["failures"],
        "vms": s["vms"],
        "jobs": s["jobs"],
        "writes_simulated": r.writes_simulated,
    }


@pytest.mark.benchmark(group="scenario")
@pytest.mark.parametrize("os", ["ws2008r2", "ws2012"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_scenario(benchmark: Any, full_scale: bool, os: str, strategy: str) -> None:
    sc = bench_scenario(os, full_scale)
    backup, kw = STRATEGIES[strategy]
    r: RunResult = benchmark.pedantic(run, args=(sc, backup), kwargs=kw, rounds=1, iterations=1)
    last = r.summary.height - 1
    f = figures(r, last)
    n = len(sc.vms)
    expected = {"selective-1%": round(n * 0.01), "selective-10%": round(n * 0.10)}.get(strategy, n)
    assert f["vms"] == expected
    assert f["failures"] == 0
    assert 0 < f["vms_frozen"] <= expected
    assert f["bytes_read"] > 0
    assert f["diff_area_peak_bytes"] > 0
    if os == "ws2008r2":
        assert f["redirected_bytes"] > 0
    if strategy == "incremental":
        full = figures(r, 0)
        assert f["bytes_read"] < full["bytes_read"]
    benchmark.extra_info.update(f, strategy=strategy)


class PeakRss:
    """Samples this process's RSS every 20 ms while a block runs."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def raw_cow_rate(n_writes: int, seed: int = 7) -> float:
    """Writes per second of ``CowTracker.apply_writes`` (one snapshot, a 16 TiB volume) on a
    hot-spot stream of ``n_writes`` writes of 4–64 KiB, fed in slices of 10 million (timing the
    tracker only, not the stream's generation)."""
    t = engine.CowTracker(16 * TiB)
    t.create_snapshot()
    spent, done, k = 0.0, 0, 0
    while done < n_writes:
        n = min(10_000_000, n_writes - done)
        s = hot_spot_writes(n, 16 * TiB, seed=seed + k)
        start = time.perf_counter()
        t.apply_writes(s.offsets, s.lengths)
        spent += time.perf_counter() - start
        done += n
        k += 1
    return n_writes / spent


class WindowClock:
    """Seconds the run spends inside the exact engine's CSV windows
    (``ModelClusterBackend._advance``): the rest of the wall time is the protocol's Python.
    Also split by whether a snapshot of one of the window's CSVs was live (copy-on-write runs
    only then), with the writes of each kind: the cost per write of the two differs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seconds = 0.0
        self.windows = 0
        #: Per kind (True: a snapshot was live): [windows, seconds, writes].
        self.by_snapshot: dict[bool, list[float]] = {True: [0, 0.0, 0], False: [0, 0.0, 0]}
        inner = ModelClusterBackend._advance

        def timed(backend: ModelClusterBackend, csvs: list[int], *args: Any) -> Any:
            live = any(backend.has_live_snapshot(backend.scenario.csvs[c].name) for c in csvs)
            start = time.perf_counter()
            writes = 0
            try:
                r = inner(backend, csvs, *args)
                writes = int(r["writes"].sum())
                return r
            finally:
                spent = time.perf_counter() - start
                self.seconds += spent
                self.windows += 1
                kind = self.by_snapshot[live]
                kind[0] += 1
                kind[1] += spent
                kind[2] += writes

        monkeypatch.setattr(ModelClusterBackend, "_advance", timed)

    def figures(self) -> dict[str, float]:
        """The split, for a benchmark's ``extra_info``."""
        out: dict[str, float] = {}
        for live, name in ((True, "snapshot"), (False, "no_snapshot")):
            n, secs, writes = self.by_snapshot[live]
            out[f"engine_{name}_windows"] = n
            out[f"engine_{name}_window_s"] = secs
            out[f"engine_{name}_writes"] = writes
            out[f"engine_{name}_ns_per_write"] = secs / writes * 1e9 if writes else 0.0
        return out


@pytest.mark.benchmark(group="scenario-throughput")
@pytest.mark.parametrize("os", ["ws2012", "ws2008r2"])
def test_run_throughput_vs_raw_cow(
    benchmark: Any, full_scale: bool, os: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = bench_scenario(os, full_scale)
    windows = WindowClock(monkeypatch)
    with PeakRss() as mem:
        start = time.perf_counter()
        r: RunResult = benchmark.pedantic(run, args=(sc, "full"), rounds=1, iterations=1)
        wall = time.perf_counter() - start
    f = figures(r, 0)
    assert f["failures"] == 0
    assert r.writes_simulated > 0
    run_rate = r.writes_simulated / wall
    raw_rate = raw_cow_rate(r.writes_simulated)
    benchmark.extra_info.update(
        f,
        strategy="full (throughput)",
        run_writes_per_s=run_rate,
        raw_cow_writes_per_s=raw_rate,
        run_to_raw_ratio=run_rate / raw_rate,
        # Where the wall time went: the engine's windows, and everything else (the protocol).
        engine_window_s=windows.seconds,
        engine_windows=windows.windows,
        **windows.figures(),
        protocol_s=wall - windows.seconds,
        peak_rss_bytes=mem.peak,
        peak_rss_target_bytes=4 * 2**30,
    )


@pytest.mark.benchmark(group="scenario-scaling")
@pytest.mark.parametrize("vms", [1000, 2000, 4000, 8000])
def test_scaling_cost_per_write(benchmark: Any, full_scale: bool, vms: int) -> None:
    n = vms if full_scale else vms // 20
    sc = bench_scenario("ws2012", full_scale, vms=n)
    start = time.perf_counter()
    r: RunResult = benchmark.pedantic(run, args=(sc, "full"), rounds=1, iterations=1)
    wall = time.perf_counter() - start
    f = figures(r, 0)
    assert f["vms"] == n
    assert f["failures"] == 0
    benchmark.extra_info.update(
        vms=n,
        writes_simulated=r.writes_simulated,
        backup_window_s=f["backup_window_s"],
        seconds_per_write=wall / r.writes_simulated,
        ns_per_write=wall / r.writes_simulated * 1e9,
    )
