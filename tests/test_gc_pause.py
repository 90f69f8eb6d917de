"""The run's garbage-collector policy: in force while the event loop turns, gone after."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from vssim.scale import runner
from vssim.scale.gc_pause import RUN_GC_THRESHOLD, fewer_collections


def test_thresholds_rise_inside_and_return_after() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] >= RUN_GC_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_an_error_inside_restores_them() -> None:
    before = gc.get_threshold()
    with pytest.raises(KeyError), fewer_collections():
        raise KeyError("x")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_nested_and_overlapping_uses_restore_once_at_the_end() -> None:
    """Two runs in two threads: the second in sees the policy, not the caller's thresholds, as
    what it found — the last out restores the caller's."""
    before = gc.get_threshold()
    outer = fewer_collections()
    outer.__enter__()
    with fewer_collections():
        assert gc.get_threshold()[0] >= RUN_GC_THRESHOLD
    assert gc.get_threshold()[0] >= RUN_GC_THRESHOLD
    outer.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_run_turns_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    inner = runner._Run.backups

    def spy(self: runner._Run, *args: object, **kw: object) -> object:
        seen.append(gc.get_threshold()[0])
        return inner(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runner._Run, "backups", spy)
    before = gc.get_threshold()
    runner.simulate(Path(__file__).parent.parent / "examples" / "seed.toml", "full")
    assert seen
    assert seen[0] >= RUN_GC_THRESHOLD
    assert gc.get_threshold() == before
