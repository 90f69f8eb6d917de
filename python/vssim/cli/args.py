"""Option types for the subcommands' parsers: every number finite and in its range, or argparse's
own error (``vssim run: error: argument --streams: expected an integer from 1 to 1024, got
'0'``, exit 2) — before anything runs."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from vssim.units import parse_size, size_text


def int_in(least: int, most: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or not least <= v <= most:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {least:,} to {most:,}, got {text!r}"
            )
        return v

    return parse


def float_in(least: float, most: float, what: str = "a number") -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and least <= v <= most):
            raise argparse.ArgumentTypeError(
                f"expected {what} from {least:,g} to {most:,g}, got {text!r}"
            )
        return v

    return parse


def share(text: str) -> float:
    """A share of the VMs, in (0, 1]."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], got {text!r}")
    return v


def size_in(least: int, most: int) -> Callable[[str], int]:
    """Bytes, as a number or with a unit ("32 TiB")."""

    def parse(text: str) -> int:
        v = parse_size(int(text) if text.isdigit() else text)
        if v is None or not least <= v <= most:
            low = "0" if least == 0 else size_text(least)
            raise argparse.ArgumentTypeError(
                f"expected a size from {low} to {size_text(most)}, got {text!r}"
            )
        return v

    return parse
