//! Validation without trust: every structure is read from the bytes, each problem becomes a
//! [`Finding`] (severity, structure, field, offset, message), and checking goes on where it can.
//! Nothing is written.
//!
//! Check examines a dirty file as its pending log would leave it (the log is planned and
//! validated by the same code as open: a log open would refuse is an error here). And it runs
//! open's own validation ([`super::open::parse`]) as its verdict: whatever open refuses appears
//! as an error finding, so the two cannot disagree.

use std::path::Path;

use super::bat::{self, Geometry};
use super::error::{VResult, VhdxError};
use super::file::{OpenOptions, Vhdx};
use super::format::*;
use super::header::Header;
use super::lock::{FileLock, LockMode};
use super::log::{self, Overlay};
use super::metadata::Metadata;
use super::open;
use super::parent::{self, ParentPolicy};
use super::paths;
use super::region::RegionTable;
use super::replayed::View;
use crate::storage::Storage;

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

/// Checks the file at `path`; a file that cannot be read at all (missing, a directory, locked
/// by a writer) is one error finding.
pub fn check_file(path: &Path) -> Vec<Finding> {
    try_check_file(path).unwrap_or_else(|e| {
        vec![Finding {
            severity: Severity::Error,
            structure: "file".into(),
            field: String::new(),
            offset: 0,
            message: e.to_string(),
        }]
    })
}

/// Checks the file at `path` (an existing regular file, read under a shared lock: a writer
/// holding it is an error naming the writer, not a check of a file in mid-update).
pub fn try_check_file(path: &Path) -> VResult<Vec<Finding>> {
    let st = paths::open_input(path, false)?;
    let _lock = FileLock::acquire(st.file(), path, LockMode::Shared)?;
    Ok(check_storage(&st, path.parent()))
}

/// Up to `len` bytes at `off` (fewer at the end of the file; none when unreadable).
fn read(st: &dyn Storage, off: u64, len: usize, file_len: u64) -> Vec<u8> {
    let n = file_len.saturating_sub(off).min(len as u64) as usize;
    let mut b: Vec<u8> = Vec::new();
    if b.try_reserve_exact(n).is_err() {
        return b;
    }
    b.resize(n, 0);
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
    if let Err(e) = open::check_identifier(&name, &head) {
        r.err(Severity::Error, &e);
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
    let mut overlay: Option<Overlay> = None;
    if let Some((h, s)) = current {
        if let Err(e) = h.validate(&name, HEADER_OFFSETS[s]) {
            r.err(Severity::Error, &e);
        }
        if !h.log_guid.is_nil() {
            overlay = check_log(&mut r, st, h, s, file_len, &name);
        }
    }
    // From here on: the file as its log would leave it (what every open reads).
    let raw = st;
    let view;
    let st: &dyn Storage = match &overlay {
        Some(o) => {
            view = View {
                inner: raw,
                overlay: o,
            };
            &view
        }
        None => raw,
    };
    let file_len = st.len().unwrap_or(file_len);
    let head = if overlay.is_some() {
        read(st, 0, 320 * 1024, file_len)
    } else {
        head
    };
    let slot = |o: u64, l: usize| -> &[u8] {
        let s = (o as usize).min(head.len());
        &head[s..(s + l).min(head.len())]
    };
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
        return verdict(r, raw, &name);
    };
    if let Some((h, s)) = current {
        if let Err(e) = open::check_log_region(&name, h, s, &table, file_len) {
            r.err(Severity::Error, &e);
        }
    }
    let meta = match open::read_metadata(&name, st, &table) {
        Ok(m) => m,
        Err(e) => {
            r.err(Severity::Error, &e);
            return verdict(r, raw, &name);
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
    verdict(r, raw, &name)
}

/// Adds what open's own validation refuses, unless a finding already names it.
fn verdict(mut r: Report, st: &dyn Storage, name: &str) -> Vec<Finding> {
    if let Err(e) = open::parse(name, st) {
        let known = e.location().is_some_and(|l| {
            r.findings.iter().any(|f| {
                f.severity == Severity::Error
                    && f.structure == l.structure
                    && f.field == l.field
                    && f.offset == l.offset
            })
        });
        if !known {
            r.err(Severity::Error, &e);
        }
    }
    r.findings
}

/// The pending log: planned and validated as open would; the overlay to check the rest through.
fn check_log(
    r: &mut Report,
    st: &dyn Storage,
    h: &Header,
    s: usize,
    file_len: u64,
    name: &str,
) -> Option<Overlay> {
    match log::plan(name, st, h, s, file_len) {
        Ok(replay) => {
            let n = replay.entries.len();
            r.add(
                Severity::Warning,
                "log",
                "LogGuid",
                HEADER_OFFSETS[s] + 48,
                format!(
                    "the log holds {n} entr{} to replay (the file was not closed cleanly); \
                     opening it writable replays them",
                    if n == 1 { "y" } else { "ies" }
                ),
            );
            Some(Overlay::new(replay))
        }
        Err(e) => {
            r.err(Severity::Error, &e);
            None
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
    if (bb.len() as u64) < geo.min_entries() * 8 {
        r.add(
            Severity::Error,
            "BAT",
            "",
            bat_offset,
            format!(
                "the BAT's {} bytes could not be read",
                geo.min_entries() * 8
            ),
        );
        return;
    }
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
            let policy = ParentPolicy::default();
            let path = match parent::resolve(name, base, loc, meta.locator_offset, &policy) {
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
    if let Err(e) = parent::check_link(
        name,
        meta.virtual_size,
        meta.logical_sector_size,
        loc,
        meta.locator_offset,
        p,
    ) {
        r.err(Severity::Error, &e);
    }
}

impl Vhdx {
    /// Checks this disk's file as it is on its storage.
    pub fn check(&self) -> Vec<Finding> {
        let base = self.path().and_then(Path::parent).map(Path::to_path_buf);
        check_with_parent(self.st.as_ref(), base.as_deref(), self.parent())
    }
}
