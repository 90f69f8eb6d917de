//! The disk's growth (`WorkloadSpec::growth_per_day`) as the estimate sees it: a deterministic
//! path. Growth write `j` lands at `start + j × GROWTH_WRITE` at time `(j + 1) × GROWTH_WRITE /
//! rate` (`workload::spec::Growth`, the generator's own figures), so in a time set the growth
//! writes are index ranges, the bytes they cover are byte ranges, and every count the tier needs
//! of them — writes and bytes, units (chunks, change-tracking blocks, VHDX blocks) touched, the
//! blocks they allocate and the BAT chunks mapping those — is an exact count of ranges, with no
//! variance.
//!
//! Growth lies past the data (`DiskData::used`), where the overwrites never land, so the two
//! sources touch disjoint units except the one unit of each size holding the data's end when
//! that end is not a multiple of the unit (for it the growth term counts the growth's writes as
//! if no overwrite had reached it: at most one unit per VM and figure). They never both
//! allocate: a dynamic disk with data has its data's blocks allocated at the start (the
//! overwrites stay inside them), and one without data (`allocated = 0`) is taken to be full of
//! data, so it has no room to grow.

use super::intervals::Intervals;
use crate::vhdx::bat::Geometry;
use crate::workload::spec::{Growth, GROWTH_WRITE};

/// One disk's growth path and the layout facts its counts need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowthPath {
    pub g: Growth,
    /// Growth writes until the disk's end.
    pub writes: u64,
    /// Bytes of the disk allocated at the start (`[0, this)`; a fixed disk: all of it).
    pub allocated_at_start: u64,
    pub block_size: u64,
    pub geo: Geometry,
}

/// Byte ranges `[a, b)`, ascending and disjoint.
pub type Ranges = Vec<(u64, u64)>;

impl GrowthPath {
    pub fn new(g: Growth, allocated_at_start: u64, block_size: u64, geo: Geometry) -> Self {
        GrowthPath {
            g,
            writes: g.end.saturating_sub(g.start).div_ceil(GROWTH_WRITE),
            allocated_at_start,
            block_size,
            geo,
        }
    }

    /// The growth writes whose times lie in `set`, as index ranges `[a, b)`.
    fn index_ranges(&self, set: &Intervals) -> Vec<(u64, u64)> {
        set.as_slice()
            .iter()
            .filter_map(|&(a, b)| {
                let ja = self.g.first_at(a).min(self.writes);
                let jb = self.g.first_at(b).min(self.writes);
                (jb > ja).then_some((ja, jb))
            })
            .collect()
    }

    fn bytes_of(&self, (ja, jb): (u64, u64)) -> (u64, u64) {
        (
            self.g.start + ja * GROWTH_WRITE,
            (self.g.start + jb * GROWTH_WRITE).min(self.g.end),
        )
    }

    /// Growth writes in `set` and their bytes.
    pub fn ops(&self, set: &Intervals) -> (f64, f64) {
        self.index_ranges(set)
            .into_iter()
            .fold((0.0, 0.0), |(n, bytes), r| {
                let (a, b) = self.bytes_of(r);
                (n + (r.1 - r.0) as f64, bytes + (b - a) as f64)
            })
    }

    /// The bytes the growth writes of `set` cover, merged.
    pub fn ranges(&self, set: &Intervals) -> Ranges {
        let mut out: Ranges = Vec::new();
        for r in self.index_ranges(set) {
            let (a, b) = self.bytes_of(r);
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// Blocks not allocated at the start that the growth writes of `set` reach (each allocated
    /// by the first of them), as unit-index ranges of `block_size`.
    pub fn new_blocks(&self, set: &Intervals) -> Vec<(u64, u64)> {
        let first = self.allocated_at_start.div_ceil(self.block_size);
        clip(
            &unit_ranges(&self.ranges(set), self.block_size),
            first,
            u64::MAX,
        )
    }

    /// The bytes allocated after the growth writes of `set` (`[0, allocated_at_start)` and the
    /// blocks they reach), for "was this chunk's block allocated when the snapshot was taken".
    pub fn allocated(&self, set: &Intervals) -> Ranges {
        let mut out: Ranges = vec![(0, self.allocated_at_start)];
        for (a, b) in self.new_blocks(set) {
            let r = (a * self.block_size, b * self.block_size);
            match out.last_mut() {
                Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
                _ => out.push(r),
            }
        }
        out
    }

    /// Whether some growth write of `set` lands in a block not allocated at the start (the
    /// first allocation: the log is used, the headers rewritten).
    pub fn allocates_in(&self, set: &Intervals) -> bool {
        self.ranges(set)
            .iter()
            .any(|&(_, b)| b > self.allocated_at_start.div_ceil(self.block_size) * self.block_size)
    }

    /// BAT chunks (of `chunk_size` bytes, numbered from the BAT's start) mapping the blocks
    /// first allocated in `inn` after those of `pre` (`pre ∪ inn` the growth writes up to the
    /// interval's end).
    pub fn bat_chunks(&self, pre: &Intervals, all: &Intervals, chunk_size: u64) -> f64 {
        let before = self.new_blocks(pre);
        let mut chunks: Vec<u64> = Vec::new();
        for (a, b) in self.new_blocks(all) {
            for block in a..b {
                if before.iter().any(|&(x, y)| block >= x && block < y) {
                    continue;
                }
                let c = self.geo.pb_index(block) * 8 / chunk_size;
                if chunks.last() != Some(&c) {
                    chunks.push(c);
                }
            }
        }
        chunks.sort_unstable();
        chunks.dedup();
        chunks.len() as f64
    }
}

/// Unit-index ranges `[k0, k1)` of `unit`-byte units the byte ranges cover, merged.
pub fn unit_ranges(bytes: &[(u64, u64)], unit: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(a, b) in bytes.iter().filter(|(a, b)| b > a) {
        let (k0, k1) = (a / unit, b.div_ceil(unit));
        match out.last_mut() {
            Some(last) if k0 <= last.1 => last.1 = last.1.max(k1),
            _ => out.push((k0, k1)),
        }
    }
    out
}

/// `ranges` cut to `[lo, hi)`.
fn clip(ranges: &[(u64, u64)], lo: u64, hi: u64) -> Vec<(u64, u64)> {
    ranges
        .iter()
        .map(|&(a, b)| (a.max(lo), b.min(hi)))
        .filter(|(a, b)| b > a)
        .collect()
}

/// Units of `unit` bytes the byte ranges `touched` cover, counting only units whose first byte
/// lies in `mask` (None: all), and their bytes up to `disk` (a last unit cut by the disk's end
/// reads only what it holds).
pub fn units(
    touched: &[(u64, u64)],
    unit: u64,
    mask: Option<&[(u64, u64)]>,
    disk: u64,
) -> (f64, f64) {
    let (mut n, mut bytes) = (0u64, 0u64);
    for (k0, k1) in unit_ranges(touched, unit) {
        let pieces = match mask {
            None => vec![(k0, k1)],
            Some(m) => m
                .iter()
                .flat_map(|&(a, b)| clip(&[(k0, k1)], a.div_ceil(unit), b.div_ceil(unit)))
                .collect(),
        };
        for (a, b) in pieces {
            n += b - a;
            bytes += (b * unit).min(disk).saturating_sub(a * unit);
        }
    }
    (n as f64, bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{
        DiskData, Generator, Locality, SizeDist, WorkloadSpec, WriteBatch,
    };

    const MIB: u64 = 1 << 20;

    fn path(start: u64, rate: f64, end: u64, at_start: u64) -> GrowthPath {
        GrowthPath::new(
            Growth {
                start,
                bytes_per_s: rate,
                end,
            },
            at_start,
            32 * MIB,
            Geometry::new(end, 32 * MIB, 512, false),
        )
    }

    /// The counts agree with the generator's own growth writes, window by window.
    #[test]
    fn counts_are_the_generators_writes() {
        let spec = WorkloadSpec {
            iops: 0.0,
            read_fraction: 0.0,
            sizes: SizeDist::typical(),
            locality: Locality::Uniform,
            diurnal: None,
            growth_per_day: 0.5,
            daily_change: None,
        };
        let disk = DiskData {
            size: 4 << 30,
            used: (1 << 30) + 12_288,
        };
        let g = Generator::for_disk(spec, disk, 1).unwrap();
        let gp = GrowthPath::new(
            g.placement().growth.unwrap(),
            disk.used.div_ceil(32 * MIB) * 32 * MIB,
            32 * MIB,
            Geometry::new(disk.size, 32 * MIB, 512, false),
        );
        for (t0, t1) in [
            (0.0, 10.0),
            (10.0, 3600.0),
            (3600.0, 7000.5),
            (0.0, 86_400.0),
        ] {
            let mut b = WriteBatch::default();
            g.generate(t0, t1, &mut b);
            let set = Intervals::span(t0, t1);
            let (n, bytes) = gp.ops(&set);
            assert_eq!(n as usize, b.len(), "{t0}..{t1}");
            let sum: u64 = b.lengths.iter().map(|&l| u64::from(l)).sum();
            assert_eq!(bytes as u64, sum);
            let mut chunks: Vec<u64> = b
                .offsets
                .iter()
                .zip(&b.lengths)
                .flat_map(|(&o, &l)| o / 16384..(o + u64::from(l)).div_ceil(16384))
                .collect();
            chunks.sort_unstable();
            chunks.dedup();
            assert_eq!(
                units(&gp.ranges(&set), 16384, None, disk.size).0 as usize,
                chunks.len()
            );
        }
    }

    #[test]
    fn blocks_and_masks() {
        // 1 MiB a second from 1 GiB + 4 KiB, 1 GiB + 32 MiB allocated at the start.
        let gp = path((1 << 30) + 4096, MIB as f64, 2 << 30, (1 << 30) + 32 * MIB);
        // Writes 0..40 by t = 40 s: bytes up to 1 GiB + 4 KiB + 40 MiB, so block 33 (the second
        // past the start's) is reached.
        let set = Intervals::span(0.0, 40.5);
        assert_eq!(gp.new_blocks(&set), vec![(33, 34)]);
        assert!(gp.allocates_in(&set));
        assert!(!gp.allocates_in(&Intervals::span(0.0, 10.0)));
        let alloc = gp.allocated(&set);
        assert_eq!(alloc, vec![(0, 34 * 32 * MIB)]);
        // Units masked to the allocated region.
        let touched = vec![(33 * 32 * MIB, 35 * 32 * MIB)];
        assert_eq!(units(&touched, MIB, Some(&alloc), 2 << 30).0, 32.0);
        assert_eq!(units(&touched, MIB, None, 2 << 30).0, 64.0);
        // The disk's end cuts the last unit's bytes.
        assert_eq!(units(&[(0, 100)], 64, None, 100), (2.0, 100.0));
        assert_eq!(gp.bat_chunks(&Intervals::span(0.0, 10.0), &set, 16384), 1.0);
        assert_eq!(gp.bat_chunks(&set, &set, 16384), 0.0);
    }
}
