"""Every line vshadow.exe can print, transcribed from the SDK sample's format strings
(microsoft/Windows-classic-samples, ``Samples/VShadowVolumeShadowCopy/cpp/``, the VSS_SERVER
build) — independently of vssim's code, so a golden transcript can be checked line by line
against the tool it imitates. Each entry names where the format is (``file:function``).

A format is the ``WriteLine`` argument; ``\\n`` inside it splits it into several lines (an empty
line where it begins or ends with one). Placeholders: ``%s`` any text, ``%d``/``%u``/``%ld`` a
number, ``0x%08lx`` eight hex digits, ``{GUID}`` (``WSTR_GUID_FMT``) a braced lower-case GUID.
A few lines are not the sample's format strings and say so: vssim's banner line, vssim's usage
prose, the XML ``SaveAsXML`` returns, and the output of an ``-exec`` command.
"""

from __future__ import annotations

import re

GUID = "{GUID}"

FORMATS: list[tuple[str, str]] = [
    # --- shadow.cpp -------------------------------------------------------------------------
    ("shadow.cpp:wmain", "VSHADOW.EXE 3.0 - Volume Shadow Copy sample client."),
    ("shadow.cpp:wmain", "ERROR: Memory allocation error"),
    ("shadow.cpp:MainRoutine", "(Option: Persistent shadow copy)"),
    ("shadow.cpp:MainRoutine", "(Option: No-writers option detected)"),
    ("shadow.cpp:MainRoutine", "(Option: No-auto-recovery option detected)"),
    ("shadow.cpp:MainRoutine", "(Option: TxF-recover option detected)"),
    ("shadow.cpp:MainRoutine", "(Option: Transportable shadow set. Saving xml to file '%s')"),
    ("shadow.cpp:MainRoutine", "(Option: Saving xml to file '%s')"),
    ("shadow.cpp:MainRoutine", "(Option: Creating differential HW shadow copies)"),
    ("shadow.cpp:MainRoutine", "(Option: Creating plex HW shadow copies)"),
    (
        "shadow.cpp:MainRoutine",
        "(Option: Creating Shadow Copies for Shared Folders - Client Accessible)",
    ),
    ("shadow.cpp:MainRoutine", "(Option: Excluding writer/component '%s')"),
    ("shadow.cpp:MainRoutine", "(Option: Verifying inclusion of writer/component '%s')"),
    ("shadow.cpp:MainRoutine", "(Option: Wait on finish)"),
    ("shadow.cpp:MainRoutine", "(Option: Generate SETVAR script '%s')"),
    ("shadow.cpp:MainRoutine", "(Option: Execute binary/script after shadow creation '%s')"),
    ("shadow.cpp:MainRoutine", "ERROR: the parameter '%s' must be an existing file!"),
    ("shadow.cpp:MainRoutine", "- Note: the -exec command cannot have parameters!"),
    ("shadow.cpp:MainRoutine", "(Option: Enable tracing)"),
    ("shadow.cpp:MainRoutine", "(Option: Mask shadow copy luns)"),
    ("shadow.cpp:MainRoutine", "(Option: make readwrite)"),
    ("shadow.cpp:MainRoutine", "(Option: force disk identity revert)"),
    ("shadow.cpp:MainRoutine", "(Option: no disk identity revert)"),
    ("shadow.cpp:MainRoutine", "(Option: Query all shadow copies)"),
    ("shadow.cpp:MainRoutine", "(Option: Query shadow copy set)"),
    ("shadow.cpp:MainRoutine", "(Option: Query shadow copy)"),
    ("shadow.cpp:MainRoutine", "(Option: Delete all shadow copies)"),
    (
        "shadow.cpp:MainRoutine (cout)",
        "This will delete all shadow copies in the system. Are you sure? [Y/N] ",
    ),
    ("shadow.cpp:MainRoutine", "(Option: Delete a shadow copy set)"),
    ("shadow.cpp:MainRoutine", "(Option: Delete a shadow copy)"),
    ("shadow.cpp:MainRoutine", "(Option: List writer metadata)"),
    ("shadow.cpp:MainRoutine", "(Option: List extended writer metadata)"),
    ("shadow.cpp:MainRoutine", "(Option: List writer metadata in XML)"),
    ("shadow.cpp:MainRoutine", "(Option: List writer status)"),
    ("shadow.cpp:MainRoutine", "(Option: Delete the oldest shadow copy for %s)"),
    ("shadow.cpp:MainRoutine", "(revert a shadow copy)"),
    ("shadow.cpp:MainRoutine", "(Option: Break shadow copy set)"),
    ("shadow.cpp:MainRoutine", "(Option: Break shadow copy set as writable)"),
    ("shadow.cpp:MainRoutine", "\nPress <ENTER> to make the volumes writable..."),
    ("shadow.cpp:MainRoutine", "- Making shadow copy devices from {GUID} read-write..."),
    ("shadow.cpp:MainRoutine", "(Option: Break shadow copy set using BreakSnapshotSetEx)"),
    ("shadow.cpp:MainRoutine", "(Option: Expose a shadow copy)"),
    (
        "shadow.cpp:MainRoutine",
        "ERROR: the -el arguments must contain a GUID and a local path separated by a comma.",
    ),
    (
        "shadow.cpp:MainRoutine",
        "ERROR: the -er arguments must contain a GUID, a share name and an optional local path "
        "separated by a comma.",
    ),
    ("shadow.cpp:MainRoutine", "(Option: Import shadow copy set from file '%s')"),
    ("shadow.cpp:MainRoutine", "(Option: Perform a restore)"),
    ("shadow.cpp:MainRoutine", "\nRestore done."),
    ("shadow.cpp:MainRoutine", "(Option: Perform a Simulated restore)"),
    ("shadow.cpp:MainRoutine", "\nRestore simulation done."),
    (
        "shadow.cpp:MainRoutine",
        "(Option: Add snapshot Id for resync to original volume location specified in BCD)",
    ),
    ("shadow.cpp:MainRoutine", "(Option: Add snapshot Id for resync to location: %s)"),
    (
        "shadow.cpp:MainRoutine",
        "(Option: Resync will revert destination to the original disk's signature)",
    ),
    (
        "shadow.cpp:MainRoutine",
        "(Option: novolcheck flag used. Resync will not check for unselected volumes)",
    ),
    ("shadow.cpp:MainRoutine", "Resyncing using source signature as the final disk signature"),
    ("shadow.cpp:MainRoutine", "Resyncing using target signature as the final disk signature"),
    ("shadow.cpp:MainRoutine", "(Option: Create shadow copy set)"),
    ("shadow.cpp:MainRoutine", "\nERROR: invalid parameters %s"),
    (
        "shadow.cpp:MainRoutine",
        "- Parameter %s is expected to be a volume or a file share path!  (shadow copy creation "
        "is assumed)",
    ),
    ("shadow.cpp:MainRoutine", "- Example: VSHADOW C:"),
    ("shadow.cpp:MainRoutine", "\nSnapshot creation done."),
    ("shadow.cpp:MainRoutine", "\nERROR: invalid parameter '%s'\n"),
    ("shadow.cpp:~CommandLineParser", "\nPress <ENTER> to continue..."),
    # --- vssclient.cpp ----------------------------------------------------------------------
    ("vssclient.cpp:VssClient::Initialize", "- Setting the VSS context to: 0x%08lx"),
    (
        "vssclient.cpp:VssClient::WaitAndCheckForAsyncOperation",
        "(Waiting for the asynchronous operation to finish...)",
    ),
    (
        "vssclient.cpp:VssClient::WaitAndCheckForAsyncOperation",
        "Error during the last asynchronous operation.",
    ),
    ("vssclient.cpp:VssClient::WaitAndCheckForAsyncOperation", "- Returned HRESULT = 0x%08lx"),
    ("vssclient.cpp:VssClient::WaitAndCheckForAsyncOperation", "- Error text: %s"),
    (
        "vssclient.cpp:VssClient::WaitAndCheckForAsyncOperation",
        "- Please re-run VSHADOW.EXE with the /tracing option to get more details",
    ),
    # --- create.cpp -------------------------------------------------------------------------
    ("create.cpp:VssClient::CreateSnapshotSet", "Creating shadow set {GUID} ..."),
    ("create.cpp:VssClient::CreateSnapshotSet", "\nList of created shadow copies: \n"),
    ("create.cpp:VssClient::PrepareForBackup", "Preparing for backup ... "),
    ("create.cpp:VssClient::AddToSnapshotSet", "- Adding volume %s [%s] to the shadow set..."),
    ("create.cpp:VssClient::DoSnapshotSet", "Creating the shadow (DoSnapshotSet) ... "),
    ("create.cpp:VssClient::DoSnapshotSet", "Shadow copy set succesfully created."),
    ("create.cpp:VssClient::BackupComplete", "- There were no writer components in this backup"),
    ("create.cpp:VssClient::BackupComplete", "- Mark all writers as succesfully backed up... "),
    (
        "create.cpp:VssClient::BackupComplete",
        "- Backup failed. Mark all writers as not succesfully backed up... ",
    ),
    ("create.cpp:VssClient::BackupComplete", "Completing the backup (BackupComplete) ... "),
    (
        "create.cpp:VssClient::SaveBackupComponentsDocument",
        "Saving the backup components document ... ",
    ),
    ("create.cpp:VssClient::GenerateSetvarScript", "Generating the SETVAR script (%s) ... "),
    (
        "create.cpp:VssClient::ImportSnapshotSet",
        "Importing the transportable snapshot set ... ",
    ),
    ("create.cpp:VssClient::ImportSnapshotSet", "Shadow copy set succesfully imported."),
    # --- query.cpp --------------------------------------------------------------------------
    ("query.cpp:VssClient::QuerySnapshotSet", "\nQuerying all shadow copies in the system ...\n"),
    (
        "query.cpp:VssClient::QuerySnapshotSet",
        "\nQuerying all shadow copies with the SnapshotSetID {GUID} ...\n",
    ),
    ("query.cpp:VssClient::QuerySnapshotSet", "\nThere are no shadow copies in the system\n"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "* SNAPSHOT ID = {GUID} ..."),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Shadow copy Set: {GUID}"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Original count of shadow copies = %d"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Original Volume name: %s [%s]"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Creation Time: %s"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Shadow copy device name: %s"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Originating machine: %s"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Service machine: %s"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Exposed locally as: %s"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Exposed remotely as %s"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Path exposed: %s"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Not Exposed"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Provider id: {GUID}"),
    ("query.cpp:VssClient::PrintSnapshotProperties", "   - Attributes: %s"),
    # --- delete.cpp -------------------------------------------------------------------------
    ("delete.cpp:VssClient::DeleteAllSnapshots", "\nThere are no shadow copies on the system\n"),
    (
        "delete.cpp:VssClient::DeleteAllSnapshots",
        "- Deleting shadow copy {GUID} on %s from provider {GUID} [0x%08lx]...",
    ),
    ("delete.cpp:VssClient::DeleteAllSnapshots", "Error while deleting shadow copies..."),
    (
        "delete.cpp:VssClient::DeleteAllSnapshots",
        "- Last shadow copy that could not be deleted: {GUID}",
    ),
    ("delete.cpp:VssClient::DeleteSnapshotSet", "- Deleting shadow copy set {GUID} ..."),
    ("delete.cpp:VssClient::DeleteSnapshot", "- Deleting shadow copy {GUID} ..."),
    # --- break.cpp --------------------------------------------------------------------------
    ("break.cpp:VssClient::BreakSnapshotSet", "- Calling BreakSnapshotSet on {GUID} ..."),
    ("break.cpp:VssClient::BreakSnapshotSet", "Break done."),
    (
        "break.cpp:VssClient::BreakSnapshotSet",
        "- Making shadow copy devices from {GUID} read-write...",
    ),
    ("break.cpp:VssClient::BreakSnapshotSetEx", "- Calling BreakSnapshotSetEx on {GUID} ..."),
    (
        "break.cpp:VssClient::BreakSnapshotSetEx",
        "- No BreakSnapshotSetEx flags, can use -mask, -rw, -forcerevert, or -norevert",
    ),
    ("break.cpp:VssClient::BreakSnapshotSetEx", "BreakEx done."),
    ("break.cpp:VssClient::AddResyncSet", "Added."),
    ("break.cpp:VssClient::AddResyncSet", "Already added.  Ignoring"),
    ("break.cpp:VssClient::DoResync", "Resync done."),
    ("break.cpp:VssClient::GetSnapshotDevices", "- Will convert %s to read-write ..."),
    (
        "break.cpp:VssClient::MakeVolumesReadWrite",
        "- Clearing read-only flag for volume %s [%s] ...",
    ),
    ("break.cpp:VssClient::MakeVolumesReadWrite", "- Dismounting volume %s ..."),
    # --- expose.cpp -------------------------------------------------------------------------
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "- Exposing shadow copy {GUID} under the path '%s'",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "\nERROR: there is no snapshot with the given ID",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "\nERROR: the snapshot ID identifies a Client Accessible snapshot which cannot be exposed",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "\nERROR: Client-accessible (SFSF) snapshots cannot be exposed.",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "- Checking if '%s' is a valid drive letter ...",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "\nERROR: the second parameter to -el [%s] is a drive letter already in use!",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "- Checking if '%s' is a valid empty directory ...",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "\nERROR: the second parameter to -el [%s] is not a valid directory!",
    ),
    (
        "expose.cpp:VssClient::ExposeSnapshotLocally",
        "\nERROR: the second parameter to -el [%s] is not an empty directory!",
    ),
    ("expose.cpp:VssClient::ExposeSnapshotLocally", "- Shadow copy exposed as '%s'"),
    (
        "expose.cpp:VssClient::ExposeSnapshotRemotely",
        "- Exposing shadow copy {GUID} under the share '%s' (path from root: '%s')",
    ),
    # --- revert.cpp -------------------------------------------------------------------------
    (
        "revert.cpp:VssClient::RevertToSnapshot",
        "- Reverting to shadow copy {GUID} on %s from provider {GUID} [0x%08lx]...",
    ),
    ("revert.cpp:VssClient::RevertToSnapshot", "Revert is not supported on the volume %s"),
    ("revert.cpp:VssClient::RevertToSnapshot", "The shadow copy has been successfully reverted"),
    # --- writer.cpp -------------------------------------------------------------------------
    ("writer.cpp:VssClient::GatherWriterMetadata", "(Gathering writer metadata...)"),
    ("writer.cpp:VssClient::GatherWriterMetadata", "Initialize writer metadata ..."),
    ("writer.cpp:VssClient::GatherWriterMetadataToScreen", "\n--[Writer %u]--"),
    ("writer.cpp:VssClient::GatherWriterMetadataToScreen", "--[end of data]--"),
    (
        "writer.cpp:VssClient::InitializeWriterComponentsForRestore",
        "Initializing writer components for restore ...",
    ),
    (
        "writer.cpp:VssClient::InitializeWriterComponentsForRestore",
        "- Writer %s is present in the Backup Components document and on the system. "
        "Considering for restore ...",
    ),
    (
        "writer.cpp:VssClient::InitializeWriterComponentsForRestore",
        "- Writer with ID %s is not present in the system! Ignoring ...",
    ),
    ("writer.cpp:VssClient::ListWriterMetadata", "Listing writer metadata ..."),
    ("writer.cpp:VssClient::ListWriterStatus", "Listing writer status ..."),
    ("writer.cpp:VssClient::ListWriterStatus", "- Number of writers that responded: %u"),
    (
        "writer.cpp:VssClient::ListWriterStatus",
        '\n* WRITER "%s"\n   - Status: %d (%s)\n   - Writer Failure code: 0x%08lx (%s)\n'
        "   - Writer ID: {GUID}\n   - Instance ID: {GUID}\n",
    ),
    ("writer.cpp:VssClient::PreRestore", "\nSending the PreRestore event ... \n"),
    ("writer.cpp:VssClient::PostRestore", "\nSending the PostRestore event ... \n"),
    ("writer.cpp:VssClient::GetStringFromWriterStatus", "Unknown constant: %d"),
    (
        "writer.cpp:VssWriter::InitializeComponentsForRestore",
        '- Found component available for restore: "%s"',
    ),
    (
        "writer.cpp:VssWriter::Print",
        '\n* WRITER "%s"\n    - WriterId   = %s\n    - InstanceId = %s\n'
        "    - Supports restore events = %s\n    - Writer restore conditions = %s\n"
        "    - Restore method = %s\n    - Requires reboot after restore = %s\n",
    ),
    ("writer.cpp:VssWriter::Print", "    - Excluded files:"),
    (
        "writer.cpp:VssComponent::Print",
        "    - Component \"%s\"\n       - Name: '%s'\n       - Logical Path: '%s'\n"
        "       - Full Path: '%s'\n       - Caption: '%s'\n       - Type: %s [%d]\n"
        "       - Is Selectable: '%s'\n       - Is top level: '%s'\n"
        "       - Notify on backup complete: '%s'",
    ),
    ("writer.cpp:VssComponent::Print", "       - Components:"),
    ("writer.cpp:VssComponent::Print", "       - Affected paths by this component:"),
    ("writer.cpp:VssComponent::Print", "         - %s"),
    ("writer.cpp:VssComponent::Print", "       - Affected volumes by this component:"),
    ("writer.cpp:VssComponent::Print", "         - %s [%s]"),
    ("writer.cpp:VssComponent::Print", "         - %s [Not valid for local machine]"),
    ("writer.cpp:VssComponent::Print", "       - Component Dependencies:"),
    ("writer.cpp:VssFileDescriptor::Print", "       - %s: Path = %s, Filespec = %s%s%s"),
    ("writer.cpp:VssDependency::Print", '       - Dependency to "%s:%s%s"'),
    # --- select.cpp -------------------------------------------------------------------------
    (
        "select.cpp:VssClient::SelectComponentsForBackup",
        "Verifying explicitly specified writers/components ...",
    ),
    (
        "select.cpp:VssClient::DiscoverDirectlyExcludedComponents",
        "Discover directly excluded components ...",
    ),
    (
        "select.cpp:VssClient::DiscoverDirectlyExcludedComponents",
        "- Component '%s' from writer '%s' is explicitly excluded from backup ",
    ),
    (
        "select.cpp:VssClient::DiscoverDirectlyExcludedComponents",
        "- Excluding writer '%s' since it has no selected components for restore.",
    ),
    (
        "select.cpp:VssClient::ExcludeWritersWithNoRestoreEvents",
        "Exclude writers that do not support restore events ...",
    ),
    (
        "select.cpp:VssClient::ExcludeWritersWithNoRestoreEvents",
        "- Excluding writer '%s' since it does not support restore events.",
    ),
    (
        "select.cpp:VssClient::DiscoverNonShadowedExcludedComponents",
        "Discover components that reside outside the shadow set ...",
    ),
    (
        "select.cpp:VssClient::DiscoverNonShadowedExcludedComponents",
        "- Component '%s' from writer '%s' is excluded from backup (it requires %s in the "
        "shadow set)",
    ),
    (
        "select.cpp:VssClient::DiscoverNonShadowedExcludedComponents",
        "- Component '%s' from writer '%s' is excluded from backup",
    ),
    ("select.cpp:VssClient::DiscoverAllExcludedComponents", "Discover all excluded components ..."),
    (
        "select.cpp:VssClient::DiscoverAllExcludedComponents",
        "- Component '%s' from writer '%s' is excluded from backup (it has an excluded "
        "descendent: '%s')",
    ),
    ("select.cpp:VssClient::DiscoverExcludedWriters", "Discover excluded writers ..."),
    (
        "select.cpp:VssClient::DiscoverExcludedWriters",
        "- The writer '%s' is now entirely excluded from the backup:",
    ),
    (
        "select.cpp:VssClient::DiscoverExcludedWriters",
        "  (it does not contain any components that can be potentially included in the backup)",
    ),
    (
        "select.cpp:VssClient::DiscoverExcludedWriters",
        "  (the top-level non-selectable component '%s' is an excluded component)",
    ),
    (
        "select.cpp:VssClient::DiscoverExplicitelyIncludedComponents",
        "Discover explicitly included components ...",
    ),
    ("select.cpp:VssClient::VerifyExplicitelyIncludedComponent", '- Verifing component "%s" ...'),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedComponent",
        '  - The component "%s" is selected',
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedComponent",
        'ERROR: The component "%s" was not included in the backup! Aborting backup ...',
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedComponent",
        "- Please reveiw the component/subcomponent definitions",
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedComponent",
        "- Also, please verify list of volumes to be shadow copied.",
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedComponent",
        'ERROR: The component "%s" was not found in the writer components list! Aborting '
        "backup ...",
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedComponent",
        "- Please check the syntax of the component name.",
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedWriter",
        '- Verifing that all components of writer "%s" are included in backup ...',
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedWriter",
        'ERROR: The writer "%s" has components not included in the backup! Aborting backup ...',
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedWriter",
        '- The component "%s" was not included in the backup.',
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedWriter",
        '   - All components from writer "%s" are selected',
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedWriter",
        'ERROR: The writer "%s" was not found! Aborting backup ...',
    ),
    (
        "select.cpp:VssClient::VerifyExplicitelyIncludedWriter",
        "- Please check the syntax of the writer name/id.",
    ),
    (
        "select.cpp:VssClient::SelectExplicitelyIncludedComponents",
        "Select explicitly included components ...",
    ),
    ("select.cpp:VssClient::SelectExplicitelyIncludedComponents", " * Writer '%s':"),
    ("select.cpp:VssClient::SelectExplicitelyIncludedComponents", "   - Add component %s"),
    (
        "select.cpp:VssClient::SelectNonexcludedComponentsForRestore",
        "Select components for restore...",
    ),
    ("select.cpp:VssClient::SelectNonexcludedComponentsForRestore", "   - Select component %s"),
    (
        "select.cpp:VssClient::SetFileRestoreStatus",
        "Set restore status for all components components for restore...",
    ),
    (
        "select.cpp:VssClient::CheckSelectedWriterStatus",
        "\nERROR: Selected writer '%s' is in failed state!\n   - Status: %d (%s)\n"
        "   - Writer Failure code: 0x%08lx (%s)\n   - Writer ID: {GUID}\n"
        "   - Instance ID: {GUID}\n",
    ),
    # --- macros.h ---------------------------------------------------------------------------
    ("macros.h:CHECK_COM_ERROR", "\nERROR: COM call %s failed."),
    ("macros.h:CHECK_COM_ERROR", "- Returned HRESULT = 0x%08lx"),
    ("macros.h:CHECK_COM_ERROR", "- Error text: %s"),
    (
        "macros.h:CHECK_COM_ERROR",
        "- Please re-run VSHADOW.EXE with the /tracing option to get more details",
    ),
    ("macros.h:CHECK_WIN32_ERROR", "\nERROR: Win32 call %s failed."),
    ("macros.h:CHECK_WIN32_ERROR", "- GetLastError() == %ld"),
    # --- util.h -----------------------------------------------------------------------------
    ("util.h:WString2Guid", "ERROR: The string '%s' is not formatted as a GUID!"),
    ("util.h:ReadFileContents", "Reading the file '%s' ..."),
    ("util.h:WriteFile", "Writing the file '%s' ..."),
    ("util.h:ExecCommand", "- Executing command '%s' ..."),
    ("util.h:ExecCommand", "-----------------------------------------------------"),
    ("util.h:ExecCommand", "ERROR: Command line '%s' failed!. Aborting the backup..."),
    ("util.h:ExecCommand", "- Returned error code: %d"),
]

#: Lines that are not the sample's format strings, and why they are there.
NOT_THE_SAMPLES = [
    ("vssim:banner (vssim's own copyright line)", r"vssim simulation of the SDK sample .*"),
    (
        "writer.cpp:VssClient::GatherWriterMetadataToScreen (SaveAsXML's document)",
        r"<WRITER_METADATA .*</WRITER_METADATA>",
    ),
    # PrintUsage: the real screen's headings, option names and layout; the prose is vssim's.
    ("shadow.cpp:PrintUsage (headings)", r"Usage:|List of optional flags:|List of commands:"),
    ("shadow.cpp:PrintUsage (headings)", r"Examples:|   VSHADOW \[optional flags\] \[commands\]"),
    (
        "shadow.cpp:PrintUsage (an option; vssim's words)",
        r"  (-\S+|-\w+=\{[^}]*\}|\{volume list\}) +- \S.*",
    ),
    ("shadow.cpp:PrintUsage (vssim's words)", r" {20,}\S.*| - \S.*|     VSHADOW .*"),
    ("shadow.cpp:PrintUsage (vssim's words)", r"The vssim README's vshadow section .*"),
    # The tests' -exec commands print lines that start with "exec: ".
    ("util.h:ExecCommand (the command's own output)", r"exec: .*"),
]

_PLACEHOLDER = re.compile(r"(0x%08lx|%ld|%d|%u|%s|\{GUID\})")
_REGEX = {
    "0x%08lx": "0x[0-9a-f]{8}",
    "%ld": "-?[0-9]+",
    "%d": "-?[0-9]+",
    "%u": "[0-9]+",
    "%s": ".*",
    GUID: r"\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}",
}


def _compile(fmt_line: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(fmt_line)
    return re.compile(
        "".join(_REGEX[p] if i % 2 else re.escape(p) for i, p in enumerate(parts)), re.DOTALL
    )


def _literal(fmt_line: str) -> int:
    return len(_PLACEHOLDER.sub("", fmt_line))


#: (origin, pattern, literal characters) for every non-empty line of every format.
LINES: list[tuple[str, re.Pattern[str], int]] = [
    (origin, _compile(line), _literal(line))
    for origin, fmt in FORMATS
    for line in fmt.split("\n")
    if line
] + [(origin, re.compile(rx), 0) for origin, rx in NOT_THE_SAMPLES]


def origin_of(line: str) -> str | None:
    """The origin of the most specific format ``line`` matches (an empty line comes from a
    format's ``\\n``), or None."""
    if line == "":
        return "\\n"
    hits = [(lit, origin) for origin, rx, lit in LINES if rx.fullmatch(line)]
    return max(hits)[1] if hits else None


def matches(origin: str, line: str) -> bool:
    """Does ``line`` come out of one of the formats of ``origin``?"""
    if origin == "\\n":
        return line == ""
    return any(o == origin and rx.fullmatch(line) for o, rx, _ in LINES)
