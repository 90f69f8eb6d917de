"""``vssim volume``: copy-on-write snapshots of a folder (a CSV in materialized mode).

``vssim volume snapshot ROOT --diff-area DIR`` takes a snapshot and prints its id;
``list`` shows every snapshot (live, deleted, invalid), ``delete ID`` frees its diff area, and
``export ID DEST`` writes the snapshot's files out as they were at its instant. The diff-area
folder keeps the snapshots between runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import sys
from collections.abc import Callable
from typing import Any

from vssim import engine


def register(sub: Any) -> None:
    p = sub.add_parser("volume", help="copy-on-write snapshots of a folder (snapshot, list, ...)")
    vsub = p.add_subparsers(dest="volume_command", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("root", help="the volume's folder")
        q.add_argument(
            "--diff-area",
            required=True,
            help="folder of the diff area and its journal (created if missing)",
        )
        q.add_argument(
            "--max-bytes",
            type=_byte_count,
            default=None,
            help="diff-area limit in bytes (default: unbounded)",
        )
        q.add_argument(
            "--discard-snapshots",
            action="store_true",
            help="open even if the journal is missing or empty beside a diff file, discarding "
            "the snapshots it held (otherwise refused, nothing changed)",
        )

    q = vsub.add_parser("snapshot", help="take a snapshot now; prints its id")
    common(q)
    q.set_defaults(handler=_os_errors(snapshot))
    q = vsub.add_parser("list", help="list the volume's snapshots")
    common(q)
    q.set_defaults(handler=_os_errors(list_snapshots))
    q = vsub.add_parser("delete", help="delete a snapshot and free its diff area")
    common(q)
    q.add_argument("id", type=int)
    q.set_defaults(handler=_os_errors(delete))
    q = vsub.add_parser("export", help="write a snapshot's files to a new folder")
    common(q)
    q.add_argument("id", type=int)
    q.add_argument("dest", help="destination folder (off the volume)")
    q.set_defaults(handler=_os_errors(export))


Handler = Callable[[argparse.Namespace], int]


def _byte_count(text: str) -> int:
    """``--max-bytes``: an integer >= 0 (argparse reports anything else, with the usage)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected a number of bytes >= 0")
    return value


def _os_errors(handler: Handler) -> Handler:
    """An operating-system error (a missing folder, a permission) ends the command with its
    message and status 2, like a :class:`~vssim.errors.VssimError`."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except OSError as exc:
            print(f"vssim: error: {exc}", file=sys.stderr)
            return 2

    return run


def _open(args: argparse.Namespace) -> engine.Volume:
    vol = engine.Volume(
        args.root,
        args.diff_area,
        diff_area_max_bytes=args.max_bytes,
        discard_snapshots=args.discard_snapshots,
    )
    for note in vol.recovery_notes:
        print(f"note: {note}")
    return vol


def snapshot(args: argparse.Namespace) -> int:
    with _open(args) as vol:
        sid = vol.create_snapshot()
        files = vol.snapshot(sid).files()
        print(f"snapshot {sid}: {len(files)} files, {sum(n for _, n in files):,} bytes")
    return 0


def list_snapshots(args: argparse.Namespace) -> int:
    with _open(args) as vol:
        rows = vol.snapshots()
        print(
            f"{'ID':>5} {'STATE':<8} {'CREATED (UTC)':<20} {'FILES':>6} {'DIFF CHUNKS':>12}  REASON"
        )
        for s in rows:
            created = (
                dt.datetime.fromtimestamp(s.created_unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                if s.created_unix
                else "-"
            )
            print(
                f"{s.id:>5} {s.state:<8} {created:<20} {s.files:>6} {s.diff_area_chunks:>12}  "
                f"{s.reason or ''}"
            )
        print(
            f"diff area: {vol.diff_area_bytes:,} bytes in use, file {vol.diff_file_bytes:,} "
            f"bytes, journal {vol.journal_bytes:,} bytes"
        )
    return 0


def delete(args: argparse.Namespace) -> int:
    with _open(args) as vol:
        freed = vol.delete_snapshot(args.id)
        print(f"snapshot {args.id} deleted, {freed:,} bytes of diff area freed")
    return 0


def export(args: argparse.Namespace) -> int:
    with _open(args) as vol:
        n = vol.snapshot(args.id).export(args.dest)
        print(f"snapshot {args.id} exported to {args.dest}: {n:,} bytes")
    return 0
