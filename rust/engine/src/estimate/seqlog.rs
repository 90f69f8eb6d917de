//! The sequential-log locality: writes follow a deterministic path, so a unit's chance of being
//! written is not one number per unit but a product along the path.
//!
//! How this works. Operation `i` of second `k` has the index `j = k·L + i` (`L` operations
//! numbers per second: the generator's `log_per_second`) and, if it is a write of size `s`,
//! starts at slot `base_s + (j · stride mod R_s)` — the same for every draw; only whether the
//! operation exists (`i < n_k`), falls in the time set, is a write and has size `s` is random,
//! independently per operation. For a unit (a byte range) and a size, the starts that reach the
//! unit are one slot interval, so the operations that can write it are, for each wrap `m` of the
//! circular log, one contiguous run of indices `j`; over all sizes the chance an operation `j`
//! writes the unit is `a_j (1 − ρ) W_j`, `W_j` the weight of the sizes whose run holds `j`, and
//!
//! ```text
//! P(unit untouched in T) = Π_j (1 − a_j (1 − ρ) W_j),
//! ```
//!
//! `a_j` the chance operation `j` exists in `T` (1 for the sure operations of a whole second,
//! `r − ⌊r⌋` for the extra one; a duplicate index when a second holds more than `L`
//! operations has two). `W_j` is constant on at most `2 · sizes` segments per wrap, and a
//! segment's product is evaluated second by second in closed form — exact, with no per-write
//! cost.
//!
//! Grouping. A flat rate makes the path periodic: shifting a unit by `Λ = stride · L` slots
//! shifts every run by `L` indices, one second, which has the same operations. So units come in
//! groups of one period; consecutive groups whose runs all lie inside (or outside) the time
//! set's whole seconds and inside the log region have the same values, and one group is
//! evaluated for the whole streak (a diurnal rate: every 32nd group, interpolated between —
//! the rate moves by under 0.1 % between them). A unit passed by many wraps is certainly
//! written: once a group's runs are fully inside `T` for more wraps than `saturation` (where the
//! largest per-wrap chance of escaping, raised to that power, is below 1e-12), it counts as
//! written without evaluation. The cost per VM and time set is thus bounded by the number of
//! boundaries of `T` and the saturation depth, not by the writes.

use std::collections::BTreeMap;

use super::exposure::RateCurve;
use super::intervals::Intervals;
use crate::workload::spec::{Placement, WorkloadSpec};

/// One request size of the log.
#[derive(Debug, Clone, Copy)]
struct LogSize {
    weight: f64,
    size: u64,
    base: u64,
    region: u64,
}

/// Where a log VM's writes go (from the generator's placement).
#[derive(Debug)]
pub struct LogLaw {
    /// Saturation depth per unit size (it depends only on the path and the unit).
    saturation: std::sync::Mutex<std::collections::HashMap<u64, usize>>,
    align: u64,
    write_share: f64,
    stride: u64,
    per_second: u64,
    sizes: Vec<LogSize>,
    curve: RateCurve,
}

/// The operations a time set holds, by index.
#[derive(Debug, Clone)]
pub struct OpSet {
    /// Whole seconds `[a, b)`.
    whole: Vec<(u64, u64)>,
    /// Partly covered seconds: each operation's chance of existing and lying in the set.
    partial: BTreeMap<u64, Vec<f64>>,
    /// Index span `[lo, hi)` holding every operation of the set.
    lo: u64,
    hi: u64,
}

impl Clone for LogLaw {
    fn clone(&self) -> Self {
        LogLaw {
            saturation: std::sync::Mutex::new(
                self.saturation
                    .lock()
                    .map(|m| m.clone())
                    .unwrap_or_default(),
            ),
            align: self.align,
            write_share: self.write_share,
            stride: self.stride,
            per_second: self.per_second,
            sizes: self.sizes.clone(),
            curve: self.curve,
        }
    }
}

impl LogLaw {
    pub fn of(spec: &WorkloadSpec, place: &Placement) -> LogLaw {
        LogLaw {
            saturation: std::sync::Mutex::new(std::collections::HashMap::new()),
            align: place.align,
            write_share: 1.0 - spec.read_fraction,
            stride: place.log_stride.max(1),
            per_second: place.log_per_second.max(1),
            sizes: place
                .sizes
                .iter()
                .map(|z| LogSize {
                    weight: z.weight,
                    size: z.size,
                    base: z.base,
                    region: z.region.max(1),
                })
                .collect(),
            curve: RateCurve::of(spec),
        }
    }

    /// Operation numbers per second (what [`LogLaw::ops`] depends on besides the curve).
    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// Slots `[first, end)` any write of the log can touch.
    pub fn span(&self) -> (u64, u64) {
        let first = self.sizes.iter().map(|z| z.base).min().unwrap_or(0);
        let end = self
            .sizes
            .iter()
            .map(|z| z.base + z.region + z.size.div_ceil(self.align))
            .max()
            .unwrap_or(0);
        (first, end)
    }

    /// The operations of `set`.
    pub fn ops(&self, set: &Intervals) -> OpSet {
        let l = self.per_second;
        let mut whole = Vec::new();
        let mut parts: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
        for &(a, b) in set.as_slice() {
            let ka = a.floor();
            let kb = b.floor();
            if ka == kb {
                parts.entry(ka as u64).or_default().push((a - ka, b - ka));
                continue;
            }
            let mut first = ka as u64;
            if a > ka {
                parts.entry(first).or_default().push((a - ka, 1.0));
                first += 1;
            }
            if b > kb {
                parts.entry(kb as u64).or_default().push((0.0, b - kb));
            }
            if kb as u64 > first {
                whole.push((first, kb as u64));
            }
        }
        let mut partial = BTreeMap::new();
        for (k, p) in parts {
            let (n0, f) = self.curve.second(k);
            let top = n0 + 1;
            let mut a = vec![0.0; top as usize];
            for (n, prob) in [(n0, 1.0 - f), (n0 + 1, f)] {
                if n == 0 || prob <= 0.0 {
                    continue;
                }
                let nf = n as f64;
                for (i, ai) in a.iter_mut().enumerate().take(n as usize) {
                    let lo = i as f64 / nf;
                    let hi = (i + 1) as f64 / nf;
                    let inside: f64 = p
                        .iter()
                        .map(|&(x, y)| (hi.min(y) - lo.max(x)).max(0.0))
                        .sum();
                    *ai += prob * inside * nf;
                }
            }
            partial.insert(k, a);
        }
        let seconds = whole
            .iter()
            .map(|w| (w.0, w.1))
            .chain(partial.keys().map(|&k| (k, k + 1)));
        let lo = seconds.clone().map(|s| s.0).min().unwrap_or(0) * l;
        // A second may hold up to twice its operation numbers (index overlap into the next).
        let hi = seconds.map(|s| s.1).max().unwrap_or(0) * l + 2 * l;
        OpSet {
            whole,
            partial,
            lo,
            hi,
        }
    }

    /// `Σ ln(1 − a_j x)` over the operations of `ops` with index in `[j1, j2)`.
    fn ln_sum(&self, ops: &OpSet, j1: u64, j2: u64, x: f64) -> f64 {
        if j2 <= j1 || x <= 0.0 {
            return 0.0;
        }
        let l = self.per_second;
        let l1 = (-x).ln_1p();
        let mut s = 0.0;
        // Seconds whose operations can carry indices in [j1, j2): k·L ≤ j < k·L + 2L.
        let k_first = (j1 / l).saturating_sub(1);
        let k_last = (j2 - 1) / l;
        for &(a, b) in &ops.whole {
            let from = a.max(k_first);
            let to = b.min(k_last + 1);
            for k in from..to {
                let (n0, f) = self.curve.second(k);
                let base = k * l;
                // Operation numbers i in [j1 − base, j2 − base) ∩ [0, n0] (n0: the maybe one).
                let i1 = j1.saturating_sub(base);
                let i2 = j2.saturating_sub(base);
                if i2 <= i1 {
                    continue;
                }
                let sure = i2.min(n0).saturating_sub(i1);
                s += sure as f64 * l1;
                if f > 0.0 && i1 <= n0 && n0 < i2 {
                    s += (-f * x).ln_1p();
                }
            }
        }
        for (&k, a) in ops.partial.range(k_first..=k_last) {
            let base = k * l;
            let i1 = j1.saturating_sub(base) as usize;
            let i2 = (j2.saturating_sub(base) as usize).min(a.len());
            for &ai in a.get(i1..i2).unwrap_or(&[]) {
                if ai > 0.0 {
                    s += (-ai * x).ln_1p();
                }
            }
        }
        s
    }

    /// Per size, the index runs (one per wrap) of the operations that can write bytes
    /// `[lo, hi)`, cut to `ops`' span: `(j1, j2, weight)`.
    fn runs(&self, ops: &OpSet, lo: u64, hi: u64, scratch: &mut Scratch) {
        let Scratch {
            runs: out,
            run_size,
            ..
        } = scratch;
        out.clear();
        run_size.clear();
        let a = self.align as i64;
        let st = self.stride as i64;
        for (zi, z) in self.sizes.iter().enumerate() {
            let x_lo = (lo as i64 - z.size as i64).div_euclid(a) + 1;
            let x_hi = (hi as i64 + a - 1).div_euclid(a);
            let r = z.region as i64;
            let y_a = (x_lo - z.base as i64).max(0);
            let y_b = (x_hi - z.base as i64).min(r);
            if y_b <= y_a {
                continue;
            }
            // j·stride ∈ [y_a + m R, y_b + m R).
            let span_lo = ops.lo as i64 * st;
            let span_hi = ops.hi as i64 * st;
            let m_first = ((span_lo - y_b).div_euclid(r)).max(0);
            let m_last = (span_hi - y_a).div_euclid(r);
            for m in m_first..=m_last {
                let j1 = (y_a + m * r + st - 1).div_euclid(st);
                let j2 = (y_b + m * r + st - 1).div_euclid(st);
                let j1 = (j1.max(ops.lo as i64)) as u64;
                let j2 = (j2.min(ops.hi as i64)).max(0) as u64;
                if j2 > j1 {
                    out.push((j1, j2, z.weight));
                    run_size.push(zi);
                }
            }
        }
    }

    /// `ln P(bytes [lo, hi) are not written by the operations of ops)`.
    pub fn log_untouched(&self, ops: &OpSet, lo: u64, hi: u64, scratch: &mut Scratch) -> f64 {
        self.runs(ops, lo, hi, scratch);
        if scratch.runs.is_empty() {
            return 0.0;
        }
        // Sweep the runs: W is constant between their ends.
        scratch.events.clear();
        for &(j1, j2, w) in &scratch.runs {
            scratch.events.push((j1, w));
            scratch.events.push((j2, -w));
        }
        scratch
            .events
            .sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        let mut acc = 0.0;
        let mut w: f64 = 0.0;
        let mut at = scratch.events[0].0;
        for &(j, dw) in &scratch.events {
            if j > at && w > 1e-12 {
                acc += self.ln_sum(ops, at, j, self.write_share * w.min(1.0));
                if acc < -60.0 {
                    return acc;
                }
            }
            at = j;
            w += dw;
        }
        acc
    }

    /// `ln P(none of the byte ranges is written by the operations of ops)`: an operation counts
    /// once however many of the ranges it reaches.
    pub fn log_untouched_union(
        &self,
        ops: &OpSet,
        ranges: &[(u64, u64)],
        scratch: &mut Scratch,
    ) -> f64 {
        // Per size, how many of the ranges' runs hold j: the op writes some range with the
        // weight of the sizes whose count is positive.
        let mut events: Vec<(u64, usize, i32)> = Vec::new();
        for &(lo, hi) in ranges {
            self.runs(ops, lo, hi, scratch);
            for (&(j1, j2, _), &zi) in scratch.runs.iter().zip(&scratch.run_size) {
                events.push((j1, zi, 1));
                events.push((j2, zi, -1));
            }
        }
        if events.is_empty() {
            return 0.0;
        }
        events.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.2.cmp(&y.2)));
        let mut count = vec![0i32; self.sizes.len()];
        let mut acc = 0.0;
        let mut at = events[0].0;
        for &(j, zi, d) in &events {
            if j > at {
                let w: f64 = count
                    .iter()
                    .zip(&self.sizes)
                    .filter(|(c, _)| **c > 0)
                    .map(|(_, z)| z.weight)
                    .sum();
                if w > 1e-12 {
                    acc += self.ln_sum(ops, at, j, self.write_share * w.min(1.0));
                    if acc < -60.0 {
                        return acc;
                    }
                }
                at = j;
            }
            count[zi] += d;
        }
        acc
    }

    /// Distances (in units of `unit` bytes) at which two units can share a write, sampled, with
    /// the number of distances each sample stands for.
    pub fn pair_distances(&self, unit: u64) -> Vec<(u64, f64)> {
        let reach = self
            .sizes
            .iter()
            .map(|z| z.size)
            .max()
            .unwrap_or(unit)
            .div_ceil(unit);
        let mut ds: Vec<u64> = Vec::new();
        let mut d = 1.0f64;
        while (d as u64) <= reach {
            let k = d as u64;
            if ds.last() != Some(&k) {
                ds.push(k);
            }
            d = (d * 2.0).max(d + 1.0);
        }
        // Trapezoid weights: each sample stands for the distances half-way to its neighbours.
        let mut out = Vec::with_capacity(ds.len());
        for (i, &k) in ds.iter().enumerate() {
            let lo = if i == 0 {
                1.0
            } else {
                (ds[i - 1] + k) as f64 / 2.0
            };
            let hi = ds
                .get(i + 1)
                .map_or(reach as f64 + 0.5, |&n| (k + n) as f64 / 2.0);
            out.push((k, (hi - lo).max(1.0)));
        }
        out
    }

    /// Whether bytes `[lo, hi)` have runs that all lie fully inside the set's whole seconds or
    /// fully outside it, away from any partial second, and how many wraps are fully inside.
    fn regular(&self, ops: &OpSet, lo: u64, hi: u64, scratch: &mut Scratch) -> Option<usize> {
        // Away from the log region's ends (where start windows are cut), for every size.
        let a = self.align as i64;
        for z in &self.sizes {
            let x_lo = (lo as i64 - z.size as i64).div_euclid(a) + 1;
            let x_hi = (hi as i64 + a - 1).div_euclid(a);
            if x_lo < z.base as i64 || x_hi > (z.base + z.region) as i64 {
                return None;
            }
        }
        self.runs(ops, lo, hi, scratch);
        let mut inside = usize::MAX;
        let mut per_size: Vec<usize> = vec![0; self.sizes.len()];
        let l = self.per_second;
        for (&(j1, j2, _), &zi) in scratch.runs.iter().zip(&scratch.run_size) {
            // Seconds whose operations can carry these indices.
            let k1 = (j1 / l).saturating_sub(1);
            let k2 = (j2 - 1) / l;
            let full = ops
                .whole
                .iter()
                .any(|&(a, b)| k1 >= a && k2 < b && j1 >= a * l + l);
            if full {
                per_size[zi] += 1;
                continue;
            }
            let touches_whole = ops.whole.iter().any(|&(a, b)| k1 < b && k2 >= a);
            let touches_partial = ops.partial.range(k1..=k2).next().is_some();
            if touches_whole || touches_partial {
                return None;
            }
        }
        for c in per_size {
            inside = inside.min(c);
        }
        Some(if inside == usize::MAX { 0 } else { inside })
    }

    /// The period of the path in slots.
    fn period_slots(&self) -> u64 {
        self.stride * self.per_second
    }

    /// Whether the rate is flat (the path's values repeat exactly every period).
    fn flat(&self) -> bool {
        self.curve.is_flat()
    }
}

/// Reused buffers.
#[derive(Default)]
pub struct Scratch {
    runs: Vec<(u64, u64, f64)>,
    /// The size each run belongs to.
    run_size: Vec<usize>,
    events: Vec<(u64, f64)>,
}

/// The per-unit untouched probabilities of the units of `unit` bytes that the log can reach,
/// for time set `ops`: `(first unit index, values)`; units outside have probability 1.
pub fn units_untouched(law: &LogLaw, ops: &OpSet, unit: u64, disk: u64) -> (u64, Vec<f64>) {
    walk(law, &[ops], ops, unit, disk, 1.0, 0.0, |k, scratch| {
        let lo = k * unit;
        let hi = ((k + 1) * unit).min(disk);
        law.log_untouched(ops, lo, hi, scratch).exp()
    })
}

/// Per unit reached, `g(unit)` evaluated as the grouping allows (see the module doc): units
/// whose runs in every set of `sets` repeat those of the evaluated unit one period before take
/// its value; units saturated in `sat` take `saturated`; units out of reach `outside`.
#[allow(clippy::too_many_arguments)]
pub fn walk(
    law: &LogLaw,
    sets: &[&OpSet],
    sat_set: &OpSet,
    unit: u64,
    disk: u64,
    outside: f64,
    saturated: f64,
    mut g: impl FnMut(u64, &mut Scratch) -> f64,
) -> (u64, Vec<f64>) {
    let (first_slot, end_slot) = law.span();
    let first = first_slot * law.align / unit;
    let end = (end_slot * law.align).min(disk).div_ceil(unit);
    let n = end.saturating_sub(first) as usize;
    let mut out = vec![outside; n];
    if n == 0
        || sets
            .iter()
            .all(|o| o.whole.is_empty() && o.partial.is_empty())
    {
        return (first, out);
    }
    let mut scratch = Scratch::default();
    let period_units = {
        let p = law.period_slots() * law.align;
        let g = gcd(p, unit);
        (p / g).max(1)
    };
    // Saturation: the most a unit escapes one wrap, from a sample of one period.
    let cached = law
        .saturation
        .lock()
        .ok()
        .and_then(|m| m.get(&unit).copied());
    let sat = match cached {
        Some(s) => s,
        None => {
            let s = saturation(law, sat_set, unit, first, end, &mut scratch);
            if let Ok(mut m) = law.saturation.lock() {
                m.insert(unit, s);
            }
            s
        }
    };
    let step = if law.flat() { u64::MAX } else { 32 };
    let mut k = first;
    // The last evaluated regular group: (start unit, wraps inside per set, values).
    let mut streak: Option<(u64, Vec<usize>, Vec<f64>)> = None;
    let mut pending: Vec<u64> = Vec::new();
    while k < end {
        let g_end = (k + period_units).min(end);
        let lo = k * unit;
        let hi = g_end * unit;
        let reg: Option<Vec<usize>> = if g_end - k == period_units {
            sets.iter()
                .map(|o| law.regular(o, lo, hi, &mut scratch))
                .collect()
        } else {
            None
        };
        let inside_sat = if g_end - k == period_units {
            law.regular(sat_set, lo, hi, &mut scratch)
        } else {
            None
        };
        match reg {
            Some(_) if inside_sat.is_some_and(|i| i >= sat) => {
                if let Some((_, _, ref vals)) = streak {
                    let v = vals.clone();
                    fill_pending(&mut out, first, &pending, &streak, &v, period_units);
                }
                pending.clear();
                for v in &mut out[(k - first) as usize..(g_end - first) as usize] {
                    *v = saturated;
                }
                streak = None;
            }
            Some(inside) => {
                let reuse = match &streak {
                    Some((start, ins, _)) => *ins == inside && (k - start) / period_units < step,
                    None => false,
                };
                if reuse {
                    pending.push(k);
                } else {
                    let vals: Vec<f64> = (k..g_end).map(|u| g(u, &mut scratch)).collect();
                    fill_pending(&mut out, first, &pending, &streak, &vals, period_units);
                    pending.clear();
                    out[(k - first) as usize..(g_end - first) as usize].copy_from_slice(&vals);
                    streak = Some((k, inside, vals));
                }
            }
            None => {
                if let Some((_, _, ref vals)) = streak {
                    let v = vals.clone();
                    fill_pending(&mut out, first, &pending, &streak, &v, period_units);
                }
                pending.clear();
                for u in k..g_end {
                    out[(u - first) as usize] = g(u, &mut scratch);
                }
                streak = None;
            }
        }
        k = g_end;
    }
    if let Some((_, _, ref vals)) = streak {
        let v = vals.clone();
        fill_pending(&mut out, first, &pending, &streak, &v, period_units);
    }
    (first, out)
}

/// Per unit reached, its first-written indicator's variance plus twice its covariance with the
/// units after it (a pair sum over the sampled distances), for the epoch sets `lo = [τ, t0)`,
/// `hi = [τ, t1)`, `win = [t0, t1)`: summed over units (each weighted by `weight(unit)²`),
/// the variance of the count of units first written in the window. Exact pair probabilities:
/// `E[F_u F_v] = P_lo(u, v untouched)·(1 − s_win(u) − s_win(v)) + P_hi(u, v untouched)`.
pub fn units_first_written_var(
    law: &LogLaw,
    lo: &OpSet,
    hi: &OpSet,
    win: &OpSet,
    unit: u64,
    disk: u64,
) -> (u64, Vec<f64>) {
    let ds = law.pair_distances(unit);
    let range = |k: u64| (k * unit, ((k + 1) * unit).min(disk));
    let mut memo: std::collections::HashMap<u64, (f64, f64, f64)> =
        std::collections::HashMap::new();
    // The variance needs no exact sum: one unit in `every` (a prime, so every phase of the
    // path's period is met) stands for its neighbours.
    let every: u64 = if unit < 65536 {
        7
    } else if unit < 1 << 20 {
        3
    } else {
        1
    };
    // Units certainly written before the window (lo) are never first written in it; with no
    // epoch before the window, units certainly written in it (hi) always are: either way
    // their indicator is constant.
    let lo_empty = lo.whole.is_empty() && lo.partial.is_empty();
    let sat_set = if lo_empty { hi } else { lo };
    walk(
        law,
        &[lo, hi, win],
        sat_set,
        unit,
        disk,
        0.0,
        0.0,
        |k, scratch| {
            if k % every != 0 {
                return 0.0;
            }
            let mut single = |k: u64, sc: &mut Scratch| {
                *memo.entry(k).or_insert_with(|| {
                    let (a, b) = range(k);
                    (
                        law.log_untouched(lo, a, b, sc).exp(),
                        law.log_untouched(hi, a, b, sc).exp(),
                        law.log_untouched(win, a, b, sc).exp(),
                    )
                })
            };
            let (l_u, h_u, w_u) = single(k, scratch);
            let p_u = (l_u - h_u).max(0.0);
            let mut v = p_u * (1.0 - p_u);
            if p_u <= 1e-12 {
                return v;
            }
            for &(d, weight) in &ds {
                let m = k + d;
                if m * unit >= disk {
                    break;
                }
                let (l_v, h_v, w_v) = single(m, scratch);
                let p_v = (l_v - h_v).max(0.0);
                if p_v <= 1e-12 {
                    continue;
                }
                let both = [range(k), range(m)];
                let pl = law.log_untouched_union(lo, &both, scratch).exp();
                let ph = law.log_untouched_union(hi, &both, scratch).exp();
                let e = pl * (1.0 - w_u - w_v) + ph;
                v += 2.0 * weight * (e - p_u * p_v);
            }
            v * every as f64
        },
    )
}

/// Groups of a streak between two evaluated ones: the earlier values (a flat rate repeats
/// them exactly), or a linear blend toward the later ones (a diurnal rate).
fn fill_pending(
    out: &mut [f64],
    first: u64,
    pending: &[u64],
    streak: &Option<(u64, Vec<usize>, Vec<f64>)>,
    next: &[f64],
    period: u64,
) {
    let Some((start, _, prev)) = streak else {
        return;
    };
    let span = pending.last().map_or(1, |&l| l + period - start) as f64;
    for &g in pending {
        let t = (g - start) as f64 / span;
        for (i, (a, b)) in prev.iter().zip(next).enumerate() {
            if let Some(o) = out.get_mut((g - first) as usize + i) {
                *o = a * (1.0 - t) + b * t;
            }
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Wraps after which every unit is written except with probability < 1e-12: from the units of
/// one period in the middle of the log, the largest chance of escaping one wrap.
fn saturation(
    law: &LogLaw,
    _ops: &OpSet,
    unit: u64,
    first: u64,
    end: u64,
    scratch: &mut Scratch,
) -> usize {
    // One wrap of a flat-rate path over a period of units, at the maximal rate of the curve.
    let l = law.per_second;
    let one = law.ops(&Intervals::span(
        0.0,
        1e9_f64.min(((law.sizes[0].region / law.stride) / l + 4) as f64 * 4.0),
    ));
    let _ = l;
    let mid = first + (end - first) / 2;
    let period = {
        let p = law.period_slots() * law.align;
        (p / gcd(p, unit)).max(1)
    };
    let mut worst: f64 = 0.0;
    for k in mid..(mid + period).min(end) {
        let lo = k * unit;
        let hi = lo + unit;
        // Runs of the first wrap only.
        law.runs(&one, lo, hi, scratch);
        let first_wrap: Vec<(u64, u64, f64)> = {
            let min_j = scratch.runs.iter().map(|r| r.0).min().unwrap_or(0);
            let reach = law.sizes.iter().map(|z| z.region).max().unwrap_or(1) / law.stride;
            scratch
                .runs
                .iter()
                .filter(|r| r.0 < min_j + reach / 2)
                .copied()
                .collect()
        };
        let mut events: Vec<(u64, f64)> = Vec::new();
        for &(j1, j2, w) in &first_wrap {
            events.push((j1, w));
            events.push((j2, -w));
        }
        events.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
        let mut acc = 0.0;
        let mut w: f64 = 0.0;
        let mut at = events.first().map_or(0, |e| e.0);
        for &(j, dw) in &events {
            if j > at && w > 1e-12 {
                acc += law.ln_sum(&one, at, j, law.write_share * w.min(1.0));
            }
            at = j;
            w += dw;
        }
        worst = worst.max(acc.exp());
    }
    if worst <= 0.0 {
        return 1;
    }
    if worst >= 1.0 - 1e-9 {
        return usize::MAX;
    }
    ((1e-12f64).ln() / worst.ln()).ceil().max(1.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{Generator, Locality, SizeDist, WriteBatch};

    fn spec(iops: f64) -> WorkloadSpec {
        WorkloadSpec {
            iops,
            read_fraction: 0.3,
            sizes: SizeDist::typical(),
            locality: Locality::SequentialLog {
                region_fraction: 0.02,
            },
            diurnal: None,
            growth_per_day: 0.0,
            daily_change: None,
        }
    }

    /// Each unit's untouched probability against its frequency over many streams whose logs
    /// sit at the same place relative to the unit grid (the path relative to the log's base is
    /// the same for every seed).
    #[test]
    fn untouched_matches_the_generator() {
        let disk = 1u64 << 30;
        let unit = 16384u64;
        for (iops, (t0, t1)) in [(37.3, (3.4, 95.7)), (12.0, (0.0, 400.0))] {
            let s = spec(iops);
            let want = if cfg!(debug_assertions) { 40 } else { 300 };
            let mut reference: Option<(u64, Vec<f64>)> = None;
            let mut counts: Vec<f64> = Vec::new();
            let mut used = 0.0;
            let (mut est_total, mut exact_total, mut exact_sq, mut n) = (0.0, 0.0, 0.0, 0.0);
            for seed in 0..20_000u64 {
                let g = Generator::new(s.clone(), disk, seed).unwrap();
                let place = g.placement();
                let base = place.sizes[0].base;
                let law = LogLaw::of(&s, &place);
                let ops = law.ops(&Intervals::span(t0, t1));
                let mut b = WriteBatch::default();
                g.generate(t0, t1, &mut b);
                let mut touched = std::collections::HashSet::new();
                for (&o, &l) in b.offsets.iter().zip(&b.lengths) {
                    for u in o / unit..=(o + u64::from(l) - 1) / unit {
                        touched.insert(u);
                    }
                }
                if n < want as f64 {
                    let (_, vals) = units_untouched(&law, &ops, unit, disk);
                    est_total += vals.iter().map(|v| 1.0 - v).sum::<f64>();
                    exact_total += touched.len() as f64;
                    exact_sq += (touched.len() as f64).powi(2);
                    n += 1.0;
                }
                // Per unit: streams whose base has the reference's place in the unit grid.
                let rel = base % (unit / 4096);
                match &reference {
                    None if rel == 0 => {
                        let (first, vals) = units_untouched(&law, &ops, unit, disk);
                        counts = vec![0.0; vals.len()];
                        reference = Some((first * unit / 4096 - base, vals));
                    }
                    _ => {}
                }
                if let Some((offset, vals)) = &reference {
                    if rel == 0 && used < want as f64 {
                        let first = (base + offset) * 4096 / unit;
                        for (i, c) in counts.iter_mut().enumerate() {
                            if !touched.contains(&(first + i as u64)) {
                                *c += 1.0;
                            }
                        }
                        used += 1.0;
                        let _ = vals;
                    }
                }
                if used >= want as f64 && n >= want as f64 {
                    break;
                }
            }
            let mean = exact_total / n;
            let se = ((exact_sq / n - mean * mean) / n).sqrt();
            let est = est_total / n;
            assert!(
                (est - mean).abs() < 4.0 * se + 1e-9,
                "{iops}: touched {est} vs {mean} ± {se}"
            );
            let (_, vals) = reference.unwrap();
            let mut worst: f64 = 0.0;
            for (c, v) in counts.iter().zip(&vals) {
                let f = c / used;
                let sd = (v * (1.0 - v) / used).sqrt();
                worst = worst.max((f - v).abs() / (sd + 0.5 / used));
            }
            assert!(worst < 5.0, "{iops}: per-unit frequencies off by {worst} σ");
        }
    }
}

#[cfg(test)]
mod grouping_tests {
    use super::*;
    use crate::workload::spec::{Diurnal, Generator, Locality, SizeDist};

    /// Grouped evaluation against unit-by-unit: equal for a flat rate, within 0.1 % in total
    /// for a diurnal one.
    #[test]
    fn groups_equal_unit_by_unit() {
        let disk = 1u64 << 30;
        let unit = 16384u64;
        let diurnal = Some(Diurnal {
            amplitude: 0.7,
            period_s: 300.0,
            peak_s: 20.0,
        });
        for (iops, (t0, t1), d) in [
            (12.0, (0.0, 400.0), None),
            (37.3, (3.4, 95.7), None),
            (25.5, (1.5, 900.0), diurnal),
        ] {
            let s = WorkloadSpec {
                iops,
                read_fraction: 0.3,
                sizes: SizeDist::typical(),
                locality: Locality::SequentialLog {
                    region_fraction: 0.02,
                },
                diurnal: d,
                growth_per_day: 0.0,
                daily_change: None,
            };
            let g = Generator::new(s.clone(), disk, 3).unwrap();
            let law = LogLaw::of(&s, &g.placement());
            let ops = law.ops(&Intervals::span(t0, t1));
            let (first, vals) = units_untouched(&law, &ops, unit, disk);
            let mut sc = Scratch::default();
            let (mut a, mut b) = (0.0, 0.0);
            for (i, v) in vals.iter().enumerate() {
                let k = first + i as u64;
                let e = law
                    .log_untouched(&ops, k * unit, (k + 1) * unit, &mut sc)
                    .exp();
                if d.is_none() {
                    assert!((e - v).abs() < 1e-9, "{iops}: unit {i}: {v} vs {e}");
                }
                a += 1.0 - v;
                b += 1.0 - e;
            }
            assert!((a - b).abs() < 1e-3 * b, "{iops}: {a} vs {b}");
        }
    }
}
