"""Writer events during a backup: GatherWriterMetadata, delivery of each event to every writer
at once, the CSV writer's relays to other nodes' Hyper-V writers, and what the Hyper-V writer does
for each VM (guest snapshot through the integration services, saved state, auto-recovery,
resume) in simulated time. A writer that fails records its failure HRESULT in its machine;
:meth:`WriterDriver._check_writers` turns an involved writer's failure into an abort."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from vssim.scenario import Fault, FaultKind, Vm
from vssim.sim import costs
from vssim.sim.run_base import (
    EVENT_TEXT,
    PHASE_OF,
    REQUESTER,
    WE,
    AbortBackupError,
    Proc,
    RunBase,
    WriterInstance,
)
from vssim.vss.backup_state import BcCall
from vssim.vss.enums import HResult, hresult_name
from vssim.vss.jobs import WriterStatus
from vssim.vss.metadata import WriterMetadata
from vssim.vss.snapshot_set import SetEvent, SetState
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


class WriterDriver(RunBase):
    """The writer side of a backup run."""

    def _gather_metadata(self) -> Proc:
        """GatherWriterMetadata: every writer the requester's node sees identifies itself; on
        2012 the CSV writer also gathers the other nodes' Hyper-V writers' VMs."""
        self.bc.send(BcCall.GATHER_WRITER_METADATA)
        start, seq = self.env.now, self.tl.next_seq()
        by_writer: dict[str, list[Vm]] = {HYPERV: [], CSV: []}
        for s in self.job.selected:
            kind = CSV if s.writer.name != HYPERV_WRITER_NAME else HYPERV
            by_writer[kind].append(s.vm)
        local = hyperv_metadata(self.sc, self.req)
        self.writers.append(self._instance(HYPERV, self.req, local, tuple(by_writer[HYPERV])))
        if self.profile.csv_writer:
            csvw = csv_metadata(self.sc, self.req)
            self.writers.append(self._instance(CSV, self.req, csvw, tuple(by_writer[CSV])))
        for w in self.writers:
            self.set.join(w)
            by_node: dict[str, list[Vm]] = {}
            for vm in by_writer[CSV]:
                by_node.setdefault(vm.node, []).append(vm)
            self.selected_by_node = {n: tuple(v) for n, v in by_node.items()}
        yield from self._dispatch(WE.IDENTIFY)
        self.tl.add(self.req, REQUESTER, "GatherWriterMetadata", start, self.env.now, seq=seq)
        self._check_writers()

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

    def _participants(self) -> list[WriterInstance]:
        return self.writers + list(self.remote.values())

    def _dispatch(self, event: WriterEvent) -> Proc:
        phase = PHASE_OF.get(event, "")
        if phase:
            yield from self._nodes_down(phase)
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
        if not self.profile.csv_writer:
            return "②"
        return "②-1" if w.kind == HYPERV else "②-2"

    def _writer_fault(self, w: WriterInstance, phase: str) -> Fault | None:
        for _, f in self._faults(FaultKind.WRITER_FAIL, phase):
            if f.vm is None and f.node == w.node and (f.writer or HYPERV) == w.kind:
                return f
        return None

    def _vm_fault(self, vm: Vm, event: WriterEvent) -> int:
        """The HRESULT a fault makes this VM's part of ``event`` fail with, or S_OK."""
        for _, f in self._faults(FaultKind.WRITER_FAIL, PHASE_OF.get(event, "")):
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
        yield self.env.timeout(base + (self._delay(phase, w.node) if phase else 0.0))
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
            self._mark(
                r.node,
                HYPERV_WRITER_NAME,
                EVENT_TEXT[r.event],
                "VSS_E_CLUSTER_ERROR",
                detail="node down: relay from the CSV writer failed",
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
                self._mark(
                    w.node, w.name, f"{EVENT_TEXT[event]}: {vm.name} failed", hresult_name(hr)
                )
                return hr
        if isinstance(a, GuestSnapshot):
            yield from self._guest_snapshot(w, a.vm)
        elif isinstance(a, SaveState):
            yield from self._save_state(w, a.vm)
        elif isinstance(a, AutoRecover):
            yield from self._auto_recover(w, a.vm)
        elif isinstance(a, Resume):
            yield from self._resume(w, a.vm)
        return int(HResult.S_OK) if self.state.is_up(w.node) else int(HResult.VSS_E_CLUSTER_ERROR)

    def _csv_path_nodes(self, vm: Vm, node: str) -> tuple[str, ...]:
        """NICs a write from ``node`` to the VM's CSV crosses: none with direct I/O; the node's
        and the coordinator's while the CSV is in redirected access."""
        coord = self.state.coordinators[vm.csv]
        if vm.csv in self.redirect_since and node != coord:
            return (node, coord)
        return ()

    def _guest_snapshot(self, w: WriterInstance, vm: Vm) -> Proc:
        self.result.frozen_vms.append(vm.name)
        yield from self._span(
            w.node,
            HYPERV_WRITER_NAME,
            f"integration services: backup request to {vm.name}",
            costs.IS_REQUEST_S,
            step="③",
        )
        yield from self._span(
            w.node,
            f"guest VSS ({vm.name})",
            "guest writers: prepare and freeze",
            vm.workload.guest_vss_seconds,
            step="④",
        )
        start, seq = self.env.now, self.tl.next_seq()
        csv = self.sc.csv_of(vm)
        nodes = self._csv_path_nodes(vm, w.node)
        yield from self.res.transfer(vm.workload.guest_snapshot_bytes, csv, nodes)
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
        )

    def _save_state(self, w: WriterInstance, vm: Vm) -> Proc:
        if not vm.running:
            return
        self.result.frozen_vms.append(vm.name)
        self.downtime_since[vm.name] = self.env.now
        start, seq = self.env.now, self.tl.next_seq()
        yield from self.res.transfer(vm.workload.memory_bytes, self.sc.csv_of(vm))
        self.tl.add(
            w.node,
            HYPERV_WRITER_NAME,
            f"save state of {vm.name} (VM down)",
            start,
            self.env.now,
            detail="no integration services",
            seq=seq,
        )

    def _resume(self, w: WriterInstance, vm: Vm) -> Proc:
        since = self.downtime_since.pop(vm.name, None)
        if since is None:
            return
        start, seq = self.env.now, self.tl.next_seq()
        yield from self.res.transfer(vm.workload.memory_bytes, self.sc.csv_of(vm))
        self.result.downtime[vm.name] = self.env.now - since
        self.tl.add(
            w.node,
            HYPERV_WRITER_NAME,
            f"resume {vm.name}",
            start,
            self.env.now,
            detail=f"down {self.env.now - since:.1f} s",
            seq=seq,
        )

    def _auto_recover(self, w: WriterInstance, vm: Vm) -> Proc:
        start, seq = self.env.now, self.tl.next_seq()
        yield from self.res.transfer(vm.workload.auto_recovery_bytes, self.sc.csv_of(vm))
        self.result.autorecovery_bytes += vm.workload.auto_recovery_bytes
        self.tl.add(
            w.node,
            HYPERV_WRITER_NAME,
            f"auto-recovery of {vm.name} inside the shadow copy",
            start,
            self.env.now,
            seq=seq,
        )

    def _gather_status(self) -> Proc:
        yield from self._call(BcCall.GATHER_WRITER_STATUS)
        self._check_writers()

    def _check_writers(self) -> None:
        """Every writer answered: the set's joint rule aborts it if an involved writer failed."""
        if self.set.send(SetEvent.WRITERS_ANSWERED) is SetState.ABORTED:
            assert self.set.failure is not None
            raise AbortBackupError(*self.set.failure)

    def _status(self) -> list[WriterStatus]:
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
