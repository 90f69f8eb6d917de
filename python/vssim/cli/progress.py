"""Progress of ``vssim run`` and ``vssim plan`` on standard error (standard output keeps the
result): a rich progress bar on a terminal, plain lines through a pipe, each with a time-left
estimate.

The runner emits plain counts (:class:`vssim.scale.progress.RunProgress`; a plan wraps them in
:class:`vssim.report.capacity_plan.Step`); this module is the one place they are drawn. A pipe
gets a line at the start — what is about to happen, before the first heavy step — then at most
one every ``every`` seconds, and one at the end of every run (of every backup for ``vssim
run``). The time left is the wall time so far scaled by the work still to do, the work being the
simulated seconds (the engine's cost grows with them), done and expected; until a share of it is
done the estimate says "estimating…".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TextIO

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from vssim.report.capacity_plan import PlanStart, Step
from vssim.report.formatting import duration, size
from vssim.scale.progress import RunProgress
from vssim.scenario import Scenario

#: Plain lines at most this often, seconds (a pipe's reader wants a pulse, not a flood).
EVERY_S = 10.0
#: The work share and the wall seconds before the time left is estimated (the first windows
#: include building the engine's cluster, which is not what the rest costs).
BASIS_FRACTION = 0.01
BASIS_S = 2.0
#: The bar's resolution, and how often an event redraws it at most (seconds; rich also
#: redraws it ten times a second on its own).
STEPS = 1000
REDRAW_S = 0.1


def time_left(elapsed_s: float, fraction: float) -> str:
    """``about 12.0 min left``, or ``time left: estimating…`` until there is a basis."""
    if fraction >= 1.0:
        return "nothing left"
    if fraction < BASIS_FRACTION or elapsed_s < BASIS_S:
        return "time left: estimating…"
    return f"about {duration(elapsed_s * (1.0 - fraction) / fraction)} left"


def counts(at: RunProgress, runs: tuple[int, int] | None = None, short: bool = False) -> str:
    """``run 2/14, snapshot sets 3/16, VMs copied 812/4,000, simulated 12.3 h of ~52.0 h``
    (``short``, for the bar: ``run 2/14 · sets 3/16 · VMs 812/4,000 · 12.3 h/~52.0 h sim``)."""
    parts = [] if runs is None else [f"run {runs[0]}/{runs[1]}"]
    if short:
        parts += [
            f"sets {at.sets_done}/{at.sets}",
            f"VMs {at.vms_copied:,}/{at.vms:,}",
            f"{duration(at.sim_s)}/~{duration(at.expected_s)} sim",
        ]
        return " · ".join(parts)
    parts += [
        f"snapshot sets {at.sets_done}/{at.sets}",
        f"VMs copied {at.vms_copied:,}/{at.vms:,}",
        f"simulated {duration(at.sim_s)} of ~{duration(at.expected_s)}",
    ]
    return ", ".join(parts)


def describe(sc: Scenario) -> str:
    return f"{sc.name}: {len(sc.nodes)} nodes, {len(sc.csvs)} CSVs, {len(sc.vms):,} VMs"


class _TwoLineBar(Progress):
    """The bar on one line (what, bar, elapsed, time left), its counts on the next: both fit an
    80-column terminal."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            yield Text("  " + str(task.fields.get("counts", "")), no_wrap=True, overflow="ellipsis")


class View:
    """Draws progress on ``stream`` (standard error): a bar if it is a terminal, else lines."""

    def __init__(
        self,
        stream: TextIO | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.every = EVERY_S if every is None else every
        self.clock = clock
        self.t0 = clock()
        self.last_line = -float("inf")
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.last_redraw = -float("inf")

    def __enter__(self) -> View:
        if self.terminal:
            console = Console(file=self.stream, force_terminal=True)
            self.bar = _TwoLineBar(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(bar_width=None),
                TimeElapsedColumn(),
                TextColumn("{task.fields[left]}"),
                console=console,
                transient=True,
                expand=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("starting", total=STEPS, counts="", left="")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()

    def note(self, text: str) -> None:
        """A line in any case (on a terminal, above the bar)."""
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)
        self.last_line = self.clock()

    def show(
        self, what: str, at: RunProgress, fraction: float, runs: tuple[int, int] | None = None
    ) -> None:
        """Where the work is: the bar moves; a pipe gets a line if ``every`` has passed."""
        now = self.clock()
        left = time_left(now - self.t0, fraction)
        if self.bar is not None and self.task is not None:
            self.bar.update(
                self.task,
                description=what,
                completed=round(fraction * STEPS),
                counts=counts(at, runs, short=True),
                left=left,
            )
            if now - self.last_redraw >= REDRAW_S:
                self.last_redraw = now
                self.bar.refresh()
        elif now - self.last_line >= self.every:
            self.note(f"  {what}: {counts(at, runs)}; {duration(now - self.t0)} elapsed, {left}")

    def done(self, text: str, fraction: float) -> None:
        """The end of a run: a line, with the time left."""
        self.note(f"  {text}; {time_left(self.clock() - self.t0, fraction)}")


class RunWatcher:
    """``vssim run``: the runner's events of one run."""

    def __init__(self, view: View, sc: Scenario, backups: Sequence[str]) -> None:
        self.view = view
        self.labels = list(backups)
        view.note(f"vssim run: {describe(sc)} ({sc.os}); backups: {', '.join(backups)}")

    def __call__(self, at: RunProgress) -> None:
        what = f"backup {min(at.backups_done + 1, at.backups)}/{at.backups}"
        if at.event == "start":
            self.view.note(
                f"  {at.sets} snapshot sets, {at.vms:,} VM copies to do, "
                f"~{duration(at.expected_s)} simulated"
            )
        elif at.event == "backup":
            label = self.labels[at.backups_done - 1]
            self.view.done(
                f"backup {at.backups_done}/{at.backups} ({label}) done at "
                f"{duration(at.sim_s)} simulated: {counts(at)}",
                at.fraction,
            )
        else:
            self.view.show(what, at, at.fraction)


class PlanWatcher:
    """``vssim plan``: the plan's start, its runs' events and their ends. With several runs at
    once (``--jobs``) a line is about the run that spoke last and says how many others are
    under way."""

    def __init__(self, view: View) -> None:
        self.view = view
        #: The runs under way (their numbers).
        self.going: set[int] = set()

    def __call__(self, step: PlanStart | Step) -> None:
        if isinstance(step, PlanStart):
            self.view.note(
                f"vssim plan: {describe(step.scenario)}; profiles {', '.join(step.profiles)}; "
                f"{step.planned} runs to do"
            )
            return
        strategy = step.strategy
        what = f"{step.profile} {strategy.label} (concurrency {strategy.concurrency})"
        runs = (step.run, step.planned)
        if step.done:
            self.going.discard(step.run)
        else:
            self.going.add(step.run)
            others = len(self.going) - 1
            if others:
                what += f" +{others} more"
        if step.done:
            sim = "" if step.at is None else f", {duration(step.at.sim_s)} simulated"
            self.view.done(
                f"[{step.run}/{step.planned}] {step.profile} {' + '.join(step.backups)} "
                f"(concurrency {strategy.concurrency}): {step.wall_s:.1f} s{sim}, "
                f"peak RSS {size(step.peak_rss_bytes)}",
                step.fraction,
            )
        elif step.at is not None:
            self.view.show(what, step.at, step.fraction, runs)
