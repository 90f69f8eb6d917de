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

import numpy as np

from vssim.engine import MAX_SNAPSHOTS
from vssim.errors import VssProtocolError
from vssim.scenario import Csv, Vm
from vssim.sim import costs
from vssim.sim.changes import changed_bytes
from vssim.sim.csv_access import CsvAccess
from vssim.sim.run_base import (
    EVENT_TEXT,
    REQUESTER,
    VSS,
    WE,
    AbortBackupError,
    Proc,
    WriterInstance,
)
from vssim.sim.writer_driver import WriterDriver
from vssim.vss.backup_state import TABLE as _BCTABLE
from vssim.vss.backup_state import BcCall, BcState
from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import BackupType, HResult, ProviderType, SnapshotAttr, hresult_name
from vssim.vss.provider_state import TABLE as _PTABLE
from vssim.vss.provider_state import ProviderCall, ProviderMachine
from vssim.vss.providers import (
    CSV_HELPER_PROVIDER,
    CSV_PROVIDER,
    ProviderInfo,
    volume_provider,
)
from vssim.vss.writer_state import TABLE as WRITER_TABLE
from vssim.vss.writers import (
    HYPERV,
    Resume,
    hyperv_actions,
)
from vssim.workloads import hot_spot_writes


class BackupRun(WriterDriver, CsvAccess):
    """One backup job on one cluster: ``env.process(run.process())``."""

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
            existing = sum(1 for c in self.state.snapshots if c.csv == csv.name)
            if existing >= MAX_SNAPSHOTS and volume_provider(csv).type is ProviderType.SYSTEM:
                raise AbortBackupError(
                    HResult.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED,
                    f"{csv.mount_point} already has {existing} shadow copies",
                )
            if job.transportable and not volume_provider(csv).transportable:
                raise AbortBackupError(
                    HResult.VSS_E_VOLUME_NOT_SUPPORTED,
                    f"{csv.mount_point}: the system provider cannot make transportable copies",
                )
            self.bc.add_volume(csv.volume_name)
            self.copies[csv.name] = self._new_copy(csv)
            self._mark(self.req, REQUESTER, "AddToSnapshotSet", detail=csv.volume_name)
        if prof.exclusive_csv_backup:
            yield from self._prepare_csvs_2008r2()
        if job.with_writers:
            yield from self._call(BcCall.PREPARE_FOR_BACKUP)
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
        if self.job.transportable:
            attrs |= SnapshotAttr.TRANSPORTABLE
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
        # The freeze window opens when the writers get Freeze: a slow OnFreeze eats into it.
        freeze_deadline = self.env.now + costs.FREEZE_WINDOW_S
        if job.with_writers:
            yield from self._dispatch(WE.FREEZE)
            self._check_writers()
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
        self.set_done = True

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
                self.req,
                REQUESTER,
                "SetBackupSucceeded",
                detail=f"{len(job.selected)} components, succeeded={not self.lost_copy}",
            )
            yield from self._call(BcCall.BACKUP_COMPLETE, costs.BACKUP_COMPLETE_S)
            yield from self._dispatch(WE.BACKUP_COMPLETE)
            yield from self._call(BcCall.GATHER_WRITER_STATUS)
        failed = [w for w in self._participants() if w.machine.phase.failed and w.involved]
        yield from self._release_csvs()
        self.result.writer_status = self._status()
        if self.lost_copy:
            self.result.hresult = HResult.VSS_E_INSUFFICIENT_STORAGE
            self.result.message = "the shadow copy was deleted while it was read (diff area full)"
        elif failed:
            self.result.hresult = failed[0].machine.failure
            self.result.message = (
                f"writer {failed[0].name} on {failed[0].node} failed at BackupComplete"
            )
        else:
            self.result.ok = True
            self._remember_backups()
        yield from self._release()

    def _remember_backups(self) -> None:
        """For later incrementals: when each VM was last backed up, and last fully."""
        if self.job.backup_type is BackupType.COPY or not self.job.copy_data:
            return
        full = self.job.backup_type not in (BackupType.INCREMENTAL, BackupType.DIFFERENTIAL)
        assert self.commit_time is not None
        for s in self.job.selected:
            prev = self.state.last_backup.get(s.vm.name)
            last_full = self.commit_time if full or prev is None else prev[1]
            self.state.last_backup[s.vm.name] = (self.commit_time, last_full)

    def _copy_vm(self, vm: Vm) -> Proc:
        csv = self.sc.csv_of(vm)
        host = self.copies[csv.name].service_machine
        nodes: tuple[str, ...] = ()
        if volume_provider(csv).type is ProviderType.SYSTEM and host != self.req:
            nodes = (host, self.req)
        start, seq = self.env.now, self.tl.next_seq()
        nbytes, kind = self._bytes_to_copy(vm)
        yield from self.res.transfer(nbytes, csv, nodes, target=True)
        self.result.copied_bytes += nbytes
        if nodes:
            self.result.network_bytes += nbytes
        self.tl.add(
            self.req,
            REQUESTER,
            f"copy {vm.name} from the shadow copy ({kind})",
            start,
            self.env.now,
            detail=f"{nbytes} bytes via {host}",
            seq=seq,
        )

    def _bytes_to_copy(self, vm: Vm) -> tuple[int, str]:
        """What a backup of ``vm`` reads: everything (full, copy, or no earlier full backup), or
        the blocks changed since the last backup (incremental) / the last full (differential),
        counted by changed-block tracking over the guest's writes in that interval."""
        kind = self.job.backup_type
        last = self.state.last_backup.get(vm.name)
        if kind not in (BackupType.INCREMENTAL, BackupType.DIFFERENTIAL) or last is None:
            return vm.allocated_bytes, "full"
        since = last[0] if kind is BackupType.INCREMENTAL else last[1]
        return changed_bytes(self.sc, vm, self.env.now - since, self.state.counter), str(kind)

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
                self._diff_area_deletions(csv, cost.deleted)
            self.result.diff_area_bytes[csv.name] = self.state.backend.diff_area_bytes(csv)

    def _diff_area_deletions(self, csv: Csv, deleted: tuple[int, ...]) -> None:
        """volsnap deletes the oldest shadow copies when the diff area cannot grow (event
        VolSnap 24). If this backup's own copy goes, its reads fail and so does the backup."""
        for copy in [c for c in self.state.snapshots if c.csv == csv.name]:
            if copy.backend_handle is None or copy.backend_handle not in deleted:
                continue
            self.state.snapshots.remove(copy)
            self._mark(
                copy.service_machine,
                volume_provider(csv).name,
                "VolSnap 24: shadow copy deleted, the diff area could not grow",
                hresult_name(HResult.VSS_E_INSUFFICIENT_STORAGE),
                detail=copy.id,
            )
            if copy is self.copies.get(csv.name):
                self.lost_copy = True

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
        # A finished persistent set outlives a requester that died; an aborted one does not.
        if not (self.job.persistent and self.set_done and not self.state.is_up(self.req)):
            yield from self._delete_copies()
        yield from self._release_csvs()
        self.result.writer_status = self._status()
        if self.bc.state is not BcState.RELEASED:
            yield from self._release()


__all__ = ["AbortBackupError", "BackupRun", "WriterInstance"]
