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

from vssim.errors import VssError
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
from vssim.vss.backup_state import BcCall, BcState
from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import BackupType, HResult, ProviderType, SnapshotAttr, hresult_name
from vssim.vss.provider_state import ProviderCall
from vssim.vss.providers import (
    CSV_HELPER_PROVIDER,
    CSV_PROVIDER,
    ProviderInfo,
    volume_provider,
)
from vssim.vss.snapshot_set import PROVIDER_CALLS, SetEvent, SetState
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
        except VssError as e:
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
        """One provider call's steps for ``csv`` (the set already sent it to the provider): on
        2012 the CSV provider on the requester's node and the helper (and the volume's provider)
        on the coordinator; on 2008 R2 the volume's provider on the requester's node."""
        name = _call_name(call)
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

    def _providers_all(self, event: SetEvent, duration: float, phase: str, step: str = "") -> Proc:
        """A provider step of the set: faults of ``phase`` first, then the set sends the call to
        every volume's provider, and each takes ``duration``."""
        yield from self._nodes_down(phase)
        self._provider_fault(phase)
        self.set.send(event)
        for csv in self.job.volumes:
            yield from self._provider_call(csv, PROVIDER_CALLS[event], duration, step)

    def _bounded(self, event: SetEvent, duration: float, phase: str, step: str = "⑦") -> Proc:
        """A provider step inside the set's open windows: if it would end after the first one
        closes, the clock stops there, the set takes the expiry (its HRESULT, the writers it
        times out) and the step times out."""
        duration += self._delay(phase)
        due = self.set.next_expiry()
        if due is not None and self.env.now + duration > due.at:
            start = self.env.now
            yield self.env.timeout(max(0.0, due.at - self.env.now))
            name = _call_name(PROVIDER_CALLS[event])
            self.set.send(due.event, at=due.at)
            hr = hresult_name(self.set.hresult)
            self.tl.add(self.req, VSS, f"{name} timed out", start, self.env.now, hr, step=step)
            self._mark_timed_out()
            raise AbortBackupError(self.set.hresult, f"{name}: {hr}")
        yield from self._providers_all(event, duration, phase, step)

    def _mark_timed_out(self) -> None:
        """The writers the freeze window's expiry failed (FREEZE_TIMEOUT)."""
        for w in self.set.timed_out:
            assert isinstance(w, WriterInstance)
            self._mark(
                w.node,
                w.name,
                EVENT_TEXT[WE.FREEZE_TIMEOUT],
                hresult_name(self.set.hresult),
                detail=str(w.machine.state),
            )

    def _do_snapshot_set(self) -> Proc:
        job = self.job
        self.bc.send(BcCall.DO_SNAPSHOT_SET)
        self.set.send(SetEvent.DO_SNAPSHOT_SET)
        start, seq = self.env.now, self.tl.next_seq()
        self._mark(self.req, REQUESTER, "DoSnapshotSet: snapshot requested", step="①")
        if job.with_writers:
            yield from self._dispatch(WE.PREPARE_SNAPSHOT)
            self._check_writers()
        ready = "⑥"
        yield from self._providers_all(
            SetEvent.BEGIN_PREPARE, costs.BEGIN_PREPARE_S, "begin_prepare", ready
        )
        yield from self._providers_all(
            SetEvent.END_PREPARE, costs.END_PREPARE_S, "end_prepare", ready
        )
        if not self.profile.redirect_whole_backup:
            for csv in job.volumes:
                yield from self._redirect_on(csv, "while the snapshot is taken")
        # The freeze window opens when the writers get Freeze: a slow OnFreeze eats into it.
        self.set.send(SetEvent.FREEZE, at=self.env.now)
        if job.with_writers:
            yield from self._dispatch(WE.FREEZE)
            self._check_writers()
        yield from self._bounded(SetEvent.PRE_COMMIT, costs.PRE_COMMIT_S, "pre_commit")
        self.set.send(SetEvent.FLUSH, at=self.env.now)
        yield from self._flush()
        commit_s = sum(
            costs.COMMIT_HARDWARE_S
            if volume_provider(c).type is ProviderType.HARDWARE
            else costs.COMMIT_SYSTEM_S
            for c in job.volumes
        ) / max(1, len(job.volumes))
        yield from self._bounded(SetEvent.COMMIT, commit_s, "commit")
        self._commit()
        self._mark(self.req, VSS, "held writes released")
        yield from self._bounded(SetEvent.POST_COMMIT, costs.POST_COMMIT_S, "post_commit")
        self.set.send(SetEvent.THAW)
        if job.with_writers:
            yield from self._dispatch(WE.THAW)
            self._check_writers()
            yield from self._dispatch(WE.POST_SNAPSHOT)
            self._check_writers()
        yield from self._providers_all(
            SetEvent.PRE_FINAL_COMMIT, costs.FINAL_COMMIT_S, "pre_final_commit", "⑦"
        )
        yield from self._providers_all(
            SetEvent.POST_FINAL_COMMIT, costs.FINAL_COMMIT_S, "post_final_commit", "⑦"
        )
        if not self.profile.redirect_whole_backup:
            for csv in job.volumes:
                yield from self._redirect_off(csv)
        if job.with_writers:
            yield from self._gather_status()
        self.tl.add(self.req, REQUESTER, "DoSnapshotSet", start, self.env.now, seq=seq)
        self._mark(self.req, VSS, "shadow copy set created: requester notified", step="⑧")
        self.set.send(SetEvent.REQUESTER_NOTIFIED)

    def _flush(self) -> Proc:
        """Flush-and-hold: the file systems flush, then writes are held (the set's window is
        open since the flush began); a flush past the first window to close times out."""
        duration = costs.FLUSH_S + self._delay("flush")
        yield from self._nodes_down("flush")
        self._provider_fault("flush")
        start = self.env.now
        due = self.set.next_expiry()
        assert due is not None  # flush-and-hold is open
        timed_out = self.env.now + duration > due.at
        yield self.env.timeout(max(0.0, min(duration, due.at - self.env.now)))
        if timed_out:
            self.set.send(due.event, at=due.at)
        result = hresult_name(self.set.hresult) if timed_out else "S_OK"
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
            self._mark_timed_out()
            raise AbortBackupError(self.set.hresult, f"flush-and-hold: {result}")
        self.set.send(SetEvent.HOLD)

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
                detail=f"{len(job.selected)} components, succeeded={not self.set.copy_lost}",
            )
            yield from self._call(BcCall.BACKUP_COMPLETE, costs.BACKUP_COMPLETE_S)
            yield from self._dispatch(WE.BACKUP_COMPLETE)
            yield from self._call(BcCall.GATHER_WRITER_STATUS)
        outcome = self.set.send(SetEvent.BACKUP_COMPLETE)
        yield from self._release_csvs()
        self.result.writer_status = self._status()
        if outcome is SetState.FAILED:
            assert self.set.failure is not None
            self.result.hresult, self.result.message = self.set.failure
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
                self.set.send(SetEvent.COPY_LOST)

    def _release(self) -> Proc:
        """Release the backup-components object: BackupShutdown to the writers; shadow copies
        that are not persistent go away with it."""
        self.bc.send(BcCall.RELEASE)
        for w in self._participants():
            if w.machine.accepts(WE.BACKUP_SHUTDOWN):
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
            m = self.set.providers.get(csv.name)
            if m is not None and m.accepts(ProviderCall.DELETE_SNAPSHOTS):
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
        if self.bc.accepts(BcCall.ABORT_BACKUP):
            self.bc.send(BcCall.ABORT_BACKUP)
        for w in self._participants():
            if not self.state.is_up(w.node):
                continue
            if w.machine.accepts(WE.ABORT):
                w.machine.send(WE.ABORT)
                self._mark(w.node, w.name, "Abort", detail=str(w.machine.state))
                if w.kind == HYPERV:
                    for a in hyperv_actions(WE.ABORT, w.vms):
                        if isinstance(a, Resume):
                            yield from self._resume(w, a.vm)
        if self.set.accepts(SetEvent.ABORT):
            self.set.send(SetEvent.ABORT, hr=hr, why=message)
            for name in self.set.aborted_providers:
                csv = self.sc.csv_by_name[name]
                self._mark(self.req, self._provider_for(csv).name, "AbortSnapshots")
        # A finished persistent set outlives a requester that died; an aborted one does not.
        if not (self.job.persistent and self.set.notified and not self.state.is_up(self.req)):
            yield from self._delete_copies()
        yield from self._release_csvs()
        self.result.writer_status = self._status()
        if self.bc.state is not BcState.RELEASED:
            yield from self._release()


def _call_name(call: ProviderCall) -> str:
    """``COMMIT_SNAPSHOTS`` → ``CommitSnapshots``: the call as the timeline names it."""
    return "".join(w.capitalize() for w in call.name.split("_"))


__all__ = ["AbortBackupError", "BackupRun", "WriterInstance"]
