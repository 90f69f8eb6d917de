"""The scenario's warnings on the plan's terminal: a few of each kind, the rest summed up."""

from __future__ import annotations

from vssim.cli.scenario_warnings import SHOWN_PER_KIND, condensed
from vssim.scenario.model import ScenarioWarning


def _overcommit(i: int, ratio: float) -> ScenarioWarning:
    return ScenarioWarning("big.toml", f"csvs[{i}]", "overcommit", f"CSV {i} {ratio}×", ratio)


def test_sixteen_overcommitted_csvs_make_three_lines() -> None:
    ws = [_overcommit(i, 1.4 + i / 10) for i in range(16)]
    low = ScenarioWarning("big.toml", "csvs[3]", "low space", "CSV 3 is nearly full", 0.01)
    lines = condensed([*ws, low], "every one is in report.html")
    assert lines[:SHOWN_PER_KIND] == [str(w) for w in ws[:SHOWN_PER_KIND]]
    more = lines[SHOWN_PER_KIND]
    assert more.startswith("big.toml: 14 more overcommit warning(s) (csvs[2], csvs[3], csvs[4], …;")
    assert "figure 1.60–2.90" in more
    assert more.endswith("every one is in report.html")
    assert lines[-1] == str(low)
    assert len(lines) == SHOWN_PER_KIND + 2


def test_a_few_warnings_are_shown_whole() -> None:
    ws = [_overcommit(i, 2.0) for i in range(SHOWN_PER_KIND)]
    assert condensed(ws, "x") == [str(w) for w in ws]
    assert condensed([], "x") == []
