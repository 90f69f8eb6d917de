"""What copy-on-write costs a writer on a real volume, and what reading a snapshot view costs a
backup: write throughput with no snapshot, with a live snapshot (first-touch writes, which copy
every chunk, and rewrites of chunks already copied), and view reads against live reads.

Sized small under ``--benchmark-disable`` (``make test``), full in ``make bench``. Each test
asserts its answer first; the ratios go to ``extra_info`` (targets: rewrites within 10 % of no
snapshot, first-touch no worse than 2.5x slower, view reads at least 0.8x live reads).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from vssim import engine

K = 16 * 1024
WRITE = 64 * 1024
READ = 1 << 20


def file_size(benchmark: BenchmarkFixture) -> int:
    return (4 << 20) if benchmark.disabled else (256 << 20)


class Setup:
    def __init__(self, tmp: Path, size: int, reserve: int = 0, checksum: bool = True) -> None:
        self.root = tmp / "csv"
        self.root.mkdir(parents=True)
        self.vol = engine.Volume(
            self.root, tmp / "diff", diff_area_reserve_bytes=reserve, checksum_copies=checksum
        )
        self.size = size
        self.file = self.vol.open("vm/Virtual Hard Disks/disk.vhdx", create=True)
        self.offsets = np.arange(0, size, WRITE, dtype=np.uint64)
        self.lengths = np.full(len(self.offsets), WRITE, dtype=np.uint32)
        self.to_disk = False
        self.write_all(seed=1)

    def write_all(self, seed: int) -> None:
        assert self.file.write_pattern(self.offsets, self.lengths, seed) == self.size
        if self.to_disk:
            self.file.flush()
            self.vol.flush()

    def fresh_snapshot(self) -> int:
        for sid in self.vol.live_snapshots():
            self.vol.delete_snapshot(sid)
        return self.vol.create_snapshot()


@pytest.fixture
def setup(tmp_path: Path, benchmark: BenchmarkFixture) -> Iterator[Setup]:
    s = Setup(tmp_path, file_size(benchmark))
    yield s
    s.vol.close()


@pytest.fixture(params=["fresh", "allocated", "to-disk"])
def diff_area(
    request: pytest.FixtureRequest, tmp_path: Path, benchmark: BenchmarkFixture
) -> Iterator[Setup]:
    """A diff area that grows from nothing at every snapshot (reserve 0), or one that stays
    allocated between snapshots (reserve = the disk size), as volsnap's does; "to-disk" is the
    allocated one with the time to get the bytes onto the disk counted (both sides fsync)."""
    size = file_size(benchmark)
    s = Setup(tmp_path, size, reserve=0 if request.param == "fresh" else size)
    s.to_disk = request.param == "to-disk"
    yield s
    s.vol.close()


Step = tuple[Callable[[], object], Callable[[], object]]


def paired(base: Step, target: Step, n: int = 7) -> tuple[float, float]:
    """Best times of a baseline and a target, run alternately (`(setup, timed)` each), so a
    machine shared with other work slows both alike."""
    best = [float("inf"), float("inf")]
    for _ in range(n):
        for k, (before, fn) in enumerate((base, target)):
            before()
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best[0], best[1]


def record(benchmark: BenchmarkFixture, size: int, base: float, target: float, key: str) -> None:
    benchmark.extra_info["bytes"] = size
    benchmark.extra_info["MiB_per_s"] = round(size / target / 2**20, 1)
    benchmark.extra_info["baseline_MiB_per_s"] = round(size / base / 2**20, 1)
    benchmark.extra_info[key] = round(target / base, 3)


def nothing() -> None:
    pass


@pytest.mark.benchmark(group="volume-write")
def test_write_without_snapshot(benchmark: BenchmarkFixture, setup: Setup) -> None:
    copied = setup.vol.total_chunks_copied
    setup.write_all(seed=2)
    assert setup.vol.total_chunks_copied == copied
    benchmark.pedantic(setup.write_all, args=(3,), rounds=5, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["bytes"] = setup.size
        benchmark.extra_info["MiB_per_s"] = round(setup.size / benchmark.stats.stats.min / 2**20, 1)


@pytest.mark.benchmark(group="volume-write")
def test_write_first_touch(benchmark: BenchmarkFixture, diff_area: Setup) -> None:
    setup = diff_area
    chunks = setup.size // K
    setup.fresh_snapshot()
    before = setup.vol.total_chunks_copied
    setup.write_all(seed=2)
    assert setup.vol.total_chunks_copied - before == chunks
    assert setup.vol.diff_area_bytes == setup.size

    def one() -> None:
        setup.write_all(seed=4)

    def snap() -> None:
        setup.fresh_snapshot()

    benchmark.pedantic(one, setup=snap, rounds=5, iterations=1)
    if benchmark.stats:
        base, target = paired((no_snapshot(setup), one), (snap, one))
        record(benchmark, setup.size, base, target, "slowdown_vs_no_snapshot")


def no_snapshot(setup: Setup) -> Callable[[], None]:
    def go() -> None:
        for sid in setup.vol.live_snapshots():
            setup.vol.delete_snapshot(sid)

    return go


@pytest.mark.benchmark(group="volume-write")
def test_write_rewrite_after_copy(benchmark: BenchmarkFixture, setup: Setup) -> None:
    setup.fresh_snapshot()
    setup.write_all(seed=2)  # every chunk copied once
    copied = setup.vol.total_chunks_copied
    setup.write_all(seed=3)
    assert setup.vol.total_chunks_copied == copied  # the copy-once rule
    benchmark.pedantic(setup.write_all, args=(4,), rounds=5, iterations=1)
    assert setup.vol.total_chunks_copied == copied
    if benchmark.stats:
        # The same file, once with no snapshot, once with one whose chunks are all copied.
        other = Setup(setup.root.parent / "other", setup.size)
        try:
            base, target = paired(
                (nothing, lambda: other.write_all(5)), (nothing, lambda: setup.write_all(5))
            )
        finally:
            other.vol.close()
        assert setup.vol.total_chunks_copied == copied
        record(benchmark, setup.size, base, target, "slowdown_vs_no_snapshot")


def digest(reader: engine.SnapshotView | engine.VolumeFile, size: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    for off in range(0, size, READ):
        h.update(reader.read(off, min(READ, size - off)))
    return h.hexdigest()


def read_all(reader: engine.SnapshotView | engine.VolumeFile, size: int) -> int:
    n = 0
    for off in range(0, size, READ):
        n += len(reader.read(off, min(READ, size - off)))
    return n


@pytest.mark.benchmark(group="volume-read")
def test_view_read_vs_live_read(benchmark: BenchmarkFixture, setup: Setup) -> None:
    want = digest(setup.file, setup.size)
    sid = setup.fresh_snapshot()
    # Half the disk rewritten after the snapshot (random 64 KiB writes): the view reads half its
    # chunks from the diff area, half from the live file.
    rng = np.random.default_rng(9)
    picks = rng.choice(len(setup.offsets), size=len(setup.offsets) // 2, replace=False)
    setup.file.write_pattern(setup.offsets[picks], setup.lengths[picks], 6)
    view = setup.vol.snapshot(sid).open("vm/Virtual Hard Disks/disk.vhdx")
    assert digest(view, setup.size) == want
    assert digest(setup.file, setup.size) != want
    result = benchmark.pedantic(read_all, args=(view, setup.size), rounds=5, iterations=1)
    assert result == setup.size
    if benchmark.stats:
        live, view_s = paired(
            (nothing, lambda: read_all(setup.file, setup.size)),
            (nothing, lambda: read_all(view, setup.size)),
        )
        benchmark.extra_info["bytes"] = setup.size
        benchmark.extra_info["view_MiB_per_s"] = round(setup.size / view_s / 2**20, 1)
        benchmark.extra_info["live_MiB_per_s"] = round(setup.size / live / 2**20, 1)
        benchmark.extra_info["view_vs_live_throughput"] = round(live / view_s, 3)


def half_rewritten(setup: Setup) -> engine.SnapshotView:
    """A snapshot view of which half the chunks were copied (random 64 KiB writes after it)."""
    sid = setup.fresh_snapshot()
    rng = np.random.default_rng(9)
    picks = rng.choice(len(setup.offsets), size=len(setup.offsets) // 2, replace=False)
    setup.file.write_pattern(setup.offsets[picks], setup.lengths[picks], 6)
    return setup.vol.snapshot(sid).open("vm/Virtual Hard Disks/disk.vhdx")


@pytest.mark.benchmark(group="volume-checksum")
def test_checksummed_copies_vs_in_kernel_copies(
    benchmark: BenchmarkFixture, tmp_path: Path
) -> None:
    """What the default's CRC-32C per copied chunk costs (copies through user space, every view
    read checked) against copies made inside the kernel and never checked
    (``checksum_copies=False``): first-touch writes, and view reads of a half-copied disk."""
    size = file_size(benchmark)
    checked, unchecked = Setup(tmp_path / "c", size), Setup(tmp_path / "u", size, checksum=False)
    try:
        views = [half_rewritten(s) for s in (checked, unchecked)]
        assert digest(views[0], size) == digest(views[1], size)
        assert checked.vol.total_chunks_copied == unchecked.vol.total_chunks_copied
        benchmark.pedantic(read_all, args=(views[0], size), rounds=3, iterations=1)
        if benchmark.stats:
            writes = [(s.fresh_snapshot, lambda s=s: s.write_all(7)) for s in (unchecked, checked)]
            base, target = paired(writes[0], writes[1])
            benchmark.extra_info["first_touch_checked_vs_in_kernel_time"] = round(target / base, 3)
            views = [half_rewritten(s) for s in (checked, unchecked)]
            base, target = paired(
                (nothing, lambda: read_all(views[1], size)),
                (nothing, lambda: read_all(views[0], size)),
            )
            benchmark.extra_info["view_read_checked_vs_unchecked_time"] = round(target / base, 3)
            benchmark.extra_info["bytes"] = size
    finally:
        checked.vol.close()
        unchecked.vol.close()
