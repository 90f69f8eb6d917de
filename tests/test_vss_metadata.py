"""Names and values match Windows; writer metadata documents follow vshadow's rules (full path,
top level, affected volumes) and render as well-formed XML."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from vssim.errors import VssProtocolError
from vssim.requester.backups import visible_writers
from vssim.requester.vshadow_volumes import NodeNamespace
from vssim.scenario import Scenario
from vssim.vss.enums import (
    BackupType,
    ComponentType,
    HResult,
    RestoreMethod,
    SnapshotAttr,
    SnapshotContext,
    SnapshotState,
    WriterRestore,
    WriterState,
    hresult_hex,
    hresult_name,
)
from vssim.vss.machine import protocol_error
from vssim.vss.metadata import (
    Component,
    DescriptorKind,
    FileDescriptor,
    WriterMetadata,
    expand_environment,
    list_writer,
    to_xml,
)
from vssim.vss.well_known_ids import CSV_WRITER_ID, HYPERV_WRITER_ID
from vssim.vss.writer_state import WriterEvent, WriterPhase
from vssim.vss.writers import csv_metadata, hyperv_metadata


@pytest.mark.parametrize(
    ("value", "name", "number"),
    [
        (WriterState.STABLE, "VSS_WS_STABLE", 1),
        (WriterState.FAILED_AT_FREEZE, "VSS_WS_FAILED_AT_FREEZE", 9),
        (WriterState.FAILED_AT_BACKUPSHUTDOWN, "VSS_WS_FAILED_AT_BACKUPSHUTDOWN", 15),
        (BackupType.COPY, "VSS_BT_COPY", 5),
        (ComponentType.FILEGROUP, "VSS_CT_FILEGROUP", 2),
        (SnapshotContext.APP_ROLLBACK, "VSS_CTX_APP_ROLLBACK", 9),
        (SnapshotContext.CLIENT_ACCESSIBLE, "VSS_CTX_CLIENT_ACCESSIBLE", 29),
        (SnapshotState.POSTCOMMITTED, "VSS_SS_POSTCOMMITTED", 15),
    ],
)
def test_enum_names_and_values(value: object, name: str, number: int) -> None:
    assert str(value) == name
    assert int(value) == number


def test_hresults() -> None:
    assert HResult.VSS_E_BAD_STATE == 0x80042301
    assert HResult.VSS_E_WRITERERROR_TIMEOUT == 0x800423F2
    assert HResult.VSS_E_WRITERERROR_PARTIAL_FAILURE == 0x80042336
    assert HResult.VSS_E_CLUSTER_ERROR == 0x80042400
    assert HResult.VSS_E_WRITER_STATUS_NOT_AVAILABLE == 0x80042409
    assert hresult_name(0x80042313) == "VSS_E_FLUSH_WRITES_TIMEOUT"
    assert hresult_name(0x12345678) == "0x12345678"
    assert hresult_hex(HResult.VSS_E_BAD_STATE) == "0x80042301"
    assert SnapshotAttr(SnapshotContext.NAS_ROLLBACK) == (
        SnapshotAttr.PERSISTENT | SnapshotAttr.NO_AUTO_RELEASE | SnapshotAttr.NO_WRITERS
    )
    assert not SnapshotContext.FILE_SHARE_BACKUP.with_writers
    assert SnapshotContext.BACKUP.with_writers


def test_protocol_error_can_be_rebuilt_from_its_args() -> None:
    e = protocol_error("writer", WriterPhase.IDLE, WriterEvent.THAW)
    again = type(e)(*e.args)
    assert isinstance(again, VssProtocolError)
    assert (again.hresult, again.role, again.state, again.event, str(again)) == (
        e.hresult,
        e.role,
        e.state,
        e.event,
        str(e),
    )


def _c(name: str, logical: str = "", selectable: bool = True) -> Component:
    return Component(name=name, logical_path=logical, selectable=selectable)


def test_full_path_and_top_level() -> None:
    parent, child, other = _c("db"), _c("log", "db"), _c("dbx")
    assert parent.full_path == "\\db"
    assert child.full_path == "\\db\\log"
    assert parent.is_ancestor_of(child)
    assert not other.is_ancestor_of(child)
    assert not parent.is_ancestor_of(other)
    w = WriterMetadata(
        "W",
        uuid.uuid4(),
        uuid.uuid4(),
        restore_method=RestoreMethod.UNDEFINED,
        restore_conditions=WriterRestore.NEVER,
        components=(parent, child, other),
    )
    assert [w.top_level(c) for c in (parent, child, other)] == [True, False, True]


def test_writers_of_the_seed(seed2012: Scenario, seed2008: Scenario) -> None:
    hv = hyperv_metadata(seed2012, "e8920-nd2")
    assert hv.writer_id == HYPERV_WRITER_ID
    assert hv.node == "E8920-ND2"
    assert {c.vm_guid for c in hv.components} == {
        v.guid for v in seed2012.vms if v.node == "E8920-ND2"
    }
    csvw = csv_metadata(seed2012, "E8920-ND2")
    assert csvw.writer_id == CSV_WRITER_ID
    assert not csvw.supports_restore_events
    assert len(csvw.components) == len(seed2012.vms) - len(hv.components)
    assert all(c.selectable and csvw.top_level(c) for c in csvw.components)
    names = [d.name for d in visible_writers(seed2008, "E8920-ND1")]
    assert "Cluster Shared Volume VSS Writer" not in names
    assert "Microsoft Hyper-V VSS Writer" in names
    assert len(visible_writers(seed2012, "E8920-ND1")) == len(names) + 1
    vm6 = next(v for v in seed2012.vms if v.name.endswith("06"))
    cap = {c.vm_guid: c.caption for c in hyperv_metadata(seed2012, vm6.node).components}
    assert cap[vm6.guid] == "Backup Using Saved State\\W808-Build8370-06"


def _writer(*components: Component) -> WriterMetadata:
    return WriterMetadata(
        "W",
        uuid.UUID(int=1),
        uuid.UUID(int=2),
        restore_method=RestoreMethod.CUSTOM,
        restore_conditions=WriterRestore.NEVER,
        components=components,
    )


def test_listing(seed2012: Scenario) -> None:
    ns = NodeNamespace(seed2012, "E8920-ND1")
    w = csv_metadata(seed2012, "E8920-ND1")
    lines = list_writer(w, ns.volume_of, detailed=True)
    assert lines[1] == '* WRITER "Cluster Shared Volume VSS Writer"'
    vol = seed2012.csvs[0]
    assert f"         - {vol.volume_name} [{vol.display_name}]" in lines
    short = list_writer(w, ns.volume_of, detailed=False)
    assert not any("File List" in x for x in short)
    assert len(short) < len(lines)
    outside = Component("x", files=(FileDescriptor("D:\\data\\", "*"),))
    assert "         - D:\\data\\ [Not valid for local machine]" in list_writer(
        _writer(outside), ns.volume_of, detailed=False
    )


def test_affected_paths_are_expanded_once_each_and_sorted(seed2012: Scenario) -> None:
    """writer.cpp VssComponent::Initialize: ExpandEnvironmentStrings, FindStringInList (any
    case), sort; the recursive flag is never printed (the sample never stores it)."""
    c = Component(
        "c",
        files=(
            FileDescriptor("%SystemRoot%\\system32", "a.dll", recursive=True),
            FileDescriptor("%systemroot%\\SYSTEM32", "b.dll"),
            FileDescriptor("%SystemRoot%\\Boot", "*"),
            FileDescriptor("%NoSuchVar%\\x", "*", kind=DescriptorKind.DATABASE),
        ),
    )
    assert c.affected_paths() == ["%NoSuchVar%\\x", "C:\\Windows\\Boot", "C:\\Windows\\system32"]
    ns = NodeNamespace(seed2012, "E8920-ND1")
    lines = list_writer(_writer(c), ns.volume_of, detailed=True)
    assert "       - File List: Path = %SystemRoot%\\system32, Filespec = a.dll" in lines
    assert "       - Database: Path = %NoSuchVar%\\x, Filespec = *" in lines
    assert not any("Recursive" in x for x in lines)
    system = seed2012.local_volumes("E8920-ND1")[1]
    vols = [x for x in lines if x.startswith("         - \\\\?")]
    assert vols == [f"         - {system.volume_name} [C:\\]"]
    assert expand_environment("%ALLUSERSPROFILE%\\x") == "C:\\ProgramData\\x"


def test_xml_has_the_shape_of_real_writer_metadata(seed2012: Scenario) -> None:
    """IVssExamineWriterMetadata::SaveAsXML: WRITER_METADATA version 1.1 in the
    VssWriterMetadataInfo schema; IDENTIFICATION, BACKUP_LOCATIONS with FILE_GROUP/DATABASE and
    FILE_LIST/DATABASE_FILES children, RESTORE_METHOD; GUIDs without braces; yes/no."""
    ns = "{x-schema:#VssWriterMetadataInfo}"
    w = csv_metadata(seed2012, "E8920-ND1")
    text = to_xml(w)
    assert "\n" not in text
    root = ET.fromstring(text)
    assert root.tag == ns + "WRITER_METADATA"
    assert root.get("version") == "1.1"
    ident = root.find(ns + "IDENTIFICATION")
    assert ident is not None
    assert ident.get("writerId") == str(CSV_WRITER_ID)
    assert ident.get("friendlyName") == "Cluster Shared Volume VSS Writer"
    assert ident.get("usage") == "SYSTEM_SERVICE"
    groups = root.findall(f"{ns}BACKUP_LOCATIONS/{ns}FILE_GROUP")
    assert len(groups) == len(w.components)
    assert groups[0].get("selectable") == "yes"
    files = groups[0].findall(ns + "FILE_LIST")
    assert files[0].get("filespecBackupType") == "3855"
    method = root.find(ns + "RESTORE_METHOD")
    assert method is not None
    assert method.get("writerRestore") == "never"
    db = Component(
        "ntds",
        logical_path="C:_Windows_NTDS",
        type=ComponentType.DATABASE,
        selectable=False,
        files=(
            FileDescriptor("C:\\Windows\\NTDS", "ntds.dit", kind=DescriptorKind.DATABASE),
            FileDescriptor("C:\\Windows\\NTDS", "edb*.log", kind=DescriptorKind.DATABASE_LOG),
        ),
    )
    root = ET.fromstring(to_xml(_writer(db)))
    (e,) = root.findall(f"{ns}BACKUP_LOCATIONS/{ns}DATABASE")
    assert e.get("logicalPath") == "C:_Windows_NTDS"
    assert [c.tag.removeprefix(ns) for c in e] == ["DATABASE_FILES", "DATABASE_LOGFILES"]
    assert root.find(ns + "RESTORE_METHOD").get("method") == "CUSTOM"  # type: ignore[union-attr]
