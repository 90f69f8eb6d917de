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
    /// Whether `flush` makes writes durable (the default). Off, `flush` only orders nothing and
    /// returns: for files made durable as a whole later (one `fsync` when they are complete).
    /// Storage that cannot skip its syncs ignores this.
    fn set_sync(&mut self, _on: bool) {}
    /// Ranges `(offset, length)`, ascending and disjoint, outside which every byte of the storage
    /// reads as zero — the data a sparse file holds — or `None` when the storage cannot tell (then
    /// any byte may be data). A range may hold zeros too: it is where data *may* be.
    fn data_extents(&self) -> io::Result<Option<Vec<(u64, u64)>>> {
        Ok(None)
    }
}

/// The data extents of `file` below `len`, by `SEEK_DATA`/`SEEK_HOLE` (see
/// [`Storage::data_extents`]); a file system that cannot tell gives one extent over it all. Moves
/// the file's cursor (every read here is positional).
pub fn file_data_extents(file: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    use rustix::fs::{seek, SeekFrom};
    use rustix::io::Errno;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let start = match seek(file, SeekFrom::Data(pos)) {
            Ok(p) => p,
            // No data at or after `pos`.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::NOTSUP) => return Ok(vec![(0, len)]),
            Err(e) => return Err(e.into()),
        };
        if start >= len {
            break;
        }
        let end = match seek(file, SeekFrom::Hole(start)) {
            Ok(p) => p.min(len),
            Err(Errno::NXIO) => len,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            // A file that changed under us: say everything from here may be data.
            out.push((start, len - start));
            break;
        }
        out.push((start, end - start));
        pos = end;
    }
    Ok(out)
}

/// Reads `buf.len()` bytes at `pos` of `file` as `read_exact_at` does, but the file's holes
/// (`SEEK_DATA`/`SEEK_HOLE`) are zeroed here rather than read: the kernel reads a hole by
/// zero-filling a page-cache page for every page of it, which was most of what an incremental
/// backup's reads of a sparse VHDX cost (measured with `benches/bench_materialized_run.py`). Where
/// the file system cannot tell, or nothing is data from some point on (a trailing hole, or the end
/// of the file: the kernel's read then says which), the rest is read as usual.
pub fn read_exact_skipping_holes(file: &File, buf: &mut [u8], pos: u64) -> io::Result<()> {
    use rustix::fs::{seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    let end = pos + buf.len() as u64;
    let at_ = |x: u64| (x - pos) as usize;
    let mut at = pos;
    while at < end {
        let data = match seek(file, SeekFrom::Data(at)) {
            Ok(d) if d >= at => d.min(end),
            _ => return file.read_exact_at(&mut buf[at_(at)..], at),
        };
        buf[at_(at)..at_(data)].fill(0);
        if data == end {
            break;
        }
        let hole = match seek(file, SeekFrom::Hole(data)) {
            Ok(h) if h > data => h.min(end),
            _ => end,
        };
        file.read_exact_at(&mut buf[at_(data)..at_(hole)], data)?;
        at = hole;
    }
    Ok(())
}

/// The parts of sorted, disjoint `extents` that fall inside `[start, end)`.
pub fn extents_within(
    extents: &[(u64, u64)],
    start: u64,
    end: u64,
) -> impl Iterator<Item = (u64, u64)> + '_ {
    let first = extents.partition_point(|&(o, n)| o + n <= start);
    extents[first..]
        .iter()
        .take_while(move |&&(o, _)| o < end)
        .map(move |&(o, n)| {
            let a = o.max(start);
            let b = (o + n).min(end);
            (a, b - a)
        })
        .filter(|&(_, n)| n > 0)
}

/// Sorts and merges ranges `(offset, length)` into ascending, disjoint ones.
pub fn merge_extents(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|&(_, n)| n > 0);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (o, n) in ranges {
        match out.last_mut() {
            Some((lo, ln)) if o <= *lo + *ln => *ln = (*ln).max(o + n - *lo),
            _ => out.push((o, n)),
        }
    }
    out
}

/// A plain file.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    writable: bool,
    /// `flush` syncs (see [`Storage::set_sync`]).
    sync: bool,
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
            sync: true,
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
            sync: true,
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
        if self.writable && self.sync {
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

    fn set_sync(&mut self, on: bool) {
        self.sync = on;
    }

    fn data_extents(&self) -> io::Result<Option<Vec<(u64, u64)>>> {
        file_data_extents(&self.file, self.len()?).map(Some)
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

    fn data_extents(&self) -> io::Result<Option<Vec<(u64, u64)>>> {
        // Runs of non-zero 4 KiB pieces: what a sparse file of these bytes would hold.
        const PIECE: usize = 4096;
        let ranges = self
            .bytes
            .chunks(PIECE)
            .enumerate()
            .filter(|(_, c)| c.iter().any(|&b| b != 0))
            .map(|(i, c)| ((i * PIECE) as u64, c.len() as u64))
            .collect();
        Ok(Some(merge_extents(ranges)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads through holes, data and the end of a sparse file: the same bytes as a plain read,
    /// and the same early end past the file's length.
    #[test]
    fn reads_skipping_holes_equal_plain_reads() {
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir().join(format!("vssim-holes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("sparse.bin");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let len = 8u64 << 20;
        f.set_len(len).unwrap();
        f.write_all_at(&[3u8; 5000], 1 << 20).unwrap();
        f.write_all_at(&[0u8; 4096], 3 << 20).unwrap();
        f.write_all_at(&[5u8; 70000], (6 << 20) - 100).unwrap();
        let mut whole = vec![0u8; len as usize];
        f.read_exact_at(&mut whole, 0).unwrap();
        for (pos, n) in [
            (0u64, len as usize),
            ((1 << 20) - 7, 9000),
            (2 << 20, 4096),
            ((6 << 20) - 5000, 200_000),
            (len - 10, 10),
            ((1 << 20) + 4999, 1),
        ] {
            let mut got = vec![0xAAu8; n];
            read_exact_skipping_holes(&f, &mut got, pos).unwrap();
            assert!(
                got[..] == whole[pos as usize..pos as usize + n],
                "at {pos}, {n} bytes"
            );
        }
        let mut past = vec![0u8; 20];
        let e = read_exact_skipping_holes(&f, &mut past, len - 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
    fn data_extents_of_a_sparse_file() {
        let dir = std::env::temp_dir().join(format!("vssim-extents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("sparse.bin");
        let _ = std::fs::remove_file(&p);
        let mut s = FileStorage::create_new(&p).unwrap();
        s.set_len(64 << 20).unwrap();
        s.write_at(&[1u8; 4096], 8 << 20).unwrap();
        s.write_at(&[2u8; 100], 40 << 20).unwrap();
        let ext = s.data_extents().unwrap().unwrap();
        // Every written byte is inside an extent; most of the file is not.
        for at in [8u64 << 20, (8 << 20) + 4095, 40 << 20, (40 << 20) + 99] {
            assert!(
                ext.iter().any(|&(o, n)| o <= at && at < o + n),
                "{at} not in {ext:?}"
            );
        }
        assert!(ext.iter().map(|e| e.1).sum::<u64>() < 4 << 20, "{ext:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn extent_helpers() {
        let m = merge_extents(vec![(10, 5), (0, 3), (12, 10), (3, 2), (30, 0)]);
        assert_eq!(m, vec![(0, 5), (10, 12)]);
        let w: Vec<_> = extents_within(&m, 4, 15).collect();
        assert_eq!(w, vec![(4, 1), (10, 5)]);
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
