"""One backup as a SimPy process: the requester's calls (spec §1) driving the sans-I/O roles of
:mod:`vssim.vss` on a virtual clock, with every step recorded in a :class:`Timeline`.

How it works: :class:`BackupRun` owns one backup-components machine (call order), one writer
machine per writer instance that takes part (the requester node's Hyper-V writer and, on 2012, its
CSV writer, plus the other nodes' Hyper-V writers the CSV writer relays to) and one provider
machine per volume. Writer events are delivered to all writers at once (SimPy processes); each
writer's handler returns actions (guest snapshot, saved state, relay, auto-recovery) that take
simulated time on the cluster's shared resources. Timeouts are events the driver generates: the
freeze window (60 s per writer) and flush-and-hold (10 s) bound the provider steps between Freeze
and Thaw. Any failure raises :class:`AbortBackupError` inside the process, and the abort path
runs: Abort to every writer, AbortSnapshots (or delete) at the providers, CSVs released —
nothing stays committed.

Seed steps (``Record.step``): 2012 ① DoSnapshotSet requested, ②-1 local Hyper-V writer and ②-2 CSV
writer get PrepareForSnapshot, ③ a Hyper-V writer asks a VM's integration services, ④ guest VSS
drives the guest writers, ⑤ the guest snapshot updates the VHDX through the CSV, ⑥ the local node
tells the CSV providers it is ready, ⑦ the CSV providers make the CSV snapshot with every node's
writers, ⑧ the requester is told. 2008 R2: the same numbers with a single ② (no CSV writer) and the
volume's own provider at ⑥–⑦.
"""

from __future__ import annotations

import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from vssim.errors import VssProtocolError
from vssim.scenario import Csv, Fault, FaultKind, Vm
from vssim.sim import costs
from vssim.sim.jobs import BackupJob, BackupResult, WriterStatus
from vssim.sim.resources import ClusterResources
from vssim.sim.timeline import Timeline
from vssim.vss.backup_state import TABLE as _BCTABLE
from vssim.vss.backup_state import BackupComponentsMachine, BcCall, BcState
from vssim.vss.cluster import ClusterState, ShadowCopy
from vssim.vss.enums import HResult, ProviderType, SnapshotAttr, hresult_name
from vssim.vss.ids import HYPERV_WRITER_ID, HYPERV_WRITER_NAME
from vssim.vss.machine import protocol_error
from vssim.vss.metadata import WriterMetadata
from vssim.vss.profiles import Profile, profile_for
from vssim.vss.provider_state import TABLE as _PTABLE
from vssim.vss.provider_state import ProviderCall, ProviderMachine
from vssim.vss.providers import (
    CSV_HELPER_PROVIDER,
    CSV_PROVIDER,
    ProviderInfo,
    volume_provider,
)
from vssim.vss.writer_state import TABLE as WRITER_TABLE
from vssim.vss.writer_state import WriterEvent, WriterMachine, WriterPhase
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
from vssim.workloads import hot_spot_writes

Proc = Generator[Any, Any, Any]
WE = WriterEvent

PHASE_OF = {
    WE.IDENTIFY: "identify",
    WE.PREPARE_BACKUP: "prepare_backup",
    WE.PREPARE_SNAPSHOT: "prepare_snapshot",
    WE.FREEZE: "freeze",
    WE.THAW: "thaw",
    WE.POST_SNAPSHOT: "post_snapshot",
    WE.BACKUP_COMPLETE: "backup_complete",
}
EVENT_TEXT = {
    WE.IDENTIFY: "Identify",
    WE.PREPARE_BACKUP: "PrepareForBackup",
    WE.PREPARE_SNAPSHOT: "PrepareForSnapshot",
    WE.FREEZE: "Freeze",
    WE.THAW: "Thaw",
    WE.POST_SNAPSHOT: "PostSnapshot",
    WE.BACKUP_COMPLETE: "BackupComplete",
    WE.ABORT: "Abort",
    WE.BACKUP_SHUTDOWN: "BackupShutdown",
    WE.FREEZE_TIMEOUT: "freeze window expired",
}
REQUESTER = "requester"
VSS = "VSS"
CLUSTER = "cluster"


class AbortBackupError(Exception):
    """Raised inside a backup process: the set must be aborted with ``hresult``."""

    def __init__(self, hresult: int, message: str) -> None:
        self.hresult = hresult
        super().__init__(message)


@dataclass
class WriterInstance:
    """A writer taking part in the backup, on one node."""

    kind: str
    node: str
    wmd: WriterMetadata | None
    machine: WriterMachine
    vms: tuple[Vm, ...]
    #: Selected components belong to it (or it was relayed to): its failure fails the backup.
    involved: bool

    @property
    def name(self) -> str:
        return HYPERV_WRITER_NAME if self.wmd is None else self.wmd.name


class BackupRun:
    """One backup job on one cluster: ``env.process(run.process())``."""

    def __init__(
        self,
        env: simpy.Environment,
        state: ClusterState,
        resources: ClusterResources,
        job: BackupJob,
    ) -> None:
        self.env = env
        self.state = state
        self.sc = state.scenario
        self.res = resources
        self.job = job
        self.profile: Profile = profile_for(self.sc.os)
        self.tl = Timeline()
        self.result = BackupResult(job=job, timeline=self.tl)
        self.req = self.sc.node(job.node).name
        self.bc = BackupComponentsMachine(job.context)
        self.writers: list[WriterInstance] = []
        self.remote: dict[str, WriterInstance] = {}
        self.providers: dict[str, ProviderMachine] = {}
        self.copies: dict[str, ShadowCopy] = {}
        self.claimed: list[Csv] = []
        self.redirect_since: dict[str, float] = {}
        self.downtime_since: dict[str, float] = {}
        self.fired: set[int] = set()
        self.commit_time: float | None = None
        self.selected_by_node: dict[str, tuple[Vm, ...]] = {}

    # --- recording --------------------------------------------------------------------------

    def _span(
        self, node: str, role: str, event: str, duration: float, step: str = "", detail: str = ""
    ) -> Proc:
        start = self.env.now
        seq = self.tl.next_seq()
        if duration > 0:
            yield self.env.timeout(duration)
        self.tl.add(node, role, event, start, self.env.now, step=step, detail=detail, seq=seq)

    def _mark(
        self,
        node: str,
        role: str,
        event: str,
        result: str = "S_OK",
        step: str = "",
        detail: str = "",
    ) -> None:
        now = self.env.now
        self.tl.add(node, role, event, now, now, result=result, step=step, detail=detail)

    def _call(self, call: BcCall, duration: float = 0.0, detail: str = "") -> Proc:
        self.bc.send(call)
        name = "".join(w.capitalize() for w in call.name.split("_"))
        yield from self._span(self.req, REQUESTER, name, duration, detail=detail)

    # --- faults -----------------------------------------------------------------------------

    def _faults(self, kind: FaultKind, phase: str) -> list[tuple[int, Fault]]:
        return [(i, f) for i, f in enumerate(self.sc.faults) if f.kind is kind and f.phase == phase]

    def _delay(self, phase: str, node: str | None = None) -> float:
        return sum(
            f.seconds
            for _, f in self._faults(FaultKind.DELAY, phase)
            if f.node is None or node is None or f.node == node
        )

    def _nodes_down(self, phase: str) -> Proc:
        for i, f in self._faults(FaultKind.NODE_DOWN, phase):
            if i in self.fired or f.node is None:
                continue
            self.fired.add(i)
            node = f.node
            self.state.nodes_down.add(node)
            self._mark(node, CLUSTER, f"node {node} down", "DOWN", detail=f"at {phase}")
            if node == self.req:
                raise AbortBackupError(
                    HResult.VSS_E_CLUSTER_ERROR, f"the requester's node {node} went down"
                )
            for csv in self.job.volumes:
                if self.state.coordinators[csv.name] == node and self.commit_time is None:
                    yield from self._failover(csv)

    def _failover(self, csv: Csv) -> Proc:
        up = [n.name for n in self.sc.nodes if self.state.is_up(n.name)]
        new = self.req if self.req in up else up[0]
        self.state.coordinators[csv.name] = new
        yield from self._span(new, CLUSTER, f"{csv.name} fails over to {new}", costs.FAILOVER_S)

    def _provider_fault(self, phase: str) -> None:
        for _, f in self._faults(FaultKind.PROVIDER_ERROR, phase):
            hr = f.hresult or HResult.VSS_E_UNEXPECTED_PROVIDER_ERROR
            raise AbortBackupError(hr, f"the provider failed {phase}")

    # --- the backup -------------------------------------------------------------------------

    def process(self) -> Proc:
        self.result.start = self.env.now
        try:
            yield from self._backup()
        except AbortBackupError as a:
            yield from self._abort(a.hresult, str(a))
        except VssProtocolError as e:
            yield from self._abort(e.hresult, str(e))
        self.result.end = self.env.now
        self.result.shadow_copies = [c for c in self.copies.values() if c in self.state.snapshots]
        self.result.network_bytes = sum(self.result.redirected_bytes.values()) + (
            self.result.network_bytes
        )

    def _backup(self) -> Proc:
        job, prof = self.job, self.profile
        if not self.state.is_up(self.req):
            raise AbortBackupError(HResult.VSS_E_CLUSTER_ERROR, f"node {self.req} is down")
        for s in job.selected:
            if s.writer.node and s.writer.node.lower() != self.req.lower():
                raise AbortBackupError(
                    HResult.VSS_E_OBJECT_NOT_FOUND,
                    f"{s.writer.name} of {s.writer.node} is not a writer of {self.req}",
                )
        yield from self._call(BcCall.INITIALIZE_FOR_BACKUP)
        self.bc.send(BcCall.SET_CONTEXT, job.context)
        self._mark(self.req, REQUESTER, "SetContext", detail=str(job.context))
        yield from self._call(
            BcCall.SET_BACKUP_STATE,
            detail=f"select_components=true, bootable_system_state=true, {job.backup_type}, "
            "partial_file_support=false",
        )
        if job.with_writers:
            yield from self._gather_metadata()
            for s in job.selected:
                yield from self._call(
                    BcCall.ADD_COMPONENT,
                    costs.ADD_COMPONENT_S,
                    detail=f"{s.writer.name}:{s.component.full_path}",
                )
        self.result.set_id = self.state.new_id("snapshot-set")
        yield from self._call(BcCall.START_SNAPSHOT_SET, detail=str(self.result.set_id))
        for csv in job.volumes:
            self.bc.add_volume(csv.volume_name)
            self.copies[csv.name] = self._new_copy(csv)
            self._mark(self.req, REQUESTER, "AddToSnapshotSet", detail=csv.volume_name)
        if prof.exclusive_csv_backup:
            yield from self._prepare_csvs_2008r2()
        if job.with_writers:
            yield from self._call(BcCall.PREPARE_FOR_BACKUP)
            yield from self._nodes_down("prepare_backup")
            yield from self._dispatch(WE.PREPARE_BACKUP)
            yield from self._gather_status()
        yield from self._do_snapshot_set()
        yield from self._copy_and_complete()

    def _new_copy(self, csv: Csv) -> ShadowCopy:
        prov = self._provider_for(csv)
        attrs = SnapshotAttr(self.job.context.value & 0xFF) | prov.attributes()
        if not self.job.auto_recovery:
            attrs |= SnapshotAttr.NO_AUTORECOVERY
        if volume_provider(csv).type is ProviderType.HARDWARE:
            attrs |= SnapshotAttr.HARDWARE_ASSISTED
        assert self.result.set_id is not None
        return ShadowCopy(
            id=str(self.state.new_id("shadow-copy")),
            set_id=str(self.result.set_id),
            count=len(self.job.volumes),
            csv=csv.name,
            volume_name=csv.volume_name,
            mount_point=csv.display_name,
            created=0.0,
            device=0,
            originating_machine=self.req,
            service_machine="",
            provider_id=str(prov.id),
            attributes=int(attrs),
        )

    def _provider_for(self, csv: Csv) -> ProviderInfo:
        return CSV_PROVIDER if self.profile.csv_providers else volume_provider(csv)

    # --- writers ----------------------------------------------------------------------------

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
            by_node: dict[str, list[Vm]] = {}
            for vm in by_writer[CSV]:
                by_node.setdefault(vm.node, []).append(vm)
            self.selected_by_node = {n: tuple(v) for n, v in by_node.items()}
        yield from self._dispatch(WE.IDENTIFY)
        self.tl.add(self.req, REQUESTER, "GatherWriterMetadata", start, self.env.now, seq=seq)

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
            if f.node == w.node and (f.writer or HYPERV) == w.kind:
                return f
        return None

    def _deliver(self, w: WriterInstance, event: WriterEvent) -> Proc:
        """One writer handles one event: its actions run, then its machine moves (failed if its
        handler or a fault says so)."""
        if (w.machine.phase, event) not in WRITER_TABLE:
            raise protocol_error(w.machine.role, w.machine.phase, event)
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
        procs = [self.env.process(self._vm_action(w, a)) for a in actions]
        if procs:
            done = yield simpy.AllOf(self.env, procs)
            if not all(done.values()):
                return False, int(HResult.VSS_E_WRITERERROR_NONRETRYABLE)
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
        if (w.machine.phase, r.event) not in WRITER_TABLE:
            return int(HResult.S_OK)
        yield from self._deliver(w, r.event)
        return w.machine.failure if w.machine.phase.failed else int(HResult.S_OK)

    def _vm_action(self, w: WriterInstance, a: object) -> Generator[Any, Any, bool]:
        if isinstance(a, GuestSnapshot):
            yield from self._guest_snapshot(w, a.vm)
        elif isinstance(a, SaveState):
            yield from self._save_state(w, a.vm)
        elif isinstance(a, AutoRecover):
            yield from self._auto_recover(w, a.vm)
        elif isinstance(a, Resume):
            yield from self._resume(w, a.vm)
        return self.state.is_up(w.node)

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
        for w in self._participants():
            if w.machine.phase.failed and w.involved:
                raise AbortBackupError(
                    w.machine.failure,
                    f"writer {w.name} on {w.node} is in state {w.machine.state}",
                )

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

    # --- CSVs -------------------------------------------------------------------------------

    def _prepare_csvs_2008r2(self) -> Proc:
        """ClusterPrepareSharedVolumeForBackup: one backup per CSV; ownership to this node;
        redirected access until the backup ends."""
        for csv in self.job.volumes:
            holder = self.state.backup_in_progress.get(csv.name)
            if holder is not None:
                self._mark(
                    self.req,
                    CLUSTER,
                    f"ClusterPrepareSharedVolumeForBackup {csv.name}",
                    "CSV_BACKUP_IN_PROGRESS",
                    detail=f"backup in progress by {holder}",
                )
                raise AbortBackupError(
                    HResult.CSV_BACKUP_IN_PROGRESS,
                    f"{csv.mount_point} is already in backup ({holder})",
                )
            self.state.backup_in_progress[csv.name] = self.job.label
            self.claimed.append(csv)
            if self.state.coordinators[csv.name] != self.req:
                yield from self._span(
                    self.req,
                    CLUSTER,
                    f"move {csv.name} ownership to {self.req}",
                    costs.OWNERSHIP_MOVE_S,
                    detail=f"from {self.state.coordinators[csv.name]}",
                )
                self.state.coordinators[csv.name] = self.req
            yield from self._redirect_on(csv, "for the whole backup")

    def _redirect_on(self, csv: Csv, why: str) -> Proc:
        yield from self._span(
            self.state.coordinators[csv.name],
            CLUSTER,
            f"{csv.name} in redirected access ({why})",
            costs.REDIRECT_SWITCH_S,
        )
        self.redirect_since[csv.name] = self.env.now

    def _redirect_off(self, csv: Csv) -> Proc:
        since = self.redirect_since.pop(csv.name, None)
        if since is None:
            return
        window = self.env.now - since
        coord = self.state.coordinators[csv.name]
        redirected = sum(
            int(vm.workload.write_iops * vm.workload.mean_write_bytes * window)
            for vm in self.sc.vms_by_csv[csv.name]
            if vm.running and vm.node != coord and self.state.is_up(vm.node)
        )
        self.result.redirected_bytes[csv.name] = (
            self.result.redirected_bytes.get(csv.name, 0) + redirected
        )
        yield from self._span(
            coord,
            CLUSTER,
            f"{csv.name} back to direct I/O",
            costs.REDIRECT_SWITCH_S,
            detail=f"{redirected} bytes redirected over {window:.1f} s",
        )

    def _release_csvs(self) -> Proc:
        for csv in list(self.job.volumes):
            yield from self._redirect_off(csv)
        for csv in self.claimed:
            self.state.backup_in_progress.pop(csv.name, None)
        self.claimed = []

    # --- DoSnapshotSet ----------------------------------------------------------------------

    def _provider_call(self, csv: Csv, call: ProviderCall, duration: float, step: str = "") -> Proc:
        """One provider call for ``csv``: on 2012 the CSV provider on the requester's node and
        the helper (and the volume's provider) on the coordinator; on 2008 R2 the volume's
        provider on the requester's node."""
        m = self.providers.setdefault(csv.name, ProviderMachine(f"provider for {csv.name}"))
        m.send(call)
        name = "".join(w.capitalize() for w in call.name.split("_"))
        vol = volume_provider(csv)
        if self.profile.csv_providers:
            coord = self.state.coordinators[csv.name]
            yield from self._span(
                self.req, CSV_PROVIDER.name, name, costs.RPC_S, step=step, detail=csv.volume_name
            )
            yield from self._span(coord, CSV_HELPER_PROVIDER.name, name, costs.RPC_S, step=step)
            yield from self._span(coord, vol.name, name, duration, step=step)
        else:
            yield from self._span(
                self.req, vol.name, name, duration, step=step, detail=csv.volume_name
            )

    def _providers_all(
        self, call: ProviderCall, duration: float, phase: str, step: str = ""
    ) -> Proc:
        yield from self._nodes_down(phase)
        self._provider_fault(phase)
        for csv in self.job.volumes:
            yield from self._provider_call(csv, call, duration, step)

    def _bounded(
        self,
        call: ProviderCall,
        duration: float,
        phase: str,
        deadline: float,
        timeout_hr: int,
        step: str = "⑦",
    ) -> Proc:
        """A provider step inside the freeze window / flush-and-hold: if it would end after
        ``deadline`` the clock stops at the deadline and the step times out."""
        duration += self._delay(phase)
        if self.env.now + duration > deadline:
            start = self.env.now
            yield self.env.timeout(max(0.0, deadline - self.env.now))
            name = "".join(w.capitalize() for w in call.name.split("_"))
            self.tl.add(
                self.req,
                VSS,
                f"{name} timed out",
                start,
                self.env.now,
                hresult_name(timeout_hr),
                step=step,
            )
            if timeout_hr == HResult.VSS_E_WRITERERROR_TIMEOUT:
                for w in self._participants():
                    if (w.machine.phase, WE.FREEZE_TIMEOUT) in WRITER_TABLE:
                        w.machine.send(WE.FREEZE_TIMEOUT)
                        self._mark(
                            w.node,
                            w.name,
                            EVENT_TEXT[WE.FREEZE_TIMEOUT],
                            hresult_name(timeout_hr),
                            detail=str(w.machine.state),
                        )
            raise AbortBackupError(timeout_hr, f"{name}: {hresult_name(timeout_hr)}")
        yield from self._providers_all(call, duration, phase, step)

    def _do_snapshot_set(self) -> Proc:
        job = self.job
        self.bc.send(BcCall.DO_SNAPSHOT_SET)
        start, seq = self.env.now, self.tl.next_seq()
        self._mark(self.req, REQUESTER, "DoSnapshotSet: snapshot requested", step="①")
        if job.with_writers:
            yield from self._dispatch(WE.PREPARE_SNAPSHOT)
            self._check_writers()
        ready = "⑥"
        yield from self._providers_all(
            ProviderCall.BEGIN_PREPARE_SNAPSHOT, costs.BEGIN_PREPARE_S, "begin_prepare", ready
        )
        yield from self._providers_all(
            ProviderCall.END_PREPARE_SNAPSHOTS, costs.END_PREPARE_S, "end_prepare", ready
        )
        if not self.profile.redirect_whole_backup:
            for csv in job.volumes:
                yield from self._redirect_on(csv, "while the snapshot is taken")
        if job.with_writers:
            yield from self._dispatch(WE.FREEZE)
            self._check_writers()
        freeze_deadline = self.env.now + costs.FREEZE_WINDOW_S
        wto = int(HResult.VSS_E_WRITERERROR_TIMEOUT)
        fdl = freeze_deadline if job.with_writers else float("inf")
        yield from self._bounded(
            ProviderCall.PRE_COMMIT_SNAPSHOTS, costs.PRE_COMMIT_S, "pre_commit", fdl, wto
        )
        hold_deadline = self.env.now + costs.FLUSH_AND_HOLD_S
        flush_hr = HResult.VSS_E_FLUSH_WRITES_TIMEOUT if hold_deadline <= fdl else wto
        yield from self._flush(min(hold_deadline, fdl), int(flush_hr))
        hold_hr = HResult.VSS_E_HOLD_WRITES_TIMEOUT if hold_deadline <= fdl else wto
        commit_s = sum(
            costs.COMMIT_HARDWARE_S
            if volume_provider(c).type is ProviderType.HARDWARE
            else costs.COMMIT_SYSTEM_S
            for c in job.volumes
        ) / max(1, len(job.volumes))
        yield from self._bounded(
            ProviderCall.COMMIT_SNAPSHOTS, commit_s, "commit", min(hold_deadline, fdl), int(hold_hr)
        )
        self._commit()
        self._mark(self.req, VSS, "held writes released")
        yield from self._bounded(
            ProviderCall.POST_COMMIT_SNAPSHOTS, costs.POST_COMMIT_S, "post_commit", fdl, wto
        )
        if job.with_writers:
            yield from self._dispatch(WE.THAW)
            self._check_writers()
            yield from self._dispatch(WE.POST_SNAPSHOT)
            self._check_writers()
        yield from self._providers_all(
            ProviderCall.PRE_FINAL_COMMIT_SNAPSHOTS, costs.FINAL_COMMIT_S, "pre_final_commit", "⑦"
        )
        yield from self._providers_all(
            ProviderCall.POST_FINAL_COMMIT_SNAPSHOTS, costs.FINAL_COMMIT_S, "post_final_commit", "⑦"
        )
        if not self.profile.redirect_whole_backup:
            for csv in job.volumes:
                yield from self._redirect_off(csv)
        if job.with_writers:
            yield from self._gather_status()
        self.tl.add(self.req, REQUESTER, "DoSnapshotSet", start, self.env.now, seq=seq)
        self._mark(self.req, VSS, "shadow copy set created: requester notified", step="⑧")

    def _flush(self, deadline: float, hr: int) -> Proc:
        duration = costs.FLUSH_S + self._delay("flush")
        yield from self._nodes_down("flush")
        self._provider_fault("flush")
        start = self.env.now
        timed_out = self.env.now + duration > deadline
        yield self.env.timeout(max(0.0, min(duration, deadline - self.env.now)))
        result = hresult_name(hr) if timed_out else "S_OK"
        self.tl.add(
            self.req,
            VSS,
            "flush-and-hold: file systems flushed, writes held",
            start,
            self.env.now,
            result,
            step="⑦",
        )
        if timed_out:
            raise AbortBackupError(hr, f"flush-and-hold: {hresult_name(hr)}")

    def _commit(self) -> None:
        """The point in time: each volume's shadow copy exists now."""
        self.commit_time = self.env.now
        for csv in self.job.volumes:
            copy = self.copies[csv.name]
            coord = self.state.coordinators[csv.name]
            copy.created = self.env.now
            copy.device = self.state.new_device()
            copy.service_machine = coord
            if volume_provider(csv).type is ProviderType.SYSTEM:
                alloc = sum(vm.allocated_bytes for vm in self.sc.vms_by_csv[csv.name])
                copy.backend_handle = self.state.backend.create_snapshot(csv, max(alloc, 1))
            self.state.snapshots.append(copy)
            self.result.created_copies.append(copy)

    # --- after the snapshot -----------------------------------------------------------------

    def _copy_and_complete(self) -> Proc:
        job = self.job
        yield from self._nodes_down("copy")
        self._provider_fault("copy")
        if job.copy_data:
            seen: set[str] = set()
            for s in job.selected:
                if s.vm.name in seen:
                    continue
                seen.add(s.vm.name)
                yield from self._copy_vm(s.vm)
        self._apply_workload()
        if job.with_writers:
            for _ in job.selected:
                self.bc.send(BcCall.SET_BACKUP_SUCCEEDED)
            self._mark(
                self.req, REQUESTER, "SetBackupSucceeded", detail=f"{len(job.selected)} components"
            )
            yield from self._call(BcCall.BACKUP_COMPLETE, costs.BACKUP_COMPLETE_S)
            yield from self._dispatch(WE.BACKUP_COMPLETE)
            yield from self._call(BcCall.GATHER_WRITER_STATUS)
        failed = [w for w in self._participants() if w.machine.phase.failed and w.involved]
        yield from self._release_csvs()
        self.result.writer_status = self._status()
        if failed:
            self.result.hresult = failed[0].machine.failure
            self.result.message = (
                f"writer {failed[0].name} on {failed[0].node} failed at BackupComplete"
            )
        else:
            self.result.ok = True
        yield from self._release()

    def _copy_vm(self, vm: Vm) -> Proc:
        csv = self.sc.csv_of(vm)
        host = self.copies[csv.name].service_machine
        nodes: tuple[str, ...] = ()
        if volume_provider(csv).type is ProviderType.SYSTEM and host != self.req:
            nodes = (host, self.req)
        start, seq = self.env.now, self.tl.next_seq()
        yield from self.res.transfer(vm.allocated_bytes, csv, nodes, target=True)
        self.result.copied_bytes += vm.allocated_bytes
        if nodes:
            self.result.network_bytes += vm.allocated_bytes
        self.tl.add(
            self.req,
            REQUESTER,
            f"copy {vm.name} from the shadow copy",
            start,
            self.env.now,
            detail=f"{vm.allocated_bytes} bytes via {host}",
            seq=seq,
        )

    def _apply_workload(self) -> None:
        """The guests kept writing while the shadow copies existed: feed their writes to
        copy-on-write (system provider only; a hardware snapshot costs the host nothing)."""
        if self.commit_time is None:
            return
        window = self.env.now - self.commit_time
        for csv in self.job.volumes:
            copy = self.copies[csv.name]
            if copy.backend_handle is None:
                continue
            offs, lens = [], []
            base = 0
            for vm in self.sc.vms_by_csv[csv.name]:
                size = vm.allocated_bytes
                n = min(costs.WRITES_PER_VM_CAP, int(vm.workload.write_iops * window))
                if vm.running and self.state.is_up(vm.node) and n > 0 and size >= 64 * 1024:
                    seed = (
                        self.sc.seed * 1_000_003
                        + self.state.counter * 7919
                        + zlib.crc32(vm.name.encode())
                    )
                    w = hot_spot_writes(n, size, seed=seed)
                    offs.append(w.offsets + np.uint64(base))
                    lens.append(w.lengths)
                base += size
            if offs:
                cost = self.state.backend.apply_writes(
                    csv, np.concatenate(offs), np.concatenate(lens)
                )
                self.result.cow_chunks_copied += cost.chunks_copied
            self.result.diff_area_bytes[csv.name] = self.state.backend.diff_area_bytes(csv)

    def _release(self) -> Proc:
        """Release the backup-components object: BackupShutdown to the writers; shadow copies
        that are not persistent go away with it."""
        self.bc.send(BcCall.RELEASE)
        for w in self._participants():
            if (w.machine.phase, WE.BACKUP_SHUTDOWN) in WRITER_TABLE:
                w.machine.send(WE.BACKUP_SHUTDOWN)
        self._mark(self.req, REQUESTER, "Release (BackupShutdown to the writers)")
        if not self.job.persistent:
            yield from self._delete_copies()

    def _delete_copies(self) -> Proc:
        for csv in self.job.volumes:
            copy = self.copies.get(csv.name)
            if copy is None or copy not in self.state.snapshots:
                continue
            if copy.backend_handle is not None:
                self.state.backend.delete_snapshot(csv, copy.backend_handle)
            self.state.snapshots.remove(copy)
            m = self.providers.get(csv.name)
            if m is not None and (m.state, ProviderCall.DELETE_SNAPSHOTS) in _PTABLE:
                m.send(ProviderCall.DELETE_SNAPSHOTS)
            yield from self._span(
                copy.service_machine or self.req,
                volume_provider(csv).name,
                "DeleteSnapshots",
                costs.DELETE_S,
                detail=copy.id,
            )

    # --- abort ------------------------------------------------------------------------------

    def _abort(self, hr: int, message: str) -> Proc:
        self.result.ok = False
        self.result.hresult = hr
        self.result.message = message
        self._mark(self.req, REQUESTER, "AbortBackup", hresult_name(hr), detail=message)
        if (self.bc.state, BcCall.ABORT_BACKUP) in _BCTABLE:
            self.bc.send(BcCall.ABORT_BACKUP)
        for w in self._participants():
            if not self.state.is_up(w.node):
                continue
            if (w.machine.phase, WE.ABORT) in WRITER_TABLE:
                w.machine.send(WE.ABORT)
                self._mark(w.node, w.name, "Abort", detail=str(w.machine.state))
                if w.kind == HYPERV:
                    for a in hyperv_actions(WE.ABORT, w.vms):
                        if isinstance(a, Resume):
                            yield from self._resume(w, a.vm)
        for csv in self.job.volumes:
            m = self.providers.get(csv.name)
            if m is not None and (m.state, ProviderCall.ABORT_SNAPSHOTS) in _PTABLE:
                m.send(ProviderCall.ABORT_SNAPSHOTS)
                self._mark(self.req, self._provider_for(csv).name, "AbortSnapshots")
        yield from self._delete_copies()
        yield from self._release_csvs()
        self.result.writer_status = self._status()
        if self.bc.state is not BcState.RELEASED:
            yield from self._release()


__all__ = ["AbortBackupError", "BackupRun", "WriterPhase"]
