//! One VM disk as the estimate sees it, built once when the VM is added: its units grouped by
//! write probability (CSV chunks, change-tracking blocks, VHDX blocks), and the layout facts the
//! metadata terms need (which BAT chunk holds which blocks, where the log and headers are).
//!
//! Everything comes from the engine's own models: the generator's placement
//! (`Generator::placement`), the VHDX layout (`VhdxModel`: data offset, initial allocation, BAT
//! geometry) and the writer's log format (`desc_sectors`, `LOG_LENGTH`), so a change there moves
//! both tiers together.

use super::classes::{split_by, unit_runs, Run};
use super::density::WriteLaw;
use super::growth::GrowthPath;
use super::seqlog::LogLaw;
use super::zipf;
use crate::error::{Error, Result};
use crate::vhdx::create::LOG_LENGTH;
use crate::vhdx::format::{HEADER_OFFSETS, LOG_SECTOR};
use crate::vhdx::log::desc_sectors;
use crate::workload::layout::{DiskKind, VhdxModel};
use crate::workload::spec::{Generator, Locality, WorkloadSpec};
use crate::workload::VmConfig;

/// Smallest change-tracking block the estimate handles (one generator slot).
pub const MIN_CBT_BLOCK: u64 = 4096;

/// `count` units written by one operation with probability `q`; `block` is the VHDX block
/// class they sit in when that block was not allocated at the start (its allocation before a
/// snapshot decides whether they can be copied), None when it was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitClass {
    pub count: f64,
    pub q: f64,
    pub block: Option<u32>,
    /// Bytes a backup reads per unit (the unit size; less for a last unit cut by the disk end).
    pub bytes: f64,
}

/// `count` VHDX blocks not allocated at the start, each written by one operation with
/// probability `q`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockClass {
    pub count: f64,
    pub q: f64,
}

/// Where the units of one kind sit and how likely each is written.
#[derive(Debug, Clone, Default)]
pub struct UnitSet {
    pub classes: Vec<UnitClass>,
    /// For the variance: the chance a write touches both of two units `d` apart, as a share of
    /// the chance it touches one (`d = 1, 2, …`), grouped as `(ratio, pairs per unit)`.
    pub pairs: Vec<(f64, f64)>,
}

/// The layout facts of one disk.
#[derive(Debug, Clone)]
pub struct Layout {
    pub kind: DiskKind,
    pub virtual_size: u64,
    pub block_size: u64,
    /// Payload blocks, and how many were allocated at the start.
    pub blocks: u64,
    pub initially: u64,
    /// The file's size at the start, and where its payload begins.
    pub initial_file: u64,
    pub data_offset: u64,
    /// CSV chunks the two headers occupy (1 or 2: both in one chunk when chunks are large).
    pub header_chunks: f64,
    /// Log entries a chunk holds (`chunk / entry`; below 1 when an entry spans chunks), and the
    /// chunks of the ring.
    pub log_entries_per_chunk: f64,
    pub log_chunks: f64,
    pub log_ring_entries: f64,
}

/// How the VM's writes reach its units.
#[derive(Debug, Clone)]
pub enum Touch {
    /// Every operation's target is drawn from the same law: units have fixed probabilities.
    Classes {
        chunks: UnitSet,
        cbt: UnitSet,
        /// VHDX blocks not allocated at the start, by class; `bat[c]` the classes' blocks that
        /// BAT chunk `c` maps (`(class, count)`).
        blocks: Vec<BlockClass>,
        block_pairs: Vec<(f64, f64)>,
        bat: Vec<Vec<(u32, f64)>>,
        /// The chance one operation writes into a block not allocated at the start.
        q_alloc: f64,
    },
    /// The sequential log: a deterministic path (see `seqlog`).
    Log {
        law: LogLaw,
        /// Blocks the log reaches that were not allocated at the start, ascending (each its own
        /// class); `bat[c]` the classes BAT chunk `c` maps.
        blocks: Vec<u64>,
        bat: Vec<Vec<(u32, f64)>>,
        /// Bytes the log reaches that were not allocated at the start (for the first
        /// allocation), if any.
        alloc_range: Option<(u64, u64)>,
    },
}

/// One VM disk, as the estimate needs it.
#[derive(Debug, Clone)]
pub struct Profile {
    pub spec: WorkloadSpec,
    pub layout: Layout,
    pub chunk_size: u64,
    pub cbt_block_size: u64,
    /// Mean and mean square of a request's size (bytes, cut to the disk).
    pub size_mean: f64,
    pub size_sq: f64,
    pub touch: Touch,
    /// The disk's growth past its data, if its spec grows it (see `growth`).
    pub growth: Option<GrowthPath>,
}

/// Groups consecutive pair distances of similar ratio (within 30 % of the group's first) so
/// the variance's near-pair sum costs a handful of terms, not one per distance (a group's mean
/// ratio stands for its members: the covariance is smooth in it, and the variance needs no more
/// than a few per cent).
pub fn group_pairs(ratios: &[f64]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut acc = (0.0, 0.0, 0.0); // Σ ratio, count, first ratio
    for &r in ratios {
        if acc.1 > 0.0 && r < acc.2 * 0.7 {
            out.push((acc.0 / acc.1, acc.1));
            acc = (0.0, 0.0, 0.0);
        }
        if acc.1 == 0.0 {
            acc.2 = r;
        }
        acc.0 += r;
        acc.1 += 1.0;
    }
    if acc.1 > 0.0 {
        out.push((acc.0 / acc.1, acc.1));
    }
    out
}

impl Profile {
    /// The profile of `cfg`'s disk on a CSV of `chunk_size`-byte chunks.
    pub fn build(cfg: &VmConfig, chunk_size: u64) -> Result<Profile> {
        if cfg.cbt_block_size < MIN_CBT_BLOCK {
            return Err(Error::invalid(
                "cbt_block_size",
                format!(
                    "{}: the estimate tier tracks blocks of {MIN_CBT_BLOCK} bytes or more (one \
                     write slot); use the exact engine for finer tracking",
                    cfg.cbt_block_size
                ),
            ));
        }
        let gen = Generator::for_disk(cfg.spec.clone(), cfg.data(), cfg.seed)?;
        let model = VhdxModel::new(cfg.disk_size, cfg.block_size, cfg.kind, cfg.allocated)?;
        let place = gen.placement();
        let geo = model.geometry();
        let blocks = geo.payload_blocks;
        let data_offset = model.data_offset();
        let initial_file = model.file_size();
        let initially = (initial_file - data_offset) / cfg.block_size;
        let headers: Vec<u64> = HEADER_OFFSETS.iter().map(|o| o / chunk_size).collect();
        let header_chunks = if headers.windows(2).all(|w| w[0] != w[1]) {
            headers.len() as f64
        } else {
            1.0
        };
        let entry = ((desc_sectors(1) + 1) as u64 * LOG_SECTOR) as f64;
        let layout = Layout {
            kind: cfg.kind,
            virtual_size: cfg.disk_size,
            block_size: cfg.block_size,
            blocks,
            initially,
            initial_file,
            data_offset,
            header_chunks,
            log_entries_per_chunk: chunk_size as f64 / entry,
            log_chunks: (LOG_LENGTH / chunk_size).max(1) as f64,
            log_ring_entries: (LOG_LENGTH as f64 / entry).floor(),
        };
        let (mut size_mean, mut size_sq) = (0.0, 0.0);
        for z in &place.sizes {
            size_mean += z.weight * z.size as f64;
            size_sq += z.weight * (z.size as f64).powi(2);
        }
        let touch = match cfg.spec.locality {
            Locality::SequentialLog { .. } => {
                log_touch(&cfg.spec, &place, &layout, &geo, chunk_size)
            }
            Locality::Zipf { .. } if !zipf::exact_is_cheap(place.disk_size) => {
                zipf::touch(cfg, &place, &layout, &geo, chunk_size)?
            }
            _ => {
                let law = WriteLaw::of(&cfg.spec, &place)
                    .ok_or_else(|| Error::State("no write law for this locality".into()))?;
                classes_touch(&law, &layout, &geo, chunk_size, cfg.cbt_block_size)
            }
        };
        let allocated_at_start = match cfg.kind {
            DiskKind::Fixed => cfg.disk_size,
            DiskKind::Dynamic => initially * cfg.block_size,
        };
        let growth = place
            .growth
            .map(|g| GrowthPath::new(g, allocated_at_start, cfg.block_size, geo));
        if growth.is_some() && overwrites_allocate(&touch) {
            // Not reachable from a disk's data (see `growth`); refused rather than mixed.
            return Err(Error::NotEstimated {
                what: "a disk whose overwrites and growth both allocate blocks",
                why: "its data is not allocated at the start; run it with the exact engine".into(),
            });
        }
        Ok(Profile {
            spec: cfg.spec.clone(),
            layout,
            chunk_size,
            cbt_block_size: cfg.cbt_block_size,
            size_mean,
            size_sq,
            touch,
            growth,
        })
    }
}

/// Whether the overwrites can reach a block not allocated at the start.
fn overwrites_allocate(touch: &Touch) -> bool {
    match touch {
        Touch::Classes { q_alloc, .. } => *q_alloc > 0.0,
        Touch::Log { alloc_range, .. } => alloc_range.is_some(),
    }
}

/// Runs of VHDX blocks cut at the end of the initial allocation (so each run is all allocated
/// or all not).
pub fn block_runs(law: &WriteLaw, layout: &Layout) -> Vec<Run> {
    let runs = unit_runs(law, layout.block_size, layout.virtual_size);
    let mut out = Vec::with_capacity(runs.len() + 1);
    let cut = if layout.kind == DiskKind::Fixed {
        layout.blocks
    } else {
        layout.initially
    };
    for r in runs {
        let end = r.first + r.count;
        if r.first < cut && end > cut {
            out.push(Run {
                first: r.first,
                count: cut - r.first,
                q: r.q,
            });
            out.push(Run {
                first: cut,
                count: end - cut,
                q: r.q,
            });
        } else {
            out.push(r);
        }
    }
    out
}

/// Blocks that were not allocated at the start, as classes; and each block run's class (None:
/// allocated at the start).
pub fn block_classes(runs: &[Run], layout: &Layout) -> (Vec<BlockClass>, Vec<Option<u32>>) {
    let cut = if layout.kind == DiskKind::Fixed {
        layout.blocks
    } else {
        layout.initially
    };
    let mut classes: Vec<BlockClass> = Vec::new();
    let mut index: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let of_run = runs
        .iter()
        .map(|r| {
            if r.first < cut {
                None
            } else {
                let k = *index.entry(r.q.to_bits()).or_insert_with(|| {
                    classes.push(BlockClass { count: 0.0, q: r.q });
                    (classes.len() - 1) as u32
                });
                classes[k as usize].count += r.count as f64;
                Some(k)
            }
        })
        .collect();
    (classes, of_run)
}

/// For each BAT chunk, the classes of the not-yet-allocated blocks it maps.
pub fn bat_map(
    runs: &[Run],
    of_run: &[Option<u32>],
    geo: &crate::vhdx::bat::Geometry,
    chunk_size: u64,
) -> Vec<Vec<(u32, f64)>> {
    let per_chunk = chunk_size / 8;
    let first_index = |b: u64| geo.pb_index(b);
    let mut out: Vec<Vec<(u32, f64)>> = Vec::new();
    for (r, cls) in runs.iter().zip(of_run) {
        let Some(cls) = cls else { continue };
        // Blocks of this run by BAT chunk (entries are ascending in the block number).
        let mut b = r.first;
        let end = r.first + r.count;
        while b < end {
            let c = first_index(b) * 8 / chunk_size;
            // Last block whose entry is still in chunk c.
            let (mut lo, mut hi) = (b, end);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if first_index(mid) / per_chunk == c {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let n = lo + 1 - b;
            let c = c as usize;
            if out.len() <= c {
                out.resize_with(c + 1, Vec::new);
            }
            match out[c].iter_mut().find(|(k, _)| k == cls) {
                Some(e) => e.1 += n as f64,
                None => out[c].push((*cls, n as f64)),
            }
            b = lo + 1;
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// For each BAT chunk, the classes of the not-yet-allocated blocks it maps, from each block's
/// class (None: allocated at the start).
pub fn bat_map_of_blocks(
    block_class: &[Option<u32>],
    geo: &crate::vhdx::bat::Geometry,
    chunk_size: u64,
) -> Vec<Vec<(u32, f64)>> {
    let mut out: Vec<Vec<(u32, f64)>> = Vec::new();
    for (b, cls) in block_class.iter().enumerate() {
        let Some(cls) = cls else { continue };
        let c = (geo.pb_index(b as u64) * 8 / chunk_size) as usize;
        if out.len() <= c {
            out.resize_with(c + 1, Vec::new);
        }
        match out[c].iter_mut().find(|(k, _)| k == cls) {
            Some(e) => e.1 += 1.0,
            None => out[c].push((*cls, 1.0)),
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Unit classes from runs of `unit`-byte units, with the block class each lies in.
pub fn unit_set(
    runs: &[Run],
    unit: u64,
    brun: &[Run],
    of_run: &[Option<u32>],
    layout: &Layout,
    pairs: Vec<f64>,
) -> UnitSet {
    let mut classes: Vec<UnitClass> = Vec::new();
    let mut index: std::collections::HashMap<(u64, Option<u32>, u64), usize> =
        std::collections::HashMap::new();
    let units = layout.virtual_size.div_ceil(unit);
    let last_bytes = layout.virtual_size - (units - 1) * unit;
    for (r, k) in split_by(runs, unit, brun, layout.block_size) {
        let block = of_run[k];
        let mut add = |count: u64, bytes: u64| {
            if count == 0 {
                return;
            }
            let i = *index
                .entry((r.q.to_bits(), block, bytes))
                .or_insert_with(|| {
                    classes.push(UnitClass {
                        count: 0.0,
                        q: r.q,
                        block,
                        bytes: bytes as f64,
                    });
                    classes.len() - 1
                });
            classes[i].count += count as f64;
        };
        if r.first + r.count == units && last_bytes < unit {
            add(r.count - 1, unit);
            add(1, last_bytes);
        } else {
            add(r.count, unit);
        }
    }
    UnitSet {
        classes,
        pairs: group_pairs(&pairs),
    }
}

/// The unit-by-unit touch model of a piecewise-constant law (for tests of grouped models).
#[cfg(test)]
pub fn classes_touch_for_tests(
    law: &WriteLaw,
    layout: &Layout,
    geo: &crate::vhdx::bat::Geometry,
    chunk_size: u64,
    cbt_block_size: u64,
) -> Touch {
    classes_touch(law, layout, geo, chunk_size, cbt_block_size)
}

fn classes_touch(
    law: &WriteLaw,
    layout: &Layout,
    geo: &crate::vhdx::bat::Geometry,
    chunk_size: u64,
    cbt_block_size: u64,
) -> Touch {
    let brun = block_runs(law, layout);
    let (blocks, of_run) = block_classes(&brun, layout);
    let chunk_runs = unit_runs(law, chunk_size, layout.virtual_size);
    let chunks = unit_set(
        &chunk_runs,
        chunk_size,
        &brun,
        &of_run,
        layout,
        law.pair_ratios(chunk_size),
    );
    let cbt_runs = unit_runs(law, cbt_block_size, layout.virtual_size);
    let none = vec![None; brun.len()];
    let cbt = if cbt_block_size <= layout.block_size {
        unit_set(
            &cbt_runs,
            cbt_block_size,
            &brun,
            &none,
            layout,
            law.pair_ratios(cbt_block_size),
        )
    } else {
        let one = [Run {
            first: 0,
            count: layout.blocks,
            q: 0.0,
        }];
        let big = Layout {
            block_size: cbt_block_size * layout.blocks.max(1),
            ..layout.clone()
        };
        unit_set(
            &cbt_runs,
            cbt_block_size,
            &one,
            &[None],
            &big,
            law.pair_ratios(cbt_block_size),
        )
    };
    let cut = if layout.kind == DiskKind::Fixed {
        layout.blocks
    } else {
        layout.initially
    };
    let q_alloc = if cut < layout.blocks {
        law.touch(cut * layout.block_size, layout.virtual_size)
    } else {
        0.0
    };
    Touch::Classes {
        chunks,
        cbt,
        bat: bat_map(&brun, &of_run, geo, chunk_size),
        blocks,
        block_pairs: group_pairs(&law.pair_ratios(layout.block_size)),
        q_alloc,
    }
}

fn log_touch(
    spec: &WorkloadSpec,
    place: &crate::workload::spec::Placement,
    layout: &Layout,
    geo: &crate::vhdx::bat::Geometry,
    chunk_size: u64,
) -> Touch {
    let law = LogLaw::of(spec, place);
    let (first, end) = law.span();
    let (lo, hi) = (
        first * place.align,
        (end * place.align).min(layout.virtual_size),
    );
    let cut = if layout.kind == DiskKind::Fixed {
        layout.blocks
    } else {
        layout.initially
    };
    let bs = layout.block_size;
    let blocks: Vec<u64> = (lo / bs..hi.div_ceil(bs)).filter(|&b| b >= cut).collect();
    let mut class = vec![None; layout.blocks as usize];
    for (k, &b) in blocks.iter().enumerate() {
        if let Some(c) = class.get_mut(b as usize) {
            *c = Some(k as u32);
        }
    }
    let alloc_lo = (cut * bs).max(lo);
    Touch::Log {
        bat: bat_map_of_blocks(&class, geo, chunk_size),
        blocks,
        alloc_range: (alloc_lo < hi).then_some((alloc_lo, hi)),
        law,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::SizeDist;

    const MIB: u64 = 1 << 20;

    fn cfg(locality: Locality, kind: DiskKind, allocated: u64) -> VmConfig {
        VmConfig {
            csv: 0,
            disk_size: 10 << 30,
            allocated,
            block_size: 32 * MIB,
            kind,
            spec: WorkloadSpec {
                iops: 50.0,
                read_fraction: 0.3,
                sizes: SizeDist::typical(),
                locality,
                diurnal: None,
                growth_per_day: 0.0,
                daily_change: None,
            },
            seed: 5,
            cbt_block_size: 65536,
        }
    }

    #[test]
    fn classes_cover_the_disk() {
        let hot = Locality::HotSpot {
            hot_fraction: 0.1,
            hot_share: 0.9,
        };
        for (kind, alloc) in [
            (DiskKind::Dynamic, 3 << 30),
            (DiskKind::Fixed, 0),
            (DiskKind::Dynamic, 0),
        ] {
            let p = Profile::build(&cfg(hot.clone(), kind, alloc), 16384).unwrap();
            let Touch::Classes {
                chunks,
                cbt,
                blocks,
                bat,
                q_alloc,
                ..
            } = &p.touch
            else {
                panic!("classes expected");
            };
            let n: f64 = chunks.classes.iter().map(|c| c.count).sum();
            assert_eq!(n, (10u64 << 30) as f64 / 16384.0);
            let m: f64 = cbt.classes.iter().map(|c| c.count * c.bytes).sum();
            assert_eq!(m, (10u64 << 30) as f64);
            let free: f64 = blocks.iter().map(|b| b.count).sum();
            assert_eq!(
                free,
                (p.layout.blocks
                    - if kind == DiskKind::Fixed {
                        p.layout.blocks
                    } else {
                        p.layout.initially
                    }) as f64
            );
            let in_bat: f64 = bat.iter().flatten().map(|e| e.1).sum();
            assert_eq!(in_bat, free);
            // Chunks in blocks allocated at the start carry no block class.
            let alloc_chunks: f64 = chunks
                .classes
                .iter()
                .filter(|c| c.block.is_none())
                .map(|c| c.count)
                .sum();
            assert_eq!(
                alloc_chunks,
                (p.layout.blocks - free as u64) as f64 * 2048.0
            );
            // Expected chunks a write touches: Σ q over chunks ≈ (1 − ρ) × mean chunks a write spans.
            let expected: f64 = chunks.classes.iter().map(|c| c.count * c.q).sum();
            assert!(expected > 0.7 * 1.0 && expected < 0.7 * 6.0, "{expected}");
            assert!(chunks.classes.len() < 2000, "{}", chunks.classes.len());
            // Overwrites stay in the data: they allocate only on a disk taken to be full of it
            // (nothing allocated at the start).
            assert_eq!(*q_alloc > 0.0, free > 0.0 && alloc == 0);
        }
    }
}
