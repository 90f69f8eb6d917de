"""Behaviour of the copy-on-write tracker through the Python face, against a plain reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vssim
from bounded import in_four_threads, python, random_batches
from vssim import engine

K = 16 * 1024


class ReferenceCow:
    """Plain Python volsnap model: each snapshot keeps the chunks it preserved; one copy serves
    every snapshot that needed the chunk; a copy is freed when no snapshot it serves is alive."""

    def __init__(self, size: int, limit: int | None = None) -> None:
        self.size = size
        self.limit = limit
        self.snaps: list[tuple[int, int, set[int]]] = []
        self.copies: list[tuple[int, set[int]]] = []
        self.next = 1
        self.total = 0
        self.peak = 0

    def snapshot(self, alloc: int) -> int:
        sid = self.next
        self.next += 1
        self.snaps.append((sid, -(-alloc // K), set()))
        return sid

    def delete(self, sid: int) -> None:
        self.snaps = [s for s in self.snaps if s[0] != sid]
        for _, serves in self.copies:
            serves.discard(sid)
        self.copies = [c for c in self.copies if c[1]]

    def _needs(self, c: int) -> set[int]:
        return {sid for sid, alloc, pres in self.snaps if c not in pres and c < alloc}

    def write(self, off: int, length: int) -> tuple[int, list[int]]:
        if length == 0:
            return 0, []
        chunks = range(off // K, (off + length - 1) // K + 1)
        deleted: list[int] = []
        if self.limit is not None:
            while True:
                need = sum(1 for c in chunks if self._needs(c))
                if need == 0 or (len(self.copies) + need) * K <= self.limit or not self.snaps:
                    break
                deleted.append(self.snaps[0][0])
                self.delete(self.snaps[0][0])
        copied = 0
        for c in chunks:
            serves = self._needs(c)
            for _, _, pres in self.snaps:
                pres.add(c)
            if serves:
                self.copies.append((c, serves))
                copied += 1
        self.total += copied
        self.peak = max(self.peak, len(self.copies))
        return copied, deleted


def test_copy_once_and_stats() -> None:
    t = engine.CowTracker(1 << 30)
    sid = t.create_snapshot()
    r = t.apply_writes(
        np.array([0, 100, K], dtype=np.uint64), np.array([4096, 10, 4096], np.uint32)
    )
    assert (r.chunks_copied, r.bytes_copied) == (2, 2 * K)
    assert t.diff_area_bytes == 2 * K
    (info,) = t.snapshots()
    assert (info.id, info.diff_area_chunks, info.chunks_copied) == (sid, 2, 2)
    again = t.apply_writes([0, K], [1, 1], per_write=True)
    assert again.chunks_copied == 0
    assert again.per_write is not None
    assert again.per_write.tolist() == [0, 0]
    assert t.delete_snapshot(sid) == 2 * K
    assert t.diff_area_bytes == 0
    assert t.peak_diff_area_bytes == 2 * K


def test_per_write_counts() -> None:
    t = engine.CowTracker(1 << 20)
    t.create_snapshot(allocated_bytes=4 * K)
    r = t.apply_writes([0, 0, 3 * K, 5 * K], [2 * K, 1, 2 * K, 1], per_write=True)
    assert r.per_write is not None
    assert r.per_write.dtype == np.uint32
    assert r.per_write.tolist() == [2, 0, 1, 0]


def test_diff_area_overflow_deletes_oldest_and_reports() -> None:
    t = engine.CowTracker(1 << 20, diff_area_limit=2 * K)
    a = t.create_snapshot()
    t.apply_writes([0, K], [1, 1])
    b = t.create_snapshot()
    r = t.apply_writes([2 * K], [1])
    assert r.deleted_snapshots == [a]
    assert not t.is_live(a)
    assert t.is_live(b)


@pytest.mark.parametrize(
    ("offsets", "lengths", "needle"),
    [
        ([-1], [1], "entry 0 is -1"),
        ([0, 1 << 20], [1, 1], "entry 1"),
        ([2**64 - 1], [2], "ends past the end"),
        ([0, 1], [1], "same length"),
        ([0.5], [1], "expected integers"),
        ([0], [2**33], "expected at most"),
        ([[0]], [[1]], "1-D"),
    ],
)
def test_bad_batches_raise_and_change_nothing(
    offsets: object, lengths: object, needle: str
) -> None:
    t = engine.CowTracker(1 << 20)
    t.create_snapshot()
    with pytest.raises(vssim.InvalidArgumentError, match=needle):
        t.apply_writes(offsets, lengths)
    assert t.total_chunks_copied == 0
    assert t.apply_writes([0], [1]).chunks_copied == 1


def test_bad_construction() -> None:
    with pytest.raises(vssim.InvalidArgumentError, match="chunk_size"):
        engine.CowTracker(1 << 20, chunk_size=12288)
    with pytest.raises(ValueError, match="power of two"):
        engine.CowTracker(1 << 20, chunk_size=2048)
    # Issue 15: a negative size names its argument (it was a bare OverflowError).
    with pytest.raises(vssim.InvalidArgumentError, match="`volume_size`: -1"):
        engine.CowTracker(-1)
    t = engine.CowTracker(1 << 20)
    with pytest.raises(vssim.InvalidArgumentError, match="larger than the volume"):
        t.create_snapshot(allocated_bytes=2 << 20)
    with pytest.raises(vssim.InvalidArgumentError, match="not a live snapshot"):
        t.delete_snapshot(7)


def test_snapshot_limit_is_512() -> None:
    t = engine.CowTracker(1 << 20)
    for _ in range(engine.MAX_SNAPSHOTS):
        t.create_snapshot()
    with pytest.raises(vssim.EngineStateError, match="MAXIMUM_NUMBER_OF_SNAPSHOTS"):
        t.create_snapshot()


def test_huge_volume_costs_little() -> None:
    t = engine.CowTracker(64 << 40)
    t.create_snapshot()
    assert t.memory_bytes < 2 << 20
    offs = np.arange(0, 64 << 40, (64 << 40) // 1000 // K * K, dtype=np.uint64)[:1000]
    t.apply_writes(offs, np.full(1000, 64 * 1024, np.uint32))
    assert t.total_chunks_copied == 4000
    assert t.memory_bytes < 8 << 20


ops = st.lists(
    st.one_of(
        st.tuples(st.just("w"), st.integers(0, 40 * K - 1), st.integers(0, 3 * K)),
        st.tuples(st.just("s"), st.integers(0, 40 * K), st.just(0)),
        st.tuples(st.just("d"), st.integers(0, 10), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, limit=st.one_of(st.none(), st.integers(0, 12).map(lambda n: n * K)))
def test_matches_reference_model(ops: list[tuple[str, int, int]], limit: int | None) -> None:
    size = 40 * K
    t = engine.CowTracker(size, diff_area_limit=limit)
    ref = ReferenceCow(size, limit)
    for kind, a, b in ops:
        if kind == "w":
            length = min(b, size - a)
            got = t.apply_writes([a], [length])
            want, deleted = ref.write(a, length)
            assert got.chunks_copied == want
            assert got.deleted_snapshots == deleted
        elif kind == "s":
            assert t.create_snapshot(a) == ref.snapshot(a)
        elif ref.snaps:
            sid = ref.snaps[a % len(ref.snaps)][0]
            t.delete_snapshot(sid)
            ref.delete(sid)
        assert t.diff_area_bytes == len(ref.copies) * K
        assert t.total_chunks_copied == ref.total
        assert t.peak_diff_area_bytes == ref.peak * K
        assert [s.id for s in t.snapshots()] == [s[0] for s in ref.snaps]


def test_gil_is_released_during_a_batch() -> None:
    """Two trackers fed from two threads finish; the batch call does not hold the GIL (a thread
    that only spins in Python makes progress while the engine works)."""
    import threading

    t = engine.CowTracker(1 << 40)
    t.create_snapshot()
    rng = np.random.default_rng(1)
    offs = (rng.integers(0, (1 << 40) // 4096 - 16, 3_000_000) * 4096).astype(np.uint64)
    lens = np.full(len(offs), 4096, np.uint32)
    ticks = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    th = threading.Thread(target=spin)
    th.start()
    before = ticks
    t.apply_writes(offs, lens)
    during = ticks - before
    done.set()
    th.join()
    assert during > 1000


#: In a child bounded by a timeout and an address-space limit (``bounded``): an allocation that
#: aborts, or one that takes the machine's memory, fails this test instead of the session.
PAST_THE_LIMIT = """
import json, resource
from vssim import engine, errors
out = {}
try:
    engine.CowTracker(1 << 58).create_snapshot()
    out["refused"] = None
except errors.InvalidArgumentError as e:
    out["refused"] = str(e)
# The largest volume accepted: its snapshot costs a small directory until it is written.
t = engine.CowTracker(1 << 54)
t.create_snapshot()
out["before"] = t.memory_bytes
out["copied"] = t.apply_writes([0, (1 << 54) - 1], [1, 1]).chunks_copied
out["after"] = t.memory_bytes
out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
"""


def test_a_volume_past_what_can_be_tracked_is_refused_with_the_limit() -> None:
    # Issue 15: ``CowTracker(1 << 58).create_snapshot()`` aborted the process on allocation.
    r = python(PAST_THE_LIMIT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["refused"] is not None
    assert out["refused"].startswith("invalid argument `volume_size`: 288230376151711744 bytes")
    assert "at most 1099511627776 chunks" in out["refused"]
    assert out["copied"] == 2
    assert out["before"] < 1 << 20
    assert out["after"] < 1 << 20
    assert out["rss"] < 512 << 20


def test_four_threads_on_one_tracker() -> None:
    # Issue 15: a second thread got ``RuntimeError: Already borrowed`` while the first had released
    # the GIL inside ``apply_writes``. Calls now take turns; the result is the sequential one.
    size = 1 << 40
    batches = random_batches(9, size)
    shared = engine.CowTracker(size)
    shared.create_snapshot()
    copied: list[int] = []

    def apply(o: np.ndarray, n: np.ndarray) -> None:
        copied.append(shared.apply_writes(o, n).chunks_copied)
        assert shared.diff_area_bytes > 0

    in_four_threads(apply, batches)
    alone = engine.CowTracker(size)
    alone.create_snapshot()
    want = sum(alone.apply_writes(o, n).chunks_copied for o, n in batches)
    assert sum(copied) == want == shared.total_chunks_copied
    assert shared.diff_area_bytes == alone.diff_area_bytes
