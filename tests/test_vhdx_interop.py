"""Interop: qemu-img / qemu-io, libvhdi (pyvhdi) and dissect.hypervisor agree with our reader and
our writer, byte for byte."""

from __future__ import annotations

import pathlib
import random

import pytest

from vhdx_tools import (
    HAVE_QEMU,
    MiB,
    dissect_read,
    pyvhdi_read,
    qemu_check,
    qemu_compare,
    qemu_raw,
    run,
)
from vssim import engine

needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-utils not installed")


def random_writes(d: engine.Vhdx, ref: bytearray, rng: random.Random, count: int) -> None:
    size = len(ref)
    for _ in range(count):
        off = rng.randrange(size - 1)
        n = rng.randrange(1, min(400_000, size - off) + 1)
        data = rng.randbytes(n)
        d.write(off, data)
        ref[off : off + n] = data
        if rng.random() < 0.2:
            d.flush()


@needs_qemu
@pytest.mark.parametrize(
    ("subformat", "block_size"),
    [
        ("dynamic", "1M"),
        ("dynamic", "8M"),
        ("dynamic", "32M"),
        ("dynamic", "256M"),
        ("fixed", "8M"),
    ],
)
def test_qemu_created_files_read_like_qemu(
    tmp_path: pathlib.Path, subformat: str, block_size: str
) -> None:
    p = tmp_path / "q.vhdx"
    r = run(
        "qemu-img", "create", "-q", "-f", "vhdx", "-o",
        f"subformat={subformat},block_size={block_size}", str(p), "72M",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run(
        "qemu-io", "-f", "vhdx",
        "-c", "write -P 0xab 0 3M",
        "-c", "write -P 0x11 5000k 70k",
        "-c", "write -P 0xcd 50M 1M",
        "-c", "write -P 0x7e 71M 1M",
        "-c", "write -z 50M 64k",
        str(p),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    expect = qemu_raw(p, tmp_path)
    with engine.Vhdx.open(p) as d:
        assert d.disk_type == subformat
        assert d.read(0, d.virtual_size) == expect
        assert [f for f in d.check() if f.severity == "error"] == []
    # And we can keep writing into a qemu-made file; qemu still agrees.
    with engine.Vhdx.open(p, writable=True) as d:
        d.write(60 * MiB + 17, b"\x42" * 70_000)
        ours = d.read(0, d.virtual_size)
    assert qemu_check(p).returncode == 0
    assert qemu_raw(p, tmp_path) == ours


@needs_qemu
@pytest.mark.parametrize(
    ("disk_type", "block_size", "physical"),
    [("dynamic", MiB, 512), ("dynamic", 32 * MiB, 4096), ("fixed", 2 * MiB, 4096)],
)
def test_our_files_pass_qemu_and_the_readers(
    tmp_path: pathlib.Path, disk_type: str, block_size: int, physical: int
) -> None:
    size = 40 * MiB + 512 * 3
    ref = bytearray(size)
    p = tmp_path / "ours.vhdx"
    rng = random.Random(block_size + physical)
    with engine.Vhdx.create(
        p, size, disk_type=disk_type, block_size=block_size, physical_sector_size=physical
    ) as d:
        random_writes(d, ref, rng, 40)
        d.trim(4 * MiB, 6 * MiB + 512)
        ref[4 * MiB : 10 * MiB + 512] = bytes(6 * MiB + 512)
    raw = tmp_path / "ref.raw"
    raw.write_bytes(ref)
    check = qemu_check(p)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No errors" in check.stdout
    cmp = qemu_compare(p, raw)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert pyvhdi_read([p], size) == ref
    assert dissect_read(p, size) == ref


@pytest.mark.parametrize(
    ("logical", "block_size", "disk_type"),
    [(4096, MiB, "dynamic"), (4096, 256 * MiB, "dynamic"), (4096, 4 * MiB, "fixed")],
)
def test_4k_sector_files_read_by_libvhdi_and_dissect(
    tmp_path: pathlib.Path, logical: int, block_size: int, disk_type: str
) -> None:
    # qemu-img refuses 4 KiB logical sectors (ENOTSUP), so libvhdi and dissect are the oracles.
    size = 24 * MiB + 3 * logical
    ref = bytearray(size)
    p = tmp_path / "k.vhdx"
    with engine.Vhdx.create(
        p, size, disk_type=disk_type, block_size=block_size, logical_sector_size=logical
    ) as d:
        random_writes(d, ref, random.Random(logical + block_size), 30)
    assert pyvhdi_read([p], size) == ref
    assert dissect_read(p, size) == ref
    with engine.Vhdx.open(p) as d:
        assert d.read(0, size) == ref


@pytest.mark.parametrize(("logical", "block_size"), [(512, MiB), (512, 8 * MiB), (4096, 2 * MiB)])
def test_differencing_chains_read_identically(
    tmp_path: pathlib.Path, logical: int, block_size: int
) -> None:
    size = 32 * MiB + 3 * logical
    ref = bytearray(size)
    rng = random.Random(logical * block_size)
    chain: list[pathlib.Path] = []
    for depth in range(4):
        p = tmp_path / f"disk{depth}.{'vhdx' if depth == 0 else 'avhdx'}"
        if depth == 0:
            d = engine.Vhdx.create(p, size, block_size=block_size, logical_sector_size=logical)
        else:
            d = engine.Vhdx.create(p, disk_type="differencing", parent=chain[-1])
        with d:
            # Small writes at sector granularity leave PARTIALLY_PRESENT blocks.
            for _ in range(25):
                off = rng.randrange(size // logical - 1) * logical
                n = rng.choice([logical, 3 * logical, rng.randrange(1, 200_000)])
                n = min(n, size - off)
                data = rng.randbytes(n)
                d.write(off, data)
                ref[off : off + n] = data
            if depth == 2:
                d.trim(2 * block_size, 2 * block_size)
                ref[2 * block_size : 4 * block_size] = bytes(2 * block_size)
            if depth > 0:
                assert 7 in d.block_states().tolist()
        chain.append(p)
        assert pyvhdi_read(chain, size) == ref, f"pyvhdi at depth {depth}"
        assert dissect_read(p, size) == ref, f"dissect at depth {depth}"
        with engine.Vhdx.open(p) as r:
            assert r.read(0, size) == ref
            assert r.check() == []
