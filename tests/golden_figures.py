"""The figures of short runs, condensed for a golden file: the same scenario and seed must give the
same tables, to the last digit, whatever the code's shape (``test_figures_unchanged.py``).

Each case is a short modelled run of an example scenario (``vssim run``), a small materialized
run, or the protocol-only path (``run_backup``). A table is condensed to its row count, a SHA-256
of its CSV text (every column the golden file names, in that order) and the sums of its numeric
columns (to see *what* moved when the hash differs). Columns added to a table later are left out
of the comparison: only the figures recorded before may not move.

Regenerate (only when a figure is meant to change, and say why in the commit):
``.venv/bin/python tests/golden_figures.py > tests/golden/figures.json``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from scale_scenarios import tiny  # noqa: E402
from scenarios import EXAMPLES  # noqa: E402
from vssim.scenario import load_scenario  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "figures.json"
#: Columns that do not hold simulated figures (a tool's verdict, a checksum of file bytes).
SKIP = {"backups": ("qemu_img_check", "digest_at_snapshot", "digest_restored")}

Tables = dict[str, pl.DataFrame]


def _modelled(path: str, kinds: list[str], **kw: Any) -> Callable[[], Tables]:
    def go() -> Tables:
        from vssim.metrics import run

        return run(load_scenario(EXAMPLES / path), kinds, **kw).tables()

    return go


def _materialized() -> Tables:
    from vssim.metrics import run

    sc = tiny()
    with tempfile.TemporaryDirectory() as tmp:
        r = run(
            sc,
            ["full", "incremental"],
            interval_s=20.0,
            materialize=Path(tmp) / "run",
            check_files=False,
        )
        return r.tables()


def _protocol() -> Tables:
    """The protocol-only path: the requester functions on the seed's cluster."""
    from vssim.requester import ClusterState, run_backup, to_polars
    from vssim.vss.enums import BackupType

    sc = load_scenario(EXAMPLES / "seed.toml")
    st = ClusterState(sc)
    results = [run_backup(sc, "E8920-ND1", state=st)]
    st.clock += 3600.0
    results.append(run_backup(sc, "E8920-ND1", None, BackupType.INCREMENTAL, state=st))
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "run",
            "ok",
            "hresult",
            "copied_bytes",
            "cow_chunks_copied",
            "network_bytes",
            "redirected_bytes",
            "diff_area_bytes",
            "start",
            "end",
        )
    }
    timelines = []
    for i, r in enumerate(results):
        rows["run"].append(i)
        rows["ok"].append(r.ok)
        rows["hresult"].append(int(r.hresult))
        rows["copied_bytes"].append(r.copied_bytes)
        rows["cow_chunks_copied"].append(r.cow_chunks_copied)
        rows["network_bytes"].append(r.network_bytes)
        rows["redirected_bytes"].append(sum(r.redirected_bytes.values()))
        rows["diff_area_bytes"].append(sum(r.diff_area_bytes.values()))
        rows["start"].append(r.start)
        rows["end"].append(r.end)
        t = to_polars(r.timeline)
        timelines.append(t.select(pl.lit(i).alias("run"), pl.all()))
    return {"results": pl.DataFrame(rows), "timeline": pl.concat(timelines)}


CASES: dict[str, Callable[[], Tables]] = {
    "seed full": _modelled("seed.toml", ["full"]),
    "seed-ws2008r2 full": _modelled("seed-ws2008r2.toml", ["full"]),
    "plan-small full incremental copy": _modelled(
        "plan-small.toml", ["full", "incremental", "copy"], interval_s=120.0
    ),
    "plan-small selective": _modelled("plan-small.toml", ["selective"], fraction=0.25),
    "materialized full incremental": _materialized,
    "protocol seed full incremental": _protocol,
}


def condense(table: pl.DataFrame, columns: list[str] | None = None) -> dict[str, Any]:
    """Rows, the hash of ``columns`` (default: all but :data:`SKIP`'s), and numeric sums."""
    cols = columns if columns is not None else table.columns
    t = table.select(cols)
    digest = hashlib.sha256(t.write_csv().encode()).hexdigest()
    sums = {}
    for c in cols:
        if t[c].dtype.is_numeric() and t[c].dtype != pl.Boolean:
            v = t[c].sum()
            sums[c] = float(v) if isinstance(v, float) else int(v or 0)
    return {"rows": t.height, "columns": cols, "sha256": digest, "sums": sums}


def record() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for case, make in CASES.items():
        tables = make()
        out[case] = {
            name: condense(t, [c for c in t.columns if c not in SKIP.get(name, ())])
            for name, t in tables.items()
        }
    return out


if __name__ == "__main__":
    print(json.dumps(record(), indent=1, sort_keys=True))
