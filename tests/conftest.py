"""Shared fixtures: scenario variants built from the seed's TOML (helpers in scenarios.py)."""

from __future__ import annotations

import pytest

from scenarios import seed_variant
from vssim.scenario import Scenario


@pytest.fixture
def seed2012() -> Scenario:
    return seed_variant("ws2012")


@pytest.fixture
def seed2008() -> Scenario:
    return seed_variant("ws2008r2")
