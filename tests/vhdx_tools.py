"""Helpers of the VHDX interop tests: the other tools (qemu-img, qemu-io, pyvhdi, dissect) as
plain functions returning bytes."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pyvhdi
from dissect.hypervisor.disk.vhdx import VHDX

MiB = 1024 * 1024

HAVE_QEMU = shutil.which("qemu-img") is not None and shutil.which("qemu-io") is not None


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


def qemu_raw(path: pathlib.Path, tmp: pathlib.Path) -> bytes:
    out = tmp / (path.name + ".qemu.raw")
    r = run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(path), str(out))
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def qemu_check(path: pathlib.Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("qemu-img", "check", *extra, "-f", "vhdx", str(path))


def qemu_compare(path: pathlib.Path, raw: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return run("qemu-img", "compare", "-f", "vhdx", "-F", "raw", str(path), str(raw))


def pyvhdi_read(chain: list[pathlib.Path], size: int) -> bytes:
    """Reads the last file of `chain` (base first) with libvhdi, parents attached by hand."""
    files = []
    for p in chain:
        f = pyvhdi.file()
        f.open(str(p))
        files.append(f)
    for child, parent in zip(files[1:], files[:-1], strict=True):
        child.set_parent(parent)
    data: bytes = files[-1].read_buffer_at_offset(size, 0)
    for f in files:
        f.close()
    return data


def dissect_read(path: pathlib.Path, size: int) -> bytes:
    """Reads with dissect.hypervisor (it finds parents through the locator), 1 MiB at a time."""
    v = VHDX(path)
    out = bytearray()
    try:
        while len(out) < size:
            out += v.read(min(MiB, size - len(out)))
    finally:
        node: VHDX | None = v
        while node is not None:
            node.fh.close()
            node = node.parent
    return bytes(out)
