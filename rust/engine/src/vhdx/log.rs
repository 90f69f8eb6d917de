//! The VHDX log: a ring of 4 KiB sectors that makes BAT and metadata updates atomic.
//!
//! How vssim uses it: each transaction is one entry holding whole 4 KiB pages of the BAT (or
//! metadata region) as data descriptors. The entry is written at the ring's write position, made
//! durable, then the pages are written in place and made durable. Every entry is complete on its
//! own (its Tail is its own offset) and an entry is never larger than a third of the ring, so the
//! previous entry is intact while the next one is being written: a crash at any point leaves
//! either the new entry (replayed) or the previous one (already applied, replaying it is a no-op).
//!
//! Replay follows the spec: scan the ring for runs of valid entries with consecutive sequence
//! numbers and the header's LogGuid, take the run with the highest head, apply from the head's
//! Tail to the head, then extend the file to the head's LastFileOffset.

use uuid::Uuid;

use super::error::{VResult, VhdxError};
use super::format::*;

pub const ENTRY_HEADER: usize = 64;
const SECTOR: usize = LOG_SECTOR as usize;

/// One write a log entry makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    Data { offset: u64, bytes: Vec<u8> },
    Zero { offset: u64, length: u64 },
}

/// A parsed, valid entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub position: u64,
    pub sectors: u64,
    pub sequence: u64,
    pub tail: u64,
    pub flushed_file_offset: u64,
    pub last_file_offset: u64,
    pub writes: Vec<LogWrite>,
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

/// Reads `len` bytes of the ring starting at `pos`, wrapping.
fn ring(log: &[u8], pos: usize, len: usize) -> Vec<u8> {
    let n = log.len();
    let mut out = Vec::with_capacity(len);
    let mut p = pos % n.max(1);
    while out.len() < len {
        let take = (len - out.len()).min(n - p);
        out.extend_from_slice(&log[p..p + take]);
        p = (p + take) % n;
    }
    out
}

/// Parses the entry at `pos` of the ring; `None` when it is not a valid entry.
fn parse_at(log: &[u8], pos: usize, guid: &Uuid) -> Option<Entry> {
    let n = log.len();
    if n < SECTOR || pos + ENTRY_HEADER > n {
        return None;
    }
    let h = &log[pos..pos + ENTRY_HEADER];
    if &h[0..4] != b"loge" {
        return None;
    }
    let len = u32_at(h, 8) as usize;
    let seq = u64_at(h, 16);
    let count = u32_at(h, 24) as usize;
    if len == 0 || len % SECTOR != 0 || len > n || seq == 0 || guid_at(h, 32) != *guid {
        return None;
    }
    let ds = desc_sectors(count);
    if count.saturating_mul(32) > len || ds * SECTOR > len {
        return None;
    }
    let e = ring(log, pos, len);
    if u32_at(&e, 4) != crc_with_zeroed(&e, 4) {
        return None;
    }
    // Every write of an entry lies inside the file as it was (LastFileOffset): a descriptor
    // reaching past it is not a valid entry (and would make replay grow or zero without bound).
    let last_file_offset = u64_at(h, 56);
    let inside = |off: u64, len: u64| off.checked_add(len).is_some_and(|e| e <= last_file_offset);
    let mut writes = Vec::with_capacity(count);
    let mut data_idx = 0usize;
    for i in 0..count {
        let d = ENTRY_HEADER + i * 32;
        let file_offset = u64_at(&e, d + 16);
        if u64_at(&e, d + 24) != seq || file_offset % LOG_SECTOR != 0 {
            return None;
        }
        match &e[d..d + 4] {
            b"zero" => {
                let length = u64_at(&e, d + 8);
                if length % LOG_SECTOR != 0 || !inside(file_offset, length) {
                    return None;
                }
                writes.push(LogWrite::Zero {
                    offset: file_offset,
                    length,
                });
            }
            b"desc" => {
                let s = (ds + data_idx) * SECTOR;
                data_idx += 1;
                if s + SECTOR > len || &e[s..s + 4] != b"data" {
                    return None;
                }
                let sseq = (u64::from(u32_at(&e, s + 4)) << 32) | u64::from(u32_at(&e, s + 4092));
                if sseq != seq || !inside(file_offset, LOG_SECTOR) {
                    return None;
                }
                let mut bytes = vec![0u8; SECTOR];
                bytes[0..8].copy_from_slice(&e[d + 8..d + 16]);
                bytes[8..4092].copy_from_slice(&e[s + 8..s + 4092]);
                bytes[4092..4096].copy_from_slice(&e[d + 4..d + 8]);
                writes.push(LogWrite::Data {
                    offset: file_offset,
                    bytes,
                });
            }
            _ => return None,
        }
    }
    if (ds + data_idx) * SECTOR > len {
        return None;
    }
    Some(Entry {
        position: pos as u64,
        sectors: (len / SECTOR) as u64,
        sequence: seq,
        tail: u64::from(u32_at(h, 12)),
        flushed_file_offset: u64_at(h, 48),
        last_file_offset: u64_at(h, 56),
        writes,
    })
}

/// Finds the active sequence of the ring `log` (its bytes) for `guid`: the entries to apply, in
/// order. Empty when there is none.
pub fn active_sequence(log: &[u8], guid: &Uuid) -> Vec<Entry> {
    let n = log.len();
    let mut best: Vec<Entry> = Vec::new();
    let mut pos = 0usize;
    while pos + SECTOR <= n {
        let Some(first) = parse_at(log, pos, guid) else {
            pos += SECTOR;
            continue;
        };
        let mut run = vec![first];
        let mut covered = run[0].sectors as usize;
        loop {
            let last = &run[run.len() - 1];
            let next = (last.position as usize + last.sectors as usize * SECTOR) % n;
            if covered * SECTOR >= n {
                break;
            }
            match parse_at(log, next, guid) {
                Some(e) if e.sequence == last.sequence + 1 => {
                    covered += e.sectors as usize;
                    run.push(e);
                }
                _ => break,
            }
        }
        let head = &run[run.len() - 1];
        // The sequence is usable only from the entry at the head's Tail.
        if let Some(t) = run.iter().position(|e| e.position == head.tail) {
            let better = best.last().is_none_or(|b| head.sequence > b.sequence);
            if better {
                best = run.split_off(t);
            }
        }
        pos += SECTOR;
    }
    best
}

/// The file-offset checks replay makes before applying.
pub fn check_replayable(
    file: &str,
    entries: &[Entry],
    file_len: u64,
    log_offset: u64,
) -> VResult<()> {
    if let Some(head) = entries.last() {
        if head.flushed_file_offset > file_len {
            return Err(VhdxError::corrupt(
                file,
                "log entry",
                "FlushedFileOffset",
                log_offset + head.position + 48,
                format!("at most the file length {file_len} (the file was truncated)"),
                head.flushed_file_offset.to_string(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let seq = active_sequence(&log, &g);
        assert_eq!(seq.len(), 1);
        assert_eq!(seq[0].sequence, 2);
        assert_eq!(seq[0].last_file_offset, 4 * MIB);
        assert_eq!(
            seq[0].writes,
            vec![LogWrite::Data {
                offset: 2 * MIB + 4096,
                bytes: page.clone()
            }]
        );
        // Another GUID sees nothing; a torn head falls back to the previous entry.
        assert!(active_sequence(&log, &Uuid::new_v4()).is_empty());
        log[p2 + 5000] ^= 1;
        let seq = active_sequence(&log, &g);
        assert_eq!(seq[0].sequence, 1);
    }
}
