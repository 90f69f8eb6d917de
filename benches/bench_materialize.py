"""Materialized mode's cost: a window of guest writes applied to real VHDX files on real volumes
(through the VHDX writer in write-through mode and the volume's copy-on-write, one snapshot live
per CSV), against the same number of writes of the same mean size written straight into plain
sparse files with ``os.pwrite`` (one thread per CSV).

Full size (``make bench``): 400 VMs with 256 MiB dynamic disks on 4 CSVs, a 2 s window; small
under ``--benchmark-disable`` (``make test``). Each test checks its answer first: the real volumes
copied exactly what the model counted, and the peer wrote the same bytes. Guest MB/s and writes/s
go to ``extra_info``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from vssim import engine

MiB = 1 << 20
DISK = 256 * MiB
CSVS = 4


def shape(full_scale: bool) -> tuple[int, float]:
    """(VMs, window seconds)."""
    return (400, 2.0) if full_scale else (16, 1.0)


def build(root: Path | None, vms: int) -> engine.ModelCluster:
    c = engine.ModelCluster()
    for csv in range(CSVS):
        c.add_csv(1 << 40)
        if root is not None:
            (root / f"csv{csv}").mkdir(parents=True)
            c.materialize_csv(csv, engine.Volume(root / f"csv{csv}", root / f"diff{csv}"))
    spec = engine.WorkloadSpec(
        iops=50.0, read_fraction=0.3, locality="hotspot", hot_fraction=0.1, hot_share=0.9
    )
    for v in range(vms):
        vm = c.add_vm(v % CSVS, DISK, spec, allocated=64 * MiB, block_size=32 * MiB, seed=7000 + v)
        if root is not None:
            c.materialize_vm(vm, f"vm-{vm:04d}/disk0.vhdx")
    for csv in range(CSVS):
        c.snapshot(csv)
    return c


class Timed:
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.result: dict[str, Any] = {}


@pytest.mark.benchmark(group="materialize")
def test_materialized_advance(
    benchmark: BenchmarkFixture, tmp_path: Path, full_scale: bool
) -> None:
    vms, window = shape(full_scale)
    timed = Timed()
    rounds = iter(range(1000))
    clusters: list[engine.ModelCluster] = []

    def setup() -> tuple[tuple[engine.ModelCluster], dict[str, Any]]:
        c = build(tmp_path / f"round{next(rounds)}", vms)
        clusters.append(c)
        return (c,), {}

    def run(c: engine.ModelCluster) -> None:
        t = time.perf_counter()
        timed.result = c.advance(0.0, window)
        timed.seconds.append(time.perf_counter() - t)
        c.close_materialized()

    benchmark.pedantic(run, setup=setup, rounds=1 if benchmark.disabled else 2, iterations=1)
    r = timed.result
    np.testing.assert_array_equal(r["real_chunks_copied"], r["chunks_copied"])
    c = clusters[-1]
    for csv in range(CSVS):
        assert c.real_diff_area_bytes(csv) == c.diff_area_bytes(csv)
    writes, guest = int(r["writes"].sum()), int(r["bytes_written"].sum())
    best = min(timed.seconds)
    benchmark.extra_info.update(
        vms=vms,
        guest_writes=writes,
        guest_bytes=guest,
        file_bytes=int(r["real_file_bytes"].sum()),
        chunks_copied=int(r["chunks_copied"].sum()),
        guest_mb_per_s=guest / best / 1e6,
        writes_per_s=writes / best,
    )


@pytest.mark.benchmark(group="materialize")
def test_plain_file_writes_peer(
    benchmark: BenchmarkFixture, tmp_path: Path, full_scale: bool
) -> None:
    vms, window = shape(full_scale)
    # The same writes per VM, of the VM's mean size, at 4 KiB-aligned offsets in its hot tenth.
    r = build(None, vms).advance(0.0, window)
    counts, total = r["writes"].astype(np.int64), r["bytes_written"].astype(np.int64)
    rng = np.random.default_rng(1)
    plan = []
    for v in range(vms):
        n = int(counts[v])
        size = int(total[v]) // max(n, 1) // 512 * 512
        offs = rng.integers(0, (DISK // 10 - size) // 4096, n) * 4096
        plan.append((size, offs.tolist()))
    buf = np.random.default_rng(2).integers(0, 255, 2 * MiB, dtype=np.uint8).tobytes()
    timed = Timed()
    rounds = iter(range(1000))

    def setup() -> tuple[tuple[Path], dict[str, Any]]:
        d = tmp_path / f"round{next(rounds)}"
        d.mkdir()
        for v in range(vms):
            with open(d / f"vm{v}.bin", "wb") as f:
                f.truncate(DISK)
        return (d,), {}

    def one_csv(d: Path, csv: int) -> int:
        written = 0
        for v in range(csv, vms, CSVS):
            size, offs = plan[v]
            fd = os.open(d / f"vm{v}.bin", os.O_WRONLY)
            try:
                data = buf[:size]
                for off in offs:
                    written += os.pwrite(fd, data, off)
            finally:
                os.close(fd)
        return written

    def run(d: Path) -> None:
        # One thread per CSV, as the engine advances CSVs in parallel (pwrite releases the GIL).
        t = time.perf_counter()
        with ThreadPoolExecutor(CSVS) as pool:
            written = sum(pool.map(lambda csv: one_csv(d, csv), range(CSVS)))
        timed.seconds.append(time.perf_counter() - t)
        timed.result = {"bytes": written}

    benchmark.pedantic(run, setup=setup, rounds=1 if benchmark.disabled else 2, iterations=1)
    expected = sum(size * len(offs) for size, offs in plan)
    assert timed.result["bytes"] == expected
    assert expected > 0.95 * int(total.sum())
    best = min(timed.seconds)
    benchmark.extra_info.update(
        vms=vms,
        guest_writes=int(counts.sum()),
        guest_bytes=expected,
        guest_mb_per_s=expected / best / 1e6,
        writes_per_s=int(counts.sum()) / best,
    )
