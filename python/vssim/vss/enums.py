"""VSS names with their real Win32 values (``vss.h``, ``vsbackup.h``; spec §3).

Every enum's member name is the Windows constant without its prefix; ``str()`` and
:func:`hresult_name` give the full Windows name (``VSS_WS_STABLE``, ``VSS_E_BAD_STATE``), the way
vshadow prints them.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


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
        return self is SnapshotContext.ALL or not self.value & SnapshotAttr.NO_WRITERS


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


class HResult(IntEnum):
    """The HRESULTs vssim raises or reports, with their Windows names (spec §3)."""

    S_OK = 0x00000000
    E_INVALIDARG = 0x80070057
    E_UNEXPECTED = 0x8000FFFF
    VSS_E_BAD_STATE = 0x80042301
    VSS_E_UNEXPECTED = 0x80042302
    VSS_E_PROVIDER_VETO = 0x80042306
    VSS_E_OBJECT_NOT_FOUND = 0x80042308
    VSS_E_VOLUME_NOT_SUPPORTED = 0x8004230C
    VSS_E_OBJECT_ALREADY_EXISTS = 0x8004230D
    VSS_E_UNEXPECTED_PROVIDER_ERROR = 0x8004230F
    VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED = 0x80042312
    VSS_E_FLUSH_WRITES_TIMEOUT = 0x80042313
    VSS_E_HOLD_WRITES_TIMEOUT = 0x80042314
    VSS_E_UNEXPECTED_WRITER_ERROR = 0x80042315
    VSS_E_SNAPSHOT_SET_IN_PROGRESS = 0x80042316
    VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED = 0x80042317
    VSS_E_WRITER_INFRASTRUCTURE = 0x80042318
    VSS_E_WRITER_NOT_RESPONDING = 0x80042319
    VSS_E_INSUFFICIENT_STORAGE = 0x8004231F
    VSS_E_CLUSTER_TIMEOUT = 0x8004232E
    VSS_E_WRITERERROR_PARTIAL_FAILURE = 0x80042336
    VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT = 0x800423F0
    VSS_E_WRITERERROR_OUTOFRESOURCES = 0x800423F1
    VSS_E_WRITERERROR_TIMEOUT = 0x800423F2
    VSS_E_WRITERERROR_RETRYABLE = 0x800423F3
    VSS_E_WRITERERROR_NONRETRYABLE = 0x800423F4
    VSS_E_WRITERERROR_RECOVERY_FAILED = 0x800423F5
    VSS_E_AUTORECOVERY_FAILED = 0x800423FB
    VSS_E_CLUSTER_ERROR = 0x80042400
    VSS_E_WRITER_STATUS_NOT_AVAILABLE = 0x80042409
    #: ``HRESULT_FROM_WIN32`` of the cluster error a second 2008 R2 backup of a CSV gets.
    CSV_BACKUP_IN_PROGRESS = 0x8007173D

    def __str__(self) -> str:
        return self.name


def hresult_name(hr: int) -> str:
    """The Windows name of ``hr`` (``VSS_E_BAD_STATE``), or its hex form when vssim does not know
    it."""
    try:
        return HResult(hr).name
    except ValueError:
        return f"0x{hr & 0xFFFFFFFF:08x}"


def hresult_hex(hr: int) -> str:
    """``0x80042301``: how vshadow prints an HRESULT (``0x%08lx``)."""
    return f"0x{hr & 0xFFFFFFFF:08x}"


__all__ = [
    "BackupType",
    "ComponentType",
    "HResult",
    "ProviderType",
    "RestoreMethod",
    "SnapshotAttr",
    "SnapshotContext",
    "SnapshotState",
    "WriterRestore",
    "WriterState",
    "hresult_hex",
    "hresult_name",
]
