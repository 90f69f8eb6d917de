"""vshadow's ``VssClient`` (``vssclient.cpp``, ``writer.cpp``, ``query.cpp``, ``delete.cpp``) on
the simulated cluster: what one vshadow process does through its ``IVssBackupComponents``.

Every call prints what the sample prints, and a call that fails prints the sample's error block
for it (``CHECK_COM``: ``ERROR: COM call "<call>" failed.``, the HRESULT, its text, the
``/tracing`` hint; ``Error during the last asynchronous operation.`` for an asynchronous one) and
raises :class:`ThrownError` — the sample's ``throw(hr)``, which ends the process with exit code 2.

The cluster's state is the :class:`~vssim.requester.state_file.StateStore`'s: ``Initialize``
(``CreateVssBackupComponents``) takes its lock, so concurrent vshadow processes take turns as
requesters on one cluster do. Shadow copies of CSVs are visible from every node; shadow copies of
a node's own volumes only on that node.

Creation (:mod:`vssim.requester.vshadow_create`), restore (:mod:`vssim.requester.vshadow_restore`)
and the break/expose/import/revert/resync commands (:mod:`vssim.requester.vshadow_manage`) build
on this base.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TextIO

from vssim.requester.state_file import StateStore
from vssim.requester.vshadow_select import Selection
from vssim.requester.vshadow_text import (
    CALL_DELETE_ONE,
    CALL_DELETE_SET,
    CALL_GET_SNAPSHOT_PROPERTIES,
    CALL_GET_VOLUME_NAME,
    WAITING,
    com_error,
    snapshot_lines,
    win32_error,
    writer_status_block,
)
from vssim.requester.vshadow_volumes import ERROR_FILE_NOT_FOUND, NodeNamespace
from vssim.scenario import FaultKind, Scenario, braced
from vssim.vss.cluster_state import ClusterState, ShadowCopy
from vssim.vss.enums import HResult, SnapshotAttr, WriterState
from vssim.vss.jobs import BackupResult
from vssim.vss.metadata import Component, WriterMetadata, list_writer, to_xml
from vssim.vss.node_writers import node_writers
from vssim.vss.well_known_ids import CSV_WRITER_ID, HYPERV_WRITER_ID
from vssim.vss.writer_state import WriterEvent, WriterMachine

NULL_GUID = "{00000000-0000-0000-0000-000000000000}"
NO_WRITERS = int(SnapshotAttr.NO_WRITERS)


class ThrownError(Exception):
    """The sample's ``throw(hr)``: vshadow unwinds to ``wmain`` and exits 2."""

    def __init__(self, hr: int) -> None:
        self.hr = hr & 0xFFFFFFFF
        super().__init__(f"0x{self.hr:08x}")


class Console:
    """vshadow's console: its output (``wprintf``), its input (``cin``, ``getchar``), and a side
    channel for vssim's own notes (standard error, so a transcript stays the tool's)."""

    def __init__(self, out: TextIO, err: TextIO, stdin: TextIO | None) -> None:
        self.out = out
        self.err = err
        self.stdin = stdin

    def w(self, *lines: str) -> None:
        for line in lines:
            self.out.write(line + "\n")

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def read_token(self) -> str:
        """``cin >> response``: the next whitespace-delimited word ("" at end of input)."""
        while self.stdin is not None:
            line = self.stdin.readline()
            if not line:
                return ""
            if line.split():
                return line.split()[0]
        return ""

    def read_line(self) -> None:
        """``getchar()`` waiting for ENTER."""
        if self.stdin is not None:
            self.stdin.readline()

    def note(self, text: str) -> None:
        self.err.write(f"vssim: {text}\n")
        self.err.flush()


@dataclass
class GatheredWriter:
    """A writer as GatherWriterMetadata / GatherWriterStatus found it."""

    doc: WriterMetadata
    #: "hyperv", "csv" or "inbox": which writers a scenario's faults can name.
    kind: str
    state: WriterState
    failure: int

    @property
    def identified(self) -> bool:
        return self.state is not WriterState.FAILED_AT_IDENTIFY


class ClientBase:
    """State and calls every vshadow command shares."""

    def __init__(self, scenario: Scenario, node: str, store: StateStore, con: Console) -> None:
        self.sc = scenario
        self.node = scenario.node(node).name
        self.store = store
        self.con = con
        self.ns = NodeNamespace(scenario, self.node)
        self.context = 0
        self.during_restore = False
        self.writers: list[GatheredWriter] = []
        #: The writers vshadow chose from (``m_writerList`` after selection).
        self.selection: Selection | None = None
        # What the commands built on this base remember of the process.
        self.result: BackupResult | None = None
        self.set_id = ""
        self.created: list[ShadowCopy] = []
        self.added: list[tuple[WriterMetadata, Component]] = []
        #: Shadow copies that go when this process exits (not persistent).
        self.live_window: list[ShadowCopy] = []
        self.imported_live: list[ShadowCopy] = []

    # --- the state ----------------------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        return self.store.acquire()

    def visible(self, s: ShadowCopy) -> bool:
        """A CSV's shadow copies are seen from every node; a node's own volumes' only there."""
        return s.csv in self.sc.csv_by_name or s.csv.startswith(self.node + "\\")

    def snapshots(self) -> list[ShadowCopy]:
        return [s for s in self.state.snapshots if self.visible(s)]

    def remove(self, s: ShadowCopy) -> None:
        csv = self.sc.csv_by_name.get(s.csv)
        if s.backend_handle is not None and csv is not None:
            self.state.backend.delete_snapshot(csv, s.backend_handle)
        self.state.snapshots.remove(s)

    # --- Initialize ---------------------------------------------------------------------------

    def initialize(self, context: int) -> None:
        """``VssClient::Initialize`` for backup: the context line when it is not
        ``VSS_CTX_BACKUP``."""
        self.store.acquire()
        if context != 0:
            self.con.w(f"- Setting the VSS context to: 0x{context & 0xFFFFFFFF:08x}")
        self.context = context & 0xFFFFFFFF

    @property
    def with_writers(self) -> bool:
        return not self.context & NO_WRITERS

    # --- writers ------------------------------------------------------------------------------

    def _identify(self) -> list[GatheredWriter]:
        """Every writer of the node answers Identify; a scenario fault can fail the Hyper-V or
        CSV writer there (it then reports no metadata)."""
        out = []
        for d in node_writers(self.sc, self.node):
            kind = {HYPERV_WRITER_ID: "hyperv", CSV_WRITER_ID: "csv"}.get(d.writer_id, "inbox")
            m = WriterMachine(f"{d.name} on {self.node}")
            fault = next(
                (
                    f
                    for f in self.sc.faults
                    if f.kind is FaultKind.WRITER_FAIL
                    and f.phase == "identify"
                    and f.vm is None
                    and (f.node or "").lower() == self.node.lower()
                    and (f.writer or "hyperv") == kind
                ),
                None,
            )
            if fault is None:
                m.send(WriterEvent.IDENTIFY)
            else:
                hr = fault.hresult or HResult.VSS_E_WRITERERROR_NONRETRYABLE
                m.send(WriterEvent.IDENTIFY, ok=False, hr=hr)
            g = GatheredWriter(d, kind, m.state, m.failure)
            kept = self.state.writer_failures.get(failure_key(self.node, d.instance_id))
            if g.identified and kept is not None:
                g.state, g.failure = WriterState(kept[0]), kept[1]
            out.append(g)
        return out

    @property
    def metadata(self) -> list[WriterMetadata]:
        """The writers whose metadata was gathered (one failing Identify reports none)."""
        return [g.doc for g in self.writers if g.identified]

    def gather_writer_metadata(self) -> None:
        """``VssClient::GatherWriterMetadata``."""
        self.con.w("(Gathering writer metadata...)", WAITING)
        self.writers = self._identify()
        self.con.w("Initialize writer metadata ...")

    def gather_writer_metadata_to_screen(self) -> None:
        """``VssClient::GatherWriterMetadataToScreen`` (``-wm3``)."""
        self.con.w("(Gathering writer metadata...)", WAITING)
        self.writers = self._identify()
        for n, doc in enumerate(self.metadata):
            self.con.w("", f"--[Writer {n}]--", to_xml(doc))
        self.con.w("--[end of data]--")

    def gather_writer_status(self) -> None:
        self.con.w(WAITING)

    def list_writer_metadata(self, detailed: bool) -> None:
        self.con.w("Listing writer metadata ...")
        for doc in self.metadata:
            self.con.w(*list_writer(doc, self.ns.volume_of, detailed))

    def list_writer_status(self) -> None:
        """``VssClient::ListWriterStatus``."""
        self.con.w("Listing writer status ...")
        self.con.w(f"- Number of writers that responded: {len(self.writers)}")
        for g in self.writers:
            self.con.w(
                *writer_status_block(
                    '* WRITER "{name}"',
                    g.doc.name,
                    int(g.state),
                    g.failure,
                    braced(g.doc.writer_id),
                    braced(g.doc.instance_id),
                )
            )

    def selected_instances(self) -> set[uuid.UUID]:
        """``IsWriterSelected``: the gathered writers selection did not exclude."""
        if self.selection is None:
            return {g.doc.instance_id for g in self.writers if g.identified}
        return {w.doc.instance_id for w in self.selection.writers if not w.excluded}

    def check_selected_writer_status(self) -> None:
        """``VssClient::CheckSelectedWriterStatus``: the first selected writer in a failed state
        stops vshadow (``E_UNEXPECTED``)."""
        if not self.with_writers:
            return
        self.gather_writer_status()
        chosen = self.selected_instances()
        for g in self.writers:
            if g.doc.instance_id not in chosen or not g.state.is_failed:
                continue
            self.con.w(
                *writer_status_block(
                    "ERROR: Selected writer '{name}' is in failed state!",
                    g.doc.name,
                    int(g.state),
                    g.failure,
                    braced(g.doc.writer_id),
                    braced(g.doc.instance_id),
                )
            )
            raise ThrownError(HResult.E_UNEXPECTED)

    # --- volumes ------------------------------------------------------------------------------

    def unique_volume_name(self, path: str) -> str:
        """``GetUniqueVolumeNameForPath`` without the CSV preparation (``-do=``)."""
        root = self.ns.volume_path_name(path)
        name = self.ns.volume_name_for_mount_point(root)
        if name is None:
            self.con.w(*win32_error(CALL_GET_VOLUME_NAME, ERROR_FILE_NOT_FOUND))
            raise ThrownError(0x80070000 | ERROR_FILE_NOT_FOUND)
        return name

    # --- queries ------------------------------------------------------------------------------

    def query_snapshot_set(self, set_id: str | None) -> None:
        """``VssClient::QuerySnapshotSet`` (``set_id`` None: every shadow copy)."""
        if set_id is None:
            self.con.w("", "Querying all shadow copies in the system ...", "")
        else:
            self.con.w("", f"Querying all shadow copies with the SnapshotSetID {set_id} ...", "")
        snaps = self.snapshots()
        if not snaps:
            if set_id is None:
                self.con.w("", "There are no shadow copies in the system", "")
            return
        for s in snaps:
            if set_id is None or braced_id(s.set_id) == set_id:
                self.con.w(*snapshot_lines(s, self.sc.start))

    def find(self, snapshot_id: str) -> ShadowCopy | None:
        return next((s for s in self.snapshots() if braced_id(s.id) == snapshot_id), None)

    def get_snapshot_properties(self, snapshot_id: str, call: str) -> ShadowCopy:
        s = self.find(snapshot_id)
        if s is None:
            self.con.w(*com_error(call, HResult.VSS_E_OBJECT_NOT_FOUND))
            raise ThrownError(HResult.VSS_E_OBJECT_NOT_FOUND)
        return s

    def print_snapshot(self, snapshot_id: str) -> None:
        """``VssClient::GetSnapshotProperties``."""
        s = self.get_snapshot_properties(snapshot_id, CALL_GET_SNAPSHOT_PROPERTIES)
        self.con.w(*snapshot_lines(s, self.sc.start))

    # --- deletion -----------------------------------------------------------------------------

    def _deleting(self, s: ShadowCopy, volume: str) -> str:
        return (
            f"- Deleting shadow copy {braced_id(s.id)} on {volume} from provider "
            f"{braced_id(s.provider_id)} [0x{s.attributes & 0xFFFFFFFF:08x}]..."
        )

    def delete_all(self) -> None:
        """``VssClient::DeleteAllSnapshots``."""
        snaps = self.snapshots()
        if not snaps:
            self.con.w("", "There are no shadow copies on the system", "")
            return
        for s in snaps:
            self.con.w(self._deleting(s, s.volume_name))
            self.remove(s)
        self.store.save()

    def delete_set(self, set_id: str) -> None:
        """``VssClient::DeleteSnapshotSet``."""
        self.con.w(f"- Deleting shadow copy set {set_id} ...")
        snaps = [s for s in self.snapshots() if braced_id(s.set_id) == set_id]
        if not snaps:
            self._delete_failed(CALL_DELETE_SET)
        for s in snaps:
            self.remove(s)
        self.store.save()

    def delete_one(self, snapshot_id: str) -> None:
        """``VssClient::DeleteSnapshot``."""
        self.con.w(f"- Deleting shadow copy {snapshot_id} ...")
        s = self.find(snapshot_id)
        if s is None:
            self._delete_failed(CALL_DELETE_ONE)
        else:
            self.remove(s)
        self.store.save()

    def delete_oldest(self, volume_arg: str) -> None:
        """``VssClient::DeleteOldestSnapshot``."""
        unique = self.unique_volume_name(volume_arg)
        on_it = [s for s in self.snapshots() if s.volume_name.lower() == unique.lower()]
        if not on_it:
            self.con.w("", "There are no shadow copies on the system", "")
            return
        s = min(on_it, key=lambda x: x.created)
        self.con.w(self._deleting(s, unique))
        self.remove(s)
        self.store.save()

    def _delete_failed(self, call: str) -> None:
        self.con.w(
            "Error while deleting shadow copies...",
            f"- Last shadow copy that could not be deleted: {NULL_GUID}",
            *com_error(call, HResult.VSS_E_OBJECT_NOT_FOUND),
        )
        raise ThrownError(HResult.VSS_E_OBJECT_NOT_FOUND)


def failure_key(node: str, instance_id: uuid.UUID) -> str:
    """The key of a writer's kept failure in ``ClusterState.writer_failures``."""
    return f"{node}|{instance_id}"


def braced_id(text: str) -> str:
    """A stored id (``7a2d…``) as vshadow prints and compares it (``{7a2d…}``)."""
    return text if text.startswith("{") else "{" + text + "}"
