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


__all__ = [
    "EngineStateError",
    "InvalidArgumentError",
    "ScenarioError",
    "TrackerFileError",
    "VssError",
    "VssProtocolError",
    "VssimError",
]
