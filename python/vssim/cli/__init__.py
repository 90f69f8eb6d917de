"""The ``vssim`` command line. Each subcommand lives in its own module with a ``register``
function that adds its parser; :func:`main` dispatches to the handler it sets.

Exit codes: 0 done; 1 the command's own "no" (``vhdx check`` found errors, ``restore`` a
mismatch, ``bench-report --fail-on-regression`` a regression); 2 a bad argument (argparse) or an
error the command reports (a :class:`~vssim.errors.VssimError` or an OS error, one line naming
the input); 70 an unexpected error — a bug, told in one line with a request to report it
(``--debug`` or ``VSSIM_DEBUG=1`` shows the traceback instead); 130 interrupted (Ctrl-C: what
was half done is removed first).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from vssim.cli import (
    bench_report,
    demo,
    plan,
    restore,
    run,
    vhdx,
    volume,
    vshadow,
    workloads,
)
from vssim.errors import VssimError

#: Subcommand modules, in the order ``vssim --help`` lists them.
COMMANDS: list[ModuleType] = [
    demo,
    run,
    restore,
    plan,
    workloads,
    vshadow,
    vhdx,
    volume,
    bench_report,
]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vssim",
        description="Simulate VSS backups of Hyper-V VMs on Cluster Shared Volumes.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("VSSIM_DEBUG", "") not in ("", "0"),
        help="let an unexpected error show its traceback (also VSSIM_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


#: Exit codes (see the module doc).
EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 2, 70, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("vssim: interrupted (what was half done was removed)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (VssimError, OSError) as exc:
        print(f"vssim: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print("vssim: error: out of memory (give the command less to hold)", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        # Every input error has a message at its source; reaching here is vssim's fault.
        if args.debug:
            raise
        print(
            f"vssim: internal error: {type(exc).__name__}: {exc} — this is a bug in vssim; please "
            f"report it with the command line (--debug or VSSIM_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_BUG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
