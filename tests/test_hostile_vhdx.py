"""Hostile input and careless use of VHDX files (issue 15), each case as the issue states it.

Every case that could hang or allocate without bound runs the CLI (or a snippet) in a child
process under a timeout and an address-space limit (``vhdx_craft.run_bounded``), so a regression
fails the test instead of the machine. Cases:

- locks: two writers (two processes, or two handles in one process) of one disk; readers against
  a writer; a writable child against its parents;
- outputs: ``export d.vhdx d.vhdx``; any output that resolves to an input (symlink, hard link, a
  chain's parent); an existing output without ``--force``, for every command alike;
- merge killed with SIGKILL at several instants: the parent is the old one or the merged one;
- crafted pending logs (a descriptor over the whole file, a BAT entry at 2^44, a data sector
  aimed at offset 0): ``check`` reports them, no open replays them, the file is left untouched;
- parent locators: an absolute path alone, a missing relative path with an absolute fallback, a
  foreign file's text in messages, and ``restore`` from a copied backup store;
- a differencing disk that is its own parent, and an A↔B cycle;
- sizes the validators accept must not abort on allocation;
- ``check`` must report what every open refuses (``LogOffset = 2^50``);
- unclear errors: a directory, a FIFO.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid

import pytest

from vhdx_craft import (
    CHILD_TIMEOUT_S,
    bat_offset,
    current_header,
    data_write_guid,
    linkage,
    plant_log,
    python,
    set_header_fields,
    set_locator,
    set_locator_bytes,
    spawn_bounded,
    vssim,
    vssim_batch,
    write_sparse,
)
from vhdx_tools import HAVE_QEMU, qemu_check, qemu_raw
from vssim import engine, errors

MiB = 1 << 20


def digest(p: pathlib.Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def small_disk(p: pathlib.Path, size: int = 16 * MiB, fill: bytes = b"\x11") -> pathlib.Path:
    with engine.Vhdx.create(p, size, block_size=MiB) as d:
        d.write(0, fill * (2 * MiB))
    return p


def chain(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    base = small_disk(tmp / "base.vhdx")
    child = tmp / "child.avhdx"
    with engine.Vhdx.create(child, disk_type="differencing", parent=base) as c:
        c.write(5 * MiB, b"\x22" * 4096)
    return base, child


# --- item 2: locks ------------------------------------------------------------------------------


def test_two_processes_cannot_both_write_a_fresh_disk(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    engine.Vhdx.create(p, 64 * MiB, block_size=MiB).close()
    with engine.Vhdx.open(p, writable=True) as mine:
        mine.write(0, b"A" * 4096)
        other = python(
            "from vssim import engine\n"
            f"d = engine.Vhdx.open({str(p)!r}, writable=True)\n"
            "d.write(8 << 20, b'B' * 4096)\n"
            "d.close()\n"
        )
        assert other.returncode != 0, "a second writer opened the disk"
        assert "VhdxLockedError" in other.stderr
        assert str(p) in other.stderr
        assert f"process {os.getpid()}" in other.stderr, other.stderr
    with engine.Vhdx.open(p) as d:
        assert d.read(0, 4096) == b"A" * 4096
        assert d.check() == []


def test_two_handles_in_one_process_conflict(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "d.vhdx"
    engine.Vhdx.create(p, 64 * MiB, block_size=MiB).close()
    with engine.Vhdx.open(p, writable=True) as a:
        with pytest.raises(errors.VhdxLockedError, match="this process") as exc:
            engine.Vhdx.open(p, writable=True)
        assert exc.value.file == str(p)
        # A writer excludes readers (they would see blocks whose BAT entries are not yet written).
        with pytest.raises(errors.VhdxLockedError):
            engine.Vhdx.open(p)
        a.write(0, b"A" * 4096)
    # Readers share; a reader excludes a writer.
    with engine.Vhdx.open(p) as r1, engine.Vhdx.open(p) as r2:
        assert r1.read(0, 1) == r2.read(0, 1) == b"A"
        with pytest.raises(errors.VhdxLockedError):
            engine.Vhdx.open(p, writable=True)
    with engine.Vhdx.open(p, writable=True) as again:
        again.write(4096, b"B")


def test_a_writable_child_holds_its_parents_shared(tmp_path: pathlib.Path) -> None:
    base, child = chain(tmp_path)
    with engine.Vhdx.open(child, writable=True) as c:
        with pytest.raises(errors.VhdxLockedError, match=r"base\.vhdx"):
            engine.Vhdx.open(base, writable=True)
        with engine.Vhdx.open(base) as b:  # reading the parent is fine
            assert b.read(0, 1) == b"\x11"
        c.write(0, b"c")
    with engine.Vhdx.open(base, writable=True) as b, pytest.raises(errors.VhdxLockedError):
        engine.Vhdx.open(child)  # needs its parent, which is being written


#: Rounds of the concurrent-writer soak (``make bench`` runs many more).
WRITER_ROUNDS = int(os.environ.get("VSSIM_VHDX_WRITER_ROUNDS", "3"))

WRITER = """
import sys, time
from vssim import engine, errors
path, me, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
done = 0
while done < rounds:
    try:
        d = engine.Vhdx.open(path, writable=True)
    except errors.VhdxLockedError:
        time.sleep(0.002)
        continue
    with d:
        # A fresh block of its own each round: every round allocates at the end of the file.
        d.write(((me * rounds + done) * 2 + 1) << 20, bytes([me + 1]) * 5000 + bytes([done]))
    done += 1
print("ok")
"""

READER = """
import sys, time
from vssim import engine, errors
path, until = sys.argv[1], float(sys.argv[2])
seen = 0
while time.time() < until:
    try:
        d = engine.Vhdx.open(path)
    except errors.VhdxLockedError:
        continue
    with d:
        bad = [f for f in d.check() if f.severity == "error"]
        assert not bad, bad
        seen += 1
print("ok", seen)
"""


def test_concurrent_writers_take_turns_and_lose_nothing(tmp_path: pathlib.Path) -> None:
    writers = 4
    p = tmp_path / "d.vhdx"
    size = (2 * writers * WRITER_ROUNDS + 2) << 20
    engine.Vhdx.create(p, size, block_size=MiB).close()
    procs = [
        spawn_bounded(["-c", WRITER, str(p), str(i), str(WRITER_ROUNDS)]) for i in range(writers)
    ]
    reader = spawn_bounded(["-c", READER, str(p), str(time.time() + 2.0)])
    for proc in [*procs, reader]:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S * 4)
        assert proc.returncode == 0, err[-2000:]
        assert out.startswith("ok"), err[-2000:]
    with engine.Vhdx.open(p) as d:
        for me in range(writers):
            for done in range(WRITER_ROUNDS):
                at = ((me * WRITER_ROUNDS + done) * 2 + 1) << 20
                assert d.read(at, 5001) == bytes([me + 1]) * 5000 + bytes([done]), (me, done)
        assert d.check() == []


def test_check_of_a_disk_being_written_names_the_writer(tmp_path: pathlib.Path) -> None:
    p = small_disk(tmp_path / "d.vhdx")
    with engine.Vhdx.open(p, writable=True):
        r = vssim("vhdx", "check", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "locked" in r.stderr
    assert str(os.getpid()) in r.stderr
    assert "Traceback" not in r.stderr


# --- item 3: outputs ----------------------------------------------------------------------------


def test_export_onto_its_own_input_is_refused(tmp_path: pathlib.Path) -> None:
    p = small_disk(tmp_path / "d.vhdx")
    before = digest(p)
    for r in vssim_batch(
        ["vhdx", "export", str(p), str(p)], ["vhdx", "export", str(p), str(p), "--force"]
    ):
        assert r.returncode == 2, r.stdout + r.stderr
        assert "is the input" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert digest(p) == before
    with engine.Vhdx.open(p) as d:
        assert d.read(0, 1) == b"\x11"


@pytest.mark.parametrize("how", ["symlink", "hardlink", "parent"])
def test_outputs_resolving_to_an_input_are_refused(tmp_path: pathlib.Path, how: str) -> None:
    base, child = chain(tmp_path)
    target = base if how == "parent" else child
    alias = tmp_path / "alias.vhdx"
    if how == "symlink":
        alias.symlink_to(target)
    elif how == "hardlink":
        os.link(target, alias)
    else:
        alias = base
    before = (digest(base), digest(child))
    cmds = [["vhdx", c, str(child), str(alias), "--force"] for c in ("export", "copy")]
    for cmd, r in zip(cmds, vssim_batch(*cmds), strict=True):
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "is the input" in r.stderr, r.stderr
    assert (digest(base), digest(child)) == before


def test_every_command_refuses_an_existing_output_unless_forced(tmp_path: pathlib.Path) -> None:
    src = small_disk(tmp_path / "src.vhdx")
    raw = tmp_path / "src.raw"
    assert vssim("vhdx", "export", str(src), str(raw)).returncode == 0
    cases = {
        "export": ["vhdx", "export", str(src)],
        "copy": ["vhdx", "copy", str(src)],
        "import": ["vhdx", "import", str(raw)],
        "create": ["vhdx", "create"],
    }
    outs = {name: tmp_path / f"existing-{name}" for name in cases}
    args = {
        name: [*cmd, str(outs[name]), *(["8M"] if name == "create" else [])]
        for name, cmd in cases.items()
    }
    for out in outs.values():
        out.write_bytes(b"keep me")
    for name, r in zip(cases, vssim_batch(*args.values()), strict=True):
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        assert "exists" in r.stderr, (name, r.stderr)
        assert "--force" in r.stderr, (name, r.stderr)
        assert outs[name].read_bytes() == b"keep me", name
    forced = vssim_batch(*[[*a, "--force"] for a in args.values()])
    for name, r in zip(cases, forced, strict=True):
        assert r.returncode == 0, (name, r.stdout, r.stderr)
        assert outs[name].read_bytes() != b"keep me"
    # No staging leftovers beside the outputs.
    assert not [p.name for p in tmp_path.iterdir() if "vssim-staging" in p.name]


def test_a_failed_output_leaves_nothing_under_its_name(tmp_path: pathlib.Path) -> None:
    base, child = chain(tmp_path)
    out = tmp_path / "out.vhdx"
    with engine.Vhdx.open(child) as c:
        os.truncate(base, 0)  # the parent vanishes under the open chain: the copy fails midway
        with pytest.raises(OSError, match=r"base\.vhdx"):
            c.copy_to(out)
        with pytest.raises(OSError, match=r"base\.vhdx"):
            c.export_raw(tmp_path / "out.raw")
    assert not out.exists()
    assert not (tmp_path / "out.raw").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.vhdx", "child.avhdx"]


# --- item 4: merge killed at several instants ---------------------------------------------------


def merge_chain(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, str, str]:
    """A 64 MiB chain whose merge rewrites 22 of the parent's blocks; the digests of the parent's
    view (old) and the child's view (what the merged parent must read)."""
    base = tmp / "base.vhdx"
    with engine.Vhdx.create(base, 64 * MiB, block_size=MiB) as d:
        for i in range(0, 64, 4):
            d.write(i * MiB, bytes([i + 1]) * MiB)
    child = tmp / "child.avhdx"
    with engine.Vhdx.create(child, disk_type="differencing", parent=base) as c:
        for i in range(0, 64, 3):
            c.write(i * MiB + 4096 * (i % 5), bytes([200 - i]) * (MiB // 2 + 512 * i))
        c.trim(62 * MiB, MiB)
    with engine.Vhdx.open(base) as b:
        old = b.digest()
    with engine.Vhdx.open(child) as c:
        new = c.digest()
    return base, child, old, new


def is_dirty(p: pathlib.Path) -> bool:
    """Whether the file's current header has a LogGuid (a log to replay)."""
    with open(p, "rb") as f:
        b = f.read(192 * 1024)
    h = current_header(b)
    return bytes(b[h + 48 : h + 64]) != bytes(16)


def classify_after_kill(base: pathlib.Path, child: pathlib.Path, old: str, new: str) -> str:
    """'old' or 'new', asserting everything either state promises. A parent left with a log to
    replay (killed between the merge's commit and its apply) is also repaired by qemu-img, which
    must give the same bytes as our replay."""
    qemu_repaired = None
    if HAVE_QEMU and is_dirty(base):
        dirty = base.with_name("qemu-repaired.vhdx")
        shutil.copyfile(base, dirty)
        assert qemu_check(dirty, "-r", "all").returncode == 0
        qemu_repaired = qemu_raw(dirty, base.parent)
    with engine.Vhdx.open(base, writable=True) as b:  # replays whatever log the kill left
        got = b.digest()
        assert [f for f in b.check() if f.severity == "error"] == []
        if qemu_repaired is not None:
            assert b.read(0, b.virtual_size) == qemu_repaired, "qemu-img repairs it differently"
    assert got in (old, new), "the parent is neither the old nor the merged disk"
    if got == old:
        with engine.Vhdx.open(child) as c:  # the child is intact and still links
            assert c.digest() == new
        return "old"
    with pytest.raises(errors.VhdxParentError, match="parent_linkage"):
        engine.Vhdx.open(child)
    return "new"


def start_merge(child: pathlib.Path, parent: pathlib.Path) -> tuple[subprocess.Popen[bytes], float]:
    """Starts ``vssim vhdx merge`` and returns once it has begun changing the parent (its size or
    modification time moved): the process and that instant."""
    before = parent.stat()
    proc = subprocess.Popen([sys.executable, "-m", "vssim", "vhdx", "merge", str(child)])
    while proc.poll() is None:
        now = parent.stat()
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            break
        time.sleep(0.0005)
    return proc, time.monotonic()


#: Kill instants of the merge test (``make bench`` runs many more).
MERGE_KILLS = int(os.environ.get("VSSIM_VHDX_MERGE_KILLS", "4"))


def test_merge_killed_at_several_instants_leaves_old_or_new(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _base, _child, old, new = merge_chain(src)
    # How long the merge spends changing the parent, measured on a copy.
    trial = tmp_path / "trial"
    shutil.copytree(src, trial)
    proc, began = start_merge(trial / "child.avhdx", trial / "base.vhdx")
    assert proc.wait(timeout=CHILD_TIMEOUT_S) == 0
    window = time.monotonic() - began
    assert classify_after_kill(trial / "base.vhdx", trial / "child.avhdx", old, new) == "new"
    seen = []
    dirty = 0
    for i in range(MERGE_KILLS):
        run_dir = tmp_path / f"kill{i}"
        shutil.copytree(src, run_dir)
        proc, began = start_merge(run_dir / "child.avhdx", run_dir / "base.vhdx")
        time.sleep(max(0.0, began + window * i / MERGE_KILLS - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=CHILD_TIMEOUT_S)
        dirty += is_dirty(run_dir / "base.vhdx")
        seen.append(classify_after_kill(run_dir / "base.vhdx", run_dir / "child.avhdx", old, new))
        shutil.rmtree(run_dir)
    assert set(seen) <= {"old", "new"}
    print(
        f"merge killed {MERGE_KILLS} times: {seen.count('old')} old, {seen.count('new')} new, "
        f"{dirty} left a log to replay"
    )


# --- item 6: crafted pending logs ---------------------------------------------------------------


def crafted_logs(p: pathlib.Path) -> dict[str, list[tuple[str, int, bytes | int]]]:
    b = p.read_bytes()
    bat = bat_offset(b)
    page = bytearray(b[bat : bat + 4096])
    struct.pack_into("<Q", page, 8, (1 << 44) | 6)  # block 1 at 16 TiB
    return {
        "zero over the whole file": [("zero", 0, len(b))],
        "BAT entry at 2^44": [("data", bat, bytes(page))],
        "data sector at offset 0": [("data", 0, b"X" * 4096)],
    }


@pytest.mark.parametrize(
    "case", ["zero over the whole file", "BAT entry at 2^44", "data sector at offset 0"]
)
def test_a_crafted_pending_log_is_refused_and_reported(tmp_path: pathlib.Path, case: str) -> None:
    p = small_disk(tmp_path / "d.vhdx")
    plant_log(p, crafted_logs(p)[case])
    before = digest(p)
    check, info = vssim_batch(["vhdx", "check", str(p)], ["vhdx", "info", str(p)])
    assert check.returncode == 1, check.stdout + check.stderr
    assert "error" in check.stdout, check.stdout
    assert "log" in check.stdout, check.stdout
    assert info.returncode == 2
    assert "Traceback" not in info.stderr
    for writable in (False, True):
        with pytest.raises(errors.VhdxCorruptError) as exc:
            engine.Vhdx.open(p, writable=writable)
        assert "log" in exc.value.structure, str(exc.value)
    assert digest(p) == before, "a refused log changed the file"


def test_a_well_formed_pending_log_still_replays(tmp_path: pathlib.Path) -> None:
    p = small_disk(tmp_path / "d.vhdx")
    b = p.read_bytes()
    bat = bat_offset(b)
    page = bytearray(b[bat : bat + 4096])
    struct.pack_into("<Q", page, 0, 2)  # block 0 becomes PAYLOAD_BLOCK_ZERO
    plant_log(p, [("data", bat, bytes(page))])
    r = vssim("vhdx", "check", str(p))
    assert r.returncode == 0, r.stdout
    with engine.Vhdx.open(p, writable=True) as d:
        assert d.replayed_log
        assert d.read(0, 4096) == bytes(4096)


# --- item 9: parent locators --------------------------------------------------------------------


def escape_setup(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    outside = tmp / "outside"
    inside = tmp / "inside"
    outside.mkdir()
    inside.mkdir()
    base = small_disk(outside / "base.vhdx")
    child = inside / "child.avhdx"
    with engine.Vhdx.create(child, disk_type="differencing", parent=base) as c:
        c.write(0, b"child")
    return base, child, outside


@pytest.mark.parametrize("layout", ["absolute only", "missing relative, absolute fallback"])
def test_every_locator_entry_obeys_the_escape_guard(tmp_path: pathlib.Path, layout: str) -> None:
    base, child, _ = escape_setup(tmp_path)
    entries = {"parent_linkage": linkage(data_write_guid(base))}
    if layout != "absolute only":
        entries["relative_path"] = ".\\gone.vhdx"
    entries["absolute_win32_path"] = str(base).replace("/", "\\")
    set_locator(child, entries)
    before = digest(base)
    cmds = [
        ["vhdx", "info", str(child)],
        ["vhdx", "export", str(child), str(tmp_path / "x.raw")],
        ["vhdx", "merge", str(child)],
        ["vhdx", "info", str(child), "--allow-parent-escape"],
    ]
    *refused, allowed = vssim_batch(*cmds)
    for cmd, r in zip(cmds, refused, strict=False):
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "allow-parent-escape" in r.stderr or "allow_parent_escape" in r.stderr, r.stderr
    assert digest(base) == before, "merge wrote into a disk outside the child's folder"
    assert allowed.returncode == 0, allowed.stderr


def test_messages_never_echo_a_foreign_files_text(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("SECRET:*:19000:0:99999:7:::\n")
    (r,) = vssim_batch(["vhdx", "info", str(secret)])
    assert r.returncode == 2
    assert "not a VHDX file" in r.stderr
    assert ":*:19000" not in r.stderr, r.stderr
    assert "SECRET" not in r.stderr, r.stderr
    # The same through a parent locator that the user allowed to escape.
    base, child, _ = escape_setup(tmp_path)
    set_locator(
        child,
        {
            "parent_linkage": linkage(data_write_guid(base)),
            "absolute_win32_path": str(secret).replace("/", "\\"),
        },
    )
    cmds = [["vhdx", "info", str(child), "--allow-parent-escape"], ["vhdx", "check", str(child)]]
    for r in vssim_batch(*cmds):
        assert r.returncode in (1, 2), r.stdout + r.stderr
        out = r.stdout + r.stderr
        assert ":*:19000" not in out, out
        assert "SECRET" not in out, out


def test_restore_from_a_copied_store_reads_only_the_copy(tmp_path: pathlib.Path) -> None:
    store = tmp_path / "store" / "vm" / "disk0"
    store.mkdir(parents=True)
    full = small_disk(store / "0001-full.vhdx")
    inc = store / "0002-incremental.vhdx"
    with engine.Vhdx.create(inc, disk_type="differencing", parent=full) as c:
        c.write(MiB, b"incremental")
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "store", copy)
    (copy / "vm" / "disk0" / "0001-full.vhdx").unlink()  # the copy is incomplete
    with pytest.raises(errors.VhdxParentError):
        engine.Vhdx.open(copy / "vm" / "disk0" / "0002-incremental.vhdx")
    # A complete copy restores after the original is gone.
    shutil.copy(full, copy / "vm" / "disk0" / "0001-full.vhdx")
    shutil.rmtree(tmp_path / "store")
    with engine.Vhdx.open(copy / "vm" / "disk0" / "0002-incremental.vhdx") as d:
        assert d.read(MiB, 11) == b"incremental"
        assert str(d.parent_path).startswith(str(copy))


# --- item 10: cycles ----------------------------------------------------------------------------


def test_a_disk_that_is_its_own_parent_is_refused(tmp_path: pathlib.Path) -> None:
    _, child = chain(tmp_path)
    set_locator(
        child,
        {"parent_linkage": linkage(data_write_guid(child)), "relative_path": ".\\child.avhdx"},
    )
    cmds = [
        ["vhdx", "info", str(child)],
        ["vhdx", "check", str(child)],
        ["vhdx", "export", str(child), str(tmp_path / "x.raw")],
        ["vhdx", "merge", str(child)],
    ]
    for cmd, r in zip(cmds, vssim_batch(*cmds, timeout=30), strict=True):
        assert r.returncode in (1, 2), (cmd, r.returncode, r.stderr[-2000:])
        assert "cycle" in (r.stdout + r.stderr), (cmd, r.stdout, r.stderr[-2000:])
        assert "Traceback" not in r.stderr
        assert "memory allocation" not in r.stderr


def test_two_disks_that_are_each_others_parent_are_refused(tmp_path: pathlib.Path) -> None:
    base, child = chain(tmp_path)
    other = tmp_path / "other.avhdx"
    engine.Vhdx.create(other, disk_type="differencing", parent=base).close()
    set_locator(
        child,
        {"parent_linkage": linkage(data_write_guid(other)), "relative_path": ".\\other.avhdx"},
    )
    set_locator(
        other,
        {"parent_linkage": linkage(data_write_guid(child)), "relative_path": ".\\child.avhdx"},
    )
    r = vssim("vhdx", "info", str(child), timeout=30)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cycle" in r.stderr, r.stderr[-2000:]
    assert "other.avhdx" in r.stderr, r.stderr[-2000:]


def test_a_chain_deeper_than_the_limit_is_refused(tmp_path: pathlib.Path) -> None:
    limit = engine.VHDX_MAX_CHAIN_DEPTH
    assert limit >= 50  # a Hyper-V VM's 50 checkpoints fit
    small_disk(tmp_path / "d0.vhdx", size=4 * MiB)
    template = tmp_path / "template.avhdx"
    engine.Vhdx.create(template, disk_type="differencing", parent=tmp_path / "d0.vhdx").close()
    b = bytearray(template.read_bytes())
    # Each level: the template with its own DataWriteGuid, linked to the level above it.
    parent_guid, parent_name = data_write_guid(tmp_path / "d0.vhdx"), "d0.vhdx"
    for i in range(1, limit + 2):
        guid = uuid.uuid4()
        set_header_fields(b, data_write_guid=guid)
        set_locator_bytes(
            b, {"parent_linkage": linkage(parent_guid), "relative_path": f".\\{parent_name}"}
        )
        write_sparse(tmp_path / f"d{i}.avhdx", b)
        parent_guid, parent_name = guid, f"d{i}.avhdx"
    with engine.Vhdx.open(tmp_path / f"d{limit}.avhdx") as d:  # exactly the limit: fine
        assert d.read(0, 1) == b"\x11"
    with pytest.raises(errors.VhdxParentError, match=f"at most {limit} parents"):
        engine.Vhdx.open(tmp_path / f"d{limit + 1}.avhdx")


# --- item 11: allocations sized from the file ---------------------------------------------------


def test_sizes_from_the_file_never_abort_the_process(tmp_path: pathlib.Path) -> None:
    p = small_disk(tmp_path / "d.vhdx")
    # A pending log of 1.5 GiB (sparse) in a file that really is that long: a valid-looking
    # header field the reader must not trust with one allocation (with the interpreter's own
    # ~1 GiB it is past the child's 2 GiB address space).
    with open(p, "r+b") as f:
        f.truncate(2 << 30)
        b = bytearray(f.read(1 << 20))
        set_header_fields(b, log_guid=uuid.uuid4(), log_offset=1 << 29, log_length=3 << 29)
        f.seek(0)
        f.write(b)
    info, check = vssim_batch(["vhdx", "info", str(p)], ["vhdx", "check", str(p)])
    assert info.returncode == 2, info.stderr[-2000:]
    assert "Traceback" not in info.stderr, info.stderr[-2000:]
    assert "LogGuid" in info.stderr, info.stderr[-2000:]
    assert check.returncode == 1, check.stdout + check.stderr
    r = python(
        "from vssim import engine, errors\n"
        f"d = engine.Vhdx.create({str(tmp_path / 'e.vhdx')!r}, 1 << 30)\n"
        "try:\n"
        "    d.read(0, 1 << 62)\n"
        "except errors.InvalidArgumentError as e:\n"
        "    print('refused', e)\n"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "refused" in r.stdout, r.stderr[-2000:]


# --- item 13: check reports what open refuses ---------------------------------------------------


def test_check_reports_a_log_offset_every_open_refuses(tmp_path: pathlib.Path) -> None:
    p = small_disk(tmp_path / "d.vhdx")
    b = bytearray(p.read_bytes())
    set_header_fields(b, log_offset=1 << 50)
    p.write_bytes(b)
    with pytest.raises(errors.VhdxCorruptError, match="LogOffset"):
        engine.Vhdx.open(p)
    r = vssim("vhdx", "check", str(p))
    assert r.returncode == 1, r.stdout
    assert "LogOffset" in r.stdout


# --- unclear errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing"])
def test_a_path_that_is_not_a_file_gets_a_plain_message(tmp_path: pathlib.Path, kind: str) -> None:
    p = tmp_path / "thing"
    if kind == "directory":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
    cmds = [["vhdx", cmd, str(p)] for cmd in ("check", "info", "map")]
    for cmd, r in zip(cmds, vssim_batch(*cmds, timeout=30), strict=True):
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert str(p) in r.stderr, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        want = {"directory": "is a directory", "fifo": "not a regular file", "missing": "No such"}
        assert want[kind] in r.stderr, r.stderr
