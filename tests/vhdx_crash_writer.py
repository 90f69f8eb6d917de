"""Child process of the crash tests: writes numbered records into a VHDX until killed.

Usage: ``python vhdx_crash_writer.py DISK JOURNAL SEED``. Record ``i`` (a 1..64 KiB pattern
derived from ``SEED`` and ``i``, at a slot of its own) is written, every few records the disk is
flushed and, once ``flush()`` has returned, the number of records written so far is appended to
the journal and fsync'd. The parent kills this process with SIGKILL at a random moment.
"""

from __future__ import annotations

import os
import sys

from vssim._engine import Vhdx

SLOT = 256 * 1024


def record(seed: int, i: int) -> tuple[int, bytes]:
    import random

    rng = random.Random(seed * 1_000_003 + i)
    length = rng.randrange(1, 64 * 1024)
    inner = rng.randrange(0, SLOT - length)
    return i * SLOT + inner, rng.randbytes(length)


def main() -> None:
    disk, journal, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    d = Vhdx.open(disk, writable=True)
    slots = d.virtual_size // SLOT
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    i = 0
    while i < slots:
        off, data = record(seed, i)
        d.write(off, data)
        i += 1
        if i % 3 == 0:
            d.flush()
            os.write(fd, f"{i}\n".encode())
            os.fsync(fd)
    d.close()
    os.write(fd, b"done\n")
    os.fsync(fd)


if __name__ == "__main__":
    main()
