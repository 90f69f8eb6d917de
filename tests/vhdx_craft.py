"""Byte-level surgery on small VHDX files for the hostile tests: pending logs, parent locators,
header fields. Each helper rewrites a file in place and reseals what it touched (CRC-32C), so
the file fails only where the test means it to.

A hostile case runs the CLI or a snippet of Python in a child process bounded by a timeout and an
address-space limit (:mod:`bounded`, re-exported here): a hang or a runaway allocation shows as a
failed test, never as a stuck or swapping machine.
"""

from __future__ import annotations

import pathlib
import struct
import uuid

from bounded import (
    CHILD_ADDRESS_SPACE,
    CHILD_TIMEOUT_S,
    Result,
    python,
    run_bounded,
    spawn_bounded,
    vssim,
    vssim_batch,
)
from make_vhdx_corpus import KiB, MiB, metadata_entry, metadata_item, seal

__all__ = [
    "CHILD_ADDRESS_SPACE",
    "CHILD_TIMEOUT_S",
    "Result",
    "python",
    "run_bounded",
    "spawn_bounded",
    "vssim",
    "vssim_batch",
]

HEADERS = (64 * KiB, 128 * KiB)
LOG_OFFSET = MiB


# --- headers ------------------------------------------------------------------------------------


def current_header(b: bytes | bytearray) -> int:
    s = [struct.unpack_from("<Q", b, h + 8)[0] for h in HEADERS]
    return HEADERS[0] if s[0] > s[1] else HEADERS[1]


def data_write_guid(path: pathlib.Path) -> uuid.UUID:
    b = path.read_bytes()[: 192 * KiB]
    h = current_header(b)
    return uuid.UUID(bytes_le=bytes(b[h + 32 : h + 48]))


def set_header_fields(b: bytearray, **fields: int | uuid.UUID) -> None:
    """Sets fields of both headers (``log_guid``, ``data_write_guid``, ``log_offset``,
    ``log_length``) and reseals."""
    at = {"data_write_guid": 32, "log_guid": 48, "log_length": 68, "log_offset": 72}
    for h in HEADERS:
        for name, value in fields.items():
            if isinstance(value, uuid.UUID):
                b[h + at[name] : h + at[name] + 16] = value.bytes_le
            elif name == "log_length":
                struct.pack_into("<I", b, h + at[name], value)
            else:
                struct.pack_into("<Q", b, h + at[name], value)
        seal(b, h, 4 * KiB)


# --- the log ------------------------------------------------------------------------------------

#: A descriptor of a crafted log entry: ("data", file offset, 4096 bytes) or ("zero", file
#: offset, length).
Descriptor = tuple[str, int, bytes | int]


def log_entry(
    guid: uuid.UUID, seq: int, descs: list[Descriptor], *, flushed: int, last: int
) -> bytes:
    """One valid log entry (checksum, sequence numbers, data sectors) at ring position 0."""
    count = len(descs)
    ds = max(1, (count + 2 + 127) // 128)
    data = [d for d in descs if d[0] == "data"]
    e = bytearray((ds + len(data)) * 4 * KiB)
    e[0:4] = b"loge"
    struct.pack_into("<IIQII", e, 8, len(e), 0, seq, count, 0)
    e[32:48] = guid.bytes_le
    struct.pack_into("<QQ", e, 48, flushed, last)
    sector = ds
    for i, (kind, off, payload) in enumerate(descs):
        d = 64 + 32 * i
        if kind == "zero":
            assert isinstance(payload, int)
            e[d : d + 4] = b"zero"
            struct.pack_into("<QQQ", e, d + 8, payload, off, seq)
        else:
            assert isinstance(payload, bytes)
            assert len(payload) == 4 * KiB
            e[d : d + 4] = b"desc"
            e[d + 4 : d + 8] = payload[4092:4096]
            e[d + 8 : d + 16] = payload[0:8]
            struct.pack_into("<QQ", e, d + 16, off, seq)
            s = sector * 4 * KiB
            e[s : s + 4] = b"data"
            struct.pack_into("<I", e, s + 4, seq >> 32)
            e[s + 8 : s + 4092] = payload[8:4092]
            struct.pack_into("<I", e, s + 4092, seq & 0xFFFFFFFF)
            sector += 1
    seal(e, 0, len(e))
    return bytes(e)


def plant_log(path: pathlib.Path, descs: list[Descriptor], *, last: int | None = None) -> None:
    """Makes ``path`` dirty: one log entry holding ``descs`` and a LogGuid naming it."""
    b = bytearray(path.read_bytes())
    guid = uuid.uuid4()
    size = len(b)
    entry = log_entry(guid, 1, descs, flushed=size, last=size if last is None else last)
    b[LOG_OFFSET : LOG_OFFSET + len(entry)] = entry
    set_header_fields(b, log_guid=guid)
    path.write_bytes(b)


def bat_offset(b: bytes | bytearray) -> int:
    count = struct.unpack_from("<I", b, 192 * KiB + 8)[0]
    for i in range(count):
        e = 192 * KiB + 16 + 32 * i
        if str(uuid.UUID(bytes_le=bytes(b[e : e + 16]))).startswith("2dc27766"):
            return int(struct.unpack_from("<Q", b, e + 16)[0])
    raise KeyError("BAT region")


# --- parent locators ----------------------------------------------------------------------------

LOCATOR_TYPE = uuid.UUID("B04AEFB7-D19E-4A81-B789-25B8E9445913")


def locator_bytes(entries: dict[str, str]) -> bytes:
    head = bytearray(20 + 12 * len(entries))
    head[0:16] = LOCATOR_TYPE.bytes_le
    struct.pack_into("<H", head, 18, len(entries))
    strings = bytearray()
    for i, (k, v) in enumerate(entries.items()):
        kb, vb = k.encode("utf-16-le"), v.encode("utf-16-le")
        ko = len(head) + len(strings)
        strings += kb
        vo = len(head) + len(strings)
        strings += vb
        struct.pack_into("<IIHH", head, 20 + 12 * i, ko, vo, len(kb), len(vb))
    return bytes(head + strings)


def set_locator(path: pathlib.Path, entries: dict[str, str]) -> None:
    """Replaces the parent locator item of a differencing disk (it is the last item vssim writes,
    so it may grow into the free end of the metadata region)."""
    b = bytearray(path.read_bytes())
    set_locator_bytes(b, entries)
    path.write_bytes(b)


def set_locator_bytes(b: bytearray, entries: dict[str, str]) -> None:
    """:func:`set_locator` on a file's bytes."""
    item = metadata_item(b, "a8d35f2d")
    entry = metadata_entry(b, "a8d35f2d")
    data = locator_bytes(entries)
    old_len = struct.unpack_from("<I", b, entry + 20)[0]
    b[item : item + max(old_len, len(data))] = data.ljust(max(old_len, len(data)), b"\0")
    struct.pack_into("<I", b, entry + 20, len(data))


def write_sparse(path: pathlib.Path, data: bytes | bytearray) -> None:
    """Writes ``data`` as a new file holding only its non-zero 4 KiB pages (the rest a hole)."""
    with open(path, "wb") as f:
        for at in range(0, len(data), 4 * KiB):
            page = data[at : at + 4 * KiB]
            if page.count(0) != len(page):
                f.seek(at)
                f.write(page)
        f.truncate(len(data))


def linkage(guid: uuid.UUID) -> str:
    return "{" + str(guid) + "}"
