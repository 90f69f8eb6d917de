"""``[generate]``: big clusters in a few lines.

    [generate]
    nodes = 64            # NODE01 … NODE64 (node_prefix)
    csvs = 16             # C:\\ClusterStorage\\Volume1 … (coordinators spread round-robin)
    vms = 4000            # VM0001 … (vm_prefix), placed on a seeded random node and CSV
    csv_size = "64 TiB"           # default: the CSV's share of the VMs' allocated bytes × 1.25
    mix = { server = 0.5, file = 0.2, database = 0.1, vdi = 0.15, web = 0.05 }
    disk_size = "127 GiB"         # default: each VM's class's typical disk
    allocated = "40 GiB"
    disks_per_vm = 1
    disk_type = "dynamic"         # or "fixed" (allocated whole) / "differencing"
    integration_services = 0.95   # share of VMs with the Backup integration service
    running = 1.0                 # share of VMs running
    provider = "system"
    write_iops = 20               # default: each VM's class's
    workload = { diurnal = true }   # any [[vms]] workload key, for every generated VM

``mix`` gives the generated VMs their workload classes by share (default: ``[workloads] mix``,
else every VM the ``server`` class, or the class ``workload`` names); a VM's disk is its class's
typical one (:data:`~vssim.scenario.workload_classes.CLASSES`) unless ``disk_size`` /
``allocated`` set every VM's. Generated entries are appended to any written
``[[nodes]]``/``[[csvs]]``/``[[vms]]`` and then validated like them. Placement uses
``random.Random(seed)``, the classes their own seeded shuffle: the same file always yields the
same cluster. No node gets more than 1,024 VMs: placement retries another node, a bounded number of
times, then takes the first node with room; more VMs than the nodes can hold are refused first.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from vssim.errors import ScenarioError
from vssim.scenario.limits import (
    CSV_SIZE_SOURCE,
    DISK_SIZE_SOURCE,
    MAX_CSV_SIZE,
    MAX_DISK_SIZE,
)
from vssim.scenario.model import MAX_NODES, MAX_VMS_PER_CLUSTER, MAX_VMS_PER_NODE
from vssim.scenario.workload_classes import CLASSES, DEFAULT_CLASS, assign
from vssim.units import parse_size, size_text

GENERATE_KEYS = (
    "nodes",
    "csvs",
    "vms",
    "node_prefix",
    "vm_prefix",
    "csv_size",
    "disk_size",
    "allocated",
    "disks_per_vm",
    "disk_type",
    "integration_services",
    "running",
    "provider",
    "write_iops",
    "workload",
    "mix",
)

Fail = Callable[[str, object, str], ScenarioError]
Raw = list[dict[str, Any]]
#: Random node picks a VM gets before placement takes the first node with room (model choice:
#: with room on any node, 64 picks all landing on full nodes is as good as never; a cluster
#: filled to the brim still ends).
PLACEMENT_TRIES = 64


def _count(gen: dict[str, Any], key: str, limit: int, fail: Fail) -> int:
    v = gen.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
        raise fail(f"generate.{key}", v, f"an integer in 0..{limit}")
    return v


def _share(gen: dict[str, Any], key: str, fail: Fail) -> float:
    v = gen.get(key, 1.0)
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise fail(f"generate.{key}", v, "a share between 0 and 1")
    return float(v)


def _size(gen: dict[str, Any], key: str, default: str, fail: Fail) -> int:
    v = parse_size(gen.get(key, default))
    if v is None or not 0 < v <= MAX_DISK_SIZE:
        raise fail(
            f"generate.{key}",
            gen.get(key),
            f"a size from 1 byte to {size_text(MAX_DISK_SIZE)} ({DISK_SIZE_SOURCE}), e.g. "
            "'127 GiB'",
        )
    return v


def _mix(gen: dict[str, Any], fail: Fail) -> dict[str, float]:
    mix = gen["mix"]
    names = ", ".join(CLASSES)
    if not isinstance(mix, dict) or not mix:
        raise fail("generate.mix", mix, f"a table of class shares ({names})")
    out: dict[str, float] = {}
    for k, v in mix.items():
        if k not in CLASSES:
            raise fail(f"generate.mix.{k}", v, f"a workload class ({names})")
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise fail(f"generate.mix.{k}", v, "a share between 0 and 1")
        out[k] = float(v)
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise fail("generate.mix", mix, f"shares summing to 1 (they sum to {sum(out.values()):g})")
    return out


def generate(
    gen: dict[str, Any],
    seed: int,
    nodes: Raw,
    csvs: Raw,
    vms: Raw,
    fail: Fail,
    mix: dict[str, float] | None = None,
) -> tuple[Raw, Raw, Raw]:
    """Append the generated nodes, CSVs and VMs to the written ones (``mix``: the scenario's
    ``[workloads] mix``, used when ``[generate]`` has none)."""
    n_nodes = _count(gen, "nodes", MAX_NODES, fail)
    n_csvs = _count(gen, "csvs", 64, fail)
    n_vms = _count(gen, "vms", MAX_VMS_PER_CLUSTER, fail)
    node_prefix = str(gen.get("node_prefix", "NODE"))
    vm_prefix = str(gen.get("vm_prefix", "VM"))
    disks_per_vm = _count(gen, "disks_per_vm", 16, fail) or 1
    disk_type = gen.get("disk_type")
    is_share = _share(gen, "integration_services", fail)
    run_share = _share(gen, "running", fail)
    provider = gen.get("provider", "system")
    workload = dict(gen.get("workload", {})) if isinstance(gen.get("workload", {}), dict) else None
    if workload is None:
        raise fail("generate.workload", gen.get("workload"), "a table of workload keys")
    if "write_iops" in gen:
        iops = gen["write_iops"]
        if (
            isinstance(iops, bool)
            or not isinstance(iops, int | float)
            or not 0 <= iops < float("inf")
        ):
            raise fail("generate.write_iops", iops, "a number of writes per second >= 0")
        workload["write_iops"] = iops
    if "mix" in gen:
        mix = _mix(gen, fail)
    fixed_class = workload.get("class", DEFAULT_CLASS)
    if fixed_class not in CLASSES:
        raise fail(
            "generate.workload.class", fixed_class, f"a workload class ({', '.join(CLASSES)})"
        )
    classes = assign(n_vms, mix, seed) if mix is not None and "class" not in workload else []
    classes = classes or [fixed_class] * n_vms

    def disk_of(cls: str) -> tuple[int, int]:
        size, alloc = CLASSES[cls].disk
        if "disk_size" in gen:
            size = _size(gen, "disk_size", "127 GiB", fail)
        if "allocated" in gen:
            alloc = _size(gen, "allocated", "40 GiB", fail)
        elif alloc > size:
            alloc = size
        if alloc > size:
            raise fail("generate.allocated", gen.get("allocated"), f"at most disk_size ({size})")
        if disk_type == "fixed":
            alloc = size  # a fixed VHDX is allocated whole when it is created
        return size, alloc

    disks = {c: disk_of(c) for c in CLASSES}

    out_nodes = list(nodes)
    width = max(2, len(str(n_nodes)))
    out_nodes += [{"name": f"{node_prefix}{i:0{width}d}"} for i in range(1, n_nodes + 1)]
    if not out_nodes:
        raise fail("generate.nodes", n_nodes, "at least one node (here or in [[nodes]])")
    node_names = [str(n.get("name")) for n in out_nodes]

    out_csvs = list(csvs)
    first = len(csvs) + 1
    per_csv_vms = -(-n_vms // max(1, n_csvs)) if n_csvs else 0
    mean_alloc = sum(disks[c][1] for c in classes) // max(1, n_vms)
    default_csv = per_csv_vms * disks_per_vm * mean_alloc * 5 // 4 or 1024**4
    csv_size = parse_size(gen["csv_size"]) if "csv_size" in gen else default_csv
    if csv_size is None or not 0 < csv_size <= MAX_CSV_SIZE:
        raise fail(
            "generate.csv_size",
            gen.get("csv_size", f"{default_csv} bytes (VMs per CSV × disks × allocated × 1.25)"),
            f"a size from 1 byte to {size_text(MAX_CSV_SIZE)} ({CSV_SIZE_SOURCE}), e.g. "
            "'64 TiB' (more CSVs hold more VMs)",
        )
    for k in range(n_csvs):
        out_csvs.append(
            {
                "name": f"Cluster Disk {first + k}",
                "mount_point": f"C:\\ClusterStorage\\Volume{first + k}",
                "coordinator": node_names[k % len(node_names)],
                "size": csv_size,
                "provider": provider,
            }
        )
    if n_vms and not out_csvs:
        raise fail("generate.csvs", n_csvs, "at least one CSV to place the VMs on")
    csv_names = [str(c.get("name")) for c in out_csvs]

    rng = random.Random(seed)
    load = dict.fromkeys(node_names, 0)
    for v in vms:
        if v.get("node") in load:
            load[v["node"]] += 1
    room = sum(max(0, MAX_VMS_PER_NODE - n) for n in load.values())
    if n_vms > room:
        raise fail(
            "generate.vms",
            n_vms,
            f"at most {room} more VMs: {len(load)} node(s) of at most {MAX_VMS_PER_NODE} VMs "
            "each (Windows Server 2012's limit per node), less the VMs already placed",
        )
    out_vms = list(vms)
    vwidth = max(4, len(str(n_vms)))
    for i in range(1, n_vms + 1):
        node = rng.choice(node_names)
        for _ in range(PLACEMENT_TRIES):
            if load[node] < MAX_VMS_PER_NODE:
                break
            node = rng.choice(node_names)
        else:
            node = next(n for n in node_names if load[n] < MAX_VMS_PER_NODE)
        load[node] += 1
        name = f"{vm_prefix}{i:0{vwidth}d}"
        cls = classes[i - 1]
        size, alloc = disks[cls]
        wl = {**workload, "class": cls} if mix is not None or "class" in workload else workload
        out_vms.append(
            {
                "name": name,
                "node": node,
                "csv": rng.choice(csv_names),
                "integration_services": rng.random() < is_share,
                "running": rng.random() < run_share,
                "disks": [
                    {"size": size, "allocated": alloc}
                    | ({"type": disk_type} if disk_type is not None else {})
                    for _ in range(disks_per_vm)
                ],
                "workload": dict(wl),
            }
        )
    return out_nodes, out_csvs, out_vms
