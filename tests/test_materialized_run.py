"""Materialized runs: the same scenario with real VHDX disks on real copy-on-write volumes, backups
as real VHDX chains — and the invariant that the model's figures are what the real files did."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scale_scenarios import tiny
from vhdx_tools import pyvhdi_read
from vssim import engine, errors
from vssim.cli import main
from vssim.metrics import RunResult, run
from vssim.scale.materialize import QEMU_NO_PARENTS, MaterializeError, read_manifest, restore

QEMU = shutil.which("qemu-img")
MIB = 1 << 20


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, RunResult, Path]:
    """A full backup then two incrementals, materialized, and the same run modelled only."""
    root = tmp_path_factory.mktemp("mat") / "run"
    sc = tiny()
    kinds = ["full", "incremental", "incremental"]
    real = run(sc, kinds, interval_s=20.0, materialize=root)
    modelled = run(sc, kinds, interval_s=20.0)
    return real, modelled, root


def test_modelled_counts_equal_what_the_real_files_did(chain_run: tuple) -> None:
    real, modelled, _ = chain_run
    vms = real.vms
    assert vms.height == 24
    assert vms["ok"].all()
    # Per VM and backup: bytes read and chunks copied, model == real volume.
    assert (vms["real_bytes_read"] == vms["bytes_read"]).all()
    assert (vms["real_chunks_copied"] == vms["chunks_copied"]).all()
    assert vms["chunks_copied"].sum() > 0
    assert vms.filter(pl.col("incremental"))["bytes_read"].sum() > 0
    # Per CSV: the copies and the diff-area peak of the real volume are the model's.
    inv = real.invariant
    assert (inv["chunks_copied"] == inv["real_chunks_copied"]).all()
    assert (inv["peak_diff_area_bytes"] == inv["real_peak_diff_area_bytes"]).all()
    assert inv["chunks_copied"].sum() > 0
    # And the model's figures in a materialized run are a modelled run's, table for table.
    keys = ["backup", "vm", "bytes_read", "chunks_copied", "blocks_changed", "incremental"]
    assert real.vms.select(keys).equals(modelled.vms.select(keys))
    assert real.csvs.drop("snapshot").equals(modelled.csvs.drop("snapshot"))
    assert real.summary.equals(modelled.summary)


def test_every_backup_is_a_verified_vhdx_chain(chain_run: tuple) -> None:
    real, _, root = chain_run
    b = real.backups
    assert b.height == 24
    assert b["committed"].all()
    assert b["verified"].all()
    assert (b["digest_at_snapshot"] == b["digest_restored"]).all()
    assert b.filter(pl.col("kind") == "full").height == 8
    incr = b.filter(pl.col("kind") == "incremental")
    assert incr.height == 16
    assert incr["parent"].is_not_null().all()
    assert (b["bytes_read"] == b["modelled_bytes"]).all()
    for f in b["file"]:
        v = engine.Vhdx.open(root / "backups" / f)
        assert v.disk_type in ("dynamic", "differencing")
        assert v.check() == []
        v.close()
    if QEMU:
        assert set(b.filter(pl.col("kind") == "full")["qemu_img_check"]) == {"ok"}
        assert set(incr["qemu_img_check"]) == {QEMU_NO_PARENTS}
    # libvhdi reads each chain as our engine does.
    for vm in b["vm"].unique().sort()[:2]:
        chain = b.filter(pl.col("vm") == vm).sort("seq")["file"].to_list()
        paths = [root / "backups" / f for f in chain]
        with engine.Vhdx.open(paths[-1]) as v:
            size = v.virtual_size
            ours = v.read(0, size)
        assert pyvhdi_read(paths, size) == ours
    assert len(read_manifest(root / "backups")) == 24


def test_restore_rebuilds_each_backup_and_changed_blocks_are_real(
    chain_run: tuple, tmp_path: Path
) -> None:
    real, _, root = chain_run
    vm = real.vms["vm"][0]
    disks = []
    for seq in (1, 2, 3):
        r = restore(root, vm, tmp_path / f"{seq}.vhdx", seq=seq)
        assert r.verified
        assert [e.seq for e in r.chain] == list(range(1, seq + 1))
        assert engine.Vhdx.open(r.out).disk_type == "dynamic"
        if QEMU:
            subprocess.run([QEMU, "check", "-f", "vhdx", str(r.out)], check=True)
        disks.append(engine.Vhdx.open(r.out))
    # The blocks an incremental's change tracking counted are the blocks whose content changed
    # between the two restored disks (every guest write changes its bytes).
    bs = 65536
    size = disks[0].virtual_size
    rows = real.vms.filter(pl.col("vm") == vm).sort("backup")
    for k in (1, 2):
        differ = sum(disks[k - 1].read(o, bs) != disks[k].read(o, bs) for o in range(0, size, bs))
        assert differ == rows["blocks_changed"][k] > 0
    for d in disks:
        d.close()


def test_restore_verification_fails_on_a_flipped_byte(chain_run: tuple, tmp_path: Path) -> None:
    """A copy of the store with one byte flipped in a backup file's payload (a sector only that
    file holds): restoring any backup whose chain holds that file no longer verifies; the others
    still do."""
    real, _, root = chain_run
    store = tmp_path / "store"
    shutil.copytree(root / "backups", store)
    rows = real.backups.filter(pl.col("vm") == real.backups["vm"][0]).sort("seq")
    vm, files = rows["vm"][0], rows["file"].to_list()

    def content(f: str) -> bytes:
        with engine.Vhdx.open(store / f, parent_root=store) as v:
            return v.read(0, v.virtual_size)

    def flip_a_sector_it_holds(f: str, before: bytes) -> None:
        """Flips a byte of the first 512-byte sector whose content ``f`` changed from
        ``before``, found in ``f``'s own bytes (its payload, not its metadata)."""
        now = content(f)
        at = next(i for i in range(0, len(now), 512) if now[i : i + 512] != before[i : i + 512])
        data = bytearray((store / f).read_bytes())
        where = data.find(now[at : at + 512])
        assert where > 0
        assert data.count(now[at : at + 512]) == 1
        data[where + 100] ^= 0x01
        (store / f).write_bytes(bytes(data))

    flip_a_sector_it_holds(files[2], content(files[1]))
    assert restore(store, vm, tmp_path / "a.vhdx", seq=1).verified
    assert restore(store, vm, tmp_path / "b.vhdx", seq=2).verified
    assert not restore(store, vm, tmp_path / "c.vhdx", seq=3).verified
    flip_a_sector_it_holds(files[0], bytes(len(content(files[0]))))
    assert not restore(store, vm, tmp_path / "d.vhdx", seq=1).verified


def test_restore_checks_a_store_that_recorded_full_digests(
    chain_run: tuple, tmp_path: Path
) -> None:
    """A manifest written before the content digest holds BLAKE3 of the whole virtual disk:
    ``restore`` verifies against it with that digest, and a wrong one still fails."""
    real, _, root = chain_run
    store = tmp_path / "store"
    shutil.copytree(root / "backups", store)
    doc = json.loads((store / "manifest.json").read_text())
    for row in doc["backups"]:
        with engine.Vhdx.open(store / row["file"], parent_root=store) as v:
            row["digest_at_snapshot"] = row["digest_restored"] = v.digest()
    (store / "manifest.json").write_text(json.dumps(doc))
    vm = real.backups["vm"][0]
    r = restore(store, vm, tmp_path / "a.vhdx")
    assert r.verified
    assert not r.digest.startswith(engine.CONTENT_DIGEST_SCHEME)
    doc["backups"][0]["digest_at_snapshot"] = "0" * 64
    (store / "manifest.json").write_text(json.dumps(doc))
    assert not restore(store, doc["backups"][0]["vm"], tmp_path / "b.vhdx", seq=1).verified


def test_a_full_diff_area_fails_the_same_vms_for_real(tmp_path: Path) -> None:
    # Sequential 64 KiB writes over fully allocated disks: 512 MiB a snapshot could need, a
    # diff area of the 320 MiB minimum.
    sc = tiny(
        csvs=1,
        diff_area_limit="320 MiB",
        allocated="64 MiB",
        write_iops=100,
        csv_bandwidth="50 MB/s",
        workload={
            "locality": "log",
            "region_fraction": 1.0,
            "sizes": [65536],
            "weights": [1.0],
            "read_fraction": 0.3,
        },
    )
    real = run(sc, "full", materialize=tmp_path / "run")
    modelled = run(sc, "full")
    assert not real.vms["ok"].all()
    keys = ["vm", "ok", "result", "bytes_read"]
    assert real.vms.select(keys).equals(modelled.vms.select(keys))
    inv = real.invariant
    assert (inv["chunks_copied"] == inv["real_chunks_copied"]).all()
    # No partial backups: a failed set leaves no file and no manifest entry.
    b = real.backups
    failed = set(real.vms.filter(~pl.col("ok"))["vm"])
    assert not b.filter(pl.col("vm").is_in(failed) & pl.col("committed")).height
    listed = {e.file for e in read_manifest(tmp_path / "run" / "backups")}
    on_disk = {
        str(p.relative_to(tmp_path / "run" / "backups"))
        for p in (tmp_path / "run" / "backups").rglob("*.vhdx")
    }
    assert listed == on_disk


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(MaterializeError, match="must be new or empty"):
        run(tiny(), "full", materialize=busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    with pytest.raises(MaterializeError, match="no manifest"):
        restore(tmp_path, "VM0001", tmp_path / "x.vhdx")


def test_restore_errors_name_what_is_wrong(chain_run: tuple, tmp_path: Path) -> None:
    _, _, root = chain_run
    with pytest.raises(MaterializeError, match="no backup of NOPE disk 0"):
        restore(root, "NOPE", tmp_path / "x.vhdx")
    vm = read_manifest(root / "backups")[0].vm
    with pytest.raises(MaterializeError, match="no backup 9"):
        restore(root, vm, tmp_path / "x.vhdx", seq=9)
    out = tmp_path / "exists.vhdx"
    out.write_bytes(b"x")
    with pytest.raises(MaterializeError, match="never overwrites"):
        restore(root, vm, out)
    assert out.read_bytes() == b"x"


def test_restore_from_a_copied_store_never_reads_the_original(
    chain_run: tuple, tmp_path: Path
) -> None:
    # Issue 15: the incrementals' locators also hold the original store's absolute path.
    _, _, root = chain_run
    copy = tmp_path / "copy"
    shutil.copytree(root / "backups", copy)
    first = read_manifest(copy)[0]
    assert first.kind == "full"
    vm, disk = first.vm, first.disk
    latest = max(e.seq for e in read_manifest(copy) if e.vm == vm and e.disk == disk)
    assert latest > 1
    r = restore(copy, vm, tmp_path / "whole.vhdx", disk=disk)
    assert r.verified
    (copy / first.file).unlink()  # the copy is incomplete: the original still has the file
    with pytest.raises(errors.VhdxParentError):
        restore(copy, vm, tmp_path / "partial.vhdx", disk=disk)
    assert not (tmp_path / "partial.vhdx").exists()


CLI_SCENARIO = """
[cluster]
name = "TINY"
os = "ws2012"
seed = 5

[links]
nic_bandwidth = "10 Gbit/s"
csv_bandwidth = "200 MB/s"
backup_target_bandwidth = "200 MB/s"

[generate]
nodes = 2
csvs = 1
vms = 4
csv_size = "1 TiB"
disk_size = "32 MiB"
allocated = "8 MiB"
write_iops = 100
"""


def test_cli_run_materialize_and_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(CLI_SCENARIO)
    root = tmp_path / "m"
    rc = main(["run", str(scenario), "--backup", "full", "incremental", "--materialize", str(root)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "model vs real volumes" in out
    assert "8 verified" in out
    vm = read_manifest(root / "backups")[0].vm
    rc = main(["restore", str(root), vm, "--out", str(tmp_path / "r.vhdx")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "verified" in out
    assert "0001 full → 0002 incremental" in out


@given(
    st.lists(st.tuples(st.integers(0, (8 << 20) - 1), st.integers(1, 70_000)), max_size=6),
    st.lists(st.tuples(st.integers(0, (10 << 20) - 1), st.integers(1, 70_000)), max_size=6),
)
@settings(max_examples=40, deadline=None)
def test_a_snapshot_copy_is_the_view_and_keeps_its_holes(
    before: list[tuple[int, int]], after: list[tuple[int, int]]
) -> None:
    """``SnapshotView.copy_to`` (what a full backup copies): the copy reads as the view, byte for
    byte, whatever was written before and after the snapshot, and holds no more than the data."""
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "csv").mkdir()
        vol = engine.Volume(root / "csv", root / "diff")
        f = vol.open("disk.bin", create=True)
        f.set_len(8 << 20)
        for i, (at, n) in enumerate(before):
            f.write(at, bytes([i + 1]) * min(n, (8 << 20) - at))
        sid = vol.create_snapshot()
        for i, (at, n) in enumerate(after):
            f.write(at, bytes([i + 100]) * n)
        view = vol.snapshot(sid).open("disk.bin")
        want = view.read(0, view.len())
        assert view.copy_to(root / "copy.bin") == len(want) == 8 << 20
        assert (root / "copy.bin").read_bytes() == want
        held = os.stat(root / "copy.bin").st_blocks * 512
        written = sum(n for _, n in before)
        assert held <= written + 16 * 16384 * (len(before) + len(after)) + 65536
        vol.close()
