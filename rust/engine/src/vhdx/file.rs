//! `Vhdx`: one open VHDX file (and, for a differencing disk, its chain of parents).
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
use super::header::{self, Header};
use super::log;
use super::metadata::Metadata;
use super::region::{self, RegionTable};
use super::replayed::ReplayedStorage;
use super::DiskType;
use crate::storage::{FileStorage, Storage};

/// How to open a file.
#[derive(Default)]
pub struct OpenOptions {
    pub writable: bool,
    /// Follow a parent `relative_path` that leaves the child's directory (`..\..`).
    pub allow_parent_escape: bool,
    /// Use this parent instead of resolving the locator (its linkage is still checked).
    pub parent: Option<Box<Vhdx>>,
    /// Directory the parent locator's relative path is resolved from (default: the file's).
    pub base_dir: Option<PathBuf>,
}

pub struct Vhdx {
    pub(crate) st: Box<dyn Storage>,
    pub(crate) name: String,
    pub(crate) path: Option<PathBuf>,
    pub(crate) writable: bool,
    pub(crate) header: Header,
    pub(crate) header_slot: usize,
    pub(crate) regions: RegionTable,
    pub(crate) meta: Metadata,
    pub(crate) geo: Geometry,
    pub(crate) bat_offset: u64,
    pub(crate) bat: Vec<u64>,
    dirty_pages: BTreeSet<u64>,
    bitmaps: HashMap<u64, Vec<u8>>,
    pub(crate) parent: Option<Box<Vhdx>>,
    pub(crate) parent_path: Option<PathBuf>,
    file_end: u64,
    session_started: bool,
    log_seq: u64,
    log_pos: u64,
    closed: bool,
    /// Whether opening replayed a pending log.
    pub replayed_log: bool,
}

fn rd(st: &dyn Storage, name: &str, off: u64, len: usize) -> VResult<Vec<u8>> {
    let mut b = vec![0u8; len];
    st.read_at(&mut b, off)
        .map_err(|e| VhdxError::io(name, e))?;
    Ok(b)
}

/// Reads up to `len` bytes at `off`; a short file gives a short buffer.
fn rd_short(st: &dyn Storage, name: &str, off: u64, len: usize, file_len: u64) -> VResult<Vec<u8>> {
    let n = file_len.saturating_sub(off).min(len as u64) as usize;
    rd(st, name, off, n)
}

impl Vhdx {
    /// Opens the file at `path` (read-only unless `writable`).
    pub fn open(path: &Path, writable: bool) -> VResult<Vhdx> {
        Self::open_with(
            path,
            OpenOptions {
                writable,
                ..OpenOptions::default()
            },
        )
    }

    pub fn open_with(path: &Path, mut opts: OpenOptions) -> VResult<Vhdx> {
        let name = path.display().to_string();
        let st = FileStorage::open(path, opts.writable).map_err(|e| VhdxError::io(&name, e))?;
        if opts.base_dir.is_none() {
            opts.base_dir = path.parent().map(Path::to_path_buf);
        }
        let mut v = Self::open_storage(Box::new(st), opts)?;
        v.path = Some(path.to_path_buf());
        Ok(v)
    }

    /// Opens a VHDX held by any storage (a file, a snapshot view, memory).
    pub fn open_storage(st: Box<dyn Storage>, opts: OpenOptions) -> VResult<Vhdx> {
        let name = st.name();
        let writable = opts.writable;
        if writable && st.is_read_only() {
            return Err(VhdxError::state(
                &name,
                "cannot open writable: storage is read-only",
            ));
        }
        let mut st = st;
        let file_len = st.len().map_err(|e| VhdxError::io(&name, e))?;
        let head = rd_short(st.as_ref(), &name, 0, 320 * 1024, file_len)?;
        if head.get(0..8) != Some(&FILE_ID_SIG[..]) {
            return Err(VhdxError::corrupt(
                &name,
                "file type identifier",
                "signature",
                0,
                "\"vhdxfile\"",
                sig(&head, 0, 8.min(head.len())),
            ));
        }
        let slot = |o: u64, l: usize| -> &[u8] {
            let s = (o as usize).min(head.len());
            &head[s..(s + l).min(head.len())]
        };
        let (hdr, hslot) = header::current(
            &name,
            [
                slot(HEADER_OFFSETS[0], HEADER_SIZE),
                slot(HEADER_OFFSETS[1], HEADER_SIZE),
            ],
        )?;
        let mut replayed_log = false;
        let mut hdr = hdr;
        let mut hslot = hslot;
        if !hdr.log_guid.is_nil() {
            let lend = hdr.log_offset.saturating_add(u64::from(hdr.log_length));
            if hdr.log_length == 0 || lend > file_len {
                return Err(VhdxError::corrupt(
                    &name,
                    "header",
                    "LogOffset",
                    HEADER_OFFSETS[hslot] + 72,
                    format!("a log inside the {file_len}-byte file"),
                    format!("log [{}, {lend})", hdr.log_offset),
                ));
            }
            let ring = rd(st.as_ref(), &name, hdr.log_offset, hdr.log_length as usize)?;
            let entries = log::active_sequence(&ring, &hdr.log_guid);
            if entries.is_empty() {
                return Err(VhdxError::corrupt(
                    &name,
                    "log",
                    "LogGuid",
                    HEADER_OFFSETS[hslot] + 48,
                    "a valid log sequence for a non-zero LogGuid",
                    format!("LogGuid {} and no valid entry", guid_braced(&hdr.log_guid)),
                ));
            }
            log::check_replayable(&name, &entries, file_len, hdr.log_offset)?;
            let last = entries
                .iter()
                .map(|e| e.last_file_offset)
                .max()
                .unwrap_or(0);
            replayed_log = true;
            if writable {
                for e in &entries {
                    for w in &e.writes {
                        match w {
                            log::LogWrite::Data { offset, bytes } => st.write_at(bytes, *offset),
                            log::LogWrite::Zero { offset, length } => {
                                let zeros = vec![0u8; (*length).min(MIB) as usize];
                                let mut o = *offset;
                                let mut r = Ok(());
                                while o < offset + length && r.is_ok() {
                                    let n = (offset + length - o).min(MIB);
                                    r = st.write_at(&zeros[..n as usize], o);
                                    o += n;
                                }
                                r
                            }
                        }
                        .map_err(|e| VhdxError::io(&name, e))?;
                    }
                }
                if st.len().map_err(|e| VhdxError::io(&name, e))? < last {
                    st.set_len(round_up(last, ALIGN))
                        .map_err(|e| VhdxError::io(&name, e))?;
                }
                st.flush().map_err(|e| VhdxError::io(&name, e))?;
                // Replaying is this session's first change: a new FileWriteGuid.
                let mut h = hdr.clone();
                h.log_guid = Uuid::nil();
                h.file_write_guid = Uuid::new_v4();
                for _ in 0..2 {
                    hslot = 1 - hslot;
                    h.sequence = hdr.sequence + 1;
                    st.write_at(&h.to_bytes(), HEADER_OFFSETS[hslot])
                        .map_err(|e| VhdxError::io(&name, e))?;
                    st.flush().map_err(|e| VhdxError::io(&name, e))?;
                    hdr = h.clone();
                }
            } else {
                let writes = entries
                    .iter()
                    .flat_map(|e| e.writes.iter())
                    .map(|w| match w {
                        log::LogWrite::Data { offset, bytes } => {
                            (*offset, bytes.len() as u64, Some(bytes.clone()))
                        }
                        log::LogWrite::Zero { offset, length } => (*offset, *length, None),
                    })
                    .collect();
                st = Box::new(ReplayedStorage {
                    inner: st,
                    writes,
                    len: file_len.max(last),
                });
            }
        }
        let file_len = st.len().map_err(|e| VhdxError::io(&name, e))?;
        let head = rd_short(st.as_ref(), &name, 0, 320 * 1024, file_len)?;
        let slot = |o: u64, l: usize| -> &[u8] {
            let s = (o as usize).min(head.len());
            &head[s..(s + l).min(head.len())]
        };
        let regions = region::current(
            &name,
            [
                slot(REGION_TABLE_OFFSETS[0], REGION_TABLE_SIZE),
                slot(REGION_TABLE_OFFSETS[1], REGION_TABLE_SIZE),
            ],
            file_len,
        )?;
        if hdr.log_length > 0 {
            let lo = hdr.log_offset;
            let le = lo + u64::from(hdr.log_length);
            if le > file_len {
                return Err(VhdxError::corrupt(
                    &name,
                    "header",
                    "LogOffset",
                    HEADER_OFFSETS[hslot] + 72,
                    format!("a log inside the {file_len}-byte file"),
                    format!("log [{lo}, {le})"),
                ));
            }
            for r in &regions.entries {
                let re = r.file_offset + u64::from(r.length);
                if lo < re && r.file_offset < le {
                    return Err(VhdxError::corrupt(
                        &name,
                        "header",
                        "LogOffset",
                        HEADER_OFFSETS[hslot] + 72,
                        format!(
                            "a log that does not overlap region {}",
                            guid_braced(&r.guid)
                        ),
                        format!(
                            "log [{lo:#x}, {le:#x}) and region [{:#x}, {re:#x})",
                            r.file_offset
                        ),
                    ));
                }
            }
        }
        let (meta_off, meta_len) = regions
            .find(&METADATA_GUID)
            .map(|r| (r.file_offset, r.length))
            .unwrap_or((0, 0));
        let mbytes = rd(st.as_ref(), &name, meta_off, meta_len as usize)?;
        let meta = Metadata::parse(&name, &mbytes, meta_off)?;
        let geo = Geometry::new(
            meta.virtual_size,
            u64::from(meta.block_size),
            u64::from(meta.logical_sector_size),
            meta.has_parent,
        );
        let (bat_offset, bat_len) = regions
            .find(&BAT_GUID)
            .map(|r| (r.file_offset, u64::from(r.length)))
            .unwrap_or((0, 0));
        if bat_len < geo.min_entries() * 8 {
            return Err(VhdxError::corrupt(
                &name,
                "region table entry",
                "Length",
                REGION_TABLE_OFFSETS[0],
                format!("a BAT region of at least {} bytes", geo.min_entries() * 8),
                bat_len.to_string(),
            ));
        }
        let bb = rd(st.as_ref(), &name, bat_offset, bat_len as usize)?;
        let bat: Vec<u64> = bb.chunks_exact(8).map(|c| u64_at(c, 0)).collect();
        let mut v = Vhdx {
            st,
            name: name.clone(),
            path: None,
            writable,
            header: hdr,
            header_slot: hslot,
            regions,
            meta,
            geo,
            bat_offset,
            bat,
            dirty_pages: BTreeSet::new(),
            bitmaps: HashMap::new(),
            parent: None,
            parent_path: None,
            file_end: round_up(file_len, ALIGN),
            session_started: false,
            log_seq: 1,
            log_pos: 0,
            closed: false,
            replayed_log,
        };
        v.validate_bat(file_len)?;
        if v.meta.has_parent {
            v.attach_parent(opts)?;
        }
        Ok(v)
    }

    /// BAT entries: legal states, inside the file, no overlaps with each other or the regions.
    fn validate_bat(&self, file_len: u64) -> VResult<()> {
        let mut spans: Vec<(u64, u64, u64)> = Vec::new(); // start, end, entry file offset
        let n = self.geo.min_entries().min(self.bat.len() as u64);
        for i in 0..n {
            let e = self.bat[i as usize];
            let s = bat::state(e);
            let at = self.bat_offset + i * 8;
            let is_sb = self.geo.is_sb_index(i);
            let (legal, present, len) = if is_sb {
                (
                    s == bat::SB_NOT_PRESENT || (s == bat::SB_PRESENT && self.meta.has_parent),
                    s == bat::SB_PRESENT,
                    MIB,
                )
            } else {
                (
                    matches!(s, 0 | 1 | 2 | 3 | 5 | 6) || (s == 7 && self.meta.has_parent),
                    s == 6 || s == 7,
                    self.geo.block_size,
                )
            };
            if !legal {
                return Err(VhdxError::corrupt(
                    &self.name,
                    "BAT entry",
                    "State",
                    at,
                    if is_sb {
                        "a sector-bitmap state legal for this disk type"
                    } else {
                        "a payload state legal for this disk type"
                    },
                    format!("{s} ({})", bat::state_name(s, is_sb)),
                ));
            }
            if present {
                let o = bat::offset(e);
                if o < ALIGN || o.saturating_add(len) > file_len {
                    return Err(VhdxError::corrupt(
                        &self.name,
                        "BAT entry",
                        "FileOffsetMB",
                        at,
                        format!("a block inside the {file_len}-byte file, after its first MiB"),
                        format!("block at {o} (+{len})"),
                    ));
                }
                spans.push((o, o + len, at));
            }
        }
        for r in &self.regions.entries {
            spans.push((r.file_offset, r.file_offset + u64::from(r.length), u64::MAX));
        }
        if self.header.log_length > 0 {
            spans.push((
                self.header.log_offset,
                self.header.log_offset + u64::from(self.header.log_length),
                u64::MAX,
            ));
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                let at = if w[1].2 != u64::MAX { w[1].2 } else { w[0].2 };
                return Err(VhdxError::corrupt(
                    &self.name,
                    "BAT entry",
                    "FileOffsetMB",
                    at,
                    "blocks that overlap no other block, region or the log",
                    format!(
                        "[{:#x}, {:#x}) overlaps [{:#x}, {:#x})",
                        w[1].0, w[1].1, w[0].0, w[0].1
                    ),
                ));
            }
        }
        Ok(())
    }

    fn attach_parent(&mut self, opts: OpenOptions) -> VResult<()> {
        let loc = self.meta.parent_locator.clone().unwrap_or_default();
        let loc_off = self.meta.locator_offset;
        let parent = match opts.parent {
            Some(p) => p,
            None => {
                let base = opts.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
                let path = super::parent::resolve(
                    &self.name,
                    &base,
                    &loc,
                    loc_off,
                    opts.allow_parent_escape,
                )?;
                let p = Vhdx::open_with(
                    &path,
                    OpenOptions {
                        writable: false,
                        allow_parent_escape: opts.allow_parent_escape,
                        ..OpenOptions::default()
                    },
                )?;
                self.parent_path = Some(path);
                Box::new(p)
            }
        };
        let dwg = parent.header.data_write_guid;
        let matches = |key: &str| {
            loc.get(key)
                .and_then(|s| Uuid::parse_str(s.trim().trim_matches(['{', '}'])).ok())
                == Some(dwg)
        };
        if !matches("parent_linkage") && !matches("parent_linkage2") {
            return Err(VhdxError::parent(
                &self.name,
                "parent_linkage",
                loc_off,
                format!(
                    "the parent's DataWriteGuid {} ({})",
                    guid_braced(&dwg),
                    parent.name
                ),
                loc.get("parent_linkage").unwrap_or("").to_owned(),
            ));
        }
        if parent.meta.virtual_size != self.meta.virtual_size
            || parent.meta.logical_sector_size != self.meta.logical_sector_size
        {
            return Err(VhdxError::parent(
                &self.name,
                "virtual size / logical sector size",
                loc_off,
                format!(
                    "{} bytes, {}-byte sectors (this disk)",
                    self.meta.virtual_size, self.meta.logical_sector_size
                ),
                format!(
                    "{} bytes, {}-byte sectors in {}",
                    parent.meta.virtual_size, parent.meta.logical_sector_size, parent.name
                ),
            ));
        }
        self.parent = Some(parent);
        Ok(())
    }

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
    pub fn file_length(&self) -> VResult<u64> {
        self.st.len().map_err(|e| self.io(e))
    }

    pub(crate) fn io(&self, e: std::io::Error) -> VhdxError {
        VhdxError::io(&self.name, e)
    }

    fn check_range(&self, offset: u64, len: u64) -> VResult<()> {
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

    fn check_open(&self) -> VResult<()> {
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

    /// Bitmap bits of `count` sectors of `block` from sector `first` (true = in this file).
    pub(crate) fn bitmap_bits_pub(&self, block: u64, first: u64, count: u64) -> VResult<Vec<bool>> {
        self.bitmap_bits(block, first, count)
    }

    fn bitmap_bits(&self, block: u64, first: u64, count: u64) -> VResult<Vec<bool>> {
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

    /// Writes `data` at virtual `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> VResult<()> {
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
            if b % 8 == 0 && b + 8 <= b1 {
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
                        self.write(p, &zeros[..n as usize])?;
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
        if fresh {
            let mut h = self.header.clone();
            h.log_guid = guid;
            self.write_headers(h)?;
        }
        for (off, b) in pages {
            self.st.write_at(b, *off).map_err(|e| self.io(e))?;
        }
        self.st.flush().map_err(|e| self.io(e))?;
        self.log_pos += size;
        self.log_seq += 1;
        Ok(())
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
        Ok(())
    }

    /// Drops the file without the clean-close steps (tests of crash recovery).
    pub fn abandon(mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
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
            replayed_log: false,
        })
    }
}

impl Drop for Vhdx {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
