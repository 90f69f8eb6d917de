"""VHDX disks living on a volume: the writer goes through copy-on-write, and a backup reads the
disk through a snapshot view exactly as it was at the snapshot instant (issue 4's proof with the
real VHDX implementation)."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

import vssim
from vssim import engine

MiB = 1 << 20
DISK = "vm1/Virtual Hard Disks/vm1.vhdx"
HAVE_QEMU = shutil.which("qemu-img") is not None


def write_random(d: engine.Vhdx, rng: random.Random, n: int, size: int) -> None:
    for _ in range(n):
        length = rng.choice([4096, 65536, 3 * MiB // 2])
        off = rng.randrange(0, size - length) // 512 * 512
        d.write(off, rng.randbytes(length))


def test_backup_through_a_view_equals_the_disk_at_the_snapshot(tmp_path: Path) -> None:
    rng = random.Random(4)
    size = 64 * MiB
    (tmp_path / "csv").mkdir()
    vol = engine.Volume(tmp_path / "csv", tmp_path / "diff")
    with engine.Vhdx.create(vol.open(DISK, create=True), size, block_size=MiB) as d:
        write_random(d, rng, 40, size)
    with engine.Vhdx.open(vol.open(DISK)) as d:
        at_snapshot = d.read(0, size)
    sid = vol.create_snapshot()
    # The VM keeps writing through the volume: copy-on-write preserves the snapshot.
    with engine.Vhdx.open(vol.open(DISK), writable=True) as d:
        write_random(d, rng, 40, size)
        live = d.read(0, size)
    assert live != at_snapshot
    assert vol.total_chunks_copied > 0
    view = vol.snapshot(sid).open(DISK)
    with engine.Vhdx.open(view) as snap_disk:
        assert snap_disk.read(0, size) == at_snapshot
        backup = tmp_path / "backup.vhdx"
        snap_disk.copy_to(backup)
    reference = tmp_path / "reference.raw"
    reference.write_bytes(at_snapshot)
    with engine.Vhdx.open(backup) as b:
        assert b.read(0, size) == at_snapshot
    assert not [f for f in engine.Vhdx.check_file(backup) if f.severity == "error"]
    if HAVE_QEMU:
        subprocess.run(["qemu-img", "check", "-f", "vhdx", str(backup)], check=True)
        subprocess.run(
            ["qemu-img", "compare", "-f", "vhdx", "-F", "raw", str(backup), str(reference)],
            check=True,
        )
    # The live disk still reads its newest bytes.
    with engine.Vhdx.open(vol.open(DISK)) as d:
        assert d.read(0, size) == live
    vol.close()


def test_a_view_is_read_only_for_the_vhdx_writer(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    vol = engine.Volume(tmp_path / "csv", tmp_path / "diff")
    with engine.Vhdx.create(vol.open(DISK, create=True), 8 * MiB, block_size=MiB) as d:
        d.write(0, b"x" * 4096)
    sid = vol.create_snapshot()
    with pytest.raises(vssim.VssimError, match="read-only"):
        engine.Vhdx.open(vol.snapshot(sid).open(DISK), writable=True)
    vol.close()


def test_differencing_on_a_volume_file_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    vol = engine.Volume(tmp_path / "csv", tmp_path / "diff")
    base = tmp_path / "base.vhdx"
    engine.Vhdx.create(base, 8 * MiB).close()
    with pytest.raises(vssim.VssimError, match="differencing disk on a volume file"):
        engine.Vhdx.create(
            vol.open("child.avhdx", create=True), disk_type="differencing", parent=base
        )
    vol.close()


def test_a_vhdx_read_through_a_damaged_view_raises_the_volumes_error(tmp_path: Path) -> None:
    """A backup reading a VHDX through a snapshot view whose diff area was damaged gets the
    volume's `SnapshotInvalidError` (file, offset, CRCs), not a bare OSError, and no bytes."""
    size = 8 * MiB
    (tmp_path / "csv").mkdir()
    vol = engine.Volume(tmp_path / "csv", tmp_path / "diff")
    with engine.Vhdx.create(vol.open(DISK, create=True), size, block_size=MiB) as d:
        d.write(0, b"\x05" * size)
    sid = vol.create_snapshot()
    with engine.Vhdx.open(vol.open(DISK), writable=True) as d:
        d.write(0, b"\x06" * size)
    diff = tmp_path / "diff" / "vssim-volume.diff"
    with diff.open("r+b") as f:
        f.write(bytes(diff.stat().st_size))
    view = vol.snapshot(sid).open(DISK)

    def backup() -> bytes:
        with engine.Vhdx.open(view) as snap_disk:
            return snap_disk.read(0, size)

    with pytest.raises(vssim.errors.SnapshotInvalidError, match="fails its CRC-32C"):
        backup()
    [info] = vol.snapshots()
    assert info.state == "invalid"
    vol.close()
