"""Materialized mode: the modelled run with real files behind it.

How it works: :class:`MaterializedBackend` is the modelled backend (:class:`ModelClusterBackend`)
whose engine cluster also writes. Every CSV is a real copy-on-write volume
(:class:`engine.Volume`, a folder ``DIR/csvs/<csv>``, diff area in ``DIR/diff-areas/<csv>``);
every VM disk is a real VHDX file on it (``<vm>/<disk file>``), created with the model's geometry.
The engine applies each guest write the model generates to the real file too, with data that
changes on every write, through the volume — so the real volume copies chunks exactly when the
model says it does (the invariant :func:`compare` checks). A snapshot of a CSV is a real volume
snapshot taken at the same instant.

Backups are real files in ``DIR/backups/<vm>/disk<j>/`` (:class:`BackupStore`):

* a **full** (or selective, or copy) backup copies each VHDX file whole from the snapshot, as a
  file-level Hyper-V backup does, then brings the copy to a consistent state (its metadata log is
  replayed, the auto-recovery step); a fixed disk's copy is converted to a dynamic VHDX;
* an **incremental** backup reads the blocks the disk's change tracking recorded since the
  previous backup from the snapshot and writes them into a differencing VHDX whose parent is that
  previous backup, so the chain full → incremental → … restores the disk at any backup.

Every backup is verified at once: the BLAKE3 digest of the disk as the snapshot shows it equals
the digest of the disk the backup chain restores. A set that fails leaves no backup: its files are
removed when the set ends (no partial backups), and ``manifest.json`` lists only what stands.
:func:`restore` rebuilds a VM's disk from its chain; :func:`qemu_img_check` runs ``qemu-img
check`` on every backup file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from vssim import engine
from vssim.errors import VssimError
from vssim.scale.model_cluster import ModelClusterBackend

if TYPE_CHECKING:
    from collections.abc import Callable

    from vssim.scenario import Scenario

MIB = 1 << 20
#: Bytes per read of a backup copy.
COPY_PIECE = 8 * MIB
MANIFEST = "manifest.json"
U64 = npt.NDArray[np.uint64]


class MaterializeError(VssimError):
    """A materialized run could not set up or keep its files."""


def safe_name(name: str) -> str:
    """A folder name for a CSV or VM name (cluster names hold spaces, backslashes, colons)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return s or "_"


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


@dataclass
class BackupStore:
    """The backup files of a materialized run and their chains."""

    root: Path
    entries: list[BackupFile] = field(default_factory=list)
    _seq: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Per (VM, disk): the committed files of its current chain, full first.
    chains: dict[tuple[str, int], list[BackupFile]] = field(default_factory=dict)
    pending: dict[str, list[BackupFile]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def new_path(self, vm: str, disk: int, kind: str) -> tuple[int, str]:
        seq = self._seq.get((vm, disk), 0) + 1
        self._seq[(vm, disk)] = seq
        rel = f"{safe_name(vm)}/disk{disk}/{seq:04d}-{kind}.vhdx"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        return seq, rel

    def parent_of(self, vm: str, disk: int) -> BackupFile | None:
        chain = self.chains.get((vm, disk))
        return chain[-1] if chain else None

    def add(self, f: BackupFile) -> None:
        self.entries.append(f)
        self.pending.setdefault(f.vm, []).append(f)

    def settle(self, vm: str, ok: bool) -> None:
        """The VM's backup in its set stands (``ok``) or is void: its files are removed."""
        for f in self.pending.pop(vm, []):
            if ok:
                f.committed = True
                if f.kind == "full":
                    self.chains[(f.vm, f.disk)] = [f]
                elif f.kind == "incremental":
                    self.chains.setdefault((f.vm, f.disk), []).append(f)
            else:
                (self.root / f.file).unlink(missing_ok=True)

    def save(self) -> Path:
        p = self.root / MANIFEST
        tmp = p.with_suffix(".tmp")
        rows = [asdict(e) for e in self.entries if e.committed]
        tmp.write_text(json.dumps({"version": 1, "backups": rows}, indent=1))
        tmp.replace(p)
        return p

    def frame(self) -> pl.DataFrame:
        cols = {k: [getattr(e, k) for e in self.entries] for k in BACKUPS_SCHEMA if k != "verified"}
        cols["verified"] = [e.verified for e in self.entries]
        return pl.DataFrame(cols, schema=BACKUPS_SCHEMA)


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


#: Zero runs of this many bytes stay holes in a backup copy.
HOLE = 64 * 1024


def write_sparse(fd: int, offset: int, data: bytes) -> None:
    """Writes ``data`` at ``offset`` except its all-zero 64 KiB pieces, which stay holes (the
    sparse parts of a dynamic VHDX stay sparse in its copy)."""
    whole = len(data) // HOLE * HOLE
    if whole:
        rows = np.frombuffer(data, dtype=np.uint64, count=whole // 8).reshape(-1, HOLE // 8)
        nonzero = rows.any(axis=1)
        # Runs of non-zero pieces: one write each.
        edges = np.flatnonzero(np.diff(np.concatenate(([False], nonzero, [False])).astype(np.int8)))
        view = memoryview(data)
        for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            os.pwrite(fd, view[a * HOLE : b * HOLE], offset + a * HOLE)
    tail = data[whole:]
    if tail.strip(b"\0"):
        os.pwrite(fd, tail, offset + whole)


class MaterializedBackend(ModelClusterBackend):
    """The modelled backend with real volumes, real VHDX disks and real backup files."""

    materialized = True

    def __init__(
        self, scenario: Scenario, root: str | Path, clock: Callable[[], float] | None = None
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            raise MaterializeError(
                f"{self.root}: the materialize folder must be new or empty (found files in it; "
                "nothing was changed)"
            )
        super().__init__(scenario, clock)
        self.volumes: dict[str, engine.Volume] = {}
        for c in scenario.csvs:
            (self.root / "csvs" / safe_name(c.name)).mkdir(parents=True, exist_ok=True)
            vol = engine.Volume(
                self.root / "csvs" / safe_name(c.name),
                self.root / "diff-areas" / safe_name(c.name),
                diff_area_max_bytes=c.diff_area_limit,
            )
            self.volumes[c.name] = vol
            self.model.materialize_csv(self.csv_id[c.name], vol)
        #: Engine disk id → (path on its CSV's volume, virtual size).
        self.disk_files: dict[int, str] = {}
        for vm in scenario.vms:
            for j, d in enumerate(vm.disks):
                rel = f"{safe_name(vm.name)}/{safe_name(d.file)}"
                disk_id = self.disks[vm.name][j]
                self.model.materialize_vm(disk_id, rel)
                self.disk_files[disk_id] = rel
        n = self.model.vm_count
        self.real_totals: dict[str, U64] = {
            k: np.zeros(n, dtype=np.uint64) for k in ("real_chunks_copied", "real_file_bytes")
        }
        self.real_deleted: list[tuple[str, int, float]] = []
        self.store = BackupStore(self.root / "backups")
        self.closed = False
        self._invariant = pl.DataFrame()

    # --- the engine's windows -------------------------------------------------------------------

    def _on_window(self, r: dict[str, npt.NDArray[np.uint64 | np.float64]]) -> None:
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
                at_snapshot = source.digest()
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
            finally:
                source.close()
            with engine.Vhdx.open(self.store.root / rel) as restored:
                digest = restored.digest()
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
        """Copies the VHDX file whole from the snapshot, then makes the copy consistent."""
        dest = self.store.root / rel
        staged = dest.with_suffix(".copying")
        n = view.len()
        with open(staged, "wb") as out:
            fd = out.fileno()
            for off in range(0, n, COPY_PIECE):
                piece = view.read(off, min(COPY_PIECE, n - off))
                write_sparse(fd, off, piece)
            out.truncate(n)
        # Auto-recovery: opening the copy writable replays the metadata log the live writer left.
        with engine.Vhdx.open(staged, writable=True) as v:
            fixed = v.disk_type == "fixed"
        if fixed:
            with engine.Vhdx.open(staged) as v:
                v.copy_to(dest)
            staged.unlink()
        else:
            staged.replace(dest)
        return n

    def _incremental(
        self, source: engine.Vhdx, runs: tuple[U64, U64], parent: BackupFile, rel: str
    ) -> int:
        dest = self.store.root / rel
        read = 0
        with engine.Vhdx.create(
            dest,
            source.virtual_size,
            disk_type="differencing",
            parent=self.store.root / parent.file,
        ) as child:
            for off, length in zip(runs[0].tolist(), runs[1].tolist(), strict=True):
                end = off + length
                while off < end:
                    n = min(COPY_PIECE, end - off)
                    child.write(off, source.read(off, n))
                    read += n
                    off += n
        return read

    def settle(self, vm: str, ok: bool) -> None:
        self.store.settle(vm, ok)

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

    @property
    def verified(self) -> bool:
        return self.digest == self.backup.digest_at_snapshot


def read_manifest(store: Path) -> list[BackupFile]:
    p = store / MANIFEST
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise MaterializeError(
            f"{p}: no manifest (is {store} a materialized run's backups?)"
        ) from None
    except json.JSONDecodeError as e:
        raise MaterializeError(f"{p}: not JSON ({e})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != 1
        or not isinstance(doc.get("backups"), list)
    ):
        raise MaterializeError(f"{p}: expected {{'version': 1, 'backups': [...]}}")
    out = []
    for i, row in enumerate(doc["backups"]):
        try:
            out.append(BackupFile(**row))
        except TypeError as e:
            raise MaterializeError(f"{p}: backups[{i}]: {e}") from None
    return out


def chain_of(entries: list[BackupFile], target: BackupFile) -> list[BackupFile]:
    """The files ``target`` restores from: its full backup, then each incremental up to it."""
    by_file = {e.file: e for e in entries}
    chain = [target]
    while chain[-1].parent is not None:
        parent = by_file.get(chain[-1].parent)
        if parent is None:
            raise MaterializeError(
                f"{chain[-1].file}: its parent {chain[-1].parent} is not in the manifest"
            )
        chain.append(parent)
    return chain[::-1]


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
    the snapshot instant."""
    root = Path(store)
    if not (root / MANIFEST).exists() and (root / "backups" / MANIFEST).exists():
        root = root / "backups"
    entries = read_manifest(root)
    mine = [e for e in entries if (e.vm == vm or safe_name(e.vm) == vm) and e.disk == disk]
    if not mine:
        known = sorted({e.vm for e in entries})
        raise MaterializeError(
            f"{root}: no backup of {vm} disk {disk} (VMs with backups: "
            f"{', '.join(known[:8])}{' …' if len(known) > 8 else ''})"
        )
    if seq is None:
        target = max(mine, key=lambda e: e.seq)
    else:
        found = [e for e in mine if e.seq == seq]
        if not found:
            raise MaterializeError(
                f"{vm} disk {disk}: no backup {seq} (have {', '.join(str(e.seq) for e in mine)})"
            )
        target = found[0]
    chain = chain_of(entries, target)
    dest = Path(out)
    if dest.exists():
        raise MaterializeError(f"{dest}: exists (restore never overwrites)")
    # Parents are looked for inside the store only: a copied store never reads the original.
    with engine.Vhdx.open(root / target.file, parent_root=root) as v:
        v.copy_to(dest)
    with engine.Vhdx.open(dest) as r:
        digest = r.digest()
    return Restored(vm, disk, target, chain, dest, digest)
