"""The Vhdx binding on its own: create, open, read, write, trim, properties, errors, helpers."""

from __future__ import annotations

import os
import pathlib
import random

import numpy as np
import pytest

from vssim import engine
from vssim.errors import InvalidArgumentError, VhdxError, VhdxParentError

MiB = 1024 * 1024


def test_create_dynamic_defaults_and_properties(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    with engine.Vhdx.create(p, 100 * MiB) as d:
        assert d.disk_type == "dynamic"
        assert d.block_size == 32 * MiB
        assert d.logical_sector_size == 512
        assert d.physical_sector_size == 4096
        assert d.virtual_size == 100 * MiB
        assert d.writable
        assert d.parent_path is None
        assert d.parent_linkage is None
    assert d.closed
    # Laid out as QEMU does: 1 MiB header area, 1 MiB log, BAT, 1 MiB metadata.
    assert p.stat().st_size == 4 * MiB
    with engine.Vhdx.open(p) as r:
        assert not r.writable
        assert r.log_guid == "00000000-0000-0000-0000-000000000000"
        assert r.read(0, 4096) == bytes(4096)
        assert r.check() == []


def test_write_read_trim_round_trip(tmp_path: pathlib.Path) -> None:
    rng = random.Random(7)
    size = 24 * MiB + 512
    ref = bytearray(size)
    p = tmp_path / "d.vhdx"
    with engine.Vhdx.create(p, size, block_size=MiB) as d:
        for _ in range(60):
            off = rng.randrange(size - 1)
            n = rng.randrange(1, min(300_000, size - off) + 1)
            data = rng.randbytes(n)
            d.write(off, data)
            ref[off : off + n] = data
        d.trim(2 * MiB + 100, 3 * MiB)
        ref[2 * MiB + 100 : 5 * MiB + 100] = bytes(3 * MiB)
        assert d.read(0, size) == ref
        states = d.block_states()
        assert states[3] == 2
        assert states[4] == 2
    with engine.Vhdx.open(p) as r:
        assert r.read(0, size) == ref


def test_write_accepts_buffers_and_rejects_out_of_range(tmp_path: pathlib.Path) -> None:
    with engine.Vhdx.create(tmp_path / "d.vhdx", 4 * MiB, block_size=MiB) as d:
        d.write(0, bytearray(b"abc"))
        d.write(3, memoryview(b"def"))
        d.write(6, np.frombuffer(b"ghi", dtype=np.uint8))
        assert d.read(0, 9) == b"abcdefghi"
        with pytest.raises(InvalidArgumentError, match="past the virtual disk size"):
            d.write(4 * MiB - 1, b"xy")
        with pytest.raises(ValueError, match="past the virtual disk size"):
            d.read(4 * MiB, 1)


def test_read_only_refuses_writes_and_closed_refuses_everything(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    engine.Vhdx.create(p, 4 * MiB, block_size=MiB).close()
    before = p.read_bytes()
    r = engine.Vhdx.open(p)
    with pytest.raises(VhdxError, match="read-only"):
        r.write(0, b"x")
    r.close()
    r.close()
    with pytest.raises(VhdxError, match="closed"):
        r.read(0, 1)
    assert p.read_bytes() == before


def test_header_protocol_new_guids_per_session(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    with engine.Vhdx.create(p, 4 * MiB, block_size=MiB) as d:
        first = (d.file_write_guid, d.data_write_guid)
    with engine.Vhdx.open(p, writable=True) as d:
        # Opening writable changes nothing until the first change.
        assert (d.file_write_guid, d.data_write_guid) == first
        d.write(0, b"x" * 512)
        assert d.file_write_guid != first[0]
        assert d.data_write_guid != first[1]


def test_create_validates_arguments(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidArgumentError, match="block_size"):
        engine.Vhdx.create(tmp_path / "a.vhdx", MiB, block_size=3 * MiB)
    with pytest.raises(InvalidArgumentError, match="block_size"):
        engine.Vhdx.create(tmp_path / "a.vhdx", MiB, block_size=512 * MiB)
    with pytest.raises(InvalidArgumentError, match="logical_sector_size"):
        engine.Vhdx.create(tmp_path / "a.vhdx", MiB, logical_sector_size=1024)
    with pytest.raises(InvalidArgumentError, match="virtual_size"):
        engine.Vhdx.create(tmp_path / "a.vhdx", 65 * 1024**4)
    with pytest.raises(InvalidArgumentError, match="virtual_size"):
        engine.Vhdx.create(tmp_path / "a.vhdx", 1000, logical_sector_size=512)
    with pytest.raises(InvalidArgumentError, match="parent"):
        engine.Vhdx.create(tmp_path / "a.vhdx", MiB, disk_type="differencing")
    with pytest.raises(InvalidArgumentError, match="disk_type"):
        engine.Vhdx.create(tmp_path / "a.vhdx", MiB, disk_type="sparse")
    assert not (tmp_path / "a.vhdx").exists()
    engine.Vhdx.create(tmp_path / "b.vhdx", MiB).close()
    with pytest.raises(FileExistsError):
        engine.Vhdx.create(tmp_path / "b.vhdx", MiB)


def test_64_tib_disk_is_created_sparse(tmp_path: pathlib.Path) -> None:
    with engine.Vhdx.create(tmp_path / "big.vhdx", 64 * 1024**4) as d:
        d.write(64 * 1024**4 - 4096, b"\x01" * 4096)
        assert d.read(64 * 1024**4 - 4096, 4096) == b"\x01" * 4096
        assert d.block_states().size == 64 * 1024**4 // (32 * MiB)


def test_fixed_disk_is_preallocated_and_trim_keeps_blocks(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "f.vhdx"
    with engine.Vhdx.create(p, 8 * MiB, disk_type="fixed", block_size=MiB) as d:
        assert d.disk_type == "fixed"
        assert set(d.block_states().tolist()) == {6}
        d.write(MiB, b"\xff" * MiB)
        d.trim(MiB, MiB)
        assert d.read(MiB, MiB) == bytes(MiB)
        assert set(d.block_states().tolist()) == {6}
    assert p.stat().st_size >= 8 * MiB + 4 * MiB


def test_differencing_chain_reads_through_parents(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "base.vhdx"
    with engine.Vhdx.create(base, 8 * MiB, block_size=MiB) as d:
        d.write(0, b"A" * (2 * MiB))
    mid = tmp_path / "mid.avhdx"
    with engine.Vhdx.create(mid, disk_type="differencing", parent=base) as c:
        assert c.disk_type == "differencing"
        assert c.virtual_size == 8 * MiB
        assert c.block_size == MiB
        assert c.parent_path == base
        locator = c.parent_locator
        assert locator["relative_path"] == ".\\base.vhdx"
        assert locator["parent_linkage"].strip("{}") == engine.Vhdx.open(base).data_write_guid
        c.write(4096, b"B" * 100)
        assert c.block_states()[0] == 7  # partially present
        c.trim(MiB, MiB)
    top = tmp_path / "top.avhdx"
    with engine.Vhdx.create(top, disk_type="differencing", parent=mid) as t:
        t.write(0, b"C" * 10)
        got = t.read(0, 2 * MiB)
    expect = bytearray(b"A" * (2 * MiB))
    expect[4096 : 4096 + 100] = b"B" * 100
    expect[MiB : 2 * MiB] = bytes(MiB)
    expect[0:10] = b"C" * 10
    assert got == expect
    offs, lens = engine.Vhdx.open(top).allocated_extents()
    assert offs.tolist() == [0]
    assert lens.tolist() == [2 * MiB]


def test_wrong_parent_is_refused_with_the_linkage(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "base.vhdx"
    engine.Vhdx.create(base, 4 * MiB, block_size=MiB).close()
    child = tmp_path / "child.avhdx"
    engine.Vhdx.create(child, disk_type="differencing", parent=base).close()
    with engine.Vhdx.open(base, writable=True) as b:
        b.write(0, b"changed")  # a new DataWriteGuid: the child no longer matches
    before = child.read_bytes()
    with pytest.raises(VhdxParentError, match="parent_linkage") as exc:
        engine.Vhdx.open(child, writable=True)
    assert exc.value.field == "parent_linkage"
    assert exc.value.structure == "parent locator"
    assert child.read_bytes() == before


def test_parent_outside_the_directory_needs_permission(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    base = tmp_path / "a" / "base.vhdx"
    engine.Vhdx.create(base, 4 * MiB, block_size=MiB).close()
    child = tmp_path / "b" / "child.avhdx"
    with engine.Vhdx.create(child, disk_type="differencing", parent=base) as c:
        assert c.parent_locator["relative_path"] == "..\\a\\base.vhdx"
    with pytest.raises(VhdxParentError, match="relative_path") as exc:
        engine.Vhdx.open(child)
    assert exc.value.found == "..\\a\\base.vhdx"
    with engine.Vhdx.open(child, allow_parent_escape=True) as c:
        assert c.parent_path is not None


def test_allocated_extents_copy_export_import(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    rng = random.Random(3)
    with engine.Vhdx.create(p, 16 * MiB, block_size=MiB) as d:
        d.write(MiB + 10, rng.randbytes(5000))
        d.write(7 * MiB, rng.randbytes(2 * MiB))
        offs, lens = d.allocated_extents()
        assert offs.dtype == np.uint64
        assert lens.dtype == np.uint64
        assert list(zip(offs.tolist(), lens.tolist(), strict=True)) == [
            (MiB, MiB),
            (7 * MiB, 2 * MiB),
        ]
        whole = d.read(0, d.virtual_size)
        assert d.copy_to(tmp_path / "copy.vhdx") == 3 * MiB
        assert d.export_raw(tmp_path / "d.raw") == 3 * MiB
    assert (tmp_path / "d.raw").read_bytes() == whole
    with engine.Vhdx.open(tmp_path / "copy.vhdx") as c:
        assert c.read(0, c.virtual_size) == whole
        assert c.block_states().tolist().count(6) == 3
    with engine.Vhdx.import_raw(tmp_path / "d.raw", tmp_path / "i.vhdx", block_size=MiB) as i:
        assert i.read(0, i.virtual_size) == whole
        assert i.block_states().tolist().count(6) == 3


def test_merge_child_into_parent(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "base.vhdx"
    with engine.Vhdx.create(base, 8 * MiB, block_size=MiB) as d:
        d.write(0, os.urandom(3 * MiB))
    child = tmp_path / "child.avhdx"
    with engine.Vhdx.create(child, disk_type="differencing", parent=base) as c:
        c.write(5000, b"x" * 9000)
        c.write(4 * MiB, b"y" * MiB)
        c.trim(2 * MiB, MiB)
        expect = c.read(0, 8 * MiB)
    assert engine.Vhdx.merge(child) == base
    with engine.Vhdx.open(base) as b:
        assert b.read(0, 8 * MiB) == expect
        assert b.check() == []
