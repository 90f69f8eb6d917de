"""Units below every layer: binary byte multiples, and sizes and bandwidths as scenario files and
options give them — an integer (bytes, bytes/s) or a string with a unit (``"127 GiB"``,
``"10 Gbit/s"``, ``"400 MB/s"``)."""

from __future__ import annotations

import re

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
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
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    return None


def parse_rate(value: object) -> float | None:
    """Bytes per second, or None when ``value`` is not a bandwidth."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _NUMBER_UNIT.match(value)
        if m and m.group(2).lower() in _RATE_UNITS:
            return float(m.group(1)) * _RATE_UNITS[m.group(2).lower()]
    return None
