"""Names and values match Windows; writer metadata documents follow vshadow's rules (full path,
top level, affected volumes) and render as well-formed XML."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from vssim.errors import VssProtocolError
from vssim.requester.backups import visible_writers
from vssim.requester.vshadow_select import volume_resolver
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
from vssim.vss.metadata import Component, FileDescriptor, WriterMetadata, list_writer, to_xml
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
    assert [d.name for d in visible_writers(seed2008, "E8920-ND1")] == [
        "Microsoft Hyper-V VSS Writer"
    ]
    vm6 = next(v for v in seed2012.vms if v.name.endswith("06"))
    cap = {c.vm_guid: c.caption for c in hyperv_metadata(seed2012, vm6.node).components}
    assert cap[vm6.guid] == "Backup Using Saved State\\W808-Build8370-06"


def test_listing_and_xml(seed2012: Scenario) -> None:
    w = csv_metadata(seed2012, "E8920-ND1")
    lines = list_writer(w, volume_resolver(seed2012), detailed=True)
    assert lines[1] == '* WRITER "Cluster Shared Volume VSS Writer"'
    vol = seed2012.csvs[0]
    assert f"         - {vol.volume_name} [{vol.display_name}]" in lines
    short = list_writer(w, volume_resolver(seed2012), detailed=False)
    assert not any("File List" in x for x in short)
    assert len(short) < len(lines)
    root = ET.fromstring(to_xml(w))
    comps = [e for e in root if e.tag.endswith("COMPONENT")]
    assert len(comps) == len(w.components)
    assert comps[0].get("componentType") == "filegroup"
    outside = Component("x", files=(FileDescriptor("D:\\data\\", "*"),))
    wx = WriterMetadata(
        "W",
        uuid.uuid4(),
        uuid.uuid4(),
        restore_method=RestoreMethod.UNDEFINED,
        restore_conditions=WriterRestore.NEVER,
        components=(outside,),
    )
    assert "         - D:\\data\\ [Not valid for local machine]" in list_writer(
        wx, volume_resolver(seed2012), detailed=False
    )
