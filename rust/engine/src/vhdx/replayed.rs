//! A read-only view of a file with its pending log applied in memory: what a read-only open of a
//! dirty file reads, without writing a byte to it.

use std::io;

use crate::storage::Storage;

pub struct ReplayedStorage {
    pub inner: Box<dyn Storage>,
    /// The log's writes in replay order: file offset, length, and the bytes (`None`: zeros).
    pub writes: Vec<(u64, u64, Option<Vec<u8>>)>,
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
        for (at, len, data) in &self.writes {
            let lo = (*at).max(offset);
            let hi = at.saturating_add(*len).min(end);
            if lo < hi {
                let dst = &mut buf[(lo - offset) as usize..(hi - offset) as usize];
                match data {
                    Some(d) => dst.copy_from_slice(&d[(lo - at) as usize..(hi - at) as usize]),
                    None => dst.fill(0),
                }
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
