"""What to back up and how to schedule it: a :class:`BackupSpec` (type and selection) and a
:class:`Schedule` (requester node, batching, concurrency) become a list of protocol
:class:`~vssim.vss.jobs.BackupJob` — one per snapshot set — under the profile's rules (spec §8):

* **ws2008r2**: a requester sees only its own node's Hyper-V writer, so every VM is backed up
  from the node that runs it; a snapshot set holds one CSV (``ClusterPrepareSharedVolumeForBackup``
  claims it: one backup per CSV at a time, ownership moves to the backup node, the CSV stays in
  redirected access). Jobs are (node, CSV) groups; one set at a time per CSV, one per node with
  the system provider (DPM: up to 3 with a hardware provider).
* **ws2012**: any node backs up any VM (its CSV writer reports the other nodes' VMs); one CSV
  snapshot holds every VM of the CSV, so by default a set is one CSV's selected VMs, requested
  from the CSV's coordinator (a system-provider snapshot lives there: no network pull). Sets run
  in parallel, up to ``per_node`` per node and ``per_csv`` per CSV.

Sets hold at most ``batch_vms`` VMs (0: no limit) and ``csvs_per_set`` CSVs (at most
:data:`~vssim.vss.limits.MAX_VOLUMES_PER_SET` volumes, the VSS limit).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from vssim.errors import InvalidArgumentError, VssError
from vssim.scenario import MAX_VMS_PER_NODE, OsProfile, ProviderKind, Scenario, Vm, derive_guid
from vssim.scenario.model import MAX_VMS_PER_CLUSTER
from vssim.vss.enums import BackupType, HResult
from vssim.vss.jobs import BackupJob, Selected, volumes_for
from vssim.vss.limits import MAX_VOLUMES_PER_SET
from vssim.vss.writers import CSV, HYPERV, csv_metadata, hyperv_metadata, vm_component

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class BackupKind(StrEnum):
    #: Every selected VM, whole VHDX files; resets change tracking.
    FULL = "full"
    #: Like full, but outside the backup history (VSS_BT_COPY): change tracking is kept.
    COPY = "copy"
    #: Full backups of a subset (list, fraction or -wi/-wx components).
    SELECTIVE = "selective"
    #: Only the blocks changed since the VM's previous backup in the run (full if it has none).
    INCREMENTAL = "incremental"

    @property
    def backup_type(self) -> BackupType:
        return {
            BackupKind.FULL: BackupType.FULL,
            BackupKind.COPY: BackupType.COPY,
            BackupKind.SELECTIVE: BackupType.FULL,
            BackupKind.INCREMENTAL: BackupType.INCREMENTAL,
        }[self]


@dataclass(frozen=True)
class BackupSpec:
    kind: BackupKind = BackupKind.FULL
    #: VM names or GUIDs to back up (empty: all, or as ``fraction``/``include`` say).
    vms: tuple[str, ...] = ()
    #: Back up this share of the VMs (a seeded choice, the same for one scenario seed).
    fraction: float | None = None
    #: vshadow ``-wi``: writer names, ``writer:component`` paths, VM names or GUIDs.
    include: tuple[str, ...] = ()
    #: vshadow ``-wx``: the same forms, excluded.
    exclude: tuple[str, ...] = ()


#: Concurrent snapshot sets per node or per CSV: at most 64 (model choice: the capacity plans'
#: sweep goes to 64; Veeam's default is 4 snapshots per volume).
MAX_CONCURRENT_SETS = 64
#: Each field's range: (least, most); ``None`` (the profile's default) is allowed where noted.
SCHEDULE_RANGES: dict[str, tuple[int, int]] = {
    "per_node": (1, MAX_CONCURRENT_SETS),
    "per_csv": (1, MAX_CONCURRENT_SETS),
    # At most one copy per VM a node runs.
    "streams_per_node": (1, MAX_VMS_PER_NODE),
    "batch_vms": (0, MAX_VMS_PER_CLUSTER),
    "csvs_per_set": (1, MAX_VOLUMES_PER_SET),
}


@dataclass(frozen=True)
class Schedule:
    #: "coordinator" (the CSV's), "round-robin", or a node name (ws2012; 2008 R2 forces "owner").
    requester: str = "coordinator"
    #: Concurrent snapshot sets per requester node (None: profile default).
    per_node: int | None = None
    #: Concurrent snapshot sets per CSV (None: profile default; 2008 R2 is always 1).
    per_csv: int | None = None
    #: Concurrent VM copies per requester node.
    streams_per_node: int = 8
    #: VMs per snapshot set (0: no limit).
    batch_vms: int = 0
    #: CSVs per snapshot set on ws2012 (at most 64).
    csvs_per_set: int = 1

    def __post_init__(self) -> None:
        # Checked here, once: a 0 or a negative limit would let no set start, and the run wait
        # for ever.
        for name, (least, most) in SCHEDULE_RANGES.items():
            v = getattr(self, name)
            if v is None and name in ("per_node", "per_csv"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not least <= v <= most:
                raise InvalidArgumentError(
                    f"schedule {name} = {v!r}: expected an integer from {least} to {most}"
                )

    def limits(self, sc: Scenario) -> tuple[int, int]:
        """(per node, per CSV) for the scenario's profile."""
        if sc.os is OsProfile.WS2008R2:
            hw = all(c.provider is ProviderKind.HARDWARE for c in sc.csvs)
            return self.per_node or (3 if hw else 1), 1
        return self.per_node or 4, self.per_csv or 4


def _vm_of(sc: Scenario, text: str) -> list[Vm]:
    """The VMs an item names: a VM name or GUID, a ``writer:component`` path (the component's
    VM GUID), or a writer name (every VM)."""
    by_name = {vm.name.lower(): vm for vm in sc.vms}
    if text.lower() in by_name:
        return [by_name[text.lower()]]
    writer, sep, path = text.partition(":")
    m = _GUID.search(path if sep else text)
    if m:
        g = uuid.UUID(m.group(0))
        found = [vm for vm in sc.vms if vm.guid == g]
        if found:
            return found
    elif not sep and writer.lower() in (
        "microsoft hyper-v vss writer",
        "cluster shared volume vss writer",
    ):
        return list(sc.vms)
    raise VssError(
        HResult.VSS_E_OBJECT_NOT_FOUND,
        f"VSS_E_OBJECT_NOT_FOUND: no writer of {sc.name} reports a component {text!r}",
    )


def select_vms(sc: Scenario, spec: BackupSpec) -> list[Vm]:
    """The VMs a backup covers, in scenario order."""
    chosen: list[Vm]
    if spec.vms or spec.include:
        names = {vm.name for item in (*spec.vms, *spec.include) for vm in _vm_of(sc, item)}
        chosen = [vm for vm in sc.vms if vm.name in names]
    else:
        chosen = list(sc.vms)
    if spec.fraction is not None:
        if not 0 < spec.fraction <= 1:
            raise ValueError(f"fraction {spec.fraction}: expected a share in (0, 1]")
        n = max(1, round(len(chosen) * spec.fraction))
        order = sorted(chosen, key=lambda vm: derive_guid(sc.seed, "select", vm.guid).int)
        keep = {vm.name for vm in order[:n]}
        chosen = [vm for vm in chosen if vm.name in keep]
    if spec.exclude:
        drop = {vm.name for item in spec.exclude for vm in _vm_of(sc, item)}
        chosen = [vm for vm in chosen if vm.name not in drop]
    return chosen


def _selected(sc: Scenario, node: str, vm: Vm) -> Selected:
    """``vm`` as a requester on ``node`` adds it: through the node's Hyper-V writer if the node
    runs it, else through its CSV writer."""
    if vm.node == node:
        return Selected(hyperv_metadata(sc, node), vm_component(sc, HYPERV, vm), vm)
    return Selected(csv_metadata(sc, node), vm_component(sc, CSV, vm), vm)


def _chunks(vms: list[Vm], size: int) -> list[list[Vm]]:
    if size <= 0 or len(vms) <= size:
        return [vms] if vms else []
    return [vms[i : i + size] for i in range(0, len(vms), size)]


def plan_jobs(
    sc: Scenario, spec: BackupSpec, schedule: Schedule, label: str = "backup"
) -> list[BackupJob]:
    """The snapshot sets of one backup, in the order the scheduler should start them."""
    vms = select_vms(sc, spec)
    groups: list[tuple[str, list[Vm]]] = []
    if sc.os is OsProfile.WS2008R2:
        by: dict[tuple[str, str], list[Vm]] = {}
        for vm in vms:
            by.setdefault((vm.node, vm.csv), []).append(vm)
        # Interleave nodes so that the first sets touch different CSVs.
        order = sorted(
            by,
            key=lambda k: (
                (sc.csvs.index(sc.csv_by_name[k[1]]) - [n.name for n in sc.nodes].index(k[0]))
                % max(1, len(sc.csvs))
            ),
        )
        for key in order:
            groups += [(key[0], chunk) for chunk in _chunks(by[key], schedule.batch_vms)]
    else:
        per_set = min(MAX_VOLUMES_PER_SET, max(1, schedule.csvs_per_set))
        by_csv: dict[str, list[Vm]] = {}
        for vm in vms:
            by_csv.setdefault(vm.csv, []).append(vm)
        names = [c.name for c in sc.csvs if c.name in by_csv]
        node_names = [n.name for n in sc.nodes]
        for i in range(0, len(names), per_set):
            members = [vm for n in names[i : i + per_set] for vm in by_csv[n]]
            first = sc.csv_by_name[names[i]]
            for chunk in _chunks(members, schedule.batch_vms):
                if schedule.requester == "coordinator":
                    node = first.coordinator
                elif schedule.requester == "round-robin":
                    node = node_names[len(groups) % len(node_names)]
                else:
                    node = sc.node(schedule.requester).name
                groups.append((node, chunk))
    jobs = []
    for i, (node, members) in enumerate(groups):
        selected = tuple(_selected(sc, node, vm) for vm in members)
        jobs.append(
            BackupJob(
                node=node,
                selected=selected,
                volumes=volumes_for(sc, selected),
                backup_type=spec.kind.backup_type,
                label=f"{label}#{i}",
            )
        )
    return jobs


def parse_kinds(kinds: Sequence[str]) -> list[BackupKind]:
    out = []
    for k in kinds:
        try:
            out.append(BackupKind(k))
        except ValueError:
            raise ValueError(
                f"backup type {k!r}: expected one of {', '.join(b.value for b in BackupKind)}"
            ) from None
    return out
