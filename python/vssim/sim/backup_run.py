"""One backup as a SimPy process: the requester's calls (spec §1) driving the sans-I/O roles of
:mod:`vssim.vss` on a virtual clock, with every step recorded in a timeline.

How it works: :class:`BackupRun` owns one backup-components machine (call order) and one
snapshot-set machine (the joint rules: windows, provider steps, failures). It is composed of parts
that share one :class:`~vssim.sim.run_scope.RunScope`: a :class:`WriterDriver` delivers writer
events to every writer at once (SimPy processes; each writer's handler returns actions — guest
snapshot, saved state, relay, auto-recovery — that take simulated time), :class:`CsvAccess` takes
ownership and redirected access, :class:`ProviderSteps` spends the providers' time. What happens
to data is the run's :class:`~vssim.sim.data_path.DataPath`'s (the point in time, the guests'
writes, the copies, redirected bytes) and every byte moves through its
:class:`~vssim.sim.links.Links`. Any failure raises :class:`AbortBackupError` inside the process,
and the abort path runs: Abort to every writer, AbortSnapshots (or delete) at the providers, CSVs
released — nothing stays committed.

Seed steps (``Record.step``): 2012 ① DoSnapshotSet requested, ②-1 local Hyper-V writer and ②-2 CSV
writer get PrepareForSnapshot, ③ a Hyper-V writer asks a VM's integration services, ④ guest VSS
drives the guest writers, ⑤ the guest snapshot updates the VHDX through the CSV, ⑥ the local node
tells the CSV providers it is ready, ⑦ the CSV providers make the CSV snapshot with every node's
writers, ⑧ the requester is told. 2008 R2: the same numbers with a single ② (no CSV writer) and the
volume's own provider at ⑥–⑦.
"""

from __future__ import annotations

import simpy

from vssim.errors import VssError
from vssim.scenario import Csv, Vm
from vssim.scenario.model import LocalVolume
from vssim.sim import costs
from vssim.sim.csv_access import CsvAccess
from vssim.sim.data_path import DataPath
from vssim.sim.links import Links
from vssim.sim.provider_steps import ProviderSteps
from vssim.sim.run_scope import (
    CLUSTER,
    PHASE_OF,
    REQUESTER,
    VSS,
    WE,
    AbortBackupError,
    Proc,
    RunScope,
)
from vssim.sim.writer_driver import WriterDriver
from vssim.vss.backup_state import BackupComponentsMachine, BcCall, BcState
from vssim.vss.cluster_state import ClusterState, ShadowCopy
from vssim.vss.enums import BackupType, HResult, ProviderType, SnapshotAttr, hresult_name
from vssim.vss.jobs import BackupJob
from vssim.vss.provider_state import ProviderCall
from vssim.vss.providers import SYSTEM_PROVIDER, ProviderInfo, volume_provider
from vssim.vss.snapshot_set import SetEvent, SetState, SnapshotSetMachine
from vssim.vss.timeline import PhaseKind
from vssim.vss.writers import HYPERV, Resume, hyperv_actions


class BackupRun:
    """One backup job on one cluster: ``env.process(run.process())``. It is the
    :class:`~vssim.sim.data_path.SetView` its data path reads."""

    def __init__(
        self,
        env: simpy.Environment,
        state: ClusterState,
        links: Links,
        job: BackupJob,
        data: DataPath,
    ) -> None:
        self.scope = s = RunScope(env, state, links, job)
        self.env, self.state, self.sc, self.links, self.job = env, state, s.sc, links, job
        self.tl, self.result, self.req, self.profile = s.tl, s.result, s.req, s.profile
        self.data = data
        self.bc = BackupComponentsMachine(job.context)
        self.set = SnapshotSetMachine(
            f"snapshot set of {job.label}", job.with_writers, job.transportable
        )
        self.csvs = CsvAccess(s, data, self)
        self.writers = WriterDriver(
            s, self.set, self.csvs, lambda vm, saved: data.saved_state(self, vm, saved)
        )
        self.providers = ProviderSteps(s, self.set, self._nodes_down)
        self.copies: dict[str, ShadowCopy] = {}
        #: Shadow copies of the requester node's own volumes (``job.local_volumes``), by key.
        self.local_copies: dict[str, ShadowCopy] = {}
        self.commit_time: float | None = None

    # --- what the data path reads (SetView) ---------------------------------------------------

    def is_redirected(self, csv: Csv) -> bool:
        return self.csvs.is_redirected(csv)

    def redirected_writers(self, csv: Csv) -> list[Vm]:
        return self.csvs.redirected_writers(csv)

    def csv_writers(self, csv: Csv) -> list[Vm]:
        return self.csvs.csv_writers(csv)

    # --- the run ------------------------------------------------------------------------------

    def process(self) -> Proc:
        self.result.start = self.env.now
        try:
            yield from self._backup()
        except AbortBackupError as a:
            yield from self._abort(a.hresult, str(a))
        except VssError as e:
            yield from self._abort(e.hresult, str(e))
        self.result.end = self.env.now
        self.result.shadow_copies = [
            c
            for c in (*self.copies.values(), *self.local_copies.values())
            if c in self.state.snapshots
        ]
        self.result.network_bytes = sum(self.result.redirected_bytes.values()) + (
            self.result.network_bytes
        )

    def _call(self, call: BcCall, duration: float = 0.0, detail: str = "") -> Proc:
        """The requester makes ``call`` (its machine checks the order); it takes ``duration``."""
        self.bc.send(call)
        name = "".join(w.capitalize() for w in call.name.split("_"))
        yield from self.scope.span(
            self.req, REQUESTER, name, duration, detail=detail, kind=PhaseKind.REQUESTER, call=call
        )

    def _said(
        self,
        call: BcCall,
        event: str,
        result: str = "S_OK",
        step: str = "",
        detail: str = "",
        csv: str | None = None,
    ) -> None:
        """An instant step of the requester's, recorded as ``call``."""
        kind = PhaseKind.REQUESTER
        self.scope.mark(
            self.req, REQUESTER, event, result, step, detail, kind=kind, call=call, csv=csv
        )

    def _ended(self, call: BcCall, event: str, start: float, seq: int) -> None:
        """A requester step that began at ``start`` (sequence ``seq``) ends now."""
        self.tl.add(
            self.req,
            REQUESTER,
            event,
            start,
            self.env.now,
            seq=seq,
            kind=PhaseKind.REQUESTER,
            call=call,
        )

    def _backup(self) -> Proc:
        job = self.job
        if not self.state.is_up(self.req):
            raise AbortBackupError(HResult.VSS_E_CLUSTER_ERROR, f"node {self.req} is down")
        for sel in job.selected:
            if sel.writer.node and sel.writer.node.lower() != self.req.lower():
                raise AbortBackupError(
                    HResult.VSS_E_OBJECT_NOT_FOUND,
                    f"{sel.writer.name} of {sel.writer.node} is not a writer of {self.req}",
                )
        yield from self._call(BcCall.INITIALIZE_FOR_BACKUP)
        self.bc.send(BcCall.SET_CONTEXT, job.context)
        self._said(BcCall.SET_CONTEXT, "SetContext", detail=str(job.context))
        yield from self._call(
            BcCall.SET_BACKUP_STATE,
            detail=f"select_components=true, bootable_system_state=true, {job.backup_type}, "
            "partial_file_support=false",
        )
        if job.with_writers:
            yield from self._gather_metadata()
            for sel in job.selected:
                yield from self._call(
                    BcCall.ADD_COMPONENT,
                    costs.ADD_COMPONENT_S,
                    detail=f"{sel.writer.name}:{sel.component.full_path}",
                )
        self.result.set_id = self.state.new_id("snapshot-set")
        yield from self._call(BcCall.START_SNAPSHOT_SET, detail=str(self.result.set_id))
        self.set.send(SetEvent.START)
        for csv in job.volumes:
            vol = volume_provider(csv)
            self.set.add_volume(
                csv.name,
                csv.mount_point,
                system_provider=vol.type is ProviderType.SYSTEM,
                transportable=vol.transportable,
                existing=sum(1 for c in self.state.snapshots if c.csv == csv.name),
            )
            self.bc.add_volume(csv.volume_name)
            self.copies[csv.name] = self._new_copy(csv)
            add = BcCall.ADD_TO_SNAPSHOT_SET
            self._said(add, "AddToSnapshotSet", detail=csv.volume_name, csv=csv.name)
        for lv in job.local_volumes:
            self.set.add_volume(
                lv.key,
                lv.volume_name,
                system_provider=True,
                transportable=False,
                existing=sum(1 for c in self.state.snapshots if c.csv == lv.key),
            )
            self.bc.add_volume(lv.volume_name)
            self.local_copies[lv.key] = self._new_local_copy(lv)
            add = BcCall.ADD_TO_SNAPSHOT_SET
            self._said(add, "AddToSnapshotSet", detail=lv.volume_name)
        if self.profile.exclusive_csv_backup:
            yield from self.csvs.prepare_2008r2()
        if job.with_writers:
            yield from self._call(BcCall.PREPARE_FOR_BACKUP)
            yield from self._dispatch(WE.PREPARE_BACKUP)
            yield from self._gather_status()
        yield from self._do_snapshot_set()
        yield from self._copy_and_complete()

    def _new_copy(self, csv: Csv) -> ShadowCopy:
        prov = self.providers.provider_for(csv)
        # On 2012 the CSV provider hands the set to the volume's own provider (behind the helper):
        # its shadow copies carry that provider's attributes.
        attrs = prov.attributes() | volume_provider(csv).attributes()
        if self.job.transportable:
            attrs |= SnapshotAttr.TRANSPORTABLE
        return self._shadow_copy(csv.name, csv.volume_name, csv.display_name, prov, attrs)

    def _new_local_copy(self, lv: LocalVolume) -> ShadowCopy:
        """A shadow copy of the requester node's own volume: the system provider's, there."""
        return self._shadow_copy(
            lv.key, lv.volume_name, lv.display_name, SYSTEM_PROVIDER, SYSTEM_PROVIDER.attributes()
        )

    def _shadow_copy(
        self,
        key: str,
        volume_name: str,
        mount_point: str,
        prov: ProviderInfo,
        provider_attrs: SnapshotAttr,
    ) -> ShadowCopy:
        """A new shadow copy of the set: the context's and the job's attributes on the
        provider's."""
        attrs = (
            SnapshotAttr(self.job.context.value & 0xFF)
            | provider_attrs
            | SnapshotAttr(self.job.attributes)
        )
        if not self.job.auto_recovery:
            attrs |= SnapshotAttr.NO_AUTORECOVERY
        assert self.result.set_id is not None
        return ShadowCopy(
            id=str(self.state.new_id("shadow-copy")),
            set_id=str(self.result.set_id),
            count=self.job.volume_count,
            csv=key,
            volume_name=volume_name,
            mount_point=mount_point,
            created=0.0,
            device=0,
            originating_machine=self.req,
            service_machine="",
            provider_id=str(prov.id),
            attributes=int(attrs),
        )

    # --- writers ------------------------------------------------------------------------------

    def _gather_metadata(self) -> Proc:
        """GatherWriterMetadata: every writer the requester's node sees identifies itself; on
        2012 the CSV writer also gathers the other nodes' Hyper-V writers' VMs."""
        self.bc.send(BcCall.GATHER_WRITER_METADATA)
        start, seq = self.env.now, self.tl.next_seq()
        self.writers.enlist()
        yield from self._dispatch(WE.IDENTIFY)
        self._ended(BcCall.GATHER_WRITER_METADATA, "GatherWriterMetadata", start, seq)
        self._check_writers()

    def _dispatch(self, event: WE) -> Proc:
        """Node-down faults of the event's phase, then every writer handles ``event``."""
        phase = PHASE_OF.get(event, "")
        if phase:
            yield from self._nodes_down(phase)
        yield from self.writers.deliver_all(event)

    def _gather_status(self) -> Proc:
        yield from self._call(BcCall.GATHER_WRITER_STATUS)
        self._check_writers()

    def _check_writers(self) -> None:
        """Every writer answered: the set's joint rule aborts it if an involved writer failed."""
        if self.set.send(SetEvent.WRITERS_ANSWERED) is SetState.ABORTED:
            assert self.set.failure is not None
            raise AbortBackupError(*self.set.failure)

    def _nodes_down(self, phase: str) -> Proc:
        """Node-down faults of ``phase``: the node is down now (its VMs stop writing); the set
        aborts if it was the requester's, and its CSVs fail over before the commit."""
        for node in self.scope.nodes_going_down(phase):
            self.state.nodes_down.add(node)
            self.scope.mark(
                node,
                CLUSTER,
                f"node {node} down",
                "DOWN",
                detail=f"at {phase}",
                kind=PhaseKind.CLUSTER,
            )
            self.data.node_down(self, node)
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
        yield from self.scope.span(
            new,
            CLUSTER,
            f"{csv.name} fails over to {new}",
            costs.FAILOVER_S,
            kind=PhaseKind.CLUSTER,
            csv=csv.name,
        )

    # --- the snapshot set ---------------------------------------------------------------------

    def _do_snapshot_set(self) -> Proc:
        job, p = self.job, self.providers
        self.bc.send(BcCall.DO_SNAPSHOT_SET)
        self.set.send(SetEvent.DO_SNAPSHOT_SET)
        start, seq = self.env.now, self.tl.next_seq()
        self._said(BcCall.DO_SNAPSHOT_SET, "DoSnapshotSet: snapshot requested", step="①")
        if job.with_writers:
            yield from self._dispatch(WE.PREPARE_SNAPSHOT)
            self._check_writers()
        ready = "⑥"
        yield from p.step(
            SetEvent.BEGIN_PREPARE_SNAPSHOT, costs.BEGIN_PREPARE_S, "begin_prepare", ready
        )
        yield from p.step(SetEvent.END_PREPARE_SNAPSHOTS, costs.END_PREPARE_S, "end_prepare", ready)
        for csv in job.volumes:
            if not self.csvs.whole_backup(csv):
                yield from self.csvs.redirect_on(csv, "while the snapshot is taken")
        # The freeze window opens when the writers get Freeze: a slow OnFreeze eats into it.
        self.set.send(SetEvent.FREEZE, at=self.env.now)
        if job.with_writers:
            yield from self._dispatch(WE.FREEZE)
            self._check_writers()
        yield from p.bounded(SetEvent.PRE_COMMIT_SNAPSHOTS, costs.PRE_COMMIT_S, "pre_commit")
        self.set.send(SetEvent.FLUSH, at=self.env.now)
        yield from p.flush()
        commit_s = sum(
            costs.COMMIT_HARDWARE_S
            if volume_provider(c).type is ProviderType.HARDWARE
            else costs.COMMIT_SYSTEM_S
            for c in job.volumes
        ) / max(1, len(job.volumes))
        yield from p.bounded(SetEvent.COMMIT_SNAPSHOTS, commit_s, "commit")
        self._commit()
        self.scope.mark(self.req, VSS, "held writes released", kind=PhaseKind.WRITES_RELEASED)
        yield from p.bounded(SetEvent.POST_COMMIT_SNAPSHOTS, costs.POST_COMMIT_S, "post_commit")
        self.set.send(SetEvent.THAW)
        if job.with_writers:
            yield from self._dispatch(WE.THAW)
            self._check_writers()
            yield from self._dispatch(WE.POST_SNAPSHOT)
            self._check_writers()
        final = costs.FINAL_COMMIT_S
        yield from p.step(SetEvent.PRE_FINAL_COMMIT_SNAPSHOTS, final, "pre_final_commit", "⑦")
        yield from p.step(SetEvent.POST_FINAL_COMMIT_SNAPSHOTS, final, "post_final_commit", "⑦")
        for csv in job.volumes:
            if not self.csvs.whole_backup(csv):
                yield from self.csvs.redirect_off(csv)
        if job.with_writers:
            yield from self._gather_status()
        self._ended(BcCall.DO_SNAPSHOT_SET, "DoSnapshotSet", start, seq)
        self.scope.mark(
            self.req,
            VSS,
            "shadow copy set created: requester notified",
            step="⑧",
            kind=PhaseKind.SET_CREATED,
        )
        self.set.send(SetEvent.REQUESTER_NOTIFIED)

    def _commit(self) -> None:
        """The point in time: each volume's shadow copy exists now."""
        self.commit_time = self.env.now
        handles = self.data.point_in_time(self)
        for csv in self.job.volumes:
            copy = self.copies[csv.name]
            copy.created = self.env.now
            copy.device = self.state.new_device()
            copy.service_machine = self.state.coordinators[csv.name]
            copy.backend_handle = handles.get(csv.name)
            self.state.snapshots.append(copy)
            self.result.created_copies.append(copy)
        for copy in self.local_copies.values():
            copy.created = self.env.now
            copy.device = self.state.new_device()
            copy.service_machine = self.req
            self.state.snapshots.append(copy)
            self.result.created_copies.append(copy)

    # --- data, completion, release ------------------------------------------------------------

    def _copy_and_complete(self) -> Proc:
        job = self.job
        yield from self._nodes_down("copy")
        self.scope.provider_fault("copy")
        if job.copy_data:
            yield from self.data.copy(self)
        self._guest_writes()
        if job.with_writers:
            for _ in job.selected:
                self.bc.send(BcCall.SET_BACKUP_SUCCEEDED)
            self._said(
                BcCall.SET_BACKUP_SUCCEEDED,
                "SetBackupSucceeded",
                detail=f"{len(job.selected)} components, succeeded={not self.set.copy_lost}",
            )
            yield from self._call(BcCall.BACKUP_COMPLETE, costs.BACKUP_COMPLETE_S)
            yield from self._dispatch(WE.BACKUP_COMPLETE)
            yield from self._call(BcCall.GATHER_WRITER_STATUS)
        outcome = self.set.send(SetEvent.BACKUP_COMPLETE)
        yield from self.csvs.release(self.set.notified)
        self.result.writer_status = self.writers.status()
        if outcome is SetState.FAILED:
            assert self.set.failure is not None
            self.result.hresult, self.result.message = self.set.failure
        else:
            self.result.ok = True
            self._remember_backups()
        yield from self._release()

    def _guest_writes(self) -> None:
        """What the guests wrote while the shadow copies existed: copy-on-write, and volsnap's
        deletions when a diff area could not grow (event VolSnap 24) — if this set's own copy
        goes, its reads fail and so does the backup."""
        if self.commit_time is None:
            return
        done = self.data.guest_writes(self)
        self.result.cow_chunks_copied += done.chunks_copied
        for csv in self.job.volumes:
            deleted = done.deleted.get(csv.name, ())
            for copy in [c for c in self.state.snapshots if c.csv == csv.name]:
                if copy.backend_handle is None or copy.backend_handle not in deleted:
                    continue
                self.state.snapshots.remove(copy)
                self.scope.mark(
                    copy.service_machine,
                    volume_provider(csv).name,
                    "VolSnap 24: shadow copy deleted, the diff area could not grow",
                    hresult_name(HResult.VSS_E_INSUFFICIENT_STORAGE),
                    detail=copy.id,
                    kind=PhaseKind.SNAPSHOT_DELETED,
                    csv=csv.name,
                )
                if copy is self.copies.get(csv.name):
                    self.set.send(SetEvent.COPY_LOST)
        self.result.diff_area_bytes.update(done.diff_area_bytes)

    def _remember_backups(self) -> None:
        """For later incrementals: when each VM was last backed up, and last fully."""
        if self.job.backup_type is BackupType.COPY or not self.job.copy_data:
            return
        full = self.job.backup_type not in (BackupType.INCREMENTAL, BackupType.DIFFERENTIAL)
        assert self.commit_time is not None
        for sel in self.job.selected:
            prev = self.state.last_backup.get(sel.vm.name)
            last_full = self.commit_time if full or prev is None else prev[1]
            self.state.last_backup[sel.vm.name] = (self.commit_time, last_full)

    def _release(self) -> Proc:
        """Release the backup-components object: BackupShutdown to the writers; shadow copies
        that are not persistent go away with it."""
        self.bc.send(BcCall.RELEASE)
        for w in self.writers.participants():
            if w.machine.accepts(WE.BACKUP_SHUTDOWN):
                w.machine.send(WE.BACKUP_SHUTDOWN)
        self._said(BcCall.RELEASE, "Release (BackupShutdown to the writers)")
        if not self.job.persistent:
            yield from self._delete_copies()

    def _delete_copies(self) -> Proc:
        self.data.releasing(self)
        for key, local in self.local_copies.items():
            if local not in self.state.snapshots:
                continue
            self.state.snapshots.remove(local)
            self.providers.delete_volume(key)
            yield from self.scope.span(
                self.req,
                SYSTEM_PROVIDER.name,
                "DeleteSnapshots",
                costs.DELETE_S,
                detail=local.id,
                kind=PhaseKind.PROVIDER,
                call=ProviderCall.DELETE_SNAPSHOTS,
            )
        for csv in self.job.volumes:
            copy = self.copies.get(csv.name)
            if copy is None or copy not in self.state.snapshots:
                continue
            if copy.backend_handle is not None:
                self.state.backend.delete_snapshot(csv, copy.backend_handle)
            self.state.snapshots.remove(copy)
            self.providers.delete(csv)
            yield from self.scope.span(
                copy.service_machine or self.req,
                volume_provider(csv).name,
                "DeleteSnapshots",
                costs.DELETE_S,
                detail=copy.id,
                kind=PhaseKind.PROVIDER,
                call=ProviderCall.DELETE_SNAPSHOTS,
                csv=csv.name,
            )

    def _abort(self, hr: int, message: str) -> Proc:
        self.result.ok = False
        self.result.hresult = hr
        self.result.message = message
        self._said(BcCall.ABORT_BACKUP, "AbortBackup", hresult_name(hr), detail=message)
        if self.bc.accepts(BcCall.ABORT_BACKUP):
            self.bc.send(BcCall.ABORT_BACKUP)
        for w in self.writers.participants():
            if not self.state.is_up(w.node):
                continue
            if w.machine.accepts(WE.ABORT):
                w.machine.send(WE.ABORT)
                self.scope.mark(
                    w.node,
                    w.name,
                    "Abort",
                    detail=str(w.machine.state),
                    kind=PhaseKind.WRITER,
                    call=WE.ABORT,
                )
                if w.kind == HYPERV:
                    for a in hyperv_actions(WE.ABORT, w.vms):
                        if isinstance(a, Resume):
                            yield from self.writers.resume(w, a.vm)
        self.providers.abort(hr, message)
        # A finished persistent set outlives a requester that died; an aborted one does not.
        if not (self.job.persistent and self.set.notified and not self.state.is_up(self.req)):
            yield from self._delete_copies()
        yield from self.csvs.release(self.set.notified)
        self.result.writer_status = self.writers.status()
        if self.bc.state is not BcState.RELEASED:
            yield from self._release()


__all__ = ["AbortBackupError", "BackupRun"]
