"""The requester side: which writers a node sees, choosing components, and running backups.

Python API::

    from vssim.scenario import load_scenario
    from vssim.requester import run_backup

    sc = load_scenario("examples/seed.toml")
    r = run_backup(sc, node="E8920-ND1", components=["W808-Build8370-02"])
    r.ok, r.hresult_name, r.frozen_vms          # True, 'S_OK', ['W808-Build8370-02']
    r.timeline.steps()                          # ['①', '②-1', '②-2', '③', …, '⑧']
    to_polars(r.timeline)                       # vssim.vss.timeline.to_polars

``components`` items are VM names, VM GUIDs, or vshadow-style ``"<writer>:<full path>"``; None
means every component the node's writers report (all the cluster's VMs on 2012, the local ones on
2008 R2). :func:`run_backups` runs several jobs at once on one virtual clock (how two 2008 R2
backups of one CSV collide). A :class:`~vssim.vss.cluster_state.ClusterState` carries the cluster
between calls (shadow copies, CSV owners, the clock).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import simpy

from vssim.errors import VssError
from vssim.requester.sampled_path import SampledPath
from vssim.scenario import Scenario, Vm
from vssim.sim.backup_run import BackupRun
from vssim.sim.links import QueuedLinks
from vssim.vss.cluster_state import ClusterState
from vssim.vss.enums import BackupType, HResult, SnapshotContext
from vssim.vss.jobs import BackupJob, BackupResult, Selected, volumes_for
from vssim.vss.metadata import Component, WriterMetadata
from vssim.vss.node_writers import node_writers


def visible_writers(scenario: Scenario, node: str) -> list[WriterMetadata]:
    """The writer metadata a requester on ``node`` gathers: every writer of the node
    (:func:`vssim.vss.node_writers.node_writers`) — the in-box writers, the node's Hyper-V writer
    and, on 2012, its CSV writer (reporting the other nodes' VMs). Only VM components can be
    backed up through this API."""
    return node_writers(scenario, node)


def select_components(
    scenario: Scenario,
    node: str,
    components: Sequence[str] | None,
    writers: list[WriterMetadata] | None = None,
) -> list[Selected]:
    """Resolve ``components`` against the writers ``node`` sees. Raises VssError
    (VSS_E_OBJECT_NOT_FOUND) for one that is not there."""
    docs = writers if writers is not None else visible_writers(scenario, node)
    by_guid = {vm.guid: vm for vm in scenario.vms}
    if components is None:
        return [
            Selected(d, c, by_guid[c.vm_guid])
            for d in docs
            for c in d.components
            if c.vm_guid is not None
        ]
    by_name = {vm.name.lower(): vm for vm in scenario.vms}
    by_vm = {c.vm_guid: (d, c) for d in docs for c in d.components if c.vm_guid is not None}
    out: list[Selected] = []
    for text in components:
        found = _find(docs, by_name, by_vm, text)
        if found is None:
            raise VssError(
                HResult.VSS_E_OBJECT_NOT_FOUND,
                f"VSS_E_OBJECT_NOT_FOUND: no writer on {node} reports a component {text!r}",
            )
        d, c = found
        if c.vm_guid is None:
            raise VssError(
                HResult.VSS_E_OBJECT_NOT_FOUND,
                f"VSS_E_OBJECT_NOT_FOUND: {text!r} is a component of {d.name}, not a VM's; "
                "only VMs are backed up here (vssim vshadow backs up the node's own volumes)",
            )
        out.append(Selected(d, c, by_guid[c.vm_guid]))
    return out


def _find(
    docs: list[WriterMetadata],
    by_name: dict[str, Vm],
    by_vm: dict[uuid.UUID, tuple[WriterMetadata, Component]],
    text: str,
) -> tuple[WriterMetadata, Component] | None:
    """A component by ``writer:full path``, or the component standing for a VM (name or GUID)."""
    if ":" in text:
        writer, _, path = text.partition(":")
        for d in docs:
            if d.matches(writer):
                c = d.component(path)
                if c is not None:
                    return d, c
        return None
    vm = by_name.get(text.lower())
    if vm is None:
        try:
            return by_vm.get(uuid.UUID(text.strip("{}")))
        except ValueError:
            return None
    return by_vm.get(vm.guid)


def make_job(
    scenario: Scenario,
    node: str,
    components: Sequence[str] | None = None,
    backup_type: BackupType = BackupType.FULL,
    volumes: Sequence[str] | None = None,
    context: SnapshotContext = SnapshotContext.BACKUP,
    auto_recovery: bool = True,
    copy_data: bool = True,
    label: str | None = None,
) -> BackupJob:
    """A :class:`BackupJob` from names: components as in :func:`select_components`, volumes as
    mount points (default: the CSVs of the chosen VMs)."""
    n = scenario.node(node).name
    selected = select_components(scenario, n, components) if context.with_writers else []
    if volumes is None:
        vols = volumes_for(scenario, selected)
    else:
        found = []
        for v in volumes:
            c = scenario.csv_for_path(v)
            if c is None:
                raise VssError(
                    HResult.VSS_E_OBJECT_NOT_FOUND,
                    f"VSS_E_OBJECT_NOT_FOUND: {v} is not a CSV of {scenario.name}",
                )
            found.append(c)
        vols = tuple(found)
    return BackupJob(
        node=n,
        selected=tuple(selected),
        volumes=vols,
        backup_type=backup_type,
        context=context,
        auto_recovery=auto_recovery,
        copy_data=copy_data,
        label=label or f"backup from {n}",
    )


def run_jobs(
    state: ClusterState, jobs: Sequence[BackupJob], stagger: float = 0.0
) -> list[BackupResult]:
    """Run ``jobs`` concurrently (job *i* starts ``i * stagger`` s in) on the cluster ``state``;
    the state's clock moves to the end of the last job."""
    env = simpy.Environment(initial_time=state.clock)
    links = QueuedLinks(env, state.scenario)
    runs = [BackupRun(env, state, links, j, SampledPath()) for j in jobs]

    def start(run: BackupRun, delay: float) -> simpy.events.ProcessGenerator:
        if delay:
            yield env.timeout(delay)
        yield from run.process()

    for i, run in enumerate(runs):
        env.process(start(run, i * stagger))
    env.run()
    state.clock = float(env.now)
    return [r.result for r in runs]


def run_backup(
    scenario: Scenario,
    node: str,
    components: Sequence[str] | None = None,
    backup_type: BackupType = BackupType.FULL,
    *,
    volumes: Sequence[str] | None = None,
    context: SnapshotContext = SnapshotContext.BACKUP,
    auto_recovery: bool = True,
    copy_data: bool = True,
    state: ClusterState | None = None,
) -> BackupResult:
    """Back up ``components`` from ``node`` and return the result (timeline included)."""
    st = state if state is not None else ClusterState(scenario)
    job = make_job(
        scenario, node, components, backup_type, volumes, context, auto_recovery, copy_data
    )
    return run_jobs(st, [job])[0]


def run_backups(
    scenario: Scenario,
    jobs: Sequence[BackupJob],
    *,
    state: ClusterState | None = None,
    stagger: float = 0.0,
) -> list[BackupResult]:
    """Several backups at once on one cluster."""
    return run_jobs(state if state is not None else ClusterState(scenario), jobs, stagger)
