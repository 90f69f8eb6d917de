//! Writing backup files: copying runs of one disk's virtual content into another (what an
//! incremental backup does with the blocks change tracking recorded: read from the snapshot's
//! disk, written into a differencing child of the previous backup) in one call rather than one
//! per run; and files whose flushes do not sync, made durable as a whole once complete.

use super::error::VResult;
use super::file::Vhdx;
use super::format::MIB;

/// Bytes read and written per step.
const PIECE: u64 = 8 * MIB;

impl Vhdx {
    /// Whether this disk's flushes (and `close`) sync its file (the default). Off, the log
    /// protocol still orders every write but nothing is synced: for a file that is made durable
    /// as a whole once complete (`fsync`), before anything refers to it — a backup file before
    /// the backup's manifest lists it. A crash before then leaves a file that may not open.
    pub fn set_durable(&mut self, on: bool) {
        self.st.set_sync(on);
    }

    /// Writes into this disk what `source` reads in each run `(offset, length)` (ascending or
    /// not; every run inside both disks); returns the bytes copied. Runs are checked first: a bad
    /// one changes nothing.
    pub fn copy_runs_from(&mut self, source: &Vhdx, runs: &[(u64, u64)]) -> VResult<u64> {
        self.check_open()?;
        source.check_open()?;
        for &(off, len) in runs {
            source.check_range(off, len)?;
            self.check_range(off, len)?;
        }
        let biggest = runs.iter().map(|r| r.1).max().unwrap_or(0).min(PIECE);
        let mut buf = vec![0u8; biggest as usize];
        let mut copied = 0u64;
        for &(off, len) in runs {
            let mut pos = off;
            while pos < off + len {
                let n = (off + len - pos).min(PIECE) as usize;
                source.read(pos, &mut buf[..n])?;
                self.write(pos, &buf[..n])?;
                pos += n as u64;
                copied += n as u64;
            }
        }
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::MemStorage;
    use crate::vhdx::{create_on, CreateOptions};

    #[test]
    fn runs_are_copied_and_bad_runs_change_nothing() {
        let mem = || {
            Box::new(MemStorage {
                bytes: Vec::new(),
                name: "mem".into(),
            })
        };
        let size = 16 << 20;
        let mut a = create_on(mem(), &CreateOptions::dynamic(size), None, None).unwrap();
        a.write(1 << 20, &[5u8; 30000]).unwrap();
        a.write(9 << 20, &[6u8; 20 << 20 >> 4]).unwrap();
        let mut b = create_on(mem(), &CreateOptions::dynamic(size), None, None).unwrap();
        assert!(b.copy_runs_from(&a, &[(0, 4096), (size - 10, 11)]).is_err());
        assert_eq!(b.allocated_extents().unwrap(), vec![]);
        let n = b
            .copy_runs_from(&a, &[(9 << 20, 20 << 20 >> 4), (1 << 20, 30000)])
            .unwrap();
        assert_eq!(n, 30000 + (20 << 20 >> 4));
        let (mut x, mut y) = (vec![0u8; size as usize], vec![0u8; size as usize]);
        a.read(0, &mut x).unwrap();
        b.read(0, &mut y).unwrap();
        assert!(x == y);
    }
}
