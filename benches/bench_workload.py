"""Workload generation: the engine's per-VM generator (``engine.WorkloadGenerator``, the one
``ModelCluster`` runs) against the same workload written in numpy.

The workload: each VM issues ``iops`` operations a second (the whole part every second, one more
with the fractional part's probability) at stratified times within the second; an operation is a
read with probability ``read_fraction``; its size comes from the request-size mix below; a write
lands in the VM's hot spot (``hot_fraction`` of the disk, one place per VM) with probability
``hot_share``, else anywhere on the disk, 4 KiB aligned. Both produce every VM's writes (times,
offsets, lengths) and count the reads. The numpy peer draws from its own generator (PCG64), so
the streams differ and their statistics must not: before timing, each must give exactly ``iops``
operations a second, the expected share of writes, the size mix's mean and the hot share (within
5 σ). Full size (``make bench``): 10 million writes, as one VM at 10,000 IOPS and as 1,000 VMs at
10 IOPS; small (``make test``): 200,000 writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from vssim import engine
from vssim.units import GiB

SIZES = [4096, 8192, 16384, 32768, 65536, 262_144, 1_048_576]
WEIGHTS = [0.40, 0.20, 0.10, 0.10, 0.15, 0.04, 0.01]
READ_FRACTION = 0.3
HOT_FRACTION = 0.1
HOT_SHARE = 0.9
DISK = 127 * GiB
ALIGN = 4096


@dataclass(frozen=True)
class Case:
    vms: int
    iops: int
    seconds: int

    @property
    def operations(self) -> int:
        return self.vms * self.iops * self.seconds


@dataclass(frozen=True)
class Writes:
    """Every VM's writes, one array per VM (engine) or concatenated with the VM index (numpy)."""

    times: list[npt.NDArray[np.float64]]
    offsets: list[npt.NDArray[np.uint64]]
    lengths: list[npt.NDArray[np.uint32]]
    reads: int
    read_bytes: int

    def vm_index(self) -> npt.NDArray[np.int64]:
        return np.repeat(np.arange(len(self.offsets)), [len(o) for o in self.offsets])


def engine_generate(case: Case) -> Writes:
    times, offsets, lengths = [], [], []
    reads = read_bytes = 0
    spec = engine.WorkloadSpec(
        iops=case.iops,
        read_fraction=READ_FRACTION,
        sizes=SIZES,
        weights=WEIGHTS,
        locality="hotspot",
        hot_fraction=HOT_FRACTION,
        hot_share=HOT_SHARE,
    )
    for vm in range(case.vms):
        gen = engine.WorkloadGenerator(DISK, spec, seed=vm + 1)
        t, o, n, r, rb = gen.generate(0.0, float(case.seconds))
        times.append(t)
        offsets.append(o)
        lengths.append(n)
        reads += r
        read_bytes += rb
    return Writes(times, offsets, lengths, reads, read_bytes)


def numpy_generate(case: Case, seed: int = 1) -> Writes:
    """The same workload, vectorised over every VM and second at once."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(SIZES, dtype=np.int64)
    cumulative = np.cumsum(WEIGHTS) / np.sum(WEIGHTS)
    whole = math.floor(case.iops)
    per_second = whole + (rng.random(case.vms * case.seconds) < case.iops - whole)
    ops = int(per_second.sum())
    second_of = np.repeat(np.arange(case.vms * case.seconds), per_second)
    first = np.cumsum(per_second) - per_second
    index = np.arange(ops) - np.repeat(first, per_second)
    times = (second_of % case.seconds) + (index + rng.random(ops)) / np.repeat(
        per_second, per_second
    )
    is_read = rng.random(ops) < READ_FRACTION
    size = sizes[np.minimum(np.searchsorted(cumulative, rng.random(ops), side="right"), 6)]
    reads = int(is_read.sum())
    read_bytes = int(size[is_read].sum())
    write = ~is_read
    vm = second_of[write] // case.seconds
    times, size = times[write], size[write]
    slots = (DISK - size) // ALIGN + 1
    hot = np.clip((slots * HOT_FRACTION).astype(np.int64), 1, slots)
    widest = (DISK - sizes.max()) // ALIGN + 1
    hot_widest = max(1, int(widest * HOT_FRACTION))
    hot_base = rng.integers(0, widest - hot_widest + 1, size=case.vms)
    base = np.minimum(hot_base[vm], slots - hot)
    u = rng.random(len(vm))
    in_hot = rng.random(len(vm)) < HOT_SHARE
    slot = np.where(in_hot, base + (u * hot).astype(np.int64), (u * slots).astype(np.int64))
    offsets = (slot * ALIGN).astype(np.uint64)
    cuts = np.cumsum(np.bincount(vm, minlength=case.vms))[:-1]
    return Writes(
        np.split(times, cuts),
        np.split(offsets, cuts),
        np.split(size.astype(np.uint32), cuts),
        reads,
        read_bytes,
    )


IMPLEMENTATIONS = {"engine": engine_generate, "numpy": numpy_generate}


def hot_share(w: Writes) -> float:
    """Share of each VM's writes in its densest window of the hot spot's length."""
    vm = w.vm_index()
    offsets = np.concatenate(w.offsets).astype(np.int64)
    keys = np.sort(vm * (2 * DISK) + offsets)
    inside = np.searchsorted(keys, keys + int(DISK * HOT_FRACTION)) - np.arange(len(keys))
    starts = np.searchsorted(keys, np.arange(len(w.offsets)) * (2 * DISK))
    return float(np.maximum.reduceat(inside, starts).sum() / len(keys))


def statistics(w: Writes, case: Case) -> dict[str, Any]:
    """What the stream must show, checked against the workload's parameters."""
    times = np.concatenate(w.times)
    lengths = np.concatenate(w.lengths).astype(np.float64)
    offsets = np.concatenate(w.offsets)
    writes = len(lengths)
    assert writes + w.reads == case.operations, "exactly iops operations a second"
    expected = case.operations * (1 - READ_FRACTION)
    sigma = math.sqrt(case.operations * READ_FRACTION * (1 - READ_FRACTION))
    assert abs(writes - expected) < 5 * sigma, (writes, expected)
    p = np.asarray(WEIGHTS) / np.sum(WEIGHTS)
    mean = float(np.dot(p, SIZES))
    sd = math.sqrt(float(np.dot(p, np.square(SIZES))) - mean**2)
    assert abs(lengths.mean() - mean) < 5 * sd / math.sqrt(writes), (lengths.mean(), mean)
    assert abs(w.read_bytes / w.reads - mean) < 5 * sd / math.sqrt(w.reads)
    assert np.all(offsets % ALIGN == 0)
    assert np.all(offsets + lengths.astype(np.uint64) <= DISK)
    assert times.min() >= 0.0
    assert times.max() < case.seconds
    assert all(np.all(np.diff(t) >= 0) for t in w.times), "time order within each VM"
    share = hot_share(w)
    # Hot writes plus the uniform ones that fall in the hot spot; the densest window of a
    # VM's few thousand writes may sit a little above it.
    assert HOT_SHARE + (1 - HOT_SHARE) * HOT_FRACTION - 0.01 < share < 0.93, share
    return {"writes": writes, "reads": w.reads, "mean_write_bytes": lengths.mean(), "hot": share}


CASES = {"1x10000iops": (1, 10_000), "1000x10iops": (1000, 10)}


@pytest.fixture(scope="module", params=list(CASES))
def workload_case(request: pytest.FixtureRequest, full_scale: bool) -> Case:
    vms, iops = CASES[request.param]
    writes = 10_000_000 if full_scale else 200_000
    return Case(vms, iops, max(1, round(writes / (vms * iops * (1 - READ_FRACTION)))))


@pytest.mark.benchmark(group="engine-workload")
@pytest.mark.parametrize("impl", ["engine", "numpy"])
def test_workload_generation(benchmark: Any, impl: str, workload_case: Case) -> None:
    fn = IMPLEMENTATIONS[impl]
    # The answer first: the stream has the workload's rate, mix, sizes and locality.
    stats = statistics(fn(workload_case), workload_case)
    benchmark.extra_info.update(
        vms=workload_case.vms,
        iops=workload_case.iops,
        seconds=workload_case.seconds,
        writes=stats["writes"],
        reads=stats["reads"],
        mean_write_bytes=round(stats["mean_write_bytes"], 1),
        hot_share=round(stats["hot"], 4),
    )
    benchmark.pedantic(fn, args=(workload_case,), rounds=3, warmup_rounds=1)
