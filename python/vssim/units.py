"""Units below every layer: binary byte multiples, and sizes and bandwidths as scenario files and
options give them — an integer (bytes, bytes/s) or a string with a unit (``"127 GiB"``,
``"10 Gbit/s"``, ``"400 MB/s"``)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
PiB = 1024 * TiB
EiB = 1024 * PiB

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "eb": 1000**6,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
    "eib": 1024**6,
}
_RATE_UNITS = {
    **{f"{u}/s": float(m) for u, m in _SIZE_UNITS.items()},
    "bit/s": 1 / 8,
    "kbit/s": 1000 / 8,
    "mbit/s": 1000**2 / 8,
    "gbit/s": 1000**3 / 8,
}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z/]+)\s*$")


def parse_size(value: object) -> int | None:
    """Bytes, or None when ``value`` is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _NUMBER_UNIT.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            # Exact (a Fraction, not a float): "1.5 EiB" is 1.5 × 2^60 bytes, whatever its size.
            return int(Fraction(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    return None


def size_text(n: int) -> str:
    """``n`` bytes as the largest binary unit that divides it (``256 TiB``, ``320 MiB``), for
    messages that name a limit."""
    for name, unit in (("EiB", EiB), ("PiB", PiB), ("TiB", TiB), ("GiB", GiB), ("MiB", MiB)):
        if n >= unit and n % unit == 0:
            return f"{n // unit:,} {name}"
    return f"{n:,} byte{'' if n == 1 else 's'}"


def parse_rate(value: object) -> float | None:
    """Bytes per second, or None when ``value`` is not a bandwidth."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        rate = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str) and (m := _NUMBER_UNIT.match(value)):
        if m.group(2).lower() not in _RATE_UNITS:
            return None
        rate = float(m.group(1)) * _RATE_UNITS[m.group(2).lower()]
    else:
        return None
    return rate if math.isfinite(rate) else None
