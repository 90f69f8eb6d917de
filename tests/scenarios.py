"""The example scenarios, and scenario variants built from the seed's TOML (imported by tests;
the fixtures on them live in conftest.py)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from vssim.scenario import Scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "seed.toml"


def seed_raw() -> dict[str, Any]:
    return tomllib.loads(SEED.read_text(encoding="utf-8"))


def seed_variant(
    os: str = "ws2012", faults: list[dict[str, Any]] | None = None, **cluster: Any
) -> Scenario:
    raw = copy.deepcopy(seed_raw())
    raw["cluster"]["os"] = os
    raw["cluster"].update(cluster)
    if faults:
        raw["faults"] = faults
    return parse_scenario(raw, Path(f"seed-{os}.toml"))
