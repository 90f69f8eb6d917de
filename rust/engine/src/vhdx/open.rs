//! Opening a VHDX: file identifier, headers, pending-log replay, region table, metadata, BAT
//! validation and the parent chain. Nothing is written to a file that fails any check.
//!
//! [`parse`] is the whole validation of one file, done on a borrowed storage and shared with
//! `check` (which reports what it refuses), so open and check cannot disagree. A pending log is
//! planned and validated first ([`log::plan`]), and everything after the headers is parsed from
//! the file *as the replay would leave it* (an in-memory overlay); a writable open writes the
//! replay only after the parse and the parent chain have passed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::bat::{self, Geometry};
use super::error::{VResult, VhdxError};
use super::file::{buffer, rd, rd_short, OpenOptions, Vhdx};
use super::format::*;
use super::header::{self, Header};
use super::lock::{FileId, FileLock, LockMode};
use super::log::{self, Overlay};
use super::metadata::{self, Metadata};
use super::parent::{self, ParentPolicy};
use super::paths;
use super::region::{self, RegionTable};
use super::replayed::{ReplayedStorage, View};
use crate::storage::Storage;

/// Bytes read at the start of a file: identifier, both headers, both region tables.
const HEAD_BYTES: usize = 320 * 1024;

/// One file's structures, validated (the file as its pending log, if any, would leave it).
pub(crate) struct Parsed {
    pub header: Header,
    pub header_slot: usize,
    /// The pending log's effect, when the file is dirty.
    pub overlay: Option<Overlay>,
    pub regions: RegionTable,
    pub meta: Metadata,
    pub bat_offset: u64,
    pub bat: Vec<u64>,
    /// The file's length (after the replay).
    pub file_len: u64,
}

/// Reads and validates every structure of the VHDX in `st` (nothing is written).
pub(crate) fn parse(name: &str, st: &dyn Storage) -> VResult<Parsed> {
    let raw_len = st.len().map_err(|e| VhdxError::io(name, e))?;
    let head = rd_short(st, name, 0, HEAD_BYTES, raw_len)?;
    check_identifier(name, &head)?;
    let slot = |o: u64, l: usize| -> &[u8] {
        let s = (o as usize).min(head.len());
        &head[s..(s + l).min(head.len())]
    };
    let (hdr, hslot) = header::current(
        name,
        [
            slot(HEADER_OFFSETS[0], HEADER_SIZE),
            slot(HEADER_OFFSETS[1], HEADER_SIZE),
        ],
    )?;
    let overlay = if hdr.log_guid.is_nil() {
        None
    } else {
        Some(Overlay::new(log::plan(name, st, &hdr, hslot, raw_len)?))
    };
    let view;
    let st: &dyn Storage = match &overlay {
        Some(o) => {
            view = View {
                inner: st,
                overlay: o,
            };
            &view
        }
        None => st,
    };
    let parts = parse_after_headers(name, st, &hdr, hslot).map_err(|e| match &overlay {
        // The log would leave a broken file: say so, with what breaks (nothing was replayed).
        Some(_) => match e.location() {
            Some(l) => VhdxError::corrupt(
                name,
                "log",
                "replay",
                l.offset,
                "a log whose replay leaves a valid file (nothing was replayed)",
                format!(
                    "after the replay, {} field `{}`: expected {}, found {}",
                    l.structure, l.field, l.expected, l.found
                ),
            ),
            None => e,
        },
        None => e,
    })?;
    let (regions, meta, bat_offset, batv, file_len) = parts;
    Ok(Parsed {
        header: hdr,
        header_slot: hslot,
        overlay,
        regions,
        meta,
        bat_offset,
        bat: batv,
        file_len,
    })
}

/// What [`parse`] reads after the headers: region table, log placement, metadata, BAT.
fn parse_after_headers(
    name: &str,
    st: &dyn Storage,
    hdr: &Header,
    hslot: usize,
) -> VResult<(RegionTable, Metadata, u64, Vec<u64>, u64)> {
    let file_len = st.len().map_err(|e| VhdxError::io(name, e))?;
    let head = rd_short(st, name, 0, HEAD_BYTES, file_len)?;
    let slot = |o: u64, l: usize| -> &[u8] {
        let s = (o as usize).min(head.len());
        &head[s..(s + l).min(head.len())]
    };
    let regions = region::current(
        name,
        [
            slot(REGION_TABLE_OFFSETS[0], REGION_TABLE_SIZE),
            slot(REGION_TABLE_OFFSETS[1], REGION_TABLE_SIZE),
        ],
        file_len,
    )?;
    check_log_region(name, hdr, hslot, &regions, file_len)?;
    let meta = read_metadata(name, st, &regions)?;
    let geo = geometry(&meta);
    let (bat_offset, bat_len) = regions
        .find(&BAT_GUID)
        .map(|r| (r.file_offset, u64::from(r.length)))
        .unwrap_or((0, 0));
    let needed = geo.min_entries() * 8;
    if bat_len < needed {
        return Err(VhdxError::corrupt(
            name,
            "region table entry",
            "Length",
            REGION_TABLE_OFFSETS[0],
            format!("a BAT region of at least {needed} bytes"),
            bat_len.to_string(),
        ));
    }
    // The entries the disk uses, to the end of their last 4 KiB page (a commit rewrites whole
    // pages): at most 513 MiB for a 64 TiB disk of 1 MiB blocks, whatever the region's length.
    let read_len = round_up(needed, LOG_SECTOR).min(bat_len) as usize;
    let mut bb = buffer(name, "BAT", read_len)?;
    st.read_at(&mut bb, bat_offset)
        .map_err(|e| VhdxError::io(name, e))?;
    let mut batv: Vec<u64> = Vec::new();
    batv.try_reserve_exact(read_len / 8).map_err(|_| {
        VhdxError::io(
            name,
            std::io::Error::new(std::io::ErrorKind::OutOfMemory, "cannot hold the BAT"),
        )
    })?;
    batv.extend(bb.chunks_exact(8).map(|c| u64_at(c, 0)));
    drop(bb);
    validate_bat(
        name, &geo, &meta, &regions, hdr, bat_offset, &batv, file_len,
    )?;
    Ok((regions, meta, bat_offset, batv, file_len))
}

pub(crate) fn geometry(meta: &Metadata) -> Geometry {
    Geometry::new(
        meta.virtual_size,
        u64::from(meta.block_size),
        u64::from(meta.logical_sector_size),
        meta.has_parent,
    )
}

/// The file type identifier: `vhdxfile`. Anything else is not a VHDX, and nothing of it is
/// quoted (it may be any file at all).
pub(crate) fn check_identifier(name: &str, head: &[u8]) -> VResult<()> {
    if head.get(0..8) != Some(&FILE_ID_SIG[..]) {
        return Err(VhdxError::corrupt(
            name,
            "file type identifier",
            "signature",
            0,
            "\"vhdxfile\"",
            if head.len() < 8 {
                format!("a {}-byte file: not a VHDX file", head.len())
            } else {
                "not a VHDX file (no \"vhdxfile\" signature)".to_owned()
            },
        ));
    }
    Ok(())
}

/// The log region of the current header: inside the file, overlapping no region.
pub(crate) fn check_log_region(
    name: &str,
    hdr: &Header,
    hslot: usize,
    regions: &RegionTable,
    file_len: u64,
) -> VResult<()> {
    if hdr.log_length == 0 {
        return Ok(());
    }
    let lo = hdr.log_offset;
    let le = lo.saturating_add(u64::from(hdr.log_length));
    if le > file_len {
        return Err(VhdxError::corrupt(
            name,
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
                name,
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
    Ok(())
}

/// The metadata region's table and known items (each read on its own).
pub(crate) fn read_metadata(
    name: &str,
    st: &dyn Storage,
    regions: &RegionTable,
) -> VResult<Metadata> {
    let (meta_off, meta_len) = regions
        .find(&METADATA_GUID)
        .map(|r| (r.file_offset, u64::from(r.length)))
        .unwrap_or((0, 0));
    let table = rd(
        st,
        name,
        meta_off,
        (meta_len as usize).min(metadata::TABLE_SIZE),
    )?;
    Metadata::parse_with(name, &table, meta_len, meta_off, &mut |at, len| {
        rd(st, name, meta_off + at, len)
    })
}

/// BAT entries: legal states, inside the file, no overlaps with each other, the regions or the
/// log.
#[allow(clippy::too_many_arguments)]
fn validate_bat(
    name: &str,
    geo: &Geometry,
    meta: &Metadata,
    regions: &RegionTable,
    hdr: &Header,
    bat_offset: u64,
    batv: &[u64],
    file_len: u64,
) -> VResult<()> {
    let mut spans: Vec<(u64, u64, u64)> = Vec::new(); // start, end, entry file offset
    let n = geo.min_entries().min(batv.len() as u64);
    for i in 0..n {
        let e = batv[i as usize];
        let s = bat::state(e);
        let at = bat_offset + i * 8;
        let is_sb = geo.is_sb_index(i);
        let (legal, present, len) = if is_sb {
            (
                s == bat::SB_NOT_PRESENT || (s == bat::SB_PRESENT && meta.has_parent),
                s == bat::SB_PRESENT,
                MIB,
            )
        } else {
            (
                matches!(s, 0 | 1 | 2 | 3 | 5 | 6) || (s == 7 && meta.has_parent),
                s == 6 || s == 7,
                geo.block_size,
            )
        };
        if !legal {
            return Err(VhdxError::corrupt(
                name,
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
                    name,
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
    for r in &regions.entries {
        spans.push((r.file_offset, r.file_offset + u64::from(r.length), u64::MAX));
    }
    if hdr.log_length > 0 {
        spans.push((
            hdr.log_offset,
            hdr.log_offset + u64::from(hdr.log_length),
            u64::MAX,
        ));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            let at = if w[1].2 != u64::MAX { w[1].2 } else { w[0].2 };
            return Err(VhdxError::corrupt(
                name,
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

    /// Opens the file at `path`: an existing regular file, locked exclusively when writable and
    /// shared otherwise (see `lock.rs`) before anything is read.
    pub fn open_with(path: &Path, mut opts: OpenOptions) -> VResult<Vhdx> {
        let mut st = paths::open_input(path, opts.writable)?;
        st.set_sync(!opts.unsynced);
        let name = path.display().to_string();
        let id = FileId::of_file(st.file()).map_err(|e| VhdxError::io(&name, e))?;
        // A file already in the chain is refused before it is locked (it may be locked by the
        // very open that leads back to it).
        opts.chain.check_file(&name, Some(id))?;
        let mode = if opts.writable {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        };
        let lock = FileLock::acquire(st.file(), path, mode)?;
        if opts.base_dir.is_none() {
            opts.base_dir = path.parent().map(Path::to_path_buf);
        }
        opts.file_id = Some(id);
        let mut v = Self::open_storage(Box::new(st), opts)?;
        v.path = Some(path.to_path_buf());
        v.lock = Some(lock);
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
        let p = parse(&name, st.as_ref())?;
        opts.chain.check_guid(&name, &p.header.data_write_guid)?;
        let replayed_log = p.overlay.is_some();
        let (st, pending) = match p.overlay {
            Some(o) if !writable => (
                Box::new(ReplayedStorage {
                    inner: st,
                    overlay: o,
                }) as Box<dyn Storage>,
                None,
            ),
            o => (st, o),
        };
        let geo = geometry(&p.meta);
        let mut v = Vhdx {
            st,
            name: name.clone(),
            path: None,
            id: opts.file_id,
            lock: None,
            writable,
            header: p.header,
            header_slot: p.header_slot,
            regions: p.regions,
            meta: p.meta,
            geo,
            bat_offset: p.bat_offset,
            bat: p.bat,
            dirty_pages: BTreeSet::new(),
            bitmaps: HashMap::new(),
            parent: None,
            parent_path: None,
            file_end: round_up(p.file_len, ALIGN),
            session_started: false,
            log_seq: 1,
            log_pos: 0,
            // Closed until every check has passed: dropping a half-open disk writes nothing.
            closed: true,
            failed: None,
            commit_each_write: false,
            replayed_log,
        };
        if v.meta.has_parent {
            v.attach_parent(opts)?;
        }
        if let Some(o) = pending {
            v.apply_replay(&o)?;
        }
        v.closed = false;
        Ok(v)
    }

    /// Writes a validated replay to the file, then headers with LogGuid zero: replaying is this
    /// session's first change, so it also gets a new FileWriteGuid.
    fn apply_replay(&mut self, o: &Overlay) -> VResult<()> {
        o.apply(self.st.as_mut()).map_err(|e| self.io(e))?;
        let mut h = self.header.clone();
        h.log_guid = Uuid::nil();
        h.file_write_guid = Uuid::new_v4();
        self.write_headers(h)
    }

    fn attach_parent(&mut self, opts: OpenOptions) -> VResult<()> {
        let loc = self.meta.parent_locator.clone().unwrap_or_default();
        let loc_off = self.meta.locator_offset;
        let parent = match opts.parent {
            Some(p) => p,
            None => {
                let base = opts.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
                let policy = ParentPolicy {
                    allow_escape: opts.allow_parent_escape,
                    root: opts.parent_root.clone(),
                };
                let path = parent::resolve(&self.name, &base, &loc, loc_off, &policy)?;
                opts.chain.check_depth(&path)?;
                let p = Vhdx::open_with(
                    &path,
                    OpenOptions {
                        writable: false,
                        allow_parent_escape: opts.allow_parent_escape,
                        parent_root: opts.parent_root.clone(),
                        chain: opts.chain.with(self),
                        ..OpenOptions::default()
                    },
                )?;
                self.parent_path = Some(path);
                Box::new(p)
            }
        };
        parent::check_link(
            &self.name,
            self.meta.virtual_size,
            self.meta.logical_sector_size,
            &loc,
            loc_off,
            &parent,
        )?;
        self.parent = Some(parent);
        Ok(())
    }
}
