//! The volume's on-disk index: an append-only journal of checksummed records.
//!
//! Every record is framed as
//!
//! ```text
//! magic "VSJR" (u32 LE) | payload length (u32) | sequence (u64) | kind (u8) | payload | CRC-32C (u32)
//! ```
//!
//! The CRC covers every byte before it. Sequences count from 1 without gaps. A reader accepts the
//! longest prefix of good records; what follows is reported as a [`Tail`], so the volume can decide
//! what a torn or corrupt tail means for its snapshots (see `volume/mod.rs`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u32 = u32::from_le_bytes(*b"VSJR");
const HEADER_LEN: usize = 4 + 4 + 8 + 1;
const TRAILER_LEN: usize = 4;
/// A record larger than this is corrupt (a snapshot table of a few hundred thousand files fits).
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

/// Journal format version written in the header record.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Why a snapshot was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// The user (or requester) deleted it.
    User,
    /// The diff area could not hold a copy: the oldest snapshot went (VolSnap event 24).
    DiffAreaFull,
}

impl DeleteReason {
    fn code(self) -> u8 {
        match self {
            DeleteReason::User => 1,
            DeleteReason::DiffAreaFull => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(DeleteReason::User),
            2 => Some(DeleteReason::DiffAreaFull),
            _ => None,
        }
    }
}

/// One preserved chunk in a [`Record::Copies`] record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyEntry {
    pub chunk: u64,
    pub slot: u32,
    /// CRC-32C of the copied chunk, when the volume checksums its copies.
    pub data_crc: Option<u32>,
    /// Snapshot ids this one copy serves (copy-once: every snapshot that still needed the chunk).
    pub serves: Vec<u64>,
}

/// The journal's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// First record of every journal.
    Header {
        version: u32,
        chunk_size: u64,
    },
    /// A process opened the volume: its boot id and durability mode.
    Session {
        boot_id: String,
        durable: bool,
        pid: u32,
    },
    /// The session ended cleanly (everything before is on disk).
    Close,
    /// A snapshot was taken: the files that existed then, with their sizes.
    Create {
        id: u64,
        created_unix: u64,
        files: Vec<(String, u64)>,
    },
    Delete {
        id: u64,
        reason: DeleteReason,
    },
    /// The snapshot can no longer be trusted; it stays listed with the reason.
    Invalidate {
        id: u64,
        reason: String,
    },
    /// Old chunks of `path` copied to the diff area before a live write.
    Copies {
        path: String,
        entries: Vec<CopyEntry>,
    },
    /// A write into a writable snapshot view: the chunk's new content is in `slot`.
    ViewWrite {
        id: u64,
        path: String,
        chunk: u64,
        slot: u32,
        data_crc: u32,
    },
    /// A writable snapshot view's file got a new length.
    ViewResize {
        id: u64,
        path: String,
        size: u64,
    },
    /// Snapshot ids continue from here (what a compacted journal keeps of its past).
    IdFloor {
        next_id: u64,
    },
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Header { .. } => 1,
            Record::Session { .. } => 2,
            Record::Close => 3,
            Record::Create { .. } => 4,
            Record::Delete { .. } => 5,
            Record::Invalidate { .. } => 6,
            Record::Copies { .. } => 7,
            Record::ViewWrite { .. } => 8,
            Record::ViewResize { .. } => 9,
            Record::IdFloor { .. } => 10,
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        match self {
            Record::Header {
                version,
                chunk_size,
            } => {
                w.u32(*version);
                w.u64(*chunk_size);
            }
            Record::Session {
                boot_id,
                durable,
                pid,
            } => {
                w.str(boot_id);
                w.u8(u8::from(*durable));
                w.u32(*pid);
            }
            Record::Close => {}
            Record::Create {
                id,
                created_unix,
                files,
            } => {
                w.u64(*id);
                w.u64(*created_unix);
                w.u32(files.len() as u32);
                for (path, size) in files {
                    w.str(path);
                    w.u64(*size);
                }
            }
            Record::Delete { id, reason } => {
                w.u64(*id);
                w.u8(reason.code());
            }
            Record::Invalidate { id, reason } => {
                w.u64(*id);
                w.str(reason);
            }
            Record::Copies { path, entries } => {
                w.str(path);
                w.u32(entries.len() as u32);
                for e in entries {
                    w.u64(e.chunk);
                    w.u32(e.slot);
                    w.u8(u8::from(e.data_crc.is_some()));
                    w.u32(e.data_crc.unwrap_or(0));
                    w.u32(e.serves.len() as u32);
                    for &s in &e.serves {
                        w.u64(s);
                    }
                }
            }
            Record::ViewWrite {
                id,
                path,
                chunk,
                slot,
                data_crc,
            } => {
                w.u64(*id);
                w.str(path);
                w.u64(*chunk);
                w.u32(*slot);
                w.u32(*data_crc);
            }
            Record::ViewResize { id, path, size } => {
                w.u64(*id);
                w.str(path);
                w.u64(*size);
            }
            Record::IdFloor { next_id } => w.u64(*next_id),
        }
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Record, String> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let rec = match kind {
            1 => Record::Header {
                version: r.u32()?,
                chunk_size: r.u64()?,
            },
            2 => Record::Session {
                boot_id: r.str()?,
                durable: r.u8()? != 0,
                pid: r.u32()?,
            },
            3 => Record::Close,
            4 => {
                let id = r.u64()?;
                let created_unix = r.u64()?;
                let n = r.u32()? as usize;
                let mut files = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    files.push((r.str()?, r.u64()?));
                }
                Record::Create {
                    id,
                    created_unix,
                    files,
                }
            }
            5 => {
                let id = r.u64()?;
                let code = r.u8()?;
                let reason = DeleteReason::from_code(code)
                    .ok_or_else(|| format!("unknown delete reason {code}"))?;
                Record::Delete { id, reason }
            }
            6 => Record::Invalidate {
                id: r.u64()?,
                reason: r.str()?,
            },
            7 => {
                let path = r.str()?;
                let n = r.u32()? as usize;
                let mut entries = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let chunk = r.u64()?;
                    let slot = r.u32()?;
                    let checked = r.u8()? != 0;
                    let crc = r.u32()?;
                    let data_crc = checked.then_some(crc);
                    let k = r.u32()? as usize;
                    let mut serves = Vec::with_capacity(k.min(512));
                    for _ in 0..k {
                        serves.push(r.u64()?);
                    }
                    entries.push(CopyEntry {
                        chunk,
                        slot,
                        data_crc,
                        serves,
                    });
                }
                Record::Copies { path, entries }
            }
            8 => Record::ViewWrite {
                id: r.u64()?,
                path: r.str()?,
                chunk: r.u64()?,
                slot: r.u32()?,
                data_crc: r.u32()?,
            },
            9 => Record::ViewResize {
                id: r.u64()?,
                path: r.str()?,
                size: r.u64()?,
            },
            10 => Record::IdFloor { next_id: r.u64()? },
            other => return Err(format!("unknown record kind {other}")),
        };
        if r.pos != payload.len() {
            return Err(format!(
                "record kind {kind} has {} trailing bytes",
                payload.len() - r.pos
            ));
        }
        Ok(rec)
    }

    /// The framed bytes of this record with sequence `seq`.
    pub(crate) fn frame(&self, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&seq.to_le_bytes());
        out.push(self.kind());
        self.encode_payload(&mut out);
        let payload_len = (out.len() - HEADER_LEN) as u32;
        out[4..8].copy_from_slice(&payload_len.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("payload ends inside a field at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a path is not UTF-8".to_owned())
    }
}

/// What follows the last good record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The journal ends exactly after the last good record.
    Clean,
    /// Bytes after the last good record do not form a good record (a torn append, or corruption);
    /// `message` says what was wrong and where.
    Bad { offset: u64, message: String },
}

/// The result of reading a journal.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Good records: sequence, byte offset, record.
    pub records: Vec<(u64, u64, Record)>,
    /// Byte length of the good prefix.
    pub good_len: u64,
    pub tail: Tail,
}

/// Reads every good record of `bytes`, stopping at the first bad one.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut expect_seq = 1u64;
    let tail = loop {
        if pos == bytes.len() {
            break Tail::Clean;
        }
        let bad = |message: String| Tail::Bad {
            offset: pos as u64,
            message,
        };
        if bytes.len() - pos < HEADER_LEN + TRAILER_LEN {
            break bad(format!(
                "{} bytes at the end, too few for a record",
                bytes.len() - pos
            ));
        }
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(b)
        };
        if word(pos) != MAGIC {
            break bad("no record magic".to_owned());
        }
        let payload_len = word(pos + 4) as usize;
        if payload_len > MAX_PAYLOAD {
            break bad(format!("payload length {payload_len} is implausible"));
        }
        let end = pos + HEADER_LEN + payload_len + TRAILER_LEN;
        if end > bytes.len() {
            break bad(format!(
                "record of {} bytes is cut short at the end of the journal",
                end - pos
            ));
        }
        let crc_at = end - TRAILER_LEN;
        let crc = crc32c::crc32c(&bytes[pos..crc_at]);
        if crc != word(crc_at) {
            break bad(format!(
                "CRC-32C mismatch: stored {:#010x}, computed {crc:#010x}",
                word(crc_at)
            ));
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&bytes[pos + 8..pos + 16]);
        let seq = u64::from_le_bytes(seq_bytes);
        if seq != expect_seq {
            break bad(format!("sequence {seq}, expected {expect_seq}"));
        }
        let kind = bytes[pos + 16];
        match Record::decode(kind, &bytes[pos + HEADER_LEN..crc_at]) {
            Ok(rec) => records.push((seq, pos as u64, rec)),
            Err(message) => break bad(message),
        }
        expect_seq += 1;
        pos = end;
    };
    Scan {
        records,
        good_len: pos as u64,
        tail,
    }
}

/// The bytes of a whole journal holding `records`, sequences from 1.
pub(crate) fn encode(records: &[Record]) -> Vec<u8> {
    records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.frame(i as u64 + 1))
        .collect()
}

/// The append side of the journal.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
    next_seq: u64,
    /// Bytes past `len` from before (see [`Journal::resume`]).
    stale_tail: bool,
}

impl Journal {
    /// Continues a journal whose good prefix is `len` bytes and `records` records long. Bytes
    /// after it (a torn or rejected tail) stay until the first append has overwritten them and
    /// is on disk: cutting them first would let a crash in between forget that they were there
    /// (and so forget the invalidations the volume appends because of them).
    pub(crate) fn resume(file: File, path: &Path, len: u64, records: u64) -> io::Result<Self> {
        let stale_tail = file.metadata()?.len() > len;
        Ok(Journal {
            file,
            path: path.to_owned(),
            len,
            next_seq: records + 1,
            stale_tail,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends records in one write. On failure the journal is cut back to where it was, so a
    /// refused operation leaves no trace.
    pub(crate) fn append(&mut self, records: &[Record]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for (i, r) in records.iter().enumerate() {
            bytes.extend_from_slice(&r.frame(self.next_seq + i as u64));
        }
        if let Err(e) = self.file.write_all_at(&bytes, self.len) {
            if !self.stale_tail {
                let _ = self.file.set_len(self.len);
            }
            return Err(e);
        }
        self.len += bytes.len() as u64;
        self.next_seq += records.len() as u64;
        if self.stale_tail {
            self.file.sync_data()?;
            self.file.set_len(self.len)?;
            self.file.sync_data()?;
            self.stale_tail = false;
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Closes the journal's file, putting `placeholder` in its place (the journal is not used
    /// again).
    pub(crate) fn release(&mut self, placeholder: File) {
        self.file = placeholder;
    }

    /// Replaces the journal with one holding only `records` (written beside it, fsynced, renamed
    /// over it, the folder fsynced: a crash leaves the old journal or the new one, whole).
    pub(crate) fn rewrite(&mut self, records: &[Record]) -> io::Result<()> {
        let tmp = self.path.with_extension("journal.tmp");
        let bytes = encode(records);
        std::fs::write(&tmp, &bytes)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        self.len = bytes.len() as u64;
        self.next_seq = records.len() as u64 + 1;
        self.stale_tail = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Header {
                version: FORMAT_VERSION,
                chunk_size: 16384,
            },
            Record::Session {
                boot_id: "b".into(),
                durable: true,
                pid: 7,
            },
            Record::Create {
                id: 1,
                created_unix: 5,
                files: vec![("a/b.vhdx".into(), 12345)],
            },
            Record::Copies {
                path: "a/b.vhdx".into(),
                entries: vec![CopyEntry {
                    chunk: 3,
                    slot: 0,
                    data_crc: Some(9),
                    serves: vec![1],
                }],
            },
            Record::ViewWrite {
                id: 1,
                path: "x".into(),
                chunk: 1,
                slot: 2,
                data_crc: 3,
            },
            Record::ViewResize {
                id: 1,
                path: "x".into(),
                size: 10,
            },
            Record::Invalidate {
                id: 1,
                reason: "r".into(),
            },
            Record::Delete {
                id: 1,
                reason: DeleteReason::DiffAreaFull,
            },
            Record::IdFloor { next_id: 2 },
            Record::Close,
        ]
    }

    #[test]
    fn round_trip() {
        let recs = sample();
        let bytes = encode(&recs);
        let s = scan(&bytes);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.good_len, bytes.len() as u64);
        let got: Vec<Record> = s.records.into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(got, recs);
    }

    #[test]
    fn every_truncation_keeps_a_good_prefix_and_reports_the_tail() {
        let recs = sample();
        let bytes = encode(&recs);
        let ends: Vec<usize> = {
            let mut e = vec![0];
            let mut acc = 0;
            for (i, r) in recs.iter().enumerate() {
                acc += r.frame(i as u64 + 1).len();
                e.push(acc);
            }
            e
        };
        for cut in 0..bytes.len() {
            let s = scan(&bytes[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(s.records.len(), whole, "cut {cut}");
            assert_eq!(s.good_len as usize, ends[whole]);
            assert_eq!(s.tail == Tail::Clean, ends.contains(&cut), "cut {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn scanning_damaged_journals_never_panics(
            flips in proptest::collection::vec((0usize..2000, 0u8..=255), 0..8),
            cut in 0usize..2000,
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut bytes = encode(&sample());
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            bytes.truncate(cut.min(bytes.len()));
            bytes.extend(junk);
            let s = scan(&bytes);
            proptest::prop_assert!(s.good_len as usize <= bytes.len());
            proptest::prop_assert_eq!(s.tail == Tail::Clean, s.good_len as usize == bytes.len());
        }
    }

    #[test]
    fn a_stale_tail_stays_until_the_next_append_is_on_disk() {
        let dir = std::env::temp_dir().join(format!("vssim-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j");
        let recs = sample();
        let mut bytes = encode(&recs[..3]);
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&recs[3].frame(4)[..9]); // a torn fourth record
        std::fs::write(&path, &bytes).unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap()
        };
        // Opened and dropped without appending (a crash): the torn bytes are still there.
        drop(Journal::resume(open(), &path, good, 3).unwrap());
        assert!(matches!(
            scan(&std::fs::read(&path).unwrap()).tail,
            Tail::Bad { .. }
        ));
        let mut j = Journal::resume(open(), &path, good, 3).unwrap();
        j.append(&[Record::Close]).unwrap();
        let s = scan(&std::fs::read(&path).unwrap());
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.records.len(), 4);
        assert_eq!(s.records[3].2, Record::Close);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flipped_bit_and_sequence_gap_are_detected() {
        let recs = sample();
        let mut bytes = encode(&recs);
        let at = recs[0].frame(1).len() + 20;
        bytes[at] ^= 1;
        let s = scan(&bytes);
        assert_eq!(s.records.len(), 1);
        assert!(matches!(s.tail, Tail::Bad { ref message, .. } if message.contains("CRC")));

        let mut gap = recs[0].frame(1);
        gap.extend(recs[1].frame(3));
        let s = scan(&gap);
        assert_eq!(s.records.len(), 1);
        assert!(matches!(s.tail, Tail::Bad { ref message, .. } if message.contains("sequence")));
    }
}
