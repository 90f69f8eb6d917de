"""The peers the engine's copy-on-write tracker is benchmarked against, the limit, and a memory
probe.

A single live snapshot over a write stream: a chunk is copied at its first write after the snapshot
if it was allocated then. With one snapshot the number of chunks copied is therefore the number of
distinct allocated chunks the stream touches — each peer computes exactly that, as fast as its
library allows. The *limit* (``engine.bitset_limit``) sets the same chunks' bits the plainest way
there is, in Rust on the engine's threads (a flat bitmap per thread, ORed at the end) and does
nothing else: what no tracker can beat, so ``vssim bench-report`` shows the engine against it too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vssim import engine


def chunk_ids(
    offsets: npt.NDArray[np.uint64], lengths: npt.NDArray[np.uint32], chunk: int
) -> npt.NDArray[np.int64]:
    """Every chunk each write touches, one entry per (write, chunk), vectorised."""
    first = (offsets // np.uint64(chunk)).astype(np.int64)
    last = ((offsets + lengths.astype(np.uint64) - np.uint64(1)) // np.uint64(chunk)).astype(
        np.int64
    )
    span = last - first + 1
    starts = np.repeat(first - np.cumsum(span) + span, span)
    return starts + np.arange(int(span.sum()), dtype=np.int64)


def numpy_copies(
    offsets: npt.NDArray[np.uint64],
    lengths: npt.NDArray[np.uint32],
    volume_size: int,
    allocated: int,
    chunk: int = engine.DEFAULT_CHUNK_SIZE,
) -> int:
    """numpy: a flat bool array over the volume's chunks, scattered into; the fastest numpy form
    (sorting with ``np.unique`` is several times slower)."""
    ids = chunk_ids(offsets, lengths, chunk)
    seen = np.zeros(-(-volume_size // chunk), dtype=np.bool_)
    seen[ids] = True
    return int(np.count_nonzero(seen[: -(-allocated // chunk)]))


def roaring_copies(
    offsets: npt.NDArray[np.uint64],
    lengths: npt.NDArray[np.uint32],
    volume_size: int,
    allocated: int,
    chunk: int = engine.DEFAULT_CHUNK_SIZE,
) -> int:
    """pyroaring: the chunk ids (vectorised with numpy) bulk-loaded into a roaring bitmap."""
    from pyroaring import BitMap64

    ids = chunk_ids(offsets, lengths, chunk).astype(np.uint64)
    bm = BitMap64(ids)
    return int(bm.range_cardinality(0, -(-allocated // chunk)))


def engine_copies(
    offsets: npt.NDArray[np.uint64],
    lengths: npt.NDArray[np.uint32],
    volume_size: int,
    allocated: int,
    chunk: int = engine.DEFAULT_CHUNK_SIZE,
) -> int:
    t = engine.CowTracker(volume_size, chunk_size=chunk)
    t.create_snapshot(allocated_bytes=allocated)
    return t.apply_writes(offsets, lengths).chunks_copied


def limit_copies(
    offsets: npt.NDArray[np.uint64],
    lengths: npt.NDArray[np.uint32],
    volume_size: int,
    allocated: int,
    chunk: int = engine.DEFAULT_CHUNK_SIZE,
) -> int:
    return engine.bitset_limit(offsets, lengths, chunk, volume_size, allocated)


IMPLEMENTATIONS = {
    "engine": engine_copies,
    "limit": limit_copies,
    "numpy": numpy_copies,
    "pyroaring": roaring_copies,
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Resets the kernel's peak-RSS mark to the current RSS and returns the current RSS (bytes)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM") * 1024


def measure_peak_rss_delta(
    impl: str, stream_file: Path, *args: int, module: str = "cow_peers"
) -> int:
    """Peak RSS growth (bytes) of one implementation (``module.IMPLEMENTATIONS[impl]``, called
    with the stream's offsets and lengths, then ``args``) over the stream, in a fresh process: the
    stream is loaded first, the kernel's peak mark is reset, and the peak after the run is compared
    with the RSS before it."""
    code = (
        "import importlib, json, sys, numpy as np\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import cow_peers as p\n"
        "m = importlib.import_module(sys.argv[4])\n"
        "d = np.load(sys.argv[2])\n"
        "o, l = d['offsets'], d['lengths']\n"
        "before = p.reset_peak_rss()\n"
        "n = m.IMPLEMENTATIONS[sys.argv[3]](o, l, *map(int, sys.argv[5:]))\n"
        "print(json.dumps({'delta': p.peak_rss_bytes() - before, 'answer': n}))\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(Path(__file__).parent),
            str(stream_file),
            impl,
            module,
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout)["delta"])
