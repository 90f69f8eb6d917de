"""What ``vssim run`` and ``vssim plan`` show while they work (:mod:`vssim.cli.progress`): a rich
bar on a terminal (a real pseudo-terminal), plain lines through a pipe — the first before the
first heavy step, then runs, snapshot sets, simulated hours and a time-left estimate — on
standard error only, and nothing with ``--quiet``."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import vssim.scale.runner as runner_module
from scale_scenarios import small
from scenarios import EXAMPLES, ROOT
from vssim.cli import main
from vssim.cli import progress as cli_progress
from vssim.cli.progress import PlanWatcher, View, time_left
from vssim.report import capacity_plan as planning
from vssim.report.strategies import Strategy
from vssim.scale.model_cluster import EstimateClusterBackend, ModelClusterBackend
from vssim.scale.progress import RunProgress
from vssim.scale.runner import simulate

SMALL = EXAMPLES / "plan-small.toml"
RUN = ["run", str(SMALL), "--backup", "full", "incremental"]
#: The wall-time line of ``vssim run`` differs from one run to the next.
WALL = re.compile(r"guest writes simulated in [\d.]+ s")
LEFT = re.compile(r"about [\d.]+ (s|min|h) left")


def plan_args(out: Path) -> list[str]:
    # One run at a time, in this process: the test watches the engine clusters it builds.
    return ["plan", str(SMALL), "--quick", "--profiles", "ws2012", "--out", str(out), "--jobs", "1"]


class Order:
    """Records, at each heavy step (an engine cluster built for a run), what standard error
    held by then."""

    def __init__(self, err: io.StringIO) -> None:
        self.err = err
        self.seen: list[str] = []


def cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, every: float = 0.0
) -> tuple[int, str, str, list[str]]:
    """``main(args)`` with stdout and stderr captured (stderr not a terminal: plain lines, a
    line per event with ``every`` 0 and a time-left basis from the first per cent); also what
    stderr held when each run's engine cluster was about to be built."""
    out, err = io.StringIO(), io.StringIO()
    order = Order(err)

    class Watched(ModelClusterBackend):
        def __init__(self, *a: Any, **kw: Any) -> None:
            order.seen.append(err.getvalue())
            super().__init__(*a, **kw)

    class WatchedEstimate(EstimateClusterBackend):
        def __init__(self, *a: Any, **kw: Any) -> None:
            order.seen.append(err.getvalue())
            super().__init__(*a, **kw)

    monkeypatch.setattr(runner_module, "ModelClusterBackend", Watched)
    monkeypatch.setattr(runner_module, "EstimateClusterBackend", WatchedEstimate)
    monkeypatch.setattr(cli_progress, "EVERY_S", every)
    monkeypatch.setattr(cli_progress, "BASIS_S", 0.0)
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue(), order.seen


@pytest.fixture(scope="module")
def plan_pipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, list[str], str, str]:
    base = tmp_path_factory.mktemp("progress")
    with pytest.MonkeyPatch.context() as mp:
        code, out, err, seen = cli(plan_args(base / "a"), mp)
        assert code == 0
        qcode, qout, qerr, _ = cli([*plan_args(base / "b"), "--quiet"], mp)
        assert qcode == 0
    return out, err, seen, qout.replace(str(base / "b"), str(base / "a")), qerr


@pytest.fixture(scope="module")
def run_pipe() -> tuple[str, str, list[str], str, str]:
    with pytest.MonkeyPatch.context() as mp:
        code, out, err, seen = cli(RUN, mp)
        assert code == 0
        qcode, qout, qerr, _ = cli([*RUN, "--quiet"], mp)
        assert qcode == 0
    return out, err, seen, qout, qerr


def test_plan_says_what_it_will_do_before_the_first_run(
    plan_pipe: tuple[str, str, list[str], str, str],
) -> None:
    _, err, seen, _, _ = plan_pipe
    first = err.splitlines()[0]
    assert first == "vssim plan: SMALL: 4 nodes, 2 CSVs, 40 VMs; profiles ws2012; 2 runs to do"
    # Before the first run's engine cluster is built, that line (and only it) is out.
    assert seen[0] == first + "\n"


def test_run_says_what_it_will_do_before_the_engine_cluster(
    run_pipe: tuple[str, str, list[str], str, str],
) -> None:
    _, err, seen, _, _ = run_pipe
    first = err.splitlines()[0]
    assert first == "vssim run: SMALL: 4 nodes, 2 CSVs, 40 VMs (ws2012); backups: full, incremental"
    assert seen == [first + "\n"]


def test_plan_lines_carry_runs_sets_simulated_hours_and_time_left(
    plan_pipe: tuple[str, str, list[str], str, str],
) -> None:
    _, err, _, _, _ = plan_pipe
    lines = err.splitlines()
    going = [line for line in lines if "snapshot sets" in line]
    assert going, err
    pattern = re.compile(
        r"^  ws2012 (full|selective 10 %) \(concurrency 4\): run [12]/2, snapshot sets \d+/\d+, "
        r"VMs copied \d+/\d+, simulated [\d.]+ (s|min|h) of ~[\d.]+ (s|min|h); "
        r"[\d.]+ s elapsed, (time left: estimating…|about [\d.]+ (s|min|h) left|nothing left)$"
    )
    assert all(pattern.match(line) for line in going), going
    assert any(LEFT.search(line) for line in going)
    ends = [line for line in lines if line.startswith("  [")]
    assert [e.split(":")[0] for e in ends] == [
        "  [1/2] ws2012 full + incremental (concurrency 4)",
        "  [2/2] ws2012 selective 10 % (concurrency 4)",
    ]
    assert ends[-1].endswith("; nothing left")


def test_run_lines_carry_sets_simulated_time_and_time_left(
    run_pipe: tuple[str, str, list[str], str, str],
) -> None:
    _, err, _, _, _ = run_pipe
    lines = err.splitlines()
    assert lines[1] == "  4 snapshot sets, 80 VM copies to do, ~13.6 min simulated"
    ends = [line for line in lines if " done at " in line]
    assert [e.split(" done")[0] for e in ends] == [
        "  backup 1/2 (full)",
        "  backup 2/2 (incremental)",
    ]
    going = [line for line in lines if line.startswith("  backup ") and " done at " not in line]
    assert going
    assert all("snapshot sets" in g and "simulated" in g for g in going)
    assert any(LEFT.search(line) for line in going)


def test_stdout_is_the_report_and_the_same_with_or_without_progress(
    plan_pipe: tuple[str, str, list[str], str, str],
    run_pipe: tuple[str, str, list[str], str, str],
) -> None:
    for out, _, _, quiet_out, _ in (plan_pipe, run_pipe):
        assert out == quiet_out or WALL.sub("", out) == WALL.sub("", quiet_out)
        assert "snapshot sets" not in out
        assert "left" not in out
    assert plan_pipe[0].startswith("report: ")


def test_quiet_prints_no_progress(
    plan_pipe: tuple[str, str, list[str], str, str],
    run_pipe: tuple[str, str, list[str], str, str],
) -> None:
    assert plan_pipe[4] == ""
    assert run_pipe[4] == ""


def test_pipe_lines_at_most_every_so_often(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a long interval only the first line, one per backup's end and none in between.
    code, _, err, _ = cli(RUN, monkeypatch, every=3600.0)
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 4, lines
    assert " done at " in lines[2]
    assert " done at " in lines[3]


def test_time_left_needs_a_basis() -> None:
    assert time_left(30.0, 0.001) == "time left: estimating…"
    assert time_left(0.5, 0.5) == "time left: estimating…"
    assert time_left(10.0, 0.25) == "about 30.0 s left"
    assert time_left(600.0, 0.5) == "about 10.0 min left"
    assert time_left(10.0, 1.0) == "nothing left"


def test_plan_lines_throttled_by_wall_time() -> None:
    now = [0.0]
    buf = io.StringIO()
    watch = PlanWatcher(View(buf, every=20.0, clock=lambda: now[0], terminal=False))
    s = Strategy("full", 4)
    watch(planning.PlanStart(small("ws2012", vms=20), ("ws2012",), 4))
    for sets, wall in ((1, 5.0), (2, 21.0), (3, 30.0), (4, 41.5)):
        now[0] = wall
        at = RunProgress("set", 0, 2, sets, 32, sets * 10, 320, 3600.0 * sets, 36_000.0)
        watch(planning.Step(1, 4, "ws2012", s, sets, 32, wall, at=at, work_s=1.0))
    now[0] = 50.0
    watch(
        planning.Step(
            1, 4, "ws2012", s, 0, 0, 50.0, True, ("full", "incremental"), 310 << 20, None, 1, 4
        )
    )
    assert buf.getvalue().splitlines() == [
        "vssim plan: SMALL: 4 nodes, 2 CSVs, 20 VMs; profiles ws2012; 4 runs to do",
        "  ws2012 full (concurrency 4): run 1/4, snapshot sets 2/32, VMs copied 20/320, "
        "simulated 2.0 h of ~10.0 h; 21.0 s elapsed, time left: estimating…",
        "  ws2012 full (concurrency 4): run 1/4, snapshot sets 4/32, VMs copied 40/320, "
        "simulated 4.0 h of ~10.0 h; 41.5 s elapsed, time left: estimating…",
        "  [1/4] ws2012 full + incremental (concurrency 4): 50.0 s, peak RSS 310 MiB; "
        "about 2.5 min left",
    ]


def test_the_runner_tells_before_its_first_snapshot_set(monkeypatch: pytest.MonkeyPatch) -> None:
    told: list[object] = []

    class Watched(runner_module.BackupRun):  # type: ignore[name-defined,misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            told.append("set")
            super().__init__(*a, **kw)

    monkeypatch.setattr(runner_module, "BackupRun", Watched)
    simulate(small("ws2012", vms=20), ["full", "incremental"], progress=told.append)
    events = [t if isinstance(t, str) else t.event for t in told]
    assert events[:2] == ["start", "set"]
    assert {"window", "set", "backup"} <= set(events)
    runs = [t for t in told if isinstance(t, RunProgress)]
    assert runs[0].expected_s > 0
    assert runs[0].sim_s == 0
    assert runs[-1].fraction == 1.0
    assert [r.sim_s for r in runs] == sorted(r.sim_s for r in runs)


def _on_a_terminal(args: list[str], tmp: Path) -> tuple[bytes, bytes]:
    """``vssim ARGS`` with standard error on a pseudo-terminal (150 columns), standard output
    a pipe: what each received."""
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    env = {**os.environ, "COLUMNS": "150", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    stdout = tmp / "stdout"
    with stdout.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "vssim", *args], stdout=sink, stderr=slave, cwd=ROOT, env=env
        )
    os.close(slave)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    assert child.wait(timeout=120) == 0, drawn.decode(errors="replace")[-2000:]
    os.close(master)
    return bytes(drawn), stdout.read_bytes()


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_terminal_gets_a_rich_progress_bar(command: str, tmp_path: Path) -> None:
    args = RUN if command == "run" else plan_args(tmp_path)
    drawn, out = _on_a_terminal(args, tmp_path)
    text = drawn.decode()
    assert f"vssim {command}: SMALL" in text
    assert "\x1b[" in text, "drawn with terminal control sequences"
    # The bar's line (what, bar, elapsed, time left) and its counts' line under it.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"concurrency 4\) ━+", text) if command == "plan" else "━━" in text
    assert re.search(r"\d:\d\d:\d\d (time left: estimating…|about [\d.]+ (s|min|h) left)", text)
    counts = r"sets \d+/\d+ · VMs \d+/\d+ · [\d.]+ (s|min|h)/~[\d.]+ (s|min|h) sim"
    assert re.search(("run 1/2 · " if command == "plan" else "  ") + counts, text), text[-2000:]
    # The result goes to standard output, without the bar.
    assert b"\x1b[" not in out
    assert not re.search(rb"VMs \d+/\d+ \xc2\xb7", out)
    assert (b"report: " if command == "plan" else b"modelled backups") in out


def test_plan_lines_say_how_many_other_runs_are_under_way() -> None:
    # Two runs at once (--jobs 2): each line is about the run that spoke, and counts the other.
    buf = io.StringIO()
    watch = PlanWatcher(View(buf, every=0.0, clock=lambda: 100.0, terminal=False))
    watch(planning.PlanStart(small("ws2012", vms=20), ("ws2012",), 3))
    at = RunProgress("set", 0, 1, 1, 8, 5, 40, 600.0, 3600.0)
    one, two = Strategy("full", 1), Strategy("full", 2)
    watch(planning.Step(1, 3, "ws2012", one, 1, 8, 5.0, at=at, work_s=1.0))
    watch(planning.Step(2, 3, "ws2012", two, 1, 8, 5.0, at=at, work_s=1.0))
    watch(planning.Step(1, 3, "ws2012", one, 0, 0, 9.0, True, ("full",), 1 << 20, at, 1, 4))
    watch(planning.Step(2, 3, "ws2012", two, 2, 8, 9.5, at=at, work_s=1.0))
    lines = buf.getvalue().splitlines()
    assert lines[1].startswith("  ws2012 full (concurrency 1): run 1/3")
    assert lines[2].startswith("  ws2012 full (concurrency 2) +1 more: run 2/3")
    assert lines[3].startswith("  [1/3] ws2012 full (concurrency 1)")
    assert lines[4].startswith("  ws2012 full (concurrency 2): run 2/3"), "run 1 is done"
