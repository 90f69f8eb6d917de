"""``vssim plan`` end to end on a small cluster (real modelled runs), and its HTML in a real
browser: headless Chromium loads the report, its charts decode and render, a screenshot is kept
in ``test-artifacts/`` (git-ignored)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib import image as mpimg

from scenarios import EXAMPLES, ROOT
from vssim.cli import main

SMALL = EXAMPLES / "plan-small.toml"
SLUGS = (
    "backup-window",
    "concurrency",
    "timeline",
    "diff-area",
    "node-load",
    "csv-load",
    "redirected-io",
    "freeze-cdf",
)
TITLES = (
    "Backup window by strategy: where it is spent",
    "Full backup window against concurrency",
    "Diff-area peak per CSV against its limit (full backup)",
    "Read load per requester node over time (full backup)",
    "VM freeze and downtime: cumulative distribution (full backup)",
)
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("plan") / "report"
    buf = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(buf):
        code = main(["plan", str(SMALL), "--out", str(out), "--quick"])
    assert code == 0
    return out, buf.getvalue()


def test_plan_writes_every_file(small_report: tuple[Path, str]) -> None:
    out, _ = small_report
    assert (out / "report.html").stat().st_size > 10_000
    md = (out / "report.md").read_text()
    for slug in SLUGS:
        png, svg = out / "charts" / f"{slug}.png", out / "charts" / f"{slug}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", slug
        assert "<svg" in svg.read_text()[:2000], slug
        assert f"](charts/{slug}.png)" in md
    summary = pl.read_parquet(out / "tables" / "summary.parquet")
    # --quick: full, selective 10 %, incremental at concurrency 4, on both profiles.
    cases = (
        summary.select("profile", "strategy", "concurrency").unique().sort("profile", "strategy")
    )
    assert cases.rows() == [
        (p, s, 4) for p in ("ws2008r2", "ws2012") for s in ("full", "incremental", "selective 10 %")
    ]


def test_plan_prints_where_the_report_is_and_its_headline(
    small_report: tuple[Path, str],
) -> None:
    out, printed = small_report
    assert f"report: {out / 'report.html'}" in printed
    header = next(line for line in printed.splitlines() if line.startswith("profile"))
    assert "backup window" in header
    assert "shadow storage (rec.)" in header
    rows = [line.split() for line in printed.splitlines() if line.lstrip().startswith("ws20")]
    assert len(rows) == 6
    assert "Windows Server 2012:" in printed
    assert "Windows Server 2008 R2:" in printed


def test_headline_figures_match_the_tables(small_report: tuple[Path, str]) -> None:
    out, _ = small_report
    vms = pl.read_parquet(out / "tables" / "vms.parquet")
    csvs = pl.read_parquet(out / "tables" / "csvs.parquet")
    full12 = vms.filter((pl.col("profile") == "ws2012") & (pl.col("strategy") == "full"))
    sel12 = vms.filter((pl.col("profile") == "ws2012") & (pl.col("strategy") == "selective 10 %"))
    assert full12.height == 40
    assert sel12.height == 4
    # Redirected I/O: 2008 R2 keeps the CSV redirected for the whole backup, 2012 only while
    # the snapshot is taken.
    redirected = (
        csvs.filter(pl.col("strategy") == "full")
        .group_by("profile")
        .agg(pl.col("redirected_bytes").sum())
    )
    by = dict(redirected.iter_rows())
    assert by["ws2008r2"] > by["ws2012"]
    md = (out / "report.md").read_text()
    # Cluster Disk 1 sets its own 320 MiB limit; Cluster Disk 2 gets the [plan] default, 1 GiB.
    rows = [line for line in md.splitlines() if "| full | 4 | Cluster Disk" in line]
    assert len(rows) == 4
    assert all("| 320 MiB |" in r for r in rows if "Disk 1" in r)
    assert all("| 1.0 GiB |" in r for r in rows if "Disk 2" in r)


def test_plan_rejects_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["plan", str(SMALL), "--out", str(tmp_path), "--fractions", "0,2"]) == 2
    assert "plan.fractions" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.read_text().replace('window = "10 min"', 'window = "soon"'))
    assert main(["plan", str(bad), "--out", str(tmp_path)]) == 2
    assert "plan.window = 'soon'" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(args: list[str]) -> subprocess.CompletedProcess[str]:
    exe = _chromium()
    assert exe is not None
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make test installs it)")
def test_report_renders_in_headless_chromium(
    small_report: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = small_report
    page = (out / "report.html").read_text()
    # Self-contained: the charts are inline SVG, nothing is fetched.
    assert "<img" not in page
    assert "src=" not in page
    assert page.count("<svg ") == len(SLUGS)
    # A copy of the page that records, once loaded, each chart's laid-out size and the shapes
    # the browser drew in it, and whether any id of the page repeats (charts must not share
    # clip paths or glyphs).
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => {"
        " for (const f of document.querySelectorAll('figure')) {"
        "  const s = f.querySelector('svg'); const r = s.getBoundingClientRect();"
        "  let drawn = 0; for (const e of s.querySelectorAll('path, use, image, rect')) {"
        "   const b = e.getBBox(); if (b.width > 0 || b.height > 0) drawn++; }"
        "  f.setAttribute('data-rendered', Math.round(r.width) + 'x' + Math.round(r.height)"
        "   + 'x' + drawn); }"
        " const ids = [...document.querySelectorAll('[id]')].map(e => e.id);"
        " document.body.setAttribute('data-duplicate-ids', ids.length - new Set(ids).size);"
        "});</script>"
    )
    probe.write_text(page.replace("</body>", script + "</body>"))
    dom = _run_chromium(["--dump-dom", probe.as_uri()])
    assert dom.returncode == 0, dom.stderr[-2000:]
    for title in TITLES:
        assert f"<h3>{title}</h3>" in dom.stdout.replace("&amp;", "&"), title
    sizes = re.findall(r'data-rendered="(\d+)x(\d+)x(\d+)"', dom.stdout)
    assert len(sizes) == len(SLUGS)
    assert all(int(w) > 300 for w, _, _ in sizes), sizes
    assert all(int(h) > 200 for _, h, _ in sizes), sizes
    assert all(int(n) > 20 for _, _, n in sizes), sizes
    assert 'data-duplicate-ids="0"' in dom.stdout

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "plan-report.png"
    shot.unlink(missing_ok=True)
    res = _run_chromium(
        [f"--screenshot={shot}", "--window-size=1280,3000", (out / "report.html").as_uri()]
    )
    assert res.returncode == 0, res.stderr[-2000:]
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1280)
    # Not blank: the charts put many non-white, varied pixels on the page.
    non_white = float((pixels.min(axis=2) < 0.9).mean())
    assert non_white > 0.05, non_white
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200
