"""The record of a simulated run: every step, with its node, role, event, simulated start and end
(seconds), result and, where the seed numbers it, the seed's step (``①``, ``②-1`` …). A timeline is
a plain list of :class:`Record`; :func:`to_polars` makes it a DataFrame.

``role``, ``event`` and ``detail`` are words for people. Code reads a step by its typed fields:
``kind`` (:class:`PhaseKind`), ``call`` (the protocol call or event it carries out, when it is
one: a :class:`~vssim.vss.writer_state.WriterEvent`, a
:class:`~vssim.vss.provider_state.ProviderCall` or a :class:`~vssim.vss.backup_state.BcCall`) and
the ``vm`` / ``csv`` it concerns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

import polars as pl


class PhaseKind(Enum):
    """What a timeline step is."""

    #: An ``IVssBackupComponents`` call, or the requester's own step (``call``: the BcCall).
    REQUESTER = auto()
    #: A writer handling an event (``call``: the WriterEvent; also a failed relay to it).
    WRITER = auto()
    #: One VM's part of a writer event failed (``call``: the WriterEvent).
    VM_FAILED = auto()
    #: ③ the Hyper-V writer asks the VM's integration services for a backup.
    GUEST_REQUEST = auto()
    #: ④ guest VSS: the guest's writers prepare and freeze.
    GUEST_FREEZE = auto()
    #: ⑤ the guest's own shadow copy, written to its VHDX through the CSV.
    GUEST_SHADOW_COPY = auto()
    #: A VM without integration services is saved (it is down until resumed).
    SAVE_STATE = auto()
    RESUME = auto()
    #: PostSnapshot: the VM's disks inside the shadow copy are rolled back.
    AUTO_RECOVERY = auto()
    #: A provider call (``call``: the ProviderCall).
    PROVIDER = auto()
    #: Flush-and-hold: the file systems flushed, writes held (until the commit).
    FLUSH_AND_HOLD = auto()
    #: The commit is done: the held writes go on.
    WRITES_RELEASED = auto()
    #: A provider step cut short when a window expired (``call``: the ProviderCall).
    TIMED_OUT = auto()
    #: ⑧ the set exists and the requester is told.
    SET_CREATED = auto()
    #: The cluster: ownership, redirected access, failover, a node going down.
    CLUSTER = auto()
    #: A VM's data copied from the shadow copy to the backup target.
    COPY = auto()
    #: volsnap deleted a shadow copy: its diff area could not grow (VolSnap 24).
    SNAPSHOT_DELETED = auto()


@dataclass(frozen=True)
class Record:
    seq: int
    node: str
    role: str
    event: str
    start: float
    end: float
    result: str = "S_OK"
    step: str = ""
    detail: str = ""
    kind: PhaseKind = field(kw_only=True)
    call: Enum | None = field(default=None, kw_only=True)
    vm: str | None = field(default=None, kw_only=True)
    csv: str | None = field(default=None, kw_only=True)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Timeline:
    records: list[Record] = field(default_factory=list)
    _seq: int = 0

    def next_seq(self) -> int:
        """A sequence number for a step that starts now (steps are recorded when they end, but
        ordered by when they started and, at equal times, by when they were issued)."""
        self._seq += 1
        return self._seq

    def add(
        self,
        node: str,
        role: str,
        event: str,
        start: float,
        end: float,
        result: str = "S_OK",
        step: str = "",
        detail: str = "",
        seq: int | None = None,
        *,
        kind: PhaseKind,
        call: Enum | None = None,
        vm: str | None = None,
        csv: str | None = None,
    ) -> Record:
        # The frozen dataclass's __init__ sets its 13 fields one object.__setattr__ at a time,
        # three times the cost of filling the instance's __dict__ at once; a 4,000-VM run records
        # ~60,000 steps. The record is the same (fields, equality, hash, still frozen).
        r = object.__new__(Record)
        r.__dict__.update(
            seq=self.next_seq() if seq is None else seq,
            node=node,
            role=role,
            event=event,
            start=start,
            end=end,
            result=result,
            step=step,
            detail=detail,
            kind=kind,
            call=call,
            vm=vm,
            csv=csv,
        )
        self.records.append(r)
        return r

    def ordered(self) -> list[Record]:
        """By simulated start time, then by the order the steps were issued."""
        return sorted(self.records, key=lambda r: (r.start, r.seq))

    def steps(self) -> list[str]:
        """The seed steps in the order they first happened."""
        seen: list[str] = []
        for r in self.ordered():
            if r.step and r.step not in seen:
                seen.append(r.step)
        return seen

    def find(self, **match: Any) -> list[Record]:
        return [r for r in self.ordered() if all(getattr(r, k) == v for k, v in match.items())]

    def __len__(self) -> int:
        return len(self.records)


#: The columns of a timeline as a table: the words (the typed fields stay in the records).
SCHEMA = {
    "seq": pl.Int64,
    "node": pl.Utf8,
    "role": pl.Utf8,
    "event": pl.Utf8,
    "start": pl.Float64,
    "end": pl.Float64,
    "result": pl.Utf8,
    "step": pl.Utf8,
    "detail": pl.Utf8,
}


def to_polars(timeline: Timeline) -> pl.DataFrame:
    """The timeline as a DataFrame (columns :data:`SCHEMA`), in simulated-time order."""
    rows = timeline.ordered()
    return pl.DataFrame({name: [getattr(r, name) for r in rows] for name in SCHEMA}, schema=SCHEMA)
