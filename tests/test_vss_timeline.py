"""The order of events of a backup against the seed's two figures, and what each OS profile does
to the CSV (virtual time only)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vssim.requester import run_backup
from vssim.scenario import Scenario
from vssim.vss.timeline import PhaseKind, Record, Timeline, to_polars
from vssim.vss.well_known_ids import CSV_WRITER_NAME, HYPERV_WRITER_NAME
from vssim.vss.writer_state import WriterEvent

A, B = "E8920-ND1", "E8920-ND2"
REMOTE_VM = "W808-Build8370-02"  # runs on E8920-ND2


def test_2012_selective_backup_of_a_remote_vm_follows_seed_steps(seed2012: Scenario) -> None:
    r = run_backup(seed2012, node=A, components=[REMOTE_VM])
    assert r.ok, r.message
    tl = r.timeline
    assert tl.steps() == ["①", "②-1", "②-2", "③", "④", "⑤", "⑥", "⑦", "⑧"]
    first = {s: tl.find(step=s)[0] for s in tl.steps()}
    assert (first["①"].node, first["①"].role) == (A, "requester")
    assert (first["②-1"].node, first["②-1"].role) == (A, HYPERV_WRITER_NAME)
    assert (first["②-2"].node, first["②-2"].role) == (A, CSV_WRITER_NAME)
    # ③–⑤ happen on the VM's own node, through its Hyper-V writer and guest
    assert (first["③"].node, first["③"].role) == (B, HYPERV_WRITER_NAME)
    assert REMOTE_VM in first["③"].event
    assert first["④"].node == B
    assert first["⑤"].node == B
    assert "CSV Shadow Copy Provider" in first["⑥"].role
    assert first["⑥"].node == A
    assert first["⑧"].start >= max(x.end for x in tl.find(step="⑦"))
    # B's Hyper-V writer saw every snapshot event, relayed by the CSV writer
    b_events = [x.event for x in tl.find(node=B, role=HYPERV_WRITER_NAME)]
    for e in ["PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot", "BackupComplete"]:
        assert e in b_events
    # no other VM was frozen; nodes 3 and 4 got nothing past Identify
    assert r.frozen_vms == [REMOTE_VM]
    for other in ("E8920-ND3", "E8920-ND4"):
        assert {x.event for x in tl.find(node=other, role=HYPERV_WRITER_NAME)} == {"Identify"}
    # the CSV was redirected only while the snapshot was taken, not for the whole backup
    redirect = [x for x in tl.ordered() if "redirected access" in x.event]
    assert len(redirect) == 1
    assert "while the snapshot" in redirect[0].event
    direct = next(x for x in tl.ordered() if "back to direct I/O" in x.event)
    assert direct.end <= first["⑧"].start
    assert r.shadow_copies == []
    assert len(r.created_copies) == 1
    assert r.created_copies[0].service_machine == seed2012.csvs[0].coordinator


def test_2012_freeze_of_a_local_vm_starts_after_step_2_1(seed2012: Scenario) -> None:
    r = run_backup(seed2012, node=A, components=["W808-Build8370-01"])
    assert r.ok
    assert r.timeline.steps()[:4] == ["①", "②-1", "②-2", "③"]
    assert r.timeline.find(step="③")[0].node == A


def test_2008r2_backup_follows_seed_steps_and_redirects_the_whole_backup(
    seed2008: Scenario,
) -> None:
    r = run_backup(seed2008, node=B, components=[REMOTE_VM])
    assert r.ok, r.message
    tl = r.timeline
    assert tl.steps() == ["①", "②", "③", "④", "⑤", "⑥", "⑦", "⑧"]
    assert all(x.node == B for x in tl.ordered() if x.step)
    assert not [x for x in tl.ordered() if x.role == CSV_WRITER_NAME]
    move = [x for x in tl.ordered() if "ownership" in x.event]
    assert move
    assert move[0].end <= tl.find(step="①")[0].start
    on = next(x for x in tl.ordered() if "redirected access" in x.event)
    off = next(x for x in tl.ordered() if "back to direct I/O" in x.event)
    assert "whole backup" in on.event
    backup_complete = tl.find(role="requester", event="BackupComplete")[0]
    assert on.end <= tl.find(step="①")[0].start
    assert off.start >= backup_complete.end
    assert r.redirected_bytes["Cluster Disk 1"] > 0
    assert r.created_copies[0].service_machine == B


def test_2008r2_only_local_vms_can_be_chosen(seed2008: Scenario) -> None:
    r = run_backup(seed2008, node=A)
    assert {s.vm.node for s in r.job.selected} == {A}


def test_2012_full_backup_reaches_every_vm(seed2012: Scenario) -> None:
    r = run_backup(seed2012, node=A)
    assert r.ok
    assert sorted(r.frozen_vms) == sorted(v.name for v in seed2012.vms)
    assert r.copied_bytes == sum(v.allocated_bytes for v in seed2012.vms)
    assert r.cow_chunks_copied > 0
    assert r.diff_area_bytes["Cluster Disk 1"] > 0
    again = run_backup(seed2012, node=A)
    assert again.cow_chunks_copied == r.cow_chunks_copied
    assert [(x.start, x.event) for x in again.timeline.ordered()] == [
        (x.start, x.event) for x in r.timeline.ordered()
    ]


def test_timeline_as_polars(seed2012: Scenario) -> None:
    r = run_backup(seed2012, node=A, components=[REMOTE_VM])
    df = to_polars(r.timeline)
    assert df.columns == [
        "seq",
        "node",
        "role",
        "event",
        "start",
        "end",
        "result",
        "step",
        "detail",
    ]
    assert df.height == len(r.timeline)
    assert (df["end"] >= df["start"]).all()
    assert df["start"].is_sorted()


def test_incremental_copies_only_what_changed(seed2012: Scenario) -> None:
    from vssim.requester import ClusterState
    from vssim.vss.enums import BackupType

    st = ClusterState(seed2012)
    vm = next(v for v in seed2012.vms if v.name == REMOTE_VM)
    first = run_backup(seed2012, A, [REMOTE_VM], BackupType.INCREMENTAL, state=st)
    assert first.copied_bytes == vm.allocated_bytes  # no base yet: a full copy
    st.clock += 3600.0  # an hour of guest writes later
    inc = run_backup(seed2012, A, [REMOTE_VM], BackupType.INCREMENTAL, state=st)
    assert inc.ok
    assert 0 < inc.copied_bytes < vm.allocated_bytes // 4
    assert "VSS_BT_INCREMENTAL" in inc.timeline.find(event="SetBackupState")[0].detail
    assert inc.timeline.find(event=f"copy {REMOTE_VM} from the shadow copy (VSS_BT_INCREMENTAL)")
    st.clock += 3600.0
    inc2 = run_backup(seed2012, A, [REMOTE_VM], BackupType.INCREMENTAL, state=st)
    diff = run_backup(seed2012, A, [REMOTE_VM], BackupType.DIFFERENTIAL, state=st)
    assert diff.copied_bytes >= inc2.copied_bytes  # since the last full, not the last backup
    full = run_backup(seed2012, A, [REMOTE_VM], BackupType.FULL, state=st)
    assert full.copied_bytes == vm.allocated_bytes


def test_timeline_add_makes_the_record_its_constructor_makes() -> None:
    """``Timeline.add`` fills a frozen ``Record``'s fields without its ``__init__`` (for speed):
    the record must be the constructor's, every field set (a field added to ``Record`` and not
    to ``add`` fails here), and still frozen."""
    tl = Timeline()
    # Every field given: the same arguments make the record both ways (``add`` numbers it 1).
    args = ("N1", "writer", "Freeze", 1.0, 2.5, "E_FAIL", "④", "why")
    kw: dict[str, Any] = {
        "kind": PhaseKind.WRITER,
        "call": WriterEvent.FREEZE,
        "vm": "VM1",
        "csv": "CSV1",
    }
    got = tl.add(*args, **kw)
    want = Record(1, *args, **kw)
    assert got == want
    assert hash(got) == hash(want)
    assert set(vars(got)) == {f.name for f in dataclasses.fields(Record)}
    plain = tl.add("N2", "requester", "Go", 3.0, 3.0, kind=PhaseKind.REQUESTER, seq=7)
    assert plain == Record(7, "N2", "requester", "Go", 3.0, 3.0, kind=PhaseKind.REQUESTER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.start = 0.0  # type: ignore[misc]
