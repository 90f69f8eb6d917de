"""Every writer a Hyper-V failover cluster node runs, in the order GatherWriterMetadata returns
them: the in-box writers of Windows (Microsoft's "In-Box VSS Writers" page), the node's Hyper-V
writer and, on Windows Server 2012, its CSV writer (:mod:`vssim.vss.writers`).

The in-box writers own files on the node's own volumes — ``C:`` and, for the boot configuration,
the "System Reserved" partition (``Scenario.local_volumes``) — never on a CSV, so in a snapshot set
of CSVs vshadow excludes every one of them (and says so), as on a real node; the simulated backups
of ``vssim run`` and the Python requester never involve them. Their names, ids and component names
are Windows' (``\\TasksStore``, ``\\System Files``, ``\\BCD\\BCD`` …; the three express writers'
instance ids are fixed by Windows). **Model choices:** the other instance ids derive from the
scenario seed and the node; the file lists are short, plausible stand-ins for what these writers
report (the System Writer lists thousands of files), on the paths the page names where it names
them; usage, restore method and restore conditions are plausible values, not measured ones.

The 2008 R2 node has the same in-box writers (the page marks the Task Scheduler, VSS Metadata
Store and Performance Counters writers as new in 2008 R2) and no CSV writer.
"""

from __future__ import annotations

from vssim.scenario import Scenario
from vssim.vss.enums import ComponentType, RestoreMethod, UsageType, WriterRestore
from vssim.vss.metadata import Component, DescriptorKind, FileDescriptor, WriterMetadata
from vssim.vss.profiles import profile_for
from vssim.vss.well_known_ids import (
    ASR_WRITER_ID,
    BITS_WRITER_ID,
    CLUSTER_DATABASE_WRITER_ID,
    COM_REGDB_WRITER_ID,
    METADATA_STORE_WRITER_ID,
    METADATA_STORE_WRITER_INSTANCE_ID,
    PERFORMANCE_COUNTERS_WRITER_ID,
    PERFORMANCE_COUNTERS_WRITER_INSTANCE_ID,
    REGISTRY_WRITER_ID,
    SHADOW_COPY_OPTIMIZATION_WRITER_ID,
    SYSTEM_WRITER_ID,
    TASK_SCHEDULER_WRITER_ID,
    TASK_SCHEDULER_WRITER_INSTANCE_ID,
    WMI_WRITER_ID,
)
from vssim.vss.writers import csv_metadata, hyperv_node_metadata, writer_instance_id

F = FileDescriptor
EXCLUDE = DescriptorKind.EXCLUDE


def _files(*items: tuple[str, str] | tuple[str, str, bool]) -> tuple[FileDescriptor, ...]:
    return tuple(F(i[0], i[1], recursive=len(i) == 3 and bool(i[2])) for i in items)


def _one(
    name: str,
    caption: str,
    files: tuple[FileDescriptor, ...],
    selectable: bool,
    logical_path: str = "",
) -> Component:
    return Component(
        name=name,
        logical_path=logical_path,
        caption=caption,
        type=ComponentType.FILEGROUP,
        selectable=selectable,
        files=files,
    )


def task_scheduler_writer(node: str) -> WriterMetadata:
    return WriterMetadata(
        name="Task Scheduler Writer",
        writer_id=TASK_SCHEDULER_WRITER_ID,
        instance_id=TASK_SCHEDULER_WRITER_INSTANCE_ID,
        restore_method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        restore_conditions=WriterRestore.ALWAYS,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "TasksStore",
                "Task Scheduler Writer",
                _files(
                    ("%SystemRoot%\\Tasks", "*", True), ("%SystemRoot%\\system32\\Tasks", "*", True)
                ),
                selectable=True,
            ),
        ),
        node=node,
    )


def metadata_store_writer(node: str) -> WriterMetadata:
    return WriterMetadata(
        name="VSS Metadata Store Writer",
        writer_id=METADATA_STORE_WRITER_ID,
        instance_id=METADATA_STORE_WRITER_INSTANCE_ID,
        restore_method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        restore_conditions=WriterRestore.ALWAYS,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "WriterMetadataStore",
                "VSS Express Writer Metadata Store",
                _files(("%SystemRoot%\\system32\\config", "COMPONENTS")),
                selectable=True,
            ),
        ),
        node=node,
    )


def performance_counters_writer(node: str) -> WriterMetadata:
    return WriterMetadata(
        name="Performance Counters Writer",
        writer_id=PERFORMANCE_COUNTERS_WRITER_ID,
        instance_id=PERFORMANCE_COUNTERS_WRITER_INSTANCE_ID,
        restore_method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        restore_conditions=WriterRestore.ALWAYS,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "PerformanceCounters",
                "Performance Counters",
                _files(
                    ("%SystemRoot%\\system32", "perf?00?.dat"),
                    ("%SystemRoot%\\system32", "perf?00?.bak"),
                    ("%SystemRoot%\\system32", "perfStringBackup.INI"),
                ),
                selectable=True,
            ),
        ),
        node=node,
    )


def system_writer(sc: Scenario, node: str) -> WriterMetadata:
    return WriterMetadata(
        name="System Writer",
        writer_id=SYSTEM_WRITER_ID,
        instance_id=writer_instance_id(sc, "system", node),
        restore_method=RestoreMethod.RESTORE_AT_REBOOT,
        restore_conditions=WriterRestore.ALWAYS,
        reboot_required=True,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "System Files",
                "System Files",
                _files(
                    ("%SystemRoot%\\system32", "*.dll"),
                    ("%SystemRoot%\\system32", "*.exe"),
                    ("%SystemRoot%\\system32\\drivers", "*.sys"),
                    ("%SystemRoot%\\system32\\catroot", "*", True),
                    ("%SystemRoot%\\WinSxS", "*", True),
                    ("%SystemRoot%\\Boot", "*", True),
                ),
                selectable=False,
            ),
            _one(
                "Win32 Services Files",
                "Win32 Services Files",
                _files(
                    ("%SystemRoot%\\system32", "svchost.exe"),
                    ("%SystemRoot%\\system32", "vmms.exe"),
                    ("%SystemRoot%\\Cluster", "clussvc.exe"),
                ),
                selectable=False,
            ),
        ),
        node=node,
    )


def asr_writer(sc: Scenario, node: str) -> WriterMetadata:
    """The ASR writer: the node's disk, its critical volumes and the boot configuration store,
    which lives on the System Reserved partition — a top-level, non-selectable component on a
    volume no CSV snapshot set holds, so vshadow excludes the whole writer from such a set."""
    reserved, system = sc.local_volumes(node)
    volumes = tuple(
        _one(f"Volume{{{v.volume_guid}}}", "This is a volume.", (), False, "Volumes")
        for v in (reserved, system)
    )
    bcd = _one(
        "BCD",
        "This is the path to the boot BCD store and the boot managers. All the files in this "
        "directory need to be backed up.",
        _files((f"{reserved.volume_name}Boot", "*", True), (reserved.volume_name, "bootmgr")),
        selectable=False,
        logical_path="BCD",
    )
    return WriterMetadata(
        name="ASR Writer",
        writer_id=ASR_WRITER_ID,
        instance_id=writer_instance_id(sc, "asr", node),
        restore_method=RestoreMethod.CUSTOM,
        restore_conditions=WriterRestore.ALWAYS,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one("ASR", "ASR", (), False, "ASR"),
            *volumes,
            _one("harddisk0", "This is a disk.", (), False, "Disks"),
            bcd,
        ),
        node=node,
    )


def shadow_copy_optimization_writer(sc: Scenario, node: str) -> WriterMetadata:
    """No components: it only names files that shadow copies need not keep."""
    return WriterMetadata(
        name="Shadow Copy Optimization Writer",
        writer_id=SHADOW_COPY_OPTIMIZATION_WRITER_ID,
        instance_id=writer_instance_id(sc, "shadow-copy-optimization", node),
        restore_method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        restore_conditions=WriterRestore.NEVER,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        excluded=tuple(
            F(p, s, recursive=r, kind=EXCLUDE)
            for p, s, r in (
                ("%SystemDrive%\\", "pagefile.sys", False),
                ("%SystemDrive%\\", "hiberfil.sys", False),
                ("%SystemRoot%\\Temp", "*", True),
                (
                    "%SystemDrive%\\System Volume Information",
                    "*{3808876B-C176-4e48-B7AE-04046E6CC752}",
                    True,
                ),
            )
        ),
        node=node,
    )


def registry_writer(sc: Scenario, node: str) -> WriterMetadata:
    hives = ("SAM", "SECURITY", "SOFTWARE", "SYSTEM", "DEFAULT", "COMPONENTS")
    return WriterMetadata(
        name="Registry Writer",
        writer_id=REGISTRY_WRITER_ID,
        instance_id=writer_instance_id(sc, "registry", node),
        restore_method=RestoreMethod.RESTORE_AT_REBOOT,
        restore_conditions=WriterRestore.ALWAYS,
        reboot_required=True,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "Registry",
                "Registry",
                (
                    *(F("%SystemRoot%\\system32\\config", h) for h in hives),
                    F("%SystemRoot%\\system32\\SMI\\Store\\Machine", "SCHEMA.DAT"),
                ),
                selectable=False,
            ),
        ),
        node=node,
    )


def bits_writer(sc: Scenario, node: str) -> WriterMetadata:
    downloader = "%ALLUSERSPROFILE%\\Microsoft\\Network\\Downloader"
    return WriterMetadata(
        name="BITS Writer",
        writer_id=BITS_WRITER_ID,
        instance_id=writer_instance_id(sc, "bits", node),
        restore_method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        restore_conditions=WriterRestore.NEVER,
        usage=UsageType.USERDATA,
        excluded=(F(f"{downloader}\\Cache", "*", recursive=True, kind=EXCLUDE),),
        components=(
            _one("BITS_metadata", "BITS_metadata", _files((downloader, "qmgr*.dat")), True),
        ),
        node=node,
    )


def wmi_writer(sc: Scenario, node: str) -> WriterMetadata:
    return WriterMetadata(
        name="WMI Writer",
        writer_id=WMI_WRITER_ID,
        instance_id=writer_instance_id(sc, "wmi", node),
        restore_method=RestoreMethod.RESTORE_AT_REBOOT,
        restore_conditions=WriterRestore.ALWAYS,
        reboot_required=True,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "WMI",
                "Windows Management Instrumentation",
                _files(("%SystemRoot%\\system32\\wbem\\Repository", "*.*", True)),
                selectable=False,
            ),
        ),
        node=node,
    )


def cluster_database_writer(sc: Scenario, node: str) -> WriterMetadata:
    return WriterMetadata(
        name="Cluster Database",
        writer_id=CLUSTER_DATABASE_WRITER_ID,
        instance_id=writer_instance_id(sc, "cluster-database", node),
        restore_method=RestoreMethod.CUSTOM,
        restore_conditions=WriterRestore.ALWAYS,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "Cluster Database",
                "Cluster Database",
                _files(("%SystemRoot%\\Cluster", "CLUSDB"), ("%SystemRoot%\\Cluster", "CLUSDB.*")),
                selectable=False,
            ),
        ),
        node=node,
    )


def com_regdb_writer(sc: Scenario, node: str) -> WriterMetadata:
    return WriterMetadata(
        name="COM+ REGDB Writer",
        writer_id=COM_REGDB_WRITER_ID,
        instance_id=writer_instance_id(sc, "com-regdb", node),
        restore_method=RestoreMethod.RESTORE_AT_REBOOT,
        restore_conditions=WriterRestore.ALWAYS,
        reboot_required=True,
        usage=UsageType.BOOTABLESYSTEMSTATE,
        components=(
            _one(
                "COM+ REGDB", "COM+ REGDB", _files(("%SystemRoot%\\Registration", "R*.clb")), False
            ),
        ),
        node=node,
    )


def node_writers(sc: Scenario, node: str) -> list[WriterMetadata]:
    """Every writer of ``node``, in GatherWriterMetadata order (the express writers first, as
    ``vssadmin list writers`` shows them on these releases)."""
    name = sc.node(node).name
    out = [
        task_scheduler_writer(name),
        metadata_store_writer(name),
        performance_counters_writer(name),
        system_writer(sc, name),
        hyperv_node_metadata(sc, name),
    ]
    if profile_for(sc.os).csv_writer:
        out.append(csv_metadata(sc, name))
    out += [
        asr_writer(sc, name),
        shadow_copy_optimization_writer(sc, name),
        registry_writer(sc, name),
        bits_writer(sc, name),
        wmi_writer(sc, name),
        cluster_database_writer(sc, name),
        com_regdb_writer(sc, name),
    ]
    return out
