"""Every transition of every protocol role, driven straight from the tables (no clock): legal
events land where the table says; every illegal one raises VSS_E_BAD_STATE (or the table's own
HRESULT) naming role, state and event, and leaves the state unchanged."""

from __future__ import annotations

import itertools

import pytest

from vssim.errors import VssProtocolError
from vssim.vss import backup_state as bs
from vssim.vss import provider_state as ps
from vssim.vss import writer_state as ws
from vssim.vss.enums import HResult, SnapshotContext, SnapshotState, WriterState

BAD_STATE = HResult.VSS_E_BAD_STATE

# --- writer ------------------------------------------------------------------------------------

WRITER_PAIRS = list(itertools.product(ws.WriterPhase, ws.WriterEvent))


def writer_in(phase: ws.WriterPhase) -> ws.WriterMachine:
    m = ws.WriterMachine("Microsoft Hyper-V VSS Writer on N1")
    m.phase = phase
    return m


@pytest.mark.parametrize(("phase", "event"), [p for p in WRITER_PAIRS if p in ws.TABLE])
def test_writer_legal_transitions(phase: ws.WriterPhase, event: ws.WriterEvent) -> None:
    ok_next, fail_next = ws.TABLE[(phase, event)]
    m = writer_in(phase)
    if event is ws.WriterEvent.FREEZE_TIMEOUT:
        assert m.send(event) is ws.WriterPhase.FAILED_AT_FREEZE
        assert m.failure == HResult.VSS_E_WRITERERROR_TIMEOUT
        return
    assert m.send(event) is ok_next
    m = writer_in(phase)
    assert m.send(event, ok=False, hr=HResult.VSS_E_WRITERERROR_RETRYABLE) is fail_next
    if fail_next.failed and not phase.failed:
        assert m.failure == HResult.VSS_E_WRITERERROR_RETRYABLE
        assert m.state.is_failed


@pytest.mark.parametrize(("phase", "event"), [p for p in WRITER_PAIRS if p not in ws.TABLE])
def test_writer_illegal_transitions(phase: ws.WriterPhase, event: ws.WriterEvent) -> None:
    m = writer_in(phase)
    with pytest.raises(VssProtocolError) as err:
        m.send(event)
    assert err.value.hresult == BAD_STATE
    assert m.phase is phase
    assert (err.value.role, err.value.state, err.value.event) == (m.role, phase.name, event.name)
    assert "VSS_E_BAD_STATE (0x80042301)" in str(err.value)
    assert m.role in str(err.value)


def test_writer_happy_path_reports_windows_states() -> None:
    m = ws.WriterMachine("w")
    seen = []
    for e in [
        ws.WriterEvent.IDENTIFY,
        ws.WriterEvent.PREPARE_BACKUP,
        ws.WriterEvent.PREPARE_SNAPSHOT,
        ws.WriterEvent.FREEZE,
        ws.WriterEvent.THAW,
        ws.WriterEvent.POST_SNAPSHOT,
        ws.WriterEvent.BACKUP_COMPLETE,
        ws.WriterEvent.BACKUP_SHUTDOWN,
    ]:
        m.send(e)
        seen.append(m.state)
    assert seen == [
        WriterState.STABLE,
        WriterState.STABLE,
        WriterState.WAITING_FOR_FREEZE,
        WriterState.WAITING_FOR_THAW,
        WriterState.WAITING_FOR_POST_SNAPSHOT,
        WriterState.WAITING_FOR_BACKUP_COMPLETE,
        WriterState.STABLE,
        WriterState.STABLE,
    ]


@pytest.mark.parametrize(
    ("steps", "failed_state"),
    [
        (1, WriterState.FAILED_AT_IDENTIFY),
        (2, WriterState.FAILED_AT_PREPARE_BACKUP),
        (3, WriterState.FAILED_AT_PREPARE_SNAPSHOT),
        (4, WriterState.FAILED_AT_FREEZE),
        (5, WriterState.FAILED_AT_THAW),
        (6, WriterState.FAILED_AT_POST_SNAPSHOT),
        (7, WriterState.FAILED_AT_BACKUP_COMPLETE),
    ],
)
def test_writer_fails_at_each_phase_and_abort_keeps_it(
    steps: int, failed_state: WriterState
) -> None:
    order = [
        ws.WriterEvent.IDENTIFY,
        ws.WriterEvent.PREPARE_BACKUP,
        ws.WriterEvent.PREPARE_SNAPSHOT,
        ws.WriterEvent.FREEZE,
        ws.WriterEvent.THAW,
        ws.WriterEvent.POST_SNAPSHOT,
        ws.WriterEvent.BACKUP_COMPLETE,
    ]
    m = ws.WriterMachine("w")
    for e in order[: steps - 1]:
        m.send(e)
    m.send(order[steps - 1], ok=False, hr=HResult.VSS_E_WRITERERROR_NONRETRYABLE)
    assert m.state is failed_state
    assert int(failed_state) == 5 + steps
    if (m.phase, ws.WriterEvent.ABORT) in ws.TABLE:
        m.send(ws.WriterEvent.ABORT)
        assert m.state is failed_state
    assert m.failure == HResult.VSS_E_WRITERERROR_NONRETRYABLE
    m.send(ws.WriterEvent.BACKUP_SHUTDOWN)
    assert m.state is WriterState.STABLE
    assert m.failure == HResult.S_OK


# --- requester (IVssBackupComponents) ----------------------------------------------------------

BC_PAIRS = list(itertools.product(bs.BcState, bs.BcCall))
WITH = SnapshotContext.BACKUP
WITHOUT = SnapshotContext.FILE_SHARE_BACKUP


def bc_in(state: bs.BcState, context: SnapshotContext) -> bs.BackupComponentsMachine:
    m = bs.BackupComponentsMachine(context)
    m.state = state
    m.volumes = ["\\\\?\\Volume{x}\\"]
    return m


def _allowed(who: bs.Who, context: SnapshotContext) -> bool:
    return who is bs.Who.ANY or (who is bs.Who.WRITERS) == context.with_writers


@pytest.mark.parametrize("context", [WITH, WITHOUT], ids=["writers", "no-writers"])
@pytest.mark.parametrize(("state", "call"), BC_PAIRS)
def test_requester_transitions(
    state: bs.BcState, call: bs.BcCall, context: SnapshotContext
) -> None:
    m = bc_in(state, context)
    step = bs.TABLE.get((state, call))
    if step is not None and (call is bs.BcCall.SET_CONTEXT or _allowed(step[1], context)):
        assert m.send(call) is step[0]
        return
    with pytest.raises(VssProtocolError) as err:
        m.send(call)
    assert err.value.hresult == BAD_STATE
    assert m.state is state
    assert err.value.state == state.name
    assert err.value.event == call.name


def test_requester_call_order_of_a_backup() -> None:
    m = bs.BackupComponentsMachine()
    for call in [
        bs.BcCall.INITIALIZE_FOR_BACKUP,
        bs.BcCall.SET_CONTEXT,
        bs.BcCall.SET_BACKUP_STATE,
        bs.BcCall.GATHER_WRITER_METADATA,
        bs.BcCall.ADD_COMPONENT,
        bs.BcCall.START_SNAPSHOT_SET,
    ]:
        m.send(call)
    m.add_volume("V1")
    for call in [
        bs.BcCall.PREPARE_FOR_BACKUP,
        bs.BcCall.GATHER_WRITER_STATUS,
        bs.BcCall.DO_SNAPSHOT_SET,
        bs.BcCall.GATHER_WRITER_STATUS,
        bs.BcCall.SET_BACKUP_SUCCEEDED,
        bs.BcCall.BACKUP_COMPLETE,
        bs.BcCall.RELEASE,
    ]:
        m.send(call)
    assert m.state is bs.BcState.RELEASED


def test_gather_writer_metadata_only_once() -> None:
    m = bc_in(bs.BcState.INITIALIZED, WITH)
    m.send(bs.BcCall.GATHER_WRITER_METADATA)
    with pytest.raises(VssProtocolError) as err:
        m.send(bs.BcCall.GATHER_WRITER_METADATA)
    assert err.value.hresult == BAD_STATE


def test_sixty_fifth_volume_is_refused_and_state_kept() -> None:
    m = bc_in(bs.BcState.SET_STARTED, WITH)
    m.volumes = []
    for i in range(64):
        m.add_volume(f"V{i}")
    with pytest.raises(VssProtocolError) as err:
        m.add_volume("V64")
    assert err.value.hresult == HResult.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED == 0x80042312
    assert len(m.volumes) == 64
    assert m.state is bs.BcState.SET_STARTED


def test_same_volume_twice_and_empty_set() -> None:
    m = bc_in(bs.BcState.SET_STARTED, WITH)
    m.volumes = []
    m.add_volume("V1")
    with pytest.raises(VssProtocolError) as err:
        m.add_volume("v1")
    assert err.value.hresult == HResult.VSS_E_OBJECT_ALREADY_EXISTS
    empty = bc_in(bs.BcState.BACKUP_PREPARED, WITH)
    empty.volumes = []
    with pytest.raises(VssProtocolError):
        empty.send(bs.BcCall.DO_SNAPSHOT_SET)
    assert empty.state is bs.BcState.BACKUP_PREPARED


def test_add_volume_out_of_order_is_bad_state() -> None:
    m = bc_in(bs.BcState.METADATA_GATHERED, WITH)
    m.volumes = []
    with pytest.raises(VssProtocolError) as err:
        m.add_volume("V1")
    assert err.value.hresult == BAD_STATE
    assert m.volumes == []


# --- provider ----------------------------------------------------------------------------------

PROV_PAIRS = list(itertools.product(SnapshotState, ps.ProviderCall))


@pytest.mark.parametrize(("state", "call"), PROV_PAIRS)
def test_provider_transitions(state: SnapshotState, call: ps.ProviderCall) -> None:
    m = ps.ProviderMachine("provider for CSV1")
    m.state = state
    nxt = ps.TABLE.get((state, call))
    if nxt is not None:
        assert m.send(call) is nxt
        return
    with pytest.raises(VssProtocolError) as err:
        m.send(call)
    assert err.value.hresult == BAD_STATE
    assert m.state is state


def test_provider_full_sequence_and_abort() -> None:
    m = ps.ProviderMachine("p")
    for call in [
        ps.ProviderCall.BEGIN_PREPARE_SNAPSHOT,
        ps.ProviderCall.BEGIN_PREPARE_SNAPSHOT,
        ps.ProviderCall.END_PREPARE_SNAPSHOTS,
        ps.ProviderCall.PRE_COMMIT_SNAPSHOTS,
        ps.ProviderCall.COMMIT_SNAPSHOTS,
    ]:
        m.send(call)
    assert m.committed
    for call in [
        ps.ProviderCall.POST_COMMIT_SNAPSHOTS,
        ps.ProviderCall.PRE_FINAL_COMMIT_SNAPSHOTS,
        ps.ProviderCall.POST_FINAL_COMMIT_SNAPSHOTS,
    ]:
        m.send(call)
    assert m.state is SnapshotState.CREATED
    with pytest.raises(VssProtocolError):
        m.send(ps.ProviderCall.ABORT_SNAPSHOTS)
    m.send(ps.ProviderCall.DELETE_SNAPSHOTS)
    assert m.state is SnapshotState.DELETED
    a = ps.ProviderMachine("p")
    a.send(ps.ProviderCall.BEGIN_PREPARE_SNAPSHOT)
    a.send(ps.ProviderCall.ABORT_SNAPSHOTS)
    assert a.state is SnapshotState.ABORTED
    assert not a.committed


# --- accepts(): what a driver asks instead of reading the tables ------------------------------


@pytest.mark.parametrize(("phase", "event"), WRITER_PAIRS)
def test_writer_accepts_exactly_what_send_takes(
    phase: ws.WriterPhase, event: ws.WriterEvent
) -> None:
    m = writer_in(phase)
    assert m.accepts(event) == ((phase, event) in ws.TABLE)
    if not m.accepts(event):
        assert m.refusal(event).hresult == BAD_STATE
        assert m.phase is phase


@pytest.mark.parametrize("context", [WITH, WITHOUT], ids=["writers", "no-writers"])
@pytest.mark.parametrize(("state", "call"), BC_PAIRS)
def test_requester_accepts_exactly_what_send_takes(
    state: bs.BcState, call: bs.BcCall, context: SnapshotContext
) -> None:
    m = bc_in(state, context)
    accepted = m.accepts(call)
    try:
        m.send(call)
    except VssProtocolError:
        assert not accepted
    else:
        assert accepted


@pytest.mark.parametrize(("state", "call"), PROV_PAIRS)
def test_provider_accepts_exactly_what_send_takes(
    state: SnapshotState, call: ps.ProviderCall
) -> None:
    m = ps.ProviderMachine("p")
    m.state = state
    assert m.accepts(call) == ((state, call) in ps.TABLE)
