//! Validation without trust: every structure is read from the bytes, each problem becomes a
//! [`Finding`] (severity, structure, field, offset, message), and checking goes on where it can.
//! Nothing is written.

use std::path::Path;

use uuid::Uuid;

use super::bat::{self, Geometry};
use super::error::VhdxError;
use super::file::{OpenOptions, Vhdx};
use super::format::*;
use super::header::Header;
use super::log;
use super::metadata::Metadata;
use super::parent;
use super::region::RegionTable;
use crate::storage::{FileStorage, Storage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub structure: String,
    pub field: String,
    pub offset: u64,
    pub message: String,
}

const MAX_BAT_FINDINGS: usize = 64;

struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, sev: Severity, structure: &str, field: &str, offset: u64, msg: String) {
        self.findings.push(Finding {
            severity: sev,
            structure: structure.to_owned(),
            field: field.to_owned(),
            offset,
            message: msg,
        });
    }

    fn err(&mut self, sev: Severity, e: &VhdxError) {
        match e.location() {
            Some(l) => self.add(
                sev,
                l.structure,
                l.field,
                l.offset,
                format!("expected {}, found {}", l.expected, l.found),
            ),
            None => self.add(sev, "file", "", 0, e.to_string()),
        }
    }
}

/// Checks the file at `path`.
pub fn check_file(path: &Path) -> Vec<Finding> {
    match FileStorage::open(path, false) {
        Ok(st) => check_storage(&st, path.parent()),
        Err(e) => vec![Finding {
            severity: Severity::Error,
            structure: "file".into(),
            field: String::new(),
            offset: 0,
            message: format!("{}: {e}", path.display()),
        }],
    }
}

fn read(st: &dyn Storage, off: u64, len: usize, file_len: u64) -> Vec<u8> {
    let n = file_len.saturating_sub(off).min(len as u64) as usize;
    let mut b = vec![0u8; n];
    if st.read_at(&mut b, off).is_err() {
        b.clear();
    }
    b
}

/// Checks a VHDX held by `st`; `base_dir` is where its parent locator's relative path starts.
pub fn check_storage(st: &dyn Storage, base_dir: Option<&Path>) -> Vec<Finding> {
    check_with_parent(st, base_dir, None)
}

/// Like [`check_storage`]; with `parent`, the linkage is checked against that disk instead of
/// the one the locator's paths lead to.
pub fn check_with_parent(
    st: &dyn Storage,
    base_dir: Option<&Path>,
    parent: Option<&Vhdx>,
) -> Vec<Finding> {
    let name = st.name();
    let mut r = Report {
        findings: Vec::new(),
    };
    let file_len = match st.len() {
        Ok(l) => l,
        Err(e) => {
            r.add(Severity::Error, "file", "", 0, e.to_string());
            return r.findings;
        }
    };
    let head = read(st, 0, 320 * 1024, file_len);
    if head.get(0..8) != Some(&FILE_ID_SIG[..]) {
        r.add(
            Severity::Error,
            "file type identifier",
            "signature",
            0,
            format!(
                "expected \"vhdxfile\", found {}",
                sig(&head, 0, head.len().min(8))
            ),
        );
    }
    let slot = |o: u64, l: usize| -> &[u8] {
        let s = (o as usize).min(head.len());
        &head[s..(s + l).min(head.len())]
    };
    // Headers, each on its own.
    let hs: Vec<Result<Header, VhdxError>> = HEADER_OFFSETS
        .iter()
        .map(|&o| Header::parse(&name, slot(o, HEADER_SIZE), o))
        .collect();
    let valid = hs.iter().filter(|h| h.is_ok()).count();
    for h in &hs {
        if let Err(e) = h {
            r.err(
                if valid == 0 {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                e,
            );
        }
    }
    let current = match (&hs[0], &hs[1]) {
        (Ok(a), Ok(b)) if a.sequence == b.sequence && a != b => {
            r.add(
                Severity::Error,
                "header",
                "SequenceNumber",
                HEADER_OFFSETS[1] + 8,
                format!("two different headers both numbered {}", a.sequence),
            );
            None
        }
        (Ok(a), Ok(b)) => Some(if a.sequence >= b.sequence {
            (a, 0)
        } else {
            (b, 1)
        }),
        (Ok(a), Err(_)) => Some((a, 0)),
        (Err(_), Ok(b)) => Some((b, 1)),
        _ => None,
    };
    if let Some((h, s)) = current {
        if let Err(e) = h.validate(&name, HEADER_OFFSETS[s]) {
            r.err(Severity::Error, &e);
        }
        if !h.log_guid.is_nil() {
            check_log(&mut r, st, h, s, file_len, &name);
        }
    }
    // Region tables.
    let ts: Vec<Result<RegionTable, VhdxError>> = REGION_TABLE_OFFSETS
        .iter()
        .map(|&o| RegionTable::parse(&name, slot(o, REGION_TABLE_SIZE), o, file_len))
        .collect();
    let tvalid = ts.iter().filter(|t| t.is_ok()).count();
    for t in &ts {
        if let Err(e) = t {
            let sev = if tvalid == 0 || matches!(e, VhdxError::Unsupported(_)) {
                Severity::Error
            } else {
                Severity::Warning
            };
            r.err(sev, e);
        }
    }
    if let (Ok(a), Ok(b)) = (&ts[0], &ts[1]) {
        if a != b {
            r.add(
                Severity::Warning,
                "region table",
                "entries",
                REGION_TABLE_OFFSETS[1],
                "the two copies of the region table differ".into(),
            );
        }
    }
    let Some(table) = ts.into_iter().find_map(Result::ok) else {
        return r.findings;
    };
    let Some(me) = table.find(&METADATA_GUID).cloned() else {
        return r.findings;
    };
    let mbytes = read(st, me.file_offset, me.length as usize, file_len);
    let meta = match Metadata::parse(&name, &mbytes, me.file_offset) {
        Ok(m) => m,
        Err(e) => {
            r.err(Severity::Error, &e);
            return r.findings;
        }
    };
    let geo = Geometry::new(
        meta.virtual_size,
        u64::from(meta.block_size),
        u64::from(meta.logical_sector_size),
        meta.has_parent,
    );
    if let Some(be) = table.find(&BAT_GUID).cloned() {
        check_bat(
            &mut r,
            st,
            &table,
            &meta,
            &geo,
            be.file_offset,
            u64::from(be.length),
            file_len,
            current.map(|c| c.0),
        );
    }
    if meta.has_parent {
        check_parent(&mut r, &meta, base_dir, &name, parent);
    }
    r.findings
}

fn check_log(r: &mut Report, st: &dyn Storage, h: &Header, s: usize, file_len: u64, name: &str) {
    let lend = h.log_offset.saturating_add(u64::from(h.log_length));
    if h.log_length == 0 || lend > file_len {
        r.add(
            Severity::Error,
            "header",
            "LogOffset",
            HEADER_OFFSETS[s] + 72,
            format!(
                "log [{}, {lend}) is not inside the {file_len}-byte file",
                h.log_offset
            ),
        );
        return;
    }
    let ring = read(st, h.log_offset, h.log_length as usize, file_len);
    let entries = log::active_sequence(&ring, &h.log_guid);
    if entries.is_empty() {
        r.add(
            Severity::Error,
            "log",
            "LogGuid",
            HEADER_OFFSETS[s] + 48,
            format!(
                "LogGuid {} is set but the log holds no valid sequence",
                guid_braced(&h.log_guid)
            ),
        );
    } else {
        r.add(
            Severity::Warning,
            "log",
            "LogGuid",
            HEADER_OFFSETS[s] + 48,
            format!(
                "the log holds {} entr{} to replay (the file was not closed cleanly); \
                 opening it writable replays them",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" }
            ),
        );
        if let Err(e) = log::check_replayable(name, &entries, file_len, h.log_offset) {
            r.err(Severity::Error, &e);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_bat(
    r: &mut Report,
    st: &dyn Storage,
    table: &RegionTable,
    meta: &Metadata,
    geo: &Geometry,
    bat_offset: u64,
    bat_len: u64,
    file_len: u64,
    header: Option<&Header>,
) {
    if bat_len < geo.min_entries() * 8 {
        r.add(
            Severity::Error,
            "region table entry",
            "Length",
            REGION_TABLE_OFFSETS[0],
            format!(
                "BAT region of {bat_len} bytes is smaller than the {} entries the disk needs",
                geo.min_entries()
            ),
        );
        return;
    }
    let bb = read(st, bat_offset, (geo.min_entries() * 8) as usize, file_len);
    let mut spans: Vec<(u64, u64, u64)> = Vec::new();
    let mut count = 0usize;
    let mut more = 0usize;
    let mut note = |r: &mut Report, at: u64, field: &str, msg: String| {
        if count < MAX_BAT_FINDINGS {
            r.add(Severity::Error, "BAT entry", field, at, msg);
        } else {
            more += 1;
        }
        count += 1;
    };
    for (i, c) in bb.chunks_exact(8).enumerate() {
        let i = i as u64;
        let e = u64_at(c, 0);
        let s = bat::state(e);
        let at = bat_offset + i * 8;
        let is_sb = geo.is_sb_index(i);
        let (legal, present, len) = if is_sb {
            (s == 0 || (s == 6 && meta.has_parent), s == 6, MIB)
        } else {
            (
                matches!(s, 0 | 1 | 2 | 3 | 5 | 6) || (s == 7 && meta.has_parent),
                s == 6 || s == 7,
                geo.block_size,
            )
        };
        if !legal {
            note(
                r,
                at,
                "State",
                format!(
                    "entry {i}: state {s} ({}) is not legal for a {} disk",
                    bat::state_name(s, is_sb),
                    if meta.has_parent {
                        "differencing"
                    } else {
                        "fixed or dynamic"
                    }
                ),
            );
            continue;
        }
        if !is_sb && meta.leave_block_allocated && s != 6 {
            r.add(
                Severity::Info,
                "BAT entry",
                "State",
                at,
                format!(
                    "entry {i}: a fixed disk's block is {}",
                    bat::state_name(s, false)
                ),
            );
        }
        let o = bat::offset(e);
        if !present {
            if o != 0 {
                note(
                    r,
                    at,
                    "FileOffsetMB",
                    format!(
                        "entry {i}: state {} with a file offset {o} (must be 0)",
                        bat::state_name(s, is_sb)
                    ),
                );
            }
            continue;
        }
        if o < ALIGN || o.saturating_add(len) > file_len {
            note(
                r,
                at,
                "FileOffsetMB",
                format!(
                    "entry {i}: block [{o}, {}) is not inside the {file_len}-byte file",
                    o.saturating_add(len)
                ),
            );
            continue;
        }
        spans.push((o, o + len, at));
    }
    for e in &table.entries {
        spans.push((e.file_offset, e.file_offset + u64::from(e.length), u64::MAX));
    }
    if let Some(h) = header {
        if h.log_length > 0 {
            spans.push((
                h.log_offset,
                h.log_offset + u64::from(h.log_length),
                u64::MAX,
            ));
        }
    }
    spans.sort_unstable();
    let mut reach: Option<(u64, u64, u64)> = None;
    for &sp in &spans {
        if let Some(prev) = reach {
            if sp.0 < prev.1 {
                let at = if sp.2 != u64::MAX { sp.2 } else { prev.2 };
                note(
                    r,
                    at,
                    "FileOffsetMB",
                    format!(
                        "[{:#x}, {:#x}) overlaps [{:#x}, {:#x})",
                        sp.0, sp.1, prev.0, prev.1
                    ),
                );
            }
            if sp.1 > prev.1 {
                reach = Some(sp);
            }
        } else {
            reach = Some(sp);
        }
    }
    if more > 0 {
        r.add(
            Severity::Error,
            "BAT",
            "",
            bat_offset,
            format!("{more} more BAT findings not listed"),
        );
    }
}

fn check_parent(
    r: &mut Report,
    meta: &Metadata,
    base_dir: Option<&Path>,
    name: &str,
    attached: Option<&Vhdx>,
) {
    let Some(loc) = &meta.parent_locator else {
        return;
    };
    let opened;
    let p = match attached {
        Some(p) => p,
        None => {
            let base = base_dir.unwrap_or(Path::new("."));
            let path = match parent::resolve(name, base, loc, meta.locator_offset, false) {
                Ok(p) => p,
                Err(e) => {
                    r.err(Severity::Error, &e);
                    return;
                }
            };
            match Vhdx::open_with(&path, OpenOptions::default()) {
                Ok(p) => {
                    opened = p;
                    &opened
                }
                Err(e) => {
                    r.err(Severity::Error, &e);
                    return;
                }
            }
        }
    };
    let dwg = p.data_write_guid();
    let ok = ["parent_linkage", "parent_linkage2"].iter().any(|k| {
        loc.get(k)
            .and_then(|s| Uuid::parse_str(s.trim().trim_matches(['{', '}'])).ok())
            == Some(dwg)
    });
    if !ok {
        r.add(
            Severity::Error,
            "parent locator",
            "parent_linkage",
            meta.locator_offset,
            format!(
                "expected the DataWriteGuid of {} ({}), found {}",
                p.name(),
                guid_braced(&dwg),
                loc.get("parent_linkage").unwrap_or("")
            ),
        );
    }
    if p.virtual_size() != meta.virtual_size {
        r.add(
            Severity::Error,
            "parent locator",
            "virtual size",
            meta.locator_offset,
            format!(
                "parent {} is {} bytes, this disk {}",
                p.name(),
                p.virtual_size(),
                meta.virtual_size
            ),
        );
    }
}

impl Vhdx {
    /// Checks this disk's file as it is on its storage.
    pub fn check(&self) -> Vec<Finding> {
        let base = self.path().and_then(Path::parent).map(Path::to_path_buf);
        check_with_parent(self.st.as_ref(), base.as_deref(), self.parent())
    }
}
