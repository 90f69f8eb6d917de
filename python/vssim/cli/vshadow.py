"""``vssim vshadow --scenario FILE --node NODE [vshadow options] [volumes]``: the seed's requester
on a simulated cluster (:mod:`vssim.requester.vshadow_tool`).

vshadow's own options (``-wm2``, ``/q``, ``-wi="…"``, …) follow ``--scenario``/``--node`` as they
would on Windows. The cluster's state (shadow copies, the clock) is kept in ``--state`` (default:
``<scenario>.vssim-state.json`` next to the scenario file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vssim.requester.vshadow_text import USAGE_LINES
from vssim.requester.vshadow_tool import VShadow
from vssim.scenario import load_scenario


def register(sub: Any) -> None:
    # prefix_chars="+" so that vshadow's "-x" and "/x" options reach vshadow untouched.
    p = sub.add_parser(
        "vshadow",
        help="run vshadow (the VSS SDK requester) on a simulated cluster",
        prefix_chars="+",
        add_help=False,
        description="vssim vshadow --scenario FILE --node NODE [--state FILE] [vshadow options]",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(handler=run)


def _split(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    ours: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, value = a.partition("=")
        if key in ("--scenario", "--node", "--state"):
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"vssim vshadow: {a} needs a value")
                value = argv[i + 1]
                i += 1
            ours[key[2:]] = value
        else:
            rest.append(a)
        i += 1
    return ours, rest


def default_state_path(scenario: Path) -> Path:
    return scenario.with_name(scenario.stem + ".vssim-state.json")


WRAPPER_USAGE = (
    "usage: vssim vshadow --scenario FILE --node NODE [--state FILE] [vshadow options] [volumes]"
)


def run(args: argparse.Namespace) -> int:
    if any(a in ("--help", "-h") for a in args.argv):
        print(WRAPPER_USAGE)
        print(__doc__)
        print("\n".join(USAGE_LINES))
        return 0
    ours, rest = _split(list(args.argv))
    if "scenario" not in ours or "node" not in ours:
        print(WRAPPER_USAGE, file=sys.stderr)
        return 1
    path = Path(ours["scenario"])
    scenario = load_scenario(path)
    try:
        scenario.node(ours["node"])
    except KeyError:
        names = ", ".join(n.name for n in scenario.nodes[:8])
        print(
            f"vssim vshadow: no node {ours['node']!r} in {path} (nodes: {names})", file=sys.stderr
        )
        return 1
    state = Path(ours["state"]) if "state" in ours else default_state_path(path)
    tool = VShadow(scenario, ours["node"], state, sys.stdout, sys.stdin, sys.stderr)
    return tool.main(rest)
