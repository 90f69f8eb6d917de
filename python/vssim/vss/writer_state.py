"""The writer role: what a VSS writer may be sent, in which order, and what it reports.

A writer's *phase* (:class:`WriterPhase`) is finer than the ``VSS_WRITER_STATE`` it reports:
STABLE is reported before a backup, after PrepareForBackup, after BackupComplete and after an
abort. ``TABLE[(phase, event)] = (next phase if the writer's handler succeeds, next phase if it
fails)``; a failure also records the writer's failure HRESULT. ``FREEZE_TIMEOUT`` comes from the
snapshot set (:mod:`vssim.vss.snapshot_set`) when the freeze window
(:data:`~vssim.vss.limits.FREEZE_WINDOW_S`) expires before Thaw: the writer fails at freeze with
``VSS_E_WRITERERROR_TIMEOUT``. ``ABORT`` keeps a failed phase.
"""

from __future__ import annotations

from enum import Enum, auto

from vssim.errors import VssProtocolError
from vssim.vss.enums import HResult, WriterState
from vssim.vss.machine import protocol_error


class WriterEvent(Enum):
    IDENTIFY = auto()
    PREPARE_BACKUP = auto()
    PREPARE_SNAPSHOT = auto()
    FREEZE = auto()
    THAW = auto()
    POST_SNAPSHOT = auto()
    BACKUP_COMPLETE = auto()
    ABORT = auto()
    BACKUP_SHUTDOWN = auto()
    FREEZE_TIMEOUT = auto()


class WriterPhase(Enum):
    IDLE = auto()
    IDENTIFIED = auto()
    BACKUP_PREPARED = auto()
    WAITING_FOR_FREEZE = auto()
    WAITING_FOR_THAW = auto()
    WAITING_FOR_POST_SNAPSHOT = auto()
    WAITING_FOR_BACKUP_COMPLETE = auto()
    COMPLETED = auto()
    ABORTED = auto()
    FAILED_AT_IDENTIFY = auto()
    FAILED_AT_PREPARE_BACKUP = auto()
    FAILED_AT_PREPARE_SNAPSHOT = auto()
    FAILED_AT_FREEZE = auto()
    FAILED_AT_THAW = auto()
    FAILED_AT_POST_SNAPSHOT = auto()
    FAILED_AT_BACKUP_COMPLETE = auto()
    FAILED_AT_BACKUPSHUTDOWN = auto()

    @property
    def reported(self) -> WriterState:
        """The ``VSS_WRITER_STATE`` a writer in this phase reports (GatherWriterStatus)."""
        return _REPORTED[self]

    @property
    def failed(self) -> bool:
        return self.name.startswith("FAILED_AT_")


P = WriterPhase
E = WriterEvent

_REPORTED = {
    P.IDLE: WriterState.STABLE,
    P.IDENTIFIED: WriterState.STABLE,
    P.BACKUP_PREPARED: WriterState.STABLE,
    P.WAITING_FOR_FREEZE: WriterState.WAITING_FOR_FREEZE,
    P.WAITING_FOR_THAW: WriterState.WAITING_FOR_THAW,
    P.WAITING_FOR_POST_SNAPSHOT: WriterState.WAITING_FOR_POST_SNAPSHOT,
    P.WAITING_FOR_BACKUP_COMPLETE: WriterState.WAITING_FOR_BACKUP_COMPLETE,
    P.COMPLETED: WriterState.STABLE,
    P.ABORTED: WriterState.STABLE,
    **{p: WriterState[p.name] for p in WriterPhase if p.name.startswith("FAILED_AT_")},
}

FAILED_PHASES = tuple(p for p in WriterPhase if p.failed)
#: Phases in which a backup is under way (an Abort is meaningful).
_ABORTABLE = (
    P.IDENTIFIED,
    P.BACKUP_PREPARED,
    P.WAITING_FOR_FREEZE,
    P.WAITING_FOR_THAW,
    P.WAITING_FOR_POST_SNAPSHOT,
    P.WAITING_FOR_BACKUP_COMPLETE,
)

#: Every transition of the writer role: (phase, event) -> (on success, on failure).
TABLE: dict[tuple[WriterPhase, WriterEvent], tuple[WriterPhase, WriterPhase]] = {
    (P.IDLE, E.IDENTIFY): (P.IDENTIFIED, P.FAILED_AT_IDENTIFY),
    (P.IDENTIFIED, E.IDENTIFY): (P.IDENTIFIED, P.FAILED_AT_IDENTIFY),
    (P.COMPLETED, E.IDENTIFY): (P.IDENTIFIED, P.FAILED_AT_IDENTIFY),
    (P.ABORTED, E.IDENTIFY): (P.IDENTIFIED, P.FAILED_AT_IDENTIFY),
    (P.IDENTIFIED, E.PREPARE_BACKUP): (P.BACKUP_PREPARED, P.FAILED_AT_PREPARE_BACKUP),
    (P.BACKUP_PREPARED, E.PREPARE_SNAPSHOT): (P.WAITING_FOR_FREEZE, P.FAILED_AT_PREPARE_SNAPSHOT),
    (P.WAITING_FOR_FREEZE, E.FREEZE): (P.WAITING_FOR_THAW, P.FAILED_AT_FREEZE),
    (P.WAITING_FOR_THAW, E.FREEZE_TIMEOUT): (P.FAILED_AT_FREEZE, P.FAILED_AT_FREEZE),
    (P.WAITING_FOR_THAW, E.THAW): (P.WAITING_FOR_POST_SNAPSHOT, P.FAILED_AT_THAW),
    (P.WAITING_FOR_POST_SNAPSHOT, E.POST_SNAPSHOT): (
        P.WAITING_FOR_BACKUP_COMPLETE,
        P.FAILED_AT_POST_SNAPSHOT,
    ),
    (P.WAITING_FOR_BACKUP_COMPLETE, E.BACKUP_COMPLETE): (P.COMPLETED, P.FAILED_AT_BACKUP_COMPLETE),
    **{(p, E.ABORT): (P.ABORTED, P.ABORTED) for p in _ABORTABLE},
    **{(p, E.ABORT): (p, p) for p in FAILED_PHASES},
    (P.ABORTED, E.ABORT): (P.ABORTED, P.ABORTED),
    (P.COMPLETED, E.BACKUP_SHUTDOWN): (P.IDLE, P.FAILED_AT_BACKUPSHUTDOWN),
    (P.ABORTED, E.BACKUP_SHUTDOWN): (P.IDLE, P.FAILED_AT_BACKUPSHUTDOWN),
    (P.IDENTIFIED, E.BACKUP_SHUTDOWN): (P.IDLE, P.FAILED_AT_BACKUPSHUTDOWN),
    **{(p, E.BACKUP_SHUTDOWN): (P.IDLE, P.IDLE) for p in FAILED_PHASES},
}


class WriterMachine:
    """One writer instance's protocol state."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.phase = WriterPhase.IDLE
        self.failure: int = HResult.S_OK

    @property
    def state(self) -> WriterState:
        return self.phase.reported

    def accepts(self, event: WriterEvent) -> bool:
        """Whether ``event`` is legal in the writer's phase."""
        return (self.phase, event) in TABLE

    def refusal(self, event: WriterEvent) -> VssProtocolError:
        """The error an illegal ``event`` gets (for a driver that checks before it acts)."""
        return protocol_error(self.role, self.phase, event)

    def send(self, event: WriterEvent, ok: bool = True, hr: int = HResult.S_OK) -> WriterPhase:
        """Deliver ``event``; ``ok=False`` means the writer's handler failed with ``hr``.
        Raises VssProtocolError (VSS_E_BAD_STATE, phase unchanged) when the event is illegal."""
        step = TABLE.get((self.phase, event))
        if step is None:
            raise self.refusal(event)
        if event is E.FREEZE_TIMEOUT:
            ok, hr = False, HResult.VSS_E_WRITERERROR_TIMEOUT
        if event is E.IDENTIFY and not self.phase.failed:
            self.failure = HResult.S_OK
        self.phase = step[0] if ok else step[1]
        if not ok:
            self.failure = hr or HResult.VSS_E_WRITERERROR_NONRETRYABLE
        elif self.phase is P.IDLE:
            self.failure = HResult.S_OK
        return self.phase
