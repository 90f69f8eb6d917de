"""The providers' part of a backup run in simulated time: each provider step of the snapshot set
(BeginPrepareSnapshot … PostFinalCommitSnapshots) on the nodes that take it, bounded by the set's
open windows, and flush-and-hold.

On 2012 a step is the CSV provider on the requester's node, the helper provider on the CSV's
coordinator and, there, the volume's own provider (system or hardware); on 2008 R2 the volume's
provider on the requester's node. The set machine (:mod:`vssim.vss.snapshot_set`) sends each call
to the providers' machines and says which window closes first and what its expiry means; this
module only spends the time and records it."""

from __future__ import annotations

from collections.abc import Callable

from vssim.scenario import Csv
from vssim.sim import costs, freeze_costs
from vssim.sim.run_scope import (
    EVENT_TEXT,
    VSS,
    WE,
    AbortBackupError,
    Proc,
    RunScope,
    WriterInstance,
)
from vssim.vss.enums import hresult_name
from vssim.vss.provider_state import ProviderCall
from vssim.vss.providers import (
    CSV_HELPER_PROVIDER,
    CSV_PROVIDER,
    SYSTEM_PROVIDER,
    ProviderInfo,
    volume_provider,
)
from vssim.vss.snapshot_set import PROVIDER_CALLS, SetEvent, SnapshotSetMachine
from vssim.vss.timeline import PhaseKind


def call_name(call: ProviderCall) -> str:
    """``COMMIT_SNAPSHOTS`` → ``CommitSnapshots``: the call as the timeline names it."""
    return "".join(w.capitalize() for w in call.name.split("_"))


class ProviderSteps:
    """The provider steps of one run; ``nodes_down(phase)`` is the run's node-down step, taken
    before each provider step."""

    def __init__(
        self,
        scope: RunScope,
        snapshot_set: SnapshotSetMachine,
        nodes_down: Callable[[str], Proc],
    ) -> None:
        self.scope = scope
        self.set = snapshot_set
        self.nodes_down = nodes_down

    def provider_for(self, csv: Csv) -> ProviderInfo:
        """The provider the requester talks to for ``csv``."""
        return CSV_PROVIDER if self.scope.profile.csv_providers else volume_provider(csv)

    def step(self, event: SetEvent, duration: float, phase: str, step: str = "") -> Proc:
        """A provider step of the set: faults of ``phase`` first, then the set sends the call to
        every volume's provider, and each takes ``duration``."""
        s = self.scope
        yield from self.nodes_down(phase)
        s.provider_fault(phase)
        self.set.send(event)
        for csv in s.job.volumes:
            yield from self._call(csv, PROVIDER_CALLS[event], duration, step)
        for lv in s.job.local_volumes:
            # A node's own volume: the system provider there, nothing CSV-specific.
            yield from s.span(
                s.req,
                SYSTEM_PROVIDER.name,
                call_name(PROVIDER_CALLS[event]),
                duration,
                step=step,
                detail=lv.volume_name,
                kind=PhaseKind.PROVIDER,
                call=PROVIDER_CALLS[event],
            )

    def bounded(self, event: SetEvent, duration: float, phase: str, step: str = "⑦") -> Proc:
        """A provider step inside the set's open windows: if it would end after the first one
        closes, the clock stops there, the set takes the expiry (its HRESULT, the writers it
        times out) and the step times out."""
        s = self.scope
        duration += s.delay(phase)
        due = self.set.next_expiry()
        if due is not None and s.env.now + duration > due.at:
            start = s.env.now
            yield s.env.timeout(max(0.0, due.at - s.env.now))
            name = call_name(PROVIDER_CALLS[event])
            self.set.send(due.event, at=due.at)
            hr = hresult_name(self.set.hresult)
            s.tl.add(
                s.req,
                VSS,
                f"{name} timed out",
                start,
                s.env.now,
                hr,
                step=step,
                kind=PhaseKind.TIMED_OUT,
                call=PROVIDER_CALLS[event],
            )
            self._mark_timed_out()
            raise AbortBackupError(self.set.hresult, f"{name}: {hr}")
        yield from self.step(event, duration, phase, step)

    def flush(self) -> Proc:
        """Flush-and-hold: the file systems flush (a fixed step plus the volumes' outstanding
        writes, :mod:`vssim.sim.freeze_costs`), then writes are held (the set's window is open
        since the flush began); a flush past the first window to close times out."""
        s = self.scope
        duration = costs.FLUSH_S + freeze_costs.host_flush_s(s.sc, s.job.volumes) + s.delay("flush")
        yield from self.nodes_down("flush")
        s.provider_fault("flush")
        start = s.env.now
        due = self.set.next_expiry()
        assert due is not None  # flush-and-hold is open
        timed_out = s.env.now + duration > due.at
        yield s.env.timeout(max(0.0, min(duration, due.at - s.env.now)))
        if timed_out:
            self.set.send(due.event, at=due.at)
        result = hresult_name(self.set.hresult) if timed_out else "S_OK"
        s.tl.add(
            s.req,
            VSS,
            "flush-and-hold: file systems flushed, writes held",
            start,
            s.env.now,
            result,
            step="⑦",
            kind=PhaseKind.FLUSH_AND_HOLD,
        )
        if timed_out:
            self._mark_timed_out()
            raise AbortBackupError(self.set.hresult, f"flush-and-hold: {result}")
        self.set.send(SetEvent.HOLD)

    def _call(self, csv: Csv, call: ProviderCall, duration: float, step: str) -> Proc:
        s = self.scope
        name = call_name(call)
        vol = volume_provider(csv)
        kind, c = PhaseKind.PROVIDER, csv.name
        if s.profile.csv_providers:
            coord = s.state.coordinators[csv.name]
            yield from s.span(
                s.req,
                CSV_PROVIDER.name,
                name,
                costs.RPC_S,
                step=step,
                detail=csv.volume_name,
                kind=kind,
                call=call,
                csv=c,
            )
            helper = CSV_HELPER_PROVIDER.name
            yield from s.span(coord, helper, name, costs.RPC_S, step, kind=kind, call=call, csv=c)
            yield from s.span(coord, vol.name, name, duration, step, kind=kind, call=call, csv=c)
        else:
            yield from s.span(
                s.req,
                vol.name,
                name,
                duration,
                step=step,
                detail=csv.volume_name,
                kind=kind,
                call=call,
                csv=c,
            )

    def _mark_timed_out(self) -> None:
        """The writers the freeze window's expiry failed (FREEZE_TIMEOUT)."""
        for w in self.set.timed_out:
            assert isinstance(w, WriterInstance)
            self.scope.mark(
                w.node,
                w.name,
                EVENT_TEXT[WE.FREEZE_TIMEOUT],
                hresult_name(self.set.hresult),
                detail=str(w.machine.state),
                kind=PhaseKind.WRITER,
                call=WE.FREEZE_TIMEOUT,
            )

    def delete(self, csv: Csv) -> None:
        """``DeleteSnapshots`` at ``csv``'s provider, if it has a created set to delete."""
        self.delete_volume(csv.name)

    def delete_volume(self, name: str) -> None:
        """``DeleteSnapshots`` at the provider of the set's volume ``name`` (a CSV's name or a
        node volume's key)."""
        m = self.set.providers.get(name)
        if m is not None and m.accepts(ProviderCall.DELETE_SNAPSHOTS):
            m.send(ProviderCall.DELETE_SNAPSHOTS)

    def abort(self, hr: int, message: str) -> None:
        """The set aborts: every provider that can still abort does (``AbortSnapshots``)."""
        s = self.scope
        if self.set.accepts(SetEvent.ABORT):
            self.set.send(SetEvent.ABORT, hr=hr, why=message)
            for name in self.set.aborted_providers:
                csv = s.sc.csv_by_name.get(name)
                s.mark(
                    s.req,
                    SYSTEM_PROVIDER.name if csv is None else self.provider_for(csv).name,
                    "AbortSnapshots",
                    kind=PhaseKind.PROVIDER,
                    call=ProviderCall.ABORT_SNAPSHOTS,
                    csv=name if csv is not None else None,
                )
