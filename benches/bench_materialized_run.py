"""Materialized mode end to end: ``examples/materialized-64n-400vm.toml`` (64 nodes, 400 VMs,
64 MiB dynamic VHDX disks, 20 write IOPS each) backed up full then incremental with real
files (``make bench``; 8 VMs of 64 MiB under ``--benchmark-disable``), beside its peers in the
same run: a plain copy of the same VHDX files (``shutil.copyfile``, the same bytes the full backup
read: on Linux ``sendfile``, which reads the sparse files' holes as zeros and writes them out
dense, and does not sync), and a sparse-aware copy of them (``cp --sparse=always``: only the data,
holes left holes). At full scale it needs about 15 GB of free disk while it runs and frees it at
the end. Reported: backup bytes per second of all three, the ratios (``to_plain_copy_ratio``,
``to_sparse_copy_ratio``), and the invariant's figures (model vs real)."""

from __future__ import annotations

import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from vssim.metrics import RunResult, run
from vssim.scale.materialize import BackupStore, MaterializedBackend
from vssim.scenario import parse_scenario

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "materialized-64n-400vm.toml"


def scenario(full_scale: bool) -> Any:
    raw: dict[str, Any] = tomllib.loads(EXAMPLE.read_text())
    if not full_scale:
        raw["generate"].update(nodes=4, csvs=2, vms=8, disk_size="64 MiB", allocated="16 MiB")
    return parse_scenario(raw, EXAMPLE)


def plain_copy(src: Path, dest: Path, sparse: bool = False) -> tuple[int, float]:
    """Copies every VHDX file under ``src`` (the run's live disks) to ``dest``, one at a time,
    removing each copy once it is timed (a dense copy of 400 files would need tens of GB);
    returns the bytes copied (the files' lengths) and the seconds the copies took. ``sparse``:
    with ``cp --sparse=always`` instead of ``shutil.copyfile``."""
    n, spent = 0, 0.0
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*.vhdx")):
        out = dest / "copy.vhdx"
        start = time.perf_counter()
        if sparse:
            subprocess.run(["cp", "--sparse=always", str(f), str(out)], check=True)
        else:
            shutil.copyfile(f, out)
        spent += time.perf_counter() - start
        n += f.stat().st_size
        out.unlink()
    return n, spent


class BackupClock:
    """Seconds a run spends backing up (copying and verifying backup files, and making them
    durable), apart from simulating the guests: it wraps the backend's backup steps and takes
    out the guest writes a backup first brings its CSV up to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seconds = 0.0
        self.depth = 0
        for cls, name in (
            (MaterializedBackend, "write_backup"),
            (BackupStore, "save"),
            (MaterializedBackend, "sync"),
        ):
            monkeypatch.setattr(cls, name, self.wrap(getattr(cls, name), name == "sync"))

    def wrap(self, fn: Any, simulation: bool) -> Any:
        def timed(*args: Any, **kw: Any) -> Any:
            if simulation and self.depth == 0:
                return fn(*args, **kw)
            start = time.perf_counter()
            self.depth += 1
            try:
                return fn(*args, **kw)
            finally:
                self.depth -= 1
                spent = time.perf_counter() - start
                self.seconds += -spent if simulation else spent if self.depth == 0 else 0.0

        return timed


@pytest.mark.benchmark(group="materialized-run")
def test_materialized_full_and_incremental(
    benchmark: Any, full_scale: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = scenario(full_scale)
    root = tmp_path / "run"
    clock = BackupClock(monkeypatch)
    start = time.perf_counter()
    r: RunResult = benchmark.pedantic(
        run,
        args=(sc, ["full", "incremental"]),
        kwargs={"materialize": root, "interval_s": 60.0, "check_files": False},
        rounds=1,
        iterations=1,
    )
    wall = time.perf_counter() - start
    assert r.backups is not None
    assert r.invariant is not None
    vms = r.vms
    assert vms["ok"].all()
    assert r.backups["verified"].all()
    assert (vms["real_bytes_read"] == vms["bytes_read"]).all()
    assert (vms["real_chunks_copied"] == vms["chunks_copied"]).all()
    inv = r.invariant
    assert (inv["chunks_copied"] == inv["real_chunks_copied"]).all()
    assert (inv["peak_diff_area_bytes"] == inv["real_peak_diff_area_bytes"]).all()
    full_bytes = int(vms.filter(pl.col("backup") == 0)["bytes_read"].sum())
    copied, plain_s = plain_copy(root / "csvs", tmp_path / "plain")
    sparse_copied, sparse_s = plain_copy(root / "csvs", tmp_path / "plain", sparse=True)
    assert copied == sparse_copied > 0
    # Gigabytes at full scale: pytest keeps its last temporary folders, so free them now.
    shutil.rmtree(tmp_path)
    backup_bytes = int(vms["bytes_read"].sum())
    benchmark.extra_info.update(
        vms=len(sc.vms),
        writes_simulated=r.writes_simulated,
        backup_bytes=backup_bytes,
        full_backup_bytes=full_bytes,
        backup_bytes_per_s=backup_bytes / wall,
        plain_copy_bytes=copied,
        plain_copy_bytes_per_s=copied / plain_s,
        to_plain_copy_ratio=(backup_bytes / wall) / (copied / plain_s),
        sparse_copy_bytes_per_s=copied / sparse_s,
        to_sparse_copy_ratio=(backup_bytes / wall) / (copied / sparse_s),
        wall_s=wall,
        # The backups alone (copy, verification, sync), without the guests' simulated writes.
        backup_s=clock.seconds,
        backup_only_to_plain_copy_ratio=(backup_bytes / clock.seconds) / (copied / plain_s),
        chunks_copied=int(inv["chunks_copied"].sum()),
        backup_files=r.backups.height,
    )
