//! Writing: payload data in place (new blocks at the end of the file, 1 MiB aligned), sector
//! bitmaps of differencing disks, trim, and the BAT changes kept as dirty pages until `commit`
//! puts them through the log (data durable first, then the entry, then the pages in place).

use uuid::Uuid;

use super::bat;
use super::error::{VResult, VhdxError};
use super::file::{rd, Vhdx};
use super::format::*;
use super::header::Header;
use super::log;

impl Vhdx {
    // ---- writing -------------------------------------------------------------------------

    fn check_writable(&self) -> VResult<()> {
        self.check_open()?;
        if !self.writable {
            return Err(VhdxError::state(&self.name, "the disk is open read-only"));
        }
        Ok(())
    }

    /// Writes both headers (the non-current slot first), each made durable.
    pub(crate) fn write_headers(&mut self, mut h: Header) -> VResult<()> {
        for _ in 0..2 {
            let slot = 1 - self.header_slot;
            h.sequence = self.header.sequence + 1;
            self.st
                .write_at(&h.to_bytes(), HEADER_OFFSETS[slot])
                .map_err(|e| self.io(e))?;
            self.st.flush().map_err(|e| self.io(e))?;
            self.header = h.clone();
            self.header_slot = slot;
        }
        Ok(())
    }

    /// Before the first change of a session: new FileWriteGuid and DataWriteGuid.
    fn begin_change(&mut self) -> VResult<()> {
        self.check_writable()?;
        if !self.session_started {
            let mut h = self.header.clone();
            h.file_write_guid = Uuid::new_v4();
            h.data_write_guid = Uuid::new_v4();
            self.write_headers(h)?;
            self.session_started = true;
        }
        Ok(())
    }

    fn alloc(&mut self, len: u64) -> VResult<u64> {
        let at = self.file_end;
        self.file_end = at + len;
        self.st.set_len(self.file_end).map_err(|e| self.io(e))?;
        Ok(at)
    }

    fn set_bat(&mut self, index: u64, entry: u64) -> VResult<()> {
        self.bat[index as usize] = entry;
        self.dirty_pages.insert(index * 8 / 4096);
        if self.dirty_pages.len() as u64 >= self.max_pages_per_entry() {
            self.commit()?;
        }
        Ok(())
    }

    fn max_pages_per_entry(&self) -> u64 {
        let ring = u64::from(self.header.log_length) / LOG_SECTOR;
        (ring / 3).saturating_sub(1).clamp(1, 120)
    }

    /// Write-through metadata mode (off by default): when on, every `write` and `trim` that
    /// allocated blocks (dirtied BAT pages) commits them through the log before it returns — one
    /// log entry per call, then the pages in place — as Hyper-V must before it acknowledges an
    /// allocating write. Off, BAT pages stay dirty until `flush`, `close` or a full batch.
    /// Turning it on commits what is pending.
    pub fn set_commit_each_write(&mut self, on: bool) -> VResult<()> {
        self.check_open()?;
        self.commit_each_write = on;
        if on && self.writable {
            self.commit()?;
        }
        Ok(())
    }

    pub fn commit_each_write(&self) -> bool {
        self.commit_each_write
    }

    /// Writes `data` at virtual `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> VResult<()> {
        self.write_unsynced(offset, data)?;
        if self.commit_each_write {
            self.commit()?;
        }
        Ok(())
    }

    fn write_unsynced(&mut self, offset: u64, data: &[u8]) -> VResult<()> {
        self.check_writable()?;
        self.check_range(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        self.begin_change()?;
        // Writes land in whole logical sectors; in a differencing disk in whole bitmap bytes
        // (8 sectors), so that every run of a sector bitmap starts on a byte boundary. The
        // bytes added around the caller's data are the disk's current contents.
        let ss = self.geo.sector_size;
        let unit = if self.meta.has_parent { 8 * ss } else { ss };
        let end = offset + data.len() as u64;
        let lo = offset - offset % unit;
        let hi = round_up(end, unit).min(self.meta.virtual_size);
        if lo == offset && hi == end {
            return self.write_aligned(offset, data);
        }
        let mut buf = vec![0u8; (hi - lo) as usize];
        let head = unit.min(hi - lo) as usize;
        self.read(lo, &mut buf[..head])?;
        let tail_start = ((end - 1) - (end - 1) % unit).max(lo);
        self.read(tail_start, &mut buf[(tail_start - lo) as usize..])?;
        buf[(offset - lo) as usize..(end - lo) as usize].copy_from_slice(data);
        self.write_aligned(lo, &buf)
    }

    fn write_aligned(&mut self, offset: u64, data: &[u8]) -> VResult<()> {
        let bs = self.geo.block_size;
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let block = pos / bs;
            let in_block = pos % bs;
            let n = ((bs - in_block) as usize).min(data.len() - done);
            self.write_in_block(block, in_block, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn write_in_block(&mut self, block: u64, in_block: u64, data: &[u8]) -> VResult<()> {
        let idx = self.geo.pb_index(block);
        let e = self.bat[idx as usize];
        let bs = self.geo.block_size;
        match bat::state(e) {
            bat::PB_FULLY_PRESENT => self
                .st
                .write_at(data, bat::offset(e) + in_block)
                .map_err(|e| self.io(e)),
            bat::PB_PARTIALLY_PRESENT => {
                self.st
                    .write_at(data, bat::offset(e) + in_block)
                    .map_err(|e| self.io(e))?;
                self.set_bits(block, in_block, data.len() as u64, false)?;
                if self.block_fully_set(block) {
                    self.set_bat(idx, bat::entry(bat::PB_FULLY_PRESENT, bat::offset(e)))?;
                }
                Ok(())
            }
            s => {
                let full = in_block == 0 && data.len() as u64 == bs;
                let off = self.alloc(bs)?;
                self.st
                    .write_at(data, off + in_block)
                    .map_err(|e| self.io(e))?;
                if self.meta.has_parent && s == bat::PB_NOT_PRESENT && !full {
                    self.set_bits(block, in_block, data.len() as u64, true)?;
                    self.set_bat(idx, bat::entry(bat::PB_PARTIALLY_PRESENT, off))
                } else {
                    self.set_bat(idx, bat::entry(bat::PB_FULLY_PRESENT, off))
                }
            }
        }
    }

    fn load_bitmap(&mut self, chunk: u64) -> VResult<()> {
        if self.bitmaps.contains_key(&chunk) {
            return Ok(());
        }
        let sbi = self.geo.sb_index(chunk);
        let sb = self.bat[sbi as usize];
        let bytes = if bat::state(sb) == bat::SB_PRESENT {
            rd(self.st.as_ref(), &self.name, bat::offset(sb), MIB as usize)?
        } else {
            let off = self.alloc(MIB)?;
            self.set_bat(sbi, bat::entry(bat::SB_PRESENT, off))?;
            vec![0u8; MIB as usize]
        };
        self.bitmaps.insert(chunk, bytes);
        Ok(())
    }

    /// Sets the bits of `[in_block, in_block + len)` of `block` (clearing the block's other bits
    /// first when `fresh`) and writes the changed bitmap bytes.
    fn set_bits(&mut self, block: u64, in_block: u64, len: u64, fresh: bool) -> VResult<()> {
        let chunk = block / self.geo.chunk_ratio;
        self.load_bitmap(chunk)?;
        let (span_off, span_len) = self.geo.bitmap_span(block);
        let ss = self.geo.sector_size;
        let sb_off = bat::offset(self.bat[self.geo.sb_index(chunk) as usize]);
        let Some(bm) = self.bitmaps.get_mut(&chunk) else {
            return Ok(());
        };
        let (lo, hi) = if fresh {
            bm[span_off as usize..(span_off + span_len) as usize].fill(0);
            (span_off, span_off + span_len)
        } else {
            let b0 = span_off * 8 + in_block / ss;
            let b1 = span_off * 8 + (in_block + len) / ss;
            (b0 / 8, b1.div_ceil(8))
        };
        let b0 = span_off * 8 + in_block / ss;
        let b1 = span_off * 8 + (in_block + len) / ss;
        let mut b = b0;
        while b < b1 {
            if b.is_multiple_of(8) && b + 8 <= b1 {
                bm[(b / 8) as usize] = 0xFF;
                b += 8;
            } else {
                bm[(b / 8) as usize] |= 1 << (b % 8);
                b += 1;
            }
        }
        let slice = bm[lo as usize..hi as usize].to_vec();
        self.st
            .write_at(&slice, sb_off + lo)
            .map_err(|e| self.io(e))
    }

    fn block_fully_set(&self, block: u64) -> bool {
        let chunk = block / self.geo.chunk_ratio;
        let (off, len) = self.geo.bitmap_span(block);
        self.bitmaps.get(&chunk).is_some_and(|bm| {
            bm[off as usize..(off + len) as usize]
                .iter()
                .all(|&b| b == 0xFF)
        })
    }

    /// Makes `[offset, offset + length)` read as zeros: whole blocks become PAYLOAD_BLOCK_ZERO
    /// (their space is released from the BAT), partial blocks get zeros written. A fixed disk
    /// keeps its blocks allocated and gets zeros written.
    pub fn trim(&mut self, offset: u64, length: u64) -> VResult<()> {
        self.trim_unsynced(offset, length)?;
        if self.commit_each_write {
            self.commit()?;
        }
        Ok(())
    }

    fn trim_unsynced(&mut self, offset: u64, length: u64) -> VResult<()> {
        self.check_writable()?;
        self.check_range(offset, length)?;
        if length == 0 {
            return Ok(());
        }
        self.begin_change()?;
        let bs = self.geo.block_size;
        let end = offset + length;
        let mut pos = offset;
        while pos < end {
            let block = pos / bs;
            let bstart = block * bs;
            let bend = (bstart + bs).min(self.meta.virtual_size);
            let seg_end = end.min(bstart + bs);
            let whole = pos == bstart && seg_end >= bend;
            let idx = self.geo.pb_index(block);
            let st = bat::state(self.bat[idx as usize]);
            if whole && self.meta.has_parent {
                // PAYLOAD_BLOCK_ZERO is what the spec offers, but libvhdi reads a child's ZERO
                // block from the parent: a fresh (sparse) zero-filled block reads as zeros
                // everywhere.
                let off = self.alloc(bs)?;
                self.set_bat(idx, bat::entry(bat::PB_FULLY_PRESENT, off))?;
            } else if whole && !self.meta.leave_block_allocated {
                if st != bat::PB_ZERO {
                    self.set_bat(idx, bat::entry(bat::PB_ZERO, 0))?;
                }
            } else {
                let unallocated_zero = matches!(st, 1 | 2 | 3 | 5)
                    || (st == bat::PB_NOT_PRESENT && self.parent.is_none());
                if !unallocated_zero {
                    let zeros = vec![0u8; (seg_end - pos).min(8 * MIB) as usize];
                    let mut p = pos;
                    while p < seg_end {
                        let n = (seg_end - p).min(zeros.len() as u64);
                        self.write_unsynced(p, &zeros[..n as usize])?;
                        p += n;
                    }
                }
            }
            pos = seg_end;
        }
        Ok(())
    }

    // ---- commit, flush, close ------------------------------------------------------------

    /// Commits dirty BAT pages through the log (data durable first).
    fn commit(&mut self) -> VResult<()> {
        if self.dirty_pages.is_empty() {
            return Ok(());
        }
        self.st.flush().map_err(|e| self.io(e))?;
        let pages: Vec<u64> = std::mem::take(&mut self.dirty_pages).into_iter().collect();
        let per = self.max_pages_per_entry() as usize;
        for group in pages.chunks(per) {
            let data: Vec<(u64, Vec<u8>)> = group
                .iter()
                .map(|&p| {
                    let mut b = vec![0u8; 4096];
                    for i in 0..512usize {
                        let v = self.bat.get(p as usize * 512 + i).copied().unwrap_or(0);
                        put_u64(&mut b, i * 8, v);
                    }
                    (self.bat_offset + p * 4096, b)
                })
                .collect();
            self.log_transaction(&data)?;
        }
        Ok(())
    }

    /// One log transaction: entry, flush, (LogGuid on first use), in-place writes, flush.
    pub(crate) fn log_transaction(&mut self, pages: &[(u64, Vec<u8>)]) -> VResult<()> {
        let ring = u64::from(self.header.log_length);
        if ring == 0 {
            for (off, b) in pages {
                self.st.write_at(b, *off).map_err(|e| self.io(e))?;
            }
            return self.st.flush().map_err(|e| self.io(e));
        }
        let refs: Vec<(u64, &[u8])> = pages.iter().map(|(o, b)| (*o, b.as_slice())).collect();
        let size = (log::desc_sectors(pages.len()) + pages.len()) as u64 * LOG_SECTOR;
        if self.log_pos + size > ring {
            self.log_pos = 0;
        }
        let fresh = self.header.log_guid.is_nil();
        let guid = if fresh {
            self.log_pos = 0;
            Uuid::new_v4()
        } else {
            self.header.log_guid
        };
        let len = self.st.len().map_err(|e| self.io(e))?;
        let entry = log::build_entry(&guid, self.log_seq, self.log_pos, len, len, &refs);
        self.st
            .write_at(&entry, self.header.log_offset + self.log_pos)
            .map_err(|e| self.io(e))?;
        self.st.flush().map_err(|e| self.io(e))?;
        // From here the entry may be the only durable copy of the update.
        let r = self.finish_transaction(fresh, guid, pages);
        if let Err(e) = &r {
            self.failed = Some(e.to_string());
        }
        r?;
        self.log_pos += size;
        self.log_seq += 1;
        Ok(())
    }

    fn finish_transaction(
        &mut self,
        fresh: bool,
        guid: Uuid,
        pages: &[(u64, Vec<u8>)],
    ) -> VResult<()> {
        if fresh {
            let mut h = self.header.clone();
            h.log_guid = guid;
            self.write_headers(h)?;
        }
        for (off, b) in pages {
            self.st.write_at(b, *off).map_err(|e| self.io(e))?;
        }
        self.st.flush().map_err(|e| self.io(e))
    }

    /// Makes every completed write durable (BAT changes go through the log).
    pub fn flush(&mut self) -> VResult<()> {
        self.check_open()?;
        if !self.writable {
            return Ok(());
        }
        self.commit()?;
        self.st.flush().map_err(|e| self.io(e))
    }

    /// Flushes and closes; a writable file is left with LogGuid zero.
    pub fn close(&mut self) -> VResult<()> {
        if self.closed {
            return Ok(());
        }
        if self.failed.is_some() {
            // Nothing more is written: the log on disk is what makes the file whole again.
            self.closed = true;
            if let Some(l) = self.lock.as_mut() {
                l.release();
            }
            return Ok(());
        }
        if self.writable {
            self.commit()?;
            if !self.header.log_guid.is_nil() {
                let mut h = self.header.clone();
                h.log_guid = Uuid::nil();
                self.write_headers(h)?;
            }
            self.st.flush().map_err(|e| self.io(e))?;
        }
        self.closed = true;
        if let Some(l) = self.lock.as_mut() {
            l.release();
        }
        if let Some(p) = self.parent.as_mut() {
            p.close()?;
        }
        Ok(())
    }

    /// Drops the file without the clean-close steps (tests of crash recovery).
    pub fn abandon(mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
