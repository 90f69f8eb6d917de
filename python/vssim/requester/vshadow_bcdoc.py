"""The backup components document vshadow saves with ``-bc=``/``-t=`` and reads back for
``-r=``/``-rs=``/``-i=``/``-resync=``: ``IVssBackupComponents::SaveAsXML`` in the shape of VSS's
``VssComponentMetadata`` documents (``BACKUP_COMPONENTS`` → ``WRITER_COMPONENTS`` → ``COMPONENT``,
and the shadow copy set: ``SNAPSHOT_SET_DESCRIPTION`` → ``SNAPSHOT_DESCRIPTION``).

The file is what the sample's ``WriteFile`` (``util.h``) writes: the document's UTF-16LE code
units, no byte-order mark, followed by the terminating NUL character; ``ReadFileContents`` reads a
file back the same way (a BSTR ends at its first NUL).

vshadow saves the document right after ``DoSnapshotSet``, before ``SetBackupSucceeded`` — so each
component says ``backupSucceeded="no"``, as in a real vshadow document.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import BackupType, ComponentType
from vssim.vss.metadata import Component, WriterMetadata

NAMESPACE = "x-schema:#VssComponentMetadata"


def _attr(name: str, value: str) -> str:
    escaped = (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
    return f' {name}="{escaped}"'


def _bare(text: str) -> str:
    return text.strip("{}").lower()


def document(
    set_id: str,
    context: int,
    backup_type: BackupType,
    components: list[tuple[WriterMetadata, Component]],
    copies: list[ShadowCopy],
) -> str:
    """The document of one shadow copy set and the components added to it."""
    out = [
        f'<BACKUP_COMPONENTS xmlns="{NAMESPACE}" version="1.2"'
        + _attr("bootableSystemStateBackup", "yes")
        + _attr("selectComponents", "yes")
        + _attr("backupType", backup_type.name.lower())
        + _attr("partialFileSupport", "no")
        + _attr("snapshotSetId", _bare(set_id))
        + ">"
    ]
    by_writer: dict[uuid.UUID, list[tuple[WriterMetadata, Component]]] = {}
    for w, c in components:
        by_writer.setdefault(w.instance_id, []).append((w, c))
    for items in by_writer.values():
        w = items[0][0]
        out.append(
            "<WRITER_COMPONENTS"
            + _attr("instanceId", str(w.instance_id))
            + _attr("writerId", str(w.writer_id))
            + ">"
        )
        for _, c in items:
            out.append(
                "<COMPONENT"
                + (_attr("logicalPath", c.logical_path) if c.logical_path else "")
                + _attr("componentName", c.name)
                + _attr("componentType", c.type.name.lower())
                + _attr("backupSucceeded", "no")
                + "/>"
            )
        out.append("</WRITER_COMPONENTS>")
    if copies:
        out.append(
            "<SNAPSHOT_SET_DESCRIPTION"
            + _attr("snapshotSetId", _bare(set_id))
            + _attr("context", str(context & 0xFFFFFFFF))
            + ">"
        )
        for s in copies:
            out.append(
                "<SNAPSHOT_DESCRIPTION"
                + _attr("snapshotId", _bare(s.id))
                + _attr("providerId", _bare(s.provider_id))
                + _attr("snapshotAttributes", str(s.attributes))
                + _attr("originatingMachine", s.originating_machine)
                + _attr("serviceMachine", s.service_machine)
                + _attr("originalVolumeName", s.volume_name)
                + "/>"
            )
        out.append("</SNAPSHOT_SET_DESCRIPTION>")
    out.append("</BACKUP_COMPONENTS>")
    return "".join(out)


def file_bytes(xml: str) -> bytes:
    """What ``WriteFile`` writes: UTF-16LE, no BOM, the terminating NUL included."""
    return (xml + "\0").encode("utf-16-le")


def file_text(data: bytes) -> str:
    """What ``ReadFileContents`` reads (as a BSTR: up to the first NUL)."""
    text = data[: len(data) - len(data) % 2].decode("utf-16-le", errors="replace")
    return text.split("\0", 1)[0]


@dataclass(frozen=True)
class DocComponent:
    logical_path: str
    name: str
    type: ComponentType

    def as_component(self) -> Component:
        return Component(name=self.name, logical_path=self.logical_path, type=self.type)


@dataclass(frozen=True)
class DocWriter:
    writer_id: uuid.UUID
    instance_id: uuid.UUID
    components: tuple[DocComponent, ...]


@dataclass(frozen=True)
class DocSnapshot:
    snapshot_id: str
    original_volume: str


@dataclass(frozen=True)
class BackupComponents:
    set_id: str
    writers: tuple[DocWriter, ...]
    snapshots: tuple[DocSnapshot, ...]


class InvalidDocumentError(ValueError):
    """Not a backup components document: ``InitializeForRestore`` fails with
    ``VSS_E_INVALID_XML_DOCUMENT``."""


def _tag(e: ET.Element) -> str:
    return e.tag.split("}", 1)[-1]


def parse(xml: str) -> BackupComponents:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InvalidDocumentError(str(exc)) from None
    if _tag(root) != "BACKUP_COMPONENTS":
        raise InvalidDocumentError(f"root element {_tag(root)}")
    try:
        writers = tuple(
            DocWriter(
                uuid.UUID(w.attrib["writerId"]),
                uuid.UUID(w.attrib["instanceId"]),
                tuple(
                    DocComponent(
                        c.get("logicalPath", ""),
                        c.attrib["componentName"],
                        ComponentType[c.get("componentType", "filegroup").upper()],
                    )
                    for c in w
                    if _tag(c) == "COMPONENT"
                ),
            )
            for w in root
            if _tag(w) == "WRITER_COMPONENTS"
        )
        snapshots = tuple(
            DocSnapshot("{" + d.attrib["snapshotId"] + "}", d.get("originalVolumeName", ""))
            for s in root
            if _tag(s) == "SNAPSHOT_SET_DESCRIPTION"
            for d in s
            if _tag(d) == "SNAPSHOT_DESCRIPTION"
        )
    except (KeyError, ValueError) as exc:
        raise InvalidDocumentError(str(exc)) from None
    return BackupComponents("{" + root.get("snapshotSetId", "") + "}", writers, snapshots)
