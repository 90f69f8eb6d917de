"""Cluster Shared Volume access during a backup: on 2008 R2,
``ClusterPrepareSharedVolumeForBackup`` (one backup per CSV — a second gets 0x8007173D —, ownership
moved to the backup node, redirected access for the whole backup with the system provider, only
while the snapshot is taken with a hardware one); on 2012, redirected access only while the
snapshot is taken (:func:`~vssim.vss.profiles.redirected_for_whole_backup`). What crosses the
network while a CSV is redirected is the data path's to say
(:meth:`~vssim.sim.data_path.DataPath.redirect_off`); it is counted per CSV."""

from __future__ import annotations

from collections.abc import Iterable

from vssim.scenario import Csv, Vm
from vssim.sim import costs
from vssim.sim.data_path import DataPath, SetView
from vssim.sim.run_scope import CLUSTER, AbortBackupError, Proc, RunScope
from vssim.vss.enums import HResult
from vssim.vss.limits import STALE_CSV_BACKUP_S
from vssim.vss.profiles import redirected_for_whole_backup
from vssim.vss.timeline import PhaseKind


class CsvAccess:
    """The CSV side of a backup run."""

    def __init__(self, scope: RunScope, data: DataPath, run: SetView) -> None:
        self.scope = scope
        self.data = data
        self.run = run
        #: CSVs this backup holds in "backup in progress" (2008 R2).
        self.claimed: list[Csv] = []
        #: CSVs in redirected access now, and since when.
        self.redirect_since: dict[str, float] = {}
        #: Seconds each CSV spent in redirected access during the run.
        self.redirect_windows: dict[str, float] = {}

    def is_redirected(self, csv: Csv) -> bool:
        return csv.name in self.redirect_since

    def whole_backup(self, csv: Csv) -> bool:
        """Whether ``csv`` is redirected from the prepare to the backup's end (else only while
        the snapshot is taken)."""
        return redirected_for_whole_backup(self.scope.profile, csv.provider)

    def prepare_2008r2(self) -> Proc:
        """ClusterPrepareSharedVolumeForBackup: one backup per CSV; ownership to this node;
        redirected access until the backup ends (system provider)."""
        s = self.scope
        for csv in s.job.volumes:
            holder = s.state.csv_backup_holder(csv.name, s.env.now)
            if holder is not None:
                s.mark(
                    s.req,
                    CLUSTER,
                    f"ClusterPrepareSharedVolumeForBackup {csv.name}",
                    "CSV_BACKUP_IN_PROGRESS",
                    detail=f"backup in progress by {holder}",
                    kind=PhaseKind.CLUSTER,
                    csv=csv.name,
                )
                raise AbortBackupError(
                    HResult.CSV_BACKUP_IN_PROGRESS,
                    f"{csv.mount_point} is already in backup ({holder})",
                )
            s.state.backup_in_progress[csv.name] = s.job.label
            self.claimed.append(csv)
            if s.state.coordinators[csv.name] != s.req:
                yield from s.span(
                    s.req,
                    CLUSTER,
                    f"move {csv.name} ownership to {s.req}",
                    costs.OWNERSHIP_MOVE_S,
                    detail=f"from {s.state.coordinators[csv.name]}",
                    kind=PhaseKind.CLUSTER,
                    csv=csv.name,
                )
                s.state.coordinators[csv.name] = s.req
            if self.whole_backup(csv):
                yield from self.redirect_on(csv, "for the whole backup")

    def _writers(self, csv: Csv) -> Iterable[Vm]:
        """``csv``'s running VMs on up nodes (the scenario's own list when no node is down)."""
        s = self.scope
        running = s.sc.running_vms_by_csv[csv.name]
        if not s.state.nodes_down:
            return running
        return (vm for vm in running if s.state.is_up(vm.node))

    def csv_writers(self, csv: Csv) -> list[Vm]:
        """The VMs writing to ``csv`` now, from any node: running, on an up node."""
        return list(self._writers(csv))

    def redirected_writers(self, csv: Csv) -> list[Vm]:
        """The VMs whose writes to ``csv`` cross the network while it is in redirected access:
        its writers on a node other than the coordinator."""
        coord = self.scope.state.coordinators[csv.name]
        return [vm for vm in self._writers(csv) if vm.node != coord]

    def redirect_on(self, csv: Csv, why: str) -> Proc:
        s = self.scope
        yield from s.span(
            s.state.coordinators[csv.name],
            CLUSTER,
            f"{csv.name} in redirected access ({why})",
            costs.REDIRECT_SWITCH_S,
            kind=PhaseKind.CLUSTER,
            csv=csv.name,
        )
        self.redirect_since[csv.name] = s.env.now
        self.data.redirect_on(self.run, csv)

    def redirect_off(self, csv: Csv) -> Proc:
        s = self.scope
        since = self.redirect_since.pop(csv.name, None)
        if since is None:
            return
        redirected = self.data.redirect_off(self.run, csv, since)
        window = s.env.now - since
        self.redirect_windows[csv.name] = self.redirect_windows.get(csv.name, 0.0) + window
        s.result.redirected_bytes[csv.name] = s.result.redirected_bytes.get(csv.name, 0) + (
            redirected
        )
        yield from s.span(
            s.state.coordinators[csv.name],
            CLUSTER,
            f"{csv.name} back to direct I/O",
            costs.REDIRECT_SWITCH_S,
            detail=f"{redirected} bytes redirected over {window:.1f} s",
            kind=PhaseKind.CLUSTER,
            csv=csv.name,
        )

    def release(self, set_created: bool) -> Proc:
        """End of the backup: direct I/O again, and the CSVs leave "backup in progress" — at
        once, or (2008 R2) only after 30 min when the requester's process died with its node
        before the snapshot set was created (``ClusterClearBackupStateForSharedVolume`` docs)."""
        s = self.scope
        requester_died = not s.state.is_up(s.req) and not set_created
        for csv in list(s.job.volumes):
            yield from self.redirect_off(csv)
        for csv in self.claimed:
            s.state.backup_in_progress.pop(csv.name, None)
            if requester_died:
                until = s.env.now + STALE_CSV_BACKUP_S
                s.state.stale_backup_until[csv.name] = until
                s.mark(
                    s.state.coordinators[csv.name],
                    CLUSTER,
                    f"{csv.name} stays in backup (requester died) until {until:.0f} s",
                    kind=PhaseKind.CLUSTER,
                    csv=csv.name,
                )
        self.claimed = []
