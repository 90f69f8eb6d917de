"""The ``vssim`` command line. Each subcommand lives in its own module with a ``register``
function that adds its parser; :func:`main` dispatches to the handler it sets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from vssim.cli import bench_report, demo, plan, restore, run, vhdx, volume, vshadow
from vssim.errors import VssimError

#: Subcommand modules, in the order ``vssim --help`` lists them.
COMMANDS: list[ModuleType] = [demo, run, restore, plan, vshadow, vhdx, volume, bench_report]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vssim",
        description="Simulate VSS backups of Hyper-V VMs on Cluster Shared Volumes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (VssimError, OSError) as exc:
        print(f"vssim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
