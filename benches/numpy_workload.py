"""A seeded hot-spot write stream in numpy: the benchmarks' input for the trackers and their peers
(``bench_cow``, ``bench_cbt``, ``bench_scenario``). vssim itself generates guest writes with the
engine's generator only (``engine.WorkloadGenerator`` / ``ModelCluster``); this stream is a
benchmark peer's, not a model of the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vssim.units import KiB


@dataclass(frozen=True)
class WriteStream:
    """A batch of writes: byte offsets (uint64) and lengths (uint32), in issue order."""

    offsets: npt.NDArray[np.uint64]
    lengths: npt.NDArray[np.uint32]

    def __len__(self) -> int:
        return len(self.offsets)


def hot_spot_writes(
    n: int,
    size: int,
    *,
    seed: int,
    hot_fraction: float = 0.1,
    hot_share: float = 0.9,
    min_len: int = 4 * KiB,
    max_len: int = 64 * KiB,
    align: int = 4 * KiB,
) -> WriteStream:
    """``n`` writes over a device of ``size`` bytes: ``hot_share`` of them land in a hot region of
    ``hot_fraction`` of the device, the rest uniformly; lengths are multiples of ``align`` in
    ``[min_len, max_len]``; offsets aligned to ``align``."""
    if n < 0 or size < max_len or not 0 < hot_fraction <= 1 or not 0 <= hot_share <= 1:
        raise ValueError(
            f"bad stream parameters: n={n}, size={size}, hot_fraction={hot_fraction}, "
            f"hot_share={hot_share}"
        )
    rng = np.random.default_rng(seed)
    units = rng.integers(min_len // align, max_len // align + 1, size=n, dtype=np.uint64)
    lengths = (units * np.uint64(align)).astype(np.uint32)
    slots = (size - max_len) // align
    hot_slots = max(1, int(slots * hot_fraction))
    hot_base = int(rng.integers(0, slots - hot_slots + 1))
    is_hot = rng.random(n) < hot_share
    uniform = rng.integers(0, slots, size=n, dtype=np.uint64)
    hot = rng.integers(hot_base, hot_base + hot_slots, size=n, dtype=np.uint64)
    offsets = np.where(is_hot, hot, uniform).astype(np.uint64) * np.uint64(align)
    return WriteStream(offsets=offsets, lengths=lengths)
