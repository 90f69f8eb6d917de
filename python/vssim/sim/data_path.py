"""What a backup run does with data: the :class:`DataPath` interface.

The protocol (:class:`vssim.sim.backup_run.BackupRun`) decides the order of every call, which
writers and providers take part and what fails the set; a data path decides what the data costs:
what the point in time captures, what the guests write while shadow copies exist, what copying a
VM reads and how long it takes, what crosses the network while a CSV is in redirected access, and
what a node going down stops. A run takes one data path and a :class:`~vssim.sim.links.Links`
object (every byte it moves goes through ``links.transfer``).

Implementations: :class:`vssim.requester.sampled_path.SampledPath` (protocol runs of
``run_backup`` and vshadow: the guests' writes sampled from the engine's generator),
:class:`vssim.scale.modelled_path.ModelledPath` (modelled runs at scale: the engine's whole
cluster; with real files when materialized). A new path (an estimate, say) implements the seven
methods below; it reads the run through :class:`SetView` and writes its figures into
``run.result`` (``copied_bytes``, ``network_bytes``) and ``run.timeline``.

The run calls, in this order: :meth:`~DataPath.point_in_time` once at the commit (the shadow copies
exist from here); :meth:`~DataPath.redirect_on` / :meth:`~DataPath.redirect_off` around each
stretch of redirected access (before, during or after the commit, by profile);
:meth:`~DataPath.node_down` the instant a node goes down; :meth:`~DataPath.saved_state` when a VM
without integration services goes into a saved state and when it resumes; :meth:`~DataPath.copy`
once, after the
set is created, if the job copies data; :meth:`~DataPath.guest_writes` once after the copies;
:meth:`~DataPath.releasing` just before the set's shadow copies are deleted.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

import simpy

from vssim.scenario import Csv, Scenario, Vm
from vssim.sim.links import Links
from vssim.vss.cluster_state import ClusterState, ShadowCopy
from vssim.vss.enums import ProviderType
from vssim.vss.jobs import BackupJob, BackupResult
from vssim.vss.providers import volume_provider
from vssim.vss.timeline import Timeline

Proc = Generator[Any, Any, Any]


class SetView(Protocol):
    """What a data path may read of the backup run it serves (and the two it may write to)."""

    env: simpy.Environment
    job: BackupJob
    #: The node the requester runs on.
    req: str
    sc: Scenario
    state: ClusterState
    links: Links
    #: The set's shadow copy of each of its volumes, by CSV name (``backend_handle``: the
    #: copy-on-write snapshot of a system-provider copy).
    copies: dict[str, ShadowCopy]
    #: When the set's point in time was (None before the commit).
    commit_time: float | None
    #: Written by the data path: ``copied_bytes``, ``network_bytes``.
    result: BackupResult
    #: Written by the data path: one record per VM copy.
    tl: Timeline

    def is_redirected(self, csv: Csv) -> bool:
        """Whether ``csv`` is in redirected access now."""
        ...

    def redirected_writers(self, csv: Csv) -> list[Vm]:
        """The VMs whose writes to ``csv`` cross the network while it is redirected: running, on
        an up node other than the coordinator."""
        ...

    def csv_writers(self, csv: Csv) -> list[Vm]:
        """The VMs writing to ``csv`` now, from any node: running, on an up node."""
        ...


@dataclass
class GuestWrites:
    """What the guests' writes did while the set's shadow copies existed."""

    #: Chunks the writes made copy-on-write copy into the diff areas.
    chunks_copied: int = 0
    #: Per CSV: the snapshot handles volsnap deleted because the diff area could not grow (the
    #: protocol drops those shadow copies; the set fails if its own is among them).
    deleted: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Per CSV: the diff area's size at the end.
    diff_area_bytes: dict[str, int] = field(default_factory=dict)


class DataPath(Protocol):
    """A backup run's data: see the module doc for when the run calls each method."""

    def point_in_time(self, run: SetView) -> dict[str, int]:
        """The commit, now: make the copy-on-write snapshot of every system-provider volume of
        the set (through ``run.state.backend``) and capture what the backup will read. Returns
        each snapshot's handle by CSV name."""
        ...

    def redirect_on(self, run: SetView, csv: Csv) -> None:
        """``csv`` has just entered redirected access (``run.is_redirected(csv)`` is true)."""
        ...

    def redirect_off(self, run: SetView, csv: Csv, since: float) -> int:
        """``csv`` leaves redirected access now (it no longer is); it was redirected since
        ``since``. Returns the bytes the other nodes' VMs sent through the coordinator meanwhile
        (count them on the NICs in ``run.links.nic_bytes`` if they are carried)."""
        ...

    def node_down(self, run: SetView, node: str) -> None:
        """``node`` went down now (before any failover): its VMs stop writing."""
        ...

    def saved_state(self, run: SetView, vm: Vm, saved: bool) -> None:
        """``vm`` goes into a saved state now (``saved``), or has just resumed: a saved VM does
        no I/O until it resumes."""
        ...

    def copy(self, run: SetView) -> Proc:
        """A SimPy process step: copy the job's selected VMs from the shadow copies to the
        backup target (over ``run.links``); add ``run.result.copied_bytes`` (and
        ``network_bytes`` for what crossed a NIC) and one timeline record per VM."""
        ...

    def guest_writes(self, run: SetView) -> GuestWrites:
        """After the copies: what the guests' writes since the commit did to copy-on-write."""
        ...

    def releasing(self, run: SetView) -> None:
        """The set's shadow copies are about to be deleted (the backup ends or aborts)."""
        ...


def take_snapshots(run: SetView) -> dict[str, int]:
    """The copy-on-write snapshot of each system-provider volume of the set, made now in the
    cluster's :class:`~vssim.vss.providers.SnapshotBackend` (a hardware snapshot costs the host
    nothing and has none); the handles by CSV name. Blocks past the CSV's VMs' allocated bytes
    are free to write."""
    handles: dict[str, int] = {}
    for csv in run.job.volumes:
        if volume_provider(csv).type is ProviderType.SYSTEM:
            alloc = run.sc.allocated_by_csv[csv.name]
            handles[csv.name] = run.state.backend.create_snapshot(csv, max(alloc, 1))
    return handles
