"""Real copy-on-write snapshots of a folder through ``engine.Volume``: behaviour, bad input,
random interleavings against byte references, kill -9 of a writing process, a full diff-area
disk, the qemu-img proof on a VHDX, and the ``vssim volume`` command."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vssim import engine, errors
from vssim.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).parent))
import _volume_ops as vops

K = 16 * 1024


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "csv1"
    root.mkdir()
    return root, tmp_path / "diff"


def view_bytes(vol: engine.Volume, sid: int, path: str) -> bytes:
    view = vol.snapshot(sid).open(path)
    return view.read(0, view.len())


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"checksum_copies": True},
        {"durable": True, "diff_area_reserve_bytes": 1 << 20},
    ],
    ids=["default", "checksummed", "durable-reserved"],
)
def test_view_keeps_the_snapshot_instant_while_the_live_file_moves_on(
    dirs: tuple[Path, Path], options: dict[str, Any]
) -> None:
    root, diff = dirs
    with engine.Volume(root, diff, **options) as vol:
        f = vol.open("vm/Virtual Hard Disks/d.vhdx", create=True)
        old = random.Random(1).randbytes(5 * K + 123)
        f.write(0, old)
        sid = vol.create_snapshot()
        f.write(100, b"\xff" * 20_000)
        f.write(200, b"\xee" * 10)  # rewrite of copied chunks: no copy
        f.write(10 * K, b"growth")  # past the old end: never copied
        assert vol.total_chunks_copied == 2
        assert vol.diff_area_bytes == 2 * K
        assert view_bytes(vol, sid, "vm/Virtual Hard Disks/d.vhdx") == old
        assert f.read(100, 3) == b"\xff\xff\xff"
        [info] = vol.snapshots()
        assert (info.id, info.state, info.files, info.diff_area_chunks) == (sid, "live", 1, 2)
        vol.open("later.txt", create=True).write(0, b"x")
        with pytest.raises(errors.FileNotInSnapshotError, match="did not exist"):
            vol.snapshot(sid).open("later.txt")
    with engine.Volume(root, diff, **options) as vol:
        assert vol.recovery_notes == []
        assert view_bytes(vol, sid, "vm/Virtual Hard Disks/d.vhdx") == old


def test_copy_counts_equal_the_cow_tracker(dirs: tuple[Path, Path]) -> None:
    root, diff = dirs
    rng = random.Random(7)
    size = 64 * K
    tracker = engine.CowTracker(1 << 30)
    with engine.Volume(root, diff) as vol:
        f = vol.open("disk.vhdx", create=True)
        f.write(0, rng.randbytes(size))
        live_ids: list[int] = []
        for _ in range(300):
            r = rng.random()
            if r < 0.05:
                sid = vol.create_snapshot()
                assert tracker.create_snapshot(f.len()) == sid
                live_ids.append(sid)
            elif r < 0.08 and live_ids:
                sid = live_ids.pop(rng.randrange(len(live_ids)))
                vol.delete_snapshot(sid)
                tracker.delete_snapshot(sid)
            else:
                off, n = rng.randrange(size + 8 * K), rng.randrange(1, 3 * K)
                before = vol.total_chunks_copied
                f.write(off, rng.randbytes(n))
                got = vol.total_chunks_copied - before
                assert got == tracker.apply_writes([off], [n]).chunks_copied
            assert vol.diff_area_bytes == tracker.diff_area_bytes


def test_writable_view_never_touches_the_live_file(dirs: tuple[Path, Path]) -> None:
    root, diff = dirs
    live = random.Random(2).randbytes(3 * K)
    with engine.Volume(root, diff) as vol:
        vol.open("d.vhdx", create=True).write(0, live)
        snap = vol.snapshot(vol.create_snapshot())
        ro = snap.open("d.vhdx")
        assert ro.read_only
        with pytest.raises(errors.ReadOnlyViewError):
            ro.write(0, b"x")
        w = snap.open("d.vhdx", writable=True)
        w.write(10, b"rolled back")
        w.set_len(2 * K)
        assert w.read(10, 11) == b"rolled back"
        assert w.len() == 2 * K
        assert ro.read(10, 11) == b"rolled back"  # the snapshot itself changed
    assert (root / "d.vhdx").read_bytes() == live
    with pytest.raises(errors.EngineStateError, match="was closed"):
        w.read(0, 1)
    with engine.Volume(root, diff) as vol:  # and the change persists
        assert view_bytes(vol, snap.id, "d.vhdx") == live[:10] + b"rolled back" + live[21 : 2 * K]


def test_diff_area_limit_deletes_the_oldest_and_its_view_fails(dirs: tuple[Path, Path]) -> None:
    root, diff = dirs
    with engine.Volume(root, diff, diff_area_max_bytes=2 * K) as vol:
        f = vol.open("f", create=True)
        f.write(0, bytes(8 * K))
        a = vol.create_snapshot()
        view = vol.snapshot(a).open("f")
        f.write(0, b"1" * (2 * K))
        b = vol.create_snapshot()
        f.write(4 * K, b"2")
        assert vol.auto_deleted == [a]
        with pytest.raises(errors.SnapshotDeletedError, match="VolSnap event 24"):
            view.read(0, 1)
        states = {s.id: s.state for s in vol.snapshots()}
        assert states == {a: "deleted", b: "live"}
        with pytest.raises(errors.SnapshotDeletedError):
            vol.snapshot(a)


def test_deleting_frees_the_diff_area(dirs: tuple[Path, Path]) -> None:
    root, diff = dirs
    with engine.Volume(root, diff) as vol:
        f = vol.open("f", create=True)
        f.write(0, bytes(10 * K))
        sid = vol.create_snapshot()
        f.write(0, b"z" * (10 * K))
        assert (vol.diff_area_bytes, vol.diff_file_bytes) == (10 * K, 10 * K)
        assert vol.snapshot(sid).delete() == 10 * K
        assert (vol.diff_area_bytes, vol.diff_file_bytes) == (0, 0)
        assert (diff / "vssim-volume.diff").stat().st_size == 0
        with pytest.raises(errors.SnapshotNotFoundError):
            vol.snapshot(42)


def test_truncate_and_remove_keep_the_snapshot(dirs: tuple[Path, Path]) -> None:
    root, diff = dirs
    a, b = random.Random(3).randbytes(70_000), random.Random(4).randbytes(40_000)
    with engine.Volume(root, diff) as vol:
        vol.open("a", create=True).write(0, a)
        vol.open("b", create=True).write(0, b)
        sid = vol.create_snapshot()
        vol.open("a").set_len(1000)
        vol.remove("b")
        assert not (root / "b").exists()
        assert view_bytes(vol, sid, "a") == a
        assert view_bytes(vol, sid, "b") == b


def test_bad_paths_are_refused_and_change_nothing(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    root, diff = dirs
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (root / "link").symlink_to(outside)
    with engine.Volume(root, diff) as vol:
        for bad in ("../outside/secret", "link/secret", "link/new", str(outside / "secret"), "."):
            with pytest.raises(errors.PathOutsideVolumeError):
                vol.open(bad, create=True)
        with pytest.raises(ValueError, match=r"outside|not a file"):
            vol.open("a/../../x", create=True)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"s"


def test_busy_and_foreign_journal(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    root, diff = dirs
    vol = engine.Volume(root, diff)
    with pytest.raises(errors.VolumeBusyError):
        engine.Volume(root, diff)
    vol.close()
    engine.Volume(root, diff).close()
    other = tmp_path / "other"
    other.mkdir()
    (other / "vssim-volume.journal").write_bytes(b"garbage")
    with pytest.raises(errors.VolumeJournalError):
        engine.Volume(root, other)
    assert (other / "vssim-volume.journal").read_bytes() == b"garbage"
    assert not (other / "vssim-volume.lock").exists()


SECOND_OPENER = """
import sys
from vssim import engine, errors
root, diff = sys.argv[1:3]
try:
    vol = engine.Volume(root, diff)
except errors.VolumeBusyError as exc:
    print(exc)
    sys.exit(0)
vol.open("f").write(0, b"written behind the first volume's back")
sys.exit("the second volume was opened")
"""


def test_a_second_process_cannot_open_the_root_with_another_diff_area(tmp_path: Path) -> None:
    """Issue 15 item 5: the root is locked, not only the diff area; the refusal names the root
    and the process that holds it, and the first volume's snapshot stays the snapshot."""
    root = tmp_path / "root"
    root.mkdir()
    with engine.Volume(root, tmp_path / "diff-a") as vol:
        vol.open("f", create=True).write(0, b"at the snapshot")
        sid = vol.create_snapshot()
        child = subprocess.run(
            [sys.executable, "-c", SECOND_OPENER, str(root), str(tmp_path / "diff-b")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == 0, child.stderr
        assert f"root {root.resolve()} is in use by process {os.getpid()}" in child.stdout
        assert view_bytes(vol, sid, "f") == b"at the snapshot"
        # Two handles in one process conflict just the same.
        with pytest.raises(errors.VolumeBusyError, match="another volume of this process"):
            engine.Volume(root, tmp_path / "diff-c")
        assert [s.id for s in vol.snapshots()] == [sid]
    # Closed: the lock is gone with its file, and another diff area may take the root.
    assert sorted(p.name for p in root.iterdir()) == ["f"]
    engine.Volume(root, tmp_path / "diff-b").close()


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_journal_refuses_the_open_and_keeps_the_diff_file(
    dirs: tuple[Path, Path], how: str
) -> None:
    """Issue 15 item 7: deleting or emptying the journal started the volume afresh, silently,
    and truncated the diff file."""
    root, diff = dirs
    with engine.Volume(root, diff) as vol:
        vol.open("f", create=True).write(0, bytes(4 * K))
        vol.create_snapshot()
        vol.open("f").write(0, b"new")
    journal, diff_file = diff / "vssim-volume.journal", diff / "vssim-volume.diff"
    kept = diff_file.read_bytes()
    if how == "deleted":
        journal.unlink()
    else:
        journal.write_bytes(b"")
    with pytest.raises(errors.VolumeJournalError, match="discard_snapshots"):
        engine.Volume(root, diff)
    assert diff_file.read_bytes() == kept
    assert journal.exists() == (how == "emptied")
    with engine.Volume(root, diff, discard_snapshots=True) as vol:
        assert vol.snapshots() == []
        assert any("discarded" in n for n in vol.recovery_notes)


def test_a_zeroed_diff_file_never_shows_wrong_bytes(dirs: tuple[Path, Path]) -> None:
    """Issue 15 item 7: with default options a zeroed diff file gave wrong snapshot bytes with
    the snapshot still live. Now the view's read fails naming the file, offset and CRCs, and the
    snapshot is listed invalid."""
    root, diff = dirs
    with engine.Volume(root, diff) as vol:
        vol.open("f", create=True).write(0, b"\x07" * (4 * K))
        sid = vol.create_snapshot()
        vol.open("f").write(0, b"new")
    diff_file = diff / "vssim-volume.diff"
    diff_file.write_bytes(bytes(diff_file.stat().st_size))
    with engine.Volume(root, diff) as vol:
        with pytest.raises(errors.SnapshotInvalidError) as err:
            view_bytes(vol, sid, "f")
        msg = str(err.value)
        assert str(diff_file.resolve()) in msg
        assert "slot 0 at offset 0" in msg
        assert "fails its CRC-32C: expected 0x" in msg
        [info] = vol.snapshots()
        assert info.state == "invalid"
        assert "CRC-32C" in (info.reason or "")


def test_torn_journal_write_marks_the_snapshot_invalid(dirs: tuple[Path, Path]) -> None:
    root, diff = dirs
    with engine.Volume(root, diff) as vol:
        f = vol.open("f", create=True)
        f.write(0, bytes(4 * K))
        sid = vol.create_snapshot()
        f.write(0, b"new")
    journal = diff / "vssim-volume.journal"
    data = journal.read_bytes()
    journal.write_bytes(data[:-7])  # the Close record, torn
    with engine.Volume(root, diff) as vol:
        [info] = vol.snapshots()
        assert info.state == "invalid"
        assert "torn or corrupt" in (info.reason or "")
        assert vol.recovery_notes
        with pytest.raises(errors.SnapshotInvalidError):
            view_bytes(vol, sid, "f")
        vol.delete_snapshot(sid)
        assert vol.live_snapshots() == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.just("w"),
                st.integers(0, 1),
                st.integers(0, 6 * K),
                st.integers(1, 2 * K),
                st.integers(0, 2**32),
            ),
            st.tuples(st.just("s"), st.just(0), st.just(0), st.just(0), st.just(0)),
            st.tuples(st.just("d"), st.integers(0, 99), st.just(0), st.just(0), st.just(0)),
            st.tuples(
                st.just("v"),
                st.integers(0, 99),
                st.integers(0, 6 * K),
                st.integers(1, K),
                st.integers(0, 2**32),
            ),
        ),
        max_size=40,
    )
)
def test_random_interleavings_match_references(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int, int, int]]
) -> None:
    base = tmp_path_factory.mktemp("prop")
    root = base / "root"
    root.mkdir()
    names = ["a.vhdx", "b.bin"]
    live = {n: bytearray() for n in names}
    snaps: dict[int, dict[str, bytearray]] = {}
    with engine.Volume(root, base / "diff") as vol:
        files = {n: vol.open(n, create=True) for n in names}

        def put(buf: bytearray, off: int, data: bytes) -> None:
            if len(buf) < off + len(data):
                buf.extend(bytes(off + len(data) - len(buf)))
            buf[off : off + len(data)] = data

        for kind, a, off, n, seed in ops:
            data = random.Random(seed).randbytes(n)
            if kind == "w":
                files[names[a]].write(off, data)
                put(live[names[a]], off, data)
            elif kind == "s":
                snaps[vol.create_snapshot()] = {k: bytearray(v) for k, v in live.items()}
            elif kind == "d" and snaps:
                sid = sorted(snaps)[a % len(snaps)]
                vol.delete_snapshot(sid)
                del snaps[sid]
            elif kind == "v" and snaps:
                sid = sorted(snaps)[a % len(snaps)]
                vol.snapshot(sid).open(names[a % 2], writable=True).write(off, data)
                put(snaps[sid][names[a % 2]], off, data)
        for n in names:
            assert (root / n).read_bytes() == bytes(live[n])
        assert vol.live_snapshots() == sorted(snaps)
        for sid, files_at in snaps.items():
            for n, want in files_at.items():
                assert view_bytes(vol, sid, n) == bytes(want), (sid, n)
    shutil.rmtree(base)


# ---- kill -9 of a writing process -----------------------------------------------------------

HELPER = Path(__file__).parent / "_volume_ops.py"


def run_and_kill(root: Path, diff: Path, seed: int, durable: bool) -> int:
    """Starts a child writing through the volume (stream `seed`), kills it at a random moment;
    returns the index of the last step the child finished."""
    for i, name in enumerate(vops.FILES):
        p = root / name
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(vops.initial_bytes(i))
    progress = root.parent / f"progress-{seed}"
    args = [sys.executable, str(HELPER), str(root), str(diff), str(seed), "4000", str(progress)]
    if durable:
        args.append("--durable")
    child = subprocess.Popen(args, stderr=subprocess.PIPE)
    rng = random.Random(seed)
    deadline = time.monotonic() + 20
    # Wait until the child is writing, then let it run a random while.
    while not progress.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.6))
    child.send_signal(signal.SIGKILL)
    _, err = child.communicate()
    assert child.returncode in (-signal.SIGKILL, 0), err.decode()
    lines = progress.read_text().split() if progress.exists() else []
    return int(lines[-1]) if lines else -1


def check_after_kill(
    root: Path, diff: Path, seed: int, done: int, start: vops.Model
) -> tuple[str, vops.Model]:
    """Checks the volume after the child running stream `seed` from state `start` was killed
    after step `done`; returns the outcome and the state to continue from."""
    stream = vops.ops(seed, 4000)
    model = vops.Model(
        live=[bytearray(x) for x in start.live],
        snaps={k: list(v) for k, v in start.snaps.items()},
        next_id=start.next_id,
    )
    for op in stream[: done + 1]:
        model.apply(op)
    inflight = stream[done + 1] if done + 1 < len(stream) else None
    maybe_new = model.next_id if inflight and inflight[0] == "snap" else None
    maybe_gone = (
        model.pick(inflight[1]) if inflight and inflight[0] == "delete" and model.snaps else None
    )
    # An auto-recovery write in flight: its view shows it whole or not at all.
    alternative: dict[tuple[int, int], bytes] = {}
    if inflight and inflight[0] == "vwrite" and model.snaps:
        after = vops.Model(live=model.live, snaps={k: list(v) for k, v in model.snaps.items()})
        after.apply(inflight)
        sid, i = model.pick(inflight[1] // 8), inflight[1] % 8
        alternative[(sid, i)] = after.snaps[sid][i]
    # Live files: the reference, except the in-flight write's range (old or new bytes).
    for i, name in enumerate(vops.FILES):
        got = (root / name).read_bytes()
        want = bytes(model.live[i])
        if inflight and inflight[0] == "write" and inflight[1] == i:
            # Killed inside the write: each byte of its range is old or new (a partial write may
            # also have grown the file part of the way); nothing else moved.
            data = vops.write_data(inflight[3])
            off = inflight[2]
            new = bytearray(want)
            vops.put(new, off, data)
            assert len(want) <= len(got) <= len(new)
            old = want + bytes(len(got) - len(want))
            for k in range(len(got)):
                if off <= k < off + len(data):
                    assert got[k] in (new[k], old[k]), (name, k)
                else:
                    assert got[k] == old[k], (name, k)
        elif inflight and inflight[0] == "truncate" and inflight[1] == i:
            assert got in (want, want[: inflight[2]]), name
        else:
            assert got == want, name
    outcome = "intact"
    with engine.Volume(root, diff) as vol:
        listed = {s.id: s for s in vol.snapshots()}
        for sid in model.snaps:
            if sid == maybe_gone and listed.get(sid) is not None and listed[sid].state == "deleted":
                continue
            assert sid in listed, f"snapshot {sid} vanished"
        for sid, info in listed.items():
            if info.state == "deleted":
                continue
            if info.state == "invalid":
                outcome = "invalid"
                with pytest.raises(errors.SnapshotInvalidError):
                    vol.snapshot(sid)
                vol.delete_snapshot(sid)
                continue
            want_files = model.snaps.get(sid)
            if want_files is None:
                assert sid == maybe_new, f"unexpected live snapshot {sid}"
                want_files = [bytes(x) for x in model.live]
            for i, name in enumerate(vops.FILES):
                got = view_bytes(vol, sid, name)
                assert got in (want_files[i], alternative.get((sid, i))), (sid, name)
        # The volume keeps working after recovery; the next session starts from what is there.
        vol.open(vops.FILES[0]).write(0, b"after")
        vol.create_snapshot()
        settled = vops.Model(
            live=[bytearray((root / name).read_bytes()) for name in vops.FILES],
            snaps={
                sid: [view_bytes(vol, sid, name) for name in vops.FILES]
                for sid in vol.live_snapshots()
            },
            next_id=max(s.id for s in vol.snapshots()) + 1,
        )
    return outcome, settled


@pytest.mark.slow
@pytest.mark.parametrize("durable", [False, True])
def test_kill_minus_nine_never_leaves_a_wrong_view(tmp_path: Path, durable: bool) -> None:
    """Sessions on one volume, each killed at a random moment, each checked and continued."""
    rounds = int(os.environ.get("VSSIM_KILL_ROUNDS", "2"))
    sessions = int(os.environ.get("VSSIM_KILL_SESSIONS", "3"))
    outcomes = []
    for r in range(rounds):
        root, diff = tmp_path / f"round{r}" / "root", tmp_path / f"round{r}" / "diff"
        state = vops.Model()
        for k in range(sessions):
            seed = 1000 * r + 10 * k + (7 if durable else 3)
            done = run_and_kill(root, diff, seed, durable)
            outcome, state = check_after_kill(root, diff, seed, done, state)
            outcomes.append(outcome)
    assert set(outcomes) <= {"intact", "invalid"}


# ---- a full diff-area disk --------------------------------------------------------------------

FULL_DISK_CHILD = """
import resource, signal, sys
from vssim import engine, errors
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
root, diff = sys.argv[1:3]
vol = engine.Volume(root, diff)
resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 1024, resource.RLIM_INFINITY))
f = vol.open("f")
try:
    f.write(0, b"\\x01" * 32768)
except errors.DiffAreaFullError as exc:
    print("refused:", exc)
    sys.exit(0)
sys.exit("the write was not refused")
"""


def test_full_diff_area_disk_refuses_the_write_and_changes_nothing(
    dirs: tuple[Path, Path],
) -> None:
    root, diff = dirs
    old = random.Random(5).randbytes(2 * K)
    with engine.Volume(root, diff) as vol:
        vol.open("f", create=True).write(0, old)
        sid = vol.create_snapshot()
    journal_before = (diff / "vssim-volume.journal").stat().st_size
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(root), str(diff)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "nothing was written to the live file" in out.stdout
    assert (root / "f").read_bytes() == old
    assert (diff / "vssim-volume.diff").stat().st_size == 0
    with engine.Volume(root, diff) as vol:
        assert vol.recovery_notes == []  # the child closed cleanly
        assert view_bytes(vol, sid, "f") == old
        assert (diff / "vssim-volume.journal").stat().st_size > journal_before


def try_mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return out.returncode == 0


def test_diff_area_on_a_full_tmpfs_refuses_the_write(tmp_path: Path) -> None:
    root, diff = tmp_path / "root", tmp_path / "small"
    root.mkdir()
    if not try_mount_tmpfs(diff, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root in a permissive container)")
    try:
        old = random.Random(6).randbytes(8 * K)
        with engine.Volume(root, diff) as vol:
            # `f` outlives the `with`: closing must still let go of the tmpfs (else no umount).
            f = vol.open("f", create=True)
            f.write(0, old)
            sid = vol.create_snapshot()
            with pytest.raises(errors.DiffAreaFullError, match="No space left"):
                f.write(0, b"\x02" * (8 * K))
            assert (root / "f").read_bytes() == old
            assert vol.diff_area_bytes == 0
            assert (diff / "vssim-volume.diff").stat().st_size == 0
            assert view_bytes(vol, sid, "f") == old
            f.write(0, b"\x03" * K)  # one chunk still fits
            assert view_bytes(vol, sid, "f") == old
        with engine.Volume(root, diff) as vol:
            assert vol.recovery_notes == []
            assert view_bytes(vol, sid, "f") == old
        with pytest.raises(errors.EngineStateError, match="was closed"):
            f.write(0, b"x")
    finally:
        unmounted = subprocess.run(["umount", str(diff)], capture_output=True, check=False)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(diff)], check=False)
    assert unmounted.returncode == 0, unmounted.stderr


# ---- qemu-img: a VHDX backed up through a snapshot view --------------------------------------


def qemu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-utils (make setup)")
def test_vhdx_backup_from_a_snapshot_view_matches_the_disk_at_snapshot_time(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    root, diff = dirs
    disk = root / "vm1" / "Virtual Hard Disks" / "vm1.vhdx"
    disk.parent.mkdir(parents=True)
    assert qemu("qemu-img", "create", "-q", "-f", "vhdx", str(disk), "64M").returncode == 0
    assert qemu("qemu-io", "-c", "write -P 0x11 0 4M", str(disk)).returncode == 0
    with engine.Volume(root, diff) as vol:
        sid = vol.create_snapshot()
        reference = tmp_path / "reference.vhdx"
        shutil.copyfile(disk, reference)
        # The guest keeps writing: make the new image off the volume, then put its bytes into
        # the live file through the volume (so every byte goes through copy-on-write).
        moved = tmp_path / "moved.vhdx"
        shutil.copyfile(reference, moved)
        for cmd in ("write -P 0x22 1M 8M", "write -P 0x33 40M 2M"):
            assert qemu("qemu-io", "-c", cmd, str(moved)).returncode == 0
        live = vol.open(disk)
        new = moved.read_bytes()
        step = 1 << 20
        for off in range(0, len(new), step):
            piece = new[off : off + step]
            if off >= live.len() or live.read(off, min(step, live.len() - off)) != piece:
                live.write(off, piece)
        live.set_len(len(new))
        assert vol.total_chunks_copied > 0
        backup = tmp_path / "backup"
        vol.snapshot(sid).export(backup)
    exported = backup / "vm1" / "Virtual Hard Disks" / "vm1.vhdx"
    check = qemu("qemu-img", "check", "-f", "vhdx", str(exported))
    assert check.returncode == 0, check.stdout + check.stderr
    same = qemu("qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", str(exported), str(reference))
    assert same.returncode == 0, same.stdout + same.stderr
    assert exported.read_bytes() == reference.read_bytes()
    differs = qemu("qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", str(disk), str(reference))
    assert differs.returncode == 1, differs.stdout
    assert qemu("qemu-img", "compare", str(disk), str(moved)).returncode == 0


# ---- the command line --------------------------------------------------------------------------


def test_cli_snapshot_list_export_delete(
    dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, diff = dirs
    (root / "vm").mkdir()
    (root / "vm" / "disk.vhdx").write_bytes(b"a" * 50_000)
    common = [str(root), "--diff-area", str(diff)]
    assert cli_main(["volume", "snapshot", *common]) == 0
    assert "snapshot 1: 1 files, 50,000 bytes" in capsys.readouterr().out
    with engine.Volume(root, diff) as vol:
        vol.open("vm/disk.vhdx").write(0, b"b" * 50_000)
    assert cli_main(["volume", "list", *common]) == 0
    out = capsys.readouterr().out
    assert "live" in out
    assert "diff area: 65,536 bytes in use" in out
    dest = tmp_path / "exported"
    assert cli_main(["volume", "export", *common, "1", str(dest)]) == 0
    assert (dest / "vm" / "disk.vhdx").read_bytes() == b"a" * 50_000
    assert cli_main(["volume", "delete", *common, "1"]) == 0
    assert "65,536 bytes of diff area freed" in capsys.readouterr().out
    assert cli_main(["volume", "export", *common, "1", str(tmp_path / "again")]) == 2
    assert "was deleted" in capsys.readouterr().err


def test_cli_reports_a_missing_root_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert cli_main(["volume", "list", str(missing), "--diff-area", str(tmp_path / "d")]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_refuses_a_negative_limit_with_its_usage(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15: ``--max-bytes -1`` was a traceback (the engine's OverflowError)."""
    root, diff = dirs
    with pytest.raises(SystemExit) as exit_:
        cli_main(["volume", "list", str(root), "--diff-area", str(diff), "--max-bytes", "-1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--max-bytes: -1: expected a number of bytes >= 0" in err
    assert "Traceback" not in err
    assert not diff.exists()


def test_cli_lost_journal_is_refused_until_the_snapshots_are_discarded(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, diff = dirs
    with engine.Volume(root, diff) as vol:
        vol.open("f", create=True).write(0, bytes(4 * K))
        vol.create_snapshot()
        vol.open("f").write(0, b"new")
    (diff / "vssim-volume.journal").unlink()
    common = [str(root), "--diff-area", str(diff)]
    assert cli_main(["volume", "list", *common]) == 2
    assert "journal was lost" in capsys.readouterr().err
    assert cli_main(["volume", "list", *common, "--discard-snapshots"]) == 0
    assert "were discarded" in capsys.readouterr().out


def test_threads_writing_while_snapshots_are_taken(dirs: tuple[Path, Path]) -> None:
    """Writers in threads (the GIL released in every call) and snapshots in between: each
    snapshot shows, per file, exactly the writes that finished before it was taken."""
    root, diff = dirs
    names = [f"vm{i}/disk.vhdx" for i in range(4)]
    size = 16 * K
    with engine.Volume(root, diff) as vol:
        files = [vol.open(n, create=True) for n in names]
        for f in files:
            f.write(0, bytes(size))
        # Writer i writes generation g over the whole file, then records that g is done.
        done = [0] * len(names)
        stop = threading.Event()

        def writer(i: int) -> None:
            g = 0
            while not stop.is_set():
                g += 1
                files[i].write(0, bytes([g % 256]) * size)
                done[i] = g

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(names))]
        for t in threads:
            t.start()
        seen: list[tuple[int, list[int], list[int]]] = []
        try:
            for _ in range(8):
                before = list(done)
                sid = vol.create_snapshot()
                after = list(done)
                seen.append((sid, before, after))
                time.sleep(0.005)
        finally:
            stop.set()
            for t in threads:
                t.join()
        for sid, before, after in seen:
            for i, n in enumerate(names):
                data = view_bytes(vol, sid, n)
                # One whole generation (never a mix), between those finished before and after.
                assert data == bytes([data[0]]) * size, (sid, n)
                gens = {g % 256 for g in range(before[i], after[i] + 2)}
                assert data[0] in gens, (sid, n, data[0], before[i], after[i])
