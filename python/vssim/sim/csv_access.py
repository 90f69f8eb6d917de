"""Cluster Shared Volume access during a backup: on 2008 R2,
``ClusterPrepareSharedVolumeForBackup`` (one backup per CSV — a second gets 0x8007173D —, ownership
moved to the backup node, redirected access for the whole backup); on 2012, redirected access only
while the snapshot is taken. Redirected bytes are counted per CSV: the writes the other nodes' VMs
send through the coordinator during the redirected window."""

from __future__ import annotations

from vssim.scenario import Csv, Vm
from vssim.sim import costs
from vssim.sim.run_base import (
    CLUSTER,
    AbortBackupError,
    Proc,
    RunBase,
)
from vssim.vss.enums import HResult
from vssim.vss.limits import STALE_CSV_BACKUP_S


class CsvAccess(RunBase):
    """The CSV side of a backup run."""

    def _prepare_csvs_2008r2(self) -> Proc:
        """ClusterPrepareSharedVolumeForBackup: one backup per CSV; ownership to this node;
        redirected access until the backup ends."""
        for csv in self.job.volumes:
            holder = self.state.backup_in_progress.get(csv.name)
            stale = self.state.stale_backup_until.get(csv.name, 0.0)
            if holder is None and stale > self.env.now:
                holder = f"a backup whose requester died; clears at {stale:.0f} s"
            if holder is not None:
                self._mark(
                    self.req,
                    CLUSTER,
                    f"ClusterPrepareSharedVolumeForBackup {csv.name}",
                    "CSV_BACKUP_IN_PROGRESS",
                    detail=f"backup in progress by {holder}",
                )
                raise AbortBackupError(
                    HResult.CSV_BACKUP_IN_PROGRESS,
                    f"{csv.mount_point} is already in backup ({holder})",
                )
            self.state.backup_in_progress[csv.name] = self.job.label
            self.claimed.append(csv)
            if self.state.coordinators[csv.name] != self.req:
                yield from self._span(
                    self.req,
                    CLUSTER,
                    f"move {csv.name} ownership to {self.req}",
                    costs.OWNERSHIP_MOVE_S,
                    detail=f"from {self.state.coordinators[csv.name]}",
                )
                self.state.coordinators[csv.name] = self.req
            yield from self._redirect_on(csv, "for the whole backup")

    def _redirected_writers(self, csv: Csv) -> list[Vm]:
        """The VMs whose writes to ``csv`` cross the network while it is in redirected access:
        running, on an up node other than the coordinator."""
        coord = self.state.coordinators[csv.name]
        return [
            vm
            for vm in self.sc.vms_by_csv[csv.name]
            if vm.running and vm.node != coord and self.state.is_up(vm.node)
        ]

    def _redirect_on(self, csv: Csv, why: str) -> Proc:
        yield from self._span(
            self.state.coordinators[csv.name],
            CLUSTER,
            f"{csv.name} in redirected access ({why})",
            costs.REDIRECT_SWITCH_S,
        )
        self.redirect_since[csv.name] = self.env.now

    def _redirect_off(self, csv: Csv) -> Proc:
        since = self.redirect_since.pop(csv.name, None)
        if since is None:
            return
        window = self.env.now - since
        coord = self.state.coordinators[csv.name]
        redirected = sum(
            int(vm.workload.write_iops * vm.workload.mean_write_bytes * window)
            for vm in self._redirected_writers(csv)
        )
        self.result.redirected_bytes[csv.name] = (
            self.result.redirected_bytes.get(csv.name, 0) + redirected
        )
        yield from self._span(
            coord,
            CLUSTER,
            f"{csv.name} back to direct I/O",
            costs.REDIRECT_SWITCH_S,
            detail=f"{redirected} bytes redirected over {window:.1f} s",
        )

    def _release_csvs(self) -> Proc:
        """End of the backup: direct I/O again, and the CSVs leave "backup in progress" — at
        once, or (2008 R2) only after 30 min when the requester's process died with its node
        before the snapshot set was created (``ClusterClearBackupStateForSharedVolume`` docs)."""
        requester_died = not self.state.is_up(self.req) and not self.set.notified
        for csv in list(self.job.volumes):
            yield from self._redirect_off(csv)
        for csv in self.claimed:
            self.state.backup_in_progress.pop(csv.name, None)
            if requester_died:
                until = self.env.now + STALE_CSV_BACKUP_S
                self.state.stale_backup_until[csv.name] = until
                self._mark(
                    self.state.coordinators[csv.name],
                    CLUSTER,
                    f"{csv.name} stays in backup (requester died) until {until:.0f} s",
                )
        self.claimed = []
