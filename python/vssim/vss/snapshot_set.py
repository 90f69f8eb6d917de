"""The snapshot set's joint rules: what involves several roles at once (after h11's
state-triggered transitions).

How it works: each role has its own table (requester, writer, provider). One
:class:`SnapshotSetMachine` per backup holds what no single role can decide, as a table over the
set's states and events, ``TABLE[(state, event)] = next state``, plus the joint rules that fire
when an event arrives:

* **adding a volume** (:meth:`~SnapshotSetMachine.add_volume`): a system-provider volume that
  already has :data:`~vssim.vss.limits.MAX_SNAPSHOTS` shadow copies takes no more
  (``VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED``); a transportable set takes only volumes whose
  provider can move a snapshot to another host (``VSS_E_VOLUME_NOT_SUPPORTED``). Each volume gets
  a provider machine.
* **provider steps**: ``BEGIN_PREPARE_SNAPSHOT`` … ``POST_FINAL_COMMIT_SNAPSHOTS`` (the set's
  events named as the provider calls) go, in this order only, to every volume's provider.
* **windows**: ``FREEZE`` opens the freeze window (:data:`~vssim.vss.limits.FREEZE_WINDOW_S`, only
  when the set has writers), ``THAW`` closes it; ``FLUSH`` opens flush-and-hold
  (:data:`~vssim.vss.limits.FLUSH_AND_HOLD_S`), ``COMMIT_SNAPSHOTS`` closes it (held writes
  released). The machine has no clock: events carry their time (``at``), and
  :meth:`~SnapshotSetMachine.next_expiry` tells the driver which window closes first
  (flush-and-hold on a tie). The driver sends that expiry as an event:
  ``FREEZE_WINDOW_EXPIRED`` aborts the set with ``VSS_E_WRITERERROR_TIMEOUT`` and fails every
  writer waiting for Thaw with ``FREEZE_TIMEOUT`` (the fan-out); ``HOLD_WINDOW_EXPIRED`` aborts
  with ``VSS_E_FLUSH_WRITES_TIMEOUT`` while the file systems flush, ``VSS_E_HOLD_WRITES_TIMEOUT``
  while the commit holds writes.
* **writers**: ``WRITERS_ANSWERED`` is the driver's checkpoint after every writer handled an event
  (and after GatherWriterStatus): an involved writer in a failed state aborts the set with its
  failure HRESULT — no partial backups.
* **the end**: ``BACKUP_COMPLETE`` (BackupComplete answered, or the end of a set without writers)
  decides between COMPLETED and FAILED: ``VSS_E_INSUFFICIENT_STORAGE`` after ``COPY_LOST``
  (volsnap deleted the set's own shadow copy while it was read), else the failure of an involved
  writer that failed at BackupComplete.
  ``ABORT`` ends any live set and aborts every provider that can still abort.

An event the table does not list raises :class:`~vssim.errors.VssProtocolError`
(``VSS_E_BAD_STATE``) naming the set, its state and the event, and changes nothing. A joint rule
that refuses (a volume, see above) raises :class:`~vssim.errors.VssError` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import Protocol

from vssim.errors import VssError
from vssim.hresults import HResult, hresult_name
from vssim.vss.limits import FLUSH_AND_HOLD_S, FREEZE_WINDOW_S, MAX_SNAPSHOTS
from vssim.vss.machine import protocol_error
from vssim.vss.provider_state import ProviderCall, ProviderMachine
from vssim.vss.writer_state import WriterEvent, WriterMachine


class SetState(Enum):
    #: Writers identify and components are added: no set yet.
    GATHERING = auto()
    #: StartSnapshotSet: volumes are added.
    OPEN = auto()
    #: DoSnapshotSet: PrepareForSnapshot, the providers prepare.
    PREPARING = auto()
    PREPARED = auto()
    #: Freeze: the freeze window is open (with writers).
    FROZEN = auto()
    PRECOMMITTED = auto()
    #: Flush-and-hold: the file systems flush (its window is open).
    FLUSHING = auto()
    #: Writes are held while the providers commit.
    HOLDING = auto()
    #: The point in time: the shadow copies exist; held writes are released.
    COMMITTED = auto()
    POSTCOMMITTED = auto()
    #: Thaw: the freeze window is closed.
    THAWED = auto()
    PREFINALCOMMITTED = auto()
    #: PostFinalCommitSnapshots: every provider created its copy.
    CREATED = auto()
    #: The requester was told (seed step ⑧); the data is copied from here.
    NOTIFIED = auto()
    COMPLETED = auto()
    FAILED = auto()
    ABORTED = auto()


class SetEvent(Enum):
    START = auto()
    ADD_VOLUME = auto()
    DO_SNAPSHOT_SET = auto()
    BEGIN_PREPARE_SNAPSHOT = auto()
    END_PREPARE_SNAPSHOTS = auto()
    FREEZE = auto()
    PRE_COMMIT_SNAPSHOTS = auto()
    FLUSH = auto()
    HOLD = auto()
    COMMIT_SNAPSHOTS = auto()
    POST_COMMIT_SNAPSHOTS = auto()
    THAW = auto()
    PRE_FINAL_COMMIT_SNAPSHOTS = auto()
    POST_FINAL_COMMIT_SNAPSHOTS = auto()
    REQUESTER_NOTIFIED = auto()
    COPY_LOST = auto()
    BACKUP_COMPLETE = auto()
    WRITERS_ANSWERED = auto()
    FREEZE_WINDOW_EXPIRED = auto()
    HOLD_WINDOW_EXPIRED = auto()
    ABORT = auto()


S = SetState
E = SetEvent

#: The set events that are provider calls (named as the calls), sent to every volume's provider.
PROVIDER_CALLS: dict[SetEvent, ProviderCall] = {
    e: ProviderCall[e.name] for e in SetEvent if e.name in ProviderCall.__members__
}
#: States with the freeze window open (between Freeze and Thaw).
FREEZE_OPEN = (S.FROZEN, S.PRECOMMITTED, S.FLUSHING, S.HOLDING, S.COMMITTED, S.POSTCOMMITTED)
#: States with flush-and-hold open, and the HRESULT its expiry gives in each.
HOLD_TIMEOUTS = {
    S.FLUSHING: HResult.VSS_E_FLUSH_WRITES_TIMEOUT,
    S.HOLDING: HResult.VSS_E_HOLD_WRITES_TIMEOUT,
}
#: States a backup is still under way in.
LIVE = tuple(s for s in SetState if s not in (S.COMPLETED, S.FAILED, S.ABORTED))

#: Every transition of the snapshot set (the next state when no joint rule fires; the rules above
#: send WRITERS_ANSWERED and BACKUP_COMPLETE elsewhere, and the expiries always abort).
TABLE: dict[tuple[SetState, SetEvent], SetState] = {
    (S.GATHERING, E.START): S.OPEN,
    (S.OPEN, E.ADD_VOLUME): S.OPEN,
    (S.OPEN, E.DO_SNAPSHOT_SET): S.PREPARING,
    (S.PREPARING, E.BEGIN_PREPARE_SNAPSHOT): S.PREPARING,
    (S.PREPARING, E.END_PREPARE_SNAPSHOTS): S.PREPARED,
    (S.PREPARED, E.FREEZE): S.FROZEN,
    (S.FROZEN, E.PRE_COMMIT_SNAPSHOTS): S.PRECOMMITTED,
    (S.PRECOMMITTED, E.FLUSH): S.FLUSHING,
    (S.FLUSHING, E.HOLD): S.HOLDING,
    (S.HOLDING, E.COMMIT_SNAPSHOTS): S.COMMITTED,
    (S.COMMITTED, E.POST_COMMIT_SNAPSHOTS): S.POSTCOMMITTED,
    (S.POSTCOMMITTED, E.THAW): S.THAWED,
    (S.THAWED, E.PRE_FINAL_COMMIT_SNAPSHOTS): S.PREFINALCOMMITTED,
    (S.PREFINALCOMMITTED, E.POST_FINAL_COMMIT_SNAPSHOTS): S.CREATED,
    (S.CREATED, E.REQUESTER_NOTIFIED): S.NOTIFIED,
    (S.NOTIFIED, E.COPY_LOST): S.NOTIFIED,
    (S.NOTIFIED, E.BACKUP_COMPLETE): S.COMPLETED,
    **{(s, E.WRITERS_ANSWERED): s for s in LIVE},
    **{(s, E.FREEZE_WINDOW_EXPIRED): S.ABORTED for s in FREEZE_OPEN},
    **{(s, E.HOLD_WINDOW_EXPIRED): S.ABORTED for s in HOLD_TIMEOUTS},
    **{(s, E.ABORT): S.ABORTED for s in (*LIVE, S.ABORTED)},
}


class WriterSeat(Protocol):
    """A writer taking part in the backup, as the set sees it."""

    @property
    def machine(self) -> WriterMachine: ...

    #: Selected components belong to it (or it was relayed to): its failure fails the backup.
    @property
    def involved(self) -> bool: ...


@dataclass(frozen=True)
class Expiry:
    """The window that closes first: when, and the event its expiry is."""

    at: float
    event: SetEvent


class SnapshotSetMachine:
    """One backup's snapshot set: its state, its windows, and the joint rules over its writers
    and providers (see the module doc)."""

    def __init__(self, role: str, with_writers: bool, transportable: bool = False) -> None:
        self.role = role
        self.with_writers = with_writers
        self.transportable = transportable
        self.state = SetState.GATHERING
        self.writers: list[WriterSeat] = []
        #: One provider machine per volume, by the volume's name.
        self.providers: dict[str, ProviderMachine] = {}
        self.freeze_deadline: float | None = None
        self.hold_deadline: float | None = None
        #: The requester was told the set exists (it stays told through a later abort).
        self.notified = False
        self.copy_lost = False
        #: Why the set aborted or failed: (HRESULT, message).
        self.failure: tuple[int, str] | None = None
        #: The writers the last FREEZE_WINDOW_EXPIRED failed with FREEZE_TIMEOUT, in order.
        self.timed_out: list[WriterSeat] = []
        #: The volumes whose provider the last ABORT aborted, in order.
        self.aborted_providers: list[str] = []

    # --- participants -------------------------------------------------------------------------

    def join(self, writer: WriterSeat) -> None:
        """``writer`` takes part from now on (a relay reaches another node's writer)."""
        self.writers.append(writer)

    def add_volume(
        self, volume: str, where: str, *, system_provider: bool, transportable: bool, existing: int
    ) -> SetState:
        """``AddToSnapshotSet`` of ``volume`` (``where``: its mount point, for messages) with the
        volume's facts: made by the system provider, by a provider that can transport, with
        ``existing`` shadow copies. Raises VssError (the set unchanged) when a rule refuses it."""
        self._check(E.ADD_VOLUME)
        if system_provider and existing >= MAX_SNAPSHOTS:
            raise VssError(
                HResult.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED,
                f"{where} already has {existing} shadow copies",
            )
        if self.transportable and not transportable:
            raise VssError(
                HResult.VSS_E_VOLUME_NOT_SUPPORTED,
                f"{where}: the system provider cannot make transportable copies",
            )
        self.providers[volume] = ProviderMachine(f"provider for {volume}")
        return self.send(E.ADD_VOLUME)

    # --- events -------------------------------------------------------------------------------

    def accepts(self, event: SetEvent) -> bool:
        return (self.state, event) in TABLE

    def next_expiry(self) -> Expiry | None:
        """The open window that closes first (flush-and-hold on a tie), or None."""
        freeze, hold = self.freeze_deadline, self.hold_deadline
        if hold is not None and (freeze is None or hold <= freeze):
            return Expiry(hold, E.HOLD_WINDOW_EXPIRED)
        if freeze is not None:
            return Expiry(freeze, E.FREEZE_WINDOW_EXPIRED)
        return None

    def send(
        self, event: SetEvent, at: float = 0.0, hr: int = HResult.S_OK, why: str = ""
    ) -> SetState:
        """Deliver ``event`` at time ``at`` (``hr``/``why``: an ABORT's reason). Raises
        VssProtocolError (state unchanged) when the table does not list it."""
        nxt = self._check(event)
        if event in PROVIDER_CALLS:
            for m in self.providers.values():
                m.send(PROVIDER_CALLS[event])
        if event is E.FREEZE and self.with_writers:
            self.freeze_deadline = at + FREEZE_WINDOW_S
        elif event is E.THAW:
            self.freeze_deadline = None
        elif event is E.FLUSH:
            self.hold_deadline = at + FLUSH_AND_HOLD_S
        elif event is E.COMMIT_SNAPSHOTS:
            self.hold_deadline = None
        elif event is E.REQUESTER_NOTIFIED:
            self.notified = True
        elif event is E.COPY_LOST:
            self.copy_lost = True
        elif event is E.WRITERS_ANSWERED:
            failed = self._failed_writer()
            if failed is not None:
                w = failed.machine
                nxt = self._abort(w.failure, f"writer {w.role} is in state {w.state}")
        elif event is E.BACKUP_COMPLETE:
            nxt = self._complete()
        elif event is E.FREEZE_WINDOW_EXPIRED:
            timeout = WriterEvent.FREEZE_TIMEOUT
            self.timed_out = [seat for seat in self.writers if seat.machine.accepts(timeout)]
            for seat in self.timed_out:
                seat.machine.send(timeout)
            nxt = self._expired(HResult.VSS_E_WRITERERROR_TIMEOUT)
        elif event is E.HOLD_WINDOW_EXPIRED:
            nxt = self._expired(HOLD_TIMEOUTS[self.state])
        elif event is E.ABORT:
            nxt = self._abort(hr, why)
        self.state = nxt
        return nxt

    # --- the rules ----------------------------------------------------------------------------

    def _check(self, event: SetEvent) -> SetState:
        nxt = TABLE.get((self.state, event))
        if nxt is None:
            raise protocol_error(self.role, self.state, event)
        return nxt

    def _failed_writer(self) -> WriterSeat | None:
        return next((w for w in self.writers if w.involved and w.machine.phase.failed), None)

    def _expired(self, hr: int) -> SetState:
        return self._abort(hr, hresult_name(hr))

    def _abort(self, hr: int, why: str) -> SetState:
        if self.failure is None:
            self.failure = (hr, why)
        self.freeze_deadline = self.hold_deadline = None
        self.aborted_providers = [
            name for name, m in self.providers.items() if m.accepts(ProviderCall.ABORT_SNAPSHOTS)
        ]
        for name in self.aborted_providers:
            self.providers[name].send(ProviderCall.ABORT_SNAPSHOTS)
        return S.ABORTED

    def _complete(self) -> SetState:
        if self.copy_lost:
            self.failure = (
                HResult.VSS_E_INSUFFICIENT_STORAGE,
                "the shadow copy was deleted while it was read (diff area full)",
            )
            return S.FAILED
        failed = self._failed_writer()
        if failed is not None:
            w = failed.machine
            self.failure = (w.failure, f"writer {w.role} failed at BackupComplete")
            return S.FAILED
        return S.COMPLETED

    @property
    def hresult(self) -> int:
        """S_OK, or the HRESULT the set aborted or failed with."""
        return HResult.S_OK if self.failure is None else self.failure[0]
