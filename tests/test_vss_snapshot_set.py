"""The snapshot set's joint rules, driven straight from the machine (no clock: events carry their
time): every (state, event) pair, the windows and which HRESULT their expiry gives, the fan-out of
FREEZE_TIMEOUT, a failed writer aborting the set, the provider steps, the 513th snapshot and the
transportable rule, and how a backup ends."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from vssim.errors import VssError, VssProtocolError
from vssim.vss import snapshot_set as ss
from vssim.vss.enums import HResult, SnapshotState
from vssim.vss.limits import FLUSH_AND_HOLD_S, FREEZE_WINDOW_S, MAX_SNAPSHOTS
from vssim.vss.provider_state import ProviderMachine
from vssim.vss.writer_state import WriterMachine, WriterPhase

S, E = ss.SetState, ss.SetEvent
PAIRS = list(itertools.product(ss.SetState, ss.SetEvent))
#: The happy path of a set with writers, from StartSnapshotSet to BackupComplete.
FLOW = [
    E.START,
    E.ADD_VOLUME,
    E.DO_SNAPSHOT_SET,
    E.BEGIN_PREPARE_SNAPSHOT,
    E.END_PREPARE_SNAPSHOTS,
    E.FREEZE,
    E.PRE_COMMIT_SNAPSHOTS,
    E.FLUSH,
    E.HOLD,
    E.COMMIT_SNAPSHOTS,
    E.POST_COMMIT_SNAPSHOTS,
    E.THAW,
    E.PRE_FINAL_COMMIT_SNAPSHOTS,
    E.POST_FINAL_COMMIT_SNAPSHOTS,
    E.REQUESTER_NOTIFIED,
    E.BACKUP_COMPLETE,
]


@dataclass
class Seat:
    machine: WriterMachine
    involved: bool = True


def writer(phase: WriterPhase, involved: bool = True, name: str = "w on N1") -> Seat:
    m = WriterMachine(name)
    m.phase = phase
    return Seat(m, involved)


def set_in(state: ss.SetState, with_writers: bool = True) -> ss.SnapshotSetMachine:
    m = ss.SnapshotSetMachine("snapshot set of test", with_writers)
    m.state = state
    return m


def volume(m: ss.SnapshotSetMachine, name: str = "CSV1", **facts: object) -> None:
    kw: dict[str, object] = {"system_provider": True, "transportable": False, "existing": 0}
    kw.update(facts)
    m.add_volume(name, f"C:\\ClusterStorage\\{name}", **kw)  # type: ignore[arg-type]


def until(m: ss.SnapshotSetMachine, last: ss.SetEvent, t: float = 0.0) -> None:
    """Sends the happy path's events up to and including ``last`` at time ``t``."""
    for e in FLOW:
        if e is E.ADD_VOLUME:
            volume(m)
        else:
            m.send(e, at=t)
        if e is last:
            return


# --- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "event"), [p for p in PAIRS if p in ss.TABLE])
def test_legal_events_land_where_the_table_says(state: ss.SetState, event: ss.SetEvent) -> None:
    m = set_in(state)
    assert m.accepts(event)
    assert m.send(event, at=1.0) is ss.TABLE[(state, event)]
    assert m.state is ss.TABLE[(state, event)]


@pytest.mark.parametrize(("state", "event"), [p for p in PAIRS if p not in ss.TABLE])
def test_illegal_events_are_bad_state_and_change_nothing(
    state: ss.SetState, event: ss.SetEvent
) -> None:
    m = set_in(state)
    m.providers["CSV1"] = provider = ProviderMachine("provider for CSV1")
    assert not m.accepts(event)
    with pytest.raises(VssProtocolError) as err:
        m.send(event, at=1.0)
    assert err.value.hresult == HResult.VSS_E_BAD_STATE
    assert (err.value.role, err.value.state, err.value.event) == (m.role, state.name, event.name)
    assert m.state is state
    assert provider.state is SnapshotState.UNKNOWN
    assert m.freeze_deadline is m.hold_deadline is None
    assert m.failure is None


def test_happy_path_drives_every_provider_to_created_and_completes() -> None:
    m = ss.SnapshotSetMachine("set", with_writers=True)
    m.join(writer(WriterPhase.WAITING_FOR_BACKUP_COMPLETE))
    m.send(E.START)
    volume(m, "CSV1")
    volume(m, "CSV2")
    seen = []
    for e in FLOW[2:]:
        seen.append(m.send(e, at=5.0))
        if e is E.COMMIT_SNAPSHOTS:
            assert {p.state for p in m.providers.values()} == {SnapshotState.COMMITTED}
    assert seen[-3:] == [S.CREATED, S.NOTIFIED, S.COMPLETED]
    assert {p.state for p in m.providers.values()} == {SnapshotState.CREATED}
    assert m.notified
    assert m.failure is None
    assert m.hresult == HResult.S_OK


# --- windows -----------------------------------------------------------------------------------


def test_freeze_window_opens_at_freeze_and_closes_at_thaw() -> None:
    m = ss.SnapshotSetMachine("set", with_writers=True)
    until(m, E.END_PREPARE_SNAPSHOTS)
    assert m.next_expiry() is None
    m.send(E.FREEZE, at=100.0)
    assert m.next_expiry() == ss.Expiry(100.0 + FREEZE_WINDOW_S, E.FREEZE_WINDOW_EXPIRED)
    for e in (E.PRE_COMMIT_SNAPSHOTS, E.FLUSH, E.HOLD, E.COMMIT_SNAPSHOTS, E.POST_COMMIT_SNAPSHOTS):
        m.send(e, at=101.0)
    assert m.next_expiry() == ss.Expiry(100.0 + FREEZE_WINDOW_S, E.FREEZE_WINDOW_EXPIRED)
    m.send(E.THAW, at=102.0)
    assert m.next_expiry() is None


def test_without_writers_there_is_no_freeze_window() -> None:
    m = ss.SnapshotSetMachine("set", with_writers=False)
    until(m, E.PRE_COMMIT_SNAPSHOTS, t=3.0)
    assert m.next_expiry() is None
    m.send(E.FLUSH, at=4.0)
    assert m.next_expiry() == ss.Expiry(4.0 + FLUSH_AND_HOLD_S, E.HOLD_WINDOW_EXPIRED)


@pytest.mark.parametrize(
    ("flush_at", "expect"),
    [
        (10.0, E.HOLD_WINDOW_EXPIRED),  # hold ends at 20, freeze at 60
        (50.0, E.HOLD_WINDOW_EXPIRED),  # a tie at 60: flush-and-hold's
        (55.0, E.FREEZE_WINDOW_EXPIRED),  # freeze ends first, at 60
    ],
)
def test_the_window_that_closes_first(flush_at: float, expect: ss.SetEvent) -> None:
    m = ss.SnapshotSetMachine("set", with_writers=True)
    until(m, E.FREEZE, t=0.0)
    m.send(E.PRE_COMMIT_SNAPSHOTS, at=flush_at)
    m.send(E.FLUSH, at=flush_at)
    due = m.next_expiry()
    assert due is not None
    assert due.event is expect
    assert due.at == min(flush_at + FLUSH_AND_HOLD_S, FREEZE_WINDOW_S)
    m.send(E.HOLD, at=flush_at)
    m.send(E.COMMIT_SNAPSHOTS, at=flush_at)
    assert m.next_expiry() == ss.Expiry(FREEZE_WINDOW_S, E.FREEZE_WINDOW_EXPIRED)


@pytest.mark.parametrize(
    ("last", "hr"),
    [(E.FLUSH, HResult.VSS_E_FLUSH_WRITES_TIMEOUT), (E.HOLD, HResult.VSS_E_HOLD_WRITES_TIMEOUT)],
)
def test_flush_and_hold_expiry_says_which_part_timed_out(last: ss.SetEvent, hr: HResult) -> None:
    m = ss.SnapshotSetMachine("set", with_writers=True)
    thawing = writer(WriterPhase.WAITING_FOR_THAW)
    m.join(thawing)
    until(m, last)
    assert m.send(E.HOLD_WINDOW_EXPIRED, at=10.0) is S.ABORTED
    assert m.hresult == hr
    assert m.timed_out == []
    assert thawing.machine.phase is WriterPhase.WAITING_FOR_THAW  # only Abort reaches it
    assert m.next_expiry() is None


def test_freeze_window_expiry_times_out_every_writer_waiting_for_thaw() -> None:
    m = ss.SnapshotSetMachine("set", with_writers=True)
    frozen = [writer(WriterPhase.WAITING_FOR_THAW, name=f"w{i}") for i in range(3)]
    failed = writer(WriterPhase.FAILED_AT_PREPARE_SNAPSHOT, involved=False)
    for w in [frozen[0], failed, *frozen[1:]]:
        m.join(w)
    until(m, E.PRE_COMMIT_SNAPSHOTS)
    assert m.send(E.FREEZE_WINDOW_EXPIRED, at=60.0) is S.ABORTED
    assert m.hresult == HResult.VSS_E_WRITERERROR_TIMEOUT
    assert m.timed_out == frozen
    for w in frozen:
        assert w.machine.phase is WriterPhase.FAILED_AT_FREEZE
        assert w.machine.failure == HResult.VSS_E_WRITERERROR_TIMEOUT
    assert failed.machine.phase is WriterPhase.FAILED_AT_PREPARE_SNAPSHOT
    assert {p.state for p in m.providers.values()} == {SnapshotState.ABORTED}
    assert m.aborted_providers == ["CSV1"]


# --- writers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [s for s in ss.LIVE])
def test_an_involved_failed_writer_aborts_the_set(state: ss.SetState) -> None:
    m = set_in(state)
    m.join(writer(WriterPhase.WAITING_FOR_FREEZE))
    bad = writer(WriterPhase.FAILED_AT_FREEZE, name="Microsoft Hyper-V VSS Writer on N2")
    bad.machine.failure = HResult.VSS_E_WRITERERROR_RETRYABLE
    m.join(bad)
    assert m.send(E.WRITERS_ANSWERED) is S.ABORTED
    assert m.failure == (
        HResult.VSS_E_WRITERERROR_RETRYABLE,
        "writer Microsoft Hyper-V VSS Writer on N2 is in state VSS_WS_FAILED_AT_FREEZE",
    )


def test_an_uninvolved_failed_writer_does_not() -> None:
    m = set_in(S.FROZEN)
    m.join(writer(WriterPhase.FAILED_AT_FREEZE, involved=False))
    assert m.send(E.WRITERS_ANSWERED) is S.FROZEN
    assert m.failure is None


# --- volumes -----------------------------------------------------------------------------------


def test_the_513th_system_provider_snapshot_is_refused() -> None:
    m = set_in(S.OPEN)
    with pytest.raises(VssError) as err:
        volume(m, existing=MAX_SNAPSHOTS)
    assert err.value.hresult == HResult.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED
    assert f"already has {MAX_SNAPSHOTS} shadow copies" in str(err.value)
    assert m.providers == {}
    assert m.state is S.OPEN
    volume(m, existing=MAX_SNAPSHOTS - 1)
    volume(m, "HW", system_provider=False, existing=MAX_SNAPSHOTS)  # an array's own limits
    assert list(m.providers) == ["CSV1", "HW"]


def test_a_transportable_set_takes_only_transportable_volumes() -> None:
    m = ss.SnapshotSetMachine("set", with_writers=True, transportable=True)
    m.send(E.START)
    with pytest.raises(VssError) as err:
        volume(m)
    assert err.value.hresult == HResult.VSS_E_VOLUME_NOT_SUPPORTED
    assert m.providers == {}
    volume(m, system_provider=False, transportable=True)
    plain = set_in(S.OPEN)
    volume(plain)  # a set that is not transportable takes it
    assert list(plain.providers) == ["CSV1"]


def test_volumes_only_while_the_set_is_open() -> None:
    m = set_in(S.PREPARING)
    with pytest.raises(VssProtocolError):
        volume(m)
    assert m.providers == {}


# --- the end -----------------------------------------------------------------------------------


def test_a_lost_copy_fails_the_backup_before_a_failed_writer() -> None:
    m = set_in(S.NOTIFIED)
    m.join(writer(WriterPhase.FAILED_AT_BACKUP_COMPLETE))
    m.send(E.COPY_LOST)
    assert m.send(E.BACKUP_COMPLETE) is S.FAILED
    assert m.hresult == HResult.VSS_E_INSUFFICIENT_STORAGE


def test_a_writer_failed_at_backup_complete_fails_the_backup() -> None:
    m = set_in(S.NOTIFIED)
    w = writer(WriterPhase.FAILED_AT_BACKUP_COMPLETE, name="Hyper-V on N2")
    w.machine.failure = HResult.VSS_E_WRITERERROR_RETRYABLE
    m.join(w)
    m.join(writer(WriterPhase.FAILED_AT_BACKUP_COMPLETE, involved=False))
    assert m.send(E.BACKUP_COMPLETE) is S.FAILED
    assert m.failure == (
        HResult.VSS_E_WRITERERROR_RETRYABLE,
        "writer Hyper-V on N2 failed at BackupComplete",
    )
    ok = set_in(S.NOTIFIED)
    ok.join(writer(WriterPhase.FAILED_AT_BACKUP_COMPLETE, involved=False))
    assert ok.send(E.BACKUP_COMPLETE) is S.COMPLETED


def test_abort_aborts_the_providers_that_can_and_keeps_the_first_reason() -> None:
    m = ss.SnapshotSetMachine("set", with_writers=True)
    until(m, E.COMMIT_SNAPSHOTS)
    m.send(E.ABORT, hr=HResult.VSS_E_CLUSTER_ERROR, why="node down")
    assert m.aborted_providers == ["CSV1"]
    assert m.providers["CSV1"].state is SnapshotState.ABORTED
    m.send(E.ABORT, hr=HResult.VSS_E_UNEXPECTED, why="again")
    assert m.failure == (HResult.VSS_E_CLUSTER_ERROR, "node down")
    created = ss.SnapshotSetMachine("set", with_writers=True)
    until(created, E.REQUESTER_NOTIFIED)
    created.send(E.ABORT, hr=HResult.VSS_E_CLUSTER_ERROR, why="copy: node down")
    assert created.aborted_providers == []  # a created set is deleted, not aborted
    assert created.notified  # the requester was told: a persistent set may outlive it
    done = set_in(S.COMPLETED)
    assert not done.accepts(E.ABORT)
