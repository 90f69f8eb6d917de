//! Advisory locks on VHDX files: one writer or any number of readers.
//!
//! Hyper-V opens a disk it writes so that nobody else can use it ([MS-VDS] 2.2.2.19.1.4: a disk
//! opened for read-write surfacing limits every other handle to get-info or unsurface), and opens
//! the parents of a differencing chain read-only, shared by every child. vssim does the same
//! with `flock(2)` locks (through rustix, as the volume's locks): a disk opened writable holds an
//! exclusive
//! lock, a disk opened read-only (and every parent of an open chain) a shared one. A writer thus
//! excludes readers too: they would read blocks whose BAT entries are not yet written.
//!
//! `flock` locks belong to the open file description, so two handles in one process conflict
//! exactly as two processes do. The locks are advisory: they bind vssim and other `flock` users,
//! not a program that never asks (QEMU takes its own byte-range locks, which do not see these).
//! The holder of a conflicting lock is looked up in `/proc/locks` for the message.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use super::error::{VResult, VhdxError};

/// How a file is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Readers: any number at once, no writer.
    Shared,
    /// A writer: nobody else.
    Exclusive,
}

impl LockMode {
    fn purpose(self) -> &'static str {
        match self {
            LockMode::Shared => "for reading",
            LockMode::Exclusive => "for writing",
        }
    }
}

/// Which file this is, whatever path reaches it (symlinks, hard links).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of_file(f: &File) -> std::io::Result<FileId> {
        let m = f.metadata()?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// The file `path` leads to (following symlinks), if it exists.
    pub fn of_path(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// A held lock. Released by [`FileLock::release`] or when dropped (and in any case when the last
/// descriptor of the file closes).
#[derive(Debug)]
pub struct FileLock {
    /// A duplicate of the locked descriptor: it shares the open file description, so unlocking
    /// through it releases the lock.
    file: Option<File>,
    pub mode: LockMode,
}

impl FileLock {
    /// Takes `mode` on `file` (opened from `path`) without waiting; a conflict is a
    /// [`VhdxError::Locked`] naming the holder when it can be found.
    pub fn acquire(file: &File, path: &Path, mode: LockMode) -> VResult<FileLock> {
        let name = path.display().to_string();
        let dup = file.try_clone().map_err(|e| VhdxError::io(&name, e))?;
        let op = match mode {
            LockMode::Shared => FlockOperation::NonBlockingLockShared,
            LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        match flock(&dup, op) {
            Ok(()) => Ok(FileLock {
                file: Some(dup),
                mode,
            }),
            Err(e) if e == Errno::WOULDBLOCK => {
                let id = FileId::of_file(file).ok();
                Err(VhdxError::Locked {
                    file: name,
                    wanted: mode.purpose(),
                    holder: id.map_or_else(|| "another handle".to_owned(), |id| holder(id, mode)),
                })
            }
            Err(e) => {
                let e = std::io::Error::from(e);
                Err(VhdxError::io(
                    &name,
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot lock the file ({e}); vssim does not use a VHDX it cannot lock"
                        ),
                    ),
                ))
            }
        }
    }

    /// Unlocks now (a clean close: the file may be opened again at once).
    pub fn release(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = flock(&f, FlockOperation::Unlock);
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        self.release();
    }
}

/// Who holds a lock on `id` that conflicts with `wanted`, from `/proc/locks` (Linux): "process
/// 1234 (vssim) holds it for writing", "another handle in this process holds it for reading".
fn holder(id: FileId, wanted: LockMode) -> String {
    let table = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let me = std::process::id();
    let mut found: Vec<String> = Vec::new();
    for line in table.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters are shown as "1: -> FLOCK".
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            continue;
        }
        let (kind, pid, dev_ino) = (f[3], f[4], f[5]);
        let conflicting = kind == "WRITE" || wanted == LockMode::Exclusive;
        if !conflicting || !same_file(dev_ino, id) {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let how = if kind == "WRITE" {
            "for writing"
        } else {
            "for reading"
        };
        let who = if pid == me {
            format!("another handle in this process (pid {pid}) holds it {how}")
        } else {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if comm.is_empty() {
                format!("process {pid} holds it {how}")
            } else {
                format!("process {pid} ({comm}) holds it {how}")
            }
        };
        if !found.contains(&who) {
            found.push(who);
        }
    }
    if found.is_empty() {
        "another handle holds it (holder unknown)".to_owned()
    } else {
        found.join("; ")
    }
}

/// Whether `/proc/locks`' "MAJ:MIN:INODE" (hex device numbers) names `id`.
fn same_file(dev_ino: &str, id: FileId) -> bool {
    let mut parts = dev_ino.split(':');
    let (Some(maj), Some(min), Some(ino)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(maj), Ok(min), Ok(ino)) = (
        u64::from_str_radix(maj, 16),
        u64::from_str_radix(min, 16),
        ino.parse::<u64>(),
    ) else {
        return false;
    };
    // glibc's gnu_dev_major / gnu_dev_minor.
    let dev_major = ((id.dev >> 8) & 0xfff) | ((id.dev >> 32) & !0xfff);
    let dev_minor = (id.dev & 0xff) | ((id.dev >> 12) & !0xff);
    maj == dev_major && min == dev_minor && ino == id.ino
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_or_many_readers_even_within_a_process() {
        let dir = std::env::temp_dir().join(format!("vssim-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, b"x").unwrap();
        let a = File::open(&p).unwrap();
        let b = File::open(&p).unwrap();
        let mut w = FileLock::acquire(&a, &p, LockMode::Exclusive).unwrap();
        let err = FileLock::acquire(&b, &p, LockMode::Shared).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("this process") && msg.contains("for writing"),
            "{msg}"
        );
        w.release();
        let r1 = FileLock::acquire(&a, &p, LockMode::Shared).unwrap();
        let r2 = FileLock::acquire(&b, &p, LockMode::Shared).unwrap();
        let c = File::open(&p).unwrap();
        let err = FileLock::acquire(&c, &p, LockMode::Exclusive).unwrap_err();
        assert!(err.to_string().contains("for reading"), "{err}");
        drop((r1, r2));
        FileLock::acquire(&c, &p, LockMode::Exclusive).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proc_locks_device_numbers() {
        // st_dev 0xfd01 is device fd:01.
        let id = FileId {
            dev: 0xfd01,
            ino: 42,
        };
        assert!(same_file("fd:01:42", id));
        assert!(!same_file("fd:02:42", id));
        assert!(!same_file("garbage", id));
    }
}
