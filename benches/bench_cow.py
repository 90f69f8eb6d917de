"""Copy-on-write tracking: the engine against pyroaring and numpy on the same write stream, and
against the limit (the same bits set into flat bitmaps, nothing else: ``cow_peers``).

Full size (``make bench``): 10 million writes of 4–64 KiB, 90 % of them into a hot tenth of a
2 TiB volume, one live snapshot. Small size (``make test``): 200,000 writes on 64 GiB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cow_peers import IMPLEMENTATIONS, measure_peak_rss_delta
from numpy_workload import WriteStream, hot_spot_writes
from vssim.units import GiB, TiB


@pytest.fixture(scope="module")
def cow_case(full_scale: bool) -> tuple[WriteStream, int]:
    n, size = (10_000_000, 2 * TiB) if full_scale else (200_000, 64 * GiB)
    return hot_spot_writes(n, size, seed=42), size


@pytest.fixture(scope="module")
def expected_copies(cow_case: tuple[WriteStream, int]) -> int:
    stream, size = cow_case
    return IMPLEMENTATIONS["numpy"](stream.offsets, stream.lengths, size, size)


@pytest.mark.benchmark(group="engine-cow")
@pytest.mark.parametrize("impl", ["engine", "limit", "numpy", "pyroaring"])
def test_cow_first_touch(
    benchmark: Any,
    impl: str,
    cow_case: tuple[WriteStream, int],
    expected_copies: int,
    tmp_path_factory: pytest.TempPathFactory,
    full_scale: bool,
) -> None:
    stream, size = cow_case
    fn = IMPLEMENTATIONS[impl]
    # The answer first: every implementation agrees on the chunks copied.
    assert fn(stream.offsets, stream.lengths, size, size) == expected_copies
    assert expected_copies > len(stream) // 4
    benchmark.extra_info.update(
        writes=len(stream),
        volume_bytes=size,
        chunks_copied=expected_copies,
        diff_area_bytes=expected_copies * 16384,
    )
    if full_scale:
        path: Path = tmp_path_factory.mktemp("cow") / "stream.npz"
        if not path.exists():
            np.savez(path, offsets=stream.offsets, lengths=stream.lengths)
        benchmark.extra_info["peak_rss_delta_bytes"] = measure_peak_rss_delta(
            impl, path, size, size
        )
    benchmark.pedantic(
        fn, args=(stream.offsets, stream.lengths, size, size), rounds=5, warmup_rounds=1
    )
