"""The report as one self-contained HTML file (charts inline as SVG, styles inline, no external
assets) and as Markdown (charts linked from ``charts/``, PNG).

Several SVG documents in one page share one id space: matplotlib's ids (clip paths, glyphs,
markers) repeat from chart to chart, so each chart's ids, and the references to them, get the
chart's slug as a prefix."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from vssim.benchreport import markdown as md_table
from vssim.report.analysis import SEGMENTS, Analysis
from vssim.report.charts import Chart
from vssim.report.formatting import duration, humanize, size
from vssim.scenario.capacity import LOW_SPACE_WARNING_BYTES, PAUSED_CRITICAL_BYTES
from vssim.vss.limits import FREEZE_WINDOW_S

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, td:nth-child(2) { text-align: left; }
td.no { color: #b00; font-weight: bold; } .warnings li { color: #8a5a00; }
figure { margin: 2em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; } .advice p { margin: 0.4em 0; }
"""


@dataclass(frozen=True)
class Section:
    """A table of the report: heading, a sentence on what it shows, the frame (human units)."""

    title: str
    text: str
    frame: pl.DataFrame


def sections(a: Analysis) -> list[Section]:
    w = a.windows.select("profile", "strategy", "concurrency", "window_s", "sets", *SEGMENTS)
    diff = a.diff_area.select(
        "profile",
        "strategy",
        "concurrency",
        "csv",
        "provider",
        "snapshots",
        "peak_bytes",
        "limit_bytes",
        "recommended_bytes",
        "deletions",
        "vms_failing",
        "longest_life_s",
    ).filter(pl.col("strategy") == "full")
    fr = a.freeze
    space = Section(
        "CSV free space",
        f"CSVs whose free space (the diff area counted when it lives on the CSV) fell below "
        f"Hyper-V's {size(LOW_SPACE_WARNING_BYTES)} warning level or its "
        f"{size(PAUSED_CRITICAL_BYTES)} pause level (Paused-Critical: its VMs with dynamic disks "
        f"stop until resumed), or filled; none listed: every CSV kept more room.",
        humanize(
            a.space,
            {
                "free_low_bytes": "free at lowest",
                "low_space_s": "below warning at",
                "paused_critical_s": "paused at",
                "vms_paused": "VMs paused",
                "paused_vm_s": "paused VM time",
                "volume_full": "deleted (volume full)",
                "diff_area_on_csv_bytes": "diff area on CSV",
            },
        ),
    )
    checked = []
    if a.verification is not None:
        v = a.verification.rename(
            {"vms": "VMs", "largest": "largest (one VM)", "sum": "of their sum"}
        )
        checked.append(
            Section(
                f"Estimate checked against exact per-write simulation on {a.verified_vms} VMs",
                "The sampled VMs re-run on the per-write engine over the same snapshot epochs: "
                "per figure, the largest relative difference of one VM's total over the run, "
                "and that of the sampled VMs' total (a VM's exact figure is one sample of what "
                "the estimate gives the expectation of).",
                v.select(
                    pl.col("figure"),
                    pl.col("VMs").cast(pl.String),
                    pl.col("largest (one VM)").map_elements(
                        lambda x: f"{x:.2%}", return_dtype=pl.String
                    ),
                    pl.col("of their sum").map_elements(
                        lambda x: f"{x:+.2%}", return_dtype=pl.String
                    ),
                ),
            )
        )
    return [
        *checked,
        Section(
            "Backup window: where it is spent",
            "Every run; segments are shares of the snapshot sets' time, scaled to the window.",
            humanize(w, {"window_s": "backup window", "sets": "snapshot sets"}),
        ),
        Section(
            "Shadow storage per CSV (full backups)",
            f"Peak diff area per CSV, the limit set today (– : none), the recommended shadow "
            f"storage (peak + {a.margin:.0%}, rounded up to 64 MiB, at least 320 MiB) and the "
            f"snapshot deletions the limit would cause.",
            humanize(diff, {"limit_bytes": "limit today", "recommended_bytes": "recommended"}),
        ),
        Section(
            "Freeze and saved-state downtime",
            "p50 / p95 / max over the VMs frozen (online) or put in saved state (offline).",
            humanize(fr),
        ),
        space,
        Section(
            "VMs that miss the freeze window",
            f"Frozen longer than the writer's {FREEZE_WINDOW_S:g} s, or failed with "
            f"VSS_E_WRITERERROR_TIMEOUT (at most 50 listed; {a.missed.height} in all).",
            humanize(a.missed.head(50)),
        ),
    ]


_ID = re.compile(r'\b(id="|href="#|url\(#)([^")]+)')


def inline_svg(chart: Chart) -> str:
    """The chart's SVG file as an element for the page: no XML prolog or doctype, ids made
    unique to the chart, labelled with its title."""
    text = chart.svg.read_text(encoding="utf-8")
    start = text.find("<svg")
    if start < 0:
        raise ValueError(f"{chart.svg}: no <svg> element")
    body = _ID.sub(lambda m: f"{m.group(1)}{chart.slug}-{m.group(2)}", text[start:])
    label = html.escape(chart.title, quote=True)
    return body.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)


def _html_table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows():
        cells = "".join(
            f'<td class="no">{html.escape(v)}</td>' if v == "NO" else f"<td>{html.escape(v)}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(
    title: str,
    meta: str,
    a: Analysis,
    advice: dict[str, list[str]],
    charts: list[Chart],
    warnings: Sequence[str] = (),
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p>",
    ]
    if warnings:
        parts.append("<h2>Warnings</h2><ul class='warnings'>")
        parts += [f"<li>{html.escape(w)}</li>" for w in warnings]
        parts.append("</ul>")
    parts.append("<h2>Recommendation</h2><div class='advice'>")
    for sentences in advice.values():
        parts.append(f"<p>{html.escape(' '.join(sentences))}</p>")
    parts.append("</div>")
    parts.append(
        f"<h2>Headline</h2><p>At each profile's chosen concurrency; target window "
        f"{html.escape(duration(a.window_s))}.</p>"
    )
    parts.append(_html_table(humanize(a.headline)))
    for chart in charts:
        parts.append(
            f'<figure id="{chart.slug}"><h3>{html.escape(chart.title)}</h3>{inline_svg(chart)}'
            f"<figcaption>{html.escape(chart.caption)}</figcaption></figure>"
        )
    for s in sections(a):
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.text)}</p>")
        parts.append(_html_table(s.frame))
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(
    title: str,
    meta: str,
    a: Analysis,
    advice: dict[str, list[str]],
    charts: list[Chart],
    root: Path,
    warnings: Sequence[str] = (),
) -> str:
    parts = [f"# {title}", "", f"_{meta}_", ""]
    if warnings:
        parts += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    parts += ["## Recommendation", ""]
    for sentences in advice.values():
        parts += [" ".join(sentences), ""]
    parts += [
        "## Headline",
        "",
        f"At each profile's chosen concurrency; target window {duration(a.window_s)}.",
        "",
        md_table(humanize(a.headline)),
        "",
    ]
    for chart in charts:
        rel = chart.png.relative_to(root).as_posix()
        parts += [f"### {chart.title}", "", f"![{chart.title}]({rel})", "", chart.caption, ""]
    for s in sections(a):
        parts += [f"## {s.title}", "", s.text, "", md_table(s.frame), ""]
    return "\n".join(parts)
