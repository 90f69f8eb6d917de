"""Fidelity of modelled runs: a node that goes down stops its VMs' writes, redirected I/O loads
the NICs it crosses, and a diff-area overflow fails the copies reading the snapshot when it
happens."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import simpy

from scale_scenarios import small, small_raw
from vssim.metrics import run
from vssim.scale.fair_share_links import FairShareLinks
from vssim.scale.modelled_path import ModelledPath, redirect_key
from vssim.scale.storage_load import flows_of
from vssim.scenario import parse_scenario
from vssim.sim.links import nic_link


def with_faults(os: str, faults: list[dict[str, Any]], **kw: Any) -> Any:
    raw = small_raw(os, **kw)
    raw["faults"] = faults
    return parse_scenario(raw, Path(f"faults-{os}.toml"))


# --- node down --------------------------------------------------------------------------------


def test_vms_on_a_down_node_stop_writing() -> None:
    # NODE03 coordinates no CSV and requests no set (ws2012: the coordinators request); it goes
    # down when the copies start, so its VMs write between their snapshot and then only.
    down = with_faults("ws2012", [{"kind": "node_down", "node": "NODE03", "phase": "copy"}])
    r_down, r_up = run(down, "full"), run(small("ws2012"), "full")

    def written(r: Any, node: str) -> int:
        return int(r.vms.filter(pl.col("node") == node)["bytes_written"].sum())

    def rate(r: Any, node: str) -> float:
        """Bytes the node's VMs wrote per second of their snapshots' lives."""
        lives = r.csvs.select("backup", "job", "csv", "deleted_s")
        v = r.vms.filter(pl.col("node") == node).join(lives, on=["backup", "job", "csv"])
        return float(v["bytes_written"].sum() / (v["deleted_s"] - v["snapshot_s"]).sum())

    assert written(r_up, "NODE03") > 0
    assert written(r_down, "NODE03") < 0.2 * written(r_up, "NODE03")
    # The other nodes' VMs write on at their rate (the failed set's snapshots live shorter).
    assert rate(r_down, "NODE04") == pytest.approx(rate(r_up, "NODE04"), rel=0.25)
    assert r_down.writes_simulated < r_up.writes_simulated


# --- redirected I/O on the links ---------------------------------------------------------------


def test_background_load_takes_its_fair_share() -> None:
    sc = small(vms=2, target="100 GB/s", csv_bandwidth="100 GB/s")
    env = simpy.Environment()
    r = FairShareLinks(env, sc)
    csv = sc.csvs[0]
    nic = nic_link("NODE02")
    bw = r.bandwidth[nic]  # 10 Gbit/s
    done: dict[str, float] = {}

    def p(name: str, n: int) -> Any:
        yield from r.transfer(n, csv, nodes=("NODE02",))
        done[name] = env.now

    # A demand below the fair share is met in full; the transfer gets the rest.
    r.set_background("a", {nic: 0.25 * bw})
    env.process(p("x", int(0.75 * bw)))
    env.run()
    assert done["x"] == pytest.approx(1.0)
    # A demand above it gets only its share: one transfer and the background split the link.
    r.set_background("a", {nic: 2 * bw})
    env.process(p("y", int(0.5 * bw)))
    env.run()
    assert done["y"] == pytest.approx(2.0)
    r.set_background("a", {})
    assert r.load[nic] == 0.0
    # The link was busy (and carried the background) all along.
    assert r.link_busy[nic] == pytest.approx(2.0)
    assert r.link_bytes[nic] == pytest.approx(0.75 * bw + 0.25 * bw + 0.5 * bw + 0.5 * bw, 1e-6)


def test_an_interrupted_transfer_frees_its_share() -> None:
    sc = small(vms=2, csv_bandwidth="1 GB/s", target="100 GB/s")
    env = simpy.Environment()
    r = FairShareLinks(env, sc)
    csv = sc.csvs[0]
    done: dict[str, float] = {}

    def p(name: str) -> Any:
        try:
            yield from r.transfer(1_000_000_000, csv)
            done[name] = env.now
        except simpy.Interrupt:
            done[name] = -env.now

    a = env.process(p("a"))
    env.process(p("b"))

    def stop() -> Any:
        yield env.timeout(1.0)
        a.interrupt("gone")

    env.process(stop())
    env.run()
    # Both at 500 MB/s for 1 s; then b alone at 1 GB/s for its last 500 MB.
    assert done["a"] == -1.0
    assert done["b"] == pytest.approx(1.5)
    assert r.users["csv:Cluster Disk 1"] == 0
    assert r.link_bytes["csv:Cluster Disk 1"] == pytest.approx(1_500_000_000, rel=1e-9)


def _redirected_flows_by_definition(path: Any, run_: Any, csv: Any) -> dict[str, Any]:
    """A redirected CSV's flows from their definition, VM by VM: each writer issuing I/O
    (running, on an up node, not paused) on a node other than the coordinator loads its node's
    NIC, and all of them the coordinator's; nodes in name order, the coordinator last."""
    b = path.ctx.backend
    if not run_.is_redirected(csv):
        return {}
    coord = run_.state.coordinators[csv.name]
    remote = [
        vm
        for vm in run_.sc.vms_by_csv[csv.name]
        if vm.running and vm.node != coord and run_.state.is_up(vm.node) and b.active(vm.name)
    ]
    by_node: dict[str, list[str]] = {}
    for vm in remote:
        by_node.setdefault(vm.node, []).append(vm.name)
    flows = {nic_link(n): flows_of(b, by_node[n]) for n in sorted(by_node)}
    flows[nic_link(coord)] = flows_of(b, [vm.name for vm in remote])
    return flows


@pytest.mark.parametrize("down", [None, "NODE02", "NODE04"])
def test_redirected_flows_follow_the_coordinator_and_the_writers(
    down: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2008 R2: each set's requester coordinates its CSVs, so the coordinator moves set by set;
    # a node going down during the copies takes its writers away. Every redirected CSV's flows,
    # each time they are set, are those of the definition at that instant.
    faults = [] if down is None else [{"kind": "node_down", "node": down, "phase": "copy"}]
    sc = with_faults("ws2008r2", faults)
    last: dict[str, Any] = {}
    set_flows = FairShareLinks.set_flows

    def recording(links: FairShareLinks, key: str, flows: Any) -> None:
        last[key] = dict(flows)
        set_flows(links, key, flows)

    load = ModelledPath._redirect_load
    checked: list[str] = []

    def checking(path: ModelledPath, run_: Any, csv: Any) -> None:
        load(path, run_, csv)
        want = _redirected_flows_by_definition(path, run_, csv)
        got = last[redirect_key(csv)]
        assert list(got.items()) == list(want.items()), (csv.name, run_.env.now)
        checked.append(run_.state.coordinators[csv.name])

    monkeypatch.setattr(FairShareLinks, "set_flows", recording)
    monkeypatch.setattr(ModelledPath, "_redirect_load", checking)
    r = run(sc, ["full", "incremental"])
    assert r.summary.height == 2
    assert len(set(checked)) > 1  # the coordinator moved


def test_redirected_io_keeps_the_coordinators_nic_busy() -> None:
    r = run(small("ws2008r2"), "full")
    redirected = r.csvs.group_by("coordinator").agg(pl.col("redirected_s").sum())
    busy = dict(zip(r.nodes["node"], r.nodes["nic_busy_s"], strict=True))
    assert redirected.height > 0
    for coord, secs in redirected.iter_rows():
        # While its CSV was redirected the coordinator's NIC carried the other nodes' writes.
        assert secs > 0
        assert busy[coord] >= secs - 1e-6, coord


# --- diff-area overflow during a copy ----------------------------------------------------------


def test_overflow_during_a_copy_fails_it_at_that_instant() -> None:
    # 8 GiB fills after the copies started (the guests' I/O shares the CSVs with the set).
    r = run(small("ws2012", diff_area_limit="8 GiB", write_iops=400, target="300 MB/s"), "full")
    lost = r.csvs.filter(pl.col("deleted_by") == "diff area full").select("csv", "deleted_s")
    assert lost.height > 0
    vms = r.vms.join(lost, on="csv")
    started = vms.filter(pl.col("copy_start_s") < pl.col("deleted_s"))
    reading = started.filter(pl.col("copy_end_s") >= pl.col("deleted_s") - 1e-9)
    assert reading.height > 0
    # Copies done before it fail with their set too (no partial backups).
    assert set(started["result"].to_list()) == {"VSS_E_INSUFFICIENT_STORAGE"}
    # Every copy reading the snapshot when volsnap deleted it stopped right then (its stream
    # and links freed), failed, and read nothing; the copies after it never started.
    assert ((reading["copy_end_s"] - reading["deleted_s"]).abs() < 1e-9).all()
    assert set(reading["result"].to_list()) == {"VSS_E_INSUFFICIENT_STORAGE"}
    assert reading["bytes_read"].sum() == 0
    later = vms.filter(pl.col("copy_start_s").is_null())
    assert set(later["result"].to_list()) <= {"VSS_E_INSUFFICIENT_STORAGE"}
    stopped = r.phases.filter(pl.col("detail").str.contains("deleted \\(diff area full\\) during"))
    assert stopped.height == reading.height


def test_transfers_finish_late_in_a_long_run() -> None:
    # At a million simulated seconds the clock's resolution is 1e-10 s, a tenth of a byte at
    # 1 GB/s: a finish closer than that must complete, not refire its timer at the same instant.
    sc = small(vms=2, target="1 GB/s", csv_bandwidth="3 GB/s")
    env = simpy.Environment(initial_time=1e6)
    links = FairShareLinks(env, sc)
    rng = random.Random(4)
    done: list[float] = []

    def p(delay: float, n: int) -> Any:
        yield env.timeout(delay)
        yield from links.transfer(n, sc.csvs[rng.randrange(2)], target=rng.random() < 0.5)
        done.append(env.now)

    for _ in range(200):
        env.process(p(rng.uniform(0, 5), rng.randrange(1, 5_000_000)))
    steps = 0
    while env.peek() != float("inf"):
        env.step()
        steps += 1
        assert steps < 100_000, "the links' timer refires without the clock moving"
    assert len(done) == 200
