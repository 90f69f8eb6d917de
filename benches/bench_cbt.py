"""Changed-block tracking: the engine against numpy and pyroaring marking the same write stream,
and against the limit (the same bits set into flat bitmaps, nothing else: ``cow_peers``).

Each implementation computes the changed bytes an incremental backup reads (the distinct 64 KiB
blocks the writes touch, the last one cut at the disk's end). Full size (``make bench``): 10 million
writes on a 2 TiB disk; small (``make test``): 200,000 writes on 64 GiB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cow_peers import chunk_ids, measure_peak_rss_delta
from numpy_workload import WriteStream, hot_spot_writes
from vssim import engine
from vssim.units import GiB, TiB

BLOCK = engine.DEFAULT_CBT_BLOCK_SIZE


def engine_changed(offs: npt.NDArray[np.uint64], lens: npt.NDArray[np.uint32], size: int) -> int:
    t = engine.ChangeTracker("bench", size)
    t.mark(offs, lens)
    return t.changed_bytes


def numpy_changed(offs: npt.NDArray[np.uint64], lens: npt.NDArray[np.uint32], size: int) -> int:
    seen = np.zeros(-(-size // BLOCK), dtype=np.bool_)
    seen[chunk_ids(offs, lens, BLOCK)] = True
    n = int(np.count_nonzero(seen))
    tail = (len(seen) * BLOCK - size) if seen[-1] else 0
    return n * BLOCK - tail


def roaring_changed(offs: npt.NDArray[np.uint64], lens: npt.NDArray[np.uint32], size: int) -> int:
    from pyroaring import BitMap64

    bm = BitMap64(chunk_ids(offs, lens, BLOCK).astype(np.uint64))
    last = -(-size // BLOCK) - 1
    tail = ((last + 1) * BLOCK - size) if last in bm else 0
    return len(bm) * BLOCK - tail


def limit_changed(offs: npt.NDArray[np.uint64], lens: npt.NDArray[np.uint32], size: int) -> int:
    """The limit (``cow_peers``): the same blocks' bits in flat bitmaps; the disk is a whole number
    of blocks, so no block is cut at its end."""
    assert size % BLOCK == 0
    return engine.bitset_limit(offs, lens, BLOCK, size) * BLOCK


IMPLEMENTATIONS = {
    "engine": engine_changed,
    "limit": limit_changed,
    "numpy": numpy_changed,
    "pyroaring": roaring_changed,
}


@pytest.fixture(scope="module")
def cbt_case(full_scale: bool) -> tuple[WriteStream, int]:
    n, size = (10_000_000, 2 * TiB) if full_scale else (200_000, 64 * GiB)
    return hot_spot_writes(n, size, seed=7), size


@pytest.mark.benchmark(group="engine-cbt")
@pytest.mark.parametrize("impl", ["engine", "limit", "numpy", "pyroaring"])
def test_cbt_mark(
    benchmark: Any,
    impl: str,
    cbt_case: tuple[WriteStream, int],
    full_scale: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    stream, size = cbt_case
    fn = IMPLEMENTATIONS[impl]
    expected = numpy_changed(stream.offsets, stream.lengths, size)
    # The answer first: every implementation agrees on what an incremental backup reads.
    assert fn(stream.offsets, stream.lengths, size) == expected
    assert expected > len(stream) * 4096 // 2
    benchmark.extra_info.update(writes=len(stream), disk_bytes=size, changed_bytes=expected)
    if full_scale:
        path: Path = tmp_path_factory.mktemp("cbt") / "stream.npz"
        if not path.exists():
            np.savez(path, offsets=stream.offsets, lengths=stream.lengths)
        benchmark.extra_info["peak_rss_delta_bytes"] = measure_peak_rss_delta(
            impl, path, size, module="bench_cbt"
        )
    benchmark.pedantic(fn, args=(stream.offsets, stream.lengths, size), rounds=5, warmup_rounds=1)
