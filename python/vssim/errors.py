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


class TrackerFileError(VssimError, ValueError):
    """A persisted tracker file is corrupt or belongs to another disk; it was not loaded."""


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


__all__ = [
    "EngineStateError",
    "InvalidArgumentError",
    "TrackerFileError",
    "VhdxCorruptError",
    "VhdxError",
    "VhdxParentError",
    "VhdxUnsupportedError",
    "VssimError",
]
