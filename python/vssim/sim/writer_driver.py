"""Writer events during a backup: which writers take part, delivery of each event to every writer
at once, the CSV writer's relays to other nodes' Hyper-V writers, and what the Hyper-V writer does
for each VM (guest snapshot through the integration services, saved state, auto-recovery,
resume) in simulated time. A writer that fails records its failure HRESULT in its machine; the
snapshot set's joint rule (:mod:`vssim.vss.snapshot_set`) turns an involved writer's failure into
an abort."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from vssim.scenario import Fault, FaultKind, Vm
from vssim.sim import costs, freeze_costs
from vssim.sim.csv_access import CsvAccess
from vssim.sim.run_scope import EVENT_TEXT, PHASE_OF, WE, Proc, RunScope, WriterInstance
from vssim.vss.enums import HResult, hresult_name
from vssim.vss.jobs import WriterStatus
from vssim.vss.metadata import WriterMetadata
from vssim.vss.snapshot_set import SnapshotSetMachine
from vssim.vss.timeline import PhaseKind
from vssim.vss.well_known_ids import HYPERV_WRITER_ID, HYPERV_WRITER_NAME
from vssim.vss.writer_state import WriterEvent, WriterMachine
from vssim.vss.writers import (
    CSV,
    HYPERV,
    AutoRecover,
    GuestSnapshot,
    Relay,
    Resume,
    SaveState,
    csv_actions,
    csv_metadata,
    hyperv_actions,
    hyperv_metadata,
    writer_instance_id,
)


class WriterDriver:
    """The writers of one backup run: the requester node's (its Hyper-V writer and, on 2012, its
    CSV writer) and the other nodes' Hyper-V writers the CSV writer relays to."""

    def __init__(
        self,
        scope: RunScope,
        snapshot_set: SnapshotSetMachine,
        csvs: CsvAccess,
        saved: Callable[[Vm, bool], None],
    ) -> None:
        #: Told when a VM goes into (True) or out of (False) a saved state: no I/O meanwhile.
        self.saved = saved
        self.scope = scope
        self.env, self.sc, self.state, self.job = scope.env, scope.sc, scope.state, scope.job
        self.tl, self.result, self.req, self.links = scope.tl, scope.result, scope.req, scope.links
        self.set = snapshot_set
        self.csvs = csvs
        self.writers: list[WriterInstance] = []
        self.remote: dict[str, WriterInstance] = {}
        self.selected_by_node: dict[str, tuple[Vm, ...]] = {}
        self.downtime_since: dict[str, float] = {}

    def enlist(self) -> None:
        """The writers the requester's node sees, with the VMs selected from each; on 2012 the
        CSV writer's VMs are grouped by the node that runs them (its relays' targets)."""
        sc, req = self.scope.sc, self.scope.req
        by_writer: dict[str, list[Vm]] = {HYPERV: [], CSV: []}
        for s in self.scope.job.selected:
            kind = CSV if s.writer.name != HYPERV_WRITER_NAME else HYPERV
            by_writer[kind].append(s.vm)
        local = hyperv_metadata(sc, req)
        self.writers.append(self._instance(HYPERV, req, local, tuple(by_writer[HYPERV])))
        if self.scope.profile.csv_writer:
            csvw = csv_metadata(sc, req)
            self.writers.append(self._instance(CSV, req, csvw, tuple(by_writer[CSV])))
            by_node: dict[str, list[Vm]] = {}
            for vm in by_writer[CSV]:
                by_node.setdefault(vm.node, []).append(vm)
            self.selected_by_node = {n: tuple(v) for n, v in by_node.items()}
        for w in self.writers:
            self.set.join(w)

    def _instance(
        self, kind: str, node: str, wmd: WriterMetadata | None, vms: tuple[Vm, ...]
    ) -> WriterInstance:
        name = wmd.name if wmd else HYPERV_WRITER_NAME
        return WriterInstance(
            kind, node, wmd, WriterMachine(f"{name} on {node}"), vms, involved=bool(vms)
        )

    def _remote_writer(self, node: str) -> WriterInstance:
        w = self.remote.get(node)
        if w is None:
            vms = self.selected_by_node.get(node, ())
            w = self._instance(HYPERV, node, None, vms)
            self.remote[node] = w
            self.set.join(w)
        return w

    def participants(self) -> list[WriterInstance]:
        return self.writers + list(self.remote.values())

    def deliver_all(self, event: WriterEvent) -> Proc:
        """Every writer of the requester's node handles ``event`` at once."""
        # A failed writer gets nothing more but Abort and BackupShutdown.
        procs = [
            self.env.process(self._deliver(w, event))
            for w in self.writers
            if not w.machine.phase.failed or event in (WE.ABORT, WE.BACKUP_SHUTDOWN)
        ]
        if procs:
            yield simpy.AllOf(self.env, procs)

    def _step_label(self, w: WriterInstance, event: WriterEvent) -> str:
        if event is not WE.PREPARE_SNAPSHOT or w.node != self.req:
            return ""
        if not self.scope.profile.csv_writer:
            return "②"
        return "②-1" if w.kind == HYPERV else "②-2"

    def _writer_fault(self, w: WriterInstance, phase: str) -> Fault | None:
        for _, f in self.scope.faults(FaultKind.WRITER_FAIL, phase):
            if f.vm is None and f.node == w.node and (f.writer or HYPERV) == w.kind:
                return f
        return None

    def _vm_fault(self, vm: Vm, event: WriterEvent) -> int:
        """The HRESULT a fault makes this VM's part of ``event`` fail with, or S_OK."""
        for _, f in self.scope.faults(FaultKind.WRITER_FAIL, PHASE_OF.get(event, "")):
            if f.vm is not None and f.vm.lower() == vm.name.lower():
                return f.hresult or int(HResult.VSS_E_WRITERERROR_NONRETRYABLE)
        return int(HResult.S_OK)

    def _deliver(self, w: WriterInstance, event: WriterEvent) -> Proc:
        """One writer handles one event: its actions run, then its machine moves (failed if its
        handler or a fault says so)."""
        if not w.machine.accepts(event):
            raise w.machine.refusal(event)
        start, seq = self.env.now, self.tl.next_seq()
        phase = PHASE_OF.get(event, "")
        ok, hr = True, int(HResult.S_OK)
        fault = self._writer_fault(w, phase) if phase else None
        if fault is not None:
            ok, hr = False, fault.hresult or HResult.VSS_E_WRITERERROR_NONRETRYABLE
        base = costs.IDENTIFY_S if event is WE.IDENTIFY else costs.RPC_S
        if event is WE.IDENTIFY and w.wmd is not None:
            base += costs.IDENTIFY_PER_COMPONENT_S * len(w.wmd.components)
        if event is WE.PREPARE_BACKUP:
            base = costs.PREPARE_BACKUP_S
        yield self.env.timeout(base + (self.scope.delay(phase, w.node) if phase else 0.0))
        if ok:
            ok, hr = yield from self._act(w, event)
        w.machine.send(event, ok, hr)
        result = "S_OK" if ok else hresult_name(hr)
        detail = str(w.machine.state)
        self.tl.add(
            w.node,
            w.name,
            EVENT_TEXT[event],
            start,
            self.env.now,
            result,
            self._step_label(w, event),
            detail,
            seq=seq,
            kind=PhaseKind.WRITER,
            call=event,
        )

    def _act(self, w: WriterInstance, event: WriterEvent) -> Generator[Any, Any, tuple[bool, int]]:
        if w.kind == CSV:
            if event is WE.IDENTIFY:
                nodes = [n.name for n in self.sc.nodes if n.name != w.node]
                procs = [
                    self.env.process(self._relay(Relay(n, event, ())))
                    for n in nodes
                    if self.state.is_up(n)
                ]
                if procs:
                    yield simpy.AllOf(self.env, procs)
                return True, int(HResult.S_OK)
            relays = csv_actions(event, self.selected_by_node)
            procs = [self.env.process(self._relay(r)) for r in relays if isinstance(r, Relay)]
            if procs:
                done = yield simpy.AllOf(self.env, procs)
                for relay_hr in done.values():
                    if relay_hr != HResult.S_OK:
                        return False, int(relay_hr)
            return True, int(HResult.S_OK)
        if (
            event is WE.POST_SNAPSHOT
            and not self.job.auto_recovery
            and any(vm.online_backup for vm in w.vms)
        ):
            return False, int(HResult.VSS_E_WRITERERROR_RETRYABLE)
        actions = hyperv_actions(event, w.vms)
        procs = [self.env.process(self._vm_action(w, event, a)) for a in actions]
        if procs:
            done = yield simpy.AllOf(self.env, procs)
            # No partial backups: one VM failing fails the writer, hence the whole set.
            for vm_hr in done.values():
                if vm_hr != HResult.S_OK:
                    return False, int(vm_hr)
        return True, int(HResult.S_OK)

    def _relay(self, r: Relay) -> Generator[Any, Any, int]:
        """CSV writer → another node's Hyper-V writer; the HRESULT the relay ends with (the
        remote writer's failure, or VSS_E_CLUSTER_ERROR when the node cannot be reached)."""
        yield self.env.timeout(costs.RPC_S)
        if not self.state.is_up(r.node):
            self.scope.mark(
                r.node,
                HYPERV_WRITER_NAME,
                EVENT_TEXT[r.event],
                "VSS_E_CLUSTER_ERROR",
                detail="node down: relay from the CSV writer failed",
                kind=PhaseKind.WRITER,
                call=r.event,
            )
            return int(HResult.VSS_E_CLUSTER_ERROR)
        w = self._remote_writer(r.node)
        if w.machine.phase.failed:
            return w.machine.failure
        if not w.machine.accepts(r.event):
            return int(HResult.S_OK)
        yield from self._deliver(w, r.event)
        return w.machine.failure if w.machine.phase.failed else int(HResult.S_OK)

    def _vm_action(
        self, w: WriterInstance, event: WriterEvent, a: object
    ) -> Generator[Any, Any, int]:
        """One VM's part of a Hyper-V writer event; the HRESULT it ends with."""
        vm = getattr(a, "vm", None)
        if isinstance(vm, Vm):
            hr = self._vm_fault(vm, event)
            if hr != HResult.S_OK:
                self.scope.mark(
                    w.node,
                    w.name,
                    f"{EVENT_TEXT[event]}: {vm.name} failed",
                    hresult_name(hr),
                    kind=PhaseKind.VM_FAILED,
                    call=event,
                    vm=vm.name,
                )
                return hr
        if isinstance(a, GuestSnapshot):
            yield from self._guest_snapshot(w, a.vm)
        elif isinstance(a, SaveState):
            yield from self._save_state(w, a.vm)
        elif isinstance(a, AutoRecover):
            yield from self._auto_recover(w, a.vm)
        elif isinstance(a, Resume):
            yield from self.resume(w, a.vm)
        return int(HResult.S_OK) if self.state.is_up(w.node) else int(HResult.VSS_E_CLUSTER_ERROR)

    def _csv_path_nodes(self, vm: Vm, node: str) -> tuple[str, ...]:
        """NICs a write from ``node`` to the VM's CSV crosses: none with direct I/O; the node's
        and the coordinator's while the CSV is in redirected access."""
        coord = self.state.coordinators[vm.csv]
        if self.csvs.is_redirected(self.sc.csv_of(vm)) and node != coord:
            return (node, coord)
        return ()

    def _guest_snapshot(self, w: WriterInstance, vm: Vm) -> Proc:
        self.result.frozen_vms.append(vm.name)
        yield from self.scope.span(
            w.node,
            HYPERV_WRITER_NAME,
            f"integration services: backup request to {vm.name}",
            costs.IS_REQUEST_S,
            step="③",
            kind=PhaseKind.GUEST_REQUEST,
            vm=vm.name,
        )
        # ④: the guest's writers prepare and freeze (a draw), then its dirty data is flushed.
        start, seq = self.env.now, self.tl.next_seq()
        writers = freeze_costs.guest_freeze_s(self.sc, vm, start)
        yield self.env.timeout(writers)
        dirty = freeze_costs.guest_flush_bytes(vm)
        flush_nodes = self._csv_path_nodes(vm, w.node)
        yield from self.links.transfer(dirty, self.sc.csv_of(vm), flush_nodes)
        self.tl.add(
            w.node,
            f"guest VSS ({vm.name})",
            "guest writers: prepare and freeze",
            start,
            self.env.now,
            step="④",
            detail=f"writers {writers:.2f} s, then {dirty} dirty bytes flushed",
            seq=seq,
            kind=PhaseKind.GUEST_FREEZE,
            vm=vm.name,
        )
        start, seq = self.env.now, self.tl.next_seq()
        csv = self.sc.csv_of(vm)
        nodes = self._csv_path_nodes(vm, w.node)
        yield from self.links.transfer(vm.workload.guest_snapshot_bytes, csv, nodes)
        if nodes:
            self.result.redirected_bytes[csv.name] = (
                self.result.redirected_bytes.get(csv.name, 0) + vm.workload.guest_snapshot_bytes
            )
        self.tl.add(
            w.node,
            f"guest VSS ({vm.name})",
            "guest shadow copy; VHD(X) updated through the CSV driver",
            start,
            self.env.now,
            step="⑤",
            detail=f"{vm.workload.guest_snapshot_bytes} bytes",
            seq=seq,
            kind=PhaseKind.GUEST_SHADOW_COPY,
            vm=vm.name,
            csv=csv.name,
        )

    def _save_state(self, w: WriterInstance, vm: Vm) -> Proc:
        if not vm.running:
            return
        self.result.frozen_vms.append(vm.name)
        self.downtime_since[vm.name] = self.env.now
        self.saved(vm, True)
        start, seq = self.env.now, self.tl.next_seq()
        yield from self.links.transfer(vm.workload.memory_bytes, self.sc.csv_of(vm))
        self.tl.add(
            w.node,
            HYPERV_WRITER_NAME,
            f"save state of {vm.name} (VM down)",
            start,
            self.env.now,
            detail="no integration services",
            seq=seq,
            kind=PhaseKind.SAVE_STATE,
            vm=vm.name,
        )

    def resume(self, w: WriterInstance, vm: Vm) -> Proc:
        since = self.downtime_since.pop(vm.name, None)
        if since is None:
            return
        start, seq = self.env.now, self.tl.next_seq()
        yield from self.links.transfer(vm.workload.memory_bytes, self.sc.csv_of(vm))
        self.saved(vm, False)
        self.result.downtime[vm.name] = self.env.now - since
        self.tl.add(
            w.node,
            HYPERV_WRITER_NAME,
            f"resume {vm.name}",
            start,
            self.env.now,
            detail=f"down {self.env.now - since:.1f} s",
            seq=seq,
            kind=PhaseKind.RESUME,
            vm=vm.name,
        )

    def _auto_recover(self, w: WriterInstance, vm: Vm) -> Proc:
        start, seq = self.env.now, self.tl.next_seq()
        yield from self.links.transfer(vm.workload.auto_recovery_bytes, self.sc.csv_of(vm))
        self.result.autorecovery_bytes += vm.workload.auto_recovery_bytes
        self.tl.add(
            w.node,
            HYPERV_WRITER_NAME,
            f"auto-recovery of {vm.name} inside the shadow copy",
            start,
            self.env.now,
            seq=seq,
            kind=PhaseKind.AUTO_RECOVERY,
            vm=vm.name,
        )

    def status(self) -> list[WriterStatus]:
        out = []
        for w in self.writers:
            assert w.wmd is not None
            out.append(
                WriterStatus(
                    w.name,
                    w.wmd.writer_id,
                    w.wmd.instance_id,
                    w.node,
                    w.machine.state,
                    w.machine.failure,
                )
            )
        for w in self.remote.values():
            out.append(
                WriterStatus(
                    w.name,
                    HYPERV_WRITER_ID,
                    writer_instance_id(self.sc, HYPERV, w.node),
                    w.node,
                    w.machine.state,
                    w.machine.failure,
                )
            )
        return out
