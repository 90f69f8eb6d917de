"""Failures: a writer failing at each phase, timeouts, too many volumes, concurrent 2008 R2
backups of one CSV, VMs without integration services, a node going down mid-backup."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios import seed_raw, seed_variant
from vssim.requester import ClusterState, make_job, run_backup, run_backups
from vssim.scenario import Scenario, parse_scenario
from vssim.vss.enums import HResult, SnapshotContext, WriterState
from vssim.vss.well_known_ids import HYPERV_WRITER_NAME

A, B = "E8920-ND1", "E8920-ND2"
VM_B = "W808-Build8370-02"

PHASES = [
    ("prepare_backup", WriterState.FAILED_AT_PREPARE_BACKUP),
    ("prepare_snapshot", WriterState.FAILED_AT_PREPARE_SNAPSHOT),
    ("freeze", WriterState.FAILED_AT_FREEZE),
    ("thaw", WriterState.FAILED_AT_THAW),
    ("post_snapshot", WriterState.FAILED_AT_POST_SNAPSHOT),
]


def _failing(os: str, node: str, phase: str) -> Scenario:
    return seed_variant(
        os,
        [
            {
                "kind": "writer_fail",
                "node": node,
                "writer": "hyperv",
                "phase": phase,
                "hresult": "VSS_E_WRITERERROR_RETRYABLE",
            }
        ],
    )


@pytest.mark.parametrize("os", ["ws2012", "ws2008r2"])
@pytest.mark.parametrize(("phase", "state"), PHASES)
def test_writer_failing_at_each_phase_aborts_everything(
    os: str, phase: str, state: WriterState
) -> None:
    sc = _failing(os, B, phase)
    st = ClusterState(sc)
    r = run_backup(sc, node=A if os == "ws2012" else B, components=[VM_B], state=st)
    assert not r.ok
    assert r.hresult == HResult.VSS_E_WRITERERROR_RETRYABLE
    failed = [w for w in r.writer_status if w.node == B and w.name == HYPERV_WRITER_NAME]
    assert failed[0].state is state
    assert failed[0].failure == HResult.VSS_E_WRITERERROR_RETRYABLE
    tl = r.timeline
    assert tl.find(role="requester", event="AbortBackup")
    # every writer that was not failed got Abort; nothing stays committed
    for w in r.writer_status:
        if not w.state.is_failed and w.node in (A, B):
            assert tl.find(node=w.node, role=w.name, event="Abort"), w
    assert r.shadow_copies == []
    assert st.snapshots == []
    assert not tl.find(role="requester", event="BackupComplete")
    assert not tl.find(role="requester", event="SetBackupSucceeded")
    assert st.backup_in_progress == {}
    if phase in ("prepare_backup", "prepare_snapshot", "freeze"):
        assert r.created_copies == []
        assert not tl.find(step="⑧")


def test_writer_failing_at_backup_complete(seed2012: Scenario) -> None:
    sc = _failing("ws2012", B, "backup_complete")
    r = run_backup(sc, node=A, components=[VM_B])
    assert not r.ok
    assert r.hresult == HResult.VSS_E_WRITERERROR_RETRYABLE
    states = {(w.node, w.name): w.state for w in r.writer_status}
    assert states[(B, HYPERV_WRITER_NAME)] is WriterState.FAILED_AT_BACKUP_COMPLETE
    assert r.shadow_copies == []


def test_uninvolved_writer_failure_does_not_fail_the_backup() -> None:
    sc = _failing("ws2012", A, "freeze")  # A's Hyper-V writer has no selected VM
    r = run_backup(sc, node=A, components=[VM_B])
    assert r.ok
    assert any(w.state is WriterState.FAILED_AT_FREEZE for w in r.writer_status)


def test_freeze_window_timeout() -> None:
    sc = seed_variant(faults=[{"kind": "delay", "phase": "pre_commit", "seconds": 70}])
    r = run_backup(sc, node=A, components=[VM_B])
    assert not r.ok
    assert r.hresult == HResult.VSS_E_WRITERERROR_TIMEOUT
    frozen = [w for w in r.writer_status if w.node in (A, B)]
    assert frozen
    assert all(w.state is WriterState.FAILED_AT_FREEZE for w in frozen)
    assert all(w.failure == HResult.VSS_E_WRITERERROR_TIMEOUT for w in frozen)
    freeze = r.timeline.find(node=A, role=HYPERV_WRITER_NAME, event="Freeze")[0]
    timed_out = next(x for x in r.timeline.ordered() if x.event.endswith("timed out"))
    assert timed_out.end == pytest.approx(freeze.end + 60.0, abs=0.01)
    assert r.created_copies == []
    assert r.shadow_copies == []


@pytest.mark.parametrize(
    ("phase", "hr"),
    [("flush", HResult.VSS_E_FLUSH_WRITES_TIMEOUT), ("commit", HResult.VSS_E_HOLD_WRITES_TIMEOUT)],
)
def test_flush_and_hold_timeout(phase: str, hr: HResult) -> None:
    sc = seed_variant(faults=[{"kind": "delay", "phase": phase, "seconds": 12}])
    r = run_backup(sc, node=A, components=[VM_B])
    assert not r.ok
    assert r.hresult == hr
    flush = next(x for x in r.timeline.ordered() if x.event.startswith("flush-and-hold"))
    assert r.end - flush.start >= 10.0
    assert r.shadow_copies == []
    assert r.created_copies == []
    assert r.timeline.find(event="AbortSnapshots")


def test_provider_error_aborts() -> None:
    sc = seed_variant(faults=[{"kind": "provider_error", "phase": "commit"}])
    r = run_backup(sc, node=A, components=[VM_B])
    assert r.hresult == HResult.VSS_E_UNEXPECTED_PROVIDER_ERROR
    assert r.shadow_copies == []


def test_sixty_five_volumes() -> None:
    raw = seed_raw()
    raw["csvs"] = [
        {
            "name": f"CSV{i}",
            "mount_point": f"C:\\ClusterStorage\\Volume{i}",
            "coordinator": "E8920-ND1",
            "size": "1 TiB",
        }
        for i in range(1, 66)
    ]
    for n, vm in enumerate(raw["vms"]):
        vm["csv"] = f"CSV{n + 1}"
    sc = parse_scenario(raw, Path("wide.toml"))
    vols = [c.mount_point for c in sc.csvs]
    r = run_backup(sc, node=A, volumes=vols[:64], components=[])
    assert r.ok
    r = run_backup(sc, node=A, volumes=vols, components=[])
    assert not r.ok
    assert r.hresult == HResult.VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED
    assert r.shadow_copies == []
    assert r.created_copies == []


def test_concurrent_2008r2_backups_of_one_csv(seed2008: Scenario) -> None:
    jobs = [
        make_job(seed2008, B, [VM_B]),
        make_job(seed2008, "E8920-ND3", ["W808-Build8370-03"]),
    ]
    st = ClusterState(seed2008)
    first, second = run_backups(seed2008, jobs, state=st, stagger=1.0)
    assert first.ok
    assert not second.ok
    assert second.hresult == HResult.CSV_BACKUP_IN_PROGRESS == 0x8007173D
    assert second.frozen_vms == []
    assert st.backup_in_progress == {}
    # once the first is done, the CSV can be backed up again
    assert run_backup(seed2008, "E8920-ND3", ["W808-Build8370-03"], state=st).ok


def test_concurrent_2012_backups_of_one_csv_both_succeed(seed2012: Scenario) -> None:
    jobs = [make_job(seed2012, A, [VM_B]), make_job(seed2012, "E8920-ND3", ["W808-Build8370-04"])]
    assert all(r.ok for r in run_backups(seed2012, jobs, stagger=1.0))


@pytest.mark.parametrize("os", ["ws2012", "ws2008r2"])
def test_missing_integration_services_means_saved_state_and_downtime(os: str) -> None:
    sc = seed_variant(os)
    vm = next(v for v in sc.vms if not v.integration_services)
    r = run_backup(sc, node=vm.node if os == "ws2008r2" else A, components=[vm.name])
    assert r.ok
    assert r.downtime[vm.name] > 0
    assert not r.timeline.find(step="④")
    save = next(x for x in r.timeline.ordered() if x.event.startswith("save state"))
    resume = next(x for x in r.timeline.ordered() if x.event.startswith("resume"))
    assert r.downtime[vm.name] == pytest.approx(resume.end - save.start)
    online = run_backup(sc, node=A if os == "ws2012" else B, components=[VM_B])
    assert online.downtime == {}


def test_no_auto_recovery_fails_online_backups(seed2012: Scenario) -> None:
    r = run_backup(seed2012, node=A, components=[VM_B], auto_recovery=False)
    assert r.hresult == HResult.VSS_E_WRITERERROR_RETRYABLE
    states = {(w.node, w.name): w.state for w in r.writer_status}
    assert states[(B, HYPERV_WRITER_NAME)] is WriterState.FAILED_AT_POST_SNAPSHOT


def test_node_with_selected_vm_down_mid_backup_aborts() -> None:
    sc = seed_variant(faults=[{"kind": "node_down", "node": B, "phase": "freeze"}])
    r = run_backup(sc, node=A, components=[VM_B])
    assert not r.ok
    assert r.hresult == HResult.VSS_E_CLUSTER_ERROR
    assert r.shadow_copies == []
    assert r.created_copies == []
    assert r.timeline.find(event=f"node {B} down")


def test_unrelated_node_down_mid_backup_completes() -> None:
    sc = seed_variant(faults=[{"kind": "node_down", "node": "E8920-ND3", "phase": "freeze"}])
    r = run_backup(sc, node=A, components=[VM_B])
    assert r.ok


def test_coordinator_down_before_commit_fails_over() -> None:
    sc = seed_variant(faults=[{"kind": "node_down", "node": A, "phase": "prepare_snapshot"}])
    st = ClusterState(sc)
    r = run_backup(sc, node=B, components=[VM_B], state=st)
    assert r.ok
    assert r.created_copies[0].service_machine == B
    assert st.coordinators["Cluster Disk 1"] == B


def test_requester_node_down_aborts() -> None:
    sc = seed_variant(faults=[{"kind": "node_down", "node": A, "phase": "thaw"}])
    r = run_backup(sc, node=A, components=[VM_B])
    assert r.hresult == HResult.VSS_E_CLUSTER_ERROR
    assert r.shadow_copies == []


@pytest.mark.parametrize("os", ["ws2012", "ws2008r2"])
def test_no_partial_backups_one_vm_failing_fails_the_set(os: str) -> None:
    sc = seed_variant(
        os,
        [
            {
                "kind": "writer_fail",
                "vm": "W808-Build8370-05",
                "phase": "prepare_snapshot",
                "hresult": "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT",
            }
        ],
    )
    requester = A if os == "ws2012" else B
    r = run_backup(sc, node=requester, components=[VM_B, "W808-Build8370-05"])
    assert not r.ok
    assert r.hresult == HResult.VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT
    states = {(w.node, w.name): w.state for w in r.writer_status}
    assert states[(B, HYPERV_WRITER_NAME)] is WriterState.FAILED_AT_PREPARE_SNAPSHOT
    assert VM_B in r.frozen_vms  # its guest snapshot ran, and is thrown away with the set
    assert r.created_copies == []
    assert r.shadow_copies == []
    assert not r.timeline.find(role="requester", event="SetBackupSucceeded")
    ok = run_backup(seed_variant(os), node=requester, components=[VM_B, "W808-Build8370-05"])
    assert ok.ok
    assert sorted(ok.frozen_vms) == [VM_B, "W808-Build8370-05"]


def test_full_diff_area_deletes_the_oldest_shadow_copies_first() -> None:
    raw_limit = 320 * 1024 * 1024
    sc = parse_scenario(
        {**seed_raw(), "csvs": [{**seed_raw()["csvs"][0], "diff_area_limit": "320 MiB"}]},
        Path("small-diff-area.toml"),
    )
    assert sc.csvs[0].diff_area_limit == raw_limit
    st = ClusterState(sc)
    kept = run_backup(
        sc, A, [VM_B], context=SnapshotContext.APP_ROLLBACK, copy_data=False, state=st
    )
    assert kept.ok
    assert len(st.snapshots) == 1
    r = run_backup(sc, A, state=st)  # every VM, long copy: the guests write a lot meanwhile
    deletions = [x for x in r.timeline.ordered() if x.event.startswith("VolSnap 24")]
    assert deletions
    assert deletions[0].detail == kept.created_copies[0].id
    assert kept.created_copies[0] not in st.snapshots
    assert r.diff_area_bytes["Cluster Disk 1"] <= raw_limit
    # the guests wrote more than 320 MiB of first writes: this backup's own copy went too
    assert [x.detail for x in deletions] == [
        kept.created_copies[0].id,
        r.created_copies[0].id,
    ]
    assert not r.ok
    assert r.hresult == HResult.VSS_E_INSUFFICIENT_STORAGE
    assert "succeeded=False" in r.timeline.find(event="SetBackupSucceeded")[0].detail
    roomy = run_backup(seed_variant(), A)  # the seed's 200 GiB diff area holds it all
    assert roomy.ok
    assert roomy.diff_area_bytes["Cluster Disk 1"] > raw_limit


def test_at_most_512_shadow_copies_per_volume(seed2012: Scenario) -> None:
    st = ClusterState(seed2012)
    template = run_backup(
        seed2012, A, [VM_B], context=SnapshotContext.APP_ROLLBACK, copy_data=False, state=st
    ).created_copies[0]
    from dataclasses import replace

    st.snapshots = [replace(template, id=str(i), backend_handle=None) for i in range(512)]
    r = run_backup(seed2012, A, [VM_B], state=st)
    assert r.hresult == HResult.VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED
    assert len(st.snapshots) == 512


def test_csv_writer_failing_identify_aborts_before_the_set_starts() -> None:
    sc = seed_variant(
        faults=[{"kind": "writer_fail", "node": A, "writer": "csv", "phase": "identify"}]
    )
    r = run_backup(sc, node=A, components=[VM_B])
    assert r.hresult == HResult.VSS_E_WRITERERROR_NONRETRYABLE
    states = {(w.node, w.name): w.state for w in r.writer_status}
    assert states[(A, "Cluster Shared Volume VSS Writer")] is WriterState.FAILED_AT_IDENTIFY
    assert r.set_id is None
    assert not r.timeline.find(event="PrepareForBackup")


def test_2008r2_dead_requester_leaves_the_csv_in_backup_for_30_minutes() -> None:
    sc = seed_variant("ws2008r2", [{"kind": "node_down", "node": B, "phase": "thaw"}])
    st = ClusterState(sc)
    dead = run_backup(sc, B, [VM_B], state=st)
    assert dead.hresult == HResult.VSS_E_CLUSTER_ERROR
    assert dead.shadow_copies == []
    c = "Cluster Disk 1"
    assert st.stale_backup_until[c] == pytest.approx(dead.end + 30 * 60, abs=1.0)
    soon = run_backup(sc, "E8920-ND3", ["W808-Build8370-03"], state=st)
    assert soon.hresult == HResult.CSV_BACKUP_IN_PROGRESS
    st.clock = st.stale_backup_until[c] + 1.0
    assert run_backup(sc, "E8920-ND3", ["W808-Build8370-03"], state=st).ok


INVARIANT_FAULTS = [
    [],
    [{"kind": "writer_fail", "node": B, "phase": "freeze"}],
    [{"kind": "writer_fail", "node": B, "phase": "thaw"}],
    [{"kind": "writer_fail", "node": A, "writer": "csv", "phase": "post_snapshot"}],
    [{"kind": "delay", "phase": "pre_commit", "seconds": 70}],
    [{"kind": "delay", "phase": "commit", "seconds": 11}],
    [{"kind": "provider_error", "phase": "post_commit"}],
    [{"kind": "node_down", "node": "E8920-ND3", "phase": "freeze"}],
]


@pytest.mark.parametrize("os", ["ws2012", "ws2008r2"])
@pytest.mark.parametrize("faults", INVARIANT_FAULTS)
def test_after_freeze_every_writer_gets_thaw_or_abort(
    os: str, faults: list[dict[str, object]]
) -> None:
    sc = seed_variant(os, faults)
    r = run_backup(sc, node=B, components=[VM_B, "W808-Build8370-05"])
    tl = r.timeline
    for freeze in tl.find(event="Freeze"):
        after = [
            x
            for x in tl.ordered()
            if (x.node, x.role) == (freeze.node, freeze.role)
            and x.start >= freeze.end
            and x.event in ("Thaw", "Abort")
        ]
        assert after, f"{freeze.role} on {freeze.node} got Freeze but neither Thaw nor Abort"
    if not r.ok:
        assert r.shadow_copies == []
    assert (r.created_copies != []) == bool(tl.find(event="CommitSnapshots"))


def test_2008r2_requester_dying_after_the_set_was_made_frees_the_csv() -> None:
    sc = seed_variant("ws2008r2", [{"kind": "node_down", "node": B, "phase": "copy"}])
    st = ClusterState(sc)
    r = run_backup(sc, B, [VM_B], state=st)
    assert r.hresult == HResult.VSS_E_CLUSTER_ERROR
    assert st.stale_backup_until == {}
    assert run_backup(sc, "E8920-ND3", ["W808-Build8370-03"], state=st).ok
