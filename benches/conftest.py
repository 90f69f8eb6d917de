"""Shared benchmark settings.

Benchmarks run twice in this project: once as ordinary tests in ``make test`` (pytest-benchmark
disabled, every benchmark's answer still asserted) and for real in ``make bench``. The problem
sizes follow the mode: small when benchmarking is disabled, full-size otherwise, unless
``VSSIM_BENCH_SCALE`` (``small`` | ``full``) says which.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def full_scale(request: pytest.FixtureRequest) -> bool:
    """True when the benchmarks should use their full problem sizes."""
    forced = os.environ.get("VSSIM_BENCH_SCALE")
    if forced in ("small", "full"):
        return forced == "full"
    disabled = bool(request.config.getoption("benchmark_disable", default=False))
    return not disabled
