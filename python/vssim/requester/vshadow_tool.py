"""``vshadow`` — the Windows SDK's VSS requester sample that the seed uses — on the simulated
cluster: its options (spec §6), its output text and its exit codes (0 ok, 1 not found / invalid
argument, 2 runtime error).

A run is one requester process on one node. Everything it does goes through the simulated cluster
(:mod:`vssim.requester.backups`); shadow copies, the clock and CSV owners persist in a JSON state
file (:mod:`vssim.requester.state_file`) between runs, so ``-p`` then ``-q`` then ``-da`` behave
like a sequence on one cluster. vshadow itself copies no data: a created set is released at once
unless ``-p`` made it persistent.
Component selection is vshadow's, with the seed's reading of ``-wi``
(:mod:`vssim.requester.vshadow_select`).
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import TextIO

from vssim.requester import state_file
from vssim.requester.backups import run_jobs, visible_writers
from vssim.requester.vshadow_select import SelectionError, select_for_backup, volume_resolver
from vssim.requester.vshadow_text import (
    USAGE,
    backup_components_document,
    setvar_script,
    snapshot_lines,
    status_lines,
)
from vssim.scenario import Csv, FaultKind, Scenario, braced
from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import (
    HResult,
    SnapshotContext,
    WriterState,
    hresult_hex,
    hresult_name,
)
from vssim.vss.jobs import BackupJob, BackupResult, Selected, WriterStatus
from vssim.vss.limits import MAX_VOLUMES_PER_SET
from vssim.vss.metadata import list_writer, to_xml
from vssim.vss.well_known_ids import SYSTEM_PROVIDER_ID
from vssim.vss.writer_state import WriterEvent, WriterMachine

OK, NOT_FOUND, RUNTIME_ERROR = 0, 1, 2

_FLAG_NAMES = ("p", "nw", "nar", "tr", "ad", "ap", "scsf", "wait", "tracing")
_VALUED = ("t", "bc", "wx", "wi", "script", "exec")
_OPS = ("?", "q", "da", "wm", "wm2", "wm3", "ws")
_VALUED_OPS = ("qx", "s", "dx", "ds", "do")


def _match(arg: str, name: str) -> bool:
    return arg[:1] in "-/" and arg[1:].lower() == name


def _match_value(arg: str, name: str) -> str | None:
    if arg[:1] not in "-/" or "=" not in arg:
        return None
    key, _, value = arg[1:].partition("=")
    if key.lower() != name or not value:
        return None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def _guid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip().strip("{}"))
    except ValueError:
        return None


class VShadow:
    """One vshadow process on ``node`` of ``scenario``."""

    def __init__(
        self,
        scenario: Scenario,
        node: str,
        state_path: Path,
        out: TextIO,
        stdin: TextIO | None = None,
    ) -> None:
        self.sc = scenario
        self.node = scenario.node(node).name
        self.state_path = state_path
        self.out = out
        self.stdin = stdin
        self.state = state_file.load(scenario, state_path)
        self.persistent = False
        self.with_writers = True
        self.auto_recovery = True
        self.client_accessible = False
        self.bc_file = ""
        self.transportable = False
        self.script = ""
        self.exec_cmd = ""
        self.included: list[str] = []
        self.excluded: list[str] = []

    def w(self, *lines: str) -> None:
        for line in lines:
            self.out.write(line + "\n")

    def context(self) -> SnapshotContext:
        if self.client_accessible:
            return SnapshotContext.CLIENT_ACCESSIBLE
        if self.persistent:
            return (
                SnapshotContext.APP_ROLLBACK
                if self.with_writers
                else (SnapshotContext.NAS_ROLLBACK)
            )
        return SnapshotContext.BACKUP if self.with_writers else SnapshotContext.FILE_SHARE_BACKUP

    # --- main routine -----------------------------------------------------------------------

    def main(self, args: list[str]) -> int:
        self.w(
            "",
            "VSHADOW.EXE 3.0 - Volume Shadow Copy sample client.",
            f"(vssim: simulated {self.sc.os} cluster {self.sc.name}, node {self.node})",
            "",
            "",
        )
        for i, arg in enumerate(args):
            code = self._flag(arg)
            if code is not None:
                if code != OK:
                    return code
                continue
            for op in _OPS:
                if _match(arg, op):
                    return self._op(op, None)
            for op in _VALUED_OPS:
                value = _match_value(arg, op)
                if value is not None:
                    return self._op(op, value)
            if arg[:1] not in "-/":
                self.w("(Option: Create shadow copy set)")
                return self.create(args[i:])
            self.w("", f"ERROR: invalid parameter '{arg}'", "", USAGE)
            return NOT_FOUND
        self.w(USAGE)
        return OK

    def _flag(self, arg: str) -> int | None:
        names = {
            "p": ("(Option: Persistent shadow copy)", "persistent"),
            "nw": ("(Option: No-writers option detected)", "with_writers"),
            "nar": ("(Option: No-auto-recovery option detected)", "auto_recovery"),
            "scsf": (
                "(Option: Creating Shadow Copies for Shared Folders - Client Accessible)",
                "client_accessible",
            ),
        }
        for name in _FLAG_NAMES:
            if _match(arg, name):
                if name in names:
                    text, attr = names[name]
                    self.w(text)
                    setattr(self, attr, attr in ("persistent", "client_accessible"))
                else:
                    self.w(f"(Option: {name} accepted; no effect in the simulation)")
                return OK
        for name in _VALUED:
            value = _match_value(arg, name)
            if value is None:
                continue
            if name == "wi":
                self.w(f"(Option: Verifying inclusion of writer/component '{value}')")
                self.included.append(value)
            elif name == "wx":
                self.w(f"(Option: Excluding writer/component '{value}')")
                self.excluded.append(value)
            elif name == "t":
                self.w(f"(Option: Transportable shadow set. Saving xml to file '{value}')")
                self.bc_file = value
                self.transportable = True
            elif name == "bc":
                self.w(f"(Option: Saving xml to file '{value}')")
                self.bc_file = value
            elif name == "script":
                self.w(f"(Option: Generate SETVAR script '{value}')")
                self.script = value
            else:
                self.w(f"(Option: Execute binary/script after shadow creation '{value}')")
                p = Path(value)
                if not p.is_file():
                    self.w(
                        f"ERROR: the parameter '{value}' must be an existing file!",
                        "- Note: the -exec command cannot have parameters!",
                    )
                    return NOT_FOUND
                self.exec_cmd = value
            return OK
        return None

    def _op(self, op: str, value: str | None) -> int:
        if op == "?":
            self.w(USAGE)
            return OK
        if op in ("wm", "wm2", "wm3"):
            return self.list_metadata(op)
        if op == "ws":
            return self.list_status()
        if op == "da":
            return self.delete_all()
        if op == "q":
            self.w("(Option: Query all shadow copies)")
            self.query(None)
            return OK
        assert value is not None
        if op == "do":
            self.w(f"(Option: Delete the oldest shadow copy for {value})")
            return self.delete_oldest(value)
        guid = _guid(value)
        if guid is None:
            self.w(f"ERROR: '{value}' is not a GUID", "")
            return NOT_FOUND
        if op == "qx":
            self.w("(Option: Query shadow copy set)")
            self.query(str(guid))
            return OK
        if op == "s":
            self.w("(Option: Query shadow copy)")
            snaps = [s for s in self.state.snapshots if s.id == str(guid)]
            if not snaps:
                return self._not_found(f"GetSnapshotProperties({braced(guid)})")
            self.w(*snapshot_lines(snaps[0], self.sc.start))
            return OK
        if op == "dx":
            self.w("(Option: Delete a shadow copy set)")
            self.w(f"- Deleting shadow copy set {braced(guid)} ...")
            return self._delete([s for s in self.state.snapshots if s.set_id == str(guid)])
        self.w("(Option: Delete a shadow copy)")
        self.w(f"- Deleting shadow copy {braced(guid)} ...")
        return self._delete([s for s in self.state.snapshots if s.id == str(guid)])

    def _not_found(self, call: str) -> int:
        hr = HResult.VSS_E_OBJECT_NOT_FOUND
        self.w("", f"ERROR: {call} failed: {hresult_hex(hr)} ({hr.name})", "")
        return NOT_FOUND

    # --- writers ----------------------------------------------------------------------------

    def _gathered(self) -> tuple[list[WriterStatus], list[int]]:
        """Identify every writer of this node: their status, and the indexes of those whose
        metadata was gathered (a writer failing Identify reports no metadata)."""
        docs = visible_writers(self.sc, self.node)
        status, good = [], []
        for i, d in enumerate(docs):
            m = WriterMachine(f"{d.name} on {self.node}")
            kind = "csv" if i else "hyperv"
            fault = next(
                (
                    f
                    for f in self.sc.faults
                    if f.kind is FaultKind.WRITER_FAIL
                    and f.phase == "identify"
                    and f.node == self.node
                    and (f.writer or "hyperv") == kind
                ),
                None,
            )
            if fault is None:
                m.send(WriterEvent.IDENTIFY)
                good.append(i)
            else:
                m.send(
                    WriterEvent.IDENTIFY,
                    ok=False,
                    hr=fault.hresult or HResult.VSS_E_WRITERERROR_NONRETRYABLE,
                )
            status.append(
                WriterStatus(d.name, d.writer_id, d.instance_id, self.node, m.state, m.failure)
            )
        return status, good

    def list_metadata(self, op: str) -> int:
        text = {
            "wm": "(Option: List writer metadata)",
            "wm2": "(Option: List extended writer metadata)",
            "wm3": "(Option: List writer metadata in XML)",
        }[op]
        self.w(text, "(Gathering writer metadata...)")
        docs = visible_writers(self.sc, self.node)
        _, good = self._gathered()
        if op == "wm3":
            for n, i in enumerate(good):
                self.w("", f"--[Writer {n}]--", to_xml(docs[i]))
            self.w("--[end of data]--")
            return OK
        self.w("Initialize writer metadata ...", "Listing writer metadata ...")
        vol = volume_resolver(self.sc)
        for i in good:
            self.w(*list_writer(docs[i], vol, detailed=op == "wm2"))
        return OK

    def list_status(self) -> int:
        self.w(
            "(Option: List writer status)",
            "(Gathering writer metadata...)",
            "Initialize writer metadata ...",
            "Listing writer status ...",
        )
        status, _ = self._gathered()
        self.w(f"- Number of writers that responded: {len(status)}")
        for s in status:
            self.w("", f'* WRITER "{s.name}"', *status_lines(s), "")
        return OK

    # --- queries and deletion ---------------------------------------------------------------

    def query(self, set_id: str | None, snaps: list[ShadowCopy] | None = None) -> None:
        if set_id is None:
            self.w("", "Querying all shadow copies in the system ...", "")
        else:
            self.w("", f"Querying all shadow copies with the SnapshotSetID {{{set_id}}} ...", "")
        pool = self.state.snapshots if snaps is None else snaps
        if not pool:
            if set_id is None:
                self.w("", "There are no shadow copies in the system", "")
            return
        for s in pool:
            if set_id is None or s.set_id == set_id:
                self.w(*snapshot_lines(s, self.sc.start))

    def delete_all(self) -> int:
        self.w("(Option: Delete all shadow copies)")
        self.out_prompt("This will delete all shadow copies in the system. Are you sure? [Y/N] ")
        answer = (self.stdin.readline() if self.stdin is not None else "").strip()
        if answer not in ("y", "Y"):
            return OK
        self.w("")
        if not self.state.snapshots:
            self.w("", "There are no shadow copies on the system", "")
            return OK
        for s in list(self.state.snapshots):
            self.w(
                f"- Deleting shadow copy {{{s.id}}} on {s.volume_name} from provider "
                f"{{{s.provider_id}}} [{s.attributes:#010x}]..."
            )
            self._remove(s)
        state_file.save(self.state, self.state_path)
        return OK

    def out_prompt(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def delete_oldest(self, volume: str) -> int:
        csv = self.sc.csv_for_path(volume)
        snaps = [s for s in self.state.snapshots if csv is not None and s.csv == csv.name]
        if not snaps:
            self.w("", "There are no shadow copies on the system", "")
            return OK
        s = min(snaps, key=lambda x: x.created)
        self.w(
            f"- Deleting shadow copy {{{s.id}}} on {s.volume_name} from provider "
            f"{{{s.provider_id}}} [{s.attributes:#010x}]..."
        )
        self._remove(s)
        state_file.save(self.state, self.state_path)
        return OK

    def _delete(self, snaps: list[ShadowCopy]) -> int:
        if not snaps:
            self.w(
                "Error while deleting shadow copies...",
                "- Last shadow copy that could not be deleted: "
                "{00000000-0000-0000-0000-000000000000}",
            )
            return self._not_found("DeleteSnapshots")
        for s in snaps:
            self._remove(s)
        state_file.save(self.state, self.state_path)
        return OK

    def _remove(self, s: ShadowCopy) -> None:
        if s.backend_handle is not None and s.provider_id == str(SYSTEM_PROVIDER_ID):
            self.state.backend.delete_snapshot(self.sc.csv_by_name[s.csv], s.backend_handle)
        self.state.snapshots.remove(s)

    # --- creation ---------------------------------------------------------------------------

    def create(self, volume_args: list[str]) -> int:
        vols: list[Csv] = []
        for v in volume_args:
            csv = self.sc.csv_for_path(v) if v[:1] not in "-/" else None
            if csv is None:
                self.w(
                    "",
                    f"ERROR: invalid parameters: '{v}'",
                    f"- Parameter {v} is expected to be a Cluster Shared Volume of "
                    f"{self.sc.name} (C:\\ClusterStorage\\VolumeN)",
                )
                return NOT_FOUND
            vols.append(csv)
        selected: list[Selected] = []
        if self.with_writers:
            self.w("(Gathering writer metadata...)", "Initialize writer metadata ...")
            docs = visible_writers(self.sc, self.node)
            _, good = self._gathered()
            try:
                selected, lines = select_for_backup(
                    self.sc, [docs[i] for i in good], vols, self.excluded, self.included
                )
            except SelectionError as e:
                self.w(*e.lines)
                return NOT_FOUND
            self.w(*lines)
        job = BackupJob(
            node=self.node,
            selected=tuple(selected),
            volumes=tuple(vols),
            context=self.context(),
            auto_recovery=self.auto_recovery,
            copy_data=False,
            transportable=self.transportable,
            label=f"vshadow on {self.node}",
        )
        result = run_jobs(self.state, [job])[0]
        code = self._report(job, result)
        state_file.save(self.state, self.state_path)
        return code

    def _report(self, job: BackupJob, r: BackupResult) -> int:
        set_id = braced(r.set_id) if r.set_id else "{00000000-0000-0000-0000-000000000000}"
        self.w(f"Creating shadow set {set_id} ...")
        for n, csv in enumerate(job.volumes):
            refused = n >= MAX_VOLUMES_PER_SET or r.hresult == HResult.VSS_E_VOLUME_NOT_SUPPORTED
            if refused:
                hr = HResult(r.hresult)
                self.w(
                    "",
                    f"ERROR: AddToSnapshotSet({csv.volume_name}) failed: "
                    f"{hresult_hex(hr)} ({hr.name})",
                    "",
                )
                return RUNTIME_ERROR
            self.w(f"- Adding volume {csv.volume_name} [{csv.display_name}] to the shadow set...")
        if r.hresult == HResult.CSV_BACKUP_IN_PROGRESS:
            self.w(
                "",
                f"ERROR: ClusterPrepareSharedVolumeForBackup failed: "
                f"{hresult_hex(r.hresult)} ({r.message})",
                "",
            )
            return RUNTIME_ERROR
        failed = r.failed_writers()
        if job.with_writers:
            self.w("Preparing for backup ... ")
            if failed and failed[0].state is WriterState.FAILED_AT_PREPARE_BACKUP:
                return self._writer_failed(failed[0])
        self.w("Creating the shadow (DoSnapshotSet) ... ")
        if not r.ok and not (failed and failed[0].state is WriterState.FAILED_AT_BACKUP_COMPLETE):
            if failed:
                return self._writer_failed(failed[0])
            self.w(
                "",
                f"ERROR: DoSnapshotSet failed: {hresult_hex(r.hresult)} "
                f"({hresult_name(r.hresult)})",
                f"- {r.message}",
                "",
            )
            return RUNTIME_ERROR
        self.w("Shadow copy set succesfully created.")
        if self.bc_file:
            self.w("Saving the backup components document ... ")
            Path(self.bc_file).write_text(backup_components_document(job, r), encoding="utf-8")
        if not job.transportable:
            self.w("", "List of created shadow copies: ", "")
            self.query(str(r.set_id), r.created_copies)
        if self.script:
            self.w(f"Generating the SETVAR script ({self.script}) ... ")
            Path(self.script).write_text(setvar_script(r), encoding="utf-8")
        exec_failed = False
        if self.exec_cmd:
            self.w(f"- Executing command '{self.exec_cmd}' ...")
            done = subprocess.run([str(Path(self.exec_cmd).resolve())], check=False)
            if done.returncode != 0:
                self.w(f"ERROR: Command line '{self.exec_cmd}' failed!")
                exec_failed = True
        if job.with_writers:
            if not job.selected:
                self.w("- There were no writer components in this backup")
            elif exec_failed:
                self.w("- Backup failed. Mark all writers as not succesfully backed up... ")
                self.w("Completing the backup (BackupComplete) ... ")
            else:
                self.w("- Mark all writers as succesfully backed up... ")
                self.w("Completing the backup (BackupComplete) ... ")
            if failed:
                return self._writer_failed(failed[0])
        if exec_failed:
            return RUNTIME_ERROR
        self.w("", "Snapshot creation done.")
        return OK

    def _writer_failed(self, s: WriterStatus) -> int:
        self.w("", f"ERROR: Selected writer '{s.name}' is in failed state!", *status_lines(s), "")
        return RUNTIME_ERROR
