"""Integer arguments of every engine binding: a negative or too large int is refused with
``InvalidArgumentError`` naming the argument and the range (issue 15: it was an ``OverflowError``
naming neither), and nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vssim import engine, errors

GiB = 1 << 30


def calls(tmp: Path) -> list[tuple[str, Callable[[Any], object]]]:
    """(argument, call with that argument set to `v`), one per binding that takes an integer."""
    root = tmp / "root"
    root.mkdir()
    vol = engine.Volume(root, tmp / "diff")
    f = vol.open("f", create=True)
    f.write(0, b"x" * 100)
    sid = vol.create_snapshot()
    view = vol.snapshot(sid).open("f")
    cow = engine.CowTracker(GiB)
    model = engine.ModelCluster()
    model.add_csv(1 << 40)
    disk = engine.Vhdx.create(tmp / "d.vhdx", 64 << 20)
    return [
        ("volume_size", lambda v: engine.CowTracker(v)),
        ("chunk_size", lambda v: engine.CowTracker(GiB, v)),
        ("diff_area_limit", lambda v: engine.CowTracker(GiB, diff_area_limit=v)),
        ("allocated_bytes", lambda v: cow.create_snapshot(v)),
        ("snapshot_id", lambda v: cow.delete_snapshot(v)),
        ("diff_area_limit", lambda v: setattr(cow, "diff_area_limit", v)),
        ("disk_size", lambda v: engine.ChangeTracker("d", v)),
        ("block_size", lambda v: engine.ChangeTracker("d", GiB, v)),
        ("chunk_size", lambda v: engine.bitset_limit([0], [1], v, GiB)),
        ("volume_size", lambda v: engine.bitset_limit([0], [1], 16384, v)),
        ("allocated_bytes", lambda v: engine.bitset_limit([0], [1], 16384, GiB, v)),
        ("size", lambda v: model.add_csv(v)),
        ("csv", lambda v: model.add_vm(v, GiB)),
        ("disk_size", lambda v: model.add_vm(0, v)),
        ("allocated", lambda v: model.add_vm(0, GiB, allocated=v)),
        ("seed", lambda v: model.add_vm(0, GiB, seed=v)),
        ("csvs[0]", lambda v: model.advance_csvs([v], [0.0], 1.0)),
        ("vm", lambda v: model.file_size(v)),
        ("csv", lambda v: model.snapshot(v)),
        ("sizes[0]", lambda v: engine.WorkloadSpec(sizes=[v])),
        ("seed", lambda v: engine.WorkloadGenerator(GiB, seed=v)),
        ("diff_area_max_bytes", lambda v: engine.Volume(root, tmp / "d2", v)),
        ("diff_area_max_bytes", lambda v: setattr(vol, "diff_area_max_bytes", v)),
        ("snapshot_id", lambda v: vol.snapshot(v)),
        ("snapshot_id", lambda v: vol.delete_snapshot(v)),
        ("offset", lambda v: f.write(v, b"y")),
        ("offset", lambda v: f.read(v, 1)),
        ("length", lambda v: f.read(0, v)),
        ("length", lambda v: f.set_len(v)),
        ("seed", lambda v: f.write_pattern([0], [1], v)),
        ("offset", lambda v: view.read(v, 1)),
        ("virtual_size", lambda v: engine.Vhdx.create(tmp / "e.vhdx", v)),
        ("offset", lambda v: disk.read(v, 1)),
        ("length", lambda v: disk.trim(0, v)),
    ]


@pytest.mark.parametrize("value", [-1, 1 << 64], ids=["negative", "2**64"])
def test_out_of_range_ints_are_named(tmp_path: Path, value: int) -> None:
    cases = calls(tmp_path)
    assert len(cases) > 30
    for name, call in cases:
        with pytest.raises(errors.InvalidArgumentError) as err:
            call(value)
        msg = str(err.value)
        assert msg.startswith(f"invalid argument `{name}`: {value}: expected an integer from 0"), (
            name,
            msg,
        )


def test_other_types_keep_their_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="argument 'volume_size'"):
        engine.CowTracker(1.5)  # type: ignore[arg-type]
