"""Crash safety: a writer killed with SIGKILL at random moments leaves a file whose log our open
replays; every write that returned before a flush is there, qemu-img check is clean afterwards,
and qemu-img's own repair of the same dirty file gives identical bytes."""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from vhdx_crash_writer import SLOT, record
from vhdx_tools import HAVE_QEMU, MiB, qemu_check, qemu_raw
from vssim import engine

WRITER = pathlib.Path(__file__).with_name("vhdx_crash_writer.py")


def killed_run(tmp: pathlib.Path, seed: int, delay: float) -> tuple[pathlib.Path, int]:
    disk = tmp / "disk.vhdx"
    journal = tmp / "journal"
    engine.Vhdx.create(disk, 160 * MiB, block_size=MiB).close()
    child = subprocess.Popen([sys.executable, str(WRITER), str(disk), str(journal), str(seed)])
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    lines = journal.read_text().split() if journal.exists() else []
    numbers = [int(x) for x in lines if x != "done"]
    flushed = 160 * MiB // SLOT if "done" in lines else max(numbers, default=0)
    return disk, flushed


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_then_replay(tmp_path: pathlib.Path, seed: int) -> None:
    rng = random.Random(seed)
    disk, flushed = killed_run(tmp_path, seed, rng.uniform(0.3, 1.0))
    dirty = tmp_path / "dirty-copy.vhdx"
    shutil.copy(disk, dirty)
    # A read-only open replays in memory and writes nothing.
    before = disk.read_bytes()
    with engine.Vhdx.open(disk) as ro:
        in_memory = ro.read(0, ro.virtual_size)
    assert disk.read_bytes() == before
    with engine.Vhdx.open(disk, writable=True) as d:
        replayed = d.read(0, d.virtual_size)
    assert replayed == in_memory
    with engine.Vhdx.open(disk) as d:
        assert d.log_guid == "00000000-0000-0000-0000-000000000000"
        assert d.read(0, d.virtual_size) == replayed
        assert d.check() == []
    for i in range(flushed):
        off, data = record(seed, i)
        assert replayed[off : off + len(data)] == data, f"record {i} of {flushed} lost"
    # Slots never written read zeros: no garbage from blocks allocated but not committed.
    last = 160 * MiB // SLOT
    for i in range(flushed, last):
        off, data = record(seed, i)
        got = replayed[i * SLOT : (i + 1) * SLOT]
        head, tail = got[: off - i * SLOT], got[off - i * SLOT + len(data) :]
        assert head.count(0) == len(head)
        assert tail.count(0) == len(tail)
    if HAVE_QEMU:
        check = qemu_check(disk)
        assert check.returncode == 0, check.stdout + check.stderr
        repaired = qemu_check(dirty, "-r", "all")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert qemu_raw(dirty, tmp_path) == replayed


def test_writer_finishing_leaves_a_clean_file(tmp_path: pathlib.Path) -> None:
    disk = tmp_path / "disk.vhdx"
    engine.Vhdx.create(disk, 4 * MiB, block_size=MiB).close()
    subprocess.run([sys.executable, str(WRITER), str(disk), str(tmp_path / "j"), "9"], check=True)
    with engine.Vhdx.open(disk) as d:
        assert not d.replayed_log
        data = d.read(0, d.virtual_size)
    for i in range(4 * MiB // SLOT):
        off, rec = record(9, i)
        assert data[off : off + len(rec)] == rec
    assert os.path.getsize(disk) > 4 * MiB
