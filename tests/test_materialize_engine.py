"""Materialized mode in the engine: the modelled cluster's disks as real VHDX files on real
volumes. On the same scenario and seed, what the model counts (chunks copied per VM, diff-area
bytes and peak per CSV, snapshots a full diff area deleted and when, file sizes) is what the real
volumes did; the real disks are valid VHDX files; a snapshot view reads the disk as it was."""

from __future__ import annotations

import gc
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import vssim
import vssim.errors
from vssim import engine

MiB = 1 << 20
HAVE_QEMU = shutil.which("qemu-img") is not None


def build(
    tmp_path: Path, *, limit: int | None = None, csvs: int = 3, vms: int = 9
) -> tuple[engine.ModelCluster, list[engine.Volume]]:
    c = engine.ModelCluster()
    vols = []
    for i in range(csvs):
        c.add_csv(16 << 30, diff_area_limit=limit)
        (tmp_path / f"csv{i}").mkdir()
        vol = engine.Volume(tmp_path / f"csv{i}", tmp_path / f"diff{i}")
        c.materialize_csv(i, vol)
        vols.append(vol)
    for v in range(vms):
        spec = engine.WorkloadSpec(
            iops=40.0 + 8 * v,
            read_fraction=0.25,
            locality="hotspot" if v % 2 == 0 else "log",
            hot_fraction=0.15,
            hot_share=0.85,
            region_fraction=0.4,
        )
        vm = c.add_vm(
            v % csvs,
            (64 + 64 * (v % 4)) * MiB,
            spec,
            allocated=(v % 3) * 24 * MiB,
            block_size=(8 * MiB) << (v % 3),
            fixed=v % 4 == 0,
            seed=9000 + v,
        )
        c.materialize_vm(vm, f"vm-{vm:04d}/Virtual Hard Disks/disk0.vhdx")
    return c, vols


def real_path(tmp_path: Path, c: engine.ModelCluster, vm: int, csvs: int = 3) -> Path:
    rel = c.materialized_path(vm)
    assert rel is not None
    return tmp_path / f"csv{vm % csvs}" / rel


def assert_csvs_equal(c: engine.ModelCluster) -> None:
    for csv in range(c.csv_count):
        assert c.real_diff_area_bytes(csv) == c.diff_area_bytes(csv)
        assert c.real_peak_diff_area_bytes(csv) == c.peak_diff_area_bytes(csv)
        assert c.real_total_chunks_copied(csv) == c.total_chunks_copied(csv)


def test_real_volumes_copy_exactly_what_the_model_counts(tmp_path: Path) -> None:
    c, vols = build(tmp_path)
    live: list[tuple[int, int]] = []
    copied = np.zeros(c.vm_count, dtype=np.uint64)
    for w in range(5):
        for csv in range(c.csv_count):
            live.append((csv, c.snapshot(csv)))
        if w in (2, 4):
            csv, sid = live.pop(0)
            c.delete_snapshot(csv, sid)
            assert not c.is_live(csv, sid)
            assert c.real_snapshot_id(csv, sid) not in vols[csv].live_snapshots()
        r = c.advance(2.0 * w, 2.0 * w + 2.0)
        np.testing.assert_array_equal(r["real_chunks_copied"], r["chunks_copied"])
        assert (r["real_file_bytes"] >= r["bytes_written"]).all()
        assert len(r["real_deleted_csv"]) == 0
        copied += r["real_chunks_copied"]
        assert_csvs_equal(c)
        for vm in range(c.vm_count):
            assert real_path(tmp_path, c, vm).stat().st_size == c.file_size(vm)
    assert copied.sum() > 1000, "the scenario should copy"
    assert (copied > 0).sum() >= c.vm_count - 1
    c.close_materialized()
    for vm in range(c.vm_count):
        path = real_path(tmp_path, c, vm)
        with engine.Vhdx.open(path) as d:
            assert [f for f in d.check() if f.severity == "error"] == []
            assert d.log_guid == "00000000-0000-0000-0000-000000000000"
        if HAVE_QEMU:
            q = subprocess.run(
                ["qemu-img", "check", "-f", "vhdx", str(path)], capture_output=True, text=True
            )
            assert q.returncode == 0, q.stdout + q.stderr
    with pytest.raises(vssim.EngineStateError, match="close_materialized"):
        c.advance(10.0, 12.0)


def test_the_log_first_used_in_a_later_epoch_rewrites_the_headers_there(tmp_path: Path) -> None:
    # A sequential 4 KiB log over the data of a dynamic disk whose first 1 MiB block is
    # allocated (and holds its data), growing by 1 MiB every 2.5 s: the session starts
    # (headers) in the first window, the first allocation (log entry, headers with the new
    # LogGuid, BAT page) comes windows later, after other snapshots. The header chunks are
    # copied again then, on both sides: the model must know the writer rewrites the headers
    # when it first uses the log.
    c = engine.ModelCluster()
    c.add_csv(8 << 30)
    (tmp_path / "csv").mkdir()
    c.materialize_csv(0, engine.Volume(tmp_path / "csv", tmp_path / "diff"))
    spec = engine.WorkloadSpec(
        iops=100.0,
        read_fraction=0.0,
        sizes=[4096],
        locality="log",
        region_fraction=1.0,
        growth_per_day=engine.DAY_S / 2.5,
    )
    vm = c.add_vm(0, 64 * MiB, spec, allocated=MiB, block_size=MiB, seed=3)
    c.materialize_vm(vm, "vm/disk.vhdx")
    per_window = []
    for w in range(5):
        c.snapshot(0)
        r = c.advance(float(w), float(w + 1))
        assert r["real_chunks_copied"][vm] == r["chunks_copied"][vm]
        per_window.append((int(r["blocks_allocated"][vm]), int(r["chunks_copied"][vm])))
    assert per_window[0][0] == 0, per_window
    assert per_window[1][0] == 0, per_window
    assert any(blocks > 0 for blocks, _ in per_window[2:]), per_window
    assert_csvs_equal(c)
    c.close_materialized()


def test_a_full_diff_area_deletes_the_same_snapshots_at_the_same_writes(tmp_path: Path) -> None:
    c, _vols = build(tmp_path, limit=8 * MiB, csvs=2, vms=6)
    deleted = 0
    for w in range(6):
        for csv in range(c.csv_count):
            c.snapshot(csv)
        r = c.advance(2.0 * w, 2.0 * w + 2.0)
        model = [
            (int(csv), c.real_snapshot_id(int(csv), int(sid)), float(t))
            for csv, sid, t in zip(
                r["deleted_csv"], r["deleted_snapshot"], r["deleted_time"], strict=True
            )
        ]
        real = list(
            zip(
                r["real_deleted_csv"].tolist(),
                r["real_deleted_snapshot"].tolist(),
                r["real_deleted_time"].tolist(),
                strict=True,
            )
        )
        assert real == model
        deleted += len(real)
        np.testing.assert_array_equal(r["real_chunks_copied"], r["chunks_copied"])
        assert_csvs_equal(c)
    assert deleted >= 2
    c.close_materialized()


def test_a_snapshot_view_digests_as_the_disk_did_at_the_snapshot(tmp_path: Path) -> None:
    c, vols = build(tmp_path, csvs=1, vms=3)
    c.advance(0.0, 2.0)
    before: dict[int, str] = {}
    for vm in range(c.vm_count):
        # An independent read-only open of the live file: write-through mode has every
        # acknowledged write's metadata in place (or in the log, replayed in memory).
        rel = c.materialized_path(vm)
        assert rel is not None
        with engine.Vhdx.open(vols[0].open(rel)) as d:
            before[vm] = d.digest()
    sid = c.snapshot(0)
    c.advance(2.0, 6.0)
    real = vols[0].snapshot(c.real_snapshot_id(0, sid))
    for vm in range(c.vm_count):
        rel = c.materialized_path(vm)
        assert rel is not None
        with engine.Vhdx.open(real.open(rel)) as at_snapshot:
            assert at_snapshot.digest() == before[vm]
        with engine.Vhdx.open(vols[0].open(rel)) as now:
            assert now.digest() != before[vm], "the VM kept writing"
    c.close_materialized()


def test_digest_hashes_unallocated_ranges_as_zeros(tmp_path: Path) -> None:
    size = 8 * MiB
    with engine.Vhdx.create(tmp_path / "a.vhdx", size, block_size=MiB) as a:
        empty = a.digest()
        a.write(3 * MiB + 512, b"\x01" * 4096)
        one = a.digest()
    assert empty != one
    raw = bytearray(size)
    raw[3 * MiB + 512 : 3 * MiB + 512 + 4096] = b"\x01" * 4096
    with engine.Vhdx.create(tmp_path / "b.vhdx", size, block_size=2 * MiB, disk_type="fixed") as b:
        b.write(0, bytes(raw))
        assert b.digest() == one


def test_write_through_mode_commits_each_allocating_write(tmp_path: Path) -> None:
    with engine.Vhdx.create(tmp_path / "w.vhdx", 64 * MiB, block_size=MiB) as d:
        assert not d.commit_each_write
        d.commit_each_write = True
        d.write(5 * MiB, b"\x07" * 4096)
        # The BAT change is in place and the log entry written: the file as it is on disk now
        # (copied: the writer holds it locked) reads it, as after a crash at this instant.
        shutil.copyfile(tmp_path / "w.vhdx", tmp_path / "w-now.vhdx")
        with engine.Vhdx.open(tmp_path / "w-now.vhdx") as r:
            assert r.read(5 * MiB, 4096) == b"\x07" * 4096


def test_bad_order_is_refused(tmp_path: Path) -> None:
    c = engine.ModelCluster()
    c.add_csv(8 << 30)
    c.add_csv(8 << 30, chunk_size=4096)
    a = c.add_vm(0, 64 * MiB, block_size=8 * MiB)
    b = c.add_vm(0, 64 * MiB, block_size=8 * MiB)
    with pytest.raises(vssim.EngineStateError, match="not materialized"):
        c.materialize_vm(a, "a.vhdx")
    (tmp_path / "csv").mkdir()
    vol = engine.Volume(tmp_path / "csv", tmp_path / "diff")
    with pytest.raises(vssim.InvalidArgumentError, match="16384-byte chunks"):
        c.materialize_csv(1, vol)
    c.materialize_csv(0, vol)
    c.materialize_vm(a, "vm-a/disk.vhdx")
    assert c.materialized_path(a) == "vm-a/disk.vhdx"
    assert c.materialized_path(b) is None
    with pytest.raises(vssim.EngineStateError, match="already materialized"):
        c.materialize_vm(a, "vm-a/other.vhdx")
    with pytest.raises(vssim.InvalidArgumentError, match="already exists"):
        c.materialize_vm(b, "vm-a/disk.vhdx")
    with pytest.raises(vssim.errors.PathOutsideVolumeError):
        c.materialize_vm(b, "../escape.vhdx")
    c.snapshot(0)
    with pytest.raises(vssim.EngineStateError, match="before the first"):
        c.materialize_vm(b, "vm-b/disk.vhdx")
    with pytest.raises(vssim.InvalidArgumentError):
        c.real_snapshot_id(1, 1)
    c.close_materialized()
    with pytest.raises(vssim.EngineStateError, match="closed"):
        c.snapshot(0)


def test_dropping_the_cluster_closes_its_disks_cleanly(tmp_path: Path) -> None:
    c, _vols = build(tmp_path, csvs=1, vms=2)
    c.snapshot(0)
    c.advance(0.0, 1.0)
    paths = [real_path(tmp_path, c, vm, csvs=1) for vm in range(c.vm_count)]
    del c
    gc.collect()
    for path in paths:
        with engine.Vhdx.open(path) as d:
            assert not d.replayed_log
            assert [f for f in d.check() if f.severity == "error"] == []


def test_a_failed_real_write_stops_the_real_side(tmp_path: Path) -> None:
    c, vols = build(tmp_path, csvs=1, vms=2)
    c.snapshot(0)
    c.advance(0.0, 1.0)
    vols[0].close()
    with pytest.raises(vssim.EngineStateError, match="was closed"):
        c.advance(1.0, 2.0)
    with pytest.raises(vssim.EngineStateError, match="no longer match the model"):
        c.advance(2.0, 3.0)
    with pytest.raises(vssim.EngineStateError, match="no longer match the model"):
        c.snapshot(0)
