//! Handles on the volume's files, as [`Storage`]: a live file whose writes go through the volume's
//! copy-on-write, and a snapshot view (read-only, or writable for auto-recovery).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::core::{lock, Shared};
use super::error::{Result, VolumeError};
use crate::storage::Storage;

/// Volume error → `io::Error` for the [`Storage`] trait; the volume error stays inside (for
/// `get_ref().downcast_ref::<VolumeError>()`), so the bindings can still raise the precise
/// exception.
pub fn to_io(err: VolumeError) -> io::Error {
    let kind = match &err {
        VolumeError::Io { source, .. } | VolumeError::DiffArea { source, .. } => source.kind(),
        VolumeError::ReadOnly { .. } => io::ErrorKind::PermissionDenied,
        VolumeError::InvalidArgument { .. } => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, err)
}

/// A file on the volume, open for reading and writing. Every write and truncation first copies
/// what live snapshots still need; reads are plain reads of the file.
#[derive(Debug)]
pub struct VolumeFile {
    pub(crate) shared: Shared,
    pub(crate) key: String,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

impl VolumeFile {
    /// The file's path relative to the volume root (`/`-separated).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The file's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle on the same file (its own descriptor, the same volume).
    pub fn try_clone(&self) -> Result<VolumeFile> {
        Ok(VolumeFile {
            shared: self.shared.clone(),
            key: self.key.clone(),
            path: self.path.clone(),
            file: self
                .file
                .try_clone()
                .map_err(|e| VolumeError::io(&self.path, e))?,
        })
    }

    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| VolumeError::io(&self.path, e))
    }

    /// Writes `buf` at `offset` (growing the file if needed), after copy-on-write.
    pub fn write(&self, buf: &[u8], offset: u64) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| {
            VolumeError::invalid("offset", format!("{offset} + length overflows"))
        })?;
        let mut core = lock(&self.shared)?;
        core.before_live_change(&self.key, &self.file, offset, end)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| VolumeError::io(&self.path, e))
    }

    /// Applies a batch of writes of deterministic bytes (a guest workload): `offsets[i]`,
    /// `lengths[i]`; the content is one pseudo-random buffer from `seed` whose first 8 bytes are
    /// the write's index (so generating it costs nothing per write).
    pub fn write_pattern(&self, offsets: &[u64], lengths: &[u32], seed: u64) -> Result<u64> {
        if offsets.len() != lengths.len() {
            return Err(VolumeError::invalid(
                "lengths",
                format!(
                    "has {} entries but offsets has {}",
                    lengths.len(),
                    offsets.len()
                ),
            ));
        }
        let max = lengths.iter().copied().max().unwrap_or(0) as usize;
        let mut buf = vec![0u8; max];
        fill_pattern(&mut buf, seed);
        let mut total = 0u64;
        for (i, (&off, &len)) in offsets.iter().zip(lengths).enumerate() {
            let b = &mut buf[..len as usize];
            let tag = (i as u64).to_le_bytes();
            let n = b.len().min(8);
            b[..n].copy_from_slice(&tag[..n]);
            self.write(b, off)?;
            total += u64::from(len);
        }
        Ok(total)
    }

    pub fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| VolumeError::io(&self.path, e))?
            .len())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Truncates (after copying what snapshots need of the cut part) or extends with zeros.
    pub fn set_len(&self, len: u64) -> Result<()> {
        let mut core = lock(&self.shared)?;
        let old = self
            .file
            .metadata()
            .map_err(|e| VolumeError::io(&self.path, e))?
            .len();
        if len < old {
            core.before_live_change(&self.key, &self.file, len, old)?;
        }
        self.file
            .set_len(len)
            .map_err(|e| VolumeError::io(&self.path, e))
    }

    /// Makes the file's completed writes durable, and first the copies made for them (diff area,
    /// then index), so they reach the disk before the data that displaced them.
    pub fn sync(&self) -> Result<()> {
        lock(&self.shared)?.barrier()?;
        self.file
            .sync_data()
            .map_err(|e| VolumeError::io(&self.path, e))
    }
}

/// Fills `buf` with xorshift bytes from `seed` (fast, deterministic test and workload data).
pub fn fill_pattern(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

impl Storage for VolumeFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write(buf, offset).map_err(to_io)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        VolumeFile::set_len(self, len).map_err(to_io)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sync().map_err(to_io)
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// A file as snapshot `id` shows it. Read-only, or writable (auto-recovery): writes land in the
/// diff area, never in the live file. A read after the snapshot was deleted (or found invalid)
/// fails with that reason.
#[derive(Debug)]
pub struct SnapshotView {
    pub(crate) shared: Shared,
    pub(crate) id: u64,
    pub(crate) key: String,
    pub(crate) live: Option<File>,
    pub(crate) live_path: PathBuf,
    pub(crate) writable: bool,
}

impl SnapshotView {
    pub fn snapshot_id(&self) -> u64 {
        self.id
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    pub fn try_clone(&self) -> Result<SnapshotView> {
        let live = match &self.live {
            Some(f) => Some(
                f.try_clone()
                    .map_err(|e| VolumeError::io(&self.live_path, e))?,
            ),
            None => None,
        };
        Ok(SnapshotView {
            shared: self.shared.clone(),
            id: self.id,
            key: self.key.clone(),
            live,
            live_path: self.live_path.clone(),
            writable: self.writable,
        })
    }

    /// Reads as the snapshot shows the file; a diff-area chunk that fails its CRC-32C fails the
    /// read (and marks the snapshot invalid) rather than showing wrong bytes.
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut core = lock(&self.shared)?;
        core.view_read_checked(self.id, &self.key, self.live.as_ref(), buf, offset)
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(VolumeError::ReadOnly {
                what: format!(
                    "the view of {:?} in snapshot {} (open it writable for auto-recovery)",
                    self.key, self.id
                ),
            })
        }
    }

    pub fn write(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_writable()?;
        let mut core = lock(&self.shared)?;
        core.view_write(self.id, &self.key, self.live.as_ref(), buf, offset)
    }

    pub fn len(&self) -> Result<u64> {
        let core = lock(&self.shared)?;
        Ok(core.snap_file(self.id, &self.key)?.view_len())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    pub fn set_len(&self, len: u64) -> Result<()> {
        self.check_writable()?;
        let mut core = lock(&self.shared)?;
        core.view_set_len(self.id, &self.key, self.live.as_ref(), len)
    }

    /// Makes the view's writes durable.
    pub fn sync(&self) -> Result<()> {
        lock(&self.shared)?.barrier()
    }

    fn describe(&self) -> String {
        format!("snapshot {} of {}", self.id, self.live_path.display())
    }
}

impl Storage for SnapshotView {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read(buf, offset).map_err(to_io)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write(buf, offset).map_err(to_io)
    }
    fn len(&self) -> io::Result<u64> {
        SnapshotView::len(self).map_err(to_io)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        SnapshotView::set_len(self, len).map_err(to_io)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.writable {
            self.sync().map_err(to_io)
        } else {
            Ok(())
        }
    }
    fn is_read_only(&self) -> bool {
        !self.writable
    }
    fn name(&self) -> String {
        self.describe()
    }
    fn data_extents(&self) -> io::Result<Option<Vec<(u64, u64)>>> {
        SnapshotView::data_extents(self).map(Some).map_err(to_io)
    }
}
