//! The files vssim reads and the files it makes.
//!
//! An *input* must be an existing regular file: a directory, a FIFO (whose open would wait for a
//! writer), a socket or a device gets a message naming the path and what was expected.
//!
//! An *output* (`create`, `copy`, `export`, `import`) follows one rule for every command:
//! - it never resolves to an input — the same device and inode as the source or any parent of
//!   its chain, through symlinks and hard links — with or without `overwrite`;
//! - it never replaces an existing file unless `overwrite` (`--force`) is given, and never one
//!   another handle holds locked;
//! - it is written under a staged name in the same directory
//!   (`.NAME.vssim-staging-PID-N`) and renamed into place once complete and durable (the
//!   directory is synced too), so a crash or an error leaves the old file or nothing under the
//!   final name, never a partial one. Without `overwrite` the rename is a hard link that fails if
//!   the name appeared meanwhile, so a file created concurrently is not replaced either. A kill
//!   can leave a staged file behind; nothing else reads it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{VResult, VhdxError};
use super::lock::{FileId, FileLock, LockMode};
use crate::storage::FileStorage;

fn not_a_file(path: &Path, what: &str) -> VhdxError {
    VhdxError::io(
        &path.display().to_string(),
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}, expected a VHDX file"),
        ),
    )
}

/// Refuses anything but an existing regular file (following symlinks).
pub fn check_regular(path: &Path) -> VResult<()> {
    let name = path.display().to_string();
    let m = std::fs::metadata(path).map_err(|e| VhdxError::io(&name, e))?;
    if m.is_dir() {
        return Err(not_a_file(path, "is a directory"));
    }
    if !m.is_file() {
        return Err(not_a_file(
            path,
            "is not a regular file (a FIFO, socket or device)",
        ));
    }
    Ok(())
}

/// Opens an existing regular file, read-only or read-write.
pub fn open_input(path: &Path, writable: bool) -> VResult<FileStorage> {
    check_regular(path)?;
    let name = path.display().to_string();
    let st = FileStorage::open(path, writable).map_err(|e| VhdxError::io(&name, e))?;
    // It could have been swapped for something else between the check and the open.
    let m = st.file().metadata().map_err(|e| VhdxError::io(&name, e))?;
    if !m.is_file() {
        return Err(not_a_file(path, "is not a regular file"));
    }
    Ok(st)
}

/// An input of an operation: its name and identity.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub id: FileId,
}

impl Input {
    /// The input at `path`, if it exists.
    pub fn at(path: &Path) -> Option<Input> {
        FileId::of_path(path).map(|id| Input {
            name: path.display().to_string(),
            id,
        })
    }
}

static STAGED: AtomicU64 = AtomicU64::new(0);

/// An output being written under its staged name.
#[derive(Debug)]
pub struct Output {
    dest: PathBuf,
    staged: PathBuf,
    overwrite: bool,
    inputs: Vec<Input>,
    published: bool,
}

fn dir_of(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl Output {
    /// Checks `dest` against the rule (see the module doc) and picks the staged name.
    pub fn begin(dest: &Path, overwrite: bool, inputs: Vec<Input>) -> VResult<Output> {
        let name = dest.display().to_string();
        let dir = dir_of(dest);
        let Some(file_name) = dest.file_name() else {
            return Err(VhdxError::invalid(
                "path",
                format!("{name} names no file (expected a path to a file)"),
            ));
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(VhdxError::io(
                    &name,
                    std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        format!("{} is not a directory", dir.display()),
                    ),
                ))
            }
            Err(e) => {
                return Err(VhdxError::io(
                    &name,
                    std::io::Error::new(e.kind(), format!("its directory {}: {e}", dir.display())),
                ))
            }
        }
        let out = Output {
            dest: dest.to_path_buf(),
            staged: dir.join(format!(
                ".{}.vssim-staging-{}-{}",
                file_name.to_string_lossy(),
                std::process::id(),
                STAGED.fetch_add(1, Ordering::Relaxed)
            )),
            overwrite,
            inputs,
            published: false,
        };
        out.check_dest()?;
        Ok(out)
    }

    /// `dest` as it is now: not an input; absent, or replaceable.
    fn check_dest(&self) -> VResult<()> {
        let name = self.dest.display().to_string();
        let Ok(link) = std::fs::symlink_metadata(&self.dest) else {
            return Ok(());
        };
        if let Some(id) = FileId::of_path(&self.dest) {
            if let Some(i) = self.inputs.iter().find(|i| i.id == id) {
                return Err(VhdxError::invalid(
                    "path",
                    format!(
                        "{name} is the input {} (the same file): an output never replaces an \
                         input, even with --force",
                        i.name
                    ),
                ));
            }
        }
        if std::fs::metadata(&self.dest).is_ok_and(|m| m.is_dir()) {
            return Err(VhdxError::io(
                &name,
                std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "is a directory, expected a file name to write",
                ),
            ));
        }
        if !self.overwrite {
            return Err(VhdxError::io(
                &name,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists (pass --force, or overwrite=True, to replace it)",
                ),
            ));
        }
        if link.is_file() {
            // Replacing a file someone is using would leave them writing into a deleted inode.
            let f = File::open(&self.dest).map_err(|e| VhdxError::io(&name, e))?;
            FileLock::acquire(&f, &self.dest, LockMode::Exclusive)?;
        }
        Ok(())
    }

    /// Where to write.
    pub fn staged(&self) -> &Path {
        &self.staged
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Puts the complete, durable staged file under the final name.
    pub fn commit(mut self) -> VResult<()> {
        let name = self.dest.display().to_string();
        self.check_dest()?;
        if self.overwrite {
            std::fs::rename(&self.staged, &self.dest).map_err(|e| VhdxError::io(&name, e))?;
        } else {
            match std::fs::hard_link(&self.staged, &self.dest) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.staged);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(VhdxError::io(
                        &name,
                        std::io::Error::new(
                            e.kind(),
                            "appeared while it was being written (not replaced; pass --force \
                             to replace it)",
                        ),
                    ));
                }
                // A file system without hard links: checked just above, renamed now.
                Err(_) => std::fs::rename(&self.staged, &self.dest)
                    .map_err(|e| VhdxError::io(&name, e))?,
            }
        }
        self.published = true;
        if let Ok(d) = File::open(dir_of(&self.dest)) {
            d.sync_all().map_err(|e| VhdxError::io(&name, e))?;
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}
