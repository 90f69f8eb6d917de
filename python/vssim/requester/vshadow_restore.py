"""Restore from a backup components document (``shadow.cpp``'s ``-r=``/``-rs=``,
``writer.cpp``'s ``InitializeWriterComponentsForRestore``, ``PreRestore``, ``PostRestore``,
``select.cpp``'s ``SelectComponentsForRestore`` and ``SetFileRestoreStatus``) on the simulated
cluster.

vshadow restores no data itself: it selects the document's components whose writer runs on this
node (matched by writer id, so a document made on one node restores through another node's
Hyper-V writer), leaves out writers that do not take restore events — the CSV VSS Writer, whose
VMs are restored through their own node's Hyper-V writer — and sends PreRestore and PostRestore;
the files are put back by the ``-exec`` command in between. That is what vssim does too; the
simulated writers accept both events. The restore context is ``VSS_CTX_ALL``, whose bits include
``VSS_VOLSNAP_ATTR_NO_WRITERS``, so the sample's writer-status checks return at once here.
"""

from __future__ import annotations

from vssim.requester.vshadow_bcdoc import BackupComponents, InvalidDocumentError, parse
from vssim.requester.vshadow_client import ClientBase, ThrownError
from vssim.requester.vshadow_select import Comp, SelectionError, Writer, select_for_restore
from vssim.requester.vshadow_text import (
    CALL_INITIALIZE_FOR_RESTORE,
    VSS_CTX_ALL,
    WAITING,
    com_error,
)
from vssim.scenario import braced
from vssim.vss.enums import HResult


class Restore(ClientBase):
    """``VssClient``'s restore calls."""

    doc: BackupComponents | None = None

    def initialize_for_restore(self, xml: str) -> None:
        """``Initialize(VSS_CTX_ALL, xml, true)``: ``InitializeForRestore`` (no context line)."""
        self.store.acquire()
        try:
            self.doc = parse(xml)
        except InvalidDocumentError:
            self.con.w(*com_error(CALL_INITIALIZE_FOR_RESTORE, HResult.VSS_E_INVALID_XML_DOCUMENT))
            raise ThrownError(HResult.VSS_E_INVALID_XML_DOCUMENT) from None
        self.context = VSS_CTX_ALL
        self.during_restore = True

    def initialize_writer_components_for_restore(self) -> None:
        """Each writer of the document that runs here (same writer id), with the document's
        components."""
        assert self.doc is not None
        self.con.w("Initializing writer components for restore ...")
        self.restore_writers: list[Writer] = []
        for dw in self.doc.writers:
            found = False
            for doc in self.metadata:
                if doc.writer_id != dw.writer_id:
                    continue
                self.con.w(
                    f"- Writer {doc.name} is present in the Backup Components document and on the "
                    "system. Considering for restore ..."
                )
                comps = [c.as_component() for c in dw.components]
                for c in comps:
                    self.con.w(f'- Found component available for restore: "{c.full_path}"')
                # The document's components carry no hierarchy for the sample: none is top level
                # or selectable for it, and none matters here.
                self.restore_writers.append(Writer(doc, [Comp(c, False) for c in comps]))
                found = True
            if not found:
                self.con.w(
                    f"- Writer with ID {braced(dw.writer_id)} is not present in the system! "
                    "Ignoring ..."
                )

    def select_components_for_restore(self, excluded: list[str], included: list[str]) -> None:
        try:
            sel = select_for_restore(self.restore_writers, excluded, included)
        except SelectionError as e:
            self.con.w(*e.lines)
            raise ThrownError(e.hresult) from None
        self.con.w(*sel.lines)

    def pre_restore(self) -> None:
        self.con.w("", "Sending the PreRestore event ... ", "", WAITING)

    def post_restore(self) -> None:
        self.con.w("", "Sending the PostRestore event ... ", "", WAITING)

    def set_file_restore_status(self) -> None:
        """``SetFileRestoreStatus``: all or nothing, for every component still selected."""
        self.con.w("Set restore status for all components components for restore...")
        for w in self.restore_writers:
            if w.excluded:
                continue
            self.con.w(f" * Writer '{w.doc.name}':")
            self.con.w(*(f"   - Select component {c.full_path}" for c in w.comps if not c.excluded))
