//! Block Allocation Table geometry and entries. The BAT interleaves `chunk_ratio` payload entries
//! with one sector-bitmap entry; payload block `b` sits at index `b + b / CR`, the bitmap entry of
//! chunk `c` at `c * (CR + 1) + CR`.

use super::format::*;

pub const PB_NOT_PRESENT: u8 = 0;
pub const PB_UNDEFINED: u8 = 1;
pub const PB_ZERO: u8 = 2;
pub const PB_UNMAPPED: u8 = 3;
/// A draft value of UNMAPPED that QEMU accepts: read as UNMAPPED, never written.
pub const PB_UNMAPPED_V095: u8 = 5;
pub const PB_FULLY_PRESENT: u8 = 6;
pub const PB_PARTIALLY_PRESENT: u8 = 7;
pub const SB_NOT_PRESENT: u8 = 0;
pub const SB_PRESENT: u8 = 6;

pub fn state(entry: u64) -> u8 {
    (entry & 7) as u8
}

pub fn offset(entry: u64) -> u64 {
    entry & !0xFFFFF
}

pub fn entry(state: u8, file_offset: u64) -> u64 {
    (file_offset & !0xFFFFF) | u64::from(state & 7)
}

pub fn state_name(s: u8, bitmap: bool) -> &'static str {
    match (bitmap, s) {
        (true, 0) => "SB_BLOCK_NOT_PRESENT",
        (true, 6) => "SB_BLOCK_PRESENT",
        (true, _) => "illegal",
        (false, 0) => "PAYLOAD_BLOCK_NOT_PRESENT",
        (false, 1) => "PAYLOAD_BLOCK_UNDEFINED",
        (false, 2) => "PAYLOAD_BLOCK_ZERO",
        (false, 3) | (false, 5) => "PAYLOAD_BLOCK_UNMAPPED",
        (false, 6) => "PAYLOAD_BLOCK_FULLY_PRESENT",
        (false, 7) => "PAYLOAD_BLOCK_PARTIALLY_PRESENT",
        _ => "illegal",
    }
}

/// Sizes derived from the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub virtual_size: u64,
    pub block_size: u64,
    pub sector_size: u64,
    pub chunk_ratio: u64,
    pub payload_blocks: u64,
    pub bitmap_blocks: u64,
    pub has_parent: bool,
}

impl Geometry {
    pub fn new(virtual_size: u64, block_size: u64, sector_size: u64, has_parent: bool) -> Self {
        let chunk_ratio = ((1u64 << 23) * sector_size) / block_size.max(1);
        let payload_blocks = virtual_size.div_ceil(block_size.max(1));
        let bitmap_blocks = payload_blocks.div_ceil(chunk_ratio.max(1));
        Geometry {
            virtual_size,
            block_size,
            sector_size,
            chunk_ratio,
            payload_blocks,
            bitmap_blocks,
            has_parent,
        }
    }

    /// Entries readers index: QEMU and dissect's count for fixed/dynamic, `SB * (CR + 1)` for
    /// differencing.
    pub fn min_entries(&self) -> u64 {
        if self.has_parent {
            self.bitmap_blocks * (self.chunk_ratio + 1)
        } else {
            self.payload_blocks + self.payload_blocks.saturating_sub(1) / self.chunk_ratio
        }
    }

    /// Entries vssim sizes the region for: the spec's `PB + SB` (or the differencing count).
    pub fn region_entries(&self) -> u64 {
        if self.has_parent {
            self.bitmap_blocks * (self.chunk_ratio + 1)
        } else {
            self.payload_blocks + self.bitmap_blocks
        }
    }

    pub fn region_len(&self) -> u64 {
        round_up(self.region_entries() * 8, ALIGN).max(ALIGN)
    }

    pub fn pb_index(&self, block: u64) -> u64 {
        block + block / self.chunk_ratio
    }

    pub fn sb_index(&self, chunk: u64) -> u64 {
        chunk * (self.chunk_ratio + 1) + self.chunk_ratio
    }

    pub fn is_sb_index(&self, index: u64) -> bool {
        index % (self.chunk_ratio + 1) == self.chunk_ratio
    }

    pub fn sectors_per_block(&self) -> u64 {
        self.block_size / self.sector_size
    }

    /// Byte range inside its chunk's 1 MiB bitmap block that covers payload block `block`.
    pub fn bitmap_span(&self, block: u64) -> (u64, u64) {
        let per = MIB / self.chunk_ratio;
        let k = block % self.chunk_ratio;
        (k * per, per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ratio_examples() {
        assert_eq!(
            Geometry::new(1 << 30, 32 * MIB, 512, false).chunk_ratio,
            128
        );
        assert_eq!(Geometry::new(1 << 30, MIB, 512, false).chunk_ratio, 4096);
        let g = Geometry::new(8 * MIB * 4096 + 1, MIB, 512, true);
        assert_eq!(g.payload_blocks, 4 * 8192 + 1);
        assert_eq!(g.pb_index(4096), 4097);
        assert_eq!(g.sb_index(0), 4096);
        assert!(g.is_sb_index(4096));
        assert_eq!(g.bitmap_span(4097), (256, 256));
    }

    #[test]
    fn entry_encoding() {
        let e = entry(PB_FULLY_PRESENT, 5 * MIB);
        assert_eq!(state(e), 6);
        assert_eq!(offset(e), 5 * MIB);
    }
}
