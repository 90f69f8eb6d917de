"""What every part of a backup run shares: the job, the cluster, the clock, the timeline, the
recording helpers and the fault look-ups (:class:`RunBase`). The run itself is assembled from
:mod:`.writer_driver` (writer events), :mod:`.csv_access` (ownership and redirected access) and
:mod:`.backup` (the requester's calls and the providers)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

from vssim.scenario import Csv, Fault, FaultKind, Vm
from vssim.sim import costs
from vssim.sim.links import ClusterResources
from vssim.vss.backup_state import BackupComponentsMachine, BcCall
from vssim.vss.cluster_state import ClusterState, ShadowCopy
from vssim.vss.enums import HResult
from vssim.vss.jobs import BackupJob, BackupResult
from vssim.vss.metadata import WriterMetadata
from vssim.vss.profiles import Profile, profile_for
from vssim.vss.snapshot_set import SnapshotSetMachine
from vssim.vss.timeline import Timeline
from vssim.vss.well_known_ids import HYPERV_WRITER_NAME
from vssim.vss.writer_state import WriterEvent, WriterMachine

Proc = Generator[Any, Any, Any]
WE = WriterEvent

PHASE_OF = {
    WE.IDENTIFY: "identify",
    WE.PREPARE_BACKUP: "prepare_backup",
    WE.PREPARE_SNAPSHOT: "prepare_snapshot",
    WE.FREEZE: "freeze",
    WE.THAW: "thaw",
    WE.POST_SNAPSHOT: "post_snapshot",
    WE.BACKUP_COMPLETE: "backup_complete",
}
EVENT_TEXT = {
    WE.IDENTIFY: "Identify",
    WE.PREPARE_BACKUP: "PrepareForBackup",
    WE.PREPARE_SNAPSHOT: "PrepareForSnapshot",
    WE.FREEZE: "Freeze",
    WE.THAW: "Thaw",
    WE.POST_SNAPSHOT: "PostSnapshot",
    WE.BACKUP_COMPLETE: "BackupComplete",
    WE.ABORT: "Abort",
    WE.BACKUP_SHUTDOWN: "BackupShutdown",
    WE.FREEZE_TIMEOUT: "freeze window expired",
}
REQUESTER = "requester"
VSS = "VSS"
CLUSTER = "cluster"


class AbortBackupError(Exception):
    """Raised inside a backup process: the set must be aborted with ``hresult``."""

    def __init__(self, hresult: int, message: str) -> None:
        self.hresult = hresult
        super().__init__(message)


@dataclass
class WriterInstance:
    """A writer taking part in the backup, on one node."""

    kind: str
    node: str
    wmd: WriterMetadata | None
    machine: WriterMachine
    vms: tuple[Vm, ...]
    #: Selected components belong to it (or it was relayed to): its failure fails the backup.
    involved: bool

    @property
    def name(self) -> str:
        return HYPERV_WRITER_NAME if self.wmd is None else self.wmd.name


class RunBase:
    """State and helpers of one backup run (see :class:`vssim.sim.backup_run.BackupRun`)."""

    def __init__(
        self,
        env: simpy.Environment,
        state: ClusterState,
        resources: ClusterResources,
        job: BackupJob,
    ) -> None:
        self.env = env
        self.state = state
        self.sc = state.scenario
        self.res = resources
        self.job = job
        self.profile: Profile = profile_for(self.sc.os)
        self.tl = Timeline()
        self.result = BackupResult(job=job, timeline=self.tl)
        self.req = self.sc.node(job.node).name
        self.bc = BackupComponentsMachine(job.context)
        self.set = SnapshotSetMachine(
            f"snapshot set of {job.label}", job.with_writers, job.transportable
        )
        self.writers: list[WriterInstance] = []
        self.remote: dict[str, WriterInstance] = {}
        self.copies: dict[str, ShadowCopy] = {}
        self.claimed: list[Csv] = []
        self.redirect_since: dict[str, float] = {}
        self.downtime_since: dict[str, float] = {}
        self.fired: set[int] = set()
        self.commit_time: float | None = None
        self.selected_by_node: dict[str, tuple[Vm, ...]] = {}

    def _span(
        self, node: str, role: str, event: str, duration: float, step: str = "", detail: str = ""
    ) -> Proc:
        start = self.env.now
        seq = self.tl.next_seq()
        if duration > 0:
            yield self.env.timeout(duration)
        self.tl.add(node, role, event, start, self.env.now, step=step, detail=detail, seq=seq)

    def _mark(
        self,
        node: str,
        role: str,
        event: str,
        result: str = "S_OK",
        step: str = "",
        detail: str = "",
    ) -> None:
        now = self.env.now
        self.tl.add(node, role, event, now, now, result=result, step=step, detail=detail)

    def _call(self, call: BcCall, duration: float = 0.0, detail: str = "") -> Proc:
        self.bc.send(call)
        name = "".join(w.capitalize() for w in call.name.split("_"))
        yield from self._span(self.req, REQUESTER, name, duration, detail=detail)

    def _faults(self, kind: FaultKind, phase: str) -> list[tuple[int, Fault]]:
        return [(i, f) for i, f in enumerate(self.sc.faults) if f.kind is kind and f.phase == phase]

    def _delay(self, phase: str, node: str | None = None) -> float:
        return sum(
            f.seconds
            for _, f in self._faults(FaultKind.DELAY, phase)
            if f.node is None or node is None or f.node == node
        )

    def _nodes_down(self, phase: str) -> Proc:
        for i, f in self._faults(FaultKind.NODE_DOWN, phase):
            if i in self.fired or f.node is None:
                continue
            self.fired.add(i)
            node = f.node
            self.state.nodes_down.add(node)
            self._mark(node, CLUSTER, f"node {node} down", "DOWN", detail=f"at {phase}")
            self._node_went_down(node)
            if node == self.req:
                raise AbortBackupError(
                    HResult.VSS_E_CLUSTER_ERROR, f"the requester's node {node} went down"
                )
            for csv in self.job.volumes:
                if self.state.coordinators[csv.name] == node and self.commit_time is None:
                    yield from self._failover(csv)

    def _node_went_down(self, node: str) -> None:
        """Called the moment ``node`` goes down (before any failover); a data path that runs the
        guests' I/O stops the node's VMs here."""

    def _failover(self, csv: Csv) -> Proc:
        up = [n.name for n in self.sc.nodes if self.state.is_up(n.name)]
        new = self.req if self.req in up else up[0]
        self.state.coordinators[csv.name] = new
        yield from self._span(new, CLUSTER, f"{csv.name} fails over to {new}", costs.FAILOVER_S)

    def _provider_fault(self, phase: str) -> None:
        for _, f in self._faults(FaultKind.PROVIDER_ERROR, phase):
            hr = f.hresult or HResult.VSS_E_UNEXPECTED_PROVIDER_ERROR
            raise AbortBackupError(hr, f"the provider failed {phase}")

    # Provided by the parts of the run (declared here so each part can call the others).
    def _participants(self) -> list[WriterInstance]:
        raise NotImplementedError
