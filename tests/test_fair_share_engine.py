"""``FairShareLinks`` on the engine's ``links::FairShare`` gives the figures the Python model
gave (``fair_share_reference``, the model the golden figures were recorded with), float for
float: random runs of transfers that start together and apart, share links, are interrupted
part-way, with background flows set, changed and removed under them, on links that weigh a byte
as a byte and on a compressing target — every transfer's finish instant and duration, the bytes
moved over every link at random instants, and the links' bytes, busy time and load, and the
NICs' bytes at the end."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from fair_share_reference import ReferenceLinks
from scale_scenarios import small_raw
from vssim import engine
from vssim.errors import InvalidArgumentError
from vssim.scale.fair_share_links import FairShareLinks
from vssim.scenario import Scenario, parse_scenario
from vssim.sim.links import csv_link, nic_link

NODES = ["NODE01", "NODE02", "NODE03"]
#: The links background flows go on (the target carries transfers only, as in a run).
FLOW_LINKS = [csv_link("Cluster Disk 1"), csv_link("Cluster Disk 2"), *map(nic_link, NODES)]

#: Few distinct values, so ties are common.
_demand = st.one_of(
    st.sampled_from([1e6, 2.5e7, 1e8, 3e8, 1e9 / 3, 0.0, -5.0]),
    st.floats(1e3, 2e9, allow_nan=False),
)
_groups = st.lists(st.tuples(_demand, st.integers(0, 40)), max_size=3)

transfers = st.lists(
    st.tuples(
        st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 4.0)),  # start
        st.one_of(st.sampled_from([10**8, 10**9]), st.integers(1, 3 * 10**9)),  # bytes
        st.booleans(),  # over the target
        st.lists(st.sampled_from(NODES), max_size=2),  # NICs
        st.sampled_from([0, 1, None]),  # CSV
        st.none() | st.floats(0.0, 3.0),  # interrupted after
    ),
    min_size=1,
    max_size=14,
)
flow_changes = st.lists(
    st.tuples(
        st.floats(0.0, 6.0),
        st.sampled_from(["guests", "cow", "redirect"]),
        st.dictionaries(st.sampled_from(FLOW_LINKS), _groups, max_size=3),
    ),
    max_size=6,
)
probes = st.lists(st.floats(0.0, 8.0), max_size=4)


def scenario(compression: float) -> Scenario:
    raw = small_raw(vms=4, nodes=3, target="1 GB/s", csv_bandwidth="800 MB/s")
    raw["target"] = {"compression": compression}
    return parse_scenario(raw, Path("links.toml"))


def f(x: float) -> bytes:
    """A float's bits (so 0.0 and -0.0 differ, and the comparison is of bits)."""
    return struct.pack("<d", float(x))


def run(cls: Any, sc: Scenario, case: Any) -> list[Any]:
    """One run on links of ``cls``; what it showed, in the order it showed it."""
    ts, changes, when = case
    env = simpy.Environment()
    links = cls(env, sc)
    seen: list[Any] = []

    def one(i: int, start: float, n: int, target: bool, nodes: list[str], csv: int | None) -> Any:
        yield env.timeout(start)
        c = None if csv is None else sc.csvs[csv]
        try:
            took = yield from links.transfer(n, c, tuple(nodes), target)
            seen.append(("done", i, f(env.now), f(took)))
        except simpy.Interrupt:
            seen.append(("stopped", i, f(env.now)))

    def stop(p: simpy.Process, after: float, start: float) -> Any:
        yield env.timeout(start + after)
        if p.is_alive:
            p.interrupt("snapshot deleted")

    def change(at: float, key: str, table: dict[str, list[tuple[float, int]]]) -> Any:
        yield env.timeout(at)
        links.set_flows(key, table)
        seen.append(("flows", key, f(env.now), sorted(links.load.items())))

    def probe(at: float) -> Any:
        yield env.timeout(at)
        seen.append(("moved", f(env.now), [f(links.moved(link)) for link in links.capacity]))

    for i, (start, n, target, nodes, csv, after) in enumerate(ts):
        p = env.process(one(i, start, n, target, nodes, csv))
        if after is not None:
            env.process(stop(p, after, start))
    for at, key, table in changes:
        env.process(change(at, key, table))
    for at in when:
        env.process(probe(at))
    env.run()
    seen.append(("bytes", sorted(links.link_bytes.items())))
    seen.append(("busy", sorted((k, f(v)) for k, v in links.link_busy.items())))
    seen.append(("nics", sorted(links.nic_bytes.items())))
    seen.append(("load", sorted((k, f(v)) for k, v in links.load.items())))
    seen.append(("transfers", links.transfers, f(env.now)))
    return seen


@pytest.mark.parametrize("compression", [1.0, 2.0])
@settings(max_examples=300, deadline=None)
@given(case=st.tuples(transfers, flow_changes, probes))
def test_the_engine_gives_the_python_models_figures(compression: float, case: Any) -> None:
    sc = scenario(compression)
    got = run(FairShareLinks, sc, case)
    want = run(ReferenceLinks, sc, case)
    assert got == want


@pytest.mark.parametrize("seed", range(12))
def test_crowded_classes_give_the_python_models_figures(seed: int) -> None:
    """Many transfers on few paths, started apart (so a class's heap holds many marks, in an
    order its pushes, pops and cancels make), probed often, with flows coming and going."""
    rng = random.Random(seed)
    paths = [(True, [], 0), (False, ["NODE02"], 1), (True, ["NODE01", "NODE03"], 0)]
    ts = []
    for _ in range(rng.randrange(20, 60)):
        target, nodes, csv = rng.choice(paths)
        stop = rng.uniform(0.0, 4.0) if rng.random() < 0.2 else None
        ts.append((rng.uniform(0, 6), rng.randrange(10**6, 2 * 10**9), target, nodes, csv, stop))
    changes = [
        (
            rng.uniform(0, 8),
            rng.choice(["guests", "cow"]),
            {
                rng.choice(FLOW_LINKS): [(rng.uniform(1e6, 4e8), rng.randrange(1, 30))]
                for _ in range(rng.randrange(0, 3))
            },
        )
        for _ in range(rng.randrange(0, 8))
    ]
    when = [rng.uniform(0, 12) for _ in range(40)]
    sc = scenario(rng.choice([1.0, 2.0]))
    case = (ts, changes, when)
    assert run(FairShareLinks, sc, case) == run(ReferenceLinks, sc, case)


def test_a_known_run() -> None:
    """Worked by hand, so the comparison above is not of two wrong answers: two 800 MB copies
    of one CSV at 400 MB/s each; at 0.5 s a third over the 400 MB/s target and NODE02's NIC —
    three readers of the CSV at 266.7 MB/s; the third ends at 2.0 s, the others at 2.5 s."""
    sc = parse_scenario(
        small_raw(vms=2, csv_bandwidth="800 MB/s", target="400 MB/s"), Path("k.toml")
    )
    env = simpy.Environment()
    links = FairShareLinks(env, sc)
    done: dict[str, float] = {}

    def p(name: str, n: int, delay: float = 0.0, **kw: Any) -> Any:
        yield env.timeout(delay)
        yield from links.transfer(n, sc.csvs[0], **kw)
        done[name] = env.now

    env.process(p("a", 800_000_000))
    env.process(p("b", 800_000_000))
    env.process(p("c", 400_000_000, delay=0.5, target=True, nodes=("NODE02",)))
    env.run()
    assert done == pytest.approx({"a": 2.5, "b": 2.5, "c": 2.0})
    assert links.link_bytes[csv_link(sc.csvs[0].name)] == 2_000_000_000
    assert links.link_busy["target"] == pytest.approx(1.5)
    assert links.users == dict.fromkeys(links.capacity, 0)


def test_the_engine_refuses_bad_links() -> None:
    with pytest.raises(InvalidArgumentError, match="capacity"):
        engine.FairShare([1e9, 0.0], [1.0, 1.0], [0, 1], 0.0)
    with pytest.raises(InvalidArgumentError, match="rank"):
        engine.FairShare([1e9, 1e9], [1.0, 1.0], [0, 0], 0.0)
    with pytest.raises(InvalidArgumentError, match="weights"):
        engine.FairShare([1e9], [1.0, 1.0], [0], 0.0)
    core = engine.FairShare([1e9, 1e9], [1.0, 1.0], [1, 0], 0.0)
    with pytest.raises(InvalidArgumentError, match="not a link"):
        core.start(0.0, [0, 2], 10)
    with pytest.raises(InvalidArgumentError, match="moves bytes"):
        core.start(0.0, [0], 0)
    with pytest.raises(InvalidArgumentError, match="not a link"):
        core.set_flows("k", 0.0, [(5, [(1e6, 1)])])
    with pytest.raises(InvalidArgumentError, match="not a link"):
        core.moved(9, 0.0)
    assert core.cancel(12345, 0.0) is None
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidArgumentError, match="finite time"):
            core.settle(bad)
        with pytest.raises(InvalidArgumentError, match="finite time"):
            core.start(bad, [0], 10)
        with pytest.raises(InvalidArgumentError, match="finite time"):
            core.wake(bad)
    # Nothing was changed by the refusals.
    assert core.classes() == []
    assert core.transfers == 0
    assert core.load() == [0.0, 0.0]
