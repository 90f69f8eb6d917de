"""A plan's runs in worker processes, several at once (``vssim plan --jobs N``).

Each run is a whole modelled run (its SimPy clock, its engine cluster) and runs alone in one
worker; the plan's own process hands out runs, answers a sweep run's question whether to go on
with its incremental (:meth:`vssim.report.plan_runs.ProfileRuns.ask`), draws progress and keeps
the tables. Runs are deterministic, so the tables are those of the same runs one after another
(:func:`vssim.report.capacity_plan.collect` puts them in that order).

Workers are fresh interpreters (``python -m vssim.report.plan_workers``: polars' and rayon's
threads do not survive a ``fork``, and unlike ``multiprocessing``'s ``spawn`` a worker never
imports the caller's main module, so a script without an ``if __name__ == "__main__"`` guard
can plan with workers too), each talking to the plan over its own socket pair. A worker sends
``progress`` (the run's latest :class:`~vssim.scale.progress.RunProgress`, at most every
:data:`PROGRESS_EVERY_S`), ``ask`` (and waits for the answer), then ``done`` with the run's
tables, or ``error`` with the exception the run raised — the plan raises it again, as if the
run had been its own. A worker that dies (killed, out of memory) is a
:class:`~vssim.errors.PlanError` naming the run.
"""

from __future__ import annotations

import importlib
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from vssim.errors import PlanError

if TYPE_CHECKING:
    from vssim.report.plan_runs import RunTask
    from vssim.report.strategies import PlanSettings
    from vssim.scale.progress import RunProgress
    from vssim.scenario import Scenario
    from vssim.sim.records import BackupRecord

#: A worker sends its run's progress at most this often (seconds); the last event before an
#: ask or the end always goes.
PROGRESS_EVERY_S = 0.2


#: ``vssim plan``'s runs at once at most by default (model choice: a plan's costly runs are the
#: four sweep points of each profile, and each worker holds a run's engine cluster — some
#: hundred MiB at 4,000 VMs).
DEFAULT_JOBS_MAX = 4


def default_jobs() -> int:
    """Runs at once unless told: the usable cores, at most :data:`DEFAULT_JOBS_MAX`."""
    return min(usable_cores(), DEFAULT_JOBS_MAX)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def peak_rss() -> int:
    """This process's peak resident memory so far, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class Event:
    """What a worker said: ``kind`` is ``progress``, ``ask``, ``done`` or ``error``."""

    worker: int
    kind: str
    task: RunTask
    #: progress: the RunProgress; ask: (failures, window_s); done: the tables; error: the
    #: exception's :func:`portable` parts.
    payload: Any
    #: The worker's peak resident memory so far.
    peak_rss_bytes: int = 0


def _worker_main(conn: Connection) -> None:
    """A worker's loop: run what the plan sends until told to stop (or the plan is gone)."""
    # Ctrl-C is the plan's to handle: it stops the workers (a worker would die mid-run).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        _, task, variant, settings, runner = message
        try:
            _run_one(conn, task, variant, settings, runner)
        except _PlanGoneError:
            return  # nobody to tell: the run's work is moot


class _PlanGoneError(Exception):
    """The plan's end of the pipe is closed (the plan exited or was killed)."""


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
        raise _PlanGoneError from exc


def _run_one(
    conn: Connection, task: RunTask, variant: Scenario, settings: PlanSettings, runner: Any
) -> None:
    from vssim.report.capacity_plan import Hooks

    last: list[RunProgress] = []
    sent = [-float("inf")]

    def flush() -> None:
        if last:
            _send(conn, ("progress", task, last[0], peak_rss()))
            last.clear()
        sent[0] = time.monotonic()

    def on_set(at: RunProgress) -> None:
        last[:] = [at]
        if time.monotonic() - sent[0] >= PROGRESS_EVERY_S:
            flush()

    def keep_going(rec: BackupRecord) -> bool:
        flush()
        _send(conn, ("ask", task, (rec.failures, rec.window_s), peak_rss()))
        try:
            answer = conn.recv()
        except EOFError as exc:
            raise _PlanGoneError from exc
        assert answer[0] == "answer", answer
        return bool(answer[1])

    try:
        hooks = Hooks(keep_going if task.asks else None, on_set)
        tables = runner(variant, task.strategy, settings, hooks)
        flush()
        _send(conn, ("done", task, tables, peak_rss()))
    except _PlanGoneError:
        raise
    except Exception as exc:  # sent to the plan, which raises it again
        _send(conn, ("error", task, portable(exc), peak_rss()))


def portable(exc: BaseException) -> tuple[str, str, tuple[Any, ...], dict[str, Any], str]:
    """``exc`` as plain parts that always pickle: its class (module, name), arguments and
    attributes (each kept if it pickles, else its text) and the worker's traceback. (An
    exception does not pickle as itself when its ``__init__`` takes other arguments than its
    message, as :class:`~vssim.errors.ScenarioError`'s does.)"""

    def plain(v: Any) -> Any:
        try:
            pickle.dumps(v)
        except Exception:  # anything that does not pickle goes as text
            return repr(v)
        return v

    cls = type(exc)
    args = tuple(plain(a) for a in exc.args)
    attrs = {k: plain(v) for k, v in vars(exc).items()}
    tb = "".join(traceback.format_exception(exc))
    return cls.__module__, cls.__qualname__, args, attrs, tb


def rebuilt(parts: tuple[str, str, tuple[Any, ...], dict[str, Any], str]) -> BaseException:
    """The exception :func:`portable` took apart, of its own class (its ``__init__`` is not
    run again); a class that cannot be found gives a :class:`~vssim.errors.PlanError`."""
    module, name, args, attrs, tb = parts
    try:
        cls: Any = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(name)
        exc = cls.__new__(cls)
        exc.args = args
        vars(exc).update(attrs)
    except Exception:  # the class is gone or odd: say what it was
        exc = PlanError(f"{module}.{name}: {args[0] if args else ''}")
    exc.add_note(f"(in a plan worker)\n{tb}")
    return exc


class Workers:
    """``n`` worker processes and the runs they have."""

    def __init__(self, n: int) -> None:
        self.conns: list[Connection] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.busy: dict[int, RunTask] = {}
        # The interpreter's own path, so the workers import what the plan imports (a runner
        # may live in the caller's modules).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            for _ in range(n):
                mine, theirs = socket.socketpair()
                fd = theirs.fileno()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "vssim.report.plan_workers", str(fd)],
                    pass_fds=(fd,),
                    env=env,
                    stdin=subprocess.DEVNULL,
                )
                theirs.close()
                self.conns.append(Connection(mine.detach()))
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def idle(self) -> list[int]:
        return [i for i in range(len(self.conns)) if i not in self.busy]

    def submit(
        self, worker: int, task: RunTask, variant: Scenario, settings: PlanSettings, runner: Any
    ) -> None:
        self.busy[worker] = task
        self.conns[worker].send(("run", task, variant, settings, runner))

    def answer(self, worker: int, go_on: bool) -> None:
        self.conns[worker].send(("answer", go_on))

    def events(self) -> Iterator[Event]:
        """What the busy workers say, as they say it (blocks while none has spoken)."""
        while self.busy:
            index = {id(self.conns[i]): i for i in self.busy}
            for ready in wait([self.conns[i] for i in self.busy]):
                i = index[id(ready)]
                conn, task = self.conns[i], self.busy[i]
                try:
                    kind, sent_task, payload, peak = conn.recv()
                except (EOFError, OSError) as exc:
                    code = self.procs[i].wait(timeout=10)
                    raise PlanError(
                        f"the worker running {task.profile} {task.strategy.label} (concurrency "
                        f"{task.strategy.concurrency}) died (exit code {code}): {exc!r}"
                    ) from exc
                if kind in ("done", "error"):
                    del self.busy[i]
                yield Event(i, kind, sent_task, payload, int(peak))

    def close(self) -> None:
        """Stop the workers (those still running a run are terminated)."""
        for i, conn in enumerate(self.conns):
            try:
                if i in self.busy:
                    self.procs[i].terminate()
                else:
                    conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self.conns:
            conn.close()
        self.busy.clear()


if __name__ == "__main__":
    # A worker: `python -m vssim.report.plan_workers FD`, FD its end of the plan's socket pair.
    _worker_main(Connection(int(sys.argv[1])))
