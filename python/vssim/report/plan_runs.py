"""Which runs a capacity plan makes for one profile, and in what order their tables stand.

Per profile, the sweep runs a full backup at every concurrency. The incremental needs a full
backup before it, so it continues the run of the concurrency the plan chooses (:class:`Sweep`);
the sweep's other points stop after their full backup. Only when the best point was not the
last one is its full backup run again (runs are deterministic: the same figures) to carry the
incremental. Sweep points past the cluster's reach (:func:`vssim.report.capacity_plan.reach`)
are the same run as the first of them: it runs once and its tables stand for the others. The
selective backups then run at the chosen concurrency.

:class:`ProfileRuns` holds those rules as a small state machine, so that the runs can go one
after another or several at once (:mod:`vssim.report.plan_workers`) with the same outcome: a
sweep run asks, once its full backup ends, whether to go on (:meth:`ProfileRuns.ask`); the
answer is known once every lower point has asked (the rule reads them in ascending order), and
runs already started never wait on runs not started (they are handed out in that order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vssim.report.strategies import PlanSettings, Strategy, followups, sweep
from vssim.scenario import OsProfile


class Sweep:
    """One profile's concurrency sweep: which point carries the incremental.

    The points are judged in ascending concurrency; the first whose full backup fits the window
    (no failures) is the chosen one, as :func:`vssim.report.analysis.best_concurrency` picks it.
    If none fits, the best is known at the end: the last point goes on if it is the best so far.
    """

    def __init__(self, settings: PlanSettings) -> None:
        self.window_s = settings.window_s
        self.ranks: dict[int, tuple[Any, ...]] = {}
        self.chosen: int | None = None

    def rank(self, failures: int, window: float, concurrency: int) -> tuple[Any, ...]:
        """Fitting points first (lowest concurrency), then the fewest failures, the shortest
        window."""
        fits = failures == 0 and window <= self.window_s
        return (0, concurrency) if fits else (1, failures, window, concurrency)

    def after_full(self, concurrency: int, last: bool, failures: int, window: float) -> bool:
        """Asked when the full backup at ``concurrency`` ends: go on with its incremental?"""
        rank = self.ranks[concurrency] = self.rank(failures, window, concurrency)
        if self.chosen is None and (rank[0] == 0 or (last and rank == min(self.ranks.values()))):
            self.chosen = concurrency
            return True
        return False

    def best(self) -> int:
        return min(self.ranks, key=lambda k: self.ranks[k])


@dataclass(frozen=True)
class RunTask:
    """One run of a plan: a strategy under a profile."""

    profile: OsProfile
    strategy: Strategy
    #: A sweep point's run asks after its full backup whether to go on with the incremental;
    #: the others run every backup of their strategy.
    asks: bool = False


class ProfileRuns:
    """One profile's runs (see the module doc): the sweep's first, the rest as they follow."""

    def __init__(self, profile: OsProfile, settings: PlanSettings, reach: tuple[int, int]) -> None:
        self.profile = profile
        self.settings = settings
        self.sweep = Sweep(settings)
        most_sets, most_vms = reach
        #: The sweep's points in ascending order, each with the point whose run stands for it
        #: (None: its own run).
        self.points: list[tuple[int, int | None]] = []
        first: dict[tuple[int, int], int] = {}
        for strategy in sweep(settings):
            k = strategy.concurrency
            effective = (min(k, most_sets), min(k, most_vms))
            self.points.append((k, first.get(effective)))
            first.setdefault(effective, k)
        self.asked: dict[int, tuple[int, float]] = {}
        self.answers: dict[int, bool] = {}
        self._judged = 0
        #: The runs after the sweep (the re-run of the best full backup, the selective ones),
        #: in order, once the chosen concurrency is known; ``_handed`` of them handed out.
        self.after: list[RunTask] = []
        self._handed = 0

    def sweep_runs(self) -> list[RunTask]:
        """The sweep's runs, in ascending concurrency (the order they must be handed out)."""
        return [self._sweep_run(k) for k, by in self.points if by is None]

    def _sweep_run(self, concurrency: int) -> RunTask:
        return RunTask(self.profile, Strategy("full", concurrency), asks=True)

    def ask(self, concurrency: int, failures: int, window: float) -> None:
        """The sweep run at ``concurrency`` finished its full backup."""
        self.asked[concurrency] = (failures, window)
        s = self.sweep
        while self._judged < len(self.points):
            i = self._judged
            k, by = self.points[i]
            if by is not None:
                s.ranks[k] = (*s.ranks[by][:-1], k)
            elif k in self.asked:
                self.answers[k] = s.after_full(k, i == len(self.points) - 1, *self.asked[k])
            else:
                break
            self._judged += 1
            if s.chosen is not None and not self.after:
                self.after = self._followups(s.chosen)
        if self._judged == len(self.points) and s.chosen is None:
            s.chosen = s.best()
            self.after = [RunTask(self.profile, Strategy("full", s.chosen))]
            self.after += self._followups(s.chosen)

    def _followups(self, chosen: int) -> list[RunTask]:
        return [RunTask(self.profile, st) for st in followups(self.settings, chosen)]

    def answer(self, concurrency: int) -> bool | None:
        """Whether the sweep run at ``concurrency`` goes on (None: not known yet)."""
        return self.answers.get(concurrency)

    def take_ready(self) -> list[RunTask]:
        """The runs after the sweep that became known since last asked."""
        out = self.after[self._handed :]
        self._handed = len(self.after)
        return out

    def order(self) -> list[tuple[str, Any]]:
        """The plan's tables in the order one run after another makes them: ``("run", task)``
        for a run's tables, ``("copy", (point, concurrency))`` for a sweep point another run
        stands for."""
        out: list[tuple[str, Any]] = []
        for k, by in self.points:
            if by is None:
                out.append(("run", self._sweep_run(k)))
            else:
                out.append(("copy", (by, k)))
        out += [("run", t) for t in self.after]
        return out
