//! Changed-block tracking of one virtual disk: the blocks written since the last backup, which is
//! what an incremental backup reads.
//!
//! The tracker persists to a file of its own (never inside the VHDX, as Resilient Change Tracking
//! keeps `.rct` beside the disk). Layout, little-endian:
//!
//! ```text
//! 0   8  magic "VSSIMCBT"
//! 8   4  format version (1)
//! 12  4  length of the disk id in bytes (UTF-8), n
//! 16  8  disk size in bytes
//! 24  8  block size in bytes
//! 32  8  number of leaves that follow, m
//! 40  n  disk id
//! ..     m × (u32 leaf slot, 512 × u64 bitmap)
//! end 4  CRC-32C of everything before it
//! ```
//!
//! A save writes a temporary file, flushes it and renames it over the old one, so a crash leaves
//! the old file or the new one, never half of either. A load checks everything before it builds
//! anything: a file that fails is refused whole.

use std::io::Write;
use std::path::Path;

use crate::chunkset::{with_scratch, ChunkSet, Dealt};
use crate::error::{check_extents, check_power_of_two, Error, Result};

/// Default tracking granularity: 64 KiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 64 * 1024;
pub const MIN_BLOCK_SIZE: u64 = 512;
pub const MAX_BLOCK_SIZE: u64 = 256 * 1024 * 1024;

const MAGIC: &[u8; 8] = b"VSSIMCBT";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 40;
const LEAF_BYTES: usize = 4 + ChunkSet::LEAF_WORDS * 8;

/// Changed-block tracker of one virtual disk.
#[derive(Debug, Clone)]
pub struct ChangeTracker {
    disk_id: String,
    disk_size: u64,
    block_shift: u32,
    changed: ChunkSet,
}

impl ChangeTracker {
    /// A tracker for the disk `disk_id` of `disk_size` bytes in blocks of `block_size` bytes.
    pub fn new(disk_id: &str, disk_size: u64, block_size: u64) -> Result<Self> {
        check_power_of_two("block_size", block_size, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE)?;
        if disk_id.is_empty() || disk_id.len() > 4096 {
            return Err(Error::invalid(
                "disk_id",
                format!("{} bytes long; expected 1 to 4096 bytes", disk_id.len()),
            ));
        }
        let blocks = ChunkSet::universe_for("disk_size", disk_size, block_size, "block")?;
        Ok(ChangeTracker {
            disk_id: disk_id.to_owned(),
            disk_size,
            block_shift: block_size.trailing_zeros(),
            changed: ChunkSet::new(blocks),
        })
    }

    pub fn disk_id(&self) -> &str {
        &self.disk_id
    }

    pub fn disk_size(&self) -> u64 {
        self.disk_size
    }

    pub fn block_size(&self) -> u64 {
        1 << self.block_shift
    }

    /// Number of changed blocks.
    pub fn changed_blocks(&self) -> u64 {
        self.changed.count()
    }

    /// Bytes an incremental backup reads: the changed blocks, the last one cut at the disk's end.
    pub fn changed_bytes(&self) -> u64 {
        let full = self.changed.count() << self.block_shift;
        let last = self.changed.universe() - 1;
        if self.changed.contains(last) {
            full - ((self.changed.universe() << self.block_shift) - self.disk_size)
        } else {
            full
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.changed.memory_bytes() + self.disk_id.len() + std::mem::size_of::<Self>()
    }

    /// Marks the blocks the writes touch; returns how many became changed. The batch is checked
    /// whole first: a bad entry changes nothing.
    pub fn mark(&mut self, offsets: &[u64], lengths: &[u32]) -> Result<u64> {
        if offsets.len() < ChunkSet::PARALLEL_MIN {
            check_extents(offsets, lengths, self.disk_size)?;
            return Ok(self
                .changed
                .insert_extents(offsets, lengths, self.block_shift, u64::MAX));
        }
        with_scratch(|dealt| {
            self.deal_marks(offsets, lengths, dealt)?;
            Ok(self.apply_dealt(dealt))
        })
    }

    /// The first half of [`mark`](Self::mark): checks the writes and deals their blocks into
    /// `dealt` (one pass over the arrays), for [`apply_dealt`](Self::apply_dealt) to apply — so a
    /// caller can read its arrays in one place and apply them in another.
    pub fn deal_marks(&self, offsets: &[u64], lengths: &[u32], dealt: &mut Dealt) -> Result<()> {
        self.changed
            .deal(offsets, lengths, self.block_shift, self.disk_size, dealt)
    }

    /// Applies the blocks dealt by [`deal_marks`](Self::deal_marks); returns how many became
    /// changed.
    pub fn apply_dealt(&mut self, dealt: &Dealt) -> u64 {
        self.changed.apply_dealt(dealt, u64::MAX)
    }

    /// Changed data as merged byte runs `(offset, length)`, ascending; the last run is cut at the
    /// disk's end.
    pub fn changed_extents(&self) -> Vec<(u64, u64)> {
        self.changed
            .runs()
            .into_iter()
            .map(|(first, n)| {
                let off = first << self.block_shift;
                let end = ((first + n) << self.block_shift).min(self.disk_size);
                (off, end - off)
            })
            .collect()
    }

    /// Forgets every change (after a backup took them).
    pub fn reset(&mut self) {
        self.changed.clear();
    }

    fn encode(&self) -> Vec<u8> {
        let leaves: Vec<_> = self.changed.leaf_entries().collect();
        let mut buf =
            Vec::with_capacity(HEADER_LEN + self.disk_id.len() + leaves.len() * LEAF_BYTES + 4);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.disk_id.len() as u32).to_le_bytes());
        buf.extend_from_slice(&self.disk_size.to_le_bytes());
        buf.extend_from_slice(&self.block_size().to_le_bytes());
        buf.extend_from_slice(&(leaves.len() as u64).to_le_bytes());
        buf.extend_from_slice(self.disk_id.as_bytes());
        for (slot, words) in leaves {
            buf.extend_from_slice(&slot.to_le_bytes());
            for w in words.iter() {
                buf.extend_from_slice(&w.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Saves the tracker to `path`, atomically (temporary file, fsync, rename). `path` names a
    /// file: an empty path or a directory is refused before anything is written.
    pub fn save(&self, path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() {
            return Err(Error::invalid(
                "path",
                "is empty: expected the path of the file to save the tracker to",
            ));
        }
        if path.file_name().is_none() || path.is_dir() {
            return Err(Error::invalid(
                "path",
                format!(
                    "{} is a directory: expected the path of a file to save the tracker to \
                     (such as {})",
                    path.display(),
                    path.join(format!("{}.cbt", self.disk_id.escape_default()))
                        .display()
                ),
            ));
        }
        let buf = self.encode();
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = Path::new(&tmp_name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            Error::io(path, e)
        })
    }

    /// Loads a tracker saved by [`save`](Self::save). When `expect_disk_id` is given, a file of
    /// another disk is refused.
    pub fn load(path: &Path, expect_disk_id: Option<&str>) -> Result<Self> {
        let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&buf, expect_disk_id).map_err(|message| Error::TrackerFile {
            path: path.to_owned(),
            message,
        })
    }

    fn decode(buf: &[u8], expect_disk_id: Option<&str>) -> Result<Self, String> {
        let field = |off: usize, len: usize| -> Result<&[u8], String> {
            buf.get(off..off + len).ok_or_else(|| {
                format!(
                    "truncated: {} bytes, the header needs {} (field at offset {off})",
                    buf.len(),
                    off + len
                )
            })
        };
        let u32_at = |off: usize| -> Result<u32, String> {
            let b = field(off, 4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u64_at = |off: usize| -> Result<u64, String> {
            let b = field(off, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_le_bytes(a))
        };
        let magic = field(0, 8)?;
        if magic != MAGIC {
            return Err(format!(
                "not a change-tracking file: magic at offset 0 is {magic:02x?}, expected \"VSSIMCBT\""
            ));
        }
        if buf.len() < HEADER_LEN + 4 {
            return Err(format!(
                "truncated: {} bytes, a file has at least {}",
                buf.len(),
                HEADER_LEN + 4
            ));
        }
        let body = &buf[..buf.len() - 4];
        let stored = u32_at(buf.len() - 4)?;
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(format!(
                "checksum mismatch at offset {}: stored {stored:#010x}, computed {computed:#010x}",
                buf.len() - 4
            ));
        }
        let version = u32_at(8)?;
        if version != VERSION {
            return Err(format!(
                "version at offset 8 is {version}, expected {VERSION}"
            ));
        }
        let id_len = u32_at(12)? as usize;
        let disk_size = u64_at(16)?;
        let block_size = u64_at(24)?;
        let leaves = u64_at(32)?;
        let id_bytes = field(HEADER_LEN, id_len)?;
        let disk_id = std::str::from_utf8(id_bytes)
            .map_err(|_| format!("disk id at offset {HEADER_LEN} is not UTF-8"))?;
        if let Some(want) = expect_disk_id {
            if want != disk_id {
                return Err(format!("belongs to disk {disk_id:?}, expected {want:?}"));
            }
        }
        let mut t = ChangeTracker::new(disk_id, disk_size, block_size)
            .map_err(|e| format!("header at offset 16: {e}"))?;
        let start = HEADER_LEN + id_len;
        let expected_len = leaves
            .checked_mul(LEAF_BYTES as u64)
            .and_then(|n| n.checked_add(start as u64 + 4));
        if expected_len != Some(buf.len() as u64) {
            return Err(format!(
                "leaf count at offset 32 is {leaves}, which needs a file of {expected_len:?} bytes; found {}",
                buf.len()
            ));
        }
        let slots = ChunkSet::slots_for(t.changed.universe());
        let mut seen = std::collections::HashSet::new();
        let mut words = [0u64; ChunkSet::LEAF_WORDS];
        for i in 0..leaves as usize {
            let off = start + i * LEAF_BYTES;
            let slot = u32_at(off)?;
            if u64::from(slot) >= slots || !seen.insert(slot) {
                return Err(format!(
                    "leaf {i} at offset {off}: slot {slot} is out of range (0..{slots}) or repeated"
                ));
            }
            for (w, word) in words.iter_mut().enumerate() {
                *word = u64_at(off + 4 + w * 8)?;
            }
            t.changed.set_leaf(slot, &words);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = DEFAULT_BLOCK_SIZE;

    #[test]
    fn marks_merge_into_extents() {
        let mut t = ChangeTracker::new("disk", 10 * B + 100, B).unwrap();
        t.mark(&[0, B + 5, 3 * B, 10 * B], &[1, 10, 1, 50]).unwrap();
        assert_eq!(
            t.changed_extents(),
            vec![(0, 2 * B), (3 * B, B), (10 * B, 100)]
        );
        assert_eq!(t.changed_bytes(), 3 * B + 100);
        t.reset();
        assert_eq!(t.changed_blocks(), 0);
    }

    #[test]
    fn save_load_round_trip_and_refusals() {
        let dir = std::env::temp_dir().join(format!("vssim-cbt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.cbt");
        let mut t = ChangeTracker::new("{abc}", 1 << 40, B).unwrap();
        t.mark(&[0, 1 << 39, (1 << 40) - 1], &[1, 1 << 20, 1])
            .unwrap();
        t.save(&path).unwrap();
        let u = ChangeTracker::load(&path, Some("{abc}")).unwrap();
        assert_eq!(u.changed_extents(), t.changed_extents());
        assert!(ChangeTracker::load(&path, Some("{other}")).is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[50] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = ChangeTracker::load(&path, None).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        std::fs::write(&path, b"VSSIMCBT").unwrap();
        assert!(ChangeTracker::load(&path, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn save_refuses_a_directory_before_writing() {
        let t = ChangeTracker::new("d", 1 << 20, B).unwrap();
        for p in [".", "..", "/", ""] {
            let err = t.save(Path::new(p)).unwrap_err().to_string();
            assert!(err.contains("expected the path of"), "{p:?}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("vssim-cbt-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = t.save(&dir).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing written"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments() {
        assert!(ChangeTracker::new("d", 1 << 20, 1000).is_err());
        assert!(ChangeTracker::new("d", 0, B).is_err());
        assert!(ChangeTracker::new("", 1 << 20, B).is_err());
        let mut t = ChangeTracker::new("d", 1 << 20, B).unwrap();
        assert!(t.mark(&[1 << 20], &[1]).is_err());
    }
}
