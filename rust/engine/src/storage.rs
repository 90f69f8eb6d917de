//! Where bytes live: a file on disk, or a view of one through a volume snapshot.
//!
//! The VHDX reader/writer and the volume's copy-on-write both go through [`Storage`], so a VHDX
//! can be opened on a plain file, on a live file whose writes pass through a volume's
//! copy-on-write, or on a read-only (or writable, for auto-recovery) snapshot view — with one code
//! path.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Positional byte storage.
pub trait Storage: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`; a read past the end is `UnexpectedEof`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the storage if needed.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the storage holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes every completed write durable (fsync).
    fn flush(&mut self) -> io::Result<()>;
    /// Whether writes are refused.
    fn is_read_only(&self) -> bool;
    /// A name for messages: the file's path, or the view's description.
    fn name(&self) -> String;
}

/// A plain file.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    writable: bool,
}

impl FileStorage {
    /// Opens an existing file, read-only or read-write.
    pub fn open(path: &Path, writable: bool) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)?;
        Ok(FileStorage {
            file,
            path: path.to_owned(),
            writable,
        })
    }

    /// Creates a new file; fails if it exists.
    pub fn create_new(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(FileStorage {
            file,
            path: path.to_owned(),
            writable: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

fn read_only_error(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{name} is open read-only"),
    )
}

impl Storage for FileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if !self.writable {
            return Err(read_only_error(&self.name()));
        }
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(read_only_error(&self.name()));
        }
        self.file.set_len(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.writable {
            self.file.sync_data()
        } else {
            Ok(())
        }
    }

    fn is_read_only(&self) -> bool {
        !self.writable
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// Bytes in memory (tests, and read-only log replay of a dirty file).
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    pub bytes: Vec<u8>,
    pub name: String,
}

impl Storage for MemStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= self.bytes.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self.bytes[start..end]);
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + buf.len();
        if end > self.bytes.len() {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        self.bytes.resize(len, 0);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        false
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_storage_round_trip_and_read_only() {
        let dir = std::env::temp_dir().join(format!("vssim-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.bin");
        let _ = std::fs::remove_file(&p);
        let mut s = FileStorage::create_new(&p).unwrap();
        s.write_at(b"hello", 10).unwrap();
        assert_eq!(s.len().unwrap(), 15);
        let mut buf = [0u8; 5];
        s.read_at(&mut buf, 10).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(s.read_at(&mut buf, 12).is_err());
        let mut ro = FileStorage::open(&p, false).unwrap();
        assert!(ro.write_at(b"x", 0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mem_storage_grows() {
        let mut m = MemStorage::default();
        m.write_at(b"ab", 3).unwrap();
        assert_eq!(m.bytes, vec![0, 0, 0, b'a', b'b']);
        let mut b = [0u8; 3];
        assert!(m.read_at(&mut b, 3).is_err());
    }
}
