"""Which runs a capacity plan compares, and the ``[plan]`` table of a scenario file that steers it.

A scenario file may carry a ``[plan]`` table (the scenario loader accepts and ignores it)::

    [plan]
    profiles = ["ws2012"]           # pins the profile(s); absent: both ws2008r2 and ws2012
    window = "8 h"                  # the backup window a strategy must fit ("90 min", 3600, …)
    fractions = [0.01, 0.1, 0.25]   # selective backups: shares of the VMs
    concurrency = [1, 2, 4, 8]      # the sweep: VM copies and snapshot sets at once per node
    margin = 0.25                   # shadow storage = diff-area peak × (1 + margin), ≥ 320 MiB
    incremental_after = "1 h"       # guests write this long between the full and the incremental
    diff_area_limit = "20 GiB"      # shadow storage MaxSize set today on CSVs that set none

**Profiles.** Without ``profiles`` the plan runs the scenario's cluster under both profiles: as
written and with ``cluster.os`` switched (same nodes, CSVs, VMs, providers). ``profiles`` pins the
list (one or both); ``vssim plan --profiles`` overrides the file.

**Strategies.** At every concurrency of the sweep, a full backup; at the concurrency chosen for
it (the lowest that fits the window, else the fastest), ``incremental_after`` later, an
incremental on top of it (the same run, continued); then, per profile, selective backups (one
per fraction) at that concurrency. :func:`vssim.report.capacity_plan.collect` says how runs are
shared.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vssim.errors import PlanError
from vssim.scenario import OsProfile
from vssim.units import parse_size

PROFILES = (OsProfile.WS2008R2, OsProfile.WS2012)
PLAN_KEYS = (
    "profiles",
    "window",
    "fractions",
    "concurrency",
    "margin",
    "incremental_after",
    "diff_area_limit",
)

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|sec|min|m|h|hours?|d|days?)\s*$", re.I)
_DURATION_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float | None:
    """Seconds from a number (seconds) or ``"90 s"``, ``"30 min"``, ``"8 h"``, ``"1 d"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            unit = m.group(2).lower()
            unit = {"hour": "h", "hours": "h", "day": "d", "days": "d"}.get(unit, unit)
            seconds = float(m.group(1)) * _DURATION_UNITS[unit]
            return seconds if seconds > 0 else None
    return None


@dataclass(frozen=True)
class PlanSettings:
    """What a plan runs and judges against (``[plan]`` table, then command-line options)."""

    #: ``None``: not pinned — the scenario's own profile and the other one.
    profiles: tuple[OsProfile, ...] | None = None
    window_s: float = 8 * 3600.0
    fractions: tuple[float, ...] = (0.01, 0.1, 0.25)
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    margin: float = 0.25
    incremental_after_s: float = 3600.0
    #: Shadow-storage MaxSize assumed on CSVs whose scenario entry sets none (None: unbounded).
    diff_area_limit: int | None = None

    def with_options(self, **options: Any) -> PlanSettings:
        """A copy with the options that are not ``None`` applied."""
        return replace(self, **{k: v for k, v in options.items() if v is not None})


@dataclass(frozen=True)
class Strategy:
    """One backup a plan runs: type, selection share and concurrency."""

    kind: str
    concurrency: int
    fraction: float | None = None

    @property
    def label(self) -> str:
        if self.kind == "selective" and self.fraction is not None:
            return f"selective {self.fraction * 100:g} %"
        return self.kind

    @property
    def backups(self) -> list[str]:
        """The backups ``vssim.run`` runs for it, one after the other: a full backup is followed
        by an incremental (``incremental_after`` later), which needs it as its base."""
        return ["full", "incremental"] if self.kind == "full" else [self.kind]

    @property
    def labels(self) -> list[str]:
        """The report's name for each of :attr:`backups`."""
        return ["full", "incremental"] if self.kind == "full" else [self.label]


@dataclass(frozen=True)
class PlanFile:
    """A scenario file split into its scenario and its ``[plan]`` settings."""

    path: Path
    settings: PlanSettings
    raw: dict[str, Any] = field(repr=False)


def _fail(path: Path, key: str, value: object, expected: str) -> PlanError:
    return PlanError(f"{path}: plan.{key} = {value!r}: expected {expected}")


def read_plan(path: Path) -> PlanFile:
    """Read ``path``'s ``[plan]`` table (defaults where absent)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from None
    table = raw.get("plan", {})
    if not isinstance(table, dict):
        raise _fail(path, "", table, "a table")
    return PlanFile(path, parse_plan_table(table, path), raw)


def parse_plan_table(t: dict[str, Any], path: Path) -> PlanSettings:
    for k, v in t.items():
        if k not in PLAN_KEYS:
            raise _fail(path, k, v, f"no such key; known keys: {', '.join(PLAN_KEYS)}")
    s = PlanSettings()
    out: dict[str, Any] = {}
    if "profiles" in t:
        out["profiles"] = parse_profiles(t["profiles"], path)
    if "window" in t:
        w = parse_duration(t["window"])
        if w is None:
            raise _fail(path, "window", t["window"], "a duration > 0 ('8 h', '90 min', 3600)")
        out["window_s"] = w
    if "fractions" in t:
        out["fractions"] = parse_fractions(t["fractions"], path)
    if "concurrency" in t:
        out["concurrency"] = parse_concurrency(t["concurrency"], path)
    if "margin" in t:
        m = t["margin"]
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m <= 10:
            raise _fail(path, "margin", m, "a share in 0..10 (0.25 = 25 % above the peak)")
        out["margin"] = float(m)
    if "incremental_after" in t:
        d = parse_duration(t["incremental_after"])
        if d is None:
            raise _fail(path, "incremental_after", t["incremental_after"], "a duration > 0")
        out["incremental_after_s"] = d
    if "diff_area_limit" in t:
        limit = parse_size(t["diff_area_limit"])
        if limit is None or limit <= 0:
            raise _fail(path, "diff_area_limit", t["diff_area_limit"], "a size ('20 GiB')")
        out["diff_area_limit"] = limit
    return replace(s, **out)


def parse_profiles(value: object, path: Path | str = "--profiles") -> tuple[OsProfile, ...]:
    items = value.split(",") if isinstance(value, str) else value
    known = {p.value: p for p in PROFILES}
    if not isinstance(items, list | tuple) or not items:
        raise _fail(Path(str(path)), "profiles", value, "a list of ws2008r2 / ws2012")
    out: list[OsProfile] = []
    for item in items:
        name = str(item).strip().lower()
        if name not in known:
            raise _fail(Path(str(path)), "profiles", value, "a list of ws2008r2 / ws2012")
        if known[name] not in out:
            out.append(known[name])
    return tuple(out)


def parse_fractions(value: object, path: Path | str = "--fractions") -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        fr = tuple(float(x) for x in items) if isinstance(items, list | tuple) else ()
    except (TypeError, ValueError):
        fr = ()
    if not fr or not all(0 < f <= 1 for f in fr):
        raise _fail(Path(str(path)), "fractions", value, "shares in (0, 1], e.g. 0.01,0.1")
    return tuple(sorted(set(fr)))


def parse_concurrency(value: object, path: Path | str = "--concurrency") -> tuple[int, ...]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        cs = tuple(int(x) for x in items) if isinstance(items, list | tuple) else ()
    except (TypeError, ValueError):
        cs = ()
    if not cs or not all(1 <= c <= 64 for c in cs):
        raise _fail(Path(str(path)), "concurrency", value, "integers in 1..64, e.g. 1,2,4,8")
    return tuple(sorted(set(cs)))


def plan_profiles(settings: PlanSettings, scenario_os: OsProfile) -> tuple[OsProfile, ...]:
    """The profiles to run: the pinned ones, else the scenario's own first, then the other."""
    if settings.profiles:
        return settings.profiles
    return (scenario_os, *(p for p in PROFILES if p is not scenario_os))


def sweep(settings: PlanSettings) -> list[Strategy]:
    """The first phase: full backups at every concurrency, in ascending order (the chosen one
    goes on with the incremental)."""
    return [Strategy("full", c) for c in sorted(settings.concurrency)]


def followups(settings: PlanSettings, concurrency: int) -> list[Strategy]:
    """The second phase, at the full backup's chosen concurrency: selective backups."""
    return [Strategy("selective", concurrency, f) for f in settings.fractions]
