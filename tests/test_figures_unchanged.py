"""The same scenario and seed give the same tables: short modelled runs of the examples, a small
materialized run and the protocol-only path, condensed (``golden_figures.py``) and compared with
``golden/figures.json``, recorded on the code before the layers were reshaped (issue 11)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from golden_figures import CASES, GOLDEN, condense

RECORDED: dict[str, dict[str, Any]] = json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_every_case_is_recorded() -> None:
    assert set(RECORDED) == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_same_figures(case: str) -> None:
    tables = CASES[case]()
    want = RECORDED[case]
    assert set(tables) == set(want), case
    for name, golden in want.items():
        got = condense(tables[name], golden["columns"])
        # The sums first: on a mismatch they say which column moved.
        assert got["sums"] == golden["sums"], f"{case}: {name}"
        assert got["rows"] == golden["rows"], f"{case}: {name}"
        assert got["sha256"] == golden["sha256"], f"{case}: {name}"
