"""Materialized mode: the modelled run with real files behind it.

How it works: :class:`MaterializedBackend` is the modelled backend (:class:`ModelClusterBackend`)
whose engine cluster also writes. Every CSV is a real copy-on-write volume
(:class:`engine.Volume`, a folder under ``DIR/csvs/``, its diff area under ``DIR/diff-areas/``);
every VM disk is a real VHDX file on it, created with the model's geometry. Every folder and file
is named by :mod:`vssim.scale.materialized_names` (unique by construction, collisions refused).
The engine applies each guest write the model generates to the real file too, with data that
changes on every write, through the volume — so the real volume copies chunks exactly when the
model says it does (the invariant :func:`compare` checks). A snapshot of a CSV is a real volume
snapshot taken at the same instant.

Backups are real files in ``DIR/backups/<vm>/disk<j>/`` (:mod:`vssim.scale.backup_store`: each
written under a staged name, renamed when its VM's set stands, then listed in the manifest):

* a **full** (or selective, or copy) backup copies each VHDX file whole from the snapshot, as a
  file-level Hyper-V backup does, then brings the copy to a consistent state (its metadata log is
  replayed, the auto-recovery step); a fixed disk's copy is converted to a dynamic VHDX;
* an **incremental** backup reads the blocks the disk's change tracking recorded since the
  previous backup from the snapshot and writes them into a differencing VHDX whose parent is that
  previous backup, so the chain full → incremental → … restores the disk at any backup.

Every backup is verified at once: the content digest of the disk as the snapshot shows it
(``Vhdx.content_digest``: BLAKE3 over its 64 KiB leaves, all-zero leaves as runs, so it reads only
where data may be) equals that of the disk the backup chain restores. A set that fails leaves no
backup: its files are removed when the set ends (no partial backups), and ``manifest.json`` lists
only what stands; a run that ends early (an error, Ctrl-C) removes what it had not committed
(:meth:`abort`). Backup files are written without a sync at each VHDX flush: each is synced once,
whole, when it takes its final name (:func:`vssim.scale.backup_store.publish`).
:func:`restore` rebuilds a VM's disk from its chain, reading only the store's own files;
:func:`qemu_img_check` runs ``qemu-img check`` on every backup file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from vssim import engine
from vssim.errors import MaterializeError, VhdxParentError, VssimError
from vssim.scale.backup_store import (
    BACKUPS_SCHEMA,
    STAGED,
    BackupFile,
    BackupStore,
    chain_of,
    leftovers,
    publish_new,
    raw_staged,
    read_manifest,
    staged,
)
from vssim.scale.materialized_names import MANIFEST, MaterializedNames
from vssim.scale.model_cluster import ModelClusterBackend, Report

if TYPE_CHECKING:
    from collections.abc import Callable

    from vssim.scenario import Scenario

U64 = npt.NDArray[np.uint64]
__all__ = [
    "BACKUPS_SCHEMA",
    "MANIFEST",
    "QEMU_NO_PARENTS",
    "BackupFile",
    "BackupStore",
    "MaterializeError",
    "MaterializedBackend",
    "Restored",
    "chain_of",
    "qemu_img_check",
    "read_manifest",
    "restore",
]


def _check_new_folder(root: Path) -> None:
    """A materialized run starts in a new or empty folder, and changes nothing otherwise."""
    if not root.exists():
        return
    if not root.is_dir():
        raise MaterializeError(f"{root}: not a folder (the materialize folder is new or empty)")
    found = sorted(p.name for p in root.iterdir())
    if found:
        store = root / "backups"
        note = ""
        if store.is_dir():
            n = sum(1 for _, _, files in os.walk(store) for f in files if f.endswith(STAGED))
            note = f"; it holds an earlier run's backups{f' ({n} staged files)' if n else ''}"
        raise MaterializeError(
            f"{root}: the materialize folder must be new or empty (found {', '.join(found[:3])}"
            f"{' …' if len(found) > 3 else ''}{note}; nothing was changed)"
        )


class MaterializedBackend(ModelClusterBackend):
    """The modelled backend with real volumes, real VHDX disks and real backup files."""

    materialized = True
    #: Real files need every write: the exact engine's cluster (never the estimate's).
    model: engine.ModelCluster

    def __init__(
        self, scenario: Scenario, root: str | Path, clock: Callable[[], float] | None = None
    ) -> None:
        self.root = Path(root)
        _check_new_folder(self.root)
        # Every name first: a collision is refused before anything is made.
        self.names = MaterializedNames(scenario)
        super().__init__(scenario, clock)
        self.closed = False
        self.volumes: dict[str, engine.Volume] = {}
        #: Engine disk id → its path on its CSV's volume.
        self.disk_files: dict[int, str] = {}
        self.store = BackupStore(self.root / "backups", self.names)
        try:
            for c in scenario.csvs:
                d = self.names.csv_dir(c)
                (self.root / "csvs" / d).mkdir(parents=True, exist_ok=True)
                vol = engine.Volume(
                    self.root / "csvs" / d,
                    self.root / "diff-areas" / d,
                    diff_area_max_bytes=c.diff_area_limit,
                )
                self.volumes[c.name] = vol
                self.model.materialize_csv(self.csv_id[c.name], vol)
            for vm in scenario.vms:
                for j in range(len(vm.disks)):
                    rel = self.names.disk_file(vm, j)
                    disk_id = self.disks[vm.name][j]
                    self.model.materialize_vm(disk_id, rel)
                    self.disk_files[disk_id] = rel
        except BaseException:
            self.abort()
            raise
        n = self.model.vm_count
        self.real_totals: dict[str, U64] = {
            k: np.zeros(n, dtype=np.uint64) for k in ("real_chunks_copied", "real_file_bytes")
        }
        self.real_deleted: list[tuple[str, int, float]] = []
        self._invariant = pl.DataFrame()

    # --- the engine's windows -------------------------------------------------------------------

    def _peek(
        self, csv: int, t0: float, t1: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]] | None:
        # Every window writes the real disks (a write session each): their windows stay as the
        # protocol cuts them.
        return None

    def _on_window(self, r: Report) -> None:
        for k, acc in self.real_totals.items():
            acc += r[k].astype(np.uint64, copy=False)
        for csv_i, handle, when in zip(
            r["real_deleted_csv"].tolist(),
            r["real_deleted_snapshot"].tolist(),
            r["real_deleted_time"].tolist(),
            strict=True,
        ):
            self.real_deleted.append((self.scenario.csvs[int(csv_i)].name, int(handle), when))

    def real_vm_total(self, counter: str, vm: str) -> int:
        """A VM's real counter up to now (its CSV brought to the clock's time first)."""
        self._sync_vm(vm)
        t = self.real_totals[counter]
        return int(sum(int(t[d]) for d in self.disks[vm]))

    # --- backups ---------------------------------------------------------------------------------

    def write_backup(
        self,
        *,
        backup: int,
        job: str,
        vm: str,
        csv: str,
        handle: int,
        kind: str,
        snapshot_s: float,
        extents: list[tuple[U64, U64]] | None,
        modelled: list[int],
    ) -> int:
        """Back up every disk of ``vm`` from the model snapshot ``handle`` of ``csv``: a whole
        file copy, or (``extents`` given, one per disk) the changed runs into a differencing child
        of the disk's previous backup. Returns the bytes read from the snapshot; raises
        :class:`engine.SnapshotDeletedError` when volsnap has deleted the snapshot (only this
        CSV is brought to the clock's time: its writes alone can delete its snapshot)."""
        self.sync((csv,))
        vol = self.volumes[csv]
        real_id = self.model.real_snapshot_id(self.csv_id[csv], handle)
        snap = vol.snapshot(real_id)
        total = 0
        for j, disk_id in enumerate(self.disks[vm]):
            view = snap.open(self.disk_files[disk_id])
            source = engine.Vhdx.open(view)
            try:
                parent = self.store.parent_of(vm, j)
                if extents is not None and parent is not None:
                    seq, rel = self.store.new_path(vm, j, "incremental")
                    read = self._incremental(source, extents[j], parent, rel)
                    this_kind, parent_file = "incremental", parent.file
                else:
                    this_kind = "copy" if kind == "copy" else "full"
                    seq, rel = self.store.new_path(vm, j, this_kind)
                    read = self._full(view, rel)
                    parent_file = None
                # The disk as the snapshot shows it and as its chain restores it, read side by
                # side (each digest as computed alone; a leaf they share is hashed once).
                with engine.Vhdx.open(staged(self.store.root / rel)) as restored:
                    at_snapshot, digest = source.content_digests_with(restored)
            finally:
                source.close()
            self.store.add(
                BackupFile(
                    backup,
                    job,
                    vm,
                    j,
                    seq,
                    this_kind,
                    rel,
                    parent_file,
                    snapshot_s,
                    read,
                    modelled[j],
                    at_snapshot,
                    digest,
                )
            )
            total += read
        return total

    def _full(self, view: engine.SnapshotView, rel: str) -> int:
        """Copies the VHDX file whole from the snapshot (its holes stay holes, the data goes file
        to file in the kernel; a backup still reads the file's whole length), then makes the copy
        consistent (both under staged names: the file takes its name in the store when its VM's
        set stands)."""
        dest = staged(self.store.root / rel)
        scratch = raw_staged(self.store.root / rel)
        scratch.unlink(missing_ok=True)
        n = view.copy_to(scratch)
        # Auto-recovery: opening the copy writable replays the metadata log the live writer left
        # (unsynced: the file is synced once, whole, when it takes its name in the store).
        with engine.Vhdx.open(scratch, writable=True, durable=False) as v:
            fixed = v.disk_type == "fixed"
        if fixed:
            with engine.Vhdx.open(scratch) as v:
                v.copy_to(dest)
            scratch.unlink()
        else:
            scratch.replace(dest)
        return n

    def _incremental(
        self, source: engine.Vhdx, runs: tuple[U64, U64], parent: BackupFile, rel: str
    ) -> int:
        """The changed runs into a differencing child of ``parent``, under its staged name."""
        dest = staged(self.store.root / rel)
        with engine.Vhdx.create(
            dest,
            source.virtual_size,
            disk_type="differencing",
            parent=self.store.root / parent.file,
            durable=False,
        ) as child:
            read = child.copy_from(source, runs[0], runs[1])
        return read

    def settle(self, vm: str, ok: bool) -> None:
        self.store.settle(vm, ok)

    def commit(self) -> None:
        """A snapshot set ended: the manifest lists what its VMs' settled backups committed."""
        self.store.save()

    # --- the end -------------------------------------------------------------------------------

    def finish(self, check: bool = True) -> None:
        """Closes the disks and volumes, writes the manifest, and (``check``) runs ``qemu-img
        check`` on every backup file."""
        if self.closed:
            return
        self._invariant = self.invariant()
        self.model.close_materialized()
        for vol in self.volumes.values():
            vol.close()
        self.store.save()
        if check:
            for e in self.store.entries:
                if e.committed:
                    # An incremental is a differencing file: QEMU's vhdx driver cannot open it.
                    e.qemu_img_check = (
                        QEMU_NO_PARENTS
                        if e.kind == "incremental"
                        else qemu_img_check(self.store.root / e.file)
                    )
            self.store.save()
        self.closed = True

    def abort(self) -> None:
        """The run ends early (an error, a full disk, Ctrl-C): the backup files it had not
        committed go, disks and volumes are closed; the manifest stays as last written. The
        first error is the caller's to report: closing what it left half done may fail too."""
        if self.closed:
            return
        self.closed = True
        self.store.abort()
        with contextlib.suppress(VssimError, OSError):
            self.model.close_materialized()
        for vol in self.volumes.values():
            with contextlib.suppress(VssimError, OSError):
                vol.close()

    def invariant(self) -> pl.DataFrame:
        """Per CSV: the model's copy-on-write figures beside what the real volume did."""
        if self.closed:
            return self._invariant
        rows: dict[str, list[Any]] = {
            k: []
            for k in (
                "csv",
                "chunks_copied",
                "real_chunks_copied",
                "peak_diff_area_bytes",
                "real_peak_diff_area_bytes",
            )
        }
        for c in self.scenario.csvs:
            cid = self.csv_id[c.name]
            rows["csv"].append(c.name)
            rows["chunks_copied"].append(self.model.total_chunks_copied(cid))
            rows["real_chunks_copied"].append(self.model.real_total_chunks_copied(cid))
            rows["peak_diff_area_bytes"].append(self.model.peak_diff_area_bytes(cid))
            rows["real_peak_diff_area_bytes"].append(self.model.real_peak_diff_area_bytes(cid))
        return pl.DataFrame(rows)


#: The ``qemu_img_check`` column of a differencing (incremental) backup file.
QEMU_NO_PARENTS = "not run: qemu-img cannot open differencing VHDX (no parent support)"


def qemu_img_check(path: Path) -> str:
    """``qemu-img check`` of one file: "ok", the tool's complaint, or "qemu-img not found".
    (QEMU's vhdx driver refuses differencing files; restore flattens a chain into a dynamic
    file it does check.)"""
    exe = shutil.which("qemu-img")
    if exe is None:
        return "qemu-img not found"
    done = subprocess.run(
        [exe, "check", "-f", "vhdx", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        return "ok"
    return (
        (done.stdout + done.stderr).strip().splitlines()[-1]
        if done.stdout or done.stderr
        else (f"exit {done.returncode}")
    )


# --- restore ------------------------------------------------------------------------------------


@dataclass
class Restored:
    vm: str
    disk: int
    backup: BackupFile
    chain: list[BackupFile]
    out: Path
    digest: str
    #: Files of the store that are not backups it lists (an interrupted run's): never read.
    leftovers: list[Path] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.digest == self.backup.digest_at_snapshot


class StoreParentError(MaterializeError, VhdxParentError):
    """A file of a backup chain is not where the store says, inside the store: a restore reads
    the store's own files only (a copied store never reads the original through the absolute
    paths its differencing files' locators also hold). Nothing was written."""

    def __init__(self, file: Path, expected: str, found: str) -> None:
        self.file = str(file)
        self.structure = "backup chain"
        self.field = "parent"
        self.offset = 0
        self.expected = expected
        self.found = found
        super().__init__(f"{file}: expected {expected}, found {found}")


def _open_chain(root: Path, chain: list[BackupFile]) -> engine.Vhdx:
    """The newest file of ``chain``, opened read-only with every file of the chain found inside
    the store ``root`` — each listed file present there, and each layer's parent the chain's
    previous file — so nothing outside the store is read for data."""
    base = root.resolve()
    paths: list[Path] = []
    for e in chain:
        p = (root / e.file).resolve()
        if not p.is_relative_to(base) or not p.is_file():
            raise StoreParentError(
                root / e.file, "a backup file of the store", "no such file inside the store"
            )
        paths.append(p)
    for parent, child in itertools.pairwise(paths):
        with engine.Vhdx.open(child, parent_root=base) as v:
            found = v.parent_path
        if found is None or Path(found).resolve() != parent:
            raise StoreParentError(child, f"its parent {parent}", f"{found}")
    # The engine looks for parents under ``parent_root`` only (the VHDX parent policy).
    return engine.Vhdx.open(paths[-1], parent_root=base)


def _vm_named(root: Path, entries: list[BackupFile], vm: str, disk: int) -> str:
    """The VM ``vm`` names in the store: its name (exactly, else case folded, as Windows
    compares), or its folder's name."""
    names = sorted({e.vm for e in entries})
    if vm in names:
        return vm
    folded = [n for n in names if n.casefold() == vm.casefold()]
    folder = sorted({e.vm for e in entries if e.file.split("/", 1)[0] == vm})
    found = folded or folder
    if len(found) == 1:
        return found[0]
    if found:
        raise MaterializeError(f"{root}: {vm!r} names several VMs ({', '.join(found)}): give one")
    raise MaterializeError(
        f"{root}: no backup of {vm} disk {disk} (VMs with backups: "
        f"{', '.join(names[:8])}{' …' if len(names) > 8 else ''})"
    )


def restore(
    store: str | Path,
    vm: str,
    out: str | Path,
    *,
    disk: int = 0,
    seq: int | None = None,
) -> Restored:
    """Rebuilds disk ``disk`` of ``vm`` as it was at backup ``seq`` (default: the latest) into a
    new dynamic VHDX ``out``, from its chain in the backup store ``store`` (a materialized run's
    ``DIR/backups``, or ``DIR`` itself). The result says whether its digest equals the disk's at
    the snapshot instant, and lists the store's files that are not its backups (an interrupted
    run's; never read). ``out`` appears only complete (written aside, then linked)."""
    root = Path(store)
    if not (root / MANIFEST).exists() and (root / "backups" / MANIFEST).exists():
        root = root / "backups"
    entries = read_manifest(root)
    name = _vm_named(root, entries, vm, disk)
    mine = [e for e in entries if e.vm == name and e.disk == disk]
    if not mine:
        disks = sorted({e.disk for e in entries if e.vm == name})
        raise MaterializeError(
            f"{root}: no backup of {name} disk {disk} (its disks: "
            f"{', '.join(str(d) for d in disks)})"
        )
    if seq is None:
        target = max(mine, key=lambda e: e.seq)
    else:
        found = [e for e in mine if e.seq == seq]
        if not found:
            raise MaterializeError(
                f"{name} disk {disk}: no backup {seq} (have {', '.join(str(e.seq) for e in mine)})"
            )
        target = found[0]
    chain = chain_of(entries, target)
    dest = Path(out)
    if dest.exists():
        raise MaterializeError(f"{dest}: exists (restore never overwrites)")
    aside = staged(dest)
    if aside.exists():
        raise MaterializeError(f"{aside}: exists (an earlier restore's? remove it first)")
    try:
        with _open_chain(root, chain) as v:
            v.copy_to(aside)
        with engine.Vhdx.open(aside) as r:
            digest = digest_like(r, target.digest_at_snapshot)
        publish_new(aside, dest)
    finally:
        aside.unlink(missing_ok=True)
    return Restored(name, disk, target, chain, dest, digest, leftovers(root, entries))


def digest_like(disk: engine.Vhdx, reference: str) -> str:
    """``disk``'s digest in the scheme of ``reference``: the content digest (named by its prefix),
    or the full BLAKE3 of the virtual disk that stores before it recorded."""
    if reference.startswith(engine.CONTENT_DIGEST_SCHEME + ":"):
        return disk.content_digest()
    return disk.digest()
