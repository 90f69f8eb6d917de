"""One snapshot set of a modelled run: the protocol's :class:`~vssim.sim.backup_run.BackupRun` with
the data path of :mod:`vssim.scale`.

The protocol decides the order of every call, the writers and the providers; this subclass only
changes what the run does with data:

* at the point in time (provider commit) it brings the engine's cluster to that instant and
  records, per VM, what the backup will read: the VHDX files' size (full, copy, selective) or the
  bytes changed since the VM's previous backup (incremental; change tracking restarts at the
  snapshot instant, except for copy backups);
* it copies the selected VMs in parallel, up to the node's copy streams, over the shared links
  (snapshot → CSV storage → the coordinator's and the requester's NICs when a system-provider
  snapshot lives on another node → backup target);
* a VM whose CSV snapshot volsnap deleted (diff area full) fails with
  ``VSS_E_INSUFFICIENT_STORAGE`` and so does its set (the protocol's rule); a copy reading the
  snapshot when it is deleted stops at that instant (:mod:`vssim.scale.deletion_watch`);
* redirected I/O is what the other nodes' VMs really wrote while the CSV was redirected; while
  it lasts it loads the writing nodes' and the coordinator's NICs (a background flow in the
  fair-share links), so copies over those NICs slow down;
* a node that goes down stops its VMs' writes at that instant (the protocol moves no VM to
  another node, so they stay stopped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import simpy

from vssim.errors import SnapshotDeletedError, SnapshotNotFoundError
from vssim.scale.fair_share_links import nic_link
from vssim.scale.materialize import MaterializedBackend
from vssim.scale.schedule import BackupKind
from vssim.scenario import Csv, Vm
from vssim.sim import costs
from vssim.sim.backup_run import BackupRun
from vssim.sim.run_base import CLUSTER, REQUESTER, Proc
from vssim.vss.cluster_state import ClusterState
from vssim.vss.enums import HResult, ProviderType, hresult_name
from vssim.vss.jobs import BackupJob
from vssim.vss.providers import volume_provider

if TYPE_CHECKING:
    from vssim.scale.deletion_watch import DeletionWatch
    from vssim.scale.fair_share_links import SharedResources
    from vssim.scale.model_cluster import ModelClusterBackend


@dataclass
class VmCopy:
    """What one VM's backup did."""

    vm: Vm
    snapshot_at: float | None = None
    #: Bytes the backup reads (set at the point in time).
    planned: int = 0
    bytes_read: int = 0
    incremental: bool = False
    copy_start: float | None = None
    copy_end: float | None = None
    hresult: int = int(HResult.S_OK)
    #: Cumulative counters of the VM's disks at the snapshot instant and at release.
    chunks_at: tuple[int, int] = (0, 0)
    written_at: tuple[int, int] = (0, 0)
    #: Change-tracking blocks changed since the VM's previous backup (at the snapshot instant).
    blocks_changed: int = 0
    #: Materialized runs: the changed runs per disk an incremental reads, the chunks the real
    #: volume copied because of the VM (at the snapshot instant and at release), bytes read.
    extents: list[tuple[np.ndarray, np.ndarray]] | None = None
    disk_bytes: list[int] = field(default_factory=list)
    real_chunks_at: tuple[int, int] = (0, 0)
    real_bytes_read: int | None = None


@dataclass
class RunContext:
    """What every snapshot set of a modelled run shares."""

    env: simpy.Environment
    state: ClusterState
    backend: ModelClusterBackend
    resources: SharedResources
    kind: BackupKind
    streams: dict[str, simpy.Resource]
    #: VMs with a backup this run can build an incremental on.
    has_base: set[str] = field(default_factory=set)
    #: Fails copies the moment volsnap deletes the snapshot they read (None: found at the end).
    watch: DeletionWatch | None = None
    #: The backup's index in the run (materialized backup files carry it).
    backup: int = 0
    #: Per CSV: engine disk ids and their VMs' nodes (for redirected bytes).
    csv_disks: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)

    def disks_of(self, csv: str) -> tuple[np.ndarray, list[str]]:
        got = self.csv_disks.get(csv)
        if got is None:
            ids: list[int] = []
            nodes: list[str] = []
            for vm in self.state.scenario.vms_by_csv[csv]:
                for d in self.backend.disks[vm.name]:
                    ids.append(d)
                    nodes.append(vm.node)
            got = self.csv_disks[csv] = (np.asarray(ids, dtype=np.int64), nodes)
        return got


def redirect_key(csv: Csv) -> str:
    """The background-load key of a CSV's redirected I/O."""
    return f"redirect:{csv.name}"


class ScaleBackupRun(BackupRun):
    """A protocol backup run whose data path is the modelled cluster's."""

    def __init__(self, ctx: RunContext, job: BackupJob) -> None:
        super().__init__(ctx.env, ctx.state, ctx.resources, job)
        self.ctx = ctx
        self.vm_copies: dict[str, VmCopy] = {}
        for s in job.selected:
            self.vm_copies.setdefault(s.vm.name, VmCopy(s.vm))
        self._copying = False
        self._redirect_base: dict[str, np.ndarray] = {}
        self.redirect_windows: dict[str, float] = {}

    # --- the point in time --------------------------------------------------------------------

    def _csv_names(self) -> set[str]:
        """The CSVs this set touches: its volumes and its VMs' CSVs."""
        names = {c.name for c in self.job.volumes}
        names.update(self.sc.csv_of(c.vm).name for c in self.vm_copies.values())
        return names

    def _commit(self) -> None:
        b = self.ctx.backend
        b.sync(self._csv_names())
        super()._commit()
        incremental = self.ctx.kind is BackupKind.INCREMENTAL
        for name, c in self.vm_copies.items():
            c.snapshot_at = self.env.now
            c.incremental = incremental and name in self.ctx.has_base
            c.disk_bytes = b.planned_disk_bytes(name, c.incremental)
            c.planned = sum(c.disk_bytes)
            c.blocks_changed = b.changed_blocks(name)
            if isinstance(b, MaterializedBackend):
                c.extents = b.changed_extents(name) if c.incremental else None
                c.real_chunks_at = (b.real_vm_total("real_chunks_copied", name), 0)
            if self.ctx.kind is not BackupKind.COPY:
                b.reset_changes(name)
            c.chunks_at = (b.vm_total("chunks_copied", name), 0)
            c.written_at = (b.vm_total("bytes_written", name), 0)

    # --- copying ------------------------------------------------------------------------------

    def _copy_vm(self, vm: Vm) -> Proc:
        """The protocol copies VM by VM; here the first call copies them all, in parallel up to
        the node's copy streams, and the later calls have nothing left to do."""
        if self._copying:
            return
        self._copying = True
        procs = [self.env.process(self._copy_one(c)) for c in self.vm_copies.values()]
        if procs:
            yield simpy.AllOf(self.env, procs)

    def _lost(self, csv: Csv) -> bool:
        return self._lost_at(csv) is not None

    def _lost_at(self, csv: Csv) -> float | None:
        """When volsnap deleted this set's snapshot of ``csv`` (diff area full), if it did."""
        copy = self.copies.get(csv.name)
        h = None if copy is None else copy.backend_handle
        if h is None or not self.ctx.backend.is_deleted(csv.name, h):
            return None
        return self.ctx.backend.lives[(csv.name, h)].deleted

    def _copy_one(self, c: VmCopy) -> Proc:
        vm = c.vm
        csv = self.sc.csv_of(vm)
        slot = self.ctx.streams[self.req].request()
        yield slot
        copy = self.copies.get(csv.name)
        handle = None if copy is None else copy.backend_handle
        proc = self.env.active_process
        watch = self.ctx.watch
        try:
            # A deletion already known fails the read at once; one during the read interrupts
            # it when it happens (DeletionWatch), freeing the stream and the links.
            if self._lost(csv):
                c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
                return
            host = self.copies[csv.name].service_machine
            nodes: tuple[str, ...] = ()
            if volume_provider(csv).type is ProviderType.SYSTEM and host != self.req:
                nodes = (host, self.req)
            c.copy_start = self.env.now
            start, seq = self.env.now, self.tl.next_seq()
            if watch is not None and handle is not None and proc is not None:
                watch.reading(csv.name, handle, proc)
            try:
                yield from self.res.transfer(c.planned, csv, nodes, target=True)
            except simpy.Interrupt:
                c.copy_end = self.env.now
                c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
                self._copy_record(
                    c,
                    start,
                    seq,
                    f"{csv.name}'s shadow copy deleted (diff area full) during the read",
                    result="VSS_E_INSUFFICIENT_STORAGE",
                )
                return
            c.copy_end = self.env.now
            if self.ctx.backend.materialized and not self._write_real(c, csv):
                return
            c.bytes_read = c.planned
            self.result.copied_bytes += c.planned
            if nodes:
                self.result.network_bytes += c.planned
            what = "changed blocks" if c.incremental else "VHDX files"
            self._copy_record(c, start, seq, f"{c.planned} bytes ({what}) via {host}")
        finally:
            if watch is not None and handle is not None and proc is not None:
                watch.done_reading(csv.name, handle, proc)
            self.ctx.streams[self.req].release(slot)

    def _copy_record(
        self, c: VmCopy, start: float, seq: int, detail: str, result: str = "S_OK"
    ) -> None:
        """The timeline record of one VM's copy from the shadow copy (ending now)."""
        self.tl.add(
            self.req,
            REQUESTER,
            f"copy {c.vm.name} from the shadow copy",
            start,
            self.env.now,
            result=result,
            detail=detail,
            seq=seq,
        )

    def _write_real(self, c: VmCopy, csv: Csv) -> bool:
        """Materialized runs: the backup files of ``c`` from the real snapshot. False (and the
        VM failed) when volsnap deleted the snapshot before the copy ended."""
        b = self.ctx.backend
        handle = self.copies[csv.name].backend_handle
        assert isinstance(b, MaterializedBackend)
        assert handle is not None
        assert c.snapshot_at is not None
        try:
            c.real_bytes_read = b.write_backup(
                backup=self.ctx.backup,
                job=self.job.label,
                vm=c.vm.name,
                csv=csv.name,
                handle=handle,
                kind=str(self.ctx.kind),
                snapshot_s=c.snapshot_at,
                extents=c.extents,
                modelled=c.disk_bytes,
            )
        except (SnapshotDeletedError, SnapshotNotFoundError):
            c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
            return False
        return True

    def _apply_workload(self) -> None:
        """The engine has run the guests' writes all along; only volsnap's deletions of this
        set's copies are left to report (the protocol fails the set on them)."""
        b = self.ctx.backend
        b.sync(self._csv_names())
        for csv in self.job.volumes:
            copy = self.copies.get(csv.name)
            h = None if copy is None else copy.backend_handle
            if h is not None and b.is_deleted(csv.name, h):
                self._diff_area_deletions(csv, (h,))
            self.result.diff_area_bytes[csv.name] = b.diff_area_bytes(csv)
        for c in self.vm_copies.values():
            csv = self.sc.csv_of(c.vm)
            lost_at = self._lost_at(csv)
            # Reads after the deletion fail; a copy finished before it stands (but the set
            # fails as a whole: no partial backups).
            if (
                lost_at is not None
                and c.hresult == HResult.S_OK
                and (c.copy_end is None or c.copy_end > lost_at)
            ):
                c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
                self.result.copied_bytes -= c.bytes_read
                c.bytes_read = 0

    def _delete_copies(self) -> Proc:
        b = self.ctx.backend
        b.sync(self._csv_names())
        for name, c in self.vm_copies.items():
            if c.snapshot_at is not None:
                c.chunks_at = (c.chunks_at[0], b.vm_total("chunks_copied", name))
                if isinstance(b, MaterializedBackend):
                    real = b.real_vm_total("real_chunks_copied", name)
                    c.real_chunks_at = (c.real_chunks_at[0], real)
                c.written_at = (c.written_at[0], b.vm_total("bytes_written", name))
        yield from super()._delete_copies()

    # --- redirected access --------------------------------------------------------------------

    def _written(self, csv: Csv) -> np.ndarray:
        ids, _ = self.ctx.disks_of(csv.name)
        self.ctx.backend.sync((csv.name,))
        out: np.ndarray = self.ctx.backend.totals["bytes_written"][ids].copy()
        return out

    def _redirect_on(self, csv: Csv, why: str) -> Proc:
        yield from super()._redirect_on(csv, why)
        self._redirect_base[csv.name] = self._written(csv)
        self._redirect_load(csv)

    def _redirect_load(self, csv: Csv) -> None:
        """While ``csv`` is redirected, its remote writers' writes load their NICs and the
        coordinator's (a background flow of their mean write rate in the fair-share links)."""
        rates: dict[str, float] = {}
        if csv.name in self.redirect_since:
            coord = self.state.coordinators[csv.name]
            for vm in self._redirected_writers(csv):
                r = vm.workload.write_iops * vm.workload.mean_write_bytes
                rates[nic_link(vm.node)] = rates.get(nic_link(vm.node), 0.0) + r
                rates[nic_link(coord)] = rates.get(nic_link(coord), 0.0) + r
        self.ctx.resources.set_background(redirect_key(csv), rates)

    def _node_went_down(self, node: str) -> None:
        """The node's VMs stop writing now (the engine's workload); redirected CSVs lose their
        writers on it."""
        self.ctx.backend.node_down(node)
        for csv in self.job.volumes:
            if csv.name in self.redirect_since:
                self._redirect_load(csv)

    def _redirect_off(self, csv: Csv) -> Proc:
        """Direct I/O again; the other nodes' VMs' writes meanwhile crossed the network."""
        since = self.redirect_since.pop(csv.name, None)
        if since is None:
            return
        self._redirect_load(csv)
        base = self._redirect_base.pop(csv.name)
        delta = self._written(csv) - base
        coord = self.state.coordinators[csv.name]
        _, nodes = self.ctx.disks_of(csv.name)
        remote = np.asarray([n != coord for n in nodes], dtype=bool)
        redirected = int(delta[remote].sum()) if len(delta) else 0
        window = self.env.now - since
        self.redirect_windows[csv.name] = self.redirect_windows.get(csv.name, 0.0) + window
        self.result.redirected_bytes[csv.name] = (
            self.result.redirected_bytes.get(csv.name, 0) + redirected
        )
        # Redirected writes cross the writing node's NIC and the coordinator's (counted).
        by_node: dict[str, int] = {}
        for n, v in zip(nodes, delta.tolist(), strict=True):
            if n != coord and v:
                by_node[n] = by_node.get(n, 0) + int(v)
        for n, v in by_node.items():
            self.res.nic_bytes[n] += v
        self.res.nic_bytes[coord] += redirected
        yield from self._span(
            coord,
            CLUSTER,
            f"{csv.name} back to direct I/O",
            costs.REDIRECT_SWITCH_S,
            detail=f"{redirected} bytes redirected over {window:.1f} s",
        )

    @property
    def failed_vms(self) -> int:
        return sum(1 for c in self.vm_copies.values() if c.hresult != HResult.S_OK)

    def vm_result(self, c: VmCopy) -> str:
        """A VM's result: its own failure, else its set's (no partial backups)."""
        if c.hresult != HResult.S_OK:
            return hresult_name(c.hresult)
        return "S_OK" if self.result.ok else hresult_name(self.result.hresult)
