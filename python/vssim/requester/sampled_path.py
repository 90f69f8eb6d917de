"""The data path of protocol runs (:func:`~vssim.requester.backups.run_backup`, vshadow): data costs
to first order, on the engine's workload generator.

How it works:

* **Point in time**: each system-provider volume gets a snapshot in the cluster's copy-on-write
  backend (by default an engine :class:`~vssim.engine.CowTracker` per CSV, kept in the
  :class:`~vssim.vss.cluster_state.ClusterState` across runs, so a later run's writes can delete
  an earlier persistent copy).
* **The guests' writes**: every disk's stream is the one ``ModelCluster`` would run for it
  (:class:`engine.WorkloadGenerator`, the scenario's workload, stream key per scenario seed, VM
  and disk — :mod:`vssim.scenario.engine_streams`), over the disk's allocated bytes; a CSV's
  disks lie end to end on it, in scenario order (model choice: no VHDX layout). The streams are
  keyed by time, so the writes of an interval are the same whoever asks. At most
  :data:`WRITES_CAP` writes per disk — the first after the commit, those that copy first — are
  fed to copy-on-write after the copies; beyond that the counts are lower bounds.
* **A VM's copy** reads its allocated bytes (full, copy, or no earlier full backup), or the
  change-tracking blocks (64 KiB) its disks' writes touched since the last backup's point in time
  (incremental) or the last full's (differential), up to this one's: at most
  :data:`CHANGE_WRITES_CAP` writes per disk, the latest, so a differential never reads less than
  the incremental of the same moment. VMs are copied one after another, over the shared links.
* **Redirected access**: the other nodes' VMs send their reads and writes through the
  coordinator at their streams' mean rate (the engine's operations per second × mean request
  size; a protocol run does not generate them one by one).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vssim import engine
from vssim.scenario import ChangeTracking, Csv, Scenario, Vm
from vssim.scenario.engine_streams import stream_seed, workload_spec
from vssim.sim.data_path import GuestWrites, Proc, SetView, take_snapshots
from vssim.sim.run_scope import REQUESTER
from vssim.units import KiB
from vssim.vss.enums import BackupType, ProviderType
from vssim.vss.providers import volume_provider
from vssim.vss.timeline import PhaseKind

#: Guest writes per disk fed to copy-on-write for one set (model choice: bounds the work of a
#: protocol run at thousands of VMs).
WRITES_CAP = 4096
#: Guest writes per disk counted by change tracking for one incremental (model choice).
CHANGE_WRITES_CAP = 65_536
#: Disks smaller than this are left out of the guests' writes (model choice).
MIN_DISK = 64 * KiB

Writes = tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32]]


def disk_writes(
    sc: Scenario, vm: Vm, disk: int, t0: float, t1: float, cap: int, latest: bool
) -> Writes:
    """The writes of ``vm``'s disk ``disk`` in ``[t0, t1)``, at most ``cap``: those of the first
    (or, ``latest``, the last) ``cap / write_iops`` seconds of the interval."""
    w = vm.workload
    span = cap / w.write_iops
    if latest:
        t0 = max(t0, t1 - span)
    else:
        t1 = min(t1, t0 + span)
    size = vm.disks[disk].allocated_size
    gen = engine.WorkloadGenerator(size, workload_spec(w), seed=stream_seed(sc.seed, vm, disk))
    _, offsets, lengths, _, _ = gen.generate(t0, t1)
    keep = slice(-cap, None) if latest else slice(0, cap)
    return offsets[keep], lengths[keep]


def writing(vm: Vm, disk: int) -> bool:
    """Whether the disk's guest writes count (a VM that is not running writes nothing)."""
    return vm.running and vm.workload.write_iops > 0 and vm.disks[disk].allocated_size >= MIN_DISK


class SampledPath:
    """:class:`~vssim.sim.data_path.DataPath` of protocol runs (see the module doc)."""

    def point_in_time(self, run: SetView) -> dict[str, int]:
        return take_snapshots(run)

    def redirect_on(self, run: SetView, csv: Csv) -> None:
        pass

    def redirect_off(self, run: SetView, csv: Csv, since: float) -> int:
        window = run.env.now - since
        total = 0
        for vm in run.redirected_writers(csv):
            spec = workload_spec(vm.workload)
            total += int(spec.iops * spec.mean_size * len(vm.disks) * window)
        return total

    def node_down(self, run: SetView, node: str) -> None:
        pass  # guests are sampled when the copies end: a down node's VMs are left out then

    def saved_state(self, run: SetView, vm: Vm, saved: bool) -> None:
        # Guests are sampled from the commit on; a saved VM resumes at PostSnapshot, right after
        # the commit, so the few seconds between are sampled as written (model choice).
        pass

    def releasing(self, run: SetView) -> None:
        pass

    def copy(self, run: SetView) -> Proc:
        seen: set[str] = set()
        for s in run.job.selected:
            if s.vm.name in seen:
                continue
            seen.add(s.vm.name)
            yield from self._copy_vm(run, s.vm)

    def _copy_vm(self, run: SetView, vm: Vm) -> Proc:
        csv = run.sc.csv_of(vm)
        host = run.copies[csv.name].service_machine
        nodes: tuple[str, ...] = ()
        if volume_provider(csv).type is ProviderType.SYSTEM and host != run.req:
            nodes = (host, run.req)
        start, seq = run.env.now, run.tl.next_seq()
        nbytes, kind = self._bytes_to_copy(run, vm)
        yield from run.links.transfer(nbytes, csv, nodes, target=True)
        run.result.copied_bytes += nbytes
        if nodes:
            run.result.network_bytes += nbytes
        run.tl.add(
            run.req,
            REQUESTER,
            f"copy {vm.name} from the shadow copy ({kind})",
            start,
            run.env.now,
            detail=f"{nbytes} bytes via {host}",
            seq=seq,
            kind=PhaseKind.COPY,
            vm=vm.name,
            csv=csv.name,
        )

    def _bytes_to_copy(self, run: SetView, vm: Vm) -> tuple[int, str]:
        """What a backup of ``vm`` reads: everything (full, copy, or no earlier full backup), or
        the blocks changed since the last backup (incremental) / the last full (differential)."""
        kind = run.job.backup_type
        last = run.state.last_backup.get(vm.name)
        if kind not in (BackupType.INCREMENTAL, BackupType.DIFFERENTIAL) or last is None:
            return vm.allocated_bytes, "full"
        if run.sc.change_tracking is ChangeTracking.NONE:
            return vm.allocated_bytes, f"{kind}, whole files: no change tracking"
        since = last[0] if kind is BackupType.INCREMENTAL else last[1]
        assert run.commit_time is not None
        changed = 0
        for j, d in enumerate(vm.disks):
            if not writing(vm, j) or run.commit_time <= since:
                continue
            offsets, lengths = disk_writes(
                run.sc, vm, j, since, run.commit_time, CHANGE_WRITES_CAP, latest=True
            )
            cbt = engine.ChangeTracker(f"{vm.guid}:{j}", d.allocated_size)
            cbt.mark(offsets, lengths)
            changed += min(cbt.changed_bytes, d.allocated_size)
        return changed, str(kind)

    def guest_writes(self, run: SetView) -> GuestWrites:
        assert run.commit_time is not None
        done = GuestWrites()
        backend = run.state.backend
        for csv in run.job.volumes:
            if run.copies[csv.name].backend_handle is None:
                continue
            offs, lens = [], []
            base = 0
            for vm in run.sc.vms_by_csv[csv.name]:
                for j, d in enumerate(vm.disks):
                    if writing(vm, j) and run.state.is_up(vm.node):
                        o, n = disk_writes(
                            run.sc, vm, j, run.commit_time, run.env.now, WRITES_CAP, latest=False
                        )
                        offs.append(o + np.uint64(base))
                        lens.append(n)
                    base += d.allocated_size
            if offs:
                cost = backend.apply_writes(csv, np.concatenate(offs), np.concatenate(lens))
                done.chunks_copied += cost.chunks_copied
                done.deleted[csv.name] = cost.deleted
            done.diff_area_bytes[csv.name] = backend.diff_area_bytes(csv)
        return done
