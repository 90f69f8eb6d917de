"""``vssim bench-report`` on synthetic pytest-benchmark files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vssim import benchreport
from vssim.cli import main


def bench(
    name: str, impl: str | None, lo: float, med: float, hi: float, **extra: Any
) -> dict[str, Any]:
    params = {"impl": impl} if impl else {}
    return {
        "group": "engine-cow",
        "name": name,
        "fullname": f"benches/bench_x.py::{name}",
        "params": params,
        "extra_info": extra,
        "stats": {"min": lo, "max": hi, "median": med, "ops": 1 / med, "rounds": 5},
    }


def write(path: Path, benches: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"datetime": "2026-11-26T00:00:00", "benchmarks": benches}))
    return path


def test_ratios_to_the_engine(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.json",
        [
            bench("t[engine]", "engine", 0.09, 0.1, 0.12),
            bench("t[numpy]", "numpy", 0.5, 0.6, 0.7),
            bench("t[pyroaring]", "pyroaring", 2.0, 3.0, 4.0),
        ],
    )
    report = benchreport.build([f])
    ratios = dict(zip(report.groups["name"], report.groups["x_engine"], strict=True))
    assert ratios["t[numpy]"] == pytest.approx(6.0)
    assert ratios["t[pyroaring]"] == pytest.approx(30.0)
    assert ratios["t[engine]"] == pytest.approx(1.0)
    assert report.changes is None


def test_regression_flagged_only_beyond_noise(tmp_path: Path) -> None:
    old = write(
        tmp_path / "old.json",
        [bench("fast", None, 1.0, 1.1, 1.2), bench("noisy", None, 1.0, 1.1, 1.5)],
    )
    new = write(
        tmp_path / "new.json",
        [bench("fast", None, 1.3, 1.4, 1.5), bench("noisy", None, 1.2, 1.3, 1.6)],
    )
    report = benchreport.build([old, new])
    assert report.changes is not None
    verdicts = dict(zip(report.changes["fullname"], report.changes["verdict"], strict=True))
    assert verdicts["benches/bench_x.py::fast"] == "REGRESSION"
    assert verdicts["benches/bench_x.py::noisy"] == "noise"
    assert benchreport.regressions(report) == 1
    assert main(["bench-report", str(old), str(new), "--fail-on-regression"]) == 1
    assert main(["bench-report", str(old), str(new)]) == 0


def test_simulated_table_and_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(
        tmp_path / "s.json",
        [
            bench(
                "full-2012", None, 1, 1, 1, profile="ws2012", strategy="full", backup_window_s=3600
            ),
            bench(
                "sel-2012", None, 1, 1, 1, profile="ws2012", strategy="selective-1%", bytes_read=5
            ),
        ],
    )
    out = tmp_path / "out"
    assert main(["bench-report", str(f), "--format", "markdown", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Simulated backups" in text
    assert "| ws2012 | full | 3,600 |" in text
    assert (out / "report.md").read_text().startswith("## Benchmarks")
    assert "backup_window_s" in (out / "report.csv").read_text()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "not JSON"),
        ("[]", "not a pytest-benchmark results file"),
        ('{"benchmarks": [{"name": "x"}]}', "benchmarks\\[0\\] has no 'stats'"),
        ('{"benchmarks": [{"stats": {"min": 1}}]}', "lacks max, median, ops"),
    ],
)
def test_bad_files(tmp_path: Path, content: str, needle: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(benchreport.BenchReportError, match=needle):
        benchreport.build([p])


def test_missing_file_is_a_clear_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench-report", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_engine_against_its_fastest_peer_and_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(
        tmp_path / "a.json",
        [
            bench("t[engine]", "engine", 0.09, 0.1, 0.12),
            bench("t[limit]", "limit", 0.05, 0.06, 0.07),
            bench("t[numpy]", "numpy", 0.5, 0.6, 0.7),
            bench("t[pyroaring]", "pyroaring", 2.0, 3.0, 4.0),
            bench("m", None, 1, 1, 1, to_plain_copy_ratio=0.8, bytes=5),
        ],
    )
    report = benchreport.build([f])
    row = report.summary.row(0, named=True)
    assert row["best_peer"] == "numpy"
    assert row["engine_per_peer"] == pytest.approx(6.0)
    assert row["engine_per_limit"] == pytest.approx(0.6)
    assert report.ratios.rows() == [("engine-cow", "m", "to_plain_copy_ratio", 0.8)]
    assert main(["bench-report", str(f)]) == 0
    out = capsys.readouterr().out
    assert "6.00×" in out
    assert "0.60×" in out
    assert "to_plain_copy_ratio" in out
