//! Where a guest write lands: through a VHDX's block layout to file offsets, and through the
//! file's extents to volume (CSV) offsets.
//!
//! The VHDX layout follows QEMU's (and vssim's own writer): headers in the first MiB, the log at
//! 1 MiB (1 MiB long), the BAT at 2 MiB, the metadata region (1 MiB) after it, payload blocks from
//! there on. A dynamic disk allocates a payload block at end of file on its first write; the
//! allocation is a metadata update, so it costs a log entry (one descriptor sector and one data
//! sector, 8 KiB, written round the log ring) and then the BAT sector itself (4 KiB). The first
//! write of a session also rewrites both headers (new FileWriteGuid and DataWriteGuid). Those
//! metadata writes are file writes like any other: they go through copy-on-write too.
//!
//! A file's bytes sit on the volume in extents: its size when the simulation starts is one extent;
//! every block it grows by afterwards is a new extent taken from the volume's free space (its
//! allocation high-water mark), as NTFS hands out free clusters. So a snapshot's "allocated
//! extent" is a prefix of the volume, and growth after a snapshot is never copied for it.

use crate::error::{Error, Result};

const MIB: u64 = 1 << 20;
const SECTOR: u64 = 4096;
pub const LOG_OFFSET: u64 = MIB;
pub const LOG_LENGTH: u64 = MIB;
pub const BAT_OFFSET: u64 = 2 * MIB;
/// Bytes one BAT update costs in the log: a header/descriptor sector and a data sector.
pub const LOG_ENTRY_BYTES: u64 = 2 * SECTOR;
const UNALLOCATED: u32 = u32::MAX;

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
    kind: DiskKind,
    chunk_ratio: u64,
    /// File offset of each payload block, in MiB, or `UNALLOCATED`.
    block_mib: Vec<u32>,
    file_size: u64,
    log_pos: u64,
    session_open: bool,
    blocks_allocated: u64,
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
        // 512-byte logical sectors: one sector-bitmap block covers 2^23 sectors.
        let chunk_ratio = ((1u64 << 23) * 512 / block_size).max(1);
        let blocks = virtual_size.div_ceil(block_size);
        let bitmaps = blocks.div_ceil(chunk_ratio);
        let bat_len = ((blocks + bitmaps) * 8).div_ceil(MIB) * MIB;
        let data_start = BAT_OFFSET + bat_len + MIB;
        let initially = match kind {
            DiskKind::Fixed => blocks,
            DiskKind::Dynamic => allocated.div_ceil(block_size),
        };
        let block_mib = (0..blocks)
            .map(|b| {
                if b < initially {
                    ((data_start + b * block_size) / MIB) as u32
                } else {
                    UNALLOCATED
                }
            })
            .collect();
        Ok(VhdxModel {
            virtual_size,
            block_size,
            kind,
            chunk_ratio,
            block_mib,
            file_size: data_start + initially * block_size,
            log_pos: 0,
            session_open: false,
            blocks_allocated: 0,
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

    /// Blocks allocated by writes since the model was made.
    pub fn blocks_allocated(&self) -> u64 {
        self.blocks_allocated
    }

    /// Payload bytes present in the file (what a backup of the disk's allocated data reads).
    pub fn allocated_bytes(&self) -> u64 {
        let n = self.block_mib.iter().filter(|&&m| m != UNALLOCATED).count() as u64;
        (n * self.block_size).min(self.virtual_size)
    }

    /// Whether payload block `block` holds data in the file.
    pub fn is_allocated(&self, block: u64) -> bool {
        self.block_mib
            .get(block as usize)
            .is_some_and(|&m| m != UNALLOCATED)
    }

    /// Payload blocks the guest write `[offset, offset + length)` would allocate now.
    pub fn blocks_to_allocate(&self, offset: u64, length: u32) -> u64 {
        if length == 0 || self.kind == DiskKind::Fixed {
            return 0;
        }
        let first = offset / self.block_size;
        let last = (offset + u64::from(length) - 1) / self.block_size;
        (first..=last).filter(|&b| !self.is_allocated(b)).count() as u64
    }

    /// Ends the writer's session: the next write rewrites the headers again.
    pub fn close_session(&mut self) {
        self.session_open = false;
    }

    fn log_write(&mut self, emit: &mut impl FnMut(Piece)) {
        if self.log_pos + LOG_ENTRY_BYTES > LOG_LENGTH {
            self.log_pos = 0;
        }
        emit(Piece {
            offset: LOG_OFFSET + self.log_pos,
            length: LOG_ENTRY_BYTES as u32,
        });
        self.log_pos += LOG_ENTRY_BYTES;
    }

    /// Maps one guest write `[offset, offset + length)` (inside the disk) to the file writes it
    /// causes, in order: header updates, then for each block it touches, any allocation (log, BAT)
    /// followed by the data. Returns the blocks it allocated.
    pub fn map_write(&mut self, offset: u64, length: u32, emit: &mut impl FnMut(Piece)) -> u64 {
        if length == 0 {
            return 0;
        }
        if !self.session_open {
            self.session_open = true;
            for header in [64 * 1024, 128 * 1024] {
                emit(Piece {
                    offset: header,
                    length: SECTOR as u32,
                });
            }
        }
        let end = offset + u64::from(length);
        let mut pos = offset;
        let mut allocated = 0;
        while pos < end {
            let block = pos / self.block_size;
            let block_end = ((block + 1) * self.block_size).min(end);
            if self.block_mib[block as usize] == UNALLOCATED {
                let at = self.file_size.div_ceil(MIB) * MIB;
                self.block_mib[block as usize] = (at / MIB) as u32;
                self.file_size = at + self.block_size;
                self.blocks_allocated += 1;
                allocated += 1;
                self.log_write(emit);
                let entry = block + block / self.chunk_ratio;
                emit(Piece {
                    offset: BAT_OFFSET + (entry * 8) / SECTOR * SECTOR,
                    length: SECTOR as u32,
                });
            }
            let file_block = u64::from(self.block_mib[block as usize]) * MIB;
            emit(Piece {
                offset: file_block + pos % self.block_size,
                length: (block_end - pos) as u32,
            });
            pos = block_end;
        }
        allocated
    }
}

/// Where one file's bytes sit on its volume.
#[derive(Debug, Clone)]
pub struct FileExtents {
    base: u64,
    initial: u64,
    growth_unit: u64,
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
                let g = (pos - self.initial) / self.growth_unit;
                let unit_end = (self.initial + (g + 1) * self.growth_unit).min(end);
                if let Some(&at) = self.growth.get(g as usize) {
                    emit(Piece {
                        offset: at + (pos - self.initial) % self.growth_unit,
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

    #[test]
    fn dynamic_allocation_logs_then_updates_bat_then_writes_data() {
        let mut m = VhdxModel::new(1 << 30, 32 * MIB, DiskKind::Dynamic, 0).unwrap();
        // BAT: 32 blocks + 1 bitmap entry → 1 MiB; metadata 1 MiB; data at 4 MiB.
        assert_eq!(m.file_size(), 4 * MIB);
        let p = pieces(&mut m, 40 * MIB, 4096);
        assert_eq!(
            p,
            vec![
                Piece {
                    offset: 64 * 1024,
                    length: 4096
                },
                Piece {
                    offset: 128 * 1024,
                    length: 4096
                },
                Piece {
                    offset: MIB,
                    length: 8192
                },
                Piece {
                    offset: 2 * MIB,
                    length: 4096
                },
                Piece {
                    offset: 4 * MIB + 8 * MIB,
                    length: 4096
                },
            ]
        );
        assert_eq!(m.file_size(), 36 * MIB);
        // Rewrite: data only.
        assert_eq!(
            pieces(&mut m, 40 * MIB, 4096),
            vec![Piece {
                offset: 12 * MIB,
                length: 4096
            }]
        );
        assert_eq!(m.blocks_allocated(), 1);
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
        m.close_session();
        let p = pieces(&mut m, MIB - 4096, 8192);
        // headers, data in block 0 (allocated), then block 1 (allocated): 2 headers + 2 data.
        assert_eq!(p.len(), 4);
        assert_eq!(p[2].length, 4096);
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
    fn bad_layouts_are_refused() {
        assert!(VhdxModel::new(1 << 30, 3 * MIB, DiskKind::Dynamic, 0).is_err());
        assert!(VhdxModel::new(0, MIB, DiskKind::Dynamic, 0).is_err());
        assert!(VhdxModel::new(1 << 30, MIB, DiskKind::Dynamic, 2 << 30).is_err());
    }
}
