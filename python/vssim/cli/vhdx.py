"""``vssim vhdx``: create, inspect, check, map, convert and merge MS-VHDX files.

``check`` exits 1 when it finds an error (2 when the file cannot be read at all, or another
process is writing it), so it can gate scripts; ``info`` and ``check`` print JSON with ``--json``.
Every command that writes a file (``create``, ``export``, ``import``, ``copy``) follows one rule:
the output is never one of the inputs (the same file through any symlink or hard link, or a parent
of the input's chain), an existing output is replaced only with ``--force``, and the output
appears under its name only once it is complete.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from vssim import engine

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_FORCE_HELP = "replace an existing output file (never one of the inputs)"


def parse_size(text: str) -> int:
    """``4096``, ``64M``, ``1.5G``, ``2TiB`` → bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 4096, 64M, 1G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def register(sub: Any) -> None:
    p = sub.add_parser("vhdx", help="create, inspect, check and convert VHDX files")
    vs = p.add_subparsers(dest="vhdx_command", required=True, metavar="ACTION")

    c = vs.add_parser("create", help="create a fixed, dynamic or differencing disk")
    c.add_argument("path")
    c.add_argument("size", nargs="?", type=parse_size, default=0, help="virtual size (e.g. 64G)")
    c.add_argument("--type", choices=["dynamic", "fixed", "differencing"], default="dynamic")
    c.add_argument("--parent", help="parent disk (differencing)")
    c.add_argument("--block-size", type=parse_size)
    c.add_argument("--logical-sector-size", type=int, choices=[512, 4096])
    c.add_argument("--physical-sector-size", type=int, choices=[512, 4096])
    c.add_argument("--force", action="store_true", help=_FORCE_HELP)
    c.set_defaults(handler=create)

    i = vs.add_parser("info", help="print the disk's properties")
    i.add_argument("path")
    i.add_argument("--json", action="store_true")
    i.add_argument("--allow-parent-escape", action="store_true")
    i.set_defaults(handler=info)

    k = vs.add_parser("check", help="validate every structure; exit 1 on errors")
    k.add_argument("path")
    k.add_argument("--json", action="store_true")
    k.set_defaults(handler=check)

    m = vs.add_parser("map", help="list the allocated extents (what a backup reads)")
    m.add_argument("path")
    m.add_argument("--json", action="store_true")
    m.add_argument("--allow-parent-escape", action="store_true")
    m.set_defaults(handler=map_)

    e = vs.add_parser("export", help="write the virtual disk as a raw image")
    e.add_argument("path")
    e.add_argument("raw")
    e.add_argument("--allow-parent-escape", action="store_true")
    e.add_argument("--force", action="store_true", help=_FORCE_HELP)
    e.set_defaults(handler=export)

    im = vs.add_parser("import", help="make a dynamic VHDX from a raw image")
    im.add_argument("raw")
    im.add_argument("path")
    im.add_argument("--block-size", type=parse_size)
    im.add_argument("--logical-sector-size", type=int, choices=[512, 4096])
    im.add_argument("--force", action="store_true", help=_FORCE_HELP)
    im.set_defaults(handler=import_)

    cp = vs.add_parser("copy", help="copy a disk (a chain flattened) into a new dynamic VHDX")
    cp.add_argument("path")
    cp.add_argument("dest")
    cp.add_argument("--block-size", type=parse_size)
    cp.add_argument("--allow-parent-escape", action="store_true")
    cp.add_argument("--force", action="store_true", help=_FORCE_HELP)
    cp.set_defaults(handler=copy)

    mg = vs.add_parser("merge", help="merge a differencing disk into its parent")
    mg.add_argument("child")
    mg.add_argument("--allow-parent-escape", action="store_true")
    mg.set_defaults(handler=merge)


def create(args: argparse.Namespace) -> int:
    with engine.Vhdx.create(
        args.path,
        args.size,
        disk_type=args.type,
        block_size=args.block_size,
        logical_sector_size=args.logical_sector_size,
        physical_sector_size=args.physical_sector_size,
        parent=args.parent,
        overwrite=args.force,
    ) as d:
        print(f"created {d.path}: {d.disk_type}, {d.virtual_size} bytes, block {d.block_size}")
    return 0


def describe(d: engine.Vhdx) -> dict[str, Any]:
    offs, lens = d.allocated_extents()
    states = d.block_states()
    return {
        "path": str(d.path),
        "disk_type": d.disk_type,
        "virtual_size": d.virtual_size,
        "block_size": d.block_size,
        "logical_sector_size": d.logical_sector_size,
        "physical_sector_size": d.physical_sector_size,
        "virtual_disk_id": d.virtual_disk_id,
        "data_write_guid": d.data_write_guid,
        "file_write_guid": d.file_write_guid,
        "log_guid": d.log_guid,
        "file_length": d.file_length,
        "blocks": int(states.size),
        "blocks_fully_present": int((states == 6).sum()),
        "blocks_partially_present": int((states == 7).sum()),
        "allocated_bytes": int(lens.sum()),
        "allocated_extents": int(offs.size),
        "parent_path": None if d.parent_path is None else str(d.parent_path),
        "parent_locator": d.parent_locator,
    }


def info(args: argparse.Namespace) -> int:
    with engine.Vhdx.open(args.path, allow_parent_escape=args.allow_parent_escape) as d:
        facts = describe(d)
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0


def check(args: argparse.Namespace) -> int:
    findings = [f.to_dict() for f in engine.Vhdx.check_file(args.path)]
    errors = sum(1 for f in findings if f["severity"] == "error")
    if args.json:
        print(json.dumps({"path": args.path, "errors": errors, "findings": findings}, indent=2))
    else:
        for f in findings:
            print(
                f"{f['severity']:<7} {f['structure']} {f['field']} at {int(f['offset']):#x}: "
                f"{f['message']}"
            )
        print(f"{args.path}: {errors} error(s), {len(findings) - errors} other finding(s)")
    return 1 if errors else 0


def map_(args: argparse.Namespace) -> int:
    with engine.Vhdx.open(args.path, allow_parent_escape=args.allow_parent_escape) as d:
        offs, lens = d.allocated_extents()
    runs = [[int(o), int(n)] for o, n in zip(offs.tolist(), lens.tolist(), strict=True)]
    if args.json:
        print(json.dumps({"path": args.path, "extents": runs}))
    else:
        for o, n in runs:
            print(f"{o:>16} {n:>16}")
        print(f"{len(runs)} extent(s), {sum(n for _, n in runs)} bytes")
    return 0


def export(args: argparse.Namespace) -> int:
    with engine.Vhdx.open(args.path, allow_parent_escape=args.allow_parent_escape) as d:
        n = d.export_raw(args.raw, overwrite=args.force)
        print(f"exported {d.virtual_size} bytes ({n} non-zero) to {args.raw}")
    return 0


def import_(args: argparse.Namespace) -> int:
    with engine.Vhdx.import_raw(
        args.raw,
        args.path,
        block_size=args.block_size,
        logical_sector_size=args.logical_sector_size,
        overwrite=args.force,
    ) as d:
        print(f"imported {args.raw} into {d.path} ({d.virtual_size} bytes)")
    return 0


def copy(args: argparse.Namespace) -> int:
    with engine.Vhdx.open(args.path, allow_parent_escape=args.allow_parent_escape) as d:
        n = d.copy_to(args.dest, args.block_size, overwrite=args.force)
    print(f"copied {n} bytes of data into {args.dest}")
    return 0


def merge(args: argparse.Namespace) -> int:
    parent = engine.Vhdx.merge(args.child, allow_parent_escape=args.allow_parent_escape)
    print(
        f"merged {args.child} into {parent} ({args.child} no longer matches its parent: "
        "its data is in the parent, and it may be deleted)"
    )
    return 0
