//! Opening a volume: the diff area's lock, its files, and recovery carried out on them (the
//! decisions are `recovery.rs`'s, made without I/O).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::core::Core;
use super::error::{Result, VolumeError};
use super::journal::{Journal, Record};
use super::lock::{LockFile, Locks, DIFF_LOCK_NAME, ROOT_LOCK_NAME};
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
        // The root's lock first: a refused open leaves no new diff-area folder behind.
        let root_lock = LockFile::take(&root, ROOT_LOCK_NAME, "root")?;
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
        let locks = Locks {
            root: root_lock,
            diff: LockFile::take(&diff_dir, DIFF_LOCK_NAME, "diff area")?,
        };
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
        let mut recovered =
            recovery::recover(&files.bytes, &boot_id).map_err(|m| files.journal_error(m))?;
        if recovered.journal == Continue::Fresh {
            let discarded = files.check_fresh(options.discard_snapshots)?;
            recovered.notes.extend(discarded);
        }
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

/// The diff area's journal as found (its bytes, and its file if it exists) and whether the
/// diff file exists. Nothing is created until recovery has decided the volume may open.
struct DiffAreaFiles {
    dir: PathBuf,
    journal_path: PathBuf,
    journal: Option<File>,
    bytes: Vec<u8>,
    diff_path: PathBuf,
}

impl DiffAreaFiles {
    fn open(dir: &Path) -> Result<Self> {
        let journal_path = dir.join(JOURNAL_NAME);
        let journal = match OpenOptions::new()
            .read(true)
            .write(true)
            .open(&journal_path)
        {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(VolumeError::io(&journal_path, e)),
        };
        let bytes = match &journal {
            Some(_) => {
                std::fs::read(&journal_path).map_err(|e| VolumeError::io(&journal_path, e))?
            }
            None => Vec::new(),
        };
        Ok(DiffAreaFiles {
            dir: dir.to_owned(),
            journal_path,
            journal,
            bytes,
            diff_path: dir.join(DIFF_NAME),
        })
    }

    fn journal_error(&self, message: String) -> VolumeError {
        VolumeError::Journal {
            path: self.journal_path.clone(),
            message,
        }
    }

    /// A journal that records nothing is only a new volume's when no diff file exists: a fresh
    /// journal's header is durable before its diff file is made, so a diff file beside an
    /// empty or missing journal means the journal was lost, and its snapshots with it. Refused
    /// (nothing changed), unless `discard` — then the diff file is emptied and a note says so.
    fn check_fresh(&self, discard: bool) -> Result<Option<String>> {
        let Ok(meta) = std::fs::metadata(&self.diff_path) else {
            return Ok(None);
        };
        let how = match (&self.journal, self.bytes.len()) {
            (None, _) => "is missing",
            (Some(_), 0) => "is empty",
            _ => "holds only part of its first header",
        };
        let found = format!("{DIFF_NAME} ({} bytes)", meta.len());
        if !discard {
            return Err(self.journal_error(format!(
                "{how}, but the diff file {found} is there: the journal was lost, and with it \
                 the list of the snapshots that diff file holds; open with discard_snapshots \
                 (`vssim volume … --discard-snapshots`) to start afresh without them"
            )));
        }
        let diff = open_rw(&self.diff_path)?;
        diff.set_len(0)
            .map_err(|e| VolumeError::io(&self.diff_path, e))?;
        Ok(Some(format!(
            "the journal {how}: the snapshots of the diff file {found} were discarded \
             (discard_snapshots)"
        )))
    }

    /// The journal, ready for appends (a fresh one gets its header, durable with its folder
    /// entry before the diff file can exist), and the diff file (created if missing).
    fn create(self, how: Continue) -> Result<(Journal, File, PathBuf, PathBuf)> {
        let io = |e| VolumeError::io(&self.journal_path, e);
        let journal = match (self.journal, how) {
            (Some(file), Continue::Resume { len, records }) => {
                Journal::resume(file, &self.journal_path, len, records).map_err(io)?
            }
            (file, _) => {
                let file = match file {
                    Some(f) => f,
                    None => open_rw(&self.journal_path)?,
                };
                let mut j = Journal::resume(file, &self.journal_path, 0, 0).map_err(io)?;
                j.append(&[recovery::header()]).map_err(io)?;
                j.sync().map_err(io)?;
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| VolumeError::io(&self.dir, e))?;
                j
            }
        };
        let diff = open_rw(&self.diff_path)?;
        Ok((journal, diff, self.diff_path, self.dir))
    }

    /// The volume's core as recovery left it, with the records still to append. A used slot
    /// past the end of the diff file invalidates its snapshots (its data is gone); the data of
    /// the others is checked against its CRC-32C when a view reads it.
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
        let journal_path = self.journal_path.clone();
        let (journal, diff, diff_path, diff_dir) = self.create(journal)?;
        let diff_len = diff
            .metadata()
            .map_err(|e| VolumeError::io(&diff_path, e))?
            .len();
        let (more, more_notes) =
            recovery::invalidate_missing_slots(&mut state, diff_len).map_err(|message| {
                VolumeError::Journal {
                    path: journal_path,
                    message,
                }
            })?;
        pending.extend(more);
        notes.extend(more_notes);
        let core = Core {
            root: root.to_owned(),
            diff_dir,
            state,
            journal,
            diff,
            diff_path,
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
