//! The metadata region: a 64 KiB table of items, then the items. vssim writes the five standard
//! items (plus the parent locator of a differencing disk) packed from 64 KiB, as QEMU does; it
//! reads any layout and refuses unknown items marked required.

use uuid::Uuid;

use super::error::{VResult, VhdxError};
use super::format::*;

pub const TABLE_SIZE: usize = 64 * 1024;
const MAX_ITEM_LEN: u32 = MIB as u32;

/// The parent locator of a differencing disk: type GUID and its key/value pairs, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParentLocator {
    pub entries: Vec<(String, String)>,
}

impl ParentLocator {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.entries.len();
        let mut b = vec![0u8; 20 + 12 * n];
        put_guid(&mut b, 0, &VHDX_LOCATOR_TYPE);
        put_u16(&mut b, 18, n as u16);
        let mut strings: Vec<u8> = Vec::new();
        let base = b.len();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            let kb: Vec<u8> = k.encode_utf16().flat_map(u16::to_le_bytes).collect();
            let vb: Vec<u8> = v.encode_utf16().flat_map(u16::to_le_bytes).collect();
            let ko = base + strings.len();
            strings.extend_from_slice(&kb);
            let vo = base + strings.len();
            strings.extend_from_slice(&vb);
            let e = 20 + i * 12;
            put_u32(&mut b, e, ko as u32);
            put_u32(&mut b, e + 4, vo as u32);
            put_u16(&mut b, e + 8, kb.len() as u16);
            put_u16(&mut b, e + 10, vb.len() as u16);
        }
        b.extend_from_slice(&strings);
        b
    }

    fn parse(file: &str, b: &[u8], offset: u64) -> VResult<ParentLocator> {
        let bad = |field: &'static str, at: usize, expected: &str, found: String| {
            VhdxError::corrupt(
                file,
                "parent locator",
                field,
                offset + at as u64,
                expected,
                found,
            )
        };
        if b.len() < 20 {
            return Err(bad(
                "header",
                0,
                "at least 20 bytes",
                format!("{} bytes", b.len()),
            ));
        }
        let ty = guid_at(b, 0);
        if ty != VHDX_LOCATOR_TYPE {
            return Err(VhdxError::unsupported(
                file,
                "parent locator",
                "LocatorType",
                offset,
                guid_braced(&VHDX_LOCATOR_TYPE),
                guid_braced(&ty),
            ));
        }
        let n = usize::from(u16_at(b, 18));
        if 20 + n * 12 > b.len() {
            return Err(bad(
                "KeyValueCount",
                18,
                &format!("at most {} entries in the item", (b.len() - 20) / 12),
                n.to_string(),
            ));
        }
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let e = 20 + i * 12;
            let text = |field: &'static str, at: usize, off: u32, len: u16| -> VResult<String> {
                let (off, len) = (off as usize, usize::from(len));
                let s = b.get(off..off.saturating_add(len)).filter(|_| len % 2 == 0);
                let Some(s) = s else {
                    return Err(bad(
                        field,
                        at,
                        "an even-length UTF-16 string inside the locator",
                        format!("offset {off}, length {len}"),
                    ));
                };
                let units: Vec<u16> = s
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16(&units)
                    .map_err(|_| bad(field, at, "valid UTF-16", "invalid UTF-16".into()))
            };
            let k = text("KeyOffset", e, u32_at(b, e), u16_at(b, e + 8))?;
            let v = text("ValueOffset", e + 4, u32_at(b, e + 4), u16_at(b, e + 10))?;
            entries.push((k, v));
        }
        let loc = ParentLocator { entries };
        if loc.get("parent_linkage").is_none() {
            return Err(bad(
                "parent_linkage",
                20,
                "a parent_linkage entry",
                "none".into(),
            ));
        }
        Ok(loc)
    }
}

/// What the metadata says about the virtual disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub block_size: u32,
    pub leave_block_allocated: bool,
    pub has_parent: bool,
    pub virtual_size: u64,
    pub disk_id: Uuid,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub parent_locator: Option<ParentLocator>,
    /// File offset of the parent locator item (for messages).
    pub locator_offset: u64,
}

impl Metadata {
    /// Serializes the table and items into a region of `region_len` bytes.
    pub fn to_region(&self, region_len: usize) -> Vec<u8> {
        let mut items: Vec<(Uuid, Vec<u8>, bool)> = Vec::new();
        let mut fp = vec![0u8; 8];
        put_u32(&mut fp, 0, self.block_size);
        let flags = u32::from(self.leave_block_allocated) | (u32::from(self.has_parent) << 1);
        put_u32(&mut fp, 4, flags);
        items.push((FILE_PARAMETERS_GUID, fp, false));
        items.push((
            VIRTUAL_DISK_SIZE_GUID,
            self.virtual_size.to_le_bytes().to_vec(),
            true,
        ));
        items.push((
            VIRTUAL_DISK_ID_GUID,
            self.disk_id.to_bytes_le().to_vec(),
            true,
        ));
        items.push((
            LOGICAL_SECTOR_GUID,
            self.logical_sector_size.to_le_bytes().to_vec(),
            true,
        ));
        items.push((
            PHYSICAL_SECTOR_GUID,
            self.physical_sector_size.to_le_bytes().to_vec(),
            true,
        ));
        if let Some(loc) = &self.parent_locator {
            items.push((PARENT_LOCATOR_GUID, loc.to_bytes(), false));
        }
        let mut b = vec![0u8; region_len];
        b[0..8].copy_from_slice(b"metadata");
        put_u16(&mut b, 10, items.len() as u16);
        let mut at = TABLE_SIZE;
        for (i, (g, data, is_vd)) in items.iter().enumerate() {
            let e = 32 + i * 32;
            put_guid(&mut b, e, g);
            put_u32(&mut b, e + 16, at as u32);
            put_u32(&mut b, e + 20, data.len() as u32);
            // IsRequired always; IsVirtualDisk on the disk's own properties.
            let flags = 4 | if *is_vd { 2 } else { 0 };
            put_u32(&mut b, e + 24, flags);
            b[at..at + data.len()].copy_from_slice(data);
            at += round_up(data.len() as u64, 8) as usize;
        }
        b
    }

    /// Parses the metadata region from its bytes (starting at file offset `offset`).
    pub fn parse(file: &str, b: &[u8], offset: u64) -> VResult<Metadata> {
        let table = &b[..b.len().min(TABLE_SIZE)];
        Self::parse_with(file, table, b.len() as u64, offset, &mut |at, len| {
            Ok(b[at as usize..at as usize + len].to_vec())
        })
    }

    /// Parses a metadata region of `region_len` bytes at file offset `offset` from its 64 KiB
    /// `table`, reading only the items vssim knows through `fetch(offset in region, length)`:
    /// what is read is bounded by those items (at most 1 MiB each), not by the region's length.
    pub fn parse_with(
        file: &str,
        table: &[u8],
        region_len: u64,
        offset: u64,
        fetch: &mut dyn FnMut(u64, usize) -> VResult<Vec<u8>>,
    ) -> VResult<Metadata> {
        let b = table;
        if b.len() < TABLE_SIZE || region_len < TABLE_SIZE as u64 {
            return Err(VhdxError::corrupt(
                file,
                "metadata table",
                "signature",
                offset,
                "a 64 KiB table",
                format!("{} bytes", b.len()),
            ));
        }
        if &b[0..8] != b"metadata" {
            return Err(VhdxError::corrupt(
                file,
                "metadata table",
                "signature",
                offset,
                "\"metadata\"",
                sig(b, 0, 8),
            ));
        }
        let count = u16_at(b, 10);
        if count > 2047 {
            return Err(VhdxError::corrupt(
                file,
                "metadata table",
                "EntryCount",
                offset + 10,
                "at most 2047",
                count.to_string(),
            ));
        }
        let known = [
            FILE_PARAMETERS_GUID,
            VIRTUAL_DISK_SIZE_GUID,
            VIRTUAL_DISK_ID_GUID,
            LOGICAL_SECTOR_GUID,
            PHYSICAL_SECTOR_GUID,
            PARENT_LOCATOR_GUID,
        ];
        // (item, offset in region, length)
        let mut entries: Vec<(Uuid, u64, usize)> = Vec::new();
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for i in 0..usize::from(count) {
            let e = 32 + i * 32;
            let eoff = offset + e as u64;
            let id = guid_at(b, e);
            let ioff = u32_at(b, e + 16);
            let ilen = u32_at(b, e + 20);
            let flags = u32_at(b, e + 24);
            let required = flags & 4 != 0;
            if ilen > MAX_ITEM_LEN {
                return Err(VhdxError::corrupt(
                    file,
                    "metadata table entry",
                    "Length",
                    eoff + 20,
                    "at most 1 MiB",
                    ilen.to_string(),
                ));
            }
            if ilen > 0 {
                let start = u64::from(ioff);
                let end = start + u64::from(ilen);
                if (ioff as usize) < TABLE_SIZE || end > region_len {
                    return Err(VhdxError::corrupt(
                        file,
                        "metadata table entry",
                        "Offset",
                        eoff + 16,
                        format!(
                            "an item inside the metadata region, after its table ([65536, {region_len}))"
                        ),
                        format!("offset {ioff} length {ilen}"),
                    ));
                }
                for &(s, en) in &spans {
                    if start < en && s < end {
                        return Err(VhdxError::corrupt(
                            file,
                            "metadata table entry",
                            "Offset",
                            eoff + 16,
                            "items that do not overlap",
                            format!("[{ioff}, {end}) overlaps [{s}, {en})"),
                        ));
                    }
                }
                spans.push((start, end));
            }
            if !known.contains(&id) && required {
                return Err(VhdxError::unsupported(
                    file,
                    "metadata table entry",
                    "IsRequired",
                    eoff + 24,
                    "only known metadata items marked required",
                    format!("unknown required item {}", guid_braced(&id)),
                ));
            }
            if entries.iter().any(|(g, _, _)| *g == id) {
                return Err(VhdxError::corrupt(
                    file,
                    "metadata table entry",
                    "ItemId",
                    eoff,
                    "each item once",
                    format!("{} twice", guid_braced(&id)),
                ));
            }
            entries.push((id, u64::from(ioff), ilen as usize));
        }
        let mut found: Vec<(Uuid, Vec<u8>, u64)> = Vec::new();
        for (id, ioff, ilen) in entries {
            if known.contains(&id) {
                let data = if ilen == 0 {
                    Vec::new()
                } else {
                    fetch(ioff, ilen)?
                };
                found.push((id, data, offset + ioff));
            }
        }
        let item = |g: Uuid, name: &'static str, len: usize| -> VResult<(&[u8], u64)> {
            match found.iter().find(|(id, _, _)| *id == g) {
                Some((_, d, o)) if d.len() >= len => Ok((d, *o)),
                Some((_, d, o)) => Err(VhdxError::corrupt(
                    file,
                    "metadata item",
                    name,
                    *o,
                    format!("at least {len} bytes"),
                    format!("{} bytes", d.len()),
                )),
                None => Err(VhdxError::corrupt(
                    file,
                    "metadata table",
                    name,
                    offset,
                    format!("a {name} item {}", guid_braced(&g)),
                    "none",
                )),
            }
        };
        let (fp, fpo) = item(FILE_PARAMETERS_GUID, "File Parameters", 8)?;
        let block_size = u32_at(fp, 0);
        let flags = u32_at(fp, 4);
        if !u64::from(block_size).is_power_of_two()
            || u64::from(block_size) < MIN_BLOCK_SIZE
            || u64::from(block_size) > MAX_BLOCK_SIZE
        {
            return Err(VhdxError::corrupt(
                file,
                "File Parameters",
                "BlockSize",
                fpo,
                "a power of two from 1 MiB to 256 MiB",
                block_size.to_string(),
            ));
        }
        let (ls, lso) = item(LOGICAL_SECTOR_GUID, "Logical Sector Size", 4)?;
        let logical_sector_size = u32_at(ls, 0);
        if logical_sector_size != 512 && logical_sector_size != 4096 {
            return Err(VhdxError::corrupt(
                file,
                "Logical Sector Size",
                "LogicalSectorSize",
                lso,
                "512 or 4096",
                logical_sector_size.to_string(),
            ));
        }
        let (ps, pso) = item(PHYSICAL_SECTOR_GUID, "Physical Sector Size", 4)?;
        let physical_sector_size = u32_at(ps, 0);
        if physical_sector_size != 512 && physical_sector_size != 4096 {
            return Err(VhdxError::corrupt(
                file,
                "Physical Sector Size",
                "PhysicalSectorSize",
                pso,
                "512 or 4096",
                physical_sector_size.to_string(),
            ));
        }
        let (vs, vso) = item(VIRTUAL_DISK_SIZE_GUID, "Virtual Disk Size", 8)?;
        let virtual_size = u64_at(vs, 0);
        if virtual_size == 0
            || virtual_size > MAX_VIRTUAL_SIZE
            || !virtual_size.is_multiple_of(u64::from(logical_sector_size))
        {
            return Err(VhdxError::corrupt(
                file,
                "Virtual Disk Size",
                "VirtualDiskSize",
                vso,
                format!(
                    "a non-zero multiple of {logical_sector_size} up to 64 TiB ({MAX_VIRTUAL_SIZE})"
                ),
                virtual_size.to_string(),
            ));
        }
        let (id, _) = item(VIRTUAL_DISK_ID_GUID, "Virtual Disk ID", 16)?;
        let disk_id = guid_at(id, 0);
        let has_parent = flags & 2 != 0;
        let leave_block_allocated = flags & 1 != 0;
        let (parent_locator, locator_offset) = if has_parent {
            let (pl, plo) = item(PARENT_LOCATOR_GUID, "Parent Locator", 20)?;
            (Some(ParentLocator::parse(file, pl, plo)?), plo)
        } else {
            (None, 0)
        };
        Ok(Metadata {
            block_size,
            leave_block_allocated,
            has_parent,
            virtual_size,
            disk_id,
            logical_sector_size,
            physical_sector_size,
            parent_locator,
            locator_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_locator() {
        let m = Metadata {
            block_size: 32 << 20,
            leave_block_allocated: false,
            has_parent: true,
            virtual_size: 1 << 30,
            disk_id: Uuid::new_v4(),
            logical_sector_size: 4096,
            physical_sector_size: 4096,
            parent_locator: Some(ParentLocator {
                entries: vec![
                    ("parent_linkage".into(), "{ABC}".into()),
                    ("relative_path".into(), ".\\p.vhdx".into()),
                ],
            }),
            locator_offset: 0,
        };
        let b = m.to_region(MIB as usize);
        let mut back = Metadata::parse("f", &b, 0).unwrap();
        back.locator_offset = 0;
        assert_eq!(back, m);
    }
}
