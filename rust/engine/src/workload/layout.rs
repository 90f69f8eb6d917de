//! Where a guest write lands: through a VHDX's block layout to file offsets, and through the
//! file's extents to volume (CSV) offsets.
//!
//! # The model is the writer
//!
//! [`VhdxModel`] reproduces, write for write, what vssim's own VHDX writer (`vhdx::Vhdx`, opened
//! in write-through metadata mode, `set_commit_each_write(true)`) does to the file, so that the
//! modelled copy-on-write counts equal what a real volume copies (materialized mode;
//! `workload::materialize`). The layout is the writer's (`vhdx::create`): headers in the first
//! MiB, the log at 1 MiB (1 MiB long), the BAT at 2 MiB sized by [`Geometry`], the metadata region
//! (1 MiB) after it, payload blocks from there on; a new block is placed at the end of the file,
//! 1 MiB aligned. One guest write, in the order the writer makes its file writes:
//!
//! 1. the first write of a session rewrites both headers (64 KiB, then 128 KiB; 4 KiB each);
//! 2. per block it touches, the data (a block it allocates is placed first);
//! 3. if it allocated, one log entry of `desc_sectors(pages) + pages` 4 KiB sectors at the log
//!    position (back to the ring's start when it would pass the end, and at the start when the
//!    log is not active yet); when the log was not active this session, both headers again (a new
//!    LogGuid); then each distinct BAT page it changed, ascending, in place.
//!
//! Closing the disk rewrites both headers (LogGuid back to zero) if the log was used; a reopened
//! disk starts a new session with an inactive log.
//!
//! A file's bytes sit on the volume in extents: its size when the simulation starts is one extent;
//! every block it grows by afterwards is a new extent taken from the volume's free space (its
//! allocation high-water mark), as NTFS hands out free clusters. So a snapshot's "allocated
//! extent" is a prefix of the volume, and growth after a snapshot is never copied for it.

use crate::error::{Error, Result};
use crate::vhdx::bat::Geometry;
use crate::vhdx::create::{BAT_OFFSET, LOG_LENGTH, LOG_OFFSET, METADATA_LENGTH};
use crate::vhdx::format::{HEADER_OFFSETS, HEADER_SIZE, LOG_SECTOR};
use crate::vhdx::log::desc_sectors;

const MIB: u64 = 1 << 20;
/// Logical sector size of the disks the model describes (what `vhdx::create` makes by default).
pub const LOGICAL_SECTOR: u64 = 512;
/// Physical sector size of the disks the model describes.
pub const PHYSICAL_SECTOR: u64 = 4096;
const UNALLOCATED: u32 = u32::MAX;
/// Blocks per page of [`BlockTable`]: 4,096 (128 GiB of disk at the default 32 MiB blocks).
const PAGE: u64 = 4096;

/// Where a disk's payload blocks sit in its file, in MiB. The blocks allocated when the disk was
/// made lie in order from the data region: computed, not stored. Blocks allocated later are kept
/// in pages of [`PAGE`] entries, each made when a block in it is first allocated — so memory
/// follows what the guest wrote, not the disk's size (a flat table of a 64 TiB disk in 32 MiB
/// blocks is 8 MiB, for every VM).
#[derive(Debug, Clone)]
struct BlockTable {
    /// Blocks `0..initial` sit in order from `data_start`.
    initial: u64,
    data_start: u64,
    block_size: u64,
    /// Pages of later allocations (MiB offsets, or `UNALLOCATED`), by page number, ascending.
    pages: Vec<(u64, Box<[u32]>)>,
    /// Blocks allocated by writes since the disk was made.
    later: u64,
}

impl BlockTable {
    fn new(initial: u64, data_start: u64, block_size: u64) -> Self {
        BlockTable {
            initial,
            data_start,
            block_size,
            pages: Vec::new(),
            later: 0,
        }
    }

    /// The MiB of the file where `block` starts, if it is allocated.
    fn get(&self, block: u64) -> Option<u64> {
        if block < self.initial {
            return Some((self.data_start + block * self.block_size) / MIB);
        }
        let k = self
            .pages
            .binary_search_by_key(&(block / PAGE), |p| p.0)
            .ok()?;
        let mib = self.pages[k].1[(block % PAGE) as usize];
        (mib != UNALLOCATED).then_some(u64::from(mib))
    }

    /// Records that `block` (not allocated yet) now starts at MiB `mib` of the file.
    fn allocate(&mut self, block: u64, mib: u32) {
        let page = block / PAGE;
        let k = match self.pages.binary_search_by_key(&page, |p| p.0) {
            Ok(k) => k,
            Err(k) => {
                let fresh = vec![UNALLOCATED; PAGE as usize].into_boxed_slice();
                self.pages.insert(k, (page, fresh));
                k
            }
        };
        self.pages[k].1[(block % PAGE) as usize] = mib;
        self.later += 1;
    }

    /// Blocks allocated in all.
    fn count(&self) -> u64 {
        self.initial + self.later
    }
}

/// Fixed disks preallocate every block; dynamic disks allocate on first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    Fixed,
    Dynamic,
}

/// One write to a file or a volume, at the time of the guest write that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub length: u32,
}

/// The block layout of one VHDX file, as its writer evolves it.
#[derive(Debug, Clone)]
pub struct VhdxModel {
    virtual_size: u64,
    block_size: u64,
    /// `log2(block_size)`: block sizes are powers of two, and a shift costs a cycle where the
    /// division it replaces costs dozens (every guest write maps through here).
    block_shift: u32,
    kind: DiskKind,
    geo: Geometry,
    blocks: BlockTable,
    file_size: u64,
    /// Next log entry's offset in the ring.
    log_pos: u64,
    /// Whether the headers were rewritten in this session (the writer's `session_started`).
    session_open: bool,
    /// Whether the log is in use (LogGuid set) in this session.
    log_active: bool,
}

impl VhdxModel {
    /// A disk of `virtual_size` bytes in blocks of `block_size` bytes. A dynamic disk starts with
    /// its first `ceil(allocated / block_size)` blocks allocated, in order.
    pub fn new(virtual_size: u64, block_size: u64, kind: DiskKind, allocated: u64) -> Result<Self> {
        if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&block_size) {
            return Err(Error::invalid(
                "block_size",
                format!("{block_size} is not a power of two between 1 MiB and 256 MiB"),
            ));
        }
        if virtual_size == 0 || virtual_size > 64 << 40 {
            return Err(Error::invalid(
                "virtual_size",
                format!("{virtual_size} bytes: expected 1 byte to 64 TiB"),
            ));
        }
        if allocated > virtual_size {
            return Err(Error::invalid(
                "allocated",
                format!("{allocated} bytes is more than the virtual size ({virtual_size})"),
            ));
        }
        let geo = Geometry::new(virtual_size, block_size, LOGICAL_SECTOR, false);
        let data_start = BAT_OFFSET + geo.region_len() + METADATA_LENGTH;
        let blocks = geo.payload_blocks;
        let initially = match kind {
            DiskKind::Fixed => blocks,
            DiskKind::Dynamic => allocated.div_ceil(block_size),
        };
        Ok(VhdxModel {
            virtual_size,
            block_size,
            block_shift: block_size.trailing_zeros(),
            kind,
            geo,
            blocks: BlockTable::new(initially, data_start, block_size),
            file_size: data_start + initially * block_size,
            log_pos: 0,
            session_open: false,
            log_active: false,
        })
    }

    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    pub fn kind(&self) -> DiskKind {
        self.kind
    }

    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The BAT geometry (`vhdx::bat::Geometry`) of the disk.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// File offset of the first payload block (after the BAT and the metadata region).
    pub fn data_offset(&self) -> u64 {
        BAT_OFFSET + self.geo.region_len() + METADATA_LENGTH
    }

    /// File offset of payload block `block`, if allocated.
    pub fn block_offset(&self, block: u64) -> Option<u64> {
        self.blocks.get(block).map(|m| m * MIB)
    }

    /// Blocks allocated by writes since the model was made.
    pub fn blocks_allocated(&self) -> u64 {
        self.blocks.later
    }

    /// Payload bytes present in the file (what a backup of the disk's allocated data reads).
    pub fn allocated_bytes(&self) -> u64 {
        (self.blocks.count() * self.block_size).min(self.virtual_size)
    }

    /// Whether payload block `block` holds data in the file.
    pub fn is_allocated(&self, block: u64) -> bool {
        self.blocks.get(block).is_some()
    }

    /// Payload blocks the guest write `[offset, offset + length)` would allocate now.
    pub fn blocks_to_allocate(&self, offset: u64, length: u32) -> u64 {
        if length == 0 || self.kind == DiskKind::Fixed {
            return 0;
        }
        let first = offset >> self.block_shift;
        let last = (offset + u64::from(length) - 1) >> self.block_shift;
        (first..=last).filter(|&b| !self.is_allocated(b)).count() as u64
    }

    fn headers(emit: &mut impl FnMut(Piece)) {
        for offset in HEADER_OFFSETS {
            emit(Piece {
                offset,
                length: HEADER_SIZE as u32,
            });
        }
    }

    /// Closes the disk and reopens it (the writer's `close` then `open`): if the log was used,
    /// both headers are rewritten (LogGuid zero) — emitted here; the next write starts a new
    /// session.
    pub fn close_session(&mut self, emit: &mut impl FnMut(Piece)) {
        if self.log_active {
            Self::headers(emit);
        }
        self.session_open = false;
        self.log_active = false;
        self.log_pos = 0;
    }

    /// Where guest write `[offset, offset + length)` lands in the file when it is the usual one
    /// — inside one payload block already allocated, in an open session — so that its one file
    /// write at the returned offset is all [`map_write`](Self::map_write) would emit (and it
    /// allocates nothing, changes nothing); None otherwise.
    #[inline]
    pub fn in_place(&self, offset: u64, length: u32) -> Option<u64> {
        if !self.session_open || length == 0 {
            return None;
        }
        let block = offset >> self.block_shift;
        if (offset + u64::from(length) - 1) >> self.block_shift != block {
            return None;
        }
        let mib = self.blocks.get(block)?;
        Some(mib * MIB + (offset & (self.block_size - 1)))
    }

    /// Maps one guest write `[offset, offset + length)` (inside the disk) to the file writes it
    /// causes, in the writer's order (see the module doc). Returns the blocks it allocated.
    pub fn map_write(&mut self, offset: u64, length: u32, emit: &mut impl FnMut(Piece)) -> u64 {
        if length == 0 {
            return 0;
        }
        if !self.session_open {
            self.session_open = true;
            Self::headers(emit);
        }
        let end = offset + u64::from(length);
        let mut pos = offset;
        // BAT pages this write changes (no allocation unless it allocates).
        let mut pages: Vec<u64> = Vec::new();
        let mut allocated = 0;
        while pos < end {
            let block = pos >> self.block_shift;
            let block_end = ((block + 1) * self.block_size).min(end);
            let file_mib = match self.blocks.get(block) {
                Some(mib) => mib,
                None => {
                    let at = self.file_size.div_ceil(MIB) * MIB;
                    self.blocks.allocate(block, (at / MIB) as u32);
                    self.file_size = at + self.block_size;
                    allocated += 1;
                    let page = self.geo.pb_index(block) * 8 / LOG_SECTOR;
                    if !pages.contains(&page) {
                        pages.push(page);
                    }
                    at / MIB
                }
            };
            emit(Piece {
                offset: file_mib * MIB + (pos & (self.block_size - 1)),
                length: (block_end - pos) as u32,
            });
            pos = block_end;
        }
        if !pages.is_empty() {
            pages.sort_unstable();
            self.commit(&pages, emit);
        }
        allocated
    }

    /// The writer's `commit` of `pages` (sorted): log entries (at most `max_pages_per_entry`
    /// pages each), the headers on the log's first use, the pages in place.
    fn commit(&mut self, pages: &[u64], emit: &mut impl FnMut(Piece)) {
        let ring_sectors = LOG_LENGTH / LOG_SECTOR;
        let per = (ring_sectors / 3).saturating_sub(1).clamp(1, 120) as usize;
        for group in pages.chunks(per) {
            let size = (desc_sectors(group.len()) + group.len()) as u64 * LOG_SECTOR;
            if self.log_pos + size > LOG_LENGTH || !self.log_active {
                self.log_pos = 0;
            }
            emit(Piece {
                offset: LOG_OFFSET + self.log_pos,
                length: size as u32,
            });
            if !self.log_active {
                self.log_active = true;
                Self::headers(emit);
            }
            for &p in group {
                emit(Piece {
                    offset: BAT_OFFSET + p * LOG_SECTOR,
                    length: LOG_SECTOR as u32,
                });
            }
            self.log_pos += size;
        }
    }
}

/// Where one file's bytes sit on its volume.
#[derive(Debug, Clone)]
pub struct FileExtents {
    base: u64,
    initial: u64,
    growth_unit: u64,
    /// `log2(growth_unit)` when it is a power of two (a VHDX block size always is): the unit of
    /// a file offset is then a shift away, not a division.
    unit_shift: Option<u32>,
    growth: Vec<u64>,
}

impl FileExtents {
    /// A file whose first `initial` bytes sit contiguously at volume offset `base`, growing in
    /// units of `growth_unit` bytes (the VHDX block size).
    pub fn new(base: u64, initial: u64, growth_unit: u64) -> Self {
        FileExtents {
            base,
            initial,
            growth_unit,
            unit_shift: growth_unit
                .is_power_of_two()
                .then(|| growth_unit.trailing_zeros()),
            growth: Vec::new(),
        }
    }

    /// Bytes of the file mapped so far.
    pub fn mapped(&self) -> u64 {
        self.initial + self.growth.len() as u64 * self.growth_unit
    }

    /// The unit the file grows by.
    pub fn unit(&self) -> u64 {
        self.growth_unit
    }

    /// Records that the file grew by one unit, placed at volume offset `at`.
    pub fn grow(&mut self, at: u64) {
        self.growth.push(at);
    }

    /// The volume offset of the file range `[offset, offset + length)` when it lies inside one
    /// of the file's extents — [`to_volume`](Self::to_volume)'s one piece; None when it spans two
    /// or lies past what is mapped.
    #[inline]
    pub fn contiguous(&self, offset: u64, length: u32) -> Option<u64> {
        let end = offset + u64::from(length);
        if end <= self.initial {
            return Some(self.base + offset);
        }
        if offset < self.initial {
            return None;
        }
        let past = offset - self.initial;
        let (g, within) = match self.unit_shift {
            Some(k) => (past >> k, past & (self.growth_unit - 1)),
            None => (past / self.growth_unit, past % self.growth_unit),
        };
        if within + u64::from(length) > self.growth_unit {
            return None;
        }
        self.growth.get(g as usize).map(|&at| at + within)
    }

    /// Splits the file range `[offset, offset + length)` into volume pieces.
    pub fn to_volume(&self, piece: Piece, emit: &mut impl FnMut(Piece)) {
        let mut pos = piece.offset;
        let end = piece.offset + u64::from(piece.length);
        while pos < end {
            if pos < self.initial {
                let stop = end.min(self.initial);
                emit(Piece {
                    offset: self.base + pos,
                    length: (stop - pos) as u32,
                });
                pos = stop;
            } else {
                let past = pos - self.initial;
                let (g, within) = match self.unit_shift {
                    Some(k) => (past >> k, past & (self.growth_unit - 1)),
                    None => (past / self.growth_unit, past % self.growth_unit),
                };
                let unit_end = (self.initial + (g + 1) * self.growth_unit).min(end);
                if let Some(&at) = self.growth.get(g as usize) {
                    emit(Piece {
                        offset: at + within,
                        length: (unit_end - pos) as u32,
                    });
                }
                pos = unit_end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(m: &mut VhdxModel, off: u64, len: u32) -> Vec<Piece> {
        let mut v = Vec::new();
        m.map_write(off, len, &mut |p| v.push(p));
        v
    }

    fn p(offset: u64, length: u32) -> Piece {
        Piece { offset, length }
    }

    #[test]
    fn dynamic_allocation_writes_data_then_logs_then_updates_bat() {
        let mut m = VhdxModel::new(1 << 30, 32 * MIB, DiskKind::Dynamic, 0).unwrap();
        // BAT: 32 blocks + 1 bitmap entry → 1 MiB; metadata 1 MiB; data at 4 MiB.
        assert_eq!(m.file_size(), 4 * MIB);
        assert_eq!(m.data_offset(), 4 * MIB);
        let got = pieces(&mut m, 40 * MIB, 4096);
        assert_eq!(
            got,
            vec![
                // Session start: both headers.
                p(64 * 1024, 4096),
                p(128 * 1024, 4096),
                // The data, in the new block placed at the end of the file.
                p(4 * MIB + 8 * MIB, 4096),
                // One log entry (descriptor + 1 data sector), the headers (LogGuid), the page.
                p(MIB, 8192),
                p(64 * 1024, 4096),
                p(128 * 1024, 4096),
                p(2 * MIB, 4096),
            ]
        );
        assert_eq!(m.file_size(), 36 * MIB);
        // Rewrite: data only.
        assert_eq!(pieces(&mut m, 40 * MIB, 4096), vec![p(12 * MIB, 4096)]);
        // A second allocation: the log is active, the next entry follows the first.
        assert_eq!(
            pieces(&mut m, 0, 4096),
            vec![p(36 * MIB, 4096), p(MIB + 8192, 8192), p(2 * MIB, 4096)]
        );
        assert_eq!(m.blocks_allocated(), 2);
        // Close: headers (LogGuid zero); the next session starts over, log at its start.
        let mut closing = Vec::new();
        m.close_session(&mut |q| closing.push(q));
        assert_eq!(closing, vec![p(64 * 1024, 4096), p(128 * 1024, 4096)]);
        let again = pieces(&mut m, 100 * MIB, 4096);
        assert_eq!(again[3], p(MIB, 8192));
        // Closing a session that never used the log writes nothing.
        let mut f = VhdxModel::new(1 << 30, 32 * MIB, DiskKind::Fixed, 0).unwrap();
        pieces(&mut f, 0, 4096);
        let mut none = Vec::new();
        f.close_session(&mut |q| none.push(q));
        assert!(none.is_empty());
    }

    /// The shortcuts the window's per-VM pass takes agree with the full mapping: where
    /// `in_place` answers, `map_write` emits that one piece and allocates nothing; where
    /// `contiguous` answers, `to_volume` emits that one piece; and a write `in_place` refuses is
    /// one that allocates, spans blocks or opens a session.
    #[test]
    fn shortcuts_agree_with_the_full_mapping() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for kind in [DiskKind::Dynamic, DiskKind::Fixed] {
            let mut m = VhdxModel::new(1 << 30, MIB, kind, 64 * MIB).unwrap();
            let mut e = FileExtents::new(1 << 40, m.file_size(), MIB);
            for i in 0..20_000u64 {
                if i % 5_000 == 0 {
                    m.close_session(&mut |_| {});
                }
                let len = ((next() % 32 + 1) * 4096) as u32;
                let off = (next() % ((1 << 30) / 4096)) * 4096;
                let off = off.min((1 << 30) - u64::from(len));
                let shortcut = m.in_place(off, len);
                let before = m.blocks_allocated();
                let got = pieces(&mut m, off, len);
                match shortcut {
                    Some(at) => {
                        assert_eq!(got, vec![p(at, len)], "write {off}+{len}");
                        assert_eq!(m.blocks_allocated(), before);
                    }
                    None => assert!(got.len() != 1 || m.blocks_allocated() > before),
                }
                for piece in got {
                    while e.mapped() < piece.offset + u64::from(piece.length) {
                        let at = (1 << 41) + e.growth.len() as u64 * 7 * MIB;
                        e.grow(at);
                    }
                    let mut vol = Vec::new();
                    e.to_volume(piece, &mut |q| vol.push(q));
                    match e.contiguous(piece.offset, piece.length) {
                        Some(v) => assert_eq!(vol, vec![p(v, piece.length)]),
                        None => assert!(vol.len() > 1, "{piece:?} -> {vol:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn fixed_disk_never_allocates() {
        let mut m = VhdxModel::new(1 << 30, 32 * MIB, DiskKind::Fixed, 0).unwrap();
        let p = pieces(&mut m, 0, 4096);
        assert_eq!(p.len(), 3);
        assert_eq!(m.allocated_bytes(), 1 << 30);
    }

    #[test]
    fn write_across_blocks_splits() {
        let mut m = VhdxModel::new(1 << 30, MIB, DiskKind::Dynamic, 2 * MIB).unwrap();
        m.close_session(&mut |_| {});
        let p = pieces(&mut m, MIB - 4096, 8192);
        // headers, data in block 0 (allocated), then block 1 (allocated): 2 headers + 2 data.
        assert_eq!(p.len(), 4);
        assert_eq!(p[2].length, 4096);
    }

    #[test]
    fn extents_of_any_unit_map_by_division() {
        // A unit that is not a power of two takes the division path: the same mapping.
        let mut e = FileExtents::new(100 * MIB, 4 * MIB, 3 * MIB);
        e.grow(900 * MIB);
        e.grow(500 * MIB);
        let mut v = Vec::new();
        e.to_volume(
            Piece {
                offset: 7 * MIB - 4096,
                length: 8192,
            },
            &mut |p| v.push(p),
        );
        assert_eq!(
            v,
            vec![
                Piece {
                    offset: 903 * MIB - 4096,
                    length: 4096,
                },
                Piece {
                    offset: 500 * MIB,
                    length: 4096,
                },
            ]
        );
    }

    #[test]
    fn extents_split_growth() {
        let mut e = FileExtents::new(100 * MIB, 4 * MIB, 32 * MIB);
        e.grow(900 * MIB);
        let mut v = Vec::new();
        e.to_volume(
            Piece {
                offset: 4 * MIB - 4096,
                length: 8192,
            },
            &mut |p| v.push(p),
        );
        assert_eq!(
            v,
            vec![
                Piece {
                    offset: 104 * MIB - 4096,
                    length: 4096
                },
                Piece {
                    offset: 900 * MIB,
                    length: 4096
                },
            ]
        );
    }

    #[test]
    fn a_huge_disk_costs_what_it_touches() {
        // Issue 15 item 11: the flat block table of a 64 TiB disk was 8 MiB per VM.
        let mut m = VhdxModel::new(64 << 40, 32 * MIB, DiskKind::Dynamic, 64 * MIB).unwrap();
        assert!(m.blocks.pages.is_empty());
        assert_eq!(m.allocated_bytes(), 64 * MIB);
        let far = (64u64 << 40) - 32 * MIB;
        pieces(&mut m, far, 4096);
        pieces(&mut m, 10 * MIB, 4096); // an initial block: no page
        pieces(&mut m, far - PAGE * 32 * MIB, 4096); // another page
        assert_eq!(m.blocks.pages.len(), 2);
        assert_eq!(m.blocks_allocated(), 2);
        assert_eq!(m.allocated_bytes(), 4 * 32 * MIB);
        let first = m.data_offset() + 2 * 32 * MIB;
        assert_eq!(m.block_offset(far / (32 * MIB)), Some(first));
        assert_eq!(
            m.block_offset(far / (32 * MIB) - PAGE),
            Some(first + 32 * MIB)
        );
        assert_eq!(m.block_offset(1), Some(m.data_offset() + 32 * MIB));
        assert_eq!(m.block_offset(5), None);
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert!(VhdxModel::new(1 << 30, 3 * MIB, DiskKind::Dynamic, 0).is_err());
        assert!(VhdxModel::new(0, MIB, DiskKind::Dynamic, 0).is_err());
        assert!(VhdxModel::new(1 << 30, MIB, DiskKind::Dynamic, 2 << 30).is_err());
    }
}
