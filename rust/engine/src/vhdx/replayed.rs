//! The file as its pending log would leave it, read without writing a byte: a borrowed view (what
//! open and check validate before any replay is written) and an owned one (what a read-only
//! open of a dirty file reads from).

use std::io;

use super::log::Overlay;
use crate::storage::Storage;

/// `inner` with `overlay` applied, borrowed.
pub struct View<'a> {
    pub inner: &'a dyn Storage,
    pub overlay: &'a Overlay,
}

fn read_only(name: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{name} is open read-only"),
    )
}

impl Storage for View<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.overlay.read(self.inner, buf, offset)
    }
    fn write_at(&mut self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(read_only(self.inner.name()))
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.overlay.len)
    }
    fn set_len(&mut self, _len: u64) -> io::Result<()> {
        Err(read_only(self.inner.name()))
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

/// `inner` with `overlay` applied, owned: a read-only open of a dirty file.
pub struct ReplayedStorage {
    pub inner: Box<dyn Storage>,
    pub overlay: Overlay,
}

impl Storage for ReplayedStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.overlay.read(self.inner.as_ref(), buf, offset)
    }
    fn write_at(&mut self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(read_only(self.inner.name()))
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.overlay.len)
    }
    fn set_len(&mut self, _len: u64) -> io::Result<()> {
        Err(read_only(self.inner.name()))
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

    fn data_extents(&self) -> io::Result<Option<Vec<(u64, u64)>>> {
        // The file's extents and the log's pages (zeroed ranges may only lose data).
        let Some(mut ranges) = self.inner.data_extents()? else {
            return Ok(None);
        };
        ranges.extend(self.overlay.data_ranges());
        let len = self.overlay.len;
        ranges.retain(|&(at, _)| at < len);
        for r in &mut ranges {
            r.1 = r.1.min(len - r.0);
        }
        Ok(Some(crate::storage::merge_extents(ranges)))
    }
}
