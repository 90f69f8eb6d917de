"""The data path of a modelled run: one snapshot set's data on the engine's whole cluster
(:class:`~vssim.scale.model_cluster.ModelClusterBackend`), as a
:class:`~vssim.sim.data_path.DataPath` of the protocol's :class:`~vssim.sim.backup_run.BackupRun`.

* At the point in time (provider commit) it brings the engine's cluster to that instant and
  records, per VM, what the backup will read: the VHDX files' size (full, copy, selective) or the
  bytes changed since the VM's previous backup (incremental, with the product's change-tracking
  filter — ``[cluster] change_tracking``; without one, the whole files; change tracking
  restarts at the snapshot instant, except for copy backups).
* It copies the selected VMs in parallel, up to the node's copy streams, over the shared links
  (snapshot → CSV storage → the coordinator's and the requester's NICs when a system-provider
  snapshot lives on another node → backup target).
* A VM whose CSV snapshot volsnap deleted (diff area full) fails with
  ``VSS_E_INSUFFICIENT_STORAGE`` and so does its set (the protocol's rule); a copy reading the
  snapshot when it is deleted stops at that instant (:mod:`vssim.scale.deletion_watch`).
* Redirected I/O is what the other nodes' VMs really read and wrote while the CSV was redirected
  (the engine's byte counts of the window); while it lasts it loads the writing nodes' and the
  coordinator's NICs (a background flow per VM at its mean I/O rate in the fair-share links),
  so copies over those NICs slow down.
* A node that goes down stops its VMs' writes at that instant (the protocol moves no VM to
  another node, so they stay stopped); a VM in a saved state writes nothing until it resumes.

With real files behind the model (materialized runs) the context carries a
:class:`~vssim.scale.materialized_path.RealFiles`, which adds the real counters and writes each
VM's backup from the real snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from vssim.scale.schedule import BackupKind
from vssim.scale.storage_load import flows_of
from vssim.scenario import ChangeTracking, Csv, Vm
from vssim.sim.data_path import GuestWrites, Proc, SetView, take_snapshots
from vssim.sim.links import nic_link
from vssim.sim.records import VmCopy
from vssim.sim.run_scope import REQUESTER
from vssim.vss.cluster_state import ClusterState
from vssim.vss.enums import HResult, ProviderType
from vssim.vss.jobs import BackupJob
from vssim.vss.providers import volume_provider
from vssim.vss.timeline import PhaseKind

if TYPE_CHECKING:
    from vssim.scale.deletion_watch import DeletionWatch
    from vssim.scale.fair_share_links import FairShareLinks
    from vssim.scale.materialized_path import RealFiles
    from vssim.scale.model_cluster import ModelClusterBackend


@dataclass(frozen=True)
class RedirectLoad:
    """A redirected CSV's writers as NIC flows, for any coordinator: each remote node's writers
    load its NIC, and all of them the coordinator's."""

    #: Each writing node's NIC flows (ascending by node): groups of (rate, VMs at it).
    by_node: dict[str, tuple[str, tuple[tuple[float, int], ...]]]
    #: Every writing node's groups together: rate -> VMs at it.
    everyone: dict[float, int]

    @classmethod
    def of(cls, groups: dict[str, dict[float, int]]) -> RedirectLoad:
        everyone: dict[float, int] = {}
        for rates in groups.values():
            for rate, n in rates.items():
                everyone[rate] = everyone.get(rate, 0) + n
        by_node = {
            node: (nic_link(node), tuple(sorted(rates.items()))) for node, rates in groups.items()
        }
        return cls(by_node, everyone)

    def flows(self, coord: str) -> dict[str, tuple[tuple[float, int], ...]]:
        """NIC -> groups with ``coord`` coordinating: the other nodes' NICs in node order, then
        the coordinator's, which carries every other node's writers (its own stay local)."""
        flows = {nic: groups for node, (nic, groups) in self.by_node.items() if node != coord}
        everyone = self.everyone
        own = self.by_node.get(coord)
        if own is not None:
            everyone = dict(everyone)
            for rate, n in own[1]:
                left = everyone[rate] - n
                if left:
                    everyone[rate] = left
                else:
                    del everyone[rate]
        flows[nic_link(coord)] = tuple(sorted(everyone.items()))
        return flows


@dataclass
class BackupContext:
    """What every snapshot set of one backup of a modelled run shares."""

    env: simpy.Environment
    state: ClusterState
    backend: ModelClusterBackend
    links: FairShareLinks
    kind: BackupKind
    streams: dict[str, simpy.Resource]
    #: VMs with a backup this run can build an incremental on.
    has_base: set[str] = field(default_factory=set)
    #: Fails copies the moment volsnap deletes the snapshot they read (None: found at the end).
    watch: DeletionWatch | None = None
    #: Materialized runs: the real files behind the model.
    real: RealFiles | None = None
    #: Per CSV: engine disk ids and their VMs' nodes (for redirected bytes).
    csv_disks: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: Per CSV: its writers issuing I/O, as flows per node (:meth:`ModelledPath._redirect_load`:
    #: node -> (rate -> VMs at it)), and what they were worked out from — the nodes down, the VMs
    #: paused and stopped (those sets only grow, so their sizes say whether they changed). A 2008
    #: R2 CSV's coordinator moves to each set's requester node: the groups serve every one.
    writer_groups: dict[str, tuple[tuple[Any, ...], dict[str, dict[float, int]]]] = field(
        default_factory=dict
    )
    #: Per CSV: what its redirected I/O puts on the NICs whoever coordinates it
    #: (:meth:`ModelledPath._redirect_load`) — each node's flows (NIC -> groups) and all the
    #: writers' groups together —, and what it was worked out from (the writer groups' inputs).
    #: A 2008 R2 CSV's coordinator moves to each set's node: one coordinator's flows are these
    #: less its own node's.
    redirect_flows: dict[str, tuple[tuple[Any, ...], RedirectLoad]] = field(default_factory=dict)

    def disks_of(self, csv: str) -> tuple[np.ndarray, np.ndarray]:
        """The CSV's engine disk ids and each one's VM's node (its index in the scenario's
        nodes, :meth:`node_index`)."""
        got = self.csv_disks.get(csv)
        if got is None:
            ids: list[int] = []
            nodes: list[int] = []
            index = self.node_index
            for vm in self.state.scenario.vms_by_csv[csv]:
                for d in self.backend.disks[vm.name]:
                    ids.append(d)
                    nodes.append(index[vm.node])
            got = self.csv_disks[csv] = (
                np.asarray(ids, dtype=np.int64),
                np.asarray(nodes, dtype=np.int64),
            )
        return got

    @cached_property
    def node_index(self) -> dict[str, int]:
        """Each node's index in the scenario's nodes."""
        return {n.name: i for i, n in enumerate(self.state.scenario.nodes)}


def redirect_key(csv: Csv) -> str:
    """The background-load key of a CSV's redirected I/O."""
    return f"redirect:{csv.name}"


class ModelledPath:
    """The data of one snapshot set of a modelled run (see the module doc)."""

    def __init__(self, ctx: BackupContext, job: BackupJob) -> None:
        self.ctx = ctx
        self.job = job
        self.vm_copies: dict[str, VmCopy] = {}
        for s in job.selected:
            self.vm_copies.setdefault(s.vm.name, VmCopy(s.vm))
        self._redirect_base: dict[str, np.ndarray] = {}

    def _csv_names(self, run: SetView) -> set[str]:
        """The CSVs this set touches: its volumes and its VMs' CSVs."""
        names = {c.name for c in self.job.volumes}
        names.update(run.sc.csv_of(c.vm).name for c in self.vm_copies.values())
        return names

    # --- the point in time --------------------------------------------------------------------

    def point_in_time(self, run: SetView) -> dict[str, int]:
        b = self.ctx.backend
        b.sync(self._csv_names(run))
        handles = take_snapshots(run)
        incremental = self.ctx.kind is BackupKind.INCREMENTAL
        for name, c in self.vm_copies.items():
            c.snapshot_at = run.env.now
            # Without change tracking an incremental reads the whole files (nothing says which
            # blocks changed).
            tracked = run.sc.change_tracking is ChangeTracking.FILTER
            c.incremental = incremental and name in self.ctx.has_base and tracked
            c.disk_bytes = b.planned_disk_bytes(name, c.incremental)
            c.planned = sum(c.disk_bytes)
            c.blocks_changed = b.changed_blocks(name)
            if self.ctx.real is not None:
                self.ctx.real.at_point_in_time(c)
            if self.ctx.kind is not BackupKind.COPY:
                b.reset_changes(name)
            c.chunks_at = (b.vm_total("chunks_copied", name), 0)
            c.written_at = (b.vm_total("bytes_written", name), 0)
        return handles

    def releasing(self, run: SetView) -> None:
        """The VMs' counters at release (the end of their snapshots' lives)."""
        b = self.ctx.backend
        b.sync(self._csv_names(run))
        for name, c in self.vm_copies.items():
            if c.snapshot_at is not None:
                c.chunks_at = (c.chunks_at[0], b.vm_total("chunks_copied", name))
                if self.ctx.real is not None:
                    self.ctx.real.at_release(c)
                c.written_at = (c.written_at[0], b.vm_total("bytes_written", name))

    # --- copying ------------------------------------------------------------------------------

    def copy(self, run: SetView) -> Proc:
        """Every VM at once, up to the requester node's copy streams."""
        procs = [run.env.process(self._copy_one(run, c)) for c in self.vm_copies.values()]
        if procs:
            yield simpy.AllOf(run.env, procs)

    def _lost_at(self, run: SetView, csv: Csv) -> float | None:
        """When volsnap deleted this set's snapshot of ``csv`` (diff area full), if it did."""
        copy = run.copies.get(csv.name)
        h = None if copy is None else copy.backend_handle
        if h is None or not self.ctx.backend.is_deleted(csv.name, h):
            return None
        return self.ctx.backend.lives[(csv.name, h)].deleted

    def _copy_one(self, run: SetView, c: VmCopy) -> Proc:
        vm, env = c.vm, run.env
        csv = run.sc.csv_of(vm)
        slot = self.ctx.streams[run.req].request()
        yield slot
        copy = run.copies.get(csv.name)
        handle = None if copy is None else copy.backend_handle
        proc = env.active_process
        watch = self.ctx.watch
        try:
            # A deletion already known fails the read at once; one during the read interrupts
            # it when it happens (DeletionWatch), freeing the stream and the links.
            if self._lost_at(run, csv) is not None:
                c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
                return
            host = run.copies[csv.name].service_machine
            nodes: tuple[str, ...] = ()
            if volume_provider(csv).type is ProviderType.SYSTEM and host != run.req:
                nodes = (host, run.req)
            c.copy_start = env.now
            start, seq = env.now, run.tl.next_seq()
            if watch is not None and handle is not None and proc is not None:
                watch.reading(csv.name, handle, proc)
            try:
                yield from run.links.transfer(c.planned, csv, nodes, target=True)
            except simpy.Interrupt:
                c.copy_end = env.now
                c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
                self._record(
                    run,
                    c,
                    start,
                    seq,
                    f"{csv.name}'s shadow copy deleted (diff area full) during the read",
                    result="VSS_E_INSUFFICIENT_STORAGE",
                )
                return
            c.copy_end = env.now
            real = self.ctx.real
            if real is not None and not real.write(run, c, csv, self.ctx.kind):
                return
            c.bytes_read = c.planned
            run.result.copied_bytes += c.planned
            if nodes:
                run.result.network_bytes += c.planned
            what = "changed blocks" if c.incremental else "VHDX files"
            self._record(run, c, start, seq, f"{c.planned} bytes ({what}) via {host}")
        finally:
            if watch is not None and handle is not None and proc is not None:
                watch.done_reading(csv.name, handle, proc)
            self.ctx.streams[run.req].release(slot)

    def _record(
        self, run: SetView, c: VmCopy, start: float, seq: int, detail: str, result: str = "S_OK"
    ) -> None:
        """The timeline record of one VM's copy from the shadow copy (ending now)."""
        run.tl.add(
            run.req,
            REQUESTER,
            f"copy {c.vm.name} from the shadow copy",
            start,
            run.env.now,
            result=result,
            detail=detail,
            seq=seq,
            kind=PhaseKind.COPY,
            vm=c.vm.name,
            csv=c.vm.csv,
        )

    def guest_writes(self, run: SetView) -> GuestWrites:
        """The engine has run the guests' writes all along; only volsnap's deletions of this
        set's copies are left to report (the protocol fails the set on them)."""
        b = self.ctx.backend
        b.sync(self._csv_names(run))
        done = GuestWrites()
        for csv in self.job.volumes:
            copy = run.copies.get(csv.name)
            h = None if copy is None else copy.backend_handle
            if h is not None and b.is_deleted(csv.name, h):
                done.deleted[csv.name] = (h,)
            done.diff_area_bytes[csv.name] = b.diff_area_bytes(csv)
        for c in self.vm_copies.values():
            lost_at = self._lost_at(run, run.sc.csv_of(c.vm))
            # Reads after the deletion fail; a copy finished before it stands (but the set
            # fails as a whole: no partial backups).
            if (
                lost_at is not None
                and c.hresult == HResult.S_OK
                and (c.copy_end is None or c.copy_end > lost_at)
            ):
                c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
                run.result.copied_bytes -= c.bytes_read
                c.bytes_read = 0
        return done

    # --- redirected access and nodes ----------------------------------------------------------

    def _moved(self, csv: Csv) -> np.ndarray:
        """Per disk of ``csv``: the bytes its guest has read and written so far."""
        ids, _ = self.ctx.disks_of(csv.name)
        out: np.ndarray = self.ctx.backend.io_bytes(csv.name, ids)
        return out

    def redirect_on(self, run: SetView, csv: Csv) -> None:
        self._redirect_base[csv.name] = self._moved(csv)
        self._redirect_load(run, csv)

    def _redirect_load(self, run: SetView, csv: Csv) -> None:
        """While ``csv`` is redirected, its remote VMs' I/O loads their NICs and the
        coordinator's (background flows of their mean read and write rates)."""
        flows: dict[str, tuple[tuple[float, int], ...]] = {}
        if run.is_redirected(csv):
            b = self.ctx.backend
            b.pauses_known(csv.name)
            coord = run.state.coordinators[csv.name]
            made_from = self._groups_made_from(run)
            kept = self.ctx.redirect_flows.get(csv.name)
            if kept is None or kept[0] != made_from:
                kept = (made_from, RedirectLoad.of(self._writer_groups(run, csv)))
                self.ctx.redirect_flows[csv.name] = kept
            flows = kept[1].flows(coord)
        self.ctx.links.set_flows(redirect_key(csv), flows)

    def _groups_made_from(self, run: SetView) -> tuple[Any, ...]:
        """What the writer groups are worked out from: the nodes down, the VMs paused and
        stopped (those sets only grow, so their sizes say whether they changed)."""
        b = self.ctx.backend
        return (frozenset(run.state.nodes_down), len(b.paused_at), len(b.down_nodes))

    def _writer_groups(self, run: SetView, csv: Csv) -> dict[str, dict[float, int]]:
        """The CSV's writers issuing I/O, by node (ascending) and mean rate: how many VMs at
        each (:func:`~vssim.scale.storage_load.flows_of`'s groups). Worked out again only when
        the nodes down or the VMs paused or stopped changed."""
        b = self.ctx.backend
        made_from = self._groups_made_from(run)
        kept = self.ctx.writer_groups.get(csv.name)
        if kept is not None and kept[0] == made_from:
            return kept[1]
        by_node: dict[str, list[str]] = {}
        for vm in run.csv_writers(csv):
            if b.active(vm.name):
                by_node.setdefault(vm.node, []).append(vm.name)
        groups = {node: dict(flows_of(b, by_node[node])) for node in sorted(by_node)}
        self.ctx.writer_groups[csv.name] = (made_from, groups)
        return groups

    def node_down(self, run: SetView, node: str) -> None:
        """The node's VMs stop writing now (the engine's workload); redirected CSVs lose their
        writers on it."""
        self.ctx.backend.node_down(node)
        for csv in self.job.volumes:
            if run.is_redirected(csv):
                self._redirect_load(run, csv)

    def saved_state(self, run: SetView, vm: Vm, saved: bool) -> None:
        """A saved VM's disks write nothing until it resumes (the engine's workload)."""
        self.ctx.backend.set_saved(vm.name, saved)

    def redirect_off(self, run: SetView, csv: Csv, since: float) -> int:
        """What the other nodes' VMs really read and wrote meanwhile; it crossed the VM's
        node's NIC and the coordinator's (counted)."""
        self._redirect_load(run, csv)
        delta = self._moved(csv) - self._redirect_base.pop(csv.name)
        coord = run.state.coordinators[csv.name]
        _, nodes = self.ctx.disks_of(csv.name)
        remote = nodes != self.ctx.node_index[coord]
        redirected = int(delta[remote].sum()) if len(delta) else 0
        # Each remote node's NIC: its disks' whole bytes (an estimate's expectations each cut
        # to whole bytes, as the coordinator's total is not), summed exactly.
        per_node = np.zeros(len(self.ctx.node_index), dtype=np.int64)
        np.add.at(per_node, nodes[remote], delta[remote].astype(np.int64))
        names = run.sc.nodes
        for i in np.flatnonzero(per_node).tolist():
            run.links.nic_bytes[names[i].name] += int(per_node[i])
        run.links.nic_bytes[coord] += redirected
        return redirected
