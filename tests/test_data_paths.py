"""Data paths (issue 12 item 3): max-min fair links, the guests' and copy-on-write I/O on the
CSVs' storage, redirected access as Windows does it (2008 R2 with a hardware provider only while
the snapshot is taken; reads and writes at the engine's byte counts), compression at the
target."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from scale_scenarios import small, small_raw
from vssim import engine
from vssim.metrics import RunResult, run
from vssim.scale.fair_share_links import FairShareLinks, max_min_rates
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scale.storage_load import StorageLoad, guest_key
from vssim.scenario import Scenario, load_scenario, parse_scenario
from vssim.scenario.engine_streams import stream_seed, workload_spec
from vssim.sim.links import TARGET, csv_link

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# --- max-min fairness ----------------------------------------------------------------------

LINKS = [f"l{i}" for i in range(6)]


def check_max_min(
    capacity: dict[str, float],
    classes: list[tuple[tuple[str, ...], int]],
    background: list[tuple[str, float, int]],
    class_rate: list[float],
    bg_rate: list[float],
) -> None:
    """The allocation is feasible and every flow is bottlenecked: on some link it crosses, the
    link is full and no flow on it moves faster (a background flow may instead be at its
    demand). Rates are per transfer and per background flow."""
    used = dict.fromkeys(capacity, 0.0)
    on: dict[str, list[float]] = {link: [] for link in capacity}
    for (path, n), r in zip(classes, class_rate, strict=True):
        for link in path:
            used[link] += n * r
            on[link].append(r)
    for (link, _, n), r in zip(background, bg_rate, strict=True):
        used[link] += n * r
        on[link].append(r)
    tol = 1e-6
    for link, u in used.items():
        assert u <= capacity[link] * (1 + tol), (link, u, capacity[link])

    def bottleneck(link: str, r: float) -> bool:
        full = used[link] >= capacity[link] * (1 - tol)
        return full and all(r >= x * (1 - tol) for x in on[link])

    for (path, _), r in zip(classes, class_rate, strict=True):
        assert r > 0
        assert any(bottleneck(link, r) for link in path), (path, r)
    for (link, demand, _), r in zip(background, bg_rate, strict=True):
        assert r <= demand * (1 + tol)
        assert r >= demand * (1 - tol) or bottleneck(link, r), (link, demand, r)


flows = st.tuples(
    st.dictionaries(
        st.sampled_from(LINKS), st.floats(1e6, 1e10), min_size=len(LINKS), max_size=len(LINKS)
    ),
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(LINKS), min_size=1, max_size=4, unique=True).map(tuple),
            st.integers(1, 5),
        ),
        min_size=1,
        max_size=12,
    ),
    st.lists(
        st.tuples(st.sampled_from(LINKS), st.floats(1e5, 1e10), st.integers(1, 300)), max_size=6
    ),
)


@settings(max_examples=300, deadline=None)
@given(flows)
def test_max_min_rates_bottleneck_every_transfer(case: Any) -> None:
    capacity, classes, background = case
    class_rate, bg_rate = max_min_rates(capacity, classes, background)
    check_max_min(capacity, classes, background, class_rate, bg_rate)


def test_max_min_checker_rejects_equal_shares() -> None:
    """The check fails on the old allocation (an equal share of every link, the smallest along
    the path): a transfer left below an idle capacity is not bottlenecked."""
    capacity = {"target": 200.0, "csv": 400.0}
    classes = [(("target", "csv"), 2), (("csv",), 1)]
    equal = [min(200 / 2, 400 / 3), 400 / 3]
    with pytest.raises(AssertionError):
        check_max_min(capacity, classes, [], equal, [])
    rates, _ = max_min_rates(capacity, classes, [])
    assert rates == pytest.approx([100.0, 200.0])


class _Checked(FairShareLinks):
    """Fair-share links that check the allocation the engine made at every instant it made one
    (after its last fill of the instant: the rates that hold until the next)."""

    checks = 0

    def _schedule(self, finished: list[int], next_in: float) -> None:
        names = list(self.capacity)
        classes = self.core.classes()
        flows = self.core.flows()
        check_max_min(
            self.capacity,
            [(tuple(names[i] for i in path), n) for path, n, _ in classes],
            [(names[link], demand, n) for link, demand, n, _ in flows],
            [rate for _, _, rate in classes],
            [rate for _, _, _, rate in flows],
        )
        _Checked.checks += 1
        super()._schedule(finished, next_in)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 5.0),
            st.integers(1, 3_000_000_000),
            st.booleans(),
            st.lists(st.sampled_from(["NODE01", "NODE02", "NODE03"]), max_size=2),
            st.sampled_from([0, 1]),
        ),
        min_size=1,
        max_size=15,
    ),
    st.lists(st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 3e9), st.integers(1, 50)), max_size=4),
)
def test_transfers_move_at_max_min_rates_at_every_arrival_and_departure(
    transfers: list[Any], loads: list[Any]
) -> None:
    sc = small(vms=2, nodes=3, target="1 GB/s", csv_bandwidth="800 MB/s")
    env = simpy.Environment()
    links = _Checked(env, sc)
    done: list[float] = []

    def one(delay: float, n: int, target: bool, nodes: list[str], csv: int) -> Any:
        yield env.timeout(delay)
        yield from links.transfer(n, sc.csvs[csv], tuple(nodes), target)
        done.append(env.now)

    def load(at: float, rate: float, n: int) -> Any:
        yield env.timeout(at)
        links.set_flows("bg", {csv_link(sc.csvs[0].name): ((rate / n, n),)})

    for t in transfers:
        env.process(one(*t))
    for item in loads:
        env.process(load(*item))
    env.run()
    assert len(done) == len(transfers)
    assert _Checked.checks > 0
    # Bytes are conserved: each CSV link carried its transfers (and its background).
    moved = sum(n for _, n, _, _, c in transfers if c == 1)
    assert links.link_bytes[csv_link(sc.csvs[1].name)] == pytest.approx(moved, abs=len(transfers))


def test_a_saved_state_takes_the_capacity_the_copies_leave() -> None:
    """Two copies bottlenecked at a 200 MB/s target and a VM's 2 GB saved state on the same
    400 MB/s CSV: the copies get 100 MB/s each and the saved state the 200 MB/s left, so it takes
    10 s — equal shares of the CSV (133 MB/s each) left 67 MB/s idle and took 15 s."""
    sc = small(vms=2, target="200 MB/s", csv_bandwidth="400 MB/s")
    env = simpy.Environment()
    links = FairShareLinks(env, sc)
    csv = sc.csvs[0]
    took: dict[str, float] = {}

    def p(name: str, n: int, target: bool) -> Any:
        took[name] = yield from links.transfer(n, csv, target=target)

    env.process(p("copy a", 4_000_000_000, True))
    env.process(p("copy b", 4_000_000_000, True))
    env.process(p("saved state", 2_000_000_000, False))
    env.run()
    assert took["saved state"] == pytest.approx(10.0)
    # The copies: 100 MB/s while it ran (1 GB each), then 100 MB/s still (the target).
    assert took["copy a"] == pytest.approx(40.0)


# --- the CSVs' own I/O -------------------------------------------------------------------------


def test_guest_io_loads_the_csv_link_as_background() -> None:
    sc = small(vms=20, csvs=2, write_iops=100, csv_bandwidth="200 MB/s", target="100 GB/s")
    env = simpy.Environment()
    backend = ModelClusterBackend(sc, clock=lambda: float(env.now))
    links = FairShareLinks(env, sc)
    StorageLoad(backend, links)
    for c in sc.csvs:
        expected = 0.0
        for vm in sc.vms_by_csv[c.name]:
            spec = workload_spec(vm.workload)
            expected += spec.iops * spec.mean_size * len(vm.disks)
        groups = links.background[guest_key(c.name)][csv_link(c.name)]
        # One flow per VM (equal workloads: one group), their demands the VMs' mean rates.
        assert sum(n for _, n in groups) == len(sc.vms_by_csv[c.name])
        assert sum(d * n for d, n in groups) == pytest.approx(expected)
        assert 0 < expected < 200e6
    # A copy of the CSV moves at what the guests leave of its storage (each guest's demand is
    # below its fair share, so every guest gets it).
    csv = sc.csvs[0]
    guest = links.load[csv_link(csv.name)]
    took: list[float] = []

    def p() -> Any:
        took.append((yield from links.transfer(1_000_000_000, csv, target=True)))

    env.process(p())
    env.run()
    assert took[0] == pytest.approx(1e9 / (200e6 - guest), rel=1e-9)


def test_each_guest_is_its_own_flow() -> None:
    """Ten guests at 15 MB/s beside four copies on a 200 MB/s CSV: max-min gives every flow
    200 / 14 = 14.3 MB/s (each guest's demand is above it), so the copies of 100 MB take 7 s —
    the guests keep 143 MB/s. One aggregated guest flow would be held to 40 MB/s, a fifth of the
    link, and the copies would take 2.5 s."""
    sc = small(vms=2, target="100 GB/s", csv_bandwidth="200 MB/s")
    env = simpy.Environment()
    links = FairShareLinks(env, sc)
    csv = sc.csvs[0]
    links.set_flows("guests", {csv_link(csv.name): ((15e6, 10),)})
    took: list[float] = []

    def p() -> Any:
        took.append((yield from links.transfer(100_000_000, csv, target=True)))

    for _ in range(4):
        env.process(p())
    env.run()
    assert took == pytest.approx([7.0] * 4)


def test_copy_on_write_loads_the_csv_link_while_a_snapshot_lives() -> None:
    sc = small(vms=10, csvs=1, write_iops=200)
    env = simpy.Environment()
    backend = ModelClusterBackend(sc, clock=lambda: float(env.now))
    links = FairShareLinks(env, sc)
    load = StorageLoad(backend, links)
    key = f"cow:{sc.csvs[0].name}"
    backend.advance_to(10.0)
    load.tick(10.0)
    assert key not in links.background  # no snapshot, no copies
    handle = backend.create_snapshot(sc.csvs[0], 1)
    # However the interval is cut into windows, the tick sets the interval's rate.
    for t in (11.0, 12.5, 17.0, 20.0):
        backend.advance_to(t)
    chunks = backend.model.total_chunks_copied(0)
    assert chunks > 0
    load.tick(20.0)
    rate = sum(d * n for d, n in links.background[key][csv_link(sc.csvs[0].name)])
    # Read the old chunk, write it into the diff area (on the CSV): 2 × 16 KiB a chunk.
    assert rate == pytest.approx(chunks * 2 * engine.DEFAULT_CHUNK_SIZE / 10.0)
    backend.delete_snapshot(sc.csvs[0], handle)
    backend.advance_to(30.0)
    load.tick(30.0)
    assert key not in links.background


# --- redirected access -------------------------------------------------------------------------


def _snapshot_creation(r: RunResult) -> dict[int, float]:
    """Per set, the provider's snapshot creation: BeginPrepareSnapshot to
    PostFinalCommitSnapshots."""
    p = r.phases.group_by("job").agg(
        pl.col("start").filter(pl.col("event") == "BeginPrepareSnapshot").min().alias("a"),
        pl.col("end").filter(pl.col("event") == "PostFinalCommitSnapshots").max().alias("b"),
    )
    return {j: b - a for j, a, b in p.iter_rows()}


def test_2008r2_hardware_provider_redirects_only_while_the_snapshot_is_taken() -> None:
    hw = run(small("ws2008r2", provider="hardware"), "full")
    sw = run(small("ws2008r2", provider="system"), "full")
    made = _snapshot_creation(hw)
    window = dict(hw.jobs.select("job", "window_s").iter_rows())
    for job, redirected in hw.csvs.select("job", "redirected_s").iter_rows():
        # Redirected from the end of the prepare steps to the final commit: most of the
        # snapshot's creation, and a small part of the set's window.
        assert 0.7 * made[job] < redirected <= made[job], job
        assert redirected < 0.5 * window[job]
    sw_window = dict(sw.jobs.select("job", "window_s").iter_rows())
    for job, redirected in sw.csvs.select("job", "redirected_s").iter_rows():
        assert redirected > 0.8 * sw_window[job]  # the whole backup (but the ownership move)


def _redirect_spans(r: RunResult) -> list[tuple[int, str, float, float]]:
    """(job, CSV, from, to) of every stretch of redirected access, from the timeline."""
    ph = r.phases.sort("seq")
    out = []
    for (job,), part in ph.group_by(["job"], maintain_order=True):
        on: dict[str, float] = {}
        for event, start, end in part.select("event", "start", "end").iter_rows():
            if " in redirected access (" in event:
                on[event.split(" in redirected access (")[0]] = end
            elif event.endswith(" back to direct I/O"):
                csv = event.removesuffix(" back to direct I/O")
                out.append((int(job), csv, on.pop(csv), start))
    return out


def _engine_io(sc: Scenario, names: list[str], t0: float, t1: float) -> tuple[int, int, int]:
    """What the engine's streams of the VMs ``names`` do in ``[t0, t1)``: bytes written, bytes
    read, writes."""
    model = ModelClusterBackend(sc)  # each disk's spec as the engine runs it (calibrated)
    written = read = writes = 0
    for vm in (v for v in sc.vms if v.name in names):
        for j, d in enumerate(vm.disks):
            gen = engine.WorkloadGenerator(
                d.virtual_size,
                model.model.workload(model.disks[vm.name][j]),
                seed=stream_seed(sc.seed, vm, j),
                used=d.allocated_size or None,
            )
            _, _, lengths, _, read_bytes = gen.generate(t0, t1)
            written += int(np.asarray(lengths, dtype=np.uint64).sum())
            read += int(read_bytes)
            writes += len(lengths)
    return written, read, writes


@pytest.mark.parametrize("os", ["ws2012", "ws2008r2"])
def test_redirected_bytes_are_the_engines_reads_and_writes(os: str) -> None:
    # Every VM backed up online: no saved state stops a guest's I/O inside the spans.
    raw = small_raw(os)
    raw["generate"]["integration_services"] = 1.0
    sc = parse_scenario(raw, Path(f"small-{os}.toml"))
    r = run(sc, "full")
    spans = _redirect_spans(r)
    assert spans
    coord = {(j, c): n for j, c, n in r.csvs.select("job", "csv", "coordinator").iter_rows()}
    got = {(j, c): b for j, c, b in r.csvs.select("job", "csv", "redirected_bytes").iter_rows()}
    for job, csv, t0, t1 in spans:
        remote = [
            vm.name for vm in sc.vms_by_csv[csv] if vm.running and vm.node != coord[(job, csv)]
        ]
        written, read, writes = _engine_io(sc, remote, t0, t1)
        assert read > 0
        assert writes > 0
        # Exactly what the other nodes' VMs read and wrote meanwhile: not their writes alone,
        # not a fixed size per write.
        assert got[(job, csv)] == written + read, (job, csv)
        assert got[(job, csv)] != written
        assert not math.isclose(got[(job, csv)], 34 * 1024 * writes, rel_tol=0.01)


# --- compression at the target -----------------------------------------------------------------


def test_compression_shrinks_what_crosses_to_the_target() -> None:
    sc = small(vms=2, target="100 MB/s", csv_bandwidth="10 GB/s")
    packed = small(vms=2, target="100 MB/s", csv_bandwidth="10 GB/s")
    import dataclasses

    from vssim.scenario import Target

    packed = dataclasses.replace(packed, target=Target(compression=2.0))
    took: dict[float, float] = {}
    for s in (sc, packed):
        env = simpy.Environment()
        links = FairShareLinks(env, s)

        def p(links: FairShareLinks = links, s: Scenario = s) -> Any:
            took[s.target.compression] = yield from links.transfer(
                1_000_000_000, s.csvs[0], target=True
            )

        env.process(p())
        env.run()
        assert links.link_bytes[TARGET] == round(1e9 / s.target.compression)
        assert links.link_bytes[csv_link(s.csvs[0].name)] == 1_000_000_000
    assert took[1.0] == pytest.approx(10.0)
    assert took[2.0] == pytest.approx(5.0)


def test_a_compressing_target_stores_less_and_the_tables_say_so() -> None:
    import dataclasses

    from vssim.scenario import Target

    plain = small(vms=12, target="200 MB/s")
    packed = dataclasses.replace(plain, target=Target(compression=2.0))
    a, b = run(plain, "full"), run(packed, "full")
    assert a.summary["target_bytes"][0] == a.summary["bytes_read"][0]
    assert b.summary["target_bytes"][0] == round(b.summary["bytes_read"][0] / 2.0)
    assert (b.vms["target_bytes"] == (b.vms["bytes_read"] / 2.0).round().cast(pl.Int64)).all()
    # Target-bound: the backup takes about half as long.
    assert b.summary["backup_window_s"][0] < 0.7 * a.summary["backup_window_s"][0]


# --- counts read without advancing -------------------------------------------------------------


@pytest.mark.parametrize("case", ["ws2008r2", "ws2012", "csv-full"])
def test_asking_a_quiet_window_changes_no_figure(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redirected access asks for the guests' bytes as it switches on and off: a short window
    # that can change nothing but counts is read off the streams (the CSV advances later, in a
    # longer window); one within reach of Hyper-V's levels is advanced (csv-full: VMs pause).
    # Every table is the one of a run that advances each time instead.
    sc = load_scenario(EXAMPLES / "csv-full.toml") if case == "csv-full" else small(case)
    asked: list[bool] = []
    peek = ModelClusterBackend._peek

    def counting(self: ModelClusterBackend, *args: Any) -> Any:
        got = peek(self, *args)
        asked.append(got is not None)
        return got

    monkeypatch.setattr(ModelClusterBackend, "_peek", counting)
    quiet = run(sc, ["full", "incremental"])
    monkeypatch.setattr(ModelClusterBackend, "_peek", lambda *_: None)
    advancing = run(sc, ["full", "incremental"])
    if case != "ws2012":
        assert any(asked)  # the quiet path ran
    if case == "csv-full":
        assert not all(asked)  # and the advancing one
        assert quiet.summary["vms_paused"].max() > 0
    for name in ("vms", "csvs", "jobs", "nodes", "summary", "phases"):
        assert getattr(quiet, name).equals(getattr(advancing, name)), name
    assert quiet.writes_simulated == advancing.writes_simulated
