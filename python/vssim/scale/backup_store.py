"""The backup store of a materialized run (``DIR/backups``): its files, how each is staged and
committed, and the manifest that lists what stands.

How a backup file comes to stand, each step durable before the next:

1. it is written under its staged name, ``<file>.staged`` (a full's raw copy, before its log is
   replayed or a fixed disk converted, is ``<file>.raw.staged``): nothing reads a staged file as a
   backup;
2. it is verified (what it restores, against the disk at its snapshot) and fsynced;
3. when its VM's part of the snapshot set stands (:meth:`BackupStore.settle`) it is renamed to
   its final name and its folder fsynced; a VM whose part failed has its staged files removed;
4. after each snapshot set the manifest is rewritten whole (:meth:`BackupStore.save`:
   ``manifest.json.staged``, fsync, rename, fsync of the folder), listing the committed files.

So a file under its final name is complete and verified, and the manifest lists only such files.
An interrupted run (a kill, a full disk, Ctrl-C) leaves staged files — removed on the way out by
:meth:`BackupStore.abort` when the process lives to do it, with any file renamed since the last
manifest — and, killed between steps 3 and 4, final files the manifest does not list.
:func:`leftovers` finds both; a restore reads only what the manifest lists and reports the rest.
"""

from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from vssim.errors import MaterializeError
from vssim.scale.materialized_names import MANIFEST, MaterializedNames

#: The suffix of every file not yet part of the store (a backup being written, the manifest being
#: rewritten).
STAGED = ".staged"
#: The manifest's format version.
MANIFEST_VERSION = 1
#: A manifest larger than this is refused unread (model choice: 256 MiB holds about a million
#: entries, far past what a materialized run on one machine writes).
MANIFEST_MAX_BYTES = 256 << 20
#: Backup kinds a manifest may hold.
KINDS = ("full", "incremental", "copy")


@dataclass
class BackupFile:
    """One disk of one VM in one backup: a VHDX file of the store."""

    backup: int
    job: str
    vm: str
    disk: int
    seq: int
    #: "full", "incremental" or "copy".
    kind: str
    #: Paths relative to the store's root.
    file: str
    parent: str | None
    snapshot_s: float
    #: Bytes read from the snapshot, and what the model planned to read.
    bytes_read: int
    modelled_bytes: int
    digest_at_snapshot: str
    digest_restored: str
    committed: bool = False
    qemu_img_check: str | None = None

    @property
    def verified(self) -> bool:
        return self.digest_at_snapshot == self.digest_restored


S, INT, F, B = pl.Utf8, pl.Int64, pl.Float64, pl.Boolean
#: The ``backups`` table of a materialized run: one row per backup file written.
BACKUPS_SCHEMA: dict[str, Any] = {
    "backup": INT,
    "job": S,
    "vm": S,
    "disk": INT,
    "seq": INT,
    "kind": S,
    "file": S,
    "parent": S,
    "snapshot_s": F,
    "bytes_read": INT,
    "modelled_bytes": INT,
    "digest_at_snapshot": S,
    "digest_restored": S,
    "verified": B,
    "committed": B,
    "qemu_img_check": S,
}


def staged(path: Path) -> Path:
    """Where the file ``path`` is written before it stands."""
    return path.with_name(path.name + STAGED)


def raw_staged(path: Path) -> Path:
    """Where a full backup's raw copy of ``path`` sits before it is made consistent."""
    return path.with_name(path.name + ".raw" + STAGED)


def fsync_path(path: Path) -> None:
    """Makes ``path`` (a file, or a folder's entries) durable."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(src: Path, dest: Path) -> None:
    """Renames the complete file ``src`` to ``dest`` durably: its data, then the name."""
    fsync_path(src)
    os.replace(src, dest)
    fsync_path(dest.parent)


def publish_new(src: Path, dest: Path) -> None:
    """Gives the complete file ``src`` the name ``dest`` durably, refusing to replace a file
    that took that name meanwhile (``src`` keeps its name: the caller removes it)."""
    fsync_path(src)
    try:
        os.link(src, dest)
    except FileExistsError:
        raise MaterializeError(f"{dest}: exists (never overwritten)") from None
    fsync_path(dest.parent)


@dataclass
class BackupStore:
    """The backup files of a materialized run and their chains (see the module doc)."""

    root: Path
    names: MaterializedNames
    entries: list[BackupFile] = field(default_factory=list)
    _seq: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Per (VM, disk): the committed files of its current chain, full first.
    chains: dict[tuple[str, int], list[BackupFile]] = field(default_factory=dict)
    pending: dict[str, list[BackupFile]] = field(default_factory=dict)
    #: Files renamed to their final names since the manifest was last written.
    _unsaved: list[Path] = field(default_factory=list)
    #: Backup files handed out and not yet settled (their staged names may exist).
    _open: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def new_path(self, vm: str, disk: int, kind: str) -> tuple[int, str]:
        """The next backup file of ``vm``'s disk: its number in the disk's history and its path
        relative to the store (its folder made)."""
        seq = self._seq.get((vm, disk), 0) + 1
        self._seq[(vm, disk)] = seq
        rel = self.names.backup_file(vm, disk, seq, kind)
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        self._open.add(rel)
        return seq, rel

    def parent_of(self, vm: str, disk: int) -> BackupFile | None:
        chain = self.chains.get((vm, disk))
        return chain[-1] if chain else None

    def add(self, f: BackupFile) -> None:
        """A written, verified backup file under its staged name, pending its VM's set."""
        self.entries.append(f)
        self.pending.setdefault(f.vm, []).append(f)

    def settle(self, vm: str, ok: bool) -> None:
        """The VM's backup in its set stands (``ok``: its files take their final names) or is
        void (its staged files are removed). The manifest follows at :meth:`save`."""
        for f in self.pending.pop(vm, []):
            final = self.root / f.file
            self._open.discard(f.file)
            if not ok:
                staged(final).unlink(missing_ok=True)
                continue
            publish(staged(final), final)
            self._unsaved.append(final)
            f.committed = True
            if f.kind == "full":
                self.chains[(f.vm, f.disk)] = [f]
            elif f.kind == "incremental":
                self.chains.setdefault((f.vm, f.disk), []).append(f)

    def save(self) -> Path:
        """Writes the manifest of the committed files, atomically and durably."""
        p = self.root / MANIFEST
        rows = [asdict(e) for e in self.entries if e.committed]
        tmp = staged(p)
        tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "backups": rows}, indent=1))
        publish(tmp, p)
        self._unsaved.clear()
        return p

    def abort(self) -> None:
        """The run ends early: every staged file goes, and every file renamed since the manifest
        was last written (the manifest on disk stays what it was: nothing is committed half)."""
        for rel in sorted(self._open):
            final = self.root / rel
            staged(final).unlink(missing_ok=True)
            raw_staged(final).unlink(missing_ok=True)
        self._open.clear()
        self.pending.clear()
        for p in self._unsaved:
            p.unlink(missing_ok=True)
        self._unsaved.clear()
        staged(self.root / MANIFEST).unlink(missing_ok=True)

    def frame(self) -> pl.DataFrame:
        cols = {k: [getattr(e, k) for e in self.entries] for k in BACKUPS_SCHEMA if k != "verified"}
        cols["verified"] = [e.verified for e in self.entries]
        return pl.DataFrame(cols, schema=BACKUPS_SCHEMA)


# --- reading a store -----------------------------------------------------------------------------


def _json_types(hint: object) -> tuple[type, ...]:
    """The JSON value types a field of type ``hint`` takes (a float field takes an integer)."""
    args = typing.get_args(hint) or (hint,)
    out = tuple(t for t in args if isinstance(t, type))
    return (*out, int) if float in out else out


_HINTS = typing.get_type_hints(BackupFile)
#: The JSON types of each manifest field, from :class:`BackupFile`'s annotations.
_FIELD_TYPES = {f.name: _json_types(_HINTS[f.name]) for f in fields(BackupFile)}
_REQUIRED = {f.name for f in fields(BackupFile) if f.default is MISSING}


def _store_path(value: str) -> bool:
    """A path a manifest may name: relative, inside the store, POSIX separators."""
    p = PurePosixPath(value)
    return (
        bool(value)
        and not p.is_absolute()
        and "\\" not in value
        and "\0" not in value
        and all(part not in ("..", ".", "") for part in value.split("/"))
    )


def _entry(p: Path, i: int, row: object) -> BackupFile:
    where = f"{p}: backups[{i}]"
    if not isinstance(row, dict):
        raise MaterializeError(f"{where}: expected an object, found {type(row).__name__}")
    unknown = sorted(set(row) - set(_FIELD_TYPES))
    if unknown:
        raise MaterializeError(f"{where}: unknown field {unknown[0]!r}")
    missing = sorted(_REQUIRED - set(row))
    if missing:
        raise MaterializeError(f"{where}: lacks the field {missing[0]!r}")
    for k, v in row.items():
        types = _FIELD_TYPES[k]
        wrong = not isinstance(v, types) or (isinstance(v, bool) and bool not in types)
        if wrong:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise MaterializeError(f"{where}.{k} = {v!r}: expected {names}")
    for k in ("backup", "disk", "seq", "bytes_read", "modelled_bytes"):
        if row[k] < 0:
            raise MaterializeError(f"{where}.{k} = {row[k]}: expected >= 0")
    if not math.isfinite(row["snapshot_s"]):
        raise MaterializeError(f"{where}.snapshot_s = {row['snapshot_s']}: expected a finite time")
    if row["kind"] not in KINDS:
        raise MaterializeError(f"{where}.kind = {row['kind']!r}: expected one of {KINDS}")
    for k in ("file", "parent"):
        v = row.get(k)
        if v is not None and not _store_path(v):
            raise MaterializeError(
                f"{where}.{k} = {v!r}: expected a path inside the store (relative, no '..')"
            )
    if (row["kind"] == "incremental") != (row["parent"] is not None):
        raise MaterializeError(f"{where}.parent: an incremental, and only one, has a parent")
    return BackupFile(**row)


def read_manifest(store: Path) -> list[BackupFile]:
    """The committed backup files the store's manifest lists, every field checked (type, range,
    paths inside the store)."""
    p = store / MANIFEST
    try:
        with open(p, "rb") as f:
            data = f.read(MANIFEST_MAX_BYTES + 1)
    except FileNotFoundError:
        raise MaterializeError(
            f"{p}: no manifest (is {store} a materialized run's backups?)"
        ) from None
    except IsADirectoryError:
        raise MaterializeError(f"{p}: a folder, not a manifest") from None
    if len(data) > MANIFEST_MAX_BYTES:
        raise MaterializeError(f"{p}: larger than {MANIFEST_MAX_BYTES} bytes; not read")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MaterializeError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise MaterializeError(f"{p}: not JSON ({e})") from None
    except RecursionError:
        raise MaterializeError(f"{p}: JSON nested too deeply") from None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != MANIFEST_VERSION
        or not isinstance(doc.get("backups"), list)
    ):
        raise MaterializeError(f"{p}: expected {{'version': 1, 'backups': [...]}}")
    out = [_entry(p, i, row) for i, row in enumerate(doc["backups"])]
    seen: dict[str, int] = {}
    for i, entry in enumerate(out):
        if entry.file in seen:
            raise MaterializeError(
                f"{p}: backups[{i}].file = {entry.file!r}: already listed at "
                f"backups[{seen[entry.file]}]"
            )
        seen[entry.file] = i
    return out


def chain_of(entries: list[BackupFile], target: BackupFile) -> list[BackupFile]:
    """The files ``target`` restores from: its full backup, then each incremental up to it (a
    parent missing from the manifest, or a loop of parents, is refused)."""
    by_file = {e.file: e for e in entries}
    chain = [target]
    seen = {target.file}
    while chain[-1].parent is not None:
        parent = by_file.get(chain[-1].parent)
        if parent is None:
            raise MaterializeError(
                f"{chain[-1].file}: its parent {chain[-1].parent} is not in the manifest"
            )
        if parent.file in seen:
            raise MaterializeError(f"{chain[-1].file}: its parents loop back to {parent.file}")
        seen.add(parent.file)
        chain.append(parent)
    return chain[::-1]


def leftovers(store: Path, entries: list[BackupFile]) -> list[Path]:
    """Files of the store that are not backups it stands by: staged files an interrupted run
    left (ours, ``*.staged``, and the engine's own while it writes a VHDX), and files under final
    names the manifest does not list (a run killed between a set's renames and the manifest's
    update)."""
    listed = {e.file for e in entries} | {MANIFEST}
    out = []
    for folder, _, files in os.walk(store):
        for name in files:
            p = Path(folder, name)
            if p.relative_to(store).as_posix() not in listed:
                out.append(p)
    return sorted(out)
