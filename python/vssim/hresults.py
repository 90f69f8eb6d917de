"""The HRESULTs vssim raises or reports, with their Windows names (``vss.h``, ``winerror.h``; spec
§3). Below every layer: scenario files name them (a fault's ``hresult``), the protocol raises them.
"""

from __future__ import annotations

from enum import IntEnum


class HResult(IntEnum):
    """The HRESULTs vssim raises or reports, with their Windows names (spec §3)."""

    S_OK = 0x00000000
    E_INVALIDARG = 0x80070057
    E_UNEXPECTED = 0x8000FFFF
    E_NOINTERFACE = 0x80004002
    VSS_E_BAD_STATE = 0x80042301
    VSS_E_UNEXPECTED = 0x80042302
    VSS_E_PROVIDER_VETO = 0x80042306
    VSS_E_OBJECT_NOT_FOUND = 0x80042308
    VSS_E_VOLUME_NOT_SUPPORTED = 0x8004230C
    VSS_E_OBJECT_ALREADY_EXISTS = 0x8004230D
    VSS_E_UNEXPECTED_PROVIDER_ERROR = 0x8004230F
    VSS_E_INVALID_XML_DOCUMENT = 0x80042311
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
    VSS_E_LEGACY_PROVIDER = 0x800423F7
    VSS_E_AUTORECOVERY_FAILED = 0x800423FB
    VSS_E_CLUSTER_ERROR = 0x80042400
    VSS_E_WRITER_STATUS_NOT_AVAILABLE = 0x80042409
    #: ``HRESULT_FROM_WIN32`` of the cluster error a second 2008 R2 backup of a CSV gets (spec §3
    #: gives the value only; the name is vssim's).
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
