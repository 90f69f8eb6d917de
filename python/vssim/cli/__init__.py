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
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from vssim.errors import VssimError

#: Subcommand modules (in ``vssim.cli``), in the order ``vssim --help`` lists them.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "run": "run",
    "restore": "restore",
    "plan": "plan",
    "workloads": "workloads",
    "vshadow": "vshadow",
    "vhdx": "vhdx",
    "volume": "volume",
    "bench-report": "bench_report",
}

Handler = Callable[[argparse.Namespace], int]


def _chosen(argv: Sequence[str] | None) -> list[str]:
    """The subcommands whose modules the parser needs: only the one named, when ``argv`` names
    one — each module imports what its command needs (polars, matplotlib, the engine: seconds
    in all), and a command's first line of output should not wait for the others' — else all
    of them (``vssim --help``, a mistyped command: argparse lists them)."""
    words = sys.argv[1:] if argv is None else list(argv)
    first = next((w for w in words if not w.startswith("-")), None)
    return [first] if first in COMMANDS else list(COMMANDS)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``argv``'s subcommand (every subcommand's without one)."""
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
    for name in _chosen(argv):
        importlib.import_module(f"vssim.cli.{COMMANDS[name]}").register(sub)
    return parser


#: Exit codes (see the module doc).
EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 2, 70, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
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
