//! Opening a volume: the diff area's lock, its files, and recovery carried out on them (the
//! decisions are `recovery.rs`'s, made without I/O).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::core::Core;
use super::error::{Result, VolumeError};
use super::journal::{Journal, Record};
use super::lock::Locks;
use super::recovery::{self, Continue, Recovered};
use super::{Volume, VolumeOptions, DIFF_NAME, JOURNAL_NAME};

/// A journal longer than this, with no live snapshot, is rewritten from scratch at open.
pub(crate) const COMPACT_AT: u64 = if cfg!(test) { 4096 } else { 1 << 20 };

fn read_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

impl Volume {
    /// Opens (or starts) the volume over `root` with its diff area in `diff_dir` (created if
    /// missing). Reopening finds the snapshots of earlier sessions; see the module doc for what a
    /// crash leaves.
    pub fn open(root: &Path, diff_dir: &Path, options: VolumeOptions) -> Result<Volume> {
        let root = std::fs::canonicalize(root).map_err(|e| VolumeError::io(root, e))?;
        if !root.is_dir() {
            return Err(VolumeError::invalid(
                "root",
                format!("{} is not a directory", root.display()),
            ));
        }
        std::fs::create_dir_all(diff_dir).map_err(|e| VolumeError::io(diff_dir, e))?;
        let diff_dir = std::fs::canonicalize(diff_dir).map_err(|e| VolumeError::io(diff_dir, e))?;
        if root.starts_with(&diff_dir) {
            return Err(VolumeError::invalid(
                "diff_area_dir",
                format!(
                    "{} contains the volume root {}",
                    diff_dir.display(),
                    root.display()
                ),
            ));
        }
        let locks = Locks::take(&root, &diff_dir)?;
        Self::open_locked(&root, &diff_dir, &options, locks)
    }

    fn open_locked(
        root: &Path,
        diff_dir: &Path,
        options: &VolumeOptions,
        locks: Locks,
    ) -> Result<Volume> {
        // On a failure from here on the locks are dropped: released, their files removed.
        let files = DiffAreaFiles::open(diff_dir)?;
        let boot_id = options.boot_id.clone().unwrap_or_else(read_boot_id);
        let recovered =
            recovery::recover(&files.bytes, &boot_id).map_err(|m| files.journal_error(m))?;
        let (mut core, mut pending) = files.into_core(root, options, locks, recovered)?;
        if core.state.snaps.is_empty() && core.journal.len() > COMPACT_AT {
            compact(&mut core)?;
            pending.clear();
        }
        pending.push(Record::Session {
            boot_id,
            durable: options.durable,
            pid: std::process::id(),
        });
        // These records are already applied (or do not touch the state): append them only.
        core.journal
            .append(&pending)
            .map_err(|e| VolumeError::io(core.journal.path(), e))?;
        core.trim_diff()?;
        core.barrier()?;
        Ok(Volume {
            shared: Arc::new(Mutex::new(core)),
            root: root.to_owned(),
            diff_dir: diff_dir.to_owned(),
        })
    }
}

/// The diff area's two files, open (created if missing), and the journal's bytes.
struct DiffAreaFiles {
    dir: PathBuf,
    journal_path: PathBuf,
    journal: File,
    bytes: Vec<u8>,
    diff_path: PathBuf,
    diff: File,
}

impl DiffAreaFiles {
    fn open(dir: &Path) -> Result<Self> {
        let journal_path = dir.join(JOURNAL_NAME);
        let diff_path = dir.join(DIFF_NAME);
        let journal = open_rw(&journal_path)?;
        let bytes = std::fs::read(&journal_path).map_err(|e| VolumeError::io(&journal_path, e))?;
        let diff = open_rw(&diff_path)?;
        Ok(DiffAreaFiles {
            dir: dir.to_owned(),
            journal_path,
            journal,
            bytes,
            diff_path,
            diff,
        })
    }

    fn journal_error(&self, message: String) -> VolumeError {
        VolumeError::Journal {
            path: self.journal_path.clone(),
            message,
        }
    }

    /// The volume's core as recovery left it, with the records still to append. Used slots are
    /// read back here: a slot that no longer holds what its CRC says invalidates its snapshots.
    fn into_core(
        self,
        root: &Path,
        options: &VolumeOptions,
        locks: Locks,
        recovered: Recovered,
    ) -> Result<(Core, Vec<Record>)> {
        let Recovered {
            mut state,
            mut notes,
            mut pending,
            journal,
        } = recovered;
        let diff_len = self
            .diff
            .metadata()
            .map_err(|e| VolumeError::io(&self.diff_path, e))?
            .len();
        let mut buf = vec![0u8; state.chunk_size() as usize];
        let (more, more_notes) =
            recovery::invalidate_damaged_slots(&mut state, diff_len, |slot, crc| {
                crc.is_none_or(|crc| slot_crc(&self.diff, slot, &mut buf) == Some(crc))
            })
            .map_err(|m| self.journal_error(m))?;
        pending.extend(more);
        notes.extend(more_notes);
        let journal = continue_journal(self.journal, &self.journal_path, journal)?;
        let core = Core {
            root: root.to_owned(),
            diff_dir: self.dir,
            state,
            journal,
            diff: self.diff,
            diff_path: self.diff_path,
            locks: Some(locks),
            limit: options.diff_area_max_bytes,
            durable: options.durable,
            auto_deleted: Vec::new(),
            diff_len,
            reserve: options.diff_area_reserve_bytes,
            scratch: Vec::new(),
            checksum_copies: options.checksum_copies,
            diff_pos: None,
            notes,
            closed: false,
            peak_used: 0,
        };
        Ok((core, pending))
    }
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| VolumeError::io(path, e))
}

/// The journal, ready for appends: a fresh one gets its header first.
fn continue_journal(file: File, path: &Path, how: Continue) -> Result<Journal> {
    let io = |e| VolumeError::io(path, e);
    match how {
        Continue::Fresh => {
            let mut j = Journal::resume(file, path, 0, 0).map_err(io)?;
            j.append(&[recovery::header()]).map_err(io)?;
            Ok(j)
        }
        Continue::Resume { len, records } => Journal::resume(file, path, len, records).map_err(io),
    }
}

/// The CRC-32C of diff-area slot `slot` as the file holds it, read into `buf` (one slot long);
/// None when it cannot be read.
fn slot_crc(diff: &File, slot: u32, buf: &mut [u8]) -> Option<u32> {
    diff.read_exact_at(buf, u64::from(slot) * buf.len() as u64)
        .ok()
        .map(|()| crc32c::crc32c(buf))
}

/// Rewrites the journal of a volume with nothing live to its header and the next id.
fn compact(core: &mut Core) -> Result<()> {
    let path = core.journal.path().to_owned();
    let (state, records) =
        recovery::compacted(&core.state).map_err(|message| VolumeError::Journal {
            path: path.clone(),
            message,
        })?;
    core.notes.push(format!(
        "no snapshot was live: the {}-byte journal was compacted",
        core.journal.len()
    ));
    core.state = state;
    core.journal
        .rewrite(&records)
        .map_err(|e| VolumeError::io(&path, e))
}
