"""The scenario soak (issue 15): seeded mutations of the example scenarios through the loader
and a short ``vssim run`` (:mod:`scenario_mutator`), in one child process bounded by a timeout
and an address-space limit, each case by an alarm. Nothing but "it ran" or "it was refused with a
message" may come out: no other exception, no hang, no abort.

``make test`` runs a few hundred cases; ``make bench`` many thousands
(``VSSIM_SOAK_CASES``; ``VSSIM_SOAK_SEED`` picks another sequence).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bounded import run_bounded
from scenario_mutator import CASE_SECONDS

CASES = int(os.environ.get("VSSIM_SOAK_CASES", "200"))
SEED = int(os.environ.get("VSSIM_SOAK_SEED", "15"))
HERE = Path(__file__).resolve().parent


def test_mutated_scenarios_load_and_run_or_are_refused(tmp_path: Path) -> None:
    r = run_bounded(
        [str(HERE / "scenario_mutator.py"), str(SEED), str(CASES), str(tmp_path)],
        timeout=60 + CASES * CASE_SECONDS / 10,
        address_space=3 << 30,
    )
    assert r.returncode == 0, f"the soak's process died ({r.returncode}): {r.stderr[-3000:]}"
    report = json.loads(r.stdout.splitlines()[-1])
    failures = report["failures"]
    assert not failures, json.dumps(failures[:5], indent=1)
    counts = report["counts"]
    # The soak must reach past the loader: some cases load, and some of those run.
    assert counts["refused"] > 0, counts
    assert counts["ran"] > 0, counts
    print(f"seed {SEED}: {counts}")
