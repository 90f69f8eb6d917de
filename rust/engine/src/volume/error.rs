//! `VolumeError`: every way a volume, a snapshot or a handle on them can fail. The volume has its
//! own error type (as `vhdx` has) so that it depends on no engine module above it; the engine-wide
//! [`crate::Error`] wraps it.

use std::io;
use std::path::{Path, PathBuf};

/// Errors of the volume and its snapshots.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A caller passed a value outside its domain (nothing changed).
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument { name: &'static str, message: String },
    /// The call is legal in general but not now (too many snapshots, a closed volume).
    #[error("{0}")]
    State(String),
    #[error("{path:?} is not a file on the volume {}: {why}", root.display())]
    OutsideRoot {
        path: String,
        root: PathBuf,
        why: String,
    },
    #[error("snapshot {id} was deleted: {reason}")]
    SnapshotDeleted { id: u64, reason: String },
    #[error("snapshot {id} is invalid and can only be deleted: {reason}")]
    SnapshotInvalid { id: u64, reason: String },
    #[error("snapshot {id} does not exist on this volume")]
    UnknownSnapshot { id: u64 },
    #[error("{path:?} did not exist on the volume when snapshot {id} was taken")]
    NotInSnapshot { id: u64, path: String },
    #[error("{what} is read-only")]
    ReadOnly { what: String },
    #[error("diff area {}: {source}; nothing was written to the live file", path.display())]
    DiffArea {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A diff-area slot no longer holds what its index record's CRC-32C says: the diff file was
    /// damaged. The snapshots that use it are marked invalid.
    #[error(
        "diff area {}: slot {slot} at offset {offset} (chunk {chunk} of {key:?} in snapshot \
         {id}) fails its CRC-32C: expected {expected:#010x}, found {found:#010x}; the snapshots \
         that use it are invalid from now on",
        path.display()
    )]
    DiffAreaDamaged {
        path: PathBuf,
        slot: u32,
        offset: u64,
        id: u64,
        key: String,
        chunk: u64,
        expected: u32,
        found: u32,
    },
    #[error("volume journal {}: {message}; the volume was not opened", path.display())]
    Journal { path: PathBuf, message: String },
    /// Another volume holds the lock on this volume's root or diff area (`what`).
    #[error(
        "the volume's {what} {} is in use by {}; close that volume first",
        dir.display(),
        holder(*pid)
    )]
    Busy {
        what: &'static str,
        dir: PathBuf,
        pid: Option<u32>,
    },
    /// Operating-system I/O error on `path` (a live file, the root, an export).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// Who holds a lock, for [`VolumeError::Busy`].
fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(p) if p == std::process::id() => format!("another volume of this process (pid {p})"),
        Some(p) => format!("process {p}"),
        None => "another volume (its process is not known)".to_owned(),
    }
}

impl VolumeError {
    pub fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        VolumeError::InvalidArgument {
            name,
            message: message.into(),
        }
    }

    pub fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        VolumeError::Io {
            path: path.as_ref().to_owned(),
            source,
        }
    }

    /// Whether a diff-area write failed for lack of space (disk full, quota, file size limit).
    pub fn is_out_of_space(&self) -> bool {
        match self {
            VolumeError::DiffArea { source, .. } => {
                matches!(source.raw_os_error(), Some(28 | 27 | 122))
                    || source.kind() == io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }
}
