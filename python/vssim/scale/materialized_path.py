"""The materialized part of a modelled run's data path: with real files behind the model
(:class:`~vssim.scale.materialize.MaterializedBackend`), each VM's backup also records what the
real volume copied because of it, and writes its backup files from the real snapshot (a VM whose
snapshot volsnap deleted before its copy ended fails). The modelled path
(:class:`~vssim.scale.modelled_path.ModelledPath`) calls it at the point in time, after each
VM's read, and at release."""

from __future__ import annotations

from dataclasses import dataclass

from vssim.errors import SnapshotDeletedError, SnapshotNotFoundError
from vssim.scale.materialize import MaterializedBackend
from vssim.scale.schedule import BackupKind
from vssim.scenario import Csv
from vssim.sim.data_path import SetView
from vssim.sim.records import VmCopy
from vssim.vss.enums import HResult

COUNTER = "real_chunks_copied"


@dataclass
class RealFiles:
    """The real side of one backup of a materialized run."""

    backend: MaterializedBackend
    #: The backup's index in the run (its backup files carry it).
    backup: int

    def at_point_in_time(self, c: VmCopy) -> None:
        """Before change tracking restarts: the runs an incremental reads, the real counter."""
        b = self.backend
        c.real = True
        c.extents = b.changed_extents(c.vm.name) if c.incremental else None
        c.real_chunks_at = (b.real_vm_total(COUNTER, c.vm.name), 0)

    def at_release(self, c: VmCopy) -> None:
        c.real_chunks_at = (c.real_chunks_at[0], self.backend.real_vm_total(COUNTER, c.vm.name))

    def write(self, run: SetView, c: VmCopy, csv: Csv, kind: BackupKind) -> bool:
        """The backup files of ``c`` from the real snapshot. False (and the VM failed) when
        volsnap deleted the snapshot before the copy ended."""
        handle = run.copies[csv.name].backend_handle
        assert handle is not None
        assert c.snapshot_at is not None
        try:
            c.real_bytes_read = self.backend.write_backup(
                backup=self.backup,
                job=run.job.label,
                vm=c.vm.name,
                csv=csv.name,
                handle=handle,
                kind=str(kind),
                snapshot_s=c.snapshot_at,
                extents=c.extents,
                modelled=c.disk_bytes,
            )
        except (SnapshotDeletedError, SnapshotNotFoundError):
            c.hresult = int(HResult.VSS_E_INSUFFICIENT_STORAGE)
            return False
        return True

    def settle(self, c: VmCopy, ok: bool) -> None:
        """The VM's backup in its set stands (``ok``: its files take their names) or is void:
        its files go."""
        self.backend.settle(c.vm.name, ok)

    def commit(self) -> None:
        """Its set's VMs are settled: the manifest lists what stands."""
        self.backend.commit()
