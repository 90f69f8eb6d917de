"""Changed-block tracking through the Python face."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vssim
from bounded import in_four_threads, python, random_batches
from vssim import engine

B = 64 * 1024


def test_extents_and_bytes() -> None:
    t = engine.ChangeTracker("disk-1", 10 * B + 100)
    assert t.block_size == B
    t.mark(np.array([0, B + 5, 3 * B, 10 * B], np.uint64), np.array([1, 10, 1, 50], np.uint32))
    offs, lens = t.changed_extents()
    assert offs.dtype == np.uint64
    assert lens.dtype == np.uint64
    assert list(zip(offs.tolist(), lens.tolist(), strict=True)) == [
        (0, 2 * B),
        (3 * B, B),
        (10 * B, 100),
    ]
    assert t.changed_bytes == 3 * B + 100
    assert t.changed_blocks == 4
    t.reset()
    assert t.changed_bytes == 0


def test_save_load_and_refusals(tmp_path: Path) -> None:
    p = tmp_path / "vm.cbt"
    t = engine.ChangeTracker("{4e1a}", 1 << 40)
    t.mark([0, 1 << 39], [1, 1 << 20])
    t.save(p)
    u = engine.ChangeTracker.load(p, disk_id="{4e1a}")
    assert u.changed_bytes == t.changed_bytes
    with pytest.raises(vssim.TrackerFileError, match="belongs to disk"):
        engine.ChangeTracker.load(p, disk_id="{other}")
    data = bytearray(p.read_bytes())
    data[60] ^= 0x40
    p.write_bytes(bytes(data))
    with pytest.raises(vssim.TrackerFileError, match="checksum mismatch"):
        engine.ChangeTracker.load(p)
    p.write_bytes(b"not a tracker")
    with pytest.raises(vssim.TrackerFileError, match="magic"):
        engine.ChangeTracker.load(p)
    with pytest.raises(FileNotFoundError):
        engine.ChangeTracker.load(tmp_path / "missing.cbt")


def test_truncated_file_refused(tmp_path: Path) -> None:
    p = tmp_path / "vm.cbt"
    t = engine.ChangeTracker("d", 1 << 30)
    t.mark([0], [1])
    t.save(p)
    data = p.read_bytes()
    for cut in (8, 30, len(data) // 2, len(data) - 1):
        p.write_bytes(data[:cut])
        with pytest.raises(vssim.TrackerFileError):
            engine.ChangeTracker.load(p)


def test_bad_arguments() -> None:
    with pytest.raises(vssim.InvalidArgumentError, match="block_size"):
        engine.ChangeTracker("d", 1 << 20, block_size=3000)
    t = engine.ChangeTracker("d", 1 << 20)
    with pytest.raises(vssim.InvalidArgumentError, match="entry 0 is -5"):
        t.mark([-5], [1])
    with pytest.raises(vssim.InvalidArgumentError, match="past the end"):
        t.mark([1 << 20], [1])
    assert t.changed_blocks == 0


@settings(max_examples=100, deadline=None)
@given(
    block_shift=st.integers(9, 18),
    writes=st.lists(st.tuples(st.integers(0, 1_000_000), st.integers(0, 300_000)), max_size=50),
)
def test_matches_reference(block_shift: int, writes: list[tuple[int, int]]) -> None:
    size = 1_300_000
    block = 1 << block_shift
    t = engine.ChangeTracker("d", size, block)
    ref: set[int] = set()
    for off, length in writes:
        t.mark([off], [length])
        if length:
            ref.update(range(off // block, (off + length - 1) // block + 1))
    assert t.changed_blocks == len(ref)
    expect = sum(min(size, (b + 1) * block) - b * block for b in ref)
    assert t.changed_bytes == expect
    offs, lens = t.changed_extents()
    covered = {
        b
        for o, n in zip(offs.tolist(), lens.tolist(), strict=True)
        for b in range(o // block, -(-(o + n) // block))
    }
    assert covered == ref
    # Runs are merged: no two touch.
    ends = (offs + lens)[:-1]
    assert np.all(ends < offs[1:])


def test_save_to_a_directory_is_refused_with_the_reason(tmp_path: Path) -> None:
    # Issue 15: ``save(".")`` said "Device or resource busy (os error 16)".
    t = engine.ChangeTracker("vm-disk-1", 1 << 30)
    t.mark([0], [1])
    for target in (Path("."), tmp_path):
        with pytest.raises(vssim.InvalidArgumentError, match="is a directory: expected the path"):
            t.save(target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(vssim.InvalidArgumentError, match="is empty"):
        t.save("")


#: In a child bounded by a timeout and an address-space limit (``bounded``): an allocation that
#: aborts, or one that takes the machine's memory, fails this test instead of the session.
PAST_THE_LIMIT = """
import json, resource
from vssim import engine, errors
out = {}
try:
    engine.ChangeTracker("d", 1 << 62)
    out["refused"] = None
except errors.InvalidArgumentError as e:
    out["refused"] = str(e)
# The largest disk accepted costs no more than a small directory until it is written.
t = engine.ChangeTracker("d", 1 << 56)
out["before"] = t.memory_bytes
t.mark([0, (1 << 56) - 1], [1, 1])
out["changed"] = t.changed_blocks
out["after"] = t.memory_bytes
out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
"""


def test_a_disk_past_what_can_be_tracked_is_refused_with_the_limit() -> None:
    # Issue 15: ``ChangeTracker("d", 1 << 62)`` aborted the process on allocation.
    r = python(PAST_THE_LIMIT)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["refused"] is not None
    assert out["refused"].startswith("invalid argument `disk_size`: 4611686018427387904 bytes")
    assert "at most 1099511627776 blocks" in out["refused"]
    assert out["changed"] == 2
    assert out["before"] < 1 << 20
    assert out["after"] < 1 << 20
    assert out["rss"] < 512 << 20


def test_four_threads_on_one_tracker() -> None:
    # Issue 15: a second thread got ``RuntimeError: Already borrowed`` while the first had released
    # the GIL inside ``mark``. Calls now take turns; the result is the sequential one.
    size = 1 << 40
    batches = random_batches(5, size)
    shared = engine.ChangeTracker("d", size)

    def mark(o: np.ndarray, n: np.ndarray) -> None:
        shared.mark(o, n)
        assert shared.changed_blocks > 0

    in_four_threads(mark, batches)
    alone = engine.ChangeTracker("d", size)
    for o, n in batches:
        alone.mark(o, n)
    assert shared.changed_blocks == alone.changed_blocks
    assert [a.tolist() for a in shared.changed_extents()] == [
        a.tolist() for a in alone.changed_extents()
    ]
