"""vshadow's output text: every line the tool prints, as the VSS_SERVER build of the SDK sample
formats it (``shadow.cpp``, ``vssclient.cpp``, ``create.cpp``, ``query.cpp``, ``delete.cpp``,
``writer.cpp``, ``select.cpp``, ``util.h``, ``macros.h``, ``tracing.cpp``), and the usage screen,
whose descriptions are vssim's own words. Pure functions of their inputs;
:mod:`vssim.requester.vshadow_client` and :mod:`vssim.requester.vshadow_tool` print them.

The sample's ``WriteLine`` prints its format followed by a newline, so a format that starts or
ends with ``\\n`` makes an empty line: the functions here return the lines that come out.

Error texts (``FunctionTracer::HResult2String``): the VSS constants the sample knows by name print
their name; any other HRESULT prints what ``FormatMessage`` says of it — the system's text for
Win32 errors (which ends with a line break, so an empty line follows), ``<Unknown error code>``
for everything else (VSS's own codes are not in the system's message table).
"""

from __future__ import annotations

import datetime as dt

from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import SnapshotAttr, WriterState

#: ``tracing.cpp``: the HRESULTs ``HResult2String`` prints by name (``vsserror.h`` values).
HRESULT_NAMES = {
    0x80042301: "VSS_E_BAD_STATE",
    0x80042302: "VSS_E_UNEXPECTED",
    0x80042303: "VSS_E_PROVIDER_ALREADY_REGISTERED",
    0x80042304: "VSS_E_PROVIDER_NOT_REGISTERED",
    0x80042306: "VSS_E_PROVIDER_VETO",
    0x80042307: "VSS_E_PROVIDER_IN_USE",
    0x80042308: "VSS_E_OBJECT_NOT_FOUND",
    0x00042309: "VSS_S_ASYNC_PENDING",
    0x0004230A: "VSS_S_ASYNC_FINISHED",
    0x0004230B: "VSS_S_ASYNC_CANCELLED",
    0x8004230C: "VSS_E_VOLUME_NOT_SUPPORTED",
    0x8004230E: "VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER",
    0x8004230D: "VSS_E_OBJECT_ALREADY_EXISTS",
    0x8004230F: "VSS_E_UNEXPECTED_PROVIDER_ERROR",
    0x80042311: "VSS_E_INVALID_XML_DOCUMENT",
    0x80042312: "VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED",
    0x80042313: "VSS_E_FLUSH_WRITES_TIMEOUT",
    0x80042314: "VSS_E_HOLD_WRITES_TIMEOUT",
    0x80042315: "VSS_E_UNEXPECTED_WRITER_ERROR",
    0x80042316: "VSS_E_SNAPSHOT_SET_IN_PROGRESS",
    0x80042317: "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED",
    0x80042318: "VSS_E_WRITER_INFRASTRUCTURE",
    0x80042319: "VSS_E_WRITER_NOT_RESPONDING",
    0x8004231A: "VSS_E_WRITER_ALREADY_SUBSCRIBED",
    0x8004231B: "VSS_E_UNSUPPORTED_CONTEXT",
    0x8004231D: "VSS_E_VOLUME_IN_USE",
    0x8004231E: "VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED",
    0x8004231F: "VSS_E_INSUFFICIENT_STORAGE",
    0x80042320: "VSS_E_NO_SNAPSHOTS_IMPORTED",
    0x00042321: "VSS_S_SOME_SNAPSHOTS_NOT_IMPORTED",
    0x80042322: "VSS_E_MAXIMUM_NUMBER_OF_REMOTE_MACHINES_REACHED",
    0x80042323: "VSS_E_REMOTE_SERVER_UNAVAILABLE",
    0x80042324: "VSS_E_REMOTE_SERVER_UNSUPPORTED",
    0x80042325: "VSS_E_REVERT_IN_PROGRESS",
    0x80042326: "VSS_E_REVERT_VOLUME_LOST",
    0x80042327: "VSS_E_REBOOT_REQUIRED",
    0x80042328: "VSS_E_TRANSACTION_FREEZE_TIMEOUT",
    0x80042329: "VSS_E_TRANSACTION_THAW_TIMEOUT",
    0x800423F0: "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT",
    0x800423F1: "VSS_E_WRITERERROR_OUTOFRESOURCES",
    0x800423F2: "VSS_E_WRITERERROR_TIMEOUT",
    0x800423F3: "VSS_E_WRITERERROR_RETRYABLE",
    0x800423F4: "VSS_E_WRITERERROR_NONRETRYABLE",
    0x800423F5: "VSS_E_WRITERERROR_RECOVERY_FAILED",
    0x800423F6: "VSS_E_BREAK_REVERT_ID_FAILED",
    0x800423F7: "VSS_E_LEGACY_PROVIDER",
    0x800423F8: "VSS_E_MISSING_DISK",
    0x800423F9: "VSS_E_MISSING_HIDDEN_VOLUME",
    0x800423FA: "VSS_E_MISSING_VOLUME",
    0x800423FB: "VSS_E_AUTORECOVERY_FAILED",
    0x800423FC: "VSS_E_DYNAMIC_DISK_ERROR",
    0x800423FD: "VSS_E_NONTRANSPORTABLE_BCD",
    0x800423FE: "VSS_E_CANNOT_REVERT_DISKID",
    0x800423FF: "VSS_E_RESYNC_IN_PROGRESS",
    0x80042400: "VSS_E_CLUSTER_ERROR",
    0x80042401: "VSS_E_ASRERROR_DISK_ASSIGNMENT_FAILED",
    0x80042402: "VSS_E_ASRERROR_DISK_RECREATION_FAILED",
    0x80042403: "VSS_E_ASRERROR_NO_ARCPATH",
    0x80042404: "VSS_E_ASRERROR_MISSING_DYNDISK",
    0x80042405: "VSS_E_ASRERROR_SHARED_CRIDISK",
    0x80042406: "VSS_E_ASRERROR_DATADISK_RDISK0",
    0x80042407: "VSS_E_ASRERROR_RDISK0_TOOSMALL",
    0x80042408: "VSS_E_ASRERROR_CRITICAL_DISKS_TOO_SMALL",
    0x80042409: "VSS_E_WRITER_STATUS_NOT_AVAILABLE",
    0x8004232A: "VSS_E_UNSELECTED_VOLUME",
    0x8004232B: "VSS_E_SNAPSHOT_NOT_IN_SET",
    0x8004232C: "VSS_E_NESTED_VOLUME_LIMIT",
    0x00000000: "S_OK",
    0x00000001: "S_FALSE",
    0x8000FFFF: "E_UNEXPECTED",
    0x8007000E: "E_OUTOFMEMORY",
}

#: What ``FormatMessage(FORMAT_MESSAGE_FROM_SYSTEM)`` says of the other HRESULTs vssim raises.
SYSTEM_MESSAGES = {
    0x80070002: "The system cannot find the file specified.",
    0x80070003: "The system cannot find the path specified.",
    0x80070005: "Access is denied.",
    0x80070035: "The network path was not found.",
    0x80070057: "The parameter is incorrect.",
    0x8007007B: "The filename, directory name, or volume label syntax is incorrect.",
    0x800700C1: "%1 is not a valid Win32 application.",
    0x8007173D: "Back up is in progress. Please wait for backup completion before trying this "
    "operation again.",
    0x80004002: "No such interface supported",
}

E_INVALIDARG = 0x80070057
E_UNEXPECTED = 0x8000FFFF
E_NOINTERFACE = 0x80004002
VSS_CTX_ALL = 0xFFFFFFFF


def hresult_from_win32(error: int) -> int:
    return 0x80070000 | (error & 0xFFFF) if error else 0


def hresult_text(hr: int) -> list[str]:
    """``HResult2String`` as printed after ``- Error text: ``: one line, or the system's text
    and the empty line its trailing line break makes."""
    hr &= 0xFFFFFFFF
    if hr in HRESULT_NAMES:
        return [HRESULT_NAMES[hr]]
    if hr in SYSTEM_MESSAGES:
        return [SYSTEM_MESSAGES[hr], ""]
    return ["<Unknown error code>"]


def _error_text(hr: int) -> list[str]:
    first, *rest = hresult_text(hr)
    return [f"- Error text: {first}", *rest]


HINT = "- Please re-run VSHADOW.EXE with the /tracing option to get more details"


def com_error(call: str, hr: int) -> list[str]:
    """``CHECK_COM_ERROR`` (``macros.h``): ``call`` is the stringized call, quotes included."""
    return [
        "",
        f"ERROR: COM call {call} failed.",
        f"- Returned HRESULT = 0x{hr & 0xFFFFFFFF:08x}",
        *_error_text(hr),
        HINT,
    ]


def win32_error(call: str, error: int) -> list[str]:
    """``CHECK_WIN32_ERROR`` (``macros.h``)."""
    return [
        "",
        f"ERROR: Win32 call {call} failed.",
        f"- GetLastError() == {error}",
        *_error_text(hresult_from_win32(error)),
        HINT,
    ]


def async_error(hr: int) -> list[str]:
    """``VssClient::WaitAndCheckForAsyncOperation`` when the operation failed."""
    return [
        "Error during the last asynchronous operation.",
        f"- Returned HRESULT = 0x{hr & 0xFFFFFFFF:08x}",
        *_error_text(hr),
        HINT,
    ]


WAITING = "(Waiting for the asynchronous operation to finish...)"

#: The stringized calls of the COM and Win32 calls that can fail on the simulated cluster, as
#: ``CHECK_COM``/``CHECK_WIN32`` print them (whitespace collapsed by the preprocessor; a wide
#: string literal keeps its ``L`` and quotes).
CALL_ADD_TO_SNAPSHOT_SET = (
    '"m_pVssObject->AddToSnapshotSet((LPWSTR)volume.c_str(), GUID_NULL, &SnapshotID)"'
)
CALL_GET_SNAPSHOT_PROPERTIES = '"m_pVssObject->GetSnapshotProperties(snapshotID, &Snap)"'
CALL_DELETE_SET = (
    'L"m_pVssObject->DeleteSnapshots(snapshotSetID, VSS_OBJECT_SNAPSHOT_SET,FALSE,&lSnapshots,'
    '&idNonDeleted)"'
)
CALL_DELETE_ONE = (
    'L"m_pVssObject->DeleteSnapshots(snapshotID, VSS_OBJECT_SNAPSHOT,FALSE,&lSnapshots,'
    '&idNonDeleted)"'
)
CALL_INITIALIZE_FOR_RESTORE = '"m_pVssObject->InitializeForRestore(CComBSTR(xmlDoc.c_str()))"'
CALL_INITIALIZE_FOR_BACKUP_XML = '"m_pVssObject->InitializeForBackup(CComBSTR(xmlDoc.c_str()))"'
CALL_CLUSTER_PREPARE = '"ClusterPrepareSharedVolumeForBackup"'
CALL_CREATE_FILE = 'L"CreateFile"'
CALL_GET_VOLUME_PATH_NAME = (
    '"GetVolumePathNameW((LPCWSTR)path.c_str(), WString2Buffer(volumeRootPath), '
    '(DWORD)volumeRootPath.length())"'
)
CALL_GET_VOLUME_NAME = (
    '"GetVolumeNameForVolumeMountPointW((LPCWSTR)volumeRootPath.c_str(), '
    'WString2Buffer(volumeUniqueName), (DWORD)volumeUniqueName.length())"'
)
CALL_GET_ROOT_AND_PREFIX = (
    '"lvssObject4->GetRootAndLogicalPrefixPaths((VSS_PWSZ)path.c_str(), &pwszVolumeUniqueName, '
    '&pwszVolumeRootPath)"'
)
CALL_CREATE_PROCESS = (
    '"CreateProcess( NULL, (LPWSTR)execCommand.c_str(), NULL, NULL, FALSE, 0, NULL, NULL, &si, '
    '&pi )"'
)
CALL_BREAK = '"m_pVssObject->BreakSnapshotSet(snapshotSetID)"'
CALL_BREAK_EX = '"pVssObjectEx->BreakSnapshotSetEx(snapshotSetID, dwBreakExFlags, &pAsync)"'
CALL_EXPOSE_LOCAL = (
    '"m_pVssObject->ExposeSnapshot(snapshotID, NULL, VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY, '
    '(VSS_PWSZ)path.c_str(), &pwszExposed)"'
)
CALL_EXPOSE_REMOTE = (
    '"m_pVssObject->ExposeSnapshot(snapshotID, pwszPathFromRoot, '
    'VSS_VOLSNAP_ATTR_EXPOSED_REMOTELY, (VSS_PWSZ)shareName.c_str(), &pwszExposed)"'
)
CALL_QUERY_EX3 = (
    '"m_pVssObject->QueryInterface(__uuidof(IVssBackupComponentsEx3), (void**)&pVssObjectEx3)"'
)
CALL_ADD_RECOVERY_TO = (
    '"pVssObjectEx3->AddSnapshotToRecoverySet( pair->first, 0, (PWCHAR)pair->second.c_str() )"'
)
CALL_ADD_RECOVERY = '"pVssObjectEx3->AddSnapshotToRecoverySet( pair->first, 0 )"'
CALL_RECOVER_SET = '"pVssObjectEx3->RecoverSet(dwResyncFlags, &pAsync)"'


def banner(os_name: str, cluster: str, node: str) -> list[str]:
    """``wmain``'s banner. The first line is the tool's (scripts match it); the second is vssim's
    own: this is a simulation, not Microsoft's program."""
    return [
        "",
        "VSHADOW.EXE 3.0 - Volume Shadow Copy sample client.",
        f"vssim simulation of the SDK sample (not Microsoft's program): {os_name} cluster "
        f"{cluster}, node {node}.",
        "",
        "",
    ]


#: ``PrintUsage`` (VSS_SERVER build): the same options, groups and order; the descriptions are
#: vssim's words, and say where the simulation differs.
USAGE_LINES = [
    "Usage:",
    "   VSHADOW [optional flags] [commands]",
    "",
    "List of optional flags:",
    "  -?                 - Show this screen",
    "  -p                 - Work with persistent shadow copies (kept after VSHADOW exits)",
    "  -nw                - Work with shadow copies made without the writers",
    "  -nar               - Make shadow copies without auto-recovery",
    "  -tr                - Make TxF-recovered shadow copies (no TxF on simulated volumes)",
    "  -ad                - Make differential hardware shadow copies",
    "  -ap                - Make plex hardware shadow copies (no simulated provider makes them)",
    "  -scsf              - Make client-accessible shadow copies (Shadow Copies for Shared",
    "                       Folders)",
    "  -t={file.xml}      - Make a transportable shadow set and save its backup components doc",
    "  -bc={file.xml}     - Save the backup components doc of a non-transportable shadow set",
    "  -wi={Writer Name}  - Check that this writer or writer:component ends up included",
    "  -wx={Writer Name}  - Leave this writer or writer:component out of a shadow set or restore",
    "  -mask              - Flag for -bex: mask the shadow copy LUNs from the system",
    "  -rw                - Flag for -bex: make the shadow copy LUNs read-write",
    "  -forcerevert       - Flag for -bex: break only if every disk signature can be reverted",
    "  -norevert          - Flag for -bex: keep the shadow copies' disk signatures",
    "  -revertsig         - Resync: give the destination the original disk's signature",
    "  -novolcheck        - Resync: do not check for unselected volumes (they are overwritten)",
    "  -script={file.cmd} - Write a CMD script that SETs the shadow set's ids and devices",
    "  -exec={command}    - Run this file after the shadow copies exist (or after an import, or",
    "                       between a break and making the volumes writable); no parameters",
    "  -wait              - Wait for ENTER before exiting (or before making volumes writable)",
    "  -tracing           - Verbose diagnostics (the simulation prints no call trace)",
    "",
    "",
    "List of commands:",
    "  {volume list}                   - Make a shadow set of these volumes",
    "  -ws                             - Show the writers' status",
    "  -wm                             - Show the writers' metadata, in short",
    "  -wm2                            - Show the writers' metadata, in full",
    "  -wm3                            - Show the writers' metadata as raw XML",
    "  -q                              - List every shadow copy",
    "  -qx={SnapSetID}                 - List the shadow copies of one set",
    "  -s={SnapID}                     - List one shadow copy",
    "  -da                             - Delete every shadow copy (asks first)",
    "  -do={volume}                    - Delete the oldest shadow copy of a volume",
    "  -dx={SnapSetID}                 - Delete the shadow copies of one set",
    "  -ds={SnapID}                    - Delete one shadow copy",
    "  -i={file.xml}                   - Import a transportable shadow set",
    "  -b={SnapSetID}                  - Break a shadow set into read-only volumes",
    "  -bw={SnapSetID}                 - Break a shadow set into writable volumes",
    "  -bex={SnapSetID}                - Break with BreakSnapshotSetEx and the flags above",
    "  -el={SnapID},dir                - Expose a shadow copy as a mount point",
    "  -el={SnapID},drive              - Expose a shadow copy as a drive letter",
    "  -er={SnapID},share              - Expose a shadow copy as a network share",
    "  -er={SnapID},share,path         - Expose a folder of a shadow copy as a share",
    "  -r={file.xml}                   - Restore from a saved backup components doc",
    "  -rs={file.xml}                  - Rehearse a restore from a saved backup components doc",
    "  -revert={SnapID}                - Revert a volume to one of its shadow copies",
    "  -addresync={SnapID},drive       - Resync a shadow copy to this volume",
    "  -addresync={SnapID}             - Resync a shadow copy to its original volume",
    "  -resync=bcd.xml                 - Resync with this backup components doc",
    "",
    "",
    "Examples:",
    "",
    " - A shadow set of C: and E: released when VSHADOW exits",
    "     VSHADOW C: E:",
    "",
    " - A shadow set of the Cluster Shared Volume Volume1",
    "     VSHADOW C:\\ClusterStorage\\Volume1",
    "",
    " - A persistent shadow copy of C:, writers left out",
    "     VSHADOW -p -nw C:",
    "",
    " - A transportable shadow copy of X:",
    "     VSHADOW -t=file1.xml X:",
    "",
    " - Importing it",
    "     VSHADOW -i=file1.xml",
    "",
    " - Every shadow copy of the cluster",
    "     VSHADOW -q",
    "",
    "The vssim README's vshadow section says what the simulation honours and what it refuses.",
    "",
    "",
    "",
]


def vss_time(start: dt.datetime, seconds: float) -> str:
    """``VssTimeToString`` in the en-US locale: ``6/1/2012 9:00:55 AM``."""
    t = start + dt.timedelta(seconds=seconds)
    hour = t.hour % 12 or 12
    return f"{t.month}/{t.day}/{t.year} {hour}:{t.minute:02d}:{t.second:02d} " + (
        "AM" if t.hour < 12 else "PM"
    )


def attribute_words(attrs: int) -> str:
    """``PrintSnapshotProperties``' attribute list (each word with a leading space)."""
    a = SnapshotAttr(attrs)
    words = []
    if a & SnapshotAttr.TRANSPORTABLE:
        words.append("Transportable")
    words.append("No_Auto_Release" if a & SnapshotAttr.NO_AUTO_RELEASE else "Auto_Release")
    for flag, word in (
        (SnapshotAttr.PERSISTENT, "Persistent"),
        (SnapshotAttr.CLIENT_ACCESSIBLE, "Client_accessible"),
        (SnapshotAttr.HARDWARE_ASSISTED, "Hardware"),
        (SnapshotAttr.NO_WRITERS, "No_Writers"),
        (SnapshotAttr.IMPORTED, "Imported"),
        (SnapshotAttr.PLEX, "Plex"),
        (SnapshotAttr.DIFFERENTIAL, "Differential"),
    ):
        if a & flag:
            words.append(word)
    return "".join(" " + w for w in words)


_STATE_NAMES = {
    s for s in WriterState if s not in (WriterState.UNKNOWN, WriterState.FAILED_AT_BACKUPSHUTDOWN)
}


def writer_state_text(state: int) -> tuple[list[str], str]:
    """``VssClient::GetStringFromWriterStatus``: the constant's name — or, for a state its switch
    has no case for (``VSS_WS_UNKNOWN``, ``VSS_WS_FAILED_AT_BACKUPSHUTDOWN``), the line
    ``Unknown constant: <n>`` it prints first and ``Undefined``."""
    try:
        s = WriterState(state)
    except ValueError:
        s = None
    if s is not None and s in _STATE_NAMES:
        return [], str(s)
    return [f"Unknown constant: {state}"], "Undefined"


def writer_status_block(
    header: str,
    name: str,
    state: int,
    failure: int,
    writer_id: str,
    instance_id: str,
) -> list[str]:
    """The status block of ``ListWriterStatus`` (``header`` = ``* WRITER "<name>"``) and of
    ``CheckSelectedWriterStatus`` (``ERROR: Selected writer '<name>' is in failed state!``). The
    two text conversions run before the block is printed, so an ``Unknown constant`` line comes
    first."""
    before, state_name = writer_state_text(state)
    first, *rest = hresult_text(failure)
    failure_line = f"   - Writer Failure code: 0x{failure & 0xFFFFFFFF:08x} ({first}"
    # A system message's line break falls inside the parentheses.
    failure_lines = [failure_line + ")"] if not rest else [failure_line, ")"]
    return [
        *before,
        "",
        header.format(name=name),
        f"   - Status: {state} ({state_name})",
        *failure_lines,
        f"   - Writer ID: {writer_id}",
        f"   - Instance ID: {instance_id}",
        "",
    ]


def snapshot_lines(s: ShadowCopy, start: dt.datetime) -> list[str]:
    """``VssClient::PrintSnapshotProperties`` for one shadow copy."""
    out = [
        f"* SNAPSHOT ID = {{{s.id}}} ...",
        f"   - Shadow copy Set: {{{s.set_id}}}",
        f"   - Original count of shadow copies = {s.count}",
        f"   - Original Volume name: {s.volume_name} [{s.mount_point}]",
        f"   - Creation Time: {vss_time(start, s.created)}",
        f"   - Shadow copy device name: {device_name(s)}",
        f"   - Originating machine: {s.originating_machine}",
        f"   - Service machine: {s.service_machine}",
    ]
    if s.attributes & SnapshotAttr.EXPOSED_LOCALLY:
        out.append(f"   - Exposed locally as: {s.exposed_name}")
    elif s.attributes & SnapshotAttr.EXPOSED_REMOTELY:
        out.append(f"   - Exposed remotely as {s.exposed_name}")
        if s.exposed_path:
            out.append(f"   - Path exposed: {s.exposed_path}")
    else:
        out.append("   - Not Exposed")
    out += [
        f"   - Provider id: {{{s.provider_id}}}",
        f"   - Attributes: {attribute_words(s.attributes)}",
        "",
    ]
    return out


def device_name(s: ShadowCopy) -> str:
    return f"\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy{s.device}"


def setvar_script(set_id: str, copies: list[ShadowCopy], transportable: bool) -> str:
    """``VssClient::GenerateSetvarScript``: ``SET SHADOW_SET_ID``, ``SET SHADOW_ID_n`` and, unless
    the set is transportable, ``SET SHADOW_DEVICE_n``. Written in text mode on Windows: CRLF."""
    lines = [
        "@echo.",
        f"@echo [This script is generated by VSHADOW.EXE for the shadow set {set_id}]",
        "@echo.",
        "",
        f"SET SHADOW_SET_ID={set_id}",
    ]
    for n, c in enumerate(copies, start=1):
        lines.append(f"SET SHADOW_ID_{n}={{{c.id}}}")
        if not transportable:
            lines.append(f"SET SHADOW_DEVICE_{n}={device_name(c)}")
    return "\r\n".join(lines) + "\r\n"
