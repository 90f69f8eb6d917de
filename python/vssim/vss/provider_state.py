"""The provider role: one provider's part of one snapshot set, by ``VSS_SNAPSHOT_STATE``.

``BeginPrepareSnapshot`` once per volume, then ``EndPrepareSnapshots``, ``PreCommitSnapshots``,
``CommitSnapshots`` (inside flush-and-hold), ``PostCommitSnapshots``, ``PreFinalCommitSnapshots``,
``PostFinalCommitSnapshots`` → CREATED. ``AbortSnapshots`` is legal until the set is created and
leaves it ABORTED (nothing kept); ``DeleteSnapshots`` removes a created set. Anything else:
``VSS_E_BAD_STATE``, state unchanged.
"""

from __future__ import annotations

from enum import Enum, auto

from vssim.vss.enums import SnapshotState
from vssim.vss.machine import protocol_error


class ProviderCall(Enum):
    BEGIN_PREPARE_SNAPSHOT = auto()
    END_PREPARE_SNAPSHOTS = auto()
    PRE_COMMIT_SNAPSHOTS = auto()
    COMMIT_SNAPSHOTS = auto()
    POST_COMMIT_SNAPSHOTS = auto()
    PRE_FINAL_COMMIT_SNAPSHOTS = auto()
    POST_FINAL_COMMIT_SNAPSHOTS = auto()
    ABORT_SNAPSHOTS = auto()
    DELETE_SNAPSHOTS = auto()


SS = SnapshotState
PC = ProviderCall

_BEFORE_CREATED = (
    SS.PREPARING,
    SS.PREPARED,
    SS.PRECOMMITTED,
    SS.COMMITTED,
    SS.POSTCOMMITTED,
    SS.PREFINALCOMMITTED,
)

#: Every transition of the provider role.
TABLE: dict[tuple[SnapshotState, ProviderCall], SnapshotState] = {
    (SS.UNKNOWN, PC.BEGIN_PREPARE_SNAPSHOT): SS.PREPARING,
    (SS.PREPARING, PC.BEGIN_PREPARE_SNAPSHOT): SS.PREPARING,
    (SS.PREPARING, PC.END_PREPARE_SNAPSHOTS): SS.PREPARED,
    (SS.PREPARED, PC.PRE_COMMIT_SNAPSHOTS): SS.PRECOMMITTED,
    (SS.PRECOMMITTED, PC.COMMIT_SNAPSHOTS): SS.COMMITTED,
    (SS.COMMITTED, PC.POST_COMMIT_SNAPSHOTS): SS.POSTCOMMITTED,
    (SS.POSTCOMMITTED, PC.PRE_FINAL_COMMIT_SNAPSHOTS): SS.PREFINALCOMMITTED,
    (SS.PREFINALCOMMITTED, PC.POST_FINAL_COMMIT_SNAPSHOTS): SS.CREATED,
    **{(s, PC.ABORT_SNAPSHOTS): SS.ABORTED for s in _BEFORE_CREATED},
    (SS.ABORTED, PC.ABORT_SNAPSHOTS): SS.ABORTED,
    (SS.CREATED, PC.DELETE_SNAPSHOTS): SS.DELETED,
}


class ProviderMachine:
    """One provider's snapshot-set state."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.state = SnapshotState.UNKNOWN

    def accepts(self, call: ProviderCall) -> bool:
        """Whether ``call`` is legal in the provider's state."""
        return (self.state, call) in TABLE

    def send(self, call: ProviderCall) -> SnapshotState:
        nxt = TABLE.get((self.state, call))
        if nxt is None:
            raise protocol_error(self.role, self.state, call)
        self.state = nxt
        return nxt

    @property
    def committed(self) -> bool:
        """The point in time exists (COMMITTED or later, not aborted/deleted)."""
        return self.state in (SS.COMMITTED, SS.POSTCOMMITTED, SS.PREFINALCOMMITTED, SS.CREATED)
