//! Merging a differencing disk into its parent, atomically: a crash at any instant leaves the
//! parent as it was (and the child still its valid child) or the parent merged — never a mix.
//!
//! How:
//! 1. *Write aside.* For every parent block the child touches, the block as the child reads it
//!    (the child's sectors over the parent's) is written into new space at the parent's end of
//!    file. Nothing the parent's BAT points at is written, so until step 3 the parent reads as
//!    before and the child still links to it. Data is made durable.
//! 2. *Log the switch.* The BAT pages that point those blocks at their new places go into one
//!    log sequence — several entries sharing one Tail, with a fresh LogGuid — written into a
//!    temporary log region after the new blocks (sized to hold the whole sequence, however many
//!    pages), and made durable. The header still names the old, empty log: the sequence is
//!    inert.
//! 3. *Commit.* One header write names the new log (LogGuid, LogOffset, LogLength) and a new
//!    DataWriteGuid and FileWriteGuid. A header is a single checksummed 4 KiB sector in a slot
//!    the current header does not occupy: torn, it is invalid and the old header stays current;
//!    whole, it is current, and any open replays the entire sequence (the spec's replay applies
//!    every entry from the head's Tail). This write is the instant the merge happens.
//! 4. *Apply and tidy.* The pages are written in place; the headers go back to the old log
//!    location with LogGuid zero; the temporary log is cut off the end of the file. A crash in
//!    this step is finished by the next open's replay (the parent then keeps the log at its end).
//!
//! The child is only read. After the merge it no longer opens (its parent_linkage names the old
//! DataWriteGuid): its data is in the parent, and it may be deleted. The parent grows by the
//! blocks the merge rewrote; the blocks they replace stay in the file, unused (vssim does not
//! compact a file). Space a killed merge wrote aside and never committed is given back by the
//! next merge (it cuts the file back to its last referenced byte first).

use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::bat;
use super::error::{VResult, VhdxError};
use super::file::{OpenOptions, Vhdx};
use super::format::*;
use super::header::Header;
use super::log;

/// Pages per entry of a merge's log sequence (an entry of 254 pages has 2 descriptor sectors:
/// 1 MiB in all).
const PAGES_PER_ENTRY: usize = 254;
/// Pieces a block is copied in.
const PIECE: u64 = 4 * MIB;

impl Vhdx {
    /// Merges the differencing disk at `child` into its parent and returns the parent's path.
    /// The parent is opened writable (locked exclusively: nobody may read it while it changes)
    /// and the child read-only; see the module doc for what a crash leaves.
    pub fn merge(child: &Path, allow_parent_escape: bool) -> VResult<PathBuf> {
        let ro = |parent: Option<Box<Vhdx>>| OpenOptions {
            allow_parent_escape,
            parent,
            ..OpenOptions::default()
        };
        // The chain as the child sees it, validated whole; then its locks are let go.
        let ppath = {
            let c = Vhdx::open_with(child, ro(None))?;
            let Some(p) = c.parent_path().map(Path::to_path_buf) else {
                return Err(VhdxError::invalid(
                    "child",
                    format!("{} is not a differencing disk", c.name()),
                ));
            };
            p
        };
        let parent = Vhdx::open_with(
            &ppath,
            OpenOptions {
                writable: true,
                allow_parent_escape,
                ..OpenOptions::default()
            },
        )?;
        let mut c = Vhdx::open_with(child, ro(Some(Box::new(parent))))?;
        c.merge_into_parent()?;
        Ok(ppath)
    }

    /// Merges this differencing disk into its parent, which must be open writable (passed as
    /// `OpenOptions::parent`), and closes the parent.
    pub fn merge_into_parent(&mut self) -> VResult<()> {
        self.merge_into_parent_with(PAGES_PER_ENTRY)
    }

    /// [`Vhdx::merge_into_parent`] with at most `pages_per_entry` BAT pages per log entry (tests
    /// use 1 to make a small merge's sequence several entries long).
    #[doc(hidden)]
    pub fn merge_into_parent_with(&mut self, pages_per_entry: usize) -> VResult<()> {
        self.check_open()?;
        let Some(p) = self.parent.as_deref() else {
            return Err(VhdxError::invalid(
                "child",
                format!("{} is not a differencing disk", self.name),
            ));
        };
        if !p.is_writable() {
            return Err(VhdxError::state(
                &p.name,
                "the parent must be open writable to merge into it",
            ));
        }
        if !p.header.log_guid.is_nil() || !p.dirty_pages.is_empty() {
            return Err(VhdxError::state(
                &p.name,
                "the parent has uncommitted changes: flush it before merging into it",
            ));
        }
        let changes = self.write_aside()?;
        let p = self.parent_mut()?;
        if !changes.is_empty() {
            p.switch_blocks(&changes, pages_per_entry.max(1))?;
        }
        p.close()
    }

    fn parent_mut(&mut self) -> VResult<&mut Vhdx> {
        let name = self.name.clone();
        self.parent
            .as_deref_mut()
            .ok_or_else(|| VhdxError::invalid("child", format!("{name} has no parent")))
    }

    /// Step 1: every parent block the child touches, as the child reads it, into new space.
    /// Returns the BAT changes (index, entry) that would point the parent at them.
    fn write_aside(&mut self) -> VResult<Vec<(u64, u64)>> {
        let (pbs, pgeo, fixed, differencing) = {
            let p = self.parent_mut()?;
            p.reclaim_tail()?;
            (
                p.geo.block_size,
                p.geo,
                p.meta.leave_block_allocated,
                p.meta.has_parent,
            )
        };
        let vs = self.meta.virtual_size;
        let cbs = self.geo.block_size;
        let mut buf = vec![0u8; PIECE.min(pbs) as usize];
        let mut changes = Vec::new();
        for b in 0..pgeo.payload_blocks {
            let start = b * pbs;
            let end = (start + pbs).min(vs);
            let touched = (start / cbs..=(end - 1) / cbs)
                .any(|cb| bat::state(self.block_entry(cb)) != bat::PB_NOT_PRESENT);
            if !touched {
                continue;
            }
            let mut at: Option<u64> = None;
            let mut pos = start;
            while pos < end {
                let n = (end - pos).min(PIECE) as usize;
                self.read(pos, &mut buf[..n])?;
                if buf[..n].iter().any(|&x| x != 0) {
                    let p = self.parent_mut()?;
                    let base = match at {
                        Some(a) => a,
                        None => {
                            let a = p.alloc_aside(pbs)?;
                            at = Some(a);
                            a
                        }
                    };
                    p.st.write_at(&buf[..n], base + (pos - start))
                        .map_err(|e| p.io(e))?;
                }
                pos += n as u64;
            }
            let entry = match at {
                Some(a) => bat::entry(bat::PB_FULLY_PRESENT, a),
                // All zeros: a dynamic disk says so without space; a fixed disk keeps every
                // block allocated, and a differencing parent's ZERO block would read through
                // to its own parent in libvhdi — both get a fresh block (sparse, zeros).
                None if !fixed && !differencing => bat::entry(bat::PB_ZERO, 0),
                None => bat::entry(bat::PB_FULLY_PRESENT, self.parent_mut()?.alloc_aside(pbs)?),
            };
            changes.push((pgeo.pb_index(b), entry));
        }
        let p = self.parent_mut()?;
        p.st.flush().map_err(|e| p.io(e))?;
        Ok(changes)
    }

    /// New space at the end of the file that no BAT entry points at (yet).
    fn alloc_aside(&mut self, len: u64) -> VResult<u64> {
        let at = self.file_end;
        self.file_end = at + len;
        self.st.set_len(self.file_end).map_err(|e| self.io(e))?;
        Ok(at)
    }

    /// Cuts the file back to its last referenced byte (BAT blocks, regions, the log): what a
    /// killed merge or session wrote past it was never committed and nothing reads it.
    fn reclaim_tail(&mut self) -> VResult<()> {
        let mut end = ALIGN;
        for (i, &e) in self.bat.iter().enumerate() {
            let s = bat::state(e);
            let is_sb = self.geo.is_sb_index(i as u64);
            let len = if is_sb { MIB } else { self.geo.block_size };
            if (is_sb && s == bat::SB_PRESENT)
                || (!is_sb && matches!(s, bat::PB_FULLY_PRESENT | bat::PB_PARTIALLY_PRESENT))
            {
                end = end.max(bat::offset(e) + len);
            }
        }
        for r in &self.regions.entries {
            end = end.max(r.file_offset + u64::from(r.length));
        }
        end = end.max(self.header.log_offset + u64::from(self.header.log_length));
        let end = round_up(end, ALIGN);
        let len = self.st.len().map_err(|e| self.io(e))?;
        if len > end {
            self.st.set_len(end).map_err(|e| self.io(e))?;
        }
        self.file_end = round_up(len.min(end), ALIGN);
        Ok(())
    }

    /// Steps 2–4: log the BAT changes as one sequence in a temporary log at the end of the
    /// file, commit with one header write, apply, restore the log location, cut the temporary
    /// log off.
    fn switch_blocks(&mut self, changes: &[(u64, u64)], pages_per_entry: usize) -> VResult<()> {
        let mut new_bat: Vec<u64> = Vec::new();
        new_bat.try_reserve_exact(self.bat.len()).map_err(|_| {
            VhdxError::io(
                &self.name,
                std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    "cannot hold a second copy of the BAT for the merge",
                ),
            )
        })?;
        new_bat.extend_from_slice(&self.bat);
        let mut pages: Vec<u64> = Vec::new();
        for &(i, e) in changes {
            new_bat[i as usize] = e;
            let page = i * 8 / LOG_SECTOR;
            if pages.last() != Some(&page) {
                pages.push(page);
            }
        }
        pages.dedup();
        let groups: Vec<&[u64]> = pages.chunks(pages_per_entry).collect();
        let sectors: u64 = groups
            .iter()
            .map(|g| (log::desc_sectors(g.len()) + g.len()) as u64)
            .sum();
        let ring_len = round_up(sectors * LOG_SECTOR, ALIGN);
        if ring_len > u64::from(u32::MAX) {
            return Err(VhdxError::state(
                &self.name,
                format!(
                    "a merge of {} BAT pages needs a log longer than 4 GiB",
                    pages.len()
                ),
            ));
        }
        let ring_off = round_up(self.file_end, ALIGN);
        let end = ring_off + ring_len;
        let guid = Uuid::new_v4();
        let mut pos = 0u64;
        for (k, g) in groups.iter().enumerate() {
            let data: Vec<(u64, Vec<u8>)> = g
                .iter()
                .map(|&p| (self.bat_offset + p * LOG_SECTOR, bat_page(&new_bat, p)))
                .collect();
            let refs: Vec<(u64, &[u8])> = data.iter().map(|(o, b)| (*o, b.as_slice())).collect();
            let entry = log::build_entry(&guid, k as u64 + 1, 0, end, end, &refs);
            self.st
                .write_at(&entry, ring_off + pos)
                .map_err(|e| self.io(e))?;
            pos += entry.len() as u64;
        }
        if self.st.len().map_err(|e| self.io(e))? < end {
            self.st.set_len(end).map_err(|e| self.io(e))?;
        }
        self.st.flush().map_err(|e| self.io(e))?;
        // The commit: one header names the sequence and the new data.
        let old = self.header.clone();
        let r = self.commit_switch(old, guid, ring_off, ring_len, &pages, new_bat);
        if let Err(e) = &r {
            // The header may name the new log: only a replay may finish (or undo) this now.
            self.failed = Some(e.to_string());
        }
        r
    }

    /// Steps 3 and 4 of the merge.
    fn commit_switch(
        &mut self,
        old: Header,
        guid: Uuid,
        ring_off: u64,
        ring_len: u64,
        pages: &[u64],
        new_bat: Vec<u64>,
    ) -> VResult<()> {
        let mut h = old.clone();
        h.log_guid = guid;
        h.log_offset = ring_off;
        h.log_length = ring_len as u32;
        h.data_write_guid = Uuid::new_v4();
        h.file_write_guid = Uuid::new_v4();
        self.write_headers(h)?;
        self.session_started = true;
        for &p in pages {
            self.st
                .write_at(&bat_page(&new_bat, p), self.bat_offset + p * LOG_SECTOR)
                .map_err(|e| self.io(e))?;
        }
        self.st.flush().map_err(|e| self.io(e))?;
        self.bat = new_bat;
        let mut h = self.header.clone();
        h.log_guid = Uuid::nil();
        h.log_offset = old.log_offset;
        h.log_length = old.log_length;
        self.write_headers(h)?;
        self.st.set_len(ring_off).map_err(|e| self.io(e))?;
        self.st.flush().map_err(|e| self.io(e))?;
        self.file_end = ring_off;
        Ok(())
    }
}

/// BAT page `p` (4 KiB, 512 entries) of `bat`.
fn bat_page(bat: &[u64], p: u64) -> Vec<u8> {
    let mut b = vec![0u8; LOG_SECTOR as usize];
    for k in 0..512usize {
        let v = bat.get(p as usize * 512 + k).copied().unwrap_or(0);
        put_u64(&mut b, k * 8, v);
    }
    b
}
