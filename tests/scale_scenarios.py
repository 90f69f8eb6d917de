"""Small generated clusters for the modelled-run tests (a few nodes, tens of VMs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vssim.scenario import Scenario, parse_scenario

#: The workload these tests' scenarios run unless they give one: a hot spot of a tenth of the
#: data taking 90 % of the writes, 30 % reads, the engine's typical size mix, no growth — far
#: more copy-on-write than a calibrated class, so the diff areas the tests size fill.
COW_HEAVY: dict[str, Any] = {
    "locality": "hotspot",
    "read_fraction": 0.3,
    "hot_fraction": 0.1,
    "hot_share": 0.9,
    "sizes": [],
    "growth_per_day": 0.0,
}


def small_raw(
    os: str = "ws2012",
    *,
    nodes: int = 4,
    csvs: int = 2,
    vms: int = 60,
    provider: str = "system",
    diff_area_limit: str | None = None,
    write_iops: float = 40,
    target: str = "2 GB/s",
    csv_bandwidth: str = "1 GB/s",
    seed: int = 77,
    workload: dict[str, Any] | None = None,
    disk_size: str = "4 GiB",
    allocated: str = "512 MiB",
) -> dict[str, Any]:
    csv_tables: list[dict[str, Any]] = []
    for i in range(1, csvs + 1):
        t: dict[str, Any] = {
            "name": f"Cluster Disk {i}",
            "mount_point": f"C:\\ClusterStorage\\Volume{i}",
            "coordinator": f"NODE{(i - 1) % nodes + 1:02d}",
            "size": "1 TiB",
            "provider": provider,
        }
        if diff_area_limit is not None:
            t["diff_area_limit"] = diff_area_limit
        csv_tables.append(t)
    return {
        "cluster": {"name": "SMALL", "os": os, "seed": seed},
        "links": {
            "nic_bandwidth": "10 Gbit/s",
            "csv_bandwidth": csv_bandwidth,
            "backup_target_bandwidth": target,
        },
        "csvs": csv_tables,
        "generate": {
            "nodes": nodes,
            "vms": vms,
            "disk_size": disk_size,
            "allocated": allocated,
            "integration_services": 0.9,
            "write_iops": write_iops,
            "workload": workload or dict(COW_HEAVY),
        },
    }


def small(os: str = "ws2012", **kw: Any) -> Scenario:
    return parse_scenario(small_raw(os, **kw), Path(f"small-{os}.toml"))


def tiny(**kw: Any) -> Scenario:
    """4 nodes, 2 CSVs, 8 VMs with 64 MiB dynamic disks writing 200 IOPS."""
    args: dict[str, Any] = dict(
        vms=8,
        disk_size="64 MiB",
        allocated="16 MiB",
        write_iops=200,
        target="200 MB/s",
        csv_bandwidth="100 MB/s",
    )
    args.update(kw)
    return small(**args)
