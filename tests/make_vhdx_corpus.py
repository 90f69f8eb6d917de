"""Builds the malformed-VHDX corpus in tests/data/vhdx/ (``python tests/make_vhdx_corpus.py``).

Each case starts from a small valid file made by the engine, breaks one thing, and is stored
gzip-compressed (the files are sparse; compressed they are a few KiB). ``CASES`` maps each file
to what opening it must raise: the exception class name and the structure and field named.
"""

from __future__ import annotations

import gzip
import pathlib
import struct
import tempfile
import uuid

from vssim import engine

MiB = 1024 * 1024
KiB = 1024
HERE = pathlib.Path(__file__).parent / "data" / "vhdx"

# name -> (exception class, structure, field)
CASES: dict[str, tuple[str, str, str]] = {
    "truncated_after_header1": ("VhdxCorruptError", "region table", "signature"),
    "truncated_in_bat": ("VhdxCorruptError", "region table entry", "FileOffset"),
    "bad_file_signature": ("VhdxCorruptError", "file type identifier", "signature"),
    "both_headers_bad_checksum": ("VhdxCorruptError", "header", "both headers"),
    "both_headers_bad_signature": ("VhdxCorruptError", "header", "both headers"),
    "bad_region_signature": ("VhdxCorruptError", "region table", "signature"),
    "bad_region_checksum": ("VhdxCorruptError", "region table", "checksum"),
    "overlapping_regions": ("VhdxCorruptError", "region table entry", "FileOffset"),
    "unknown_required_region": ("VhdxUnsupportedError", "region table entry", "Required"),
    "unknown_required_metadata": ("VhdxUnsupportedError", "metadata table entry", "IsRequired"),
    "bad_metadata_signature": ("VhdxCorruptError", "metadata table", "signature"),
    "illegal_block_size": ("VhdxCorruptError", "File Parameters", "BlockSize"),
    "illegal_sector_size": ("VhdxCorruptError", "Logical Sector Size", "LogicalSectorSize"),
    "zero_virtual_size": ("VhdxCorruptError", "Virtual Disk Size", "VirtualDiskSize"),
    "bat_offset_past_eof": ("VhdxCorruptError", "BAT entry", "FileOffsetMB"),
    "bat_overlapping_blocks": ("VhdxCorruptError", "BAT entry", "FileOffsetMB"),
    "bat_block_on_log": ("VhdxCorruptError", "BAT entry", "FileOffsetMB"),
    "bat_partial_in_dynamic": ("VhdxCorruptError", "BAT entry", "State"),
    "log_guid_without_log": ("VhdxCorruptError", "log", "LogGuid"),
    "log_flushed_past_eof": ("VhdxCorruptError", "log entry", "FlushedFileOffset"),
    "log_zero_descriptor_unbounded": ("VhdxCorruptError", "log descriptor", "ZeroLength"),
    "log_zero_over_whole_file": ("VhdxCorruptError", "log descriptor", "FileOffset"),
    "log_data_sector_at_offset_0": ("VhdxCorruptError", "log descriptor", "FileOffset"),
    "log_data_sector_on_the_log": ("VhdxCorruptError", "log descriptor", "FileOffset"),
    "log_bat_entry_past_eof": ("VhdxCorruptError", "log", "replay"),
    "log_last_file_offset_huge": ("VhdxCorruptError", "log entry", "LastFileOffset"),
    "header_log_offset_past_eof": ("VhdxCorruptError", "header", "LogOffset"),
    "header_log_version": ("VhdxUnsupportedError", "header", "LogVersion"),
    "parent_escapes_directory": ("VhdxParentError", "parent locator", "relative_path"),
    "parent_missing": ("VhdxParentError", "parent locator", "relative_path"),
}

_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def seal(buf: bytearray, start: int, length: int) -> None:
    buf[start + 4 : start + 8] = bytes(4)
    struct.pack_into("<I", buf, start + 4, crc32c(bytes(buf[start : start + length])))


def base_file(tmp: pathlib.Path, name: str = "base.vhdx", **kw: object) -> bytearray:
    p = tmp / name
    with engine.Vhdx.create(p, 8 * MiB, block_size=MiB, **kw) as d:  # type: ignore[arg-type]
        d.write(0, b"\xaa" * (2 * MiB))
    return bytearray(p.read_bytes())


def region_entries(b: bytearray) -> dict[str, int]:
    """File offsets of the BAT and metadata region-table entries (first copy)."""
    out = {}
    count = struct.unpack_from("<I", b, 192 * KiB + 8)[0]
    for i in range(count):
        e = 192 * KiB + 16 + 32 * i
        g = str(uuid.UUID(bytes_le=bytes(b[e : e + 16])))
        out["bat" if g.startswith("2dc27766") else "metadata"] = e
    return out


def region(b: bytearray, which: str) -> tuple[int, int]:
    e = region_entries(b)[which]
    off, length = struct.unpack_from("<QI", b, e + 16)
    return off, length


def current_header(b: bytearray) -> int:
    s1 = struct.unpack_from("<Q", b, 64 * KiB + 8)[0]
    s2 = struct.unpack_from("<Q", b, 128 * KiB + 8)[0]
    return 64 * KiB if s1 > s2 else 128 * KiB


def both_region_tables(b: bytearray, fn: object) -> None:
    for t in (192 * KiB, 256 * KiB):
        fn(t)  # type: ignore[operator]
        seal(b, t, 64 * KiB)


def metadata_entry(b: bytearray, prefix: str) -> int:
    moff, _ = region(b, "metadata")
    n = struct.unpack_from("<H", b, moff + 10)[0]
    for i in range(n):
        e = moff + 32 + 32 * i
        if str(uuid.UUID(bytes_le=bytes(b[e : e + 16]))).startswith(prefix):
            return e
    raise KeyError(prefix)


def metadata_item(b: bytearray, prefix: str) -> int:
    moff, _ = region(b, "metadata")
    e = metadata_entry(b, prefix)
    return moff + struct.unpack_from("<I", b, e + 16)[0]


def build(tmp: pathlib.Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    base = base_file(tmp)
    bat_off, _ = region(base, "bat")

    out["truncated_after_header1"] = bytes(base[: 70 * KiB])
    out["truncated_in_bat"] = bytes(base[: bat_off + 4 * KiB])

    b = bytearray(base)
    b[7] = ord("X")
    out["bad_file_signature"] = bytes(b)

    b = bytearray(base)
    b[64 * KiB + 100] ^= 1
    b[128 * KiB + 100] ^= 1
    out["both_headers_bad_checksum"] = bytes(b)

    b = bytearray(base)
    b[64 * KiB : 64 * KiB + 4] = b"HEAD"
    b[128 * KiB : 128 * KiB + 4] = b"HEAD"
    out["both_headers_bad_signature"] = bytes(b)

    b = bytearray(base)
    for t in (192 * KiB, 256 * KiB):
        b[t : t + 4] = b"rege"
    out["bad_region_signature"] = bytes(b)

    b = bytearray(base)
    for t in (192 * KiB, 256 * KiB):
        b[t + 16 + 20] ^= 0x10
    out["bad_region_checksum"] = bytes(b)

    b = bytearray(base)
    meta_e = region_entries(b)["metadata"]

    def overlap(t: int) -> None:
        struct.pack_into("<Q", b, t + (meta_e - 192 * KiB) + 16, bat_off)

    both_region_tables(b, overlap)
    out["overlapping_regions"] = bytes(b)

    b = bytearray(base)

    def add_region(t: int) -> None:
        n = struct.unpack_from("<I", b, t + 8)[0]
        e = t + 16 + 32 * n
        b[e : e + 16] = uuid.UUID("12345678-1234-5678-9abc-def012345678").bytes_le
        struct.pack_into("<QII", b, e + 16, 6 * MiB, MiB, 1)
        struct.pack_into("<I", b, t + 8, n + 1)

    b.extend(bytes(max(0, 7 * MiB - len(b))))
    both_region_tables(b, add_region)
    out["unknown_required_region"] = bytes(b)

    b = bytearray(base)
    moff, _ = region(b, "metadata")
    n = struct.unpack_from("<H", b, moff + 10)[0]
    e = moff + 32 + 32 * n
    b[e : e + 16] = uuid.UUID("87654321-1234-5678-9abc-def012345678").bytes_le
    struct.pack_into("<IIII", b, e + 16, 128 * KiB, 8, 4, 0)
    struct.pack_into("<H", b, moff + 10, n + 1)
    out["unknown_required_metadata"] = bytes(b)

    b = bytearray(base)
    b[moff : moff + 8] = b"metadaTA"
    out["bad_metadata_signature"] = bytes(b)

    b = bytearray(base)
    struct.pack_into("<I", b, metadata_item(b, "caa16737"), 3 * MiB)
    out["illegal_block_size"] = bytes(b)

    b = bytearray(base)
    struct.pack_into("<I", b, metadata_item(b, "8141bf1d"), 1024)
    out["illegal_sector_size"] = bytes(b)

    b = bytearray(base)
    struct.pack_into("<Q", b, metadata_item(b, "2fa54224"), 0)
    out["zero_virtual_size"] = bytes(b)

    b = bytearray(base)
    struct.pack_into("<Q", b, bat_off + 8 * 3, (1000 << 20) | 6)
    out["bat_offset_past_eof"] = bytes(b)

    b = bytearray(base)
    first = struct.unpack_from("<Q", b, bat_off)[0]
    struct.pack_into("<Q", b, bat_off + 8 * 2, first)
    out["bat_overlapping_blocks"] = bytes(b)

    b = bytearray(base)
    struct.pack_into("<Q", b, bat_off + 8 * 4, (1 << 20) | 6)
    out["bat_block_on_log"] = bytes(b)

    b = bytearray(base)
    struct.pack_into("<Q", b, bat_off, first & ~7 | 7)
    out["bat_partial_in_dynamic"] = bytes(b)

    b = bytearray(base)
    h = current_header(b)
    b[h + 48 : h + 64] = uuid.uuid4().bytes_le
    seal(b, h, 4 * KiB)
    out["log_guid_without_log"] = bytes(b)

    b = bytearray(base)
    h = current_header(b)
    guid = uuid.uuid4()
    b[h + 48 : h + 64] = guid.bytes_le
    seal(b, h, 4 * KiB)
    entry = bytearray(8 * KiB)
    entry[0:4] = b"loge"
    struct.pack_into("<IIQII", entry, 8, 8 * KiB, 0, 1, 1, 0)
    entry[32:48] = guid.bytes_le
    struct.pack_into("<QQ", entry, 48, 1 << 40, len(b))
    d = 64
    entry[d : d + 4] = b"desc"
    struct.pack_into("<QQ", entry, d + 16, bat_off, 1)
    s = 4 * KiB
    entry[s : s + 4] = b"data"
    struct.pack_into("<I", entry, s + 4, 0)
    struct.pack_into("<I", entry, s + 4092, 1)
    seal(entry, 0, len(entry))
    b[MiB : MiB + len(entry)] = entry
    out["log_flushed_past_eof"] = bytes(b)

    # A zero descriptor reaching far past LastFileOffset: not a valid entry, so no valid sequence.
    b = bytearray(base)
    h = current_header(b)
    guid = uuid.uuid4()
    b[h + 48 : h + 64] = guid.bytes_le
    seal(b, h, 4 * KiB)
    entry = bytearray(4 * KiB)
    entry[0:4] = b"loge"
    struct.pack_into("<IIQII", entry, 8, 4 * KiB, 0, 1, 1, 0)
    entry[32:48] = guid.bytes_le
    struct.pack_into("<QQ", entry, 48, len(b), len(b))
    entry[64:68] = b"zero"
    struct.pack_into("<QQQ", entry, 64 + 8, 1 << 50, 4 * MiB, 1)
    seal(entry, 0, len(entry))
    b[MiB : MiB + len(entry)] = entry
    out["log_zero_descriptor_unbounded"] = bytes(b)

    b = bytearray(base)
    h = current_header(b)
    struct.pack_into("<H", b, h + 64, 1)
    seal(b, h, 4 * KiB)
    out["header_log_version"] = bytes(b)

    # Crafted pending logs that are well formed as a log but aimed where a log may not write.
    from vhdx_craft import log_entry, set_header_fields

    def dirty(descs: list[tuple[str, int, bytes | int]], last: int | None = None) -> bytes:
        b = bytearray(base)
        guid = uuid.uuid4()
        e = log_entry(guid, 1, descs, flushed=len(b), last=len(b) if last is None else last)
        b[MiB : MiB + len(e)] = e
        set_header_fields(b, log_guid=guid)
        return bytes(b)

    page = bytearray(base[bat_off : bat_off + 4 * KiB])
    struct.pack_into("<Q", page, 8, (1 << 44) | 6)
    out["log_zero_over_whole_file"] = dirty([("zero", 0, len(base))])
    out["log_data_sector_at_offset_0"] = dirty([("data", 0, b"X" * 4 * KiB)])
    out["log_data_sector_on_the_log"] = dirty([("data", MiB + 64 * KiB, b"X" * 4 * KiB)])
    out["log_bat_entry_past_eof"] = dirty([("data", bat_off, bytes(page))])
    out["log_last_file_offset_huge"] = dirty([("data", bat_off, bytes(page))], last=1 << 50)

    b = bytearray(base)
    set_header_fields(b, log_offset=1 << 50)
    out["header_log_offset_past_eof"] = bytes(b)

    # Differencing children whose parent cannot be used.
    sub = tmp / "sub"
    sub.mkdir()
    parent = tmp / "parent.vhdx"
    parent.write_bytes(base)
    child = sub / "child.avhdx"
    engine.Vhdx.create(child, disk_type="differencing", parent=parent).close()
    c = bytearray(child.read_bytes())
    item = metadata_item(c, "a8d35f2d")
    kv = struct.unpack_from("<H", c, item + 18)[0]
    for i in range(kv):
        ko, vo, kl, vl = struct.unpack_from("<IIHH", c, item + 20 + 12 * i)
        key = bytes(c[item + ko : item + ko + kl]).decode("utf-16-le")
        if key == "relative_path":
            value = bytes(c[item + vo : item + vo + vl]).decode("utf-16-le")
            assert value == "..\\parent.vhdx", value
            # Same length, further up: ..\..\..\x (escapes); and a name that does not exist.
            esc = "..\\..\\..\\x.vh".ljust(len(value), "x")[: len(value)]
            gone = ".\\nowhere.vhdx".ljust(len(value), "x")[: len(value)]
            for name, text in (("parent_escapes_directory", esc), ("parent_missing", gone)):
                cc = bytearray(c)
                cc[item + vo : item + vo + vl] = text.encode("utf-16-le")
                out[name] = bytes(cc)
    return out


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = build(pathlib.Path(tmp))
    assert set(files) == set(CASES), set(files) ^ set(CASES)
    for name, data in files.items():
        (HERE / f"{name}.vhdx.gz").write_bytes(gzip.compress(data, 9, mtime=0))
    print(f"wrote {len(files)} files to {HERE}")


if __name__ == "__main__":
    main()
