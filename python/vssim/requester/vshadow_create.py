"""Shadow copy set creation (``create.cpp``: ``CreateSnapshotSet``, ``PrepareForBackup``,
``AddToSnapshotSet``, ``DoSnapshotSet``, ``BackupComplete``, ``SaveBackupComponentsDocument``,
``GenerateSetvarScript``) on the simulated cluster.

How it works: after component selection the whole set runs at once on the cluster — one
:class:`~vssim.sim.backup_run.BackupRun` (writers, CSV providers, copy-on-write, faults, the
virtual clock) — and vshadow's transcript is then written from what happened, in the tool's order
and up to the call that failed: ``AddToSnapshotSet`` (its COM error block), ``PrepareForBackup``
or ``DoSnapshotSet`` (a selected writer in a failed state, or the asynchronous operation's
HRESULT), ``BackupComplete``. The run never copies data (vshadow reads nothing); a set that is not
persistent is released when the process exits, so while ``-exec`` runs (and while ``-wait``
waits) its shadow copies are written back into the state file for other vshadow processes to see.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from vssim.requester.backups import run_jobs
from vssim.requester.vshadow_bcdoc import document, file_bytes
from vssim.requester.vshadow_client import ClientBase, ThrownError, failure_key
from vssim.requester.vshadow_select import SelectionError, select_for_backup
from vssim.requester.vshadow_text import (
    CALL_ADD_TO_SNAPSHOT_SET,
    CALL_CREATE_FILE,
    WAITING,
    async_error,
    com_error,
    setvar_script,
    win32_error,
)
from vssim.scenario import Csv
from vssim.scenario.model import LocalVolume
from vssim.vss.backup_state import BcCall
from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import BackupType, HResult, SnapshotAttr, SnapshotContext, WriterState
from vssim.vss.jobs import BackupJob, BackupResult, Selected
from vssim.vss.timeline import PhaseKind

#: The context bits that pick a ``VSS_SNAPSHOT_CONTEXT`` (the others are attributes).
_CONTEXT_BITS = 0x1D
#: HRESULTs the simulated cluster refuses a volume with at ``AddToSnapshotSet``.
_ADD_REFUSALS = (
    HResult.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED,
    HResult.VSS_E_VOLUME_NOT_SUPPORTED,
    HResult.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED,
    HResult.VSS_E_BAD_STATE,
)
_DURING_SNAPSHOT = (
    WriterState.FAILED_AT_PREPARE_SNAPSHOT,
    WriterState.FAILED_AT_FREEZE,
    WriterState.FAILED_AT_THAW,
    WriterState.FAILED_AT_POST_SNAPSHOT,
)
#: Volumes in one snapshot set (spec §1): the 65th ``AddToSnapshotSet`` fails.
MAX_VOLUMES_PER_SET = 64


@dataclass(frozen=True)
class Target:
    """One volume of the set: its unique name, mount point, and what it is on the cluster."""

    unique_name: str
    display_name: str
    csv: Csv | None = None
    local: LocalVolume | None = None


class Creation(ClientBase):
    """``VssClient``'s creation calls."""

    def create_snapshot_set(
        self,
        targets: list[Target],
        xml_file: str,
        excluded: list[str],
        included: list[str],
    ) -> None:
        """``VssClient::CreateSnapshotSet``."""
        self.created, self.added, self.live_window = [], [], []
        if self.with_writers:
            self.gather_writer_metadata()
            try:
                self.selection = select_for_backup(
                    self.metadata,
                    [t.unique_name for t in targets],
                    excluded,
                    included,
                    self.ns.volume_of,
                    self.ns.display_name,
                )
            except SelectionError as e:
                self.con.w(*e.lines)
                raise ThrownError(e.hresult) from None
            self.con.w(*self.selection.lines)
            self.added = [(w.doc, c.c) for w, c in self.selection.explicitly_included()]
        refusal = self._refused_volume(targets)
        if refusal is not None:
            index, hr = refusal
            self.set_id = "{" + str(self.state.new_id("snapshot-set")) + "}"
            self.con.w(f"Creating shadow set {self.set_id} ...")
            self._adding(targets[: index + 1])
            self.con.w(*com_error(CALL_ADD_TO_SNAPSHOT_SET, hr))
            raise ThrownError(hr)
        job = self._job(targets)
        r = run_jobs(self.state, [job])[0]
        self.result = r
        self.set_id = "{" + str(r.set_id) + "}"
        self.con.w(f"Creating shadow set {self.set_id} ...")
        added = _added_volumes(r)
        if r.hresult in _ADD_REFUSALS and not _snapshot_requested(r):
            order = [v.volume_name for v in job.volumes] + [
                v.volume_name for v in job.local_volumes
            ]
            failing = order[min(added, len(order) - 1)].lower()
            index = next(i for i, t in enumerate(targets) if t.unique_name.lower() == failing)
            self._adding(targets[: index + 1])
            self.store.save()
            self.con.w(*com_error(CALL_ADD_TO_SNAPSHOT_SET, r.hresult))
            raise ThrownError(r.hresult)
        self._adding(targets)
        self._take_status(r)
        if self.with_writers:
            self.con.w("Preparing for backup ... ", WAITING)
            self._check_status(WriterState.FAILED_AT_PREPARE_BACKUP, r)
        self.con.w("Creating the shadow (DoSnapshotSet) ... ", WAITING)
        failed_writer = self._selected_failure(_DURING_SNAPSHOT)
        if not r.ok and failed_writer is None and not self._failed_at_backup_complete():
            self.store.save()
            self.con.w(*async_error(r.hresult))
            raise ThrownError(r.hresult)
        self._check_status(None, r)
        self.con.w("Shadow copy set succesfully created.")
        by_id = {c.id: c for c in r.created_copies}
        self.created = [by_id[c.id] for c in _in_target_order(r.created_copies, targets)]
        self._open_live_window(job)
        if xml_file:
            self.save_backup_components(xml_file, job)
        if not self.context & SnapshotAttr.TRANSPORTABLE:
            self.con.w("", "List of created shadow copies: ", "")
            self.query_snapshot_set(self.set_id)

    # --- the job ------------------------------------------------------------------------------

    def _job(self, targets: list[Target]) -> BackupJob:
        by_guid = {vm.guid: vm for vm in self.sc.vms}
        selected = tuple(
            Selected(w, c, by_guid[c.vm_guid]) for w, c in self.added if c.vm_guid is not None
        )
        return BackupJob(
            node=self.node,
            selected=selected,
            volumes=tuple(t.csv for t in targets if t.csv is not None),
            backup_type=BackupType.FULL,
            context=SnapshotContext(self.context & _CONTEXT_BITS),
            auto_recovery=not self.context & SnapshotAttr.NO_AUTORECOVERY,
            copy_data=False,
            transportable=bool(self.context & SnapshotAttr.TRANSPORTABLE),
            label=f"vshadow on {self.node}",
            local_volumes=tuple(t.local for t in targets if t.local is not None),
            attributes=self.context & (SnapshotAttr.DIFFERENTIAL | SnapshotAttr.TXF_RECOVERY),
        )

    def _refused_volume(self, targets: list[Target]) -> tuple[int, int] | None:
        """The ``AddToSnapshotSet`` refusals vssim's protocol does not model on its own: a volume
        added twice, a 65th volume, a plex copy (no simulated provider makes one)."""
        seen: set[str] = set()
        for i, t in enumerate(targets):
            if t.unique_name.lower() in seen:
                return i, int(HResult.VSS_E_OBJECT_ALREADY_EXISTS)
            seen.add(t.unique_name.lower())
            if i >= MAX_VOLUMES_PER_SET:
                return i, int(HResult.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED)
            if self.context & SnapshotAttr.PLEX:
                return i, int(HResult.VSS_E_VOLUME_NOT_SUPPORTED)
        return None

    def _adding(self, targets: list[Target]) -> None:
        for t in targets:
            self.con.w(f"- Adding volume {t.unique_name} [{t.display_name}] to the shadow set...")

    # --- writer status after the run --------------------------------------------------------

    def _take_status(self, r: BackupResult) -> None:
        """The run's final status of each of this node's writers. A new snapshot set starts every
        writer afresh (PrepareForBackup), so a failure kept from an earlier one is gone; the
        failures of this one are kept — for every writer the run reached, on any node."""
        by_instance = {(s.instance_id, s.node): s for s in r.writer_status}
        for g in self.writers:
            if not g.identified:
                continue
            s = by_instance.get((g.doc.instance_id, self.node))
            g.state, g.failure = WriterState.STABLE, int(HResult.S_OK)
            if s is not None and s.state.is_failed:
                g.state, g.failure = s.state, s.failure
        kept = self.state.writer_failures
        for g in self.writers:
            kept.pop(failure_key(self.node, g.doc.instance_id), None)
        for s in r.writer_status:
            key = failure_key(s.node, s.instance_id)
            if s.state.is_failed:
                kept[key] = (int(s.state), s.failure)
            else:
                kept.pop(key, None)

    def _selected_failure(self, states: tuple[WriterState, ...]) -> WriterState | None:
        chosen = self.selected_instances()
        for g in self.writers:
            if g.doc.instance_id in chosen and g.state in states:
                return g.state
        return None

    def _failed_at_backup_complete(self) -> bool:
        return self._selected_failure((WriterState.FAILED_AT_BACKUP_COMPLETE,)) is not None

    def _check_status(self, only: WriterState | None, r: BackupResult) -> None:
        """``CheckSelectedWriterStatus`` at one point of the sequence: a writer that failed at a
        later step has not failed yet."""
        order = [
            WriterState.FAILED_AT_IDENTIFY,
            WriterState.FAILED_AT_PREPARE_BACKUP,
            *_DURING_SNAPSHOT,
            WriterState.FAILED_AT_BACKUP_COMPLETE,
        ]
        limit = order.index(only) if only is not None else order.index(_DURING_SNAPSHOT[-1])
        saved = [(g, g.state, g.failure) for g in self.writers]
        for g in self.writers:
            if g.state in order and order.index(g.state) > limit:
                g.state, g.failure = WriterState.STABLE, int(HResult.S_OK)
        try:
            self.check_selected_writer_status()
        except ThrownError:
            self.store.save()
            raise
        finally:
            for g, st, hr in saved:
                g.state, g.failure = st, hr

    # --- after DoSnapshotSet ----------------------------------------------------------------

    def _open_live_window(self, job: BackupJob) -> None:
        """A set that is not persistent lives until vshadow exits: while it runs ``-exec`` or
        waits, the set's shadow copies are in the state other processes read."""
        if not job.persistent:
            self.live_window = [c for c in self.created if c not in self.state.snapshots]
            self.state.snapshots.extend(self.live_window)
        self.store.save()

    def close_live_window(self) -> None:
        """vshadow exits: its non-persistent shadow copies go (unless another process deleted
        them already)."""
        if not self.live_window:
            return
        state = self.store.acquire()
        gone = {c.id for c in self.live_window}
        state.snapshots[:] = [s for s in state.snapshots if s.id not in gone]
        self.live_window = []
        self.store.save()

    def save_backup_components(self, path: str, job: BackupJob) -> None:
        """``SaveBackupComponentsDocument``, then ``WriteFile``."""
        self.con.w("Saving the backup components document ... ")
        self.con.w(f"Writing the file '{path}' ...")
        xml = document(self.set_id, self.context, job.backup_type, self.added, self.created)
        try:
            Path(path).write_bytes(file_bytes(xml))
        except OSError as exc:
            error = 3 if isinstance(exc, FileNotFoundError) else 5
            self.con.w(*win32_error(CALL_CREATE_FILE, error))
            raise ThrownError(0x80070000 | error) from None

    def generate_setvar_script(self, path: str) -> None:
        """``GenerateSetvarScript`` (a ``wofstream``: a file that cannot be opened is silently
        not written)."""
        self.con.w(f"Generating the SETVAR script ({path}) ... ")
        transportable = bool(self.context & SnapshotAttr.TRANSPORTABLE)
        with contextlib.suppress(OSError):
            Path(path).write_bytes(
                setvar_script(self.set_id, self.created, transportable).encode("ascii", "replace")
            )

    def backup_complete(self, succeeded: bool) -> None:
        """``VssClient::BackupComplete``."""
        writers = {id(w) for w, _ in self.added}
        if not writers:
            self.con.w("- There were no writer components in this backup")
            return
        if succeeded:
            self.con.w("- Mark all writers as succesfully backed up... ")
        else:
            self.con.w("- Backup failed. Mark all writers as not succesfully backed up... ")
        self.con.w("Completing the backup (BackupComplete) ... ", WAITING)
        self.check_selected_writer_status()


def _added_volumes(r: BackupResult) -> int:
    """How many ``AddToSnapshotSet`` calls the run got through."""
    return len(r.timeline.find(kind=PhaseKind.REQUESTER, call=BcCall.ADD_TO_SNAPSHOT_SET))


def _snapshot_requested(r: BackupResult) -> bool:
    return bool(r.timeline.find(kind=PhaseKind.REQUESTER, call=BcCall.DO_SNAPSHOT_SET))


def _in_target_order(copies: list[ShadowCopy], targets: list[Target]) -> list[ShadowCopy]:
    """The set's shadow copies in the order their volumes were given
    (``m_latestSnapshotIdList``)."""
    by_volume = {c.volume_name.lower(): c for c in copies}
    return [by_volume[t.unique_name.lower()] for t in targets if t.unique_name.lower() in by_volume]


__all__ = ["Creation", "Target"]
