"""A plan's runs several at once (``vssim plan --jobs N``): the same tables as one run after
another, the same decisions whatever order the sweep's runs finish in, and a run that fails or a
worker that dies is the plan's error, naming the run."""

from __future__ import annotations

import functools
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios import EXAMPLES
from vssim.errors import PlanError, ScenarioError
from vssim.report import capacity_plan as planning
from vssim.report.plan_runs import ProfileRuns
from vssim.report.strategies import PlanSettings, Strategy
from vssim.scenario import OsProfile, Scenario

SMALL = EXAMPLES / "plan-small.toml"


def _plan(jobs: int, settings: PlanSettings) -> tuple[dict[str, pl.DataFrame], list[Any]]:
    sc, _ = planning.load_for_plan(SMALL)
    told: list[Any] = []
    runner = functools.partial(planning.scale_runner, engine="estimate")
    return planning.collect(sc, settings, runner, told.append, jobs=jobs), told


def test_runs_in_workers_give_the_tables_of_runs_one_after_another() -> None:
    # A 2-minute window: nothing fits, so the best full backup runs again (the re-run path),
    # on both profiles, with two selective shares.
    settings = PlanSettings(window_s=120.0, fractions=(0.1, 0.5), concurrency=(1, 2, 8))
    alone, _ = _plan(1, settings)
    together, told = _plan(2, settings)
    assert alone.keys() == together.keys()
    for name in alone:
        assert alone[name].equals(together[name]), name
    steps = [s for s in told if isinstance(s, planning.Step)]
    done = [s for s in steps if s.done]
    assert len(done) == len({s.run for s in done}) == done[-1].planned
    walked = [s.work_done_s for s in steps]
    assert walked == sorted(walked), "the work done never goes back"
    assert steps[-1].fraction == pytest.approx(1.0)
    assert all(s.peak_rss_bytes > 0 for s in steps)


@given(
    st.lists(st.tuples(st.integers(0, 2), st.floats(10.0, 500.0)), min_size=1, max_size=5).flatmap(
        lambda results: st.tuples(st.just(results), st.permutations(range(len(results))))
    ),
    st.integers(1, 8),
)
@settings(max_examples=200, deadline=None)
def test_the_sweep_decides_the_same_whatever_order_its_runs_finish_in(
    case: tuple[list[tuple[int, float]], list[int]], most: int
) -> None:
    results, finish_order = case
    levels = (1, 2, 4, 8, 16)[: len(results)]
    plan = PlanSettings(window_s=200.0, fractions=(0.1,), concurrency=levels)
    reach = (most, most)

    def decide(order: list[int]) -> tuple[dict[int, bool], list[Any]]:
        pr = ProfileRuns(OsProfile.WS2012, plan, reach)
        asked = [t.strategy.concurrency for t in pr.sweep_runs()]
        answers: dict[int, bool] = {}
        for i in order:
            k = levels[i]
            if k not in asked:
                continue
            pr.ask(k, *results[i])
            for j in asked:
                a = pr.answer(j)
                if a is not None:
                    answers.setdefault(j, a)
        assert set(answers) == set(asked), "every run gets its answer once all have asked"
        return answers, pr.order()

    in_order = decide(list(range(len(results))))
    assert decide(finish_order) == in_order
    answers, _ = in_order
    assert sum(answers.values()) <= 1, "at most one sweep run carries the incremental"


def _refused(sc: Scenario, strategy: Strategy, settings: PlanSettings, hooks: Any) -> Any:
    raise ScenarioError(sc.name, "strategy", strategy.label, f"refused at {strategy.concurrency}")


def _killed(sc: Scenario, strategy: Strategy, settings: PlanSettings, hooks: Any) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_run_that_fails_in_a_worker_is_the_plans_error() -> None:
    sc, _ = planning.load_for_plan(SMALL)
    settings = PlanSettings(window_s=120.0, fractions=(0.1,), concurrency=(1, 2))
    with pytest.raises(ScenarioError, match="strategy = 'full': expected refused at") as got:
        planning.collect(sc, settings, _refused, jobs=2)
    # Of its own class, with its attributes (its __init__ takes other arguments than its
    # message, so it does not pickle as itself) and the worker's traceback as a note.
    assert (got.value.key, got.value.value) == ("strategy", "full")
    assert any("in a plan worker" in n and "_refused" in n for n in got.value.__notes__)


def test_a_worker_that_dies_is_a_plan_error_naming_its_run() -> None:
    sc, _ = planning.load_for_plan(SMALL)
    settings = PlanSettings(
        profiles=(OsProfile.WS2012,), window_s=120.0, fractions=(0.1,), concurrency=(1, 2)
    )
    with pytest.raises(PlanError, match=r"worker running ws2012 full \(concurrency [12]\) died"):
        planning.collect(sc, settings, _killed, jobs=2)


def test_workers_are_handed_the_costliest_profile_first() -> None:
    sc, _ = planning.load_for_plan(SMALL)
    assert sc.os is OsProfile.WS2012, "one after another, the scenario's own profile goes first"
    # 2008 R2 backs up per node and CSV: more snapshot sets than 2012's per coordinator, so
    # its runs cost more and go to the workers first.
    variants = {p: planning.profile_scenario(sc, p) for p in (OsProfile.WS2012, OsProfile.WS2008R2)}
    sets = {p: planning._sets_of(v) for p, v in variants.items()}
    assert sets[OsProfile.WS2008R2] > sets[OsProfile.WS2012]
    _, told = _plan(2, PlanSettings(window_s=120.0, fractions=(0.1,), concurrency=(1, 2)))
    first = {s.run: s.profile for s in told if isinstance(s, planning.Step)}
    assert (first[1], first[2]) == ("ws2008r2", "ws2008r2")


def test_a_script_without_a_main_guard_plans_with_workers(tmp_path: Path) -> None:
    # multiprocessing's spawn would import this script again in every worker (and fail); the
    # workers are `python -m vssim.report.plan_workers` and never import it.
    script = tmp_path / "plan_it.py"
    script.write_text(
        "import functools\n"
        "from vssim.report import capacity_plan as planning\n"
        "from vssim.report.strategies import PlanSettings\n"
        f"sc, _ = planning.load_for_plan(__import__('pathlib').Path({str(SMALL)!r}))\n"
        "settings = PlanSettings(window_s=120.0, fractions=(0.1,), concurrency=(1, 2))\n"
        "runner = functools.partial(planning.scale_runner, engine='estimate')\n"
        "tables = planning.collect(sc, settings, runner, jobs=2)\n"
        "print(tables['summary'].height)\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 4


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_workers_leave_when_the_plan_is_killed(tmp_path: Path) -> None:
    # A plan killed outright (no chance to stop its workers): each worker notices at its next
    # message and exits, leaving nothing running.
    plan = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vssim",
            "plan",
            str(SMALL),
            "--jobs",
            "2",
            "--window",
            "2 min",
            "--out",
            str(tmp_path / "r"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert plan.stderr is not None
    plan.stderr.readline()  # the plan has started
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = _children(plan.pid)
        time.sleep(0.05)
    assert len(workers) == 2, "the plan started its two workers"
    plan.kill()
    plan.wait()
    # The workers write to the plan's standard error (inherited): it ends when they have all
    # gone, and a worker that died of the broken pipe would have left its traceback there.
    rest = _read_to_end(plan.stderr, timeout_s=60)
    plan.stderr.close()
    assert rest is not None, "a worker kept the plan's standard error open for a minute"
    assert "Traceback" not in rest, rest
    alive = [w for w in workers if _alive(w)]
    assert not alive, f"workers still running after their plan died: {alive}"


def _read_to_end(stream: Any, timeout_s: float) -> str | None:
    """What ``stream`` still holds up to its end, or None if it has not ended by then."""
    chunks: list[bytes] = []
    fd = stream.fileno()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(data)
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
