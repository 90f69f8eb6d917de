"""The scenario's load-time warnings on a terminal: a few of each kind in full, the rest as one
line (a 4,000-VM example warns once per CSV; the report lists every warning)."""

from __future__ import annotations

from collections.abc import Sequence

from vssim.scenario.model import ScenarioWarning

#: Warnings of one kind shown in full before the rest are summed up (model choice).
SHOWN_PER_KIND = 2


def condensed(warnings: Sequence[ScenarioWarning], where_all: str) -> list[str]:
    """One line per warning, at most :data:`SHOWN_PER_KIND` of each kind, then one line naming
    how many more of that kind, where (the key paths) and the range of their figure; the
    ``where_all`` text says where every one of them is."""
    lines: list[str] = []
    kinds: dict[str, list[ScenarioWarning]] = {}
    for w in warnings:
        kinds.setdefault(w.kind, []).append(w)
    for kind, ws in kinds.items():
        lines += [str(w) for w in ws[:SHOWN_PER_KIND]]
        rest = ws[SHOWN_PER_KIND:]
        if rest:
            low, high = min(w.value for w in rest), max(w.value for w in rest)
            places = ", ".join(w.where for w in rest[:3]) + (", …" if len(rest) > 3 else "")
            lines.append(
                f"{rest[0].file}: {len(rest)} more {kind} warning(s) ({places}; figure "
                f"{low:.2f}–{high:.2f}); {where_all}"
            )
    return lines
