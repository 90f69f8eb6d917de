"""VSS names with their real Win32 values (``vss.h``, ``vsbackup.h``; spec §3).

Every enum's member name is the Windows constant without its prefix; ``str()`` gives the full
Windows name (``VSS_WS_STABLE``), the way vshadow prints them. The HRESULTs live below every layer
(:mod:`vssim.hresults`: scenario files name them too) and are re-exported here.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

from vssim.hresults import HResult, hresult_hex, hresult_name


class _Prefixed(IntEnum):
    """An IntEnum whose ``str`` is the Windows constant name."""

    @classmethod
    def prefix(cls) -> str:
        raise NotImplementedError

    @property
    def win_name(self) -> str:
        return f"{self.prefix()}{self.name}"

    def __str__(self) -> str:
        return self.win_name


class WriterState(_Prefixed):
    """``VSS_WRITER_STATE``."""

    UNKNOWN = 0
    STABLE = 1
    WAITING_FOR_FREEZE = 2
    WAITING_FOR_THAW = 3
    WAITING_FOR_POST_SNAPSHOT = 4
    WAITING_FOR_BACKUP_COMPLETE = 5
    FAILED_AT_IDENTIFY = 6
    FAILED_AT_PREPARE_BACKUP = 7
    FAILED_AT_PREPARE_SNAPSHOT = 8
    FAILED_AT_FREEZE = 9
    FAILED_AT_THAW = 10
    FAILED_AT_POST_SNAPSHOT = 11
    FAILED_AT_BACKUP_COMPLETE = 12
    FAILED_AT_PRE_RESTORE = 13
    FAILED_AT_POST_RESTORE = 14
    FAILED_AT_BACKUPSHUTDOWN = 15

    @classmethod
    def prefix(cls) -> str:
        return "VSS_WS_"

    @property
    def is_failed(self) -> bool:
        return self.value >= WriterState.FAILED_AT_IDENTIFY


class BackupType(_Prefixed):
    """``VSS_BACKUP_TYPE``."""

    UNDEFINED = 0
    FULL = 1
    INCREMENTAL = 2
    DIFFERENTIAL = 3
    LOG = 4
    COPY = 5
    OTHER = 6

    @classmethod
    def prefix(cls) -> str:
        return "VSS_BT_"


class ComponentType(_Prefixed):
    """``VSS_COMPONENT_TYPE``."""

    UNDEFINED = 0
    DATABASE = 1
    FILEGROUP = 2

    @classmethod
    def prefix(cls) -> str:
        return "VSS_CT_"


class WriterRestore(_Prefixed):
    """``VSS_WRITERRESTORE_ENUM``."""

    UNDEFINED = 0
    NEVER = 1
    IF_REPLACE_FAILS = 2
    ALWAYS = 3

    @classmethod
    def prefix(cls) -> str:
        return "VSS_WRE_"

    @property
    def xml(self) -> str:
        """The ``writerRestore`` attribute of ``RESTORE_METHOD`` (``UNDEFINED`` has none in
        Windows; vssim writes its name)."""
        return {1: "never", 2: "ifReplaceFails", 3: "always"}.get(self.value, self.name)


class RestoreMethod(_Prefixed):
    """``VSS_RESTOREMETHOD_ENUM``."""

    UNDEFINED = 0
    RESTORE_IF_NOT_THERE = 1
    RESTORE_IF_CAN_REPLACE = 2
    STOP_RESTORE_START = 3
    RESTORE_TO_ALTERNATE_LOCATION = 4
    RESTORE_AT_REBOOT = 5
    RESTORE_AT_REBOOT_IF_CANNOT_REPLACE = 6
    CUSTOM = 7
    RESTORE_STOP_START = 8

    @classmethod
    def prefix(cls) -> str:
        return "VSS_RME_"

    @property
    def xml(self) -> str:
        """The ``method`` attribute of ``RESTORE_METHOD`` (``UNDEFINED`` has none in Windows;
        vssim writes its name)."""
        return _RESTORE_METHOD_XML.get(self, self.name)


class UsageType(_Prefixed):
    """``VSS_USAGE_TYPE``: what a writer's data is for."""

    UNDEFINED = 0
    BOOTABLESYSTEMSTATE = 1
    SYSTEMSERVICE = 2
    USERDATA = 3
    OTHER = 4

    @classmethod
    def prefix(cls) -> str:
        return "VSS_UT_"

    @property
    def xml(self) -> str:
        """The ``usage`` attribute of a writer metadata document's ``IDENTIFICATION``."""
        return _USAGE_XML[self]


_USAGE_XML = {
    UsageType.UNDEFINED: "UNDEFINED",
    UsageType.BOOTABLESYSTEMSTATE: "BOOTABLE_SYSTEM_STATE",
    UsageType.SYSTEMSERVICE: "SYSTEM_SERVICE",
    UsageType.USERDATA: "USER_DATA",
    UsageType.OTHER: "OTHER",
}


class SourceType(_Prefixed):
    """``VSS_SOURCE_TYPE``: the kind of data source behind a writer."""

    UNDEFINED = 0
    TRANSACTEDDB = 1
    NONTRANSACTEDDB = 2
    OTHER = 3

    @classmethod
    def prefix(cls) -> str:
        return "VSS_ST_"

    @property
    def xml(self) -> str:
        """The ``dataSource`` attribute of a writer metadata document's ``IDENTIFICATION``."""
        return _SOURCE_XML[self]


_SOURCE_XML = {
    SourceType.UNDEFINED: "UNDEFINED",
    SourceType.TRANSACTEDDB: "TRANSACTION_DB",
    SourceType.NONTRANSACTEDDB: "NONTRANSACTIONAL_DB",
    SourceType.OTHER: "OTHER",
}


_RESTORE_METHOD_XML = {
    RestoreMethod.RESTORE_IF_NOT_THERE: "RESTORE_IF_NONE_THERE",
    RestoreMethod.RESTORE_IF_CAN_REPLACE: "RESTORE_IF_CAN_BE_REPLACED",
    RestoreMethod.STOP_RESTORE_START: "STOP_RESTART_SERVICE",
    RestoreMethod.RESTORE_TO_ALTERNATE_LOCATION: "RESTORE_TO_ALTERNATE_LOCATION",
    RestoreMethod.RESTORE_AT_REBOOT: "REPLACE_AT_REBOOT",
    RestoreMethod.RESTORE_AT_REBOOT_IF_CANNOT_REPLACE: "REPLACE_AT_REBOOT_IF_CANNOT_REPLACE",
    RestoreMethod.CUSTOM: "CUSTOM",
    RestoreMethod.RESTORE_STOP_START: "RESTORE_STOP_START",
}


class SnapshotContext(_Prefixed):
    """``VSS_SNAPSHOT_CONTEXT``."""

    BACKUP = 0
    FILE_SHARE_BACKUP = 16
    NAS_ROLLBACK = 25
    APP_ROLLBACK = 9
    CLIENT_ACCESSIBLE = 29
    CLIENT_ACCESSIBLE_WRITERS = 13
    ALL = -1

    @classmethod
    def prefix(cls) -> str:
        return "VSS_CTX_"

    @property
    def with_writers(self) -> bool:
        # On the ints: Flag arithmetic makes a member a call, and the requester asks every step.
        return self is SnapshotContext.ALL or not self.value & SnapshotAttr.NO_WRITERS.value


class ProviderType(_Prefixed):
    """``VSS_PROVIDER_TYPE``."""

    UNKNOWN = 0
    SYSTEM = 1
    SOFTWARE = 2
    HARDWARE = 3
    FILESHARE = 4

    @classmethod
    def prefix(cls) -> str:
        return "VSS_PROV_"


class SnapshotState(_Prefixed):
    """``VSS_SNAPSHOT_STATE``."""

    UNKNOWN = 0
    PREPARING = 1
    PROCESSING_PREPARE = 2
    PREPARED = 3
    PROCESSING_PRECOMMIT = 4
    PRECOMMITTED = 5
    PROCESSING_COMMIT = 6
    COMMITTED = 7
    PROCESSING_POSTCOMMIT = 8
    PROCESSING_PREFINALCOMMIT = 9
    PREFINALCOMMITTED = 10
    PROCESSING_POSTFINALCOMMIT = 11
    CREATED = 12
    ABORTED = 13
    DELETED = 14
    POSTCOMMITTED = 15

    @classmethod
    def prefix(cls) -> str:
        return "VSS_SS_"


class SnapshotAttr(IntFlag):
    """``_VSS_VOLUME_SNAPSHOT_ATTRIBUTES`` (``VSS_VOLSNAP_ATTR_*``)."""

    NONE = 0
    PERSISTENT = 0x1
    NO_AUTORECOVERY = 0x2
    CLIENT_ACCESSIBLE = 0x4
    NO_AUTO_RELEASE = 0x8
    NO_WRITERS = 0x10
    TRANSPORTABLE = 0x20
    NOT_SURFACED = 0x40
    NOT_TRANSACTED = 0x80
    HARDWARE_ASSISTED = 0x10000
    DIFFERENTIAL = 0x20000
    PLEX = 0x40000
    IMPORTED = 0x80000
    EXPOSED_LOCALLY = 0x100000
    EXPOSED_REMOTELY = 0x200000
    AUTORECOVER = 0x400000
    ROLLBACK_RECOVERY = 0x800000
    DELAYED_POSTSNAPSHOT = 0x1000000
    TXF_RECOVERY = 0x2000000


__all__ = [
    "BackupType",
    "ComponentType",
    "HResult",
    "ProviderType",
    "RestoreMethod",
    "SnapshotAttr",
    "SnapshotContext",
    "SnapshotState",
    "SourceType",
    "UsageType",
    "WriterRestore",
    "WriterState",
    "hresult_hex",
    "hresult_name",
]
