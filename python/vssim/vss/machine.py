"""How the protocol roles work (after h11's ``_state.py``).

Each role — the requester's backup-components object, a writer, a provider's snapshot set — is a
small state machine whose every transition lives in one table, ``TABLE[(state, event)]``. Nothing
here does I/O or knows the time: the SimPy layer (:mod:`vssim.sim`) feeds events in, timeouts
included, and acts on the new state. An event the table does not list for the current state is a
protocol error: :class:`~vssim.errors.VssProtocolError` with the HRESULT Windows returns
(``VSS_E_BAD_STATE`` unless a table says otherwise), naming role, state and event — and the state
is left exactly as it was.
"""

from __future__ import annotations

from enum import Enum

from vssim.errors import VssProtocolError
from vssim.vss.enums import HResult


def protocol_error(
    role: str, state: Enum, event: Enum, hr: int = HResult.VSS_E_BAD_STATE, why: str = ""
) -> VssProtocolError:
    """The error for ``event`` arriving at ``role`` in ``state``."""
    name = HResult(hr).name if hr in HResult._value2member_map_ else f"0x{hr:08x}"
    text = f"{name} (0x{hr:08x}): {role} in state {state.name} cannot take {event.name}"
    if why:
        text += f" ({why})"
    return VssProtocolError(hr, text, role=role, state=state.name, event=event.name)
