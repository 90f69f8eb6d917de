"""The requester's role: the ``IVssBackupComponents`` call order (spec §1), enforced.

``TABLE[(state, call)] = (next state, who may make the call)``: ``ANY`` context, only a context
with writers (``VSS_CTX_BACKUP``, ``APP_ROLLBACK``: AddComponent, PrepareForBackup, BackupComplete
need writers), or only a writer-less one (``FILE_SHARE_BACKUP``/``NAS_ROLLBACK``, vshadow ``-nw``,
which may start a set straight after initialisation and snapshot it without PrepareForBackup). A
call the table refuses raises ``VSS_E_BAD_STATE`` and leaves the state alone. One rule lives
outside the table: a set holds at most :data:`~vssim.vss.limits.MAX_VOLUMES_PER_SET` volumes — the
65th ``AddToSnapshotSet`` raises ``VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED`` (state unchanged),
and an empty set cannot be snapshotted. The rules over several roles at once are the snapshot
set's (:mod:`vssim.vss.snapshot_set`).
"""

from __future__ import annotations

from enum import Enum, auto

from vssim.vss.enums import HResult, SnapshotContext
from vssim.vss.limits import MAX_VOLUMES_PER_SET
from vssim.vss.machine import protocol_error


class BcCall(Enum):
    INITIALIZE_FOR_BACKUP = auto()
    SET_CONTEXT = auto()
    SET_BACKUP_STATE = auto()
    GATHER_WRITER_METADATA = auto()
    ADD_COMPONENT = auto()
    START_SNAPSHOT_SET = auto()
    ADD_TO_SNAPSHOT_SET = auto()
    PREPARE_FOR_BACKUP = auto()
    GATHER_WRITER_STATUS = auto()
    DO_SNAPSHOT_SET = auto()
    SET_BACKUP_SUCCEEDED = auto()
    BACKUP_COMPLETE = auto()
    ABORT_BACKUP = auto()
    RELEASE = auto()


class BcState(Enum):
    CREATED = auto()
    INITIALIZED = auto()
    METADATA_GATHERED = auto()
    SET_STARTED = auto()
    BACKUP_PREPARED = auto()
    SNAPSHOT_DONE = auto()
    COMPLETED = auto()
    ABORTED = auto()
    RELEASED = auto()


class Who(Enum):
    ANY = auto()
    WRITERS = auto()
    NO_WRITERS = auto()


S = BcState
C = BcCall

#: Every transition of the requester role.
TABLE: dict[tuple[BcState, BcCall], tuple[BcState, Who]] = {
    (S.CREATED, C.INITIALIZE_FOR_BACKUP): (S.INITIALIZED, Who.ANY),
    (S.INITIALIZED, C.SET_CONTEXT): (S.INITIALIZED, Who.ANY),
    (S.INITIALIZED, C.SET_BACKUP_STATE): (S.INITIALIZED, Who.ANY),
    (S.INITIALIZED, C.GATHER_WRITER_METADATA): (S.METADATA_GATHERED, Who.WRITERS),
    (S.INITIALIZED, C.START_SNAPSHOT_SET): (S.SET_STARTED, Who.NO_WRITERS),
    (S.METADATA_GATHERED, C.ADD_COMPONENT): (S.METADATA_GATHERED, Who.WRITERS),
    (S.METADATA_GATHERED, C.GATHER_WRITER_STATUS): (S.METADATA_GATHERED, Who.WRITERS),
    (S.METADATA_GATHERED, C.START_SNAPSHOT_SET): (S.SET_STARTED, Who.WRITERS),
    (S.SET_STARTED, C.ADD_TO_SNAPSHOT_SET): (S.SET_STARTED, Who.ANY),
    (S.SET_STARTED, C.PREPARE_FOR_BACKUP): (S.BACKUP_PREPARED, Who.WRITERS),
    (S.SET_STARTED, C.DO_SNAPSHOT_SET): (S.SNAPSHOT_DONE, Who.NO_WRITERS),
    (S.BACKUP_PREPARED, C.GATHER_WRITER_STATUS): (S.BACKUP_PREPARED, Who.WRITERS),
    (S.BACKUP_PREPARED, C.DO_SNAPSHOT_SET): (S.SNAPSHOT_DONE, Who.WRITERS),
    (S.SNAPSHOT_DONE, C.GATHER_WRITER_STATUS): (S.SNAPSHOT_DONE, Who.WRITERS),
    (S.SNAPSHOT_DONE, C.SET_BACKUP_SUCCEEDED): (S.SNAPSHOT_DONE, Who.WRITERS),
    (S.SNAPSHOT_DONE, C.BACKUP_COMPLETE): (S.COMPLETED, Who.WRITERS),
    (S.COMPLETED, C.GATHER_WRITER_STATUS): (S.COMPLETED, Who.WRITERS),
    (S.ABORTED, C.GATHER_WRITER_STATUS): (S.ABORTED, Who.WRITERS),
    **{
        (s, C.ABORT_BACKUP): (S.ABORTED, Who.ANY)
        for s in (S.METADATA_GATHERED, S.SET_STARTED, S.BACKUP_PREPARED, S.SNAPSHOT_DONE)
    },
    **{(s, C.RELEASE): (S.RELEASED, Who.ANY) for s in BcState if s is not S.RELEASED},
}


class BackupComponentsMachine:
    """One ``IVssBackupComponents`` object's call-order state."""

    ROLE = "requester (IVssBackupComponents)"

    def __init__(self, context: SnapshotContext = SnapshotContext.BACKUP) -> None:
        self.state = BcState.CREATED
        self.context = context
        self.volumes: list[str] = []

    def accepts(self, call: BcCall, context: SnapshotContext | None = None) -> bool:
        """Whether the table allows ``call`` now, for this context (or SetContext's argument)."""
        step = TABLE.get((self.state, call))
        return step is not None and self._who_allows(call, step[1], context)

    def _who_allows(self, call: BcCall, who: Who, context: SnapshotContext | None) -> bool:
        with_writers = (context if context is not None else self.context).with_writers
        return call is C.SET_CONTEXT or not (
            (who is Who.WRITERS and not with_writers) or (who is Who.NO_WRITERS and with_writers)
        )

    def send(self, call: BcCall, context: SnapshotContext | None = None) -> BcState:
        """Make ``call``; ``context`` is SetContext's argument. Raises VssProtocolError."""
        step = TABLE.get((self.state, call))
        if step is None:
            raise protocol_error(self.ROLE, self.state, call)
        nxt, who = step
        if not self._who_allows(call, who, context):
            why = "needs writers" if who is Who.WRITERS else "only without writers"
            raise protocol_error(self.ROLE, self.state, call, why=f"{why}, context {self.context}")
        if call is C.DO_SNAPSHOT_SET and not self.volumes:
            raise protocol_error(self.ROLE, self.state, call, why="the snapshot set is empty")
        if call is C.SET_CONTEXT and context is not None:
            self.context = context
        self.state = nxt
        return nxt

    def add_volume(self, volume: str) -> BcState:
        """``AddToSnapshotSet``: at most 64 volumes; the same volume once."""
        if (self.state, C.ADD_TO_SNAPSHOT_SET) in TABLE:
            if len(self.volumes) >= MAX_VOLUMES_PER_SET:
                raise protocol_error(
                    self.ROLE,
                    self.state,
                    C.ADD_TO_SNAPSHOT_SET,
                    HResult.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED,
                    f"the set already holds {MAX_VOLUMES_PER_SET} volumes",
                )
            if volume.lower() in (v.lower() for v in self.volumes):
                raise protocol_error(
                    self.ROLE,
                    self.state,
                    C.ADD_TO_SNAPSHOT_SET,
                    HResult.VSS_E_OBJECT_ALREADY_EXISTS,
                    f"{volume} is already in the set",
                )
        state = self.send(C.ADD_TO_SNAPSHOT_SET)
        self.volumes.append(volume)
        return state
