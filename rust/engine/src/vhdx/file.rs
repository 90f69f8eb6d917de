//! `Vhdx`: one open VHDX file (and, for a differencing disk, its chain of parents) — its state,
//! properties and reads. Opening lives in `open.rs`, writing and the log commit in `write.rs`.
//!
//! Reads go block by block through the BAT; writes put payload data in place (allocating new
//! blocks at the end of the file, 1 MiB aligned) and keep BAT changes in memory as dirty 4 KiB
//! pages. `flush` (and `close`, and a full batch) commits them through the log: data made durable
//! first, then one log entry, then the pages in place. A write that returned before a `flush`
//! survives any crash; a clean `close` leaves LogGuid zero.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::bat::{self, Geometry};
use super::error::{VResult, VhdxError};
use super::format::*;
use super::header::Header;
use super::lock::{FileId, FileLock};
use super::metadata::Metadata;
use super::parent::Chain;
use super::paths::Input;
use super::region::RegionTable;
use super::DiskType;
use crate::storage::Storage;

/// How to open a file.
#[derive(Default)]
pub struct OpenOptions {
    pub writable: bool,
    /// Follow a parent locator entry that leads outside the confinement directory (see
    /// `parent.rs`: relative, volume and absolute paths alike).
    pub allow_parent_escape: bool,
    /// Use this parent instead of resolving the locator (its linkage is still checked).
    pub parent: Option<Box<Vhdx>>,
    /// Directory the parent locator's relative path is resolved from (default: the file's).
    pub base_dir: Option<PathBuf>,
    /// Directory every parent of the chain must lie in (default: each child's own directory).
    pub parent_root: Option<PathBuf>,
    /// The files already open above this one when it is opened as a parent (the engine sets
    /// it; leave the default).
    pub chain: Chain,
    /// The file's identity, when it is a file (set by `open_with`).
    pub file_id: Option<FileId>,
    /// `open_with`: the file's flushes do not sync it, a replay at open included (see
    /// [`Vhdx::set_durable`]): for a file made durable as a whole once complete.
    pub unsynced: bool,
}

pub struct Vhdx {
    pub(crate) st: Box<dyn Storage>,
    pub(crate) name: String,
    pub(crate) path: Option<PathBuf>,
    /// The file's identity (device and inode), when it is a file.
    pub(crate) id: Option<FileId>,
    /// The advisory lock held while the disk is open (see `lock.rs`).
    pub(crate) lock: Option<FileLock>,
    pub(crate) writable: bool,
    pub(crate) header: Header,
    pub(crate) header_slot: usize,
    pub(crate) regions: RegionTable,
    pub(crate) meta: Metadata,
    pub(crate) geo: Geometry,
    pub(crate) bat_offset: u64,
    pub(crate) bat: Vec<u64>,
    pub(crate) dirty_pages: BTreeSet<u64>,
    pub(crate) bitmaps: HashMap<u64, Vec<u8>>,
    pub(crate) parent: Option<Box<Vhdx>>,
    pub(crate) parent_path: Option<PathBuf>,
    pub(crate) file_end: u64,
    pub(crate) session_started: bool,
    pub(crate) log_seq: u64,
    pub(crate) log_pos: u64,
    pub(crate) closed: bool,
    /// Set when a metadata update failed after its log entry became durable: the file on disk
    /// is only consistent through that log, so the disk refuses further use and its close
    /// writes nothing (a clean close would drop the log); the next open replays it.
    pub(crate) failed: Option<String>,
    /// Write-through metadata: every `write`/`trim` that changed the BAT commits it through the
    /// log before returning (see [`Vhdx::set_commit_each_write`]).
    pub(crate) commit_each_write: bool,
    /// Whether opening replayed a pending log.
    pub replayed_log: bool,
}

/// A zeroed buffer of `len` bytes sized from the file, refused cleanly when memory is short.
pub(crate) fn buffer(name: &str, what: &str, len: usize) -> VResult<Vec<u8>> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        VhdxError::io(
            name,
            std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("cannot allocate {len} bytes for the {what}"),
            ),
        )
    })?;
    v.resize(len, 0);
    Ok(v)
}

pub(super) fn rd(st: &dyn Storage, name: &str, off: u64, len: usize) -> VResult<Vec<u8>> {
    let mut b = buffer(name, "read", len)?;
    st.read_at(&mut b, off)
        .map_err(|e| VhdxError::io(name, e))?;
    Ok(b)
}

/// Reads up to `len` bytes at `off`; a short file gives a short buffer.
pub(super) fn rd_short(
    st: &dyn Storage,
    name: &str,
    off: u64,
    len: usize,
    file_len: u64,
) -> VResult<Vec<u8>> {
    let n = file_len.saturating_sub(off).min(len as u64) as usize;
    rd(st, name, off, n)
}

impl Vhdx {
    // ---- properties ----------------------------------------------------------------------

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
    pub fn virtual_size(&self) -> u64 {
        self.meta.virtual_size
    }
    pub fn block_size(&self) -> u64 {
        self.geo.block_size
    }
    pub fn logical_sector_size(&self) -> u32 {
        self.meta.logical_sector_size
    }
    pub fn physical_sector_size(&self) -> u32 {
        self.meta.physical_sector_size
    }
    pub fn disk_type(&self) -> DiskType {
        if self.meta.has_parent {
            DiskType::Differencing
        } else if self.meta.leave_block_allocated {
            DiskType::Fixed
        } else {
            DiskType::Dynamic
        }
    }
    pub fn virtual_disk_id(&self) -> Uuid {
        self.meta.disk_id
    }
    pub fn data_write_guid(&self) -> Uuid {
        self.header.data_write_guid
    }
    pub fn file_write_guid(&self) -> Uuid {
        self.header.file_write_guid
    }
    pub fn log_guid(&self) -> Uuid {
        self.header.log_guid
    }
    pub fn is_writable(&self) -> bool {
        self.writable && !self.closed
    }
    pub fn parent(&self) -> Option<&Vhdx> {
        self.parent.as_deref()
    }
    pub fn parent_path(&self) -> Option<&Path> {
        self.parent_path.as_deref()
    }
    pub fn parent_linkage(&self) -> Option<String> {
        self.meta
            .parent_locator
            .as_ref()
            .and_then(|l| l.get("parent_linkage"))
            .map(str::to_owned)
    }
    pub fn parent_locator(&self) -> Vec<(String, String)> {
        self.meta
            .parent_locator
            .as_ref()
            .map(|l| l.entries.clone())
            .unwrap_or_default()
    }
    pub fn geometry(&self) -> Geometry {
        self.geo
    }
    /// The payload BAT entry of block `block`.
    pub fn block_entry(&self, block: u64) -> u64 {
        self.bat
            .get(self.geo.pb_index(block) as usize)
            .copied()
            .unwrap_or(0)
    }
    /// Every file this disk reads (itself, then its parents), for the output rule.
    pub fn inputs(&self) -> Vec<Input> {
        let mut out = Vec::new();
        let mut d = Some(self);
        while let Some(v) = d {
            if let Some(id) = v.id {
                out.push(Input {
                    name: v.name.clone(),
                    id,
                });
            }
            d = v.parent.as_deref();
        }
        out
    }
    pub fn file_length(&self) -> VResult<u64> {
        self.st.len().map_err(|e| self.io(e))
    }

    pub(crate) fn io(&self, e: std::io::Error) -> VhdxError {
        VhdxError::io(&self.name, e)
    }

    pub(crate) fn check_range(&self, offset: u64, len: u64) -> VResult<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.meta.virtual_size => Ok(()),
            _ => Err(VhdxError::invalid(
                "offset",
                format!(
                    "range [{offset}, {offset} + {len}) ends past the virtual disk size {}",
                    self.meta.virtual_size
                ),
            )),
        }
    }

    pub(crate) fn check_open(&self) -> VResult<()> {
        if let Some(why) = &self.failed {
            return Err(VhdxError::state(
                &self.name,
                format!(
                    "a metadata update failed ({why}); close and reopen the disk: opening it \
                     replays its log"
                ),
            ));
        }
        if self.closed {
            return Err(VhdxError::state(&self.name, "the disk is closed"));
        }
        Ok(())
    }

    // ---- reading -------------------------------------------------------------------------

    /// Reads `buf.len()` bytes at virtual `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> VResult<()> {
        self.check_open()?;
        self.check_range(offset, buf.len() as u64)?;
        let bs = self.geo.block_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = pos / bs;
            let in_block = pos % bs;
            let n = ((bs - in_block) as usize).min(buf.len() - done);
            self.read_in_block(block, in_block, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn read_parent(&self, offset: u64, buf: &mut [u8]) -> VResult<()> {
        match &self.parent {
            Some(p) => p.read(offset, buf),
            None => {
                buf.fill(0);
                Ok(())
            }
        }
    }

    fn read_in_block(&self, block: u64, in_block: u64, buf: &mut [u8]) -> VResult<()> {
        let e = self.block_entry(block);
        let vpos = block * self.geo.block_size + in_block;
        match bat::state(e) {
            bat::PB_FULLY_PRESENT => self
                .st
                .read_at(buf, bat::offset(e) + in_block)
                .map_err(|e| self.io(e)),
            bat::PB_PARTIALLY_PRESENT => {
                let ss = self.geo.sector_size;
                let first = in_block / ss;
                let last = (in_block + buf.len() as u64 - 1) / ss;
                let bits = self.bitmap_bits(block, first, last - first + 1)?;
                // Runs of sectors from this file (bit 1) or the parent (bit 0).
                let mut s = first;
                while s <= last {
                    let own = bits[(s - first) as usize];
                    let mut t = s;
                    while t <= last && bits[(t - first) as usize] == own {
                        t += 1;
                    }
                    let lo = (s * ss).max(in_block);
                    let hi = (t * ss).min(in_block + buf.len() as u64);
                    let dst = &mut buf[(lo - in_block) as usize..(hi - in_block) as usize];
                    if own {
                        self.st
                            .read_at(dst, bat::offset(e) + lo)
                            .map_err(|e| self.io(e))?;
                    } else {
                        self.read_parent(vpos - in_block + lo, dst)?;
                    }
                    s = t;
                }
                Ok(())
            }
            bat::PB_NOT_PRESENT => self.read_parent(vpos, buf),
            _ => {
                buf.fill(0);
                Ok(())
            }
        }
    }

    pub(crate) fn bitmap_bits(&self, block: u64, first: u64, count: u64) -> VResult<Vec<bool>> {
        let chunk = block / self.geo.chunk_ratio;
        let (span_off, _) = self.geo.bitmap_span(block);
        let bit0 = span_off * 8 + first;
        let byte_lo = bit0 / 8;
        let byte_hi = (bit0 + count).div_ceil(8);
        let bytes: Vec<u8> = if let Some(c) = self.bitmaps.get(&chunk) {
            c[byte_lo as usize..byte_hi as usize].to_vec()
        } else {
            let sb = self
                .bat
                .get(self.geo.sb_index(chunk) as usize)
                .copied()
                .unwrap_or(0);
            if bat::state(sb) != bat::SB_PRESENT {
                return Err(VhdxError::corrupt(
                    &self.name,
                    "BAT entry",
                    "State",
                    self.bat_offset + self.geo.sb_index(chunk) * 8,
                    "SB_BLOCK_PRESENT for a chunk with a PARTIALLY_PRESENT block",
                    bat::state_name(bat::state(sb), true),
                ));
            }
            rd(
                self.st.as_ref(),
                &self.name,
                bat::offset(sb) + byte_lo,
                (byte_hi - byte_lo) as usize,
            )?
        };
        Ok((0..count)
            .map(|i| {
                let b = bit0 + i - byte_lo * 8;
                bytes[(b / 8) as usize] >> (b % 8) & 1 == 1
            })
            .collect())
    }

    pub(crate) fn from_parts(
        st: Box<dyn Storage>,
        header: Header,
        regions: RegionTable,
        meta: Metadata,
        bat_offset: u64,
        bat: Vec<u64>,
        parent: Option<Box<Vhdx>>,
    ) -> VResult<Vhdx> {
        let name = st.name();
        let file_len = st.len().map_err(|e| VhdxError::io(&name, e))?;
        let geo = Geometry::new(
            meta.virtual_size,
            u64::from(meta.block_size),
            u64::from(meta.logical_sector_size),
            meta.has_parent,
        );
        Ok(Vhdx {
            st,
            name,
            path: None,
            id: None,
            lock: None,
            writable: true,
            header,
            header_slot: 1,
            regions,
            meta,
            geo,
            bat_offset,
            bat,
            dirty_pages: BTreeSet::new(),
            bitmaps: HashMap::new(),
            parent,
            parent_path: None,
            file_end: round_up(file_len, ALIGN),
            session_started: true,
            log_seq: 1,
            log_pos: 0,
            closed: false,
            failed: None,
            commit_each_write: false,
            replayed_log: false,
        })
    }
}

impl Drop for Vhdx {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
