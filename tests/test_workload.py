"""The modelled cluster: engine-generated workloads fed into the CSV trackers."""

from __future__ import annotations

import numpy as np
import pytest

import vssim
from vssim import engine

GiB = 1 << 30
MiB = 1 << 20


def build(limit: int | None = None, vms: int = 16, csvs: int = 2) -> engine.ModelCluster:
    c = engine.ModelCluster()
    for _ in range(csvs):
        c.add_csv(200 * GiB, diff_area_limit=limit)
    for v in range(vms):
        c.add_vm(
            v % csvs,
            8 * GiB,
            engine.WorkloadSpec(
                iops=150 + v, locality=["uniform", "hotspot", "zipf", "log"][v % 4]
            ),
            allocated=(v % 4) * GiB,
            seed=7000 + v,
        )
    return c


def test_window_columns_and_attribution() -> None:
    c = build()
    snaps = [c.snapshot(i) for i in range(c.csv_count)]
    r = c.advance(0.0, 30.0)
    assert set(r) >= {"writes", "bytes_written", "reads", "chunks_copied", "blocks_allocated"}
    assert r["writes"].dtype == np.uint64
    assert len(r["writes"]) == c.vm_count
    assert r["writes"].sum() > 0
    for csv in range(c.csv_count):
        assert r["chunks_copied"][csv :: c.csv_count].sum() == c.total_chunks_copied(csv)
        assert c.diff_area_bytes(csv) == c.total_chunks_copied(csv) * 16384
        assert c.is_live(csv, snaps[csv])
    # Changed-block tracking saw the same writes.
    assert all(c.changed_bytes(v) > 0 for v in range(c.vm_count))


def test_same_seed_same_figures_whatever_the_windows() -> None:
    a, b = build(), build()
    for c in (a, b):
        for i in range(c.csv_count):
            c.snapshot(i)
    ra = a.advance(0.0, 20.0)
    b.advance(0.0, 3.0)
    rb2 = b.advance(3.0, 20.0)
    assert (ra["writes"] >= rb2["writes"]).all()
    for csv in range(a.csv_count):
        assert a.diff_area_bytes(csv) == b.diff_area_bytes(csv)
    for v in range(a.vm_count):
        oa, la = a.changed_extents(v)
        ob, lb = b.changed_extents(v)
        assert oa.tolist() == ob.tolist()
        assert la.tolist() == lb.tolist()


def test_snapshot_lifetime_costs_diff_area() -> None:
    """A longer-lived snapshot holds more diff area: the coupling the planner shows."""
    short, long_ = build(), build()
    for c in (short, long_):
        c.snapshot(0)
    short.advance(0.0, 10.0)
    long_.advance(0.0, 60.0)
    assert long_.peak_diff_area_bytes(0) > short.peak_diff_area_bytes(0)


def test_overflow_deletes_and_reports() -> None:
    c = build(limit=32 * MiB)
    sid = c.snapshot(0)
    r = c.advance(0.0, 60.0)
    assert sid in r["deleted_snapshot"].tolist()
    assert not c.is_live(0, sid)
    assert r["deleted_time"].dtype == np.float64


def test_stopped_vm_is_silent() -> None:
    c = build()
    c.set_running(3, False)
    r = c.advance(0.0, 5.0)
    assert r["writes"][3] == 0
    assert r["writes"][2] > 0


def test_bad_input() -> None:
    c = build()
    with pytest.raises(vssim.InvalidArgumentError, match="locality"):
        c.add_vm(0, GiB, engine.WorkloadSpec(locality="random"))
    with pytest.raises(vssim.InvalidArgumentError, match="block_size"):
        c.add_vm(0, GiB, block_size=3 * MiB)
    with pytest.raises(vssim.InvalidArgumentError, match="not a CSV id"):
        c.snapshot(5)
    with pytest.raises(vssim.InvalidArgumentError, match="read_fraction"):
        c.add_vm(0, GiB, engine.WorkloadSpec(read_fraction=2.0))
    with pytest.raises(vssim.InvalidArgumentError, match="window"):
        c.advance(3.0, 1.0)
    assert c.vm_count == 16


@pytest.mark.parametrize("locality", ["uniform", "hotspot", "zipf", "log"])
def test_generator_is_the_clusters_stream(locality: str) -> None:
    """``WorkloadGenerator`` gives the writes ``ModelCluster`` runs for the same VM and seed."""
    spec = engine.WorkloadSpec(iops=180.0, read_fraction=0.25, locality=locality)
    c = engine.ModelCluster()
    c.add_csv(100 * GiB)
    c.add_vm(0, 8 * GiB, spec, allocated=8 * GiB, fixed=True, seed=4242)
    r = c.advance(0.0, 40.0)
    gen = engine.WorkloadGenerator(8 * GiB, spec, seed=4242)
    times, offs, lens, reads, read_bytes = gen.generate(0.0, 40.0)
    assert (offs.dtype, lens.dtype, times.dtype) == (np.uint64, np.uint32, np.float64)
    assert len(offs) == int(r["writes"][0])
    assert int(lens.sum()) == int(r["bytes_written"][0])
    assert (reads, read_bytes) == (int(r["reads"][0]), int(r["bytes_read"][0]))
    # Changed-block tracking saw exactly these writes.
    t = engine.ChangeTracker("g", 8 * GiB)
    t.mark(offs, lens)
    assert t.changed_bytes == c.changed_bytes(0)
    # Any cut of time into windows gives the same stream, in time order.
    a = gen.generate(0.0, 13.7)
    b = gen.generate(13.7, 40.0)
    assert np.array_equal(np.concatenate([a[1], b[1]]), offs)
    assert np.all(np.diff(times) >= 0)
    assert np.all(offs % 4096 == 0)
    assert np.all(offs + lens <= 8 * GiB)


def test_generator_refuses_bad_input() -> None:
    with pytest.raises(vssim.InvalidArgumentError, match="locality"):
        engine.WorkloadGenerator(GiB, engine.WorkloadSpec(locality="random"))
    with pytest.raises(vssim.InvalidArgumentError, match="read_fraction"):
        engine.WorkloadGenerator(GiB, engine.WorkloadSpec(read_fraction=2.0))
    gen = engine.WorkloadGenerator(GiB, engine.WorkloadSpec(iops=10.0))
    with pytest.raises(vssim.InvalidArgumentError, match="window"):
        gen.generate(5.0, 1.0)
    assert gen.generate(3.0, 3.0)[1].size == 0


def test_workload_spec_is_checked_once_and_names_the_keyword() -> None:
    """A bad value is refused when the spec is built, naming the keyword and its limits; the
    same spec object then serves any number of VMs and generators."""
    for kwargs, match in [
        ({"iops": 1e12}, r"`iops`: 1000000000000: expected 0 to 10,000,000"),
        ({"iops": float("nan")}, "`iops`"),
        ({"read_fraction": -0.1}, r"`read_fraction`: -0.1: expected 0 to 1"),
        ({"locality": "hotspot", "hot_fraction": 0.0}, "`hot_fraction`"),
        ({"locality": "zipf", "theta": 9.0}, r"`theta`: 9: expected 0 to 5"),
        ({"sizes": [1000]}, "`sizes`"),
        ({"weights": [1.0]}, "`weights`: given without `sizes`"),
        ({"diurnal_amplitude": -0.5}, "`diurnal_amplitude`"),
        ({"diurnal_amplitude": 0.5, "diurnal_period_s": 0.0}, "`diurnal_period_s`"),
    ]:
        with pytest.raises(vssim.InvalidArgumentError, match=match):
            engine.WorkloadSpec(**kwargs)  # type: ignore[arg-type]
    spec = engine.WorkloadSpec(iops=50.0, locality="zipf")
    assert (spec.iops, spec.locality) == (50.0, "zipf")
    assert spec == engine.WorkloadSpec(iops=50.0, locality="zipf") != engine.WorkloadSpec()
    c = engine.ModelCluster()
    c.add_csv(100 * GiB)
    a = c.add_vm(0, GiB, spec, seed=1)
    b = c.add_vm(0, GiB, spec, seed=2)
    r = c.advance(0.0, 10.0)
    assert r["writes"][a] > 0
    assert r["writes"][b] > 0
    # No spec: the keywords' defaults.
    assert engine.WorkloadGenerator(GiB).generate(0.0, 10.0)[1].size == (
        engine.WorkloadGenerator(GiB, engine.WorkloadSpec()).generate(0.0, 10.0)[1].size
    )


def test_huge_disks_cost_what_their_guests_touch() -> None:
    """Issue 15 item 11: a VM with a 64 TiB disk cost ~9 MB of memory before any write (a flat
    block table of the whole disk); now it costs what its writes touch."""

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    c = engine.ModelCluster()
    # 16 PiB: the largest volume a copy-on-write tracker takes (2^40 chunks of 16 KiB), room for
    # the 50 disks of 64 TiB.
    c.add_csv(1 << 54)
    before = rss()
    n = 50
    for v in range(n):
        c.add_vm(0, engine.VHDX_MAX_VIRTUAL_SIZE, engine.WorkloadSpec(iops=10.0), seed=v)
    per_vm = (rss() - before) / n
    assert per_vm < 1 << 20, f"{per_vm / 2**20:.1f} MiB per VM"
    c.snapshot(0)
    r = c.advance(0.0, 5.0)
    assert int(r["blocks_allocated"].sum()) > 0
