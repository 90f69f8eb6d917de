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


__all__ = [
    "EngineStateError",
    "InvalidArgumentError",
    "TrackerFileError",
    "VssimError",
]
