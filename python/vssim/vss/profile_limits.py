"""What each Windows Server profile supports: cluster size, VMs per cluster and per node, volumes
per snapshot set, shadow copies per volume — the one home of these figures, with their sources.

A scenario beyond a limit still loads and runs (a planner may ask what a bigger cluster would do),
but every result says so: :func:`beyond_supported` gives the notes, which the ``summary`` table
carries (``beyond_supported_limits``), every Parquet file of a run keeps in its metadata
(``vssim.beyond_supported_limits``) and ``vssim plan`` puts in its report's header and advice.

Sources:

* Windows Server 2008 R2: TechNet, "Requirements and Limits for Virtual Machines and Hyper-V in
  Windows Server 2008 R2" (updated June 2010), and the Failover Clustering team blog,
  2010-06-28 (blogs.msdn.com/b/clustering/archive/2010/06/28/10031803.aspx): 16 nodes per
  cluster; 1,000 running VMs per cluster, at most 384 on any one node.
* Windows Server 2012: TechNet, "Hyper-V scalability in Windows Server 2012 and Windows Server
  2012 R2" (jj680093): 64 nodes, 8,000 VMs per cluster, 1,024 active VMs per host (spec §8).
* Both: 64 volumes in one snapshot set, 512 shadow copies per volume (spec §1, §9;
  :mod:`vssim.vss.limits`, which the protocol enforces).
"""

from __future__ import annotations

from dataclasses import dataclass

from vssim.scenario import OsProfile, Scenario
from vssim.vss.limits import MAX_SNAPSHOTS, MAX_VOLUMES_PER_SET


@dataclass(frozen=True)
class ClusterLimits:
    """One profile's supported limits."""

    windows: str
    nodes: int
    #: Running VMs in the cluster, and on any one node.
    vms_per_cluster: int
    vms_per_node: int
    volumes_per_set: int
    snapshots_per_volume: int
    source: str


LIMITS: dict[OsProfile, ClusterLimits] = {
    OsProfile.WS2008R2: ClusterLimits(
        "Windows Server 2008 R2",
        nodes=16,
        vms_per_cluster=1000,
        vms_per_node=384,
        volumes_per_set=MAX_VOLUMES_PER_SET,
        snapshots_per_volume=MAX_SNAPSHOTS,
        source="TechNet, Requirements and Limits for Virtual Machines and Hyper-V in Windows "
        "Server 2008 R2",
    ),
    OsProfile.WS2012: ClusterLimits(
        "Windows Server 2012",
        nodes=64,
        vms_per_cluster=8000,
        vms_per_node=1024,
        volumes_per_set=MAX_VOLUMES_PER_SET,
        snapshots_per_volume=MAX_SNAPSHOTS,
        source="TechNet, Hyper-V scalability in Windows Server 2012 and Windows Server 2012 R2",
    ),
}


def beyond_supported(sc: Scenario) -> tuple[str, ...]:
    """One note per limit of the scenario's profile the cluster goes beyond (none: supported)."""
    lim = LIMITS[sc.os]
    notes = []

    def note(what: str, value: int, limit: int, unit: str) -> None:
        notes.append(
            f"{value:,} {what}: beyond the supported limit of {limit:,} {unit} on "
            f"{lim.windows} ({lim.source})"
        )

    if len(sc.nodes) > lim.nodes:
        note("nodes", len(sc.nodes), lim.nodes, "nodes per cluster")
    running = [vm for vm in sc.vms if vm.running]
    if len(running) > lim.vms_per_cluster:
        note("running VMs", len(running), lim.vms_per_cluster, "running VMs per cluster")
    per_node: dict[str, int] = {}
    for vm in running:
        per_node[vm.node] = per_node.get(vm.node, 0) + 1
    busiest = max(per_node.items(), key=lambda kv: (kv[1], kv[0]), default=("", 0))
    if busiest[1] > lim.vms_per_node:
        note(f"running VMs on {busiest[0]}", busiest[1], lim.vms_per_node, "running VMs per node")
    return tuple(notes)
