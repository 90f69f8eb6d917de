//! Real copy-on-write snapshots of a folder (a Cluster Shared Volume in materialized mode), as the
//! system provider (volsnap) makes them.
//!
//! # How this works
//!
//! Every write the simulation makes to a file under the root goes through a [`VolumeFile`]
//! (a [`Storage`](crate::storage::Storage), so the VHDX writer can sit on it). A snapshot records
//! the files that exist and their lengths; from then on the first write to any 16 KiB chunk of a
//! file that lay within its length copies the old chunk into the diff area first (one copy serves
//! every live snapshot that still needed it: the `cow` tracker's copy-once rule, see `state.rs`);
//! growth past the old length is never copied. A [`SnapshotView`] reads each chunk from the diff
//! area if it was copied, else from the live file. A writable view (auto-recovery) puts every
//! chunk it writes in a fresh diff-area slot that only it sees.
//!
//! Truncating a file (and removing one, which truncates it to zero first) counts as a write of the
//! part cut off: the chunks a snapshot still needs are copied before the cut, so snapshots keep
//! deleted and shortened files whole. Renames, and any change made to the folder without going
//! through the volume, are not seen: they are the caller's to avoid.
//!
//! With a diff-area limit, a write whose copies would not fit first deletes the oldest snapshots
//! until they do (VolSnap event 24); each deletion is reported and a view on such a snapshot fails
//! on its next read with [`VolumeError::SnapshotDeleted`].
//!
//! # On disk
//!
//! In the diff-area folder: `vssim-volume.diff`, fixed 16 KiB slots (freed slots are reused, and
//! the file is cut back when its last slots are freed); `vssim-volume.journal`, an append-only
//! journal of checksummed, sequenced records (`journal.rs`): snapshot creations with their file
//! tables, deletions, invalidations, and for every copy the chunk, its slot, the snapshots it
//! serves and a CRC-32C of the copied data (`checksum_copies`, the default; off, chunks go file
//! to file inside the kernel with `copy_file_range` and only the index is checksummed). Opening a
//! volume replays the journal into memory; the per-file chunk maps then live in memory and writes
//! only ever append. A journal with no live snapshot left is rewritten at open to a header and
//! the next id (write beside, fsync, rename, fsync the folder).
//!
//! A new volume's journal header is made durable (with its folder entry) before the diff file is
//! created, so a diff file beside a missing or empty journal can only mean the journal was lost:
//! such an open is refused, nothing changed, unless `discard_snapshots` asks to start afresh.
//!
//! Every read of a snapshot view checks each diff-area slot it uses against its CRC-32C before
//! any of its bytes are returned: a damaged slot fails the read with
//! [`VolumeError::DiffAreaDamaged`] (file, offset, expected and found CRC) and marks invalid every
//! snapshot that uses it. A slot past the end of the diff file is found at open.
//!
//! # Crash consistency
//!
//! The invariant: *a view never shows bytes the file did not hold at the snapshot instant*. The
//! danger is a live write reaching the file while the copy it displaced is not indexed. Every
//! copying write therefore goes, in this order: old chunks → diff file; index record → journal;
//! only then the live write. What makes that order hold on disk depends on the mode:
//!
//! - **durable** (`VolumeOptions::durable`): the diff data is fsynced before the record is written
//!   and the record is fsynced before the live write. Safe against power loss, at two fsyncs per
//!   copying write.
//! - **ordered** (the default): the three steps are ordinary writes in that order, and fsyncs are
//!   batched at commit points (snapshot creation and deletion, `flush`, close). A killed process
//!   loses nothing the kernel accepted, so the order of its write calls is the order on disk for
//!   every later reader: `kill -9` at any moment leaves either no record and no live write, or a
//!   record and perhaps the live write — both correct. Only an operating-system crash can reorder
//!   them; each session records the kernel's boot id, so reopening after an unclean session on an
//!   earlier boot marks every snapshot of that session invalid instead of trusting it.
//!
//! On open, a journal tail that is not a whole good record (a torn append, or corruption: bad CRC,
//! bad sequence) marks every live snapshot invalid: the record lost may have described a copy
//! whose live write followed. The invalidation records overwrite the bad tail, which is cut only
//! once they are on disk, so a crash during recovery finds the bad tail again. A record that does
//! not fit the state, and a diff slot cut off the diff file, likewise invalidate the snapshots
//! concerned (`recovery.rs` decides, without I/O). An invalid snapshot stays listed with its
//! reason and can only be deleted.
//!
//! # Locks
//!
//! An open volume holds an advisory `flock` on a lock file in its root and one in its diff area
//! (`lock.rs`), for its whole life: a second volume on the same root (whatever its diff area) or on
//! the same diff area is refused with [`VolumeError::Busy`], in this process or another; the
//! kernel drops the locks of a killed process. The root's lock file is not one of the volume's
//! files (snapshots skip it, `open_file` refuses it).

mod core;
mod error;
mod handle;
pub(crate) mod journal;
mod lock;
mod open;
mod paths;
mod recovery;
mod sparse;
mod state;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub use error::{Result, VolumeError};
pub use handle::{fill_pattern, to_io, SnapshotView, VolumeFile};
pub use journal::DeleteReason;

use self::core::{diff_error, lock, Shared};
use crate::volsnap::MAX_SNAPSHOTS;
use journal::Record;
use state::Gone;

const JOURNAL_NAME: &str = "vssim-volume.journal";
const DIFF_NAME: &str = "vssim-volume.diff";

/// How a volume is opened.
#[derive(Debug, Clone)]
pub struct VolumeOptions {
    /// Diff-area limit in bytes (`vssadmin add shadowstorage /MaxSize=`); `None` = unbounded.
    pub diff_area_max_bytes: Option<u64>,
    /// fsync every copy before its live write (power-loss safe, slow); see the module doc.
    pub durable: bool,
    /// The diff file is not cut back below this many bytes once it has grown to them (volsnap
    /// keeps its diff area allocated, so copies overwrite allocated space); 0 = cut back to the
    /// last used slot.
    pub diff_area_reserve_bytes: u64,
    /// Copy old chunks through user space and record a CRC-32C of each, checked whenever a
    /// view reads the chunk (a damaged diff area then fails the read and marks its snapshots
    /// invalid, never shows wrong bytes). On by default; off, chunks are copied file to file
    /// inside the kernel (`copy_file_range`), faster, and their data is not checked.
    pub checksum_copies: bool,
    /// Open even when the journal is missing or empty beside an existing diff file, discarding
    /// the snapshots it held (otherwise such an open is refused and nothing is changed).
    pub discard_snapshots: bool,
    /// The kernel boot id to record (tests simulate a reboot with it); `None` reads
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: Option<String>,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            diff_area_max_bytes: None,
            durable: false,
            diff_area_reserve_bytes: 0,
            checksum_copies: true,
            discard_snapshots: false,
            boot_id: None,
        }
    }
}

/// A snapshot's state, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    Live,
    Deleted(DeleteReason),
    Invalid(String),
}

/// One snapshot, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub id: u64,
    pub state: SnapshotState,
    /// Seconds since the Unix epoch (live snapshots only; 0 otherwise).
    pub created_unix: u64,
    /// Files the snapshot holds (live snapshots only).
    pub files: u64,
    /// Diff-area chunks this snapshot refers to (shared copies count for each).
    pub diff_area_chunks: u64,
    /// Chunks copied while it was the newest snapshot.
    pub chunks_copied: u64,
}

/// Volume-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeStats {
    /// Bytes of diff area in use (16 KiB per used slot).
    pub diff_area_bytes: u64,
    /// Length of the diff file on disk.
    pub diff_file_bytes: u64,
    pub journal_bytes: u64,
    pub total_chunks_copied: u64,
    /// Snapshots deleted because the diff area was full, in order.
    pub auto_deleted: Vec<u64>,
}

/// Cheap running figures of a volume, for a caller that watches every write (materialized mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeCounters {
    /// Bytes of diff area in use now.
    pub diff_area_bytes: u64,
    /// The most bytes of diff area in use at any moment since the peak was last reset (copies
    /// are counted write by write, so a peak inside one multi-chunk write is seen).
    pub peak_diff_area_bytes: u64,
    pub total_chunks_copied: u64,
    /// How many snapshots the diff-area limit has deleted since the volume was opened.
    pub auto_deleted: usize,
}

/// A folder whose files are written through copy-on-write snapshots.
#[derive(Debug, Clone)]
pub struct Volume {
    shared: Shared,
    root: PathBuf,
    diff_dir: PathBuf,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `path` with its deepest existing ancestor canonicalized (symlinks resolved) and the rest kept.
fn lenient_canonical(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(name)) => {
                rest.push(name.to_owned());
                existing = p;
            }
            _ => return abs,
        }
    }
}

impl Volume {
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn diff_area_dir(&self) -> &Path {
        &self.diff_dir
    }

    /// What opening the volume found (an unclean previous session, snapshots marked invalid).
    pub fn recovery_notes(&self) -> Result<Vec<String>> {
        Ok(lock(&self.shared)?.notes.clone())
    }

    /// Takes a snapshot now: the files under the root and their lengths are what it will show.
    pub fn create_snapshot(&self) -> Result<u64> {
        let mut core = lock(&self.shared)?;
        if core.state.snaps.len() >= MAX_SNAPSHOTS {
            return Err(VolumeError::State(format!(
                "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED: the volume already has \
                 {MAX_SNAPSHOTS} live snapshots"
            )));
        }
        let files =
            paths::walk(&core.root, &core.diff_dir).map_err(|e| VolumeError::io(&core.root, e))?;
        let id = core.state.next_id;
        // Everything before is made durable with the snapshot record (a commit point).
        core.barrier()?;
        core.commit(
            &[Record::Create {
                id,
                created_unix: now_unix(),
                files,
            }],
            true,
        )?;
        Ok(id)
    }

    /// Deletes a snapshot (live or invalid); returns the diff-area bytes freed.
    pub fn delete_snapshot(&self, id: u64) -> Result<u64> {
        let mut core = lock(&self.shared)?;
        if core.state.snap(id).is_none() {
            return match core.state.gone.get(&id) {
                Some(Gone::Invalid(_)) => {
                    core.commit(
                        &[Record::Delete {
                            id,
                            reason: DeleteReason::User,
                        }],
                        true,
                    )?;
                    Ok(0)
                }
                _ => Err(core.not_live(id)),
            };
        }
        core.delete(id, DeleteReason::User)
    }

    /// Every snapshot this volume knows: live, deleted and invalid, by id.
    pub fn snapshots(&self) -> Result<Vec<SnapshotStatus>> {
        let core = lock(&self.shared)?;
        let mut out: Vec<SnapshotStatus> = core
            .state
            .gone
            .iter()
            .map(|(&id, g)| SnapshotStatus {
                id,
                state: match g {
                    Gone::Deleted(r) => SnapshotState::Deleted(*r),
                    Gone::Invalid(m) => SnapshotState::Invalid(m.clone()),
                },
                created_unix: 0,
                files: 0,
                diff_area_chunks: 0,
                chunks_copied: 0,
            })
            .collect();
        for s in &core.state.snaps {
            out.push(SnapshotStatus {
                id: s.id,
                state: SnapshotState::Live,
                created_unix: s.created_unix,
                files: s.files.len() as u64,
                diff_area_chunks: s
                    .files
                    .values()
                    .map(|f| (f.preserved.len() + f.overlay.len()) as u64)
                    .sum(),
                chunks_copied: s.copied_while_newest,
            });
        }
        out.sort_by_key(|s| s.id);
        Ok(out)
    }

    /// Ids of the live snapshots, oldest first.
    pub fn live_snapshots(&self) -> Result<Vec<u64>> {
        Ok(lock(&self.shared)?
            .state
            .snaps
            .iter()
            .map(|s| s.id)
            .collect())
    }

    /// The files of snapshot `id` and their lengths as the view shows them, by path.
    pub fn snapshot_files(&self, id: u64) -> Result<Vec<(String, u64)>> {
        let core = lock(&self.shared)?;
        let snap = core.state.snap(id).ok_or_else(|| core.not_live(id))?;
        let mut files: Vec<(String, u64)> = snap
            .files
            .iter()
            .map(|(k, f)| (k.clone(), f.view_len()))
            .collect();
        files.sort();
        Ok(files)
    }

    fn resolve(&self, path: &Path) -> Result<paths::Resolved> {
        paths::resolve(&self.root, &self.diff_dir, path)
    }

    /// Opens a file on the volume for reading and writing; `create` makes it (and its folders).
    pub fn open_file(&self, path: &Path, create: bool) -> Result<VolumeFile> {
        let r = self.resolve(path)?;
        if create {
            if let Some(parent) = r.abs.parent() {
                std::fs::create_dir_all(parent).map_err(|e| VolumeError::io(parent, e))?;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&r.abs)
            .map_err(|e| VolumeError::io(&r.abs, e))?;
        Ok(VolumeFile {
            shared: self.shared.clone(),
            key: r.key,
            path: r.abs,
            file,
        })
    }

    /// Removes a file; snapshots keep it whole (its chunks are copied first).
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        let f = self.open_file(path, false)?;
        f.set_len(0)?;
        let core = lock(&self.shared)?;
        std::fs::remove_file(&f.path).map_err(|e| VolumeError::io(&f.path, e))?;
        drop(core);
        Ok(())
    }

    /// Opens `path` as snapshot `id` shows it; `writable` for auto-recovery writes.
    pub fn open_view(&self, id: u64, path: &Path, writable: bool) -> Result<SnapshotView> {
        let r = self.resolve(path)?;
        let core = lock(&self.shared)?;
        core.snap_file(id, &r.key)?;
        let live = File::open(&r.abs).ok();
        if let Some(f) = &live {
            // A view reads scattered runs (an incremental's changed blocks, the leaves a digest
            // needs): readahead past them would fill the page cache with the sparse file's holes,
            // zeroed page by page in the kernel (most of an incremental backup's time, measured
            // with `benches/bench_materialized_run.py`). Advice only: a file system without it
            // reads as before.
            let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::Random);
        }
        Ok(SnapshotView {
            shared: self.shared.clone(),
            id,
            key: r.key,
            live,
            live_path: r.abs,
            writable,
        })
    }

    /// Copies every file of snapshot `id` to `dest` (a new folder outside the volume, same
    /// relative paths); returns the bytes written.
    pub fn export_snapshot(&self, id: u64, dest: &Path) -> Result<u64> {
        let files = self.snapshot_files(id)?;
        if lenient_canonical(dest).starts_with(&self.root) {
            return Err(VolumeError::invalid(
                "dest",
                format!("{} lies on the volume itself", dest.display()),
            ));
        }
        let mut total = 0u64;
        for (key, _) in files {
            let view = self.open_view(id, Path::new(&key), false)?;
            let out_path = dest.join(&key);
            if let Some(parent) = out_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| VolumeError::io(parent, e))?;
            }
            // Sparse, file to file in the kernel (`SnapshotView::copy_to`), then durable.
            total += view.copy_to(&out_path)?;
            File::open(&out_path)
                .and_then(|f| f.sync_all())
                .map_err(|e| VolumeError::io(&out_path, e))?;
        }
        Ok(total)
    }

    /// Makes every completed write durable (diff area, then index).
    pub fn flush(&self) -> Result<()> {
        lock(&self.shared)?.barrier()
    }

    pub fn stats(&self) -> Result<VolumeStats> {
        let core = lock(&self.shared)?;
        Ok(VolumeStats {
            diff_area_bytes: core.state.used_slots() * core.state.chunk_size(),
            diff_file_bytes: core
                .diff
                .metadata()
                .map_err(|e| diff_error(&core.diff_path, e))?
                .len(),
            journal_bytes: core.journal.len(),
            total_chunks_copied: core.state.total_copied,
            auto_deleted: core.auto_deleted.clone(),
        })
    }

    /// The running figures (no I/O). `reset_peak` starts a new peak from the current use.
    pub fn counters(&self, reset_peak: bool) -> Result<VolumeCounters> {
        let mut core = lock(&self.shared)?;
        let used = core.state.used_slots();
        let shift = core.state.chunk_shift;
        let out = VolumeCounters {
            diff_area_bytes: used << shift,
            peak_diff_area_bytes: core.peak_used.max(used) << shift,
            total_chunks_copied: core.state.total_copied,
            auto_deleted: core.auto_deleted.len(),
        };
        if reset_peak {
            core.peak_used = used;
        }
        Ok(out)
    }

    /// Ids of the snapshots the diff-area limit deleted, from the `from`-th deletion on.
    pub fn auto_deleted_from(&self, from: usize) -> Result<Vec<u64>> {
        let core = lock(&self.shared)?;
        Ok(core.auto_deleted.get(from..).unwrap_or_default().to_vec())
    }

    pub fn diff_area_max_bytes(&self) -> Result<Option<u64>> {
        Ok(lock(&self.shared)?.limit)
    }

    /// Changes the limit; takes effect at the next copy.
    pub fn set_diff_area_max_bytes(&self, limit: Option<u64>) -> Result<()> {
        lock(&self.shared)?.limit = limit;
        Ok(())
    }

    /// Closes the volume now (cleanly, as when the last handle goes): every file and view
    /// opened from it fails from then on. Closing twice is harmless.
    pub fn close(&self) -> Result<()> {
        let mut core = self.shared.lock().map_err(|_| {
            VolumeError::State("the volume's state was poisoned by a panic".to_owned())
        })?;
        core.close()
    }

    pub fn is_durable(&self) -> Result<bool> {
        Ok(lock(&self.shared)?.durable)
    }
}
