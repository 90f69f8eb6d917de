//! The Zipf locality on disks too large to take extent by extent: extents grouped by their
//! probability, with a stated error.
//!
//! How this works. The generator draws a rank from a bounded power law, puts it on the 1 MiB
//! extent `zipf_extent(rank, salt, n)`, and a uniform slot inside it (clipped to the size's last
//! start slot). So extent `e` gets the probability `P_e` of the ranks it holds, spread evenly
//! over its 256 slots, and a unit at position `j` of extent `e` is written by one operation with
//! probability `q = A_j·P_e + B_j·P_(e−1) + D_j` — starts in its own extent, spill from writes
//! that start in the extent before (`A_j`, `B_j` from the size mix), and, for writes longer
//! than 1 MiB, from extents further back, taken at their mean `1/n` (`D_j`).
//!
//! Extents are put in *cells* by `(P_e, P_(e−1))` on geometric grids (ratio `1 + ε_e`, `1 +
//! ε_p`) and by the VHDX block class they sit in; each cell's units are evaluated once, at the
//! cell's mean probabilities, and the results grouped again by `q` (ratio `1 + ε_q`) into unit
//! classes. Per VM this is O(extents) to build and O(classes) per evaluation, whatever the
//! number of writes.
//!
//! Error bound. Every sum the estimate takes is `Σ_u f(q_u)` with `f(q) = 1 − ψ(q)` concave,
//! increasing, `f(0) = 0`. Replacing the `q_u` of a group, all within a factor `1 + ε` of their
//! mean `q̄`, by `q̄` changes the group's sum by at most `½ max|f''| Σ (q_u − q̄)²`, which relative
//! to the sum is at most `max_x (x² e^(−x) / (1 − e^(−x))) · ε² / 2 ≤ 0.33 ε²`. With `ε_q = 2 %`,
//! `ε_e = 2 %` and `ε_p = 10 %` on the spill part (at most a share `B_j P_(e−1) / q ≤ 1` of `q`),
//! the bound is `0.33 (0.02² + 0.02² + 0.1²) ≈ 0.36 %` in the worst case and far less in
//! practice (a unit's spill share is small and the errors of a group's members cancel to first
//! order). Blocks are grouped with `ε_b = 5 %` for the allocation weights (`≤ 0.08 %`). Units
//! of the first extent, of the last ones (where starts are clipped) and past the last whole MiB
//! are computed exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::density::pair_ratios;
use super::profile::{bat_map_of_blocks, BlockClass, Layout, Touch, UnitClass, UnitSet};
use crate::error::Result;
use crate::workload::layout::DiskKind;
use crate::workload::spec::{zipf_extent, zipf_rank_probability, Locality, Placement};
use crate::workload::VmConfig;

const MIB: u64 = 1 << 20;
/// Disks up to this many 1 MiB extents are estimated unit by unit (exact).
pub const EXACT_EXTENTS: u64 = 1024;
const EPS_Q: f64 = 0.02;
const EPS_E: f64 = 0.02;
const EPS_P: f64 = 0.10;
const EPS_B: f64 = 0.05;

pub fn exact_is_cheap(disk_size: u64) -> bool {
    disk_size / MIB <= EXACT_EXTENTS
}

/// Rank probabilities by `(n, theta bits)`.
type RankCache = Mutex<HashMap<(u64, u64), Arc<Vec<f64>>>>;
/// Extent cells: `(bin of P_e, bin of P_(e−1), block class)` → (extents, ΣP_e, ΣP_(e−1)).
type Cells = HashMap<(i32, i32, Option<u32>), (f64, f64, f64)>;

/// Rank probabilities of `(n, theta)`, shared by every VM that has them (a few distinct disks
/// per cluster; at most 16 kept).
fn ranks(n: u64, theta: f64) -> Arc<Vec<f64>> {
    static CACHE: OnceLock<RankCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (n, theta.to_bits());
    if let Ok(map) = cache.lock() {
        if let Some(v) = map.get(&key) {
            return v.clone();
        }
    }
    let v: Arc<Vec<f64>> = Arc::new((0..n).map(|r| zipf_rank_probability(n, theta, r)).collect());
    if let Ok(mut map) = cache.lock() {
        if map.len() >= 16 {
            map.clear();
        }
        map.insert(key, v.clone());
    }
    v
}

/// The geometric bin of a probability.
#[inline]
fn bin(x: f64, eps: f64) -> i32 {
    if x <= 0.0 {
        i32::MIN
    } else {
        (x.ln() / eps.ln_1p()).floor() as i32
    }
}

/// One disk's Zipf start laws: extent probabilities and, per size, the last start slot.
struct Disk {
    n: u64,
    per: u64,
    align: u64,
    write_share: f64,
    p: Vec<f64>,
    prefix: Vec<f64>,
    /// (weight, bytes, span in slots, last start slot)
    sizes: Vec<(f64, u64, u64, u64)>,
}

impl Disk {
    fn cdf(&self, last: u64, x: i64) -> f64 {
        if x <= 0 {
            return 0.0;
        }
        let x = x as u64;
        if x > last {
            return 1.0;
        }
        let e = (x / self.per) as usize;
        let base = self.prefix.get(e).copied().unwrap_or(1.0);
        let within =
            self.p.get(e).copied().unwrap_or(0.0) * (x % self.per) as f64 / self.per as f64;
        (base + within).min(1.0)
    }

    /// The exact chance one operation writes into bytes `[lo, hi)`.
    fn touch(&self, lo: u64, hi: u64) -> f64 {
        let a = self.align as i64;
        let mut q = 0.0;
        for &(w, size, _, last) in &self.sizes {
            let from = (lo as i64 - size as i64).div_euclid(a) + 1;
            let to = (hi as i64 + a - 1).div_euclid(a);
            if to > from {
                q += w * (self.cdf(last, to) - self.cdf(last, from)).max(0.0);
            }
        }
        self.write_share * q
    }

    /// Coefficients `(A, B, D)` of a unit of `u` slots at position `j` of an extent (see the
    /// module doc).
    fn coefficients(&self, u: u64, j: u64) -> (f64, f64, f64) {
        let per = self.per as i64;
        let (mut a, mut b, mut d) = (0.0, 0.0, 0.0);
        for &(w, _, span, _) in &self.sizes {
            let lo = (u * j) as i64 - span as i64 + 1;
            let hi = (u * (j + 1)) as i64;
            let own = (hi.min(per) - lo.max(0)).max(0) as f64;
            let pred = (hi.min(0) - lo.max(-per)).max(0) as f64;
            let deep = (-per - lo).max(0) as f64;
            a += w * own;
            b += w * pred;
            d += w * deep;
        }
        let k = self.write_share / self.per as f64;
        (a * k, b * k, d * k / self.n as f64)
    }
}

/// Accumulates units into classes by `(bin of q, block class)`.
#[derive(Default)]
struct Bins {
    map: HashMap<(i32, Option<u32>, u64), (f64, f64)>,
}

impl Bins {
    fn add(&mut self, count: f64, q: f64, block: Option<u32>, bytes: u64) {
        if count <= 0.0 {
            return;
        }
        let e = self
            .map
            .entry((bin(q, EPS_Q), block, bytes))
            .or_insert((0.0, 0.0));
        e.0 += count;
        e.1 += count * q;
    }

    fn classes(self) -> Vec<UnitClass> {
        let mut v: Vec<UnitClass> = self
            .map
            .into_iter()
            .map(|((_, block, bytes), (count, sq))| UnitClass {
                count,
                q: sq / count,
                block,
                bytes: bytes as f64,
            })
            .collect();
        v.sort_by(|a, b| a.q.total_cmp(&b.q).then(a.block.cmp(&b.block)));
        v
    }
}

/// Units of `unit` bytes as classes: cells of extents for units below 1 MiB, unit by unit
/// (exact) otherwise and at the edges. `block_of(unit index)` gives the block class.
fn unit_set(
    d: &Disk,
    unit: u64,
    disk: u64,
    block_bytes: u64,
    block_class: &[Option<u32>],
) -> UnitSet {
    let units = disk.div_ceil(unit);
    let last_bytes = disk - (units - 1) * unit;
    let block_of = |byte: u64| {
        block_class
            .get((byte / block_bytes) as usize)
            .copied()
            .flatten()
    };
    let mut bins = Bins::default();
    let exact = |bins: &mut Bins, k: u64| {
        let lo = k * unit;
        let hi = ((k + 1) * unit).min(disk);
        bins.add(1.0, d.touch(lo, hi), block_of(lo), hi - lo);
    };
    let spans: Vec<(f64, f64)> = d.sizes.iter().map(|s| (s.0, s.2 as f64)).collect();
    let u = unit / d.align;
    let pairs = pair_ratios(&spans, u as f64);
    if unit >= MIB {
        for k in 0..units {
            exact(&mut bins, k);
        }
    } else {
        let per_extent = MIB / unit;
        let max_span = d.sizes.iter().map(|s| s.2).max().unwrap_or(1);
        let depth = (max_span.saturating_sub(1)).div_ceil(d.per);
        let last_min = d.sizes.iter().map(|s| s.3).min().unwrap_or(0);
        // Extents whose units never meet a clipped start slot, past the first `depth`.
        let clean_end = ((last_min + 1) / d.per).min(d.n);
        let clean_start = (depth + 1).min(clean_end);
        let mut cells: Cells = HashMap::new();
        for e in clean_start..clean_end {
            let pe = d.p[e as usize];
            let pp = d.p[e as usize - 1];
            let cell = cells
                .entry((bin(pe, EPS_E), bin(pp, EPS_P), block_of(e * MIB)))
                .or_insert((0.0, 0.0, 0.0));
            cell.0 += 1.0;
            cell.1 += pe;
            cell.2 += pp;
        }
        let coef: Vec<(f64, f64, f64)> = (0..per_extent).map(|j| d.coefficients(u, j)).collect();
        for ((_, _, block), (count, spe, spp)) in cells {
            let (pe, pp) = (spe / count, spp / count);
            for &(a, b, dd) in &coef {
                bins.add(count, a * pe + b * pp + dd, block, unit);
            }
        }
        for k in 0..clean_start * per_extent {
            exact(&mut bins, k);
        }
        for k in (clean_end * per_extent).min(units)..units {
            exact(&mut bins, k);
        }
    }
    let _ = last_bytes;
    UnitSet {
        classes: bins.classes(),
        pairs: super::profile::group_pairs(&pairs),
    }
}

/// The profile's touch model for a Zipf disk of many extents.
pub fn touch(
    cfg: &VmConfig,
    place: &Placement,
    layout: &Layout,
    geo: &crate::vhdx::bat::Geometry,
    chunk_size: u64,
) -> Result<Touch> {
    let Locality::Zipf { theta } = cfg.spec.locality else {
        return Err(crate::error::Error::State(
            "zipf::touch called for another locality".into(),
        ));
    };
    let n = (place.disk_size / MIB).max(1);
    let ranks = ranks(n, theta);
    let mut p = vec![0.0; n as usize];
    for (r, &pr) in ranks.iter().enumerate() {
        p[zipf_extent(r as u64, place.salt, n) as usize] += pr;
    }
    let mut prefix = Vec::with_capacity(p.len() + 1);
    let mut acc = 0.0;
    prefix.push(0.0);
    for &x in &p {
        acc += x;
        prefix.push(acc);
    }
    let d = Disk {
        n,
        per: MIB / place.align,
        align: place.align,
        write_share: 1.0 - cfg.spec.read_fraction,
        p,
        prefix,
        sizes: place
            .sizes
            .iter()
            .map(|z| (z.weight, z.size, z.size.div_ceil(place.align), z.slots - 1))
            .collect(),
    };
    let disk = layout.virtual_size;
    let bs = layout.block_size;
    let cut = if layout.kind == DiskKind::Fixed {
        layout.blocks
    } else {
        layout.initially
    };
    // Blocks: exact, then grouped.
    let mut block_bins: HashMap<i32, u32> = HashMap::new();
    let mut blocks: Vec<BlockClass> = Vec::new();
    let mut block_q_sum: Vec<f64> = Vec::new();
    let block_class: Vec<Option<u32>> = (0..layout.blocks)
        .map(|b| {
            if b < cut {
                return None;
            }
            let q = d.touch(b * bs, ((b + 1) * bs).min(disk));
            let k = *block_bins.entry(bin(q, EPS_B)).or_insert_with(|| {
                blocks.push(BlockClass { count: 0.0, q: 0.0 });
                block_q_sum.push(0.0);
                (blocks.len() - 1) as u32
            });
            blocks[k as usize].count += 1.0;
            block_q_sum[k as usize] += q;
            Some(k)
        })
        .collect();
    for (b, s) in blocks.iter_mut().zip(&block_q_sum) {
        b.q = s / b.count;
    }
    let spans: Vec<(f64, f64)> = d.sizes.iter().map(|s| (s.0, s.2 as f64)).collect();
    let chunks = unit_set(&d, chunk_size, disk, bs, &block_class);
    let none = vec![None; block_class.len()];
    let cbt = unit_set(&d, cfg.cbt_block_size, disk, bs, &none);
    let q_alloc = if cut < layout.blocks {
        d.touch(cut * bs, disk)
    } else {
        0.0
    };
    Ok(Touch::Classes {
        chunks,
        cbt,
        bat: bat_map_of_blocks(&block_class, geo, chunk_size),
        blocks,
        block_pairs: super::profile::group_pairs(&pair_ratios(&spans, (bs / d.align) as f64)),
        q_alloc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::exposure::{Exposure, RateCurve};
    use crate::estimate::intervals::Intervals;
    use crate::estimate::profile::Profile;
    use crate::workload::spec::{Generator, SizeDist, WorkloadSpec};

    fn sums(t: &Touch, e: &Exposure, pre: &Exposure) -> [f64; 4] {
        let Touch::Classes {
            chunks,
            cbt,
            blocks,
            ..
        } = t
        else {
            panic!("classes expected");
        };
        let w = |b: Option<u32>| b.map_or(1.0, |k| 1.0 - pre.none(blocks[k as usize].q));
        let c: f64 = chunks
            .classes
            .iter()
            .map(|c| c.count * w(c.block) * (1.0 - e.none(c.q)))
            .sum();
        let plain: f64 = chunks
            .classes
            .iter()
            .map(|c| c.count * (1.0 - e.none(c.q)))
            .sum();
        let k: f64 = cbt
            .classes
            .iter()
            .map(|c| c.count * (1.0 - e.none(c.q)))
            .sum();
        let b: f64 = blocks.iter().map(|b| b.count * (1.0 - e.none(b.q))).sum();
        [c, plain, k, b]
    }

    /// Grouped extents against the exact unit-by-unit profile of the same disk.
    #[test]
    fn groups_stay_within_the_bound() {
        let disk = if cfg!(debug_assertions) {
            1536 * MIB
        } else {
            6 << 30
        };
        // The data (allocated extent) past the exact bound, so the grouped path is the one tested.
        for (theta, alloc) in [(0.99, disk / 4 * 3), (0.6, 0), (1.4, 2 << 30)] {
            let spec = WorkloadSpec {
                iops: 100.0,
                read_fraction: 0.3,
                sizes: SizeDist::typical(),
                locality: Locality::Zipf { theta },
                diurnal: None,
                growth_per_day: 0.0,
                daily_change: None,
            };
            let cfg = VmConfig {
                csv: 0,
                disk_size: disk,
                allocated: alloc.min(disk),
                block_size: 32 * MIB,
                kind: DiskKind::Dynamic,
                spec: spec.clone(),
                seed: 77,
                cbt_block_size: 65536,
            };
            let p = Profile::build(&cfg, 16384).unwrap();
            let g = Generator::for_disk(spec.clone(), cfg.data(), 77).unwrap();
            let place = g.placement();
            let law = crate::estimate::density::WriteLaw::of(&spec, &place).unwrap();
            let exact = crate::estimate::profile::classes_touch_for_tests(
                &law,
                &p.layout,
                &crate::vhdx::bat::Geometry::new(disk, 32 * MIB, 512, false),
                16384,
                65536,
            );
            let c = RateCurve::of(&spec);
            for secs in [10.0, 300.0, 20_000.0] {
                let e = Exposure::build(c, &Intervals::span(0.0, secs));
                let pre = Exposure::build(c, &Intervals::span(0.0, secs / 3.0));
                let a = sums(&p.touch, &e, &pre);
                let b = sums(&exact, &e, &pre);
                for k in 0..4 {
                    let r = (a[k] - b[k]).abs() / b[k].max(1e-9);
                    eprintln!(
                        "zipf group error theta {theta} {secs} s figure {k}: {:.5} %",
                        r * 100.0
                    );
                    assert!(
                        r < 0.0036,
                        "theta {theta} {secs} s figure {k}: {} vs {} ({:.4} %)",
                        a[k],
                        b[k],
                        r * 100.0
                    );
                }
            }
            let Touch::Classes { chunks, .. } = &p.touch else {
                panic!("classes expected");
            };
            assert!(chunks.classes.len() < 20_000, "{}", chunks.classes.len());
        }
    }
}
