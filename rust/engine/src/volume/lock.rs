//! The locks that keep a second opener off a volume in use: one on its root (so no other volume
//! — with another diff area — writes its files behind this one's snapshots), one on its diff area
//! (so no other volume shares its journal). Each is an advisory `flock` on a lock file, held for
//! the life of the volume: the kernel releases it when the process dies, so a killed process
//! leaves nothing to clean up, and two opens in one process conflict too (`flock` locks belong to
//! the open file, not the process). The file holds the holder's pid, for the message only.
//!
//! A clean close unlinks the file while still holding the lock; an opener that opened the old
//! file just before, and locks it just after, then holds a lock on a file no longer in place — so
//! a lock only counts once the path still names the file locked (else the opener tries again).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use super::error::{Result, VolumeError};

/// A lock file in the volume's root.
pub(crate) const ROOT_LOCK_NAME: &str = ".vssim-volume.lock";
/// The lock file in the diff area.
pub(crate) const DIFF_LOCK_NAME: &str = "vssim-volume.lock";

/// One lock, held while this lives; dropping it removes the file (while still locked), then
/// unlocks it.
#[derive(Debug)]
pub(crate) struct LockFile {
    file: Option<File>,
    path: PathBuf,
}

impl LockFile {
    /// Takes the lock on `dir`'s lock file `name` (created if missing); `what` names `dir` in the
    /// error when another volume holds it.
    pub(crate) fn take(dir: &Path, name: &str, what: &'static str) -> Result<LockFile> {
        let path = dir.join(name);
        for _ in 0..8 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| VolumeError::io(&path, e))?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(e) if e == Errno::WOULDBLOCK => {
                    return Err(VolumeError::Busy {
                        what,
                        dir: dir.to_owned(),
                        pid: holder(&file),
                    })
                }
                Err(e) => return Err(VolumeError::io(&path, e.into())),
            }
            if still_in_place(&file, &path) {
                let pid = format!("{}\n", std::process::id());
                file.set_len(0)
                    .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
                    .map_err(|e| VolumeError::io(&path, e))?;
                return Ok(LockFile {
                    file: Some(file),
                    path,
                });
            }
        }
        Err(VolumeError::Busy {
            what,
            dir: dir.to_owned(),
            pid: None,
        })
    }

    /// Unlocks without removing the file, as the kernel does for a process that dies (tests
    /// simulate a killed session with it).
    #[cfg(test)]
    pub(crate) fn drop_as_if_killed(mut self) {
        self.file = None;
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let _ = std::fs::remove_file(&self.path);
            drop(file);
        }
    }
}

/// The pid written in a held lock file, if it can be read.
fn holder(mut file: &File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn still_in_place(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The volume's two locks.
#[derive(Debug)]
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "held for their Drop: the locks last as long as the volume"
    )
)]
pub(crate) struct Locks {
    pub root: LockFile,
    pub diff: LockFile,
}

impl Locks {
    /// Both unlocked as the kernel unlocks a dead process's (the files stay).
    #[cfg(test)]
    pub(crate) fn drop_as_if_killed(self) {
        self.root.drop_as_if_killed();
        self.diff.drop_as_if_killed();
    }
}
