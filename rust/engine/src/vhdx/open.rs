//! Opening a VHDX: file identifier, headers, pending-log replay (on disk when writable, in
//! memory when read-only), region table, metadata, BAT validation and the parent chain. Nothing
//! is written to a file that fails any check.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::bat::{self, Geometry};
use super::error::{VResult, VhdxError};
use super::file::{rd, rd_short, OpenOptions, Vhdx};
use super::format::*;
use super::header;
use super::log;
use super::metadata::Metadata;
use super::region;
use super::replayed::ReplayedStorage;
use crate::storage::{FileStorage, Storage};

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
            commit_each_write: false,
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
}
