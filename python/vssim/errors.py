"""The vssim exception hierarchy, shared by the Rust engine and the Python layers.

Every error vssim raises is a :class:`VssimError`. Where the caller's input is at fault the class
also derives from :class:`ValueError`, so generic code that catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class VssimError(Exception):
    """Base class of every vssim error."""


class InvalidArgumentError(VssimError, ValueError):
    """An argument is outside its domain; the message names it, its value and what was expected.
    Nothing was changed."""


class EngineStateError(VssimError):
    """The call is legal in general but not in the object's current state (e.g. a 513th
    snapshot)."""


class NotEstimatedError(VssimError):
    """The estimate tier (``engine.EstimateCluster``) does not provide this (changed runs,
    materialized disks, a CSV that fills up): the message says what; the exact engine
    (``engine.ModelCluster``) does."""


class TrackerFileError(VssimError, ValueError):
    """A persisted tracker file is corrupt or belongs to another disk; it was not loaded."""


class ScenarioError(VssimError, ValueError):
    """A scenario file is invalid. The message names the file, the key path (``vms[3].node``), the
    bad value and what was expected; nothing was loaded."""

    def __init__(self, file: str, key: str, value: object, expected: str) -> None:
        self.file = file
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"{file}: {key} = {value!r}: expected {expected}")


class PlanError(VssimError, ValueError):
    """A capacity-planning request (``vssim plan``) cannot be carried out: a bad ``[plan]`` key or
    option, or a run the plan needs is not available. The message names what and why."""


class MaterializeError(VssimError):
    """A materialized run (``vssim run --materialize``) or a restore from its backups could not
    set up, keep or read its files; the message names the file or the objects and why."""


class VssError(VssimError):
    """A VSS call failed with an HRESULT (``hresult``, e.g. ``0x80042301``); the message starts with
    the HRESULT's Windows name (``VSS_E_BAD_STATE``)."""

    def __init__(self, hresult: int, message: str) -> None:
        self.hresult = hresult
        self.message = message
        super().__init__(hresult, message)

    def __str__(self) -> str:
        return self.message


class VssProtocolError(VssError):
    """An event that is illegal in a protocol role's current state (h11's ``LocalProtocolError``).
    Names the role, its state and the event; the role's state was left unchanged."""

    def __init__(self, hresult: int, message: str, role: str, state: str, event: str) -> None:
        super().__init__(hresult, message)
        self.role = role
        self.state = state
        self.event = event
        # all five, so the error can be rebuilt from its args (pickling, SimPy re-raising)
        self.args = (hresult, message, role, state, event)


class VolumeError(VssimError):
    """A volume or snapshot operation failed (``engine.Volume``); nothing on disk was changed."""


class PathOutsideVolumeError(VolumeError, ValueError):
    """The path is not a file on the volume: ``..``, a symlink leading out, or the diff area."""


class SnapshotNotFoundError(VolumeError, LookupError):
    """No snapshot with this id was ever taken on the volume."""


class SnapshotDeletedError(VolumeError):
    """The snapshot was deleted (by request, or because the diff area was full: VolSnap event
    24); a view on it fails on its next read."""


class SnapshotInvalidError(VolumeError):
    """The snapshot cannot be trusted (a torn journal write, an unclean session on an earlier
    boot, a diff-area chunk that no longer matches its checksum); it can only be deleted."""


class FileNotInSnapshotError(VolumeError, LookupError):
    """The file did not exist on the volume when the snapshot was taken."""


class ReadOnlyViewError(VolumeError):
    """A write to a read-only snapshot view (open it ``writable=True`` for auto-recovery)."""


class DiffAreaError(VolumeError):
    """The diff area could not be written; the live write was not made."""


class DiffAreaFullError(DiffAreaError):
    """The diff area's disk is full (or a file-size limit was hit); the live write was not
    made."""


class VolumeJournalError(VolumeError):
    """The diff-area folder holds a journal that is not a vssim volume journal (or another
    format version); the volume was not opened and nothing was changed."""


class VolumeBusyError(VolumeError):
    """Another live process has the volume open."""


class VhdxError(VssimError):
    """A VHDX file or call failed (e.g. a write to a disk opened read-only)."""


class VhdxCorruptError(VhdxError, ValueError):
    """The file breaks the MS-VHDX format; it was not used and nothing was written to it.

    Attributes ``file``, ``structure``, ``field``, ``offset`` (in the file), ``expected`` and
    ``found`` say where and what."""

    file: str
    structure: str
    field: str
    offset: int
    expected: str
    found: str


class VhdxUnsupportedError(VhdxError, ValueError):
    """The file asks for something vssim does not implement (an unknown required region or
    metadata item, another log version). Same attributes as :class:`VhdxCorruptError`."""

    file: str
    structure: str
    field: str
    offset: int
    expected: str
    found: str


class VhdxParentError(VhdxError, ValueError):
    """A differencing disk's parent is missing, is the wrong file (its DataWriteGuid does not
    match ``parent_linkage``) or its locator path leaves the child's directory. Same attributes
    as :class:`VhdxCorruptError`."""

    file: str
    structure: str
    field: str
    offset: int
    expected: str
    found: str


class VhdxLockedError(VhdxError):
    """Another handle (another process, or another open in this one) holds the VHDX: a disk has
    one writer, or any number of readers and no writer. ``file`` names it and ``holder`` says who
    holds it, when that can be found ("process 1234 (vssim) holds it for writing"). Nothing was
    read from it or written to it."""

    file: str
    holder: str


__all__ = [
    "DiffAreaError",
    "DiffAreaFullError",
    "EngineStateError",
    "FileNotInSnapshotError",
    "InvalidArgumentError",
    "MaterializeError",
    "NotEstimatedError",
    "PathOutsideVolumeError",
    "ReadOnlyViewError",
    "ScenarioError",
    "SnapshotDeletedError",
    "SnapshotInvalidError",
    "SnapshotNotFoundError",
    "TrackerFileError",
    "VhdxCorruptError",
    "VhdxError",
    "VhdxLockedError",
    "VhdxParentError",
    "VhdxUnsupportedError",
    "VolumeBusyError",
    "VolumeError",
    "VolumeJournalError",
    "VssError",
    "VssProtocolError",
    "VssimError",
]
