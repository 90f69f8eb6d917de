//! The region table (64 KiB, two identical copies at 192 KiB and 256 KiB): where the BAT and the
//! metadata region live. Unknown optional regions are kept as found; an unknown required region
//! makes the file unusable.

use uuid::Uuid;

use super::error::{VResult, VhdxError};
use super::format::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionEntry {
    pub guid: Uuid,
    pub file_offset: u64,
    pub length: u32,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionTable {
    pub entries: Vec<RegionEntry>,
}

pub const MAX_REGION_ENTRIES: u32 = 2047;

impl RegionTable {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        b[0..4].copy_from_slice(b"regi");
        put_u32(&mut b, 8, self.entries.len() as u32);
        for (i, e) in self.entries.iter().enumerate() {
            let o = 16 + i * 32;
            put_guid(&mut b, o, &e.guid);
            put_u64(&mut b, o + 16, e.file_offset);
            put_u32(&mut b, o + 24, e.length);
            put_u32(&mut b, o + 28, u32::from(e.required));
        }
        seal(&mut b, 4);
        b
    }

    /// Parses and validates one copy of the table (signature, checksum, entries).
    pub fn parse(file: &str, b: &[u8], offset: u64, file_len: u64) -> VResult<RegionTable> {
        if b.len() < REGION_TABLE_SIZE {
            return Err(VhdxError::corrupt(
                file,
                "region table",
                "signature",
                offset,
                "a 64 KiB region table",
                format!("{} bytes (file truncated)", b.len()),
            ));
        }
        if &b[0..4] != b"regi" {
            return Err(VhdxError::corrupt(
                file,
                "region table",
                "signature",
                offset,
                "\"regi\"",
                sig(b, 0, 4),
            ));
        }
        let stored = u32_at(b, 4);
        let computed = crc_with_zeroed(&b[..REGION_TABLE_SIZE], 4);
        if stored != computed {
            return Err(VhdxError::corrupt(
                file,
                "region table",
                "checksum",
                offset + 4,
                format!("{computed:#010x}"),
                format!("{stored:#010x}"),
            ));
        }
        let count = u32_at(b, 8);
        if count > MAX_REGION_ENTRIES {
            return Err(VhdxError::corrupt(
                file,
                "region table",
                "EntryCount",
                offset + 8,
                format!("at most {MAX_REGION_ENTRIES}"),
                count.to_string(),
            ));
        }
        let mut entries: Vec<RegionEntry> = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let o = 16 + i * 32;
            let eoff = offset + o as u64;
            let e = RegionEntry {
                guid: guid_at(b, o),
                file_offset: u64_at(b, o + 16),
                length: u32_at(b, o + 24),
                required: u32_at(b, o + 28) & 1 == 1,
            };
            if !e.file_offset.is_multiple_of(ALIGN) || e.file_offset < ALIGN {
                return Err(VhdxError::corrupt(
                    file,
                    "region table entry",
                    "FileOffset",
                    eoff + 16,
                    "a multiple of 1 MiB, at least 1 MiB",
                    e.file_offset.to_string(),
                ));
            }
            if u64::from(e.length) % ALIGN != 0 || e.length == 0 {
                return Err(VhdxError::corrupt(
                    file,
                    "region table entry",
                    "Length",
                    eoff + 24,
                    "a non-zero multiple of 1 MiB",
                    e.length.to_string(),
                ));
            }
            let end = e.file_offset.saturating_add(u64::from(e.length));
            if end > file_len {
                return Err(VhdxError::corrupt(
                    file,
                    "region table entry",
                    "FileOffset",
                    eoff + 16,
                    format!("a region inside the {file_len}-byte file"),
                    format!("region {} ends at {end}", guid_braced(&e.guid)),
                ));
            }
            for prev in &entries {
                let pend = prev.file_offset + u64::from(prev.length);
                if e.file_offset < pend && prev.file_offset < end {
                    return Err(VhdxError::corrupt(
                        file,
                        "region table entry",
                        "FileOffset",
                        eoff + 16,
                        format!(
                            "no overlap with region {} at [{:#x}, {pend:#x})",
                            guid_braced(&prev.guid),
                            prev.file_offset
                        ),
                        format!("[{:#x}, {end:#x})", e.file_offset),
                    ));
                }
                if prev.guid == e.guid {
                    return Err(VhdxError::corrupt(
                        file,
                        "region table entry",
                        "Guid",
                        eoff,
                        "each region once",
                        format!("{} twice", guid_braced(&e.guid)),
                    ));
                }
            }
            let known = e.guid == BAT_GUID || e.guid == METADATA_GUID;
            if !known && e.required {
                return Err(VhdxError::unsupported(
                    file,
                    "region table entry",
                    "Required",
                    eoff + 28,
                    "only known regions (BAT, metadata) marked required",
                    format!("unknown required region {}", guid_braced(&e.guid)),
                ));
            }
            entries.push(e);
        }
        let t = RegionTable { entries };
        for (g, name) in [(BAT_GUID, "BAT"), (METADATA_GUID, "metadata")] {
            if t.find(&g).is_none() {
                return Err(VhdxError::corrupt(
                    file,
                    "region table",
                    "entries",
                    offset + 16,
                    format!("a {name} region {}", guid_braced(&g)),
                    "none",
                ));
            }
        }
        Ok(t)
    }

    pub fn find(&self, guid: &Uuid) -> Option<&RegionEntry> {
        self.entries.iter().find(|e| e.guid == *guid)
    }
}

/// Reads the table from whichever copy is valid (the first one first).
pub fn current(file: &str, copies: [&[u8]; 2], file_len: u64) -> VResult<RegionTable> {
    match RegionTable::parse(file, copies[0], REGION_TABLE_OFFSETS[0], file_len) {
        Ok(t) => Ok(t),
        Err(e1 @ VhdxError::Unsupported(_)) => Err(e1),
        Err(e1) => {
            RegionTable::parse(file, copies[1], REGION_TABLE_OFFSETS[1], file_len).map_err(|_| e1)
        }
    }
}
