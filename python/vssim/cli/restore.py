"""``vssim restore DIR VM --out FILE``: rebuild a VM's disk from the backup chain a materialized
run wrote (full → incrementals), and say whether it equals the disk at the snapshot instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vssim.cli.args import int_in
from vssim.scale.materialize import restore


def register(sub: Any) -> None:
    p = sub.add_parser("restore", help="rebuild a VM disk from a materialized run's backup chain")
    p.add_argument("store", type=Path, help="the materialized run's folder (or its backups/)")
    p.add_argument("vm", help="VM name")
    p.add_argument("--out", type=Path, required=True, help="the new VHDX (must not exist)")
    p.add_argument(
        "--disk", type=int_in(0, 1 << 16), default=0, help="disk index of the VM (default 0)"
    )
    p.add_argument(
        "--backup",
        type=int_in(1, 1 << 31),
        dest="seq",
        help="the backup's number in the chain (default: latest)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    r = restore(args.store, args.vm, args.out, disk=args.disk, seq=args.seq)
    chain = " → ".join(f"{e.seq:04d} {e.kind}" for e in r.chain)
    print(f"{r.vm} disk {r.disk}: restored from {chain} into {r.out}")
    print(f"digest {r.digest}")
    if r.leftovers:
        sys.stdout.flush()
        shown = ", ".join(str(p) for p in r.leftovers[:3]) + (" …" if len(r.leftovers) > 3 else "")
        print(
            f"note: {len(r.leftovers)} file(s) in the store are not backups its manifest lists "
            f"(left by an interrupted run; not read): {shown}",
            file=sys.stderr,
        )
    if r.verified:
        print(f"verified: equals the disk at its snapshot instant ({r.backup.snapshot_s:.1f} s)")
        return 0
    print(f"MISMATCH: the disk at its snapshot instant had {r.backup.digest_at_snapshot}")
    return 1
