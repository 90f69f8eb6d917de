//! A read-only view of a file with its pending log applied in memory: what a read-only open of a
//! dirty file reads, without writing a byte to it.

use std::collections::BTreeMap;
use std::io;

use crate::storage::Storage;

pub struct ReplayedStorage {
    pub inner: Box<dyn Storage>,
    /// 4 KiB-aligned file offset → the sector the log puts there.
    pub sectors: BTreeMap<u64, Vec<u8>>,
    pub len: u64,
}

impl Storage for ReplayedStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let inner_len = self.inner.len()?;
        if offset < inner_len {
            let n = (inner_len - offset).min(buf.len() as u64) as usize;
            self.inner.read_at(&mut buf[..n], offset)?;
            buf[n..].fill(0);
        } else {
            buf.fill(0);
        }
        let first = offset - offset % 4096;
        for (&s, data) in self.sectors.range(first..end) {
            let lo = s.max(offset);
            let hi = (s + data.len() as u64).min(end);
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&data[(lo - s) as usize..(hi - s) as usize]);
            }
        }
        Ok(())
    }

    fn write_at(&mut self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is open read-only", self.inner.name()),
        ))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.write_at(&[], len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        self.inner.name()
    }
}
