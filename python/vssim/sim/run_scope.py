"""What every part of a backup run shares (:class:`RunScope`): the job, the cluster, the clock,
the links, the timeline and the result, with the helpers that record steps and look up faults.
The parts of a run — :class:`~vssim.sim.backup_run.BackupRun` (the requester's calls and the
providers), :class:`~vssim.sim.writer_driver.WriterDriver` (writer events) and
:class:`~vssim.sim.csv_access.CsvAccess` (ownership and redirected access) — each hold the scope;
none inherits from another."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import simpy

from vssim.scenario import Fault, FaultKind, Vm
from vssim.sim.links import Links
from vssim.vss.cluster_state import ClusterState
from vssim.vss.enums import HResult
from vssim.vss.jobs import BackupJob, BackupResult
from vssim.vss.metadata import WriterMetadata
from vssim.vss.profiles import Profile, profile_for
from vssim.vss.timeline import PhaseKind, Timeline
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


class RunScope:
    """The shared state of one backup run, and how its steps are recorded."""

    def __init__(
        self, env: simpy.Environment, state: ClusterState, links: Links, job: BackupJob
    ) -> None:
        self.env = env
        self.state = state
        self.sc = state.scenario
        self.links = links
        self.job = job
        self.profile: Profile = profile_for(self.sc.os)
        self.tl = Timeline()
        self.result = BackupResult(job=job, timeline=self.tl)
        #: The node the requester runs on.
        self.req = self.sc.node(job.node).name
        #: Node-down faults that already fired (by index in the scenario's faults).
        self.fired: set[int] = set()

    # --- recording ----------------------------------------------------------------------------

    def span(
        self,
        node: str,
        role: str,
        event: str,
        duration: float,
        step: str = "",
        detail: str = "",
        *,
        kind: PhaseKind,
        call: Enum | None = None,
        vm: str | None = None,
        csv: str | None = None,
    ) -> Proc:
        """A step that takes ``duration`` from now, recorded when it ends (``kind``, ``call``,
        ``vm``, ``csv``: the record's typed fields)."""
        start = self.env.now
        seq = self.tl.next_seq()
        if duration > 0:
            yield self.env.timeout(duration)
        self.tl.add(
            node,
            role,
            event,
            start,
            self.env.now,
            step=step,
            detail=detail,
            seq=seq,
            kind=kind,
            call=call,
            vm=vm,
            csv=csv,
        )

    def mark(
        self,
        node: str,
        role: str,
        event: str,
        result: str = "S_OK",
        step: str = "",
        detail: str = "",
        *,
        kind: PhaseKind,
        call: Enum | None = None,
        vm: str | None = None,
        csv: str | None = None,
    ) -> None:
        """An instant step, now."""
        now = self.env.now
        self.tl.add(
            node,
            role,
            event,
            now,
            now,
            result=result,
            step=step,
            detail=detail,
            kind=kind,
            call=call,
            vm=vm,
            csv=csv,
        )

    # --- faults -------------------------------------------------------------------------------

    def faults(self, kind: FaultKind, phase: str) -> list[tuple[int, Fault]]:
        return list(self.sc.faults_at.get((kind, phase), ()))

    def delay(self, phase: str, node: str | None = None) -> float:
        """Extra seconds the scenario's delay faults add to ``phase`` (on ``node``)."""
        return sum(
            f.seconds
            for _, f in self.faults(FaultKind.DELAY, phase)
            if f.node is None or node is None or f.node == node
        )

    def provider_fault(self, phase: str) -> None:
        """Raises the abort a provider fault at ``phase`` causes."""
        for _, f in self.faults(FaultKind.PROVIDER_ERROR, phase):
            hr = f.hresult or HResult.VSS_E_UNEXPECTED_PROVIDER_ERROR
            raise AbortBackupError(hr, f"the provider failed {phase}")

    def nodes_going_down(self, phase: str) -> Iterator[str]:
        """The nodes node-down faults take down at ``phase``, one by one (each fault fires once,
        when the caller takes it)."""
        for i, f in self.faults(FaultKind.NODE_DOWN, phase):
            if i in self.fired or f.node is None:
                continue
            self.fired.add(i)
            yield f.node
