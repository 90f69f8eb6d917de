"""Golden transcripts of ``vssim vshadow``, one per command family (:mod:`vshadow_cases`), each
line annotated with the format string of the SDK sample it comes from (:mod:`vshadow_formats`,
transcribed from the sample's source independently of vssim's code).

Two checks per case: the output equals the golden transcript, and every golden line is what its
annotated format prints — so a golden cannot drift from the real tool's format strings even when
it is regenerated. Regenerate with ``VSSIM_UPDATE_GOLDEN=1 pytest tests/test_vshadow_golden.py``
(a line no format of the sample explains fails the update) and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vshadow_cases import CASES, Case, Invocation, run_case
from vshadow_formats import matches, origin_of

GOLDEN = Path(__file__).parent / "golden" / "vshadow"
WIDTH = 64


def render(invocations: list[Invocation]) -> tuple[str, list[str]]:
    """The annotated transcript, and the lines no format explains."""
    out, unexplained = [], []
    for inv in invocations:
        out.append(f"### vshadow --node {inv.node} {' '.join(inv.args)}   (exit {inv.code})")
        previous = ""
        for line in inv.out.split("\n")[:-1] if inv.out.endswith("\n") else inv.out.split("\n"):
            # A line of a multi-line format keeps the origin of the lines before it.
            origin = previous if previous and matches(previous, line) else origin_of(line)
            if line:
                previous = origin or ""
            if origin is None:
                unexplained.append(line)
                origin = "???"
            out.append(f"{origin:<{WIDTH}}| {line}")
    return "\n".join(out) + "\n", unexplained


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_transcript(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    invocations = run_case(case, tmp_path, lambda: capsys.readouterr().out)
    text, unexplained = render(invocations)
    path = GOLDEN / f"{case.name}.txt"
    if os.environ.get("VSSIM_UPDATE_GOLDEN"):
        assert not unexplained, f"lines no format of the sample explains: {unexplained[:5]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path}; run with VSSIM_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_golden_line_is_the_samples(case: Case) -> None:
    path = GOLDEN / f"{case.name}.txt"
    assert path.exists(), f"missing golden {path}"
    for n, row in enumerate(path.read_text(encoding="utf-8").split("\n")[:-1], start=1):
        if row.startswith("### vshadow "):
            continue
        origin, sep, line = row.partition("| ")
        assert sep, f"{path.name}:{n}: not an annotated line: {row!r}"
        assert matches(origin.rstrip(), line), f"{path.name}:{n}: {origin.rstrip()} {line!r}"
