"""Snapshot-set creation on the 64-node / 4,000-VM Windows Server 2012 example: the whole protocol
(GatherWriterMetadata … BackupComplete, no data copy) for 1, 64, 1,000 and 4,000 components chosen
from one node through its CSV writer. Each case checks its answer once before it is timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from vssim.requester import make_job
from vssim.requester.backups import run_jobs
from vssim.scenario import Scenario, load_scenario
from vssim.vss.cluster_state import ClusterState

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ws2012-64n-4000vm.toml"


@pytest.fixture(scope="module")
def big() -> Scenario:
    return load_scenario(EXAMPLE)


def snapshot_set(sc: Scenario, n: int) -> tuple[bool, int, int, int]:
    node = sc.nodes[0].name
    names = [vm.name for vm in sc.vms[:n]]
    job = make_job(sc, node, names, copy_data=False)
    (r,) = run_jobs(ClusterState(sc), [job])
    return r.ok, len(r.job.selected), len(r.created_copies), len(set(r.frozen_vms))


@pytest.mark.benchmark(group="protocol")
@pytest.mark.parametrize("n", [1, 64, 1000, 4000])
def test_snapshot_set_creation(benchmark: pytest.FixtureRequest, big: Scenario, n: int) -> None:
    vms = big.vms[:n]
    expected_csvs = len({vm.csv for vm in vms})
    ok, selected, copies, frozen = snapshot_set(big, n)
    assert ok
    assert selected == n
    assert copies == expected_csvs
    assert frozen == sum(1 for vm in vms if vm.running)
    result = benchmark(snapshot_set, big, n)  # type: ignore[operator]
    assert result == (ok, selected, copies, frozen)
