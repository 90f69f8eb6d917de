"""A batch file of vshadow invocations against one cluster state, run the way cmd.exe runs it:
``call`` of the SETVAR script vshadow wrote, ``%VAR%`` expansion, and ``if errorlevel N`` —
true when ERRORLEVEL is **N or more** — after each step, as admins' scripts test vshadow.

The interpreter below knows the few cmd.exe statements such a script uses (``@echo off``,
``rem``, ``echo``, ``set``, ``call``, ``if [not] errorlevel N <statement>``, ``goto``, labels,
``exit /b N``); ``vshadow`` runs ``vssim vshadow`` on the case's scenario, node and state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scenarios import SEED
from vshadow_cases import values
from vssim.cli import main

SCRIPT = r"""@echo off
rem Nightly: a persistent shadow copy of the CSV, checked, then removed.
vshadow -p -script=setvar.cmd "-wi=%REMOTE%" C:\ClusterStorage\Volume
if errorlevel 1 goto failed
call setvar.cmd
vshadow -s=%SHADOW_ID_1%
if errorlevel 1 goto failed
vshadow -wi="No Such Writer" C:\ClusterStorage\Volume
if not errorlevel 2 goto unexpected
if errorlevel 3 goto unexpected
vshadow -bogus
if not errorlevel 1 goto unexpected
if errorlevel 2 goto unexpected
vshadow -dx=%SHADOW_SET_ID%
if errorlevel 1 goto failed
vshadow -ds=%SHADOW_ID_1%
if errorlevel 1 echo already gone>>log.txt
if errorlevel 2 echo errorlevel %ERRORLEVEL%>>log.txt
exit /b 0
:failed
exit /b 10
:unexpected
exit /b 20
"""


def argv(line: str) -> list[str]:
    """What ``wmain`` receives for ``line`` (the C runtime's rules, backslashes left alone):
    spaces separate arguments except inside double quotes, and the quotes go."""
    out, cur, quoted, any_ = [], "", False, False
    for ch in line:
        if ch == '"':
            quoted, any_ = not quoted, True
        elif ch in " \t" and not quoted:
            if cur or any_:
                out.append(cur)
            cur, any_ = "", False
        else:
            cur += ch
    if cur or any_:
        out.append(cur)
    return out


class Batch:
    def __init__(self, folder: Path, scenario: Path, node: str, env: dict[str, str]) -> None:
        self.folder = folder
        self.scenario = scenario
        self.node = node
        self.env = {k.upper(): v for k, v in env.items()}
        self.errorlevel = 0
        #: The ERRORLEVEL each vshadow step left.
        self.levels: list[int] = []

    def expand(self, line: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1).upper()
            if name == "ERRORLEVEL":
                return str(self.errorlevel)
            return self.env.get(name, "")

        return re.sub(r"%([^%]+)%", one, line)

    def run(self, text: str) -> int:
        lines = text.replace("\r\n", "\n").split("\n")
        labels = {ln.strip()[1:].lower(): i for i, ln in enumerate(lines) if ln.strip()[:1] == ":"}
        pc = 0
        while pc < len(lines):
            raw = lines[pc].strip()
            pc += 1
            jump = self.statement(self.expand(raw))
            if isinstance(jump, int):
                return jump
            if jump is not None:
                pc = labels[jump.lower()] + 1
        return self.errorlevel

    def statement(self, line: str) -> int | str | None:
        """Run one statement: an int is ``exit /b``, a str a ``goto``."""
        line = line.lstrip("@")
        words = line.split()
        if not words or words[0].startswith(":") or words[0].lower() in ("rem", "echo.", "::"):
            return None
        head = words[0].lower()
        if head == "echo":
            rest = line[5:]
            if ">>" in rest:
                text, target = rest.split(">>", 1)
                with (self.folder / target.strip()).open("a") as f:
                    f.write(text + "\n")
            return None
        if head == "set":
            name, _, value = line[4:].partition("=")
            self.env[name.strip().upper()] = value
            return None
        if head == "call":
            Batch.run(self, (self.folder / words[1]).read_text(encoding="ascii"))
            return None
        if head == "goto":
            return words[1]
        if head == "exit":
            return int(words[2]) if len(words) > 2 else self.errorlevel
        if head == "if":
            negate = words[1].lower() == "not"
            level = int(words[3 if negate else 2])
            rest = line.split(None, 4 if negate else 3)[-1]
            if (self.errorlevel >= level) != negate:
                return self.statement(rest)
            return None
        if head == "vshadow":
            args = argv(line)[1:]
            state = str(self.folder / "state.json")
            ours = ["--scenario", str(self.scenario), "--node", self.node, "--state", state]
            self.errorlevel = main(["vshadow", *ours, *args])
            self.levels.append(self.errorlevel)
            return None
        raise AssertionError(f"not a statement this test knows: {line!r}")


def test_a_batch_file_tests_every_errorlevel_as_cmd_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    batch = Batch(tmp_path, SEED, "E8920-ND1", {"REMOTE": values(SEED)["remote"]})
    code = batch.run(SCRIPT)
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert batch.levels == [0, 0, 2, 1, 0, 2]
    # `if errorlevel 1` is true for an ERRORLEVEL of 2: both lines were written.
    assert (tmp_path / "log.txt").read_text().split("\n")[:2] == ["already gone", "errorlevel 2"]
    # The SETVAR script vshadow wrote is what the batch called.
    setvar = (tmp_path / "setvar.cmd").read_text(encoding="ascii")
    assert f"SET SHADOW_SET_ID={batch.env['SHADOW_SET_ID']}" in setvar.splitlines()


def test_the_argument_rules() -> None:
    assert argv('vshadow -wi="No Such Writer" C:\\x') == ["vshadow", "-wi=No Such Writer", "C:\\x"]
    assert argv('"-wi=A B:\\c" d') == ["-wi=A B:\\c", "d"]
