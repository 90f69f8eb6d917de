"""A deterministic stream of volume operations, shared by the kill -9 test and the child process
it kills: the child runs the stream through ``engine.Volume`` and logs each finished step; the
test replays the same stream in memory to know what every snapshot must show.

Run as a script: ``python _volume_ops.py ROOT DIFF SEED STEPS PROGRESS [--durable]``.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field

FILES = (
    "vm1/Virtual Hard Disks/disk.vhdx",
    "vm2/Virtual Hard Disks/disk.vhdx",
    "vm1/Virtual Machines/vm1.xml",
)
INITIAL_SIZE = 256 * 1024

Op = tuple[str, int, int, int]


def initial_bytes(i: int) -> bytes:
    return random.Random(f"init-{i}").randbytes(INITIAL_SIZE)


def ops(seed: int, steps: int) -> list[Op]:
    """``("write", file, offset, data_seed)``, ``("snap", 0, 0, 0)``, ``("delete", pick, 0, 0)``,
    ``("truncate", file, length, 0)``, ``("vwrite", pick * 8 + file, offset, data_seed)`` (an
    auto-recovery write into a writable view); write lengths come from the data seed."""
    rng = random.Random(seed)
    out: list[Op] = []
    for _ in range(steps):
        r = rng.random()
        if r < 0.08:
            out.append(("snap", 0, 0, 0))
        elif r < 0.11:
            out.append(("delete", rng.randrange(1 << 30), 0, 0))
        elif r < 0.13:
            out.append(("truncate", rng.randrange(len(FILES)), rng.randrange(300 * 1024), 0))
        elif r < 0.18:
            pick = rng.randrange(1 << 20) * 8 + rng.randrange(len(FILES))
            out.append(("vwrite", pick, rng.randrange(300 * 1024), rng.getrandbits(32)))
        else:
            f = rng.randrange(len(FILES))
            out.append(("write", f, rng.randrange(400 * 1024), rng.getrandbits(32)))
    return out


def write_data(data_seed: int) -> bytes:
    rng = random.Random(data_seed)
    return rng.randbytes(rng.randrange(1, 64 * 1024))


def put(buf: bytearray, off: int, data: bytes) -> None:
    if len(buf) < off + len(data):
        buf.extend(bytes(off + len(data) - len(buf)))
    buf[off : off + len(data)] = data


@dataclass
class Model:
    """Bytes of every file, live and at every live snapshot's instant."""

    live: list[bytearray] = field(
        default_factory=lambda: [bytearray(initial_bytes(i)) for i in range(len(FILES))]
    )
    snaps: dict[int, list[bytes]] = field(default_factory=dict)
    next_id: int = 1

    def apply(self, op: Op) -> None:
        kind, a, b, c = op
        if kind == "write":
            put(self.live[a], b, write_data(c))
        elif kind == "truncate":
            del self.live[a][b:]
        elif kind == "snap":
            self.snaps[self.next_id] = [bytes(x) for x in self.live]
            self.next_id += 1
        elif kind == "delete" and self.snaps:
            del self.snaps[self.pick(a)]
        elif kind == "vwrite" and self.snaps:
            sid, i = self.pick(a // 8), a % 8
            buf = bytearray(self.snaps[sid][i])
            put(buf, b, write_data(c))
            self.snaps[sid][i] = bytes(buf)

    def pick(self, a: int) -> int:
        ids = sorted(self.snaps)
        return ids[a % len(ids)]


def main(argv: list[str]) -> int:
    from vssim import engine

    root, diff, seed, steps, progress = argv[:5]
    durable = "--durable" in argv
    vol = engine.Volume(root, diff, durable=durable)
    files = [vol.open(p) for p in FILES]
    # Only the ids matter here (for the picks); the test's replay keeps the bytes.
    ids = vol.live_snapshots()
    log = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def pick(a: int) -> int:
        return sorted(ids)[a % len(ids)]

    for i, op in enumerate(ops(int(seed), int(steps))):
        kind, a, b, c = op
        if kind == "write":
            files[a].write(b, write_data(c))
        elif kind == "truncate":
            if files[a].len() > b:
                files[a].set_len(b)
        elif kind == "snap":
            ids.append(vol.create_snapshot())
        elif kind == "delete" and ids:
            sid = pick(a)
            vol.delete_snapshot(sid)
            ids.remove(sid)
        elif kind == "vwrite" and ids:
            view = vol.snapshot(pick(a // 8)).open(FILES[a % 8], writable=True)
            view.write(b, write_data(c))
        os.write(log, f"{i}\n".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
