//! Where one operation's write lands, as a law: for each request size, the probability of each
//! start slot, in pieces of constant probability — read from the generator's own placement
//! (`Generator::placement`), so the estimate and the per-write stream cannot drift apart.
//!
//! A write of `s` bytes starting at slot `x` (slots are `align` bytes) covers bytes
//! `[x·align, x·align + s)`, so it touches the byte range `[lo, hi)` exactly when
//! `⌊(lo − s) / align⌋ + 1 ≤ x < ⌈hi / align⌉`: the chance one operation writes into a range is a
//! sum over sizes of the start law's mass on a slot interval ([`WriteLaw::touch`]).

use crate::workload::spec::{
    zipf_extent, zipf_rank_probability, Locality, Placement, WorkloadSpec,
};

const MIB: u64 = 1 << 20;

/// One request size's start slots: pieces `[starts[i], starts[i + 1])` (the last ending at
/// `end`) of constant per-slot probability `dens[i]`.
#[derive(Debug, Clone)]
pub struct StartLaw {
    starts: Vec<u64>,
    dens: Vec<f64>,
    /// Mass before piece `i`.
    cum: Vec<f64>,
    end: u64,
}

impl StartLaw {
    /// A law from `(start, end, per-slot probability)` pieces, ascending and adjacent.
    pub fn from_pieces(pieces: &[(u64, u64, f64)]) -> StartLaw {
        let mut starts = Vec::with_capacity(pieces.len());
        let mut dens = Vec::with_capacity(pieces.len());
        let mut cum = Vec::with_capacity(pieces.len());
        let mut acc = 0.0;
        let mut end = 0;
        for &(a, b, d) in pieces {
            if b <= a {
                continue;
            }
            starts.push(a);
            dens.push(d);
            cum.push(acc);
            acc += d * (b - a) as f64;
            end = b;
        }
        StartLaw {
            starts,
            dens,
            cum,
            end,
        }
    }

    /// `P(start < x)`.
    pub fn cdf(&self, x: i64) -> f64 {
        if x <= 0 || self.starts.is_empty() {
            return 0.0;
        }
        let x = (x as u64).min(self.end);
        let i = self.starts.partition_point(|&s| s <= x).saturating_sub(1);
        if x < self.starts[i] {
            return 0.0;
        }
        self.cum[i] + self.dens[i] * (x - self.starts[i]) as f64
    }

    /// `P(a ≤ start < b)`.
    #[inline]
    pub fn mass_in(&self, a: i64, b: i64) -> f64 {
        if b <= a {
            0.0
        } else {
            (self.cdf(b) - self.cdf(a)).max(0.0)
        }
    }

    /// Slots where the per-slot probability changes (piece bounds).
    pub fn breakpoints(&self) -> impl Iterator<Item = u64> + '_ {
        self.starts.iter().copied().chain(std::iter::once(self.end))
    }
}

/// One request size: its probability, bytes, and start law.
#[derive(Debug, Clone)]
pub struct SizeLaw {
    pub weight: f64,
    pub size: u64,
    pub start: StartLaw,
}

/// What one operation writes, as a law (see the module doc).
#[derive(Debug, Clone)]
pub struct WriteLaw {
    /// The probability an operation is a write.
    pub write_share: f64,
    pub align: u64,
    pub sizes: Vec<SizeLaw>,
}

fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

impl WriteLaw {
    /// The law of a piecewise-constant locality (uniform, hot spot), or of Zipf over every
    /// extent (exact, one piece per extent: for small disks and tests; large disks group ranks,
    /// see `zipf`). None for the sequential log, whose writes follow a path (see `seqlog`).
    pub fn of(spec: &WorkloadSpec, place: &Placement) -> Option<WriteLaw> {
        let sizes = place
            .sizes
            .iter()
            .map(|z| {
                let pieces: Vec<(u64, u64, f64)> = match spec.locality {
                    Locality::Uniform => vec![(0, z.slots, 1.0 / z.slots as f64)],
                    Locality::HotSpot { hot_share, .. } => {
                        let cold = (1.0 - hot_share) / z.slots as f64;
                        let hot = cold + hot_share / z.region as f64;
                        vec![
                            (0, z.base, cold),
                            (z.base, z.base + z.region, hot),
                            (z.base + z.region, z.slots, cold),
                        ]
                    }
                    Locality::Zipf { theta } => {
                        zipf_pieces(place.disk_size, place.align, z.slots, theta, place.salt)
                    }
                    Locality::SequentialLog { .. } => return None,
                };
                Some(SizeLaw {
                    weight: z.weight,
                    size: z.size,
                    start: StartLaw::from_pieces(&pieces),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(WriteLaw {
            write_share: 1.0 - spec.read_fraction,
            align: place.align,
            sizes,
        })
    }

    /// Start slots of size `i` whose write touches bytes `[lo, hi)`.
    #[inline]
    pub fn window(&self, i: usize, lo: u64, hi: u64) -> (i64, i64) {
        let a = self.align as i64;
        let s = self.sizes[i].size as i64;
        (
            floor_div(lo as i64 - s, a) + 1,
            (hi as i64 + a - 1).div_euclid(a),
        )
    }

    /// The probability one operation writes some byte of `[lo, hi)`.
    pub fn touch(&self, lo: u64, hi: u64) -> f64 {
        let mut p = 0.0;
        for (i, z) in self.sizes.iter().enumerate() {
            let (a, b) = self.window(i, lo, hi);
            p += z.weight * z.start.mass_in(a, b);
        }
        self.write_share * p
    }

    /// Start slots after which, for some size, the chance of touching a unit changes: unit
    /// ranges whose windows hold none of them all have the same probability.
    pub fn breakpoints(&self) -> Vec<(u64, u64)> {
        // (breakpoint, span in slots of the size it belongs to)
        let mut v: Vec<(u64, u64)> = Vec::new();
        for z in &self.sizes {
            let span = z.size.div_ceil(self.align);
            for b in z.start.breakpoints() {
                v.push((b, span));
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The largest span of a write, in slots.
    pub fn max_span(&self) -> u64 {
        self.sizes
            .iter()
            .map(|z| z.size.div_ceil(self.align))
            .max()
            .unwrap_or(1)
    }

    /// For the variance: see [`pair_ratios`].
    pub fn pair_ratios(&self, unit: u64) -> Vec<f64> {
        let spans: Vec<(f64, f64)> = self
            .sizes
            .iter()
            .map(|z| (z.weight, z.size.div_ceil(self.align) as f64))
            .collect();
        pair_ratios(&spans, (unit / self.align).max(1) as f64)
    }
}

/// For the variance: the chance one write touches both of two units `d` units apart, as a share
/// of the chance it touches one, for `d = 1, 2, …` (in a region of even density), from the
/// sizes' `(weight, span in slots)` and the unit's slots.
pub fn pair_ratios(spans: &[(f64, f64)], u: f64) -> Vec<f64> {
    let one: f64 = spans.iter().map(|(w, c)| w * (u + c - 1.0)).sum();
    let mut out = Vec::new();
    let mut d = 1.0;
    loop {
        let both: f64 = spans
            .iter()
            .map(|(w, c)| w * (u + c - 1.0 - d * u).max(0.0))
            .sum();
        if both <= 0.0 || one <= 0.0 {
            break;
        }
        out.push(both / one);
        d += 1.0;
    }
    out
}

/// The Zipf start law of one size over every 1 MiB extent: each extent's rank probability spread
/// over its slots, and whatever lands past the size's last start slot piled on it (the
/// generator clips there).
pub fn zipf_pieces(
    disk: u64,
    align: u64,
    slots: u64,
    theta: f64,
    salt: u64,
) -> Vec<(u64, u64, f64)> {
    let n = (disk / MIB).max(1);
    let per = MIB / align;
    let mut p = vec![0.0; n as usize];
    for r in 0..n {
        p[zipf_extent(r, salt, n) as usize] += zipf_rank_probability(n, theta, r);
    }
    let last = slots - 1;
    let mut pieces = Vec::with_capacity(n as usize + 1);
    let mut clipped = 0.0;
    for (e, &pe) in p.iter().enumerate() {
        let a = e as u64 * per;
        let b = a + per;
        let d = pe / per as f64;
        if b <= last {
            pieces.push((a, b, d));
        } else if a < last {
            pieces.push((a, last, d));
            clipped += d * (b - last) as f64;
        } else {
            clipped += pe;
        }
    }
    pieces.push((last, last + 1, clipped));
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{Generator, SizeDist, WriteBatch};

    /// The law's touch probabilities against the generator's empirical frequencies.
    #[test]
    fn touch_matches_the_generator() {
        for locality in [
            Locality::Uniform,
            Locality::HotSpot {
                hot_fraction: 0.05,
                hot_share: 0.8,
            },
            Locality::Zipf { theta: 0.9 },
        ] {
            let spec = WorkloadSpec {
                iops: 2000.0,
                read_fraction: 0.25,
                sizes: SizeDist::typical(),
                locality: locality.clone(),
                diurnal: None,
                growth_per_day: 0.0,
                daily_change: None,
            };
            let disk = 64 * MIB + 12288;
            let g = Generator::new(spec.clone(), disk, 3).unwrap();
            let law = WriteLaw::of(&spec, &g.placement()).unwrap();
            let mut b = WriteBatch::default();
            let reads = g.generate(0.0, 200.0, &mut b);
            let ops = (b.len() as u64 + reads.reads) as f64;
            // Ranges: 16 KiB units at a few places, and 2 MiB ones.
            let h = (g.placement().sizes[0].base * 4096) & !16383;
            for (lo, len) in [
                (0, 16384),
                (h, 16384),
                (h + 65536, 16384),
                (disk - 16384, 16384),
                (5 * MIB, 2 * MIB),
            ] {
                let hi = lo + len;
                let hits = b
                    .offsets
                    .iter()
                    .zip(&b.lengths)
                    .filter(|&(&o, &l)| o < hi && o + u64::from(l) > lo)
                    .count() as f64;
                let p = law.touch(lo, hi);
                let sd = (ops * p * (1.0 - p)).sqrt();
                assert!(
                    (hits - ops * p).abs() < 5.0 * sd + 3.0,
                    "{locality:?} [{lo}, {hi}): {hits} vs {}",
                    ops * p
                );
            }
        }
    }
}
