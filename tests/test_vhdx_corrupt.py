"""Malformed files: each corpus file (tests/data/vhdx, built by make_vhdx_corpus.py) gives a typed
error naming the structure and the field, read-only or writable, and is never written to."""

from __future__ import annotations

import gzip
import hashlib
import pathlib
import random

import pytest

from make_vhdx_corpus import CASES, HERE
from vssim import engine, errors

MiB = 1024 * 1024


def unpack(name: str, tmp: pathlib.Path) -> pathlib.Path:
    (tmp / "sub").mkdir(exist_ok=True)
    p = tmp / "sub" / f"{name}.vhdx"
    p.write_bytes(gzip.decompress((HERE / f"{name}.vhdx.gz").read_bytes()))
    return p


def digest(p: pathlib.Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_corpus_is_complete() -> None:
    assert {p.name.removesuffix(".vhdx.gz") for p in HERE.glob("*.vhdx.gz")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_file_is_refused_precisely(tmp_path: pathlib.Path, name: str) -> None:
    cls_name, structure, field = CASES[name]
    cls = getattr(errors, cls_name)
    p = unpack(name, tmp_path)
    before = digest(p)
    for writable in (False, True):
        with pytest.raises(cls) as exc:
            engine.Vhdx.open(p, writable=writable)
        e = exc.value
        assert isinstance(e, errors.VhdxError)
        assert isinstance(e, ValueError)
        assert (e.structure, e.field) == (structure, field), str(e)
        assert e.file == str(p)
        assert isinstance(e.offset, int)
        assert e.expected
        assert e.found
        assert f"{e.offset:#x}" in str(e)
        assert "expected" in str(e)
        assert digest(p) == before
    findings = engine.Vhdx.check_file(p)
    assert any(f.severity == "error" for f in findings), findings
    assert digest(p) == before


def test_one_bad_header_falls_back_to_the_other(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    with engine.Vhdx.create(p, 4 * MiB, block_size=MiB) as d:
        d.write(0, b"x" * 4096)
    b = bytearray(p.read_bytes())
    b[64 * 1024 + 200] ^= 0xFF
    p.write_bytes(b)
    with engine.Vhdx.open(p) as d:
        assert d.read(0, 4096) == b"x" * 4096
    findings = engine.Vhdx.check_file(p)
    assert [(f.severity, f.structure, f.field) for f in findings] == [
        ("warning", "header", "checksum")
    ]


def test_random_damage_never_panics_or_writes(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    with engine.Vhdx.create(p, 6 * MiB, block_size=MiB) as d:
        d.write(0, b"\x11" * (3 * MiB))
    good = p.read_bytes()
    rng = random.Random(2012)
    targets = [0, 64 * 1024, 128 * 1024, 192 * 1024, 256 * 1024, 2 * MiB, 3 * MiB]
    for _ in range(150):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            at = rng.choice(targets) + rng.randrange(0, 512)
            b[at] = rng.randrange(256)
        if rng.random() < 0.2:
            b = b[: rng.randrange(len(b))]
        p.write_bytes(b)
        try:
            with engine.Vhdx.open(p) as d:
                d.read(0, d.virtual_size)
                d.check()
        except (errors.VssimError, ValueError, OSError) as e:
            message = str(e)
        else:
            message = ""
        assert "internal error" not in message
        engine.Vhdx.check_file(p)
        assert p.read_bytes() == bytes(b)
