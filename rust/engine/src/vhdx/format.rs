//! Byte-level helpers shared by every structure: little-endian fields, CRC-32C with the checksum
//! field zeroed, GUIDs in Windows mixed-endian order, and the fixed GUIDs of the format.

use uuid::Uuid;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const TIB: u64 = MIB * MIB;

/// Largest virtual disk the format allows.
pub const MAX_VIRTUAL_SIZE: u64 = 64 * TIB;
pub const MIN_BLOCK_SIZE: u64 = MIB;
pub const MAX_BLOCK_SIZE: u64 = 256 * MIB;
pub const DEFAULT_BLOCK_SIZE: u64 = 32 * MIB;
/// Alignment of every region, payload and bitmap block after the first MiB.
pub const ALIGN: u64 = MIB;
pub const LOG_SECTOR: u64 = 4096;

pub const FILE_ID_SIG: &[u8; 8] = b"vhdxfile";
pub const HEADER_OFFSETS: [u64; 2] = [64 * KIB, 128 * KIB];
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 * KIB, 256 * KIB];
pub const REGION_TABLE_SIZE: usize = 64 * 1024;
pub const HEADER_SIZE: usize = 4096;

pub const BAT_GUID: Uuid = Uuid::from_u128(0x2DC27766_F623_4200_9D64_115E9BFD4A08);
pub const METADATA_GUID: Uuid = Uuid::from_u128(0x8B7CA206_4790_4B9A_B8FE_575F050F886E);
pub const FILE_PARAMETERS_GUID: Uuid = Uuid::from_u128(0xCAA16737_FA36_4D43_B3B6_33F0AA44E76B);
pub const VIRTUAL_DISK_SIZE_GUID: Uuid = Uuid::from_u128(0x2FA54224_CD1B_4876_B211_5DBED83BF4B8);
pub const VIRTUAL_DISK_ID_GUID: Uuid = Uuid::from_u128(0xBECA12AB_B2E6_4523_93EF_C309E000C746);
pub const LOGICAL_SECTOR_GUID: Uuid = Uuid::from_u128(0x8141BF1D_A96F_4709_BA47_F233A8FAAB5F);
pub const PHYSICAL_SECTOR_GUID: Uuid = Uuid::from_u128(0xCDA348C7_445D_4471_9CC9_E9885251C556);
pub const PARENT_LOCATOR_GUID: Uuid = Uuid::from_u128(0xA8D35F2D_B30B_454D_ABF7_D3D84834AB0C);
pub const VHDX_LOCATOR_TYPE: Uuid = Uuid::from_u128(0xB04AEFB7_D19E_4A81_B789_25B8E9445913);

pub fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(off..off + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

pub fn guid_at(b: &[u8], off: usize) -> Uuid {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(off..off + 16) {
        a.copy_from_slice(s);
    }
    Uuid::from_bytes_le(a)
}

pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn put_guid(b: &mut [u8], off: usize, g: &Uuid) {
    b[off..off + 16].copy_from_slice(&g.to_bytes_le());
}

/// CRC-32C of `b` with the 4 bytes at `field` taken as zero.
pub fn crc_with_zeroed(b: &[u8], field: usize) -> u32 {
    let head = &b[..field.min(b.len())];
    let tail = b.get(field + 4..).unwrap_or(&[]);
    let c = crc32c::crc32c(head);
    let c = crc32c::crc32c_append(c, &[0u8; 4][..(b.len().saturating_sub(field)).min(4)]);
    crc32c::crc32c_append(c, tail)
}

/// Stores the checksum of `b` (field at `field`).
pub fn seal(b: &mut [u8], field: usize) {
    let c = crc_with_zeroed(b, field);
    put_u32(b, field, c);
}

/// `{XXXXXXXX-...}` as Windows prints a GUID, upper case.
pub fn guid_braced(g: &Uuid) -> String {
    format!("{{{}}}", g.hyphenated().to_string().to_uppercase())
}

pub fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to).saturating_mul(to)
}

/// A signature as found, for messages: its bytes in hex, never as text (a file that fails a
/// signature check may be anything, and its contents are not echoed).
pub fn sig(b: &[u8], off: usize, len: usize) -> String {
    let s = b.get(off..(off + len).min(b.len())).unwrap_or(&[]);
    if s.is_empty() {
        return "nothing (the file ends here)".to_owned();
    }
    let hex: Vec<String> = s.iter().map(|c| format!("{c:02x}")).collect();
    format!("bytes {}", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let mut b = b"abcdXXXXefgh".to_vec();
        let c = crc_with_zeroed(&b, 4);
        b[4..8].copy_from_slice(&[0; 4]);
        assert_eq!(c, crc32c::crc32c(&b));
    }

    #[test]
    fn guid_layout_is_mixed_endian() {
        let mut b = [0u8; 16];
        put_guid(&mut b, 0, &BAT_GUID);
        assert_eq!(&b[..4], &[0x66, 0x77, 0xC2, 0x2D]);
        assert_eq!(guid_at(&b, 0), BAT_GUID);
        assert_eq!(
            guid_braced(&BAT_GUID),
            "{2DC27766-F623-4200-9D64-115E9BFD4A08}"
        );
    }
}
