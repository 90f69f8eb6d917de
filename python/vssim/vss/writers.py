"""The writers of a Hyper-V failover cluster: what they report (Identify) and what they do with
each event (sans-I/O: handlers return actions the SimPy layer carries out in simulated time).

* **Microsoft Hyper-V VSS Writer** — one per node; one component per VM *that node runs*
  (component name = VM GUID in upper case, caption ``Backup Using Child Partition Snapshot\\<VM>``
  or ``Backup Using Saved State\\<VM>``; files: the VM's configuration XML, its saved-state files
  and its virtual disks). PrepareForSnapshot: an online VM runs its guest VSS sequence through the
  integration services (seed steps ③–⑤); a VM without them is put in a saved state (downtime
  starts). Nothing at Freeze/Thaw. PostSnapshot: auto-recovery writes into the shadow copy (online)
  or resume (saved state, downtime ends). No partial backups: one failed VM fails the writer.
* **Cluster Shared Volume VSS Writer** (2012 only) — one per node, in the cluster service. Reports
  one component per VM running on *another* node (the seed's figure 3: name
  ``<VM GUID>(CSV:<Hyper-V writer id>;<that node's Hyper-V writer instance>;<node>)``, FILEGROUP,
  selectable, files ``Virtual Machines\\<GUID>.xml`` and ``Virtual Hard Disks\\<disk>``) and relays
  every snapshot event to the Hyper-V writers of the nodes whose VMs were selected (step ②-2).

Model choices: the seed's figure 3 is garbled, so the CSV component name's three fields are read
as the Hyper-V writer id, the owning node's Hyper-V writer instance id and the owning node's name.
The Hyper-V writer reports ``VSS_WRE_ALWAYS``/``VSS_RME_RESTORE_IF_CAN_REPLACE``;
the CSV writer ``VSS_WRE_NEVER``/``VSS_RME_UNDEFINED`` (it only relays; restores go through the
owning node's Hyper-V writer), matching the seed's "Supports restore events = FALSE".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from vssim.scenario import Scenario, Vm, derive_guid
from vssim.vss.enums import RestoreMethod, UsageType, WriterRestore
from vssim.vss.metadata import Component, FileDescriptor, WriterMetadata
from vssim.vss.well_known_ids import (
    CSV_WRITER_ID,
    CSV_WRITER_NAME,
    HYPERV_WRITER_ID,
    HYPERV_WRITER_NAME,
)
from vssim.vss.writer_state import WriterEvent

T = TypeVar("T")

HYPERV = "hyperv"
CSV = "csv"


def writer_instance_id(scenario: Scenario, kind: str, node: str) -> uuid.UUID:
    """A writer instance id: stable for a node across runs of one scenario (derived once a node
    and kind: every CSV writer component names its VM's node's)."""
    lower = node.lower()
    return _once(
        scenario,
        ("instance", kind, lower),
        lambda: derive_guid(scenario.seed, "writer-instance", kind, lower),
    )


def _caption(vm: Vm) -> str:
    method = (
        "Backup Using Child Partition Snapshot"
        if vm.online_backup
        else ("Backup Using Saved State")
    )
    return f"{method}\\{vm.name}"


def hyperv_component(scenario: Scenario, vm: Vm) -> Component:
    folder = scenario.vm_folder(vm)
    g = vm.component_name
    files = [
        FileDescriptor(f"{folder}\\Virtual Machines\\", f"{g}.xml"),
        FileDescriptor(f"{folder}\\Virtual Machines\\{g}\\", f"{g}.bin"),
        FileDescriptor(f"{folder}\\Virtual Machines\\{g}\\", f"{g}.vsv"),
    ]
    files += [FileDescriptor(f"{folder}\\Virtual Hard Disks\\", d.file) for d in vm.disks]
    return Component(name=g, caption=_caption(vm), files=tuple(files), vm_guid=vm.guid)


#: The Hyper-V writer's host-level component: the virtual machine management service's initial
#: configuration store, on the node's system volume.
INITIAL_STORE = Component(
    name="Initial Store",
    caption="Initial Store",
    files=(FileDescriptor("%ProgramData%\\Microsoft\\Windows\\Hyper-V", "InitialStore.xml"),),
)


def hyperv_node_metadata(scenario: Scenario, node: str) -> WriterMetadata:
    """The Hyper-V writer of ``node`` as a requester on it gathers it: the VMs that node runs and
    the ``Initial Store`` on ``C:``. The simulated backup runs with :func:`hyperv_metadata` (VM
    components only): the Initial Store is never in a CSV's snapshot set, and leaving it out keeps
    the modelled Identify times as they were."""
    base = hyperv_metadata(scenario, node)
    return replace(base, components=(INITIAL_STORE, *base.components))


def csv_component_name(scenario: Scenario, vm: Vm) -> str:
    inst = writer_instance_id(scenario, HYPERV, vm.node)
    return f"{vm.component_name}(CSV:{HYPERV_WRITER_ID};{inst};{vm.node})"


def csv_component(scenario: Scenario, vm: Vm) -> Component:
    folder = scenario.vm_folder(vm)
    files = [FileDescriptor(f"{folder}\\Virtual Machines\\", f"{vm.component_name}.xml")]
    files += [FileDescriptor(f"{folder}\\Virtual Hard Disks\\", d.file) for d in vm.disks]
    return Component(name=csv_component_name(scenario, vm), files=tuple(files), vm_guid=vm.guid)


def _built(scenario: Scenario) -> dict[tuple[str, ...], Any]:
    """What this module already built for ``scenario``: writer documents depend on the scenario
    alone (a frozen value), and a run asks for them at every snapshot set — on the 2012 example,
    32 sets of a CSV writer document of ~4,000 VM components each, every component name a
    derived GUID. Kept in the scenario's own ``__dict__``, where its cached properties live."""
    memo: dict[tuple[str, ...], Any] = scenario.__dict__.setdefault("_vss_writer_documents", {})
    return memo


def _once(scenario: Scenario, key: tuple[str, ...], build: Callable[[], T]) -> T:
    """What ``build`` makes for ``key``, made the first time ``scenario`` asks (:func:`_built`)."""
    memo = _built(scenario)
    if key not in memo:
        memo[key] = build()
    got: T = memo[key]
    return got


def vm_component(scenario: Scenario, kind: str, vm: Vm) -> Component:
    """``vm``'s component in writer ``kind``'s documents — the Hyper-V writer's of the node that
    runs it, the CSV writer's of every other node: the same in every document that lists it, so
    built once (the CSV writer's all at once: every node's document but one lists each)."""
    if kind == CSV:
        return _csv_components(scenario)[vm.name]
    return _once(scenario, ("component", HYPERV, vm.name), lambda: hyperv_component(scenario, vm))


def _csv_components(scenario: Scenario) -> dict[str, Component]:
    """Every VM's CSV writer component, by VM name."""
    return _once(
        scenario,
        ("components", CSV),
        lambda: {vm.name: csv_component(scenario, vm) for vm in scenario.vms},
    )


def hyperv_metadata(scenario: Scenario, node: str) -> WriterMetadata:
    """The Hyper-V writer of ``node``: the VMs that node runs."""
    name = scenario.node(node).name
    return _once(scenario, ("document", HYPERV, name), lambda: _hyperv_metadata(scenario, name))


def _hyperv_metadata(scenario: Scenario, name: str) -> WriterMetadata:
    return WriterMetadata(
        name=HYPERV_WRITER_NAME,
        writer_id=HYPERV_WRITER_ID,
        instance_id=writer_instance_id(scenario, HYPERV, name),
        restore_method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        restore_conditions=WriterRestore.ALWAYS,
        components=tuple(vm_component(scenario, HYPERV, vm) for vm in scenario.vms_by_node[name]),
        node=name,
    )


def csv_metadata(scenario: Scenario, node: str) -> WriterMetadata:
    """The CSV writer of ``node``: every VM on a CSV that runs on another node."""
    name = scenario.node(node).name
    return _once(scenario, ("document", CSV, name), lambda: _csv_metadata(scenario, name))


def _csv_metadata(scenario: Scenario, name: str) -> WriterMetadata:
    every = _csv_components(scenario)
    return WriterMetadata(
        name=CSV_WRITER_NAME,
        writer_id=CSV_WRITER_ID,
        instance_id=writer_instance_id(scenario, CSV, name),
        restore_method=RestoreMethod.UNDEFINED,
        restore_conditions=WriterRestore.NEVER,
        usage=UsageType.SYSTEMSERVICE,
        components=tuple(every[vm.name] for vm in scenario.vms if vm.node != name),
        node=name,
    )


# --- actions: what a writer asks the simulation to do ------------------------------------------


@dataclass(frozen=True)
class GuestSnapshot:
    """Online backup of ``vm``: integration services → guest VSS → guest writers (③④⑤)."""

    vm: Vm


@dataclass(frozen=True)
class SaveState:
    """Offline backup of ``vm``: save its state (it is down until :class:`Resume`)."""

    vm: Vm


@dataclass(frozen=True)
class AutoRecover:
    """PostSnapshot: roll the VM's disks inside the shadow copy back to the guest snapshot."""

    vm: Vm


@dataclass(frozen=True)
class Resume:
    vm: Vm


@dataclass(frozen=True)
class Relay:
    """CSV writer → the Hyper-V writer of ``node``: deliver ``event`` for ``vms`` there."""

    node: str
    event: WriterEvent
    vms: tuple[Vm, ...]


Action = GuestSnapshot | SaveState | AutoRecover | Resume | Relay


def hyperv_actions(event: WriterEvent, vms: tuple[Vm, ...]) -> list[Action]:
    """What the Hyper-V writer does for ``event`` with its selected ``vms``."""
    if event is WriterEvent.PREPARE_SNAPSHOT:
        return [GuestSnapshot(vm) if vm.online_backup else SaveState(vm) for vm in vms]
    if event is WriterEvent.POST_SNAPSHOT:
        return [AutoRecover(vm) if vm.online_backup else Resume(vm) for vm in vms]
    if event is WriterEvent.ABORT:
        return [Resume(vm) for vm in vms if not vm.online_backup]
    return []


RELAYED = (
    WriterEvent.PREPARE_BACKUP,
    WriterEvent.PREPARE_SNAPSHOT,
    WriterEvent.FREEZE,
    WriterEvent.THAW,
    WriterEvent.POST_SNAPSHOT,
    WriterEvent.BACKUP_COMPLETE,
    WriterEvent.ABORT,
    WriterEvent.BACKUP_SHUTDOWN,
)


def csv_actions(event: WriterEvent, by_node: dict[str, tuple[Vm, ...]]) -> list[Action]:
    """What the CSV writer does: relay ``event`` to each node that owns selected VMs."""
    if event not in RELAYED:
        return []
    return [Relay(node, event, vms) for node, vms in sorted(by_node.items())]
