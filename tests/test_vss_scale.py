"""The seed's headline scale: a full backup of the 64-node / 4,000-VM examples from one node,
2012 (every VM, through the CSV writer) against 2008 R2 (the node's own VMs only, every CSV
redirected for the whole backup)."""

from __future__ import annotations

import time

import pytest

from scenarios import EXAMPLES
from vssim.requester import run_backup
from vssim.scenario import load_scenario


@pytest.mark.slow
def test_full_backup_at_64_nodes_and_4000_vms() -> None:
    s12 = load_scenario(EXAMPLES / "ws2012-64n-4000vm.toml")
    t = time.perf_counter()
    r12 = run_backup(s12, "NODE01")
    assert time.perf_counter() - t < 60
    assert r12.ok
    assert len(r12.job.selected) == 4000
    assert len(r12.created_copies) == 16
    assert sorted(r12.frozen_vms) == sorted(v.name for v in s12.vms if v.running)
    offline = {v.name for v in s12.vms if v.running and not v.integration_services}
    assert set(r12.downtime) == offline
    assert r12.copied_bytes == sum(v.allocated_bytes for v in s12.vms)

    s08 = load_scenario(EXAMPLES / "ws2008r2-64n-4000vm.toml")
    r08 = run_backup(s08, "NODE01")
    assert r08.ok
    local = [v for v in s08.vms if v.node == "NODE01"]
    assert len(r08.job.selected) == len(local)
    # 2008 R2 keeps every CSV redirected for the whole backup; 2012 only while snapshotting
    per_hour_08 = sum(r08.redirected_bytes.values()) / (r08.end - r08.start)
    per_hour_12 = sum(r12.redirected_bytes.values()) / (r12.end - r12.start)
    assert per_hour_08 > 10 * per_hour_12
