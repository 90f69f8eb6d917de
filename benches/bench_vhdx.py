"""VHDX throughput: the engine against qemu-img / qemu-io doing the same work and against plain
file I/O (the disk's limit), on the same disk in the same run.

Rows: sequential write into a new dynamic VHDX, 4 KiB random writes, sequential read, and a full
copy of a 25 %-allocated disk into a new dynamic VHDX. ``make bench`` runs the full sizes
(``VSSIM_BENCH_FULL=1``: 1 GiB written, a 4 GiB disk copied); ``make test`` runs them once, small.
Each row records ``MB/s`` for the three contenders and the ratios in ``extra_info``.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from vssim import engine

MiB = 1024 * 1024
FULL = os.environ.get("VSSIM_BENCH_FULL") == "1"
SEQ_BYTES = (1024 if FULL else 64) * MiB
RANDOM_WRITES = 20_000 if FULL else 500
RANDOM_DISK = (4096 if FULL else 256) * MiB
COPY_DISK = (4096 if FULL else 128) * MiB
CHUNK = 4 * MiB
ROUNDS = 3 if FULL else 1
HAVE_QEMU = shutil.which("qemu-img") is not None and shutil.which("qemu-io") is not None
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-utils not installed")

PATTERN = random.Random(1).randbytes(CHUNK)


def best_of(fn: Callable[[], Any], setup: Callable[[], None], rounds: int = ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        setup()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def sh(*args: str, stdin: str | None = None) -> None:
    r = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def record(
    benchmark: Any, nbytes: int, times: dict[str, float], unit: str = "MB/s"
) -> dict[str, float]:
    rates = {k: nbytes / v / 1e6 for k, v in times.items()}
    info: dict[str, float] = {f"{k}_{unit}": round(r, 1) for k, r in rates.items()}
    if "qemu" in rates:
        info["engine_vs_qemu"] = round(rates["engine"] / rates["qemu"], 2)
    if "plain" in rates:
        info["engine_vs_plain"] = round(rates["engine"] / rates["plain"], 2)
    benchmark.extra_info.update(info)
    return info


def remove(*paths: pathlib.Path) -> Callable[[], None]:
    def go() -> None:
        for p in paths:
            p.unlink(missing_ok=True)

    return go


@needs_qemu
@pytest.mark.benchmark(group="vhdx-sequential-write")
def test_sequential_write(benchmark: Any, tmp_path: pathlib.Path) -> None:
    ours, theirs, plain = tmp_path / "e.vhdx", tmp_path / "q.vhdx", tmp_path / "p.raw"

    def engine_write() -> None:
        with engine.Vhdx.create(ours, SEQ_BYTES) as d:
            for off in range(0, SEQ_BYTES, CHUNK):
                d.write(off, PATTERN)

    def qemu_write() -> None:
        sh("qemu-img", "create", "-q", "-f", "vhdx", str(theirs), str(SEQ_BYTES))
        sh("qemu-io", "-f", "vhdx", "-c", f"write -P 0x5a 0 {SEQ_BYTES}", str(theirs))

    def plain_write() -> None:
        with open(plain, "wb") as f:
            for _ in range(0, SEQ_BYTES, CHUNK):
                f.write(PATTERN)
            f.flush()
            os.fsync(f.fileno())

    engine_write()
    with engine.Vhdx.open(ours) as d:
        assert d.read(SEQ_BYTES - CHUNK, CHUNK) == PATTERN
    times = {
        "plain": best_of(plain_write, remove(plain)),
        "qemu": best_of(qemu_write, remove(theirs)),
        "engine": best_of(engine_write, remove(ours)),
    }
    record(benchmark, SEQ_BYTES, times)
    benchmark.pedantic(engine_write, setup=remove(ours), rounds=ROUNDS, iterations=1)


@needs_qemu
@pytest.mark.benchmark(group="vhdx-random-4k-write")
def test_random_4k_writes(benchmark: Any, tmp_path: pathlib.Path) -> None:
    rng = random.Random(4)
    offsets = [rng.randrange(RANDOM_DISK // 4096) * 4096 for _ in range(RANDOM_WRITES)]
    block = PATTERN[:4096]
    ours, theirs, plain = tmp_path / "e.vhdx", tmp_path / "q.vhdx", tmp_path / "p.raw"
    script = "".join(f"write -P 0x5a {o} 4k\n" for o in offsets)

    def engine_write() -> None:
        with engine.Vhdx.create(ours, RANDOM_DISK) as d:
            for o in offsets:
                d.write(o, block)

    def qemu_write() -> None:
        sh("qemu-img", "create", "-q", "-f", "vhdx", str(theirs), str(RANDOM_DISK))
        sh("qemu-io", "-f", "vhdx", str(theirs), stdin=script)

    def plain_write() -> None:
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(fd, RANDOM_DISK)
        for o in offsets:
            os.pwrite(fd, block, o)
        os.fsync(fd)
        os.close(fd)

    engine_write()
    with engine.Vhdx.open(ours) as d:
        assert all(d.read(o, 4096) == block for o in offsets[:50])
    times = {
        "plain": best_of(plain_write, remove(plain)),
        "qemu": best_of(qemu_write, remove(theirs)),
        "engine": best_of(engine_write, remove(ours)),
    }
    info = record(benchmark, RANDOM_WRITES * 4096, times)
    benchmark.extra_info["engine_writes_per_s"] = round(RANDOM_WRITES / times["engine"])
    assert info["engine_MB/s"] > 0
    benchmark.pedantic(engine_write, setup=remove(ours), rounds=ROUNDS, iterations=1)


@needs_qemu
@pytest.mark.benchmark(group="vhdx-sequential-read")
def test_sequential_read(benchmark: Any, tmp_path: pathlib.Path) -> None:
    disk, plain = tmp_path / "d.vhdx", tmp_path / "p.raw"
    with engine.Vhdx.create(disk, SEQ_BYTES) as d:
        for off in range(0, SEQ_BYTES, CHUNK):
            d.write(off, PATTERN)
    with open(plain, "wb") as f:
        for _ in range(0, SEQ_BYTES, CHUNK):
            f.write(PATTERN)

    def engine_read() -> None:
        with engine.Vhdx.open(disk) as d:
            for off in range(0, SEQ_BYTES, CHUNK):
                d.read(off, CHUNK)

    def qemu_read() -> None:
        sh("qemu-io", "-r", "-f", "vhdx", "-c", f"read 0 {SEQ_BYTES}", str(disk))

    def plain_read() -> None:
        with open(plain, "rb", buffering=0) as f:
            while f.read(CHUNK):
                pass

    with engine.Vhdx.open(disk) as d:
        assert d.read(CHUNK, CHUNK) == PATTERN
    times = {
        "plain": best_of(plain_read, lambda: None),
        "qemu": best_of(qemu_read, lambda: None),
        "engine": best_of(engine_read, lambda: None),
    }
    record(benchmark, SEQ_BYTES, times)
    benchmark.pedantic(engine_read, rounds=ROUNDS, iterations=1)


@needs_qemu
@pytest.mark.benchmark(group="vhdx-copy-25pct")
def test_copy_quarter_allocated_disk(benchmark: Any, tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src.vhdx"
    block = 32 * MiB
    used = 0
    with engine.Vhdx.create(src, COPY_DISK, block_size=block) as d:
        for b in range(0, COPY_DISK // block, 4):  # every 4th block: 25 %
            for off in range(b * block, (b + 1) * block, CHUNK):
                d.write(off, PATTERN)
            used += block
    plain_src, plain_dst = tmp_path / "data.raw", tmp_path / "copy.raw"
    with open(plain_src, "wb") as f:
        for _ in range(0, used, CHUNK):
            f.write(PATTERN)
    ours, theirs = tmp_path / "e.vhdx", tmp_path / "q.vhdx"

    def engine_copy() -> None:
        with engine.Vhdx.open(src) as d:
            d.copy_to(ours)

    def qemu_copy() -> None:
        # -t writeback: flush at the end, as our copy does (convert defaults to cache=unsafe).
        sh(
            "qemu-img",
            "convert",
            "-t",
            "writeback",
            "-f",
            "vhdx",
            "-O",
            "vhdx",
            str(src),
            str(theirs),
        )

    def plain_copy() -> None:
        with open(plain_src, "rb", buffering=0) as r, open(plain_dst, "wb") as w:
            while chunk := r.read(CHUNK):
                w.write(chunk)
            w.flush()
            os.fsync(w.fileno())

    engine_copy()
    with engine.Vhdx.open(ours) as c, engine.Vhdx.open(src) as s:
        _offs, lens = c.allocated_extents()
        assert int(lens.sum()) == used
        assert c.read(0, CHUNK) == s.read(0, CHUNK) == PATTERN
    times = {
        "plain": best_of(plain_copy, remove(plain_dst)),
        "qemu": best_of(qemu_copy, remove(theirs)),
        "engine": best_of(engine_copy, remove(ours)),
    }
    record(benchmark, used, times)
    benchmark.pedantic(engine_copy, setup=remove(ours), rounds=ROUNDS, iterations=1)
