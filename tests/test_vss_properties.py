"""Properties of the protocol under random faults (hypothesis): whatever goes wrong, a run ends
with the requester released, no protocol-order error of its own, every involved writer either
completed or failed/aborted, and nothing committed unless the backup succeeded."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenarios import seed_variant
from vssim.requester import ClusterState, run_backup
from vssim.scenario.load import FAULT_PHASES
from vssim.vss.enums import HResult, SnapshotContext, WriterState

NODES = ["E8920-ND1", "E8920-ND2", "E8920-ND3", "E8920-ND4"]
VMS = [f"W808-Build8370-0{i}" for i in range(1, 7)]

fault = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("writer_fail"),
            "node": st.sampled_from(NODES),
            "writer": st.sampled_from(["hyperv", "csv"]),
            "phase": st.sampled_from(FAULT_PHASES[:7]),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("delay"),
            "phase": st.sampled_from(FAULT_PHASES),
            "seconds": st.sampled_from([1.0, 11.0, 65.0]),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("node_down"),
            "node": st.sampled_from(NODES),
            "phase": st.sampled_from(FAULT_PHASES),
        }
    ),
    st.fixed_dictionaries(
        {"kind": st.just("provider_error"), "phase": st.sampled_from(FAULT_PHASES[7:])}
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    os=st.sampled_from(["ws2012", "ws2008r2"]),
    faults=st.lists(fault, max_size=3),
    node=st.sampled_from(NODES),
    picks=st.lists(st.sampled_from(VMS), min_size=1, max_size=3, unique=True),
    persistent=st.booleans(),
)
def test_any_faults_end_cleanly(
    os: str, faults: list[dict[str, Any]], node: str, picks: list[str], persistent: bool
) -> None:
    sc = seed_variant(os, faults)
    if os == "ws2008r2":
        picks = [v.name for v in sc.vms if v.node == node][:2] or []
    state = ClusterState(sc)
    ctx = SnapshotContext.APP_ROLLBACK if persistent else SnapshotContext.BACKUP
    r = run_backup(sc, node=node, components=picks, context=ctx, copy_data=False, state=state)
    assert r.hresult != HResult.VSS_E_BAD_STATE, r.message
    assert "cannot take" not in r.message
    tl = r.timeline
    assert tl.find(role="requester", event="Release (BackupShutdown to the writers)")
    assert state.backup_in_progress == {}
    if r.ok:
        assert len(r.created_copies) == len(r.job.volumes)
        assert len(r.shadow_copies) == (len(r.job.volumes) if persistent else 0)
        assert all(
            not w.state.is_failed or w.node not in {s.vm.node for s in r.job.selected}
            for w in r.writer_status
            if w.name == "Microsoft Hyper-V VSS Writer"
        )
    elif tl.find(role="requester", event="BackupComplete"):
        # failed at or after BackupComplete: the set was made; a persistent one stays
        assert r.hresult in (
            HResult.VSS_E_CLUSTER_ERROR,
            HResult.VSS_E_WRITERERROR_NONRETRYABLE,
        ) or any(w.state is WriterState.FAILED_AT_BACKUP_COMPLETE for w in r.writer_status)
        assert len(r.shadow_copies) == (len(r.job.volumes) if persistent else 0)
    else:
        assert r.hresult != HResult.S_OK
        # only a finished persistent set outlives its requester's death
        survives = persistent and "⑧" in tl.steps() and node in state.nodes_down
        assert len(r.shadow_copies) == (len(r.job.volumes) if survives else 0)
        assert state.snapshots == r.shadow_copies
    assert all(x.end >= x.start for x in tl.records)
