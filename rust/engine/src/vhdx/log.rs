//! The VHDX log: a ring of 4 KiB sectors that makes BAT and metadata updates atomic.
//!
//! How vssim writes it: each transaction is one entry holding whole 4 KiB pages of the BAT (or
//! metadata region) as data descriptors. The entry is written at the ring's write position, made
//! durable, then the pages are written in place and made durable. Every entry is complete on its
//! own (its Tail is its own offset) and an entry is never larger than a third of the ring, so the
//! previous entry is intact while the next one is being written: a crash at any point leaves
//! either the new entry (replayed) or the previous one (already applied, replaying it is a no-op).
//! A merge writes one sequence of several entries that share a Tail (see `merge.rs`).
//!
//! How it is read, in two stages, before a single byte of the file is changed:
//! 1. *Scan* ([`active_sequence`]): entries are recognised by structure alone — signature,
//!    checksum, LogGuid, sequence numbers, descriptor and data-sector signatures, and an
//!    EntryLength of exactly its descriptor and data sectors (what QEMU's writer and Hyper-V's
//!    files have; it also means no valid entry hides another's start, so the scan reads each
//!    sector at most twice). The ring is read through a 1 MiB window, never whole. The active
//!    sequence is the run of consecutive entries with the highest head whose Tail is in the run.
//! 2. *Plan* ([`plan`]): every entry of that sequence is checked against the file — Flushed- and
//!    LastFileOffset in order and inside what the file can be, every descriptor's target inside
//!    the part of the file a log may touch (the region tables or past the first MiB, never the
//!    file identifier, the headers or the log itself), inside the file as that entry saw it. A
//!    refusal names the descriptor; nothing is applied. The opener then also validates the
//!    region table, metadata and BAT of the file *as the log would leave it* (an in-memory
//!    overlay, [`Overlay`]), and only then writes the replay to disk.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;

use uuid::Uuid;

use super::error::{VResult, VhdxError};
use super::format::*;
use super::header::Header;
use crate::storage::Storage;

pub const ENTRY_HEADER: usize = 64;
const SECTOR: usize = LOG_SECTOR as usize;
/// How far a replay may extend a file past its current length (to the head's LastFileOffset).
/// A writer flushes its data before it logs the BAT entries that point at it, so a legitimate
/// log runs ahead of the file by the few blocks allocated since the last flush at most; four of
/// the largest blocks (1 GiB) is the bound (model choice). A LastFileOffset beyond it is refused
/// instead of growing a file to petabytes.
pub const MAX_REPLAY_GROWTH: u64 = 4 * MAX_BLOCK_SIZE;
/// The ring is read through a window of this size.
const WINDOW: u64 = MIB;

/// One write a log entry makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    Data { offset: u64, bytes: Vec<u8> },
    Zero { offset: u64, length: u64 },
}

impl LogWrite {
    pub fn range(&self) -> (u64, u64) {
        match self {
            LogWrite::Data { offset, .. } => (*offset, LOG_SECTOR),
            LogWrite::Zero { offset, length } => (*offset, *length),
        }
    }
}

/// A parsed, structurally valid entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Ring offset of the entry.
    pub position: u64,
    pub sectors: u64,
    pub sequence: u64,
    pub tail: u64,
    pub flushed_file_offset: u64,
    pub last_file_offset: u64,
    /// The writes, in order, each with the ring offset of its descriptor.
    pub writes: Vec<(u64, LogWrite)>,
}

pub fn desc_sectors(count: usize) -> usize {
    (count + 2).div_ceil(128).max(1)
}

/// Builds an entry of data descriptors for whole 4 KiB `pages` (file offset, bytes).
pub fn build_entry(
    guid: &Uuid,
    sequence: u64,
    tail: u64,
    flushed_file_offset: u64,
    last_file_offset: u64,
    pages: &[(u64, &[u8])],
) -> Vec<u8> {
    let ds = desc_sectors(pages.len());
    let total = (ds + pages.len()) * SECTOR;
    let mut b = vec![0u8; total];
    b[0..4].copy_from_slice(b"loge");
    put_u32(&mut b, 8, total as u32);
    put_u32(&mut b, 12, tail as u32);
    put_u64(&mut b, 16, sequence);
    put_u32(&mut b, 24, pages.len() as u32);
    put_guid(&mut b, 32, guid);
    put_u64(&mut b, 48, flushed_file_offset);
    put_u64(&mut b, 56, last_file_offset);
    for (i, (off, data)) in pages.iter().enumerate() {
        let d = ENTRY_HEADER + i * 32;
        b[d..d + 4].copy_from_slice(b"desc");
        b[d + 4..d + 8].copy_from_slice(&data[4092..4096]);
        b[d + 8..d + 16].copy_from_slice(&data[0..8]);
        put_u64(&mut b, d + 16, *off);
        put_u64(&mut b, d + 24, sequence);
        let s = (ds + i) * SECTOR;
        b[s..s + 4].copy_from_slice(b"data");
        put_u32(&mut b, s + 4, (sequence >> 32) as u32);
        b[s + 8..s + 4092].copy_from_slice(&data[8..4092]);
        put_u32(&mut b, s + 4092, sequence as u32);
    }
    seal(&mut b, 4);
    b
}

/// The log's bytes on storage, read with wrap-around through one cached window.
pub struct Ring<'a> {
    st: &'a dyn Storage,
    offset: u64,
    len: u64,
    window: RefCell<(u64, Vec<u8>)>,
}

impl<'a> Ring<'a> {
    pub fn new(st: &'a dyn Storage, offset: u64, len: u64) -> Ring<'a> {
        Ring {
            st,
            offset,
            len,
            window: RefCell::new((u64::MAX, Vec::new())),
        }
    }

    /// Reads `out.len()` bytes from ring offset `pos`, wrapping at the end.
    fn read(&self, pos: u64, out: &mut [u8]) -> io::Result<()> {
        let mut done = 0usize;
        let mut w = self.window.borrow_mut();
        while done < out.len() {
            let p = (pos + done as u64) % self.len;
            let start = p - p % WINDOW;
            if w.0 != start {
                let n = (self.len - start).min(WINDOW) as usize;
                w.1.resize(n, 0);
                self.st.read_at(&mut w.1, self.offset + start)?;
                w.0 = start;
            }
            let at = (p - start) as usize;
            let n = (w.1.len() - at).min(out.len() - done);
            out[done..done + n].copy_from_slice(&w.1[at..at + n]);
            done += n;
        }
        Ok(())
    }
}

/// A descriptor read from an entry, before its data sector.
enum Desc {
    Zero {
        at: u64,
        offset: u64,
        length: u64,
    },
    Data {
        at: u64,
        offset: u64,
        leading: [u8; 8],
        trailing: [u8; 4],
    },
}

/// Parses the entry at ring offset `pos`; `None` when it is not a valid entry of `guid`.
fn parse_at(ring: &Ring<'_>, pos: u64, guid: &Uuid) -> io::Result<Option<Entry>> {
    let n = ring.len;
    let mut h = [0u8; ENTRY_HEADER];
    ring.read(pos, &mut h)?;
    if &h[0..4] != b"loge" {
        return Ok(None);
    }
    let len = u64::from(u32_at(&h, 8));
    let tail = u64::from(u32_at(&h, 12));
    let seq = u64_at(&h, 16);
    let count = u32_at(&h, 24) as usize;
    let stored_crc = u32_at(&h, 4);
    if len == 0
        || len % LOG_SECTOR != 0
        || len > n
        || seq == 0
        || guid_at(&h, 32) != *guid
        || tail % LOG_SECTOR != 0
        || tail >= n
    {
        return Ok(None);
    }
    let ds = desc_sectors(count) as u64;
    if ds * LOG_SECTOR > len {
        return Ok(None);
    }
    let flushed_file_offset = u64_at(&h, 48);
    let last_file_offset = u64_at(&h, 56);
    // The checksum covers the whole entry with its own field zeroed; computed as it is read.
    let mut sector = vec![0u8; SECTOR];
    ring.read(pos, &mut sector)?;
    let mut first = sector.clone();
    first[4..8].fill(0);
    let mut crc = crc32c::crc32c(&first);
    let mut descs: Vec<Desc> = Vec::new();
    let mut i = 0usize;
    for s in 0..ds {
        if s > 0 {
            ring.read(pos + s * LOG_SECTOR, &mut sector)?;
            crc = crc32c::crc32c_append(crc, &sector);
        }
        let from = if s == 0 { ENTRY_HEADER } else { 0 };
        for d in (from..SECTOR).step_by(32) {
            if i == count {
                break;
            }
            let e = &sector[d..d + 32];
            let at = (pos + s * LOG_SECTOR + d as u64) % n;
            let offset = u64_at(e, 16);
            if u64_at(e, 24) != seq || !offset.is_multiple_of(LOG_SECTOR) {
                return Ok(None);
            }
            let desc = match &e[0..4] {
                b"zero" => {
                    let length = u64_at(e, 8);
                    if !length.is_multiple_of(LOG_SECTOR) {
                        return Ok(None);
                    }
                    Desc::Zero { at, offset, length }
                }
                b"desc" => {
                    let mut leading = [0u8; 8];
                    leading.copy_from_slice(&e[8..16]);
                    let mut trailing = [0u8; 4];
                    trailing.copy_from_slice(&e[4..8]);
                    Desc::Data {
                        at,
                        offset,
                        leading,
                        trailing,
                    }
                }
                _ => return Ok(None),
            };
            descs
                .try_reserve(1)
                .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
            descs.push(desc);
            i += 1;
        }
    }
    let data_count = descs
        .iter()
        .filter(|d| matches!(d, Desc::Data { .. }))
        .count() as u64;
    if (ds + data_count) * LOG_SECTOR != len {
        return Ok(None);
    }
    let mut writes: Vec<(u64, LogWrite)> = Vec::new();
    writes
        .try_reserve_exact(descs.len())
        .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    let mut next_data = ds;
    for d in descs {
        match d {
            Desc::Zero { at, offset, length } => {
                writes.push((at, LogWrite::Zero { offset, length }))
            }
            Desc::Data {
                at,
                offset,
                leading,
                trailing,
            } => {
                let mut bytes = vec![0u8; SECTOR];
                ring.read(pos + next_data * LOG_SECTOR, &mut bytes)?;
                next_data += 1;
                crc = crc32c::crc32c_append(crc, &bytes);
                let sseq = (u64::from(u32_at(&bytes, 4)) << 32) | u64::from(u32_at(&bytes, 4092));
                if &bytes[0..4] != b"data" || sseq != seq {
                    return Ok(None);
                }
                bytes[0..8].copy_from_slice(&leading);
                bytes[4092..4096].copy_from_slice(&trailing);
                writes.push((at, LogWrite::Data { offset, bytes }));
            }
        }
    }
    if crc != stored_crc {
        return Ok(None);
    }
    Ok(Some(Entry {
        position: pos,
        sectors: len / LOG_SECTOR,
        sequence: seq,
        tail,
        flushed_file_offset,
        last_file_offset,
        writes,
    }))
}

/// Finds the active sequence of `ring` for `guid`: the entries to apply, in order. Empty when
/// there is none.
pub fn active_sequence(ring: &Ring<'_>, guid: &Uuid) -> io::Result<Vec<Entry>> {
    let n = ring.len;
    let mut entries: Vec<Entry> = Vec::new();
    let mut pos = 0u64;
    while pos + LOG_SECTOR <= n {
        match parse_at(ring, pos, guid)? {
            Some(e) => {
                pos += e.sectors * LOG_SECTOR;
                entries.push(e);
            }
            None => pos += LOG_SECTOR,
        }
    }
    // Entries do not overlap, so each has at most one predecessor (the entry ending where it
    // starts) and one successor: consecutive entries form simple paths.
    let by_pos: HashMap<u64, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.position, i))
        .collect();
    let mut next: Vec<Option<usize>> = vec![None; entries.len()];
    let mut has_pred = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let after = (e.position + e.sectors * LOG_SECTOR) % n;
        if let Some(&j) = by_pos.get(&after) {
            if j != i && entries[j].sequence == e.sequence.wrapping_add(1) {
                next[i] = Some(j);
                has_pred[j] = true;
            }
        }
    }
    let mut best: Option<(u64, Vec<usize>)> = None;
    for start in (0..entries.len()).filter(|&i| !has_pred[i]) {
        let mut path = vec![start];
        while let Some(j) = next[path[path.len() - 1]] {
            path.push(j);
        }
        let index: HashMap<usize, usize> = path.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        for (k, &h) in path.iter().enumerate() {
            let head = &entries[h];
            let Some(t) = by_pos.get(&head.tail).and_then(|t| index.get(t)) else {
                continue;
            };
            if *t <= k && best.as_ref().is_none_or(|b| head.sequence > b.0) {
                best = Some((head.sequence, path[*t..=k].to_vec()));
            }
        }
    }
    let Some((_, chosen)) = best else {
        return Ok(Vec::new());
    };
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    Ok(chosen.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// A validated replay: the entries to apply and the file length they leave.
#[derive(Debug)]
pub struct Replay {
    pub entries: Vec<Entry>,
    /// The file's length after the replay (extended to the head's LastFileOffset).
    pub file_len: u64,
}

/// Finds and validates the replay a dirty file needs (its header `h`, in slot `slot`, has a
/// non-zero LogGuid). Nothing is written.
pub fn plan(
    name: &str,
    st: &dyn Storage,
    h: &Header,
    slot: usize,
    file_len: u64,
) -> VResult<Replay> {
    let hoff = HEADER_OFFSETS[slot];
    let lo = h.log_offset;
    let le = lo.saturating_add(u64::from(h.log_length));
    if h.log_length == 0 || le > file_len {
        return Err(VhdxError::corrupt(
            name,
            "header",
            "LogOffset",
            hoff + 72,
            format!("a log inside the {file_len}-byte file"),
            format!("log [{lo}, {le})"),
        ));
    }
    let ring = Ring::new(st, lo, u64::from(h.log_length));
    let entries = active_sequence(&ring, &h.log_guid).map_err(|e| VhdxError::io(name, e))?;
    if entries.is_empty() {
        return Err(VhdxError::corrupt(
            name,
            "log",
            "LogGuid",
            hoff + 48,
            "a valid log sequence for a non-zero LogGuid",
            format!("LogGuid {} and no valid entry", guid_braced(&h.log_guid)),
        ));
    }
    let ring_at = |p: u64| lo + p;
    let mut grown = file_len;
    for e in &entries {
        let at = ring_at(e.position);
        if e.flushed_file_offset > e.last_file_offset {
            return Err(VhdxError::corrupt(
                name,
                "log entry",
                "FlushedFileOffset",
                at + 48,
                format!("at most the entry's LastFileOffset {}", e.last_file_offset),
                e.flushed_file_offset.to_string(),
            ));
        }
        if e.flushed_file_offset > file_len {
            return Err(VhdxError::corrupt(
                name,
                "log entry",
                "FlushedFileOffset",
                at + 48,
                format!("at most the file length {file_len} (the file was truncated)"),
                e.flushed_file_offset.to_string(),
            ));
        }
        if e.last_file_offset > file_len.saturating_add(MAX_REPLAY_GROWTH) {
            return Err(VhdxError::corrupt(
                name,
                "log entry",
                "LastFileOffset",
                at + 56,
                format!(
                    "at most {MAX_REPLAY_GROWTH} bytes past the file's {file_len} bytes \
                     (MAX_REPLAY_GROWTH)"
                ),
                e.last_file_offset.to_string(),
            ));
        }
        for (d, w) in &e.writes {
            check_target(name, ring_at(*d), w, e.last_file_offset, (lo, le))?;
        }
        if e.last_file_offset > grown {
            grown = round_up(e.last_file_offset, ALIGN);
        }
    }
    Ok(Replay {
        entries,
        file_len: grown,
    })
}

/// Where one logged write may land: inside the region tables or past the first MiB (the file
/// type identifier, the headers and the reserved area are never logged), inside the file as the
/// entry saw it, and not on the log itself.
fn check_target(name: &str, at: u64, w: &LogWrite, last: u64, log: (u64, u64)) -> VResult<()> {
    let (off, len) = w.range();
    let field = match w {
        LogWrite::Data { .. } => "FileOffset",
        LogWrite::Zero { .. } => "ZeroLength",
    };
    let shown = format!("[{off:#x}, {:#x})", off.saturating_add(len));
    let bad = |field: &'static str, expected: String| {
        VhdxError::corrupt(name, "log descriptor", field, at, expected, shown.clone())
    };
    let Some(end) = off.checked_add(len) else {
        return Err(bad(field, "a target range that ends inside 2^64".into()));
    };
    let tables = REGION_TABLE_OFFSETS[0]..=REGION_TABLE_OFFSETS[1] + REGION_TABLE_SIZE as u64;
    let in_tables = tables.contains(&off) && tables.contains(&end);
    if !in_tables && off < ALIGN {
        return Err(bad(
            "FileOffset",
            format!(
                "a target in the region tables [{:#x}, {:#x}) or past the first MiB (the file \
                 identifier, headers and reserved area are never logged)",
                tables.start(),
                tables.end()
            ),
        ));
    }
    if end > last {
        return Err(bad(
            field,
            format!("a target inside the file as the entry saw it (LastFileOffset {last:#x})"),
        ));
    }
    if off < log.1 && log.0 < end {
        return Err(bad(
            "FileOffset",
            format!(
                "a target outside the log itself [{:#x}, {:#x})",
                log.0, log.1
            ),
        ));
    }
    Ok(())
}

/// The file as a replay leaves it, held in memory: the pages the log writes and the ranges it
/// zeroes, over the file's own bytes.
#[derive(Debug, Default)]
pub struct Overlay {
    pages: BTreeMap<u64, Vec<u8>>,
    /// Sorted, disjoint `[start, end)`.
    zeros: Vec<(u64, u64)>,
    /// Length of the file after the replay.
    pub len: u64,
}

impl Overlay {
    /// The replay's net effect. A page written after a zeroing wins over it, a zeroing after a
    /// page removes it, so applying the zeros and then the pages gives what applying every
    /// write in order gives.
    pub fn new(replay: Replay) -> Overlay {
        let mut o = Overlay {
            len: replay.file_len,
            ..Overlay::default()
        };
        let mut zeros: Vec<(u64, u64)> = Vec::new();
        for e in replay.entries {
            for (_, w) in e.writes {
                match w {
                    LogWrite::Data { offset, bytes } => {
                        o.pages.insert(offset, bytes);
                    }
                    LogWrite::Zero { offset, length } => {
                        let end = offset + length;
                        let gone: Vec<u64> = o.pages.range(offset..end).map(|(k, _)| *k).collect();
                        for k in gone {
                            o.pages.remove(&k);
                        }
                        zeros.push((offset, end));
                    }
                }
            }
        }
        zeros.sort_unstable();
        for (s, e) in zeros {
            match o.zeros.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => o.zeros.push((s, e)),
            }
        }
        o
    }

    /// Reads `buf.len()` bytes at `offset` of the replayed file over `inner`.
    pub fn read(&self, inner: &dyn Storage, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let inner_len = inner.len()?;
        if offset < inner_len {
            let n = (inner_len - offset).min(buf.len() as u64) as usize;
            inner.read_at(&mut buf[..n], offset)?;
            buf[n..].fill(0);
        } else {
            buf.fill(0);
        }
        let first = self.zeros.partition_point(|z| z.1 <= offset);
        for &(s, e) in self.zeros[first..].iter().take_while(|z| z.0 < end) {
            let (lo, hi) = (s.max(offset), e.min(end));
            buf[(lo - offset) as usize..(hi - offset) as usize].fill(0);
        }
        let from = offset - offset % LOG_SECTOR;
        for (&at, page) in self.pages.range(from..end) {
            let (lo, hi) = (at.max(offset), (at + LOG_SECTOR).min(end));
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&page[(lo - at) as usize..(hi - at) as usize]);
            }
        }
        Ok(())
    }

    /// The byte ranges the replay writes data into (its pages), ascending: with the file's own
    /// data extents, where the replayed file may hold data.
    pub fn data_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.pages.iter().map(|(&at, page)| (at, page.len() as u64))
    }

    /// Writes the replay onto `st` (the file it was planned on) and makes it durable.
    pub fn apply(&self, st: &mut dyn Storage) -> io::Result<()> {
        let old_len = st.len()?;
        if old_len < self.len {
            st.set_len(self.len)?;
        }
        let zeros = vec![0u8; MIB as usize];
        for &(s, e) in &self.zeros {
            // Past the old end the file is already zeros.
            let mut p = s;
            while p < e.min(old_len) {
                let n = (e.min(old_len) - p).min(MIB);
                st.write_at(&zeros[..n as usize], p)?;
                p += n;
            }
        }
        for (&at, page) in &self.pages {
            st.write_at(page, at)?;
        }
        st.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn ring_of(bytes: Vec<u8>) -> MemStorage {
        MemStorage {
            bytes,
            name: "log".into(),
        }
    }

    #[test]
    fn entry_round_trip_and_sequence_choice() {
        let g = Uuid::new_v4();
        let mut page = vec![0u8; 4096];
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let mut log = vec![0u8; MIB as usize];
        let e1 = build_entry(&g, 1, 0, 3 * MIB, 3 * MIB, &[(2 * MIB, &page)]);
        log[..e1.len()].copy_from_slice(&e1);
        let p2 = e1.len();
        let e2 = build_entry(
            &g,
            2,
            p2 as u64,
            3 * MIB,
            4 * MIB,
            &[(2 * MIB + 4096, &page)],
        );
        log[p2..p2 + e2.len()].copy_from_slice(&e2);
        let st = ring_of(log.clone());
        let seq = active_sequence(&Ring::new(&st, 0, MIB), &g).unwrap();
        assert_eq!(seq.len(), 1);
        assert_eq!(seq[0].sequence, 2);
        assert_eq!(seq[0].last_file_offset, 4 * MIB);
        assert_eq!(
            seq[0].writes[0].1,
            LogWrite::Data {
                offset: 2 * MIB + 4096,
                bytes: page.clone()
            }
        );
        // Another GUID sees nothing; a torn head falls back to the previous entry.
        assert!(active_sequence(&Ring::new(&st, 0, MIB), &Uuid::new_v4())
            .unwrap()
            .is_empty());
        log[p2 + 5000] ^= 1;
        let st = ring_of(log);
        let seq = active_sequence(&Ring::new(&st, 0, MIB), &g).unwrap();
        assert_eq!(seq[0].sequence, 1);
    }

    #[test]
    fn a_sequence_sharing_one_tail_is_replayed_whole_and_may_wrap() {
        let g = Uuid::new_v4();
        let page = vec![5u8; 4096];
        let mut log = vec![0u8; MIB as usize];
        // Three entries of one sequence starting one sector before the end: the first wraps.
        let start = MIB as usize - 4096;
        let mut pos = start;
        for seq in 1..=3u64 {
            let e = build_entry(&g, seq, start as u64, 4 * MIB, 4 * MIB, &[(2 * MIB, &page)]);
            for (k, b) in e.iter().enumerate() {
                log[(pos + k) % MIB as usize] = *b;
            }
            pos = (pos + e.len()) % MIB as usize;
        }
        let st = ring_of(log);
        let seq = active_sequence(&Ring::new(&st, 0, MIB), &g).unwrap();
        assert_eq!(
            seq.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn an_entry_must_be_exactly_its_sectors() {
        let g = Uuid::new_v4();
        let page = vec![5u8; 4096];
        let mut e = build_entry(&g, 1, 0, 4 * MIB, 4 * MIB, &[(2 * MIB, &page)]);
        put_u32(&mut e, 8, 3 * 4096); // claims a sector it does not have
        e.resize(3 * 4096, 0);
        seal(&mut e, 4);
        let mut log = vec![0u8; MIB as usize];
        log[..e.len()].copy_from_slice(&e);
        let st = ring_of(log);
        assert!(active_sequence(&Ring::new(&st, 0, MIB), &g)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn overlay_is_the_writes_in_order() {
        let page = |b: u8| vec![b; 4096];
        let mk = |writes: Vec<LogWrite>| {
            Overlay::new(Replay {
                entries: vec![Entry {
                    position: 0,
                    sectors: 1,
                    sequence: 1,
                    tail: 0,
                    flushed_file_offset: 0,
                    last_file_offset: 0,
                    writes: writes.into_iter().map(|w| (0, w)).collect(),
                }],
                file_len: 5 * 4096,
            })
        };
        let base = ring_of(vec![9u8; 5 * 4096]);
        let o = mk(vec![
            LogWrite::Data {
                offset: 0,
                bytes: page(1),
            },
            LogWrite::Zero {
                offset: 0,
                length: 8192,
            },
            LogWrite::Data {
                offset: 4096,
                bytes: page(2),
            },
        ]);
        let mut b = vec![0u8; 3 * 4096];
        o.read(&base, &mut b, 0).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0));
        assert!(b[4096..8192].iter().all(|&x| x == 2));
        assert!(b[8192..].iter().all(|&x| x == 9));
        let mut st = ring_of(vec![9u8; 5 * 4096]);
        o.apply(&mut st).unwrap();
        assert_eq!(&st.bytes[..3 * 4096], &b[..]);
    }
}
