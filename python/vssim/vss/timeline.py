"""The record of a simulated run: every step, with its node, role, event, simulated start and end
(seconds), result and, where the seed numbers it, the seed's step (``①``, ``②-1`` …). A timeline is
a plain list of :class:`Record`; :func:`to_polars` makes it a DataFrame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl


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
    ) -> Record:
        r = Record(
            self.next_seq() if seq is None else seq,
            node,
            role,
            event,
            start,
            end,
            result,
            step,
            detail,
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
