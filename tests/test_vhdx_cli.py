"""``vssim vhdx ...`` end to end."""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest

from make_vhdx_corpus import HERE
from vssim import engine
from vssim.cli import main
from vssim.cli.vhdx import parse_size

MiB = 1024 * 1024


def test_parse_size() -> None:
    assert parse_size("4096") == 4096
    assert parse_size("64M") == 64 * MiB
    assert parse_size("1.5G") == 1536 * MiB
    assert parse_size("2TiB") == 2 << 40


def test_create_info_map_export_import_merge(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.vhdx"
    assert main(["vhdx", "create", str(base), "16M", "--block-size", "1M"]) == 0
    with engine.Vhdx.open(base, writable=True) as d:
        d.write(3 * MiB, b"\x07" * 5000)
    child = tmp_path / "child.avhdx"
    assert (
        main(["vhdx", "create", str(child), "--type", "differencing", "--parent", str(base)]) == 0
    )
    with engine.Vhdx.open(child, writable=True) as d:
        d.write(9 * MiB, b"\x08" * 4096)
    capsys.readouterr()
    assert main(["vhdx", "info", str(child), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["disk_type"] == "differencing"
    assert facts["virtual_size"] == 16 * MiB
    assert facts["parent_path"] == str(base)
    assert main(["vhdx", "map", str(child), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["extents"] == [[3 * MiB, MiB], [9 * MiB, MiB]]
    raw = tmp_path / "child.raw"
    assert main(["vhdx", "export", str(child), str(raw)]) == 0
    data = raw.read_bytes()
    assert data[3 * MiB : 3 * MiB + 5000] == b"\x07" * 5000
    assert data[9 * MiB : 9 * MiB + 4096] == b"\x08" * 4096
    back = tmp_path / "back.vhdx"
    assert main(["vhdx", "import", str(raw), str(back), "--block-size", "2M"]) == 0
    with engine.Vhdx.open(back) as b:
        assert b.read(0, b.virtual_size) == data
        assert b.block_size == 2 * MiB
    flat = tmp_path / "flat.vhdx"
    assert main(["vhdx", "copy", str(child), str(flat)]) == 0
    assert engine.Vhdx.open(flat).read(0, 16 * MiB) == data
    assert main(["vhdx", "merge", str(child)]) == 0
    assert engine.Vhdx.open(base).read(0, 16 * MiB) == data
    assert main(["vhdx", "check", str(base)]) == 0


def test_check_exit_codes_and_json(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.vhdx"
    bad.write_bytes(gzip.decompress((HERE / "bat_offset_past_eof.vhdx.gz").read_bytes()))
    capsys.readouterr()
    assert main(["vhdx", "check", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] >= 1
    assert report["findings"][0]["structure"] == "BAT entry"
    assert main(["vhdx", "check", str(bad)]) == 1
    assert "FileOffsetMB" in capsys.readouterr().out
    assert main(["vhdx", "info", str(bad)]) == 2
    assert "BAT entry" in capsys.readouterr().err
    assert main(["vhdx", "info", str(tmp_path / "missing.vhdx")]) == 2
