//! How many operations a set of time intervals holds — as a law, not a count.
//!
//! How this works. The generator (`workload::spec::Generator::generate`) gives second `k`
//! `n_k = ⌊r_k⌋ + Bernoulli(r_k − ⌊r_k⌋)` operations, `r_k` the rate at `k + 0.5`, each with its
//! own draws, operation `i` at a uniform time in its stratum `k + [i, i + 1) / n_k`. Everything
//! an operation does (read or write, size, offset) is independent of the others. So for any set
//! `U` of units that one operation touches with probability `q`, the chance that *no* operation
//! of a set of intervals `T` touches `U` is
//!
//! ```text
//! ψ_T(q) = E[(1 − q)^N_T] = Π_k E[Π_i (1 − π_ki q)]
//! ```
//!
//! with `π_ki` the chance that operation `i` of second `k` lies in `T` (1 for a second wholly
//! inside; `n · |stratum ∩ T|` in a second `T` only partly covers). An [`Exposure`] holds
//! `L_T(q) = ln ψ_T(q)` in closed form: `sure · ln(1 − q)` for the operations that certainly
//! happen, plus a power series `Σ c_m q^m` for the Bernoulli operations of whole seconds
//! (`c_m = −Σ_k f_k^m / m`) and the partly covered seconds (their mixture over `n`, expanded with
//! exact series arithmetic). The series is exact to `1e-15` relative for `q ≤ 0.5` (the number of
//! terms is picked from `q`); above, `L` is evaluated term by term from the seconds themselves.
//! Nothing here depends on how many operations there are: a flat rate costs O(1) to build, a
//! diurnal curve O(seconds) once per exposure, and every evaluation O(terms).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use super::intervals::Intervals;
use crate::workload::spec::{rate_at, Diurnal, WorkloadSpec};

/// Series terms kept (enough for `q ≤ 0.5` to 1e-15).
const TERMS: usize = 48;
/// Above this, `L` is evaluated exactly, second by second.
const SERIES_LIMIT: f64 = 0.5;
/// Below this `L`, `exp(L)` is 0 in f64.
const UNDERFLOW: f64 = -746.0;
/// Seconds per block of a curve's running sums ([`CurveSums`]).
const SUM_BLOCK: u64 = 16;
/// Running sums of one second's figures: sure operations, mean, variance, `Σ f^m` (m ≥ 1).
type SecondSums = [f64; TERMS + 3];

/// A varying rate's per-second figures summed from second 0 at every [`SUM_BLOCK`]-th second,
/// grown as later seconds are asked for and shared by every exposure of the curve: a set's
/// whole seconds then cost two block lookups and at most `2 × SUM_BLOCK` seconds each, not a
/// pass over its seconds. (The sums are the same per-second terms added in another order.)
struct CurveSums {
    curve: RateCurve,
    /// `at[i]`: the sums over seconds `[0, i × SUM_BLOCK)`.
    at: Vec<SecondSums>,
}

fn second_terms(curve: &RateCurve, k: u64, out: &mut SecondSums) {
    let (n0, f) = curve.second(k);
    out[0] += n0 as f64;
    out[1] += n0 as f64 + f;
    out[2] += f * (1.0 - f);
    let mut fm = f;
    for x in out.iter_mut().skip(3) {
        *x += fm;
        fm *= f;
    }
}

impl CurveSums {
    /// The sums over seconds `[0, k)`.
    fn upto(&mut self, k: u64) -> SecondSums {
        let block = (k / SUM_BLOCK) as usize;
        while self.at.len() <= block {
            let i = self.at.len() as u64 - 1;
            let mut next = self.at[self.at.len() - 1];
            for s in i * SUM_BLOCK..(i + 1) * SUM_BLOCK {
                second_terms(&self.curve, s, &mut next);
            }
            self.at.push(next);
        }
        let mut out = self.at[block];
        for s in block as u64 * SUM_BLOCK..k {
            second_terms(&self.curve, s, &mut out);
        }
        out
    }

    /// The sums over whole seconds `ranges`, from the shared running sums of `curve`.
    fn over(curve: RateCurve, ranges: &[(u64, u64)]) -> SecondSums {
        type Cache = Mutex<HashMap<[u64; 4], Arc<Mutex<CurveSums>>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let key = match curve.diurnal {
            Some(d) => [
                curve.iops.to_bits(),
                d.amplitude.to_bits(),
                d.period_s.to_bits(),
                d.peak_s.to_bits(),
            ],
            None => [curve.iops.to_bits(), 0, 0, 0],
        };
        let sums = {
            let mut map = CACHE
                .get_or_init(|| Mutex::new(HashMap::new()))
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if map.len() > 256 {
                map.clear();
            }
            map.entry(key)
                .or_insert_with(|| {
                    Arc::new(Mutex::new(CurveSums {
                        curve,
                        at: vec![[0.0; TERMS + 3]],
                    }))
                })
                .clone()
        };
        let mut sums = sums.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = [0.0; TERMS + 3];
        for &(a, b) in ranges {
            let (lo, hi) = (sums.upto(a), sums.upto(b));
            for ((o, h), l) in out.iter_mut().zip(hi).zip(lo) {
                *o += h - l;
            }
        }
        out
    }
}

/// A workload's operation rate over time, as the generator reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateCurve {
    pub iops: f64,
    pub diurnal: Option<Diurnal>,
}

impl RateCurve {
    pub fn of(spec: &WorkloadSpec) -> Self {
        RateCurve {
            iops: spec.iops,
            diurnal: spec.diurnal,
        }
    }

    /// Second `k`'s rate (the generator's `rate_at(k + 0.5)`), split into its sure operations
    /// and the probability of one more.
    #[inline]
    pub fn second(&self, k: u64) -> (u64, f64) {
        let r = rate_at(self.iops, self.diurnal, k as f64 + 0.5);
        let whole = r.floor();
        (whole as u64, r - whole)
    }

    pub fn is_flat(&self) -> bool {
        self.diurnal.is_none()
    }
}

/// One of a partly covered second's two cases (`n = ⌊r⌋` or `⌊r⌋ + 1` operations).
#[derive(Debug, Clone, Default)]
struct Case {
    prob: f64,
    /// Operations wholly inside the set, beyond those counted in `Exposure::sure`.
    extra_full: u64,
    /// Inclusion probabilities of the operations the set cuts.
    cut: Vec<f64>,
}

/// What the whole seconds of the set are, for the exact path.
#[derive(Debug, Clone)]
enum Whole {
    /// `seconds` seconds with the same probability `f` of one more operation.
    Flat { seconds: f64, f: f64 },
    /// Whole seconds `[a, b)` of a varying rate.
    Curve { ranges: Vec<(u64, u64)> },
}

/// The law of the number of operations a set of time intervals holds (see the module doc).
#[derive(Debug, Clone)]
pub struct Exposure {
    curve: RateCurve,
    /// Operations that certainly happen.
    sure: f64,
    /// `L(q) − sure · ln(1 − q) = Σ coef[m] q^m` (coef[0] = 0).
    coef: Vec<f64>,
    whole: Whole,
    /// Partly covered seconds: their two cases.
    partials: Vec<[Case; 2]>,
    mean: f64,
    var: f64,
}

/// Power-series helpers: `a[0] + a[1] q + …`, truncated to `TERMS + 1` coefficients.
mod series {
    use super::TERMS;

    /// `ln(1 − p q)`.
    pub fn log1m(p: f64, out: &mut [f64]) {
        let mut pm = p;
        for (m, o) in out.iter_mut().enumerate().skip(1) {
            *o -= pm / m as f64;
            pm *= p;
        }
    }

    /// `exp(a)` for `a[0] = 0`.
    pub fn exp(a: &[f64]) -> Vec<f64> {
        let mut b = vec![0.0; TERMS + 1];
        b[0] = 1.0;
        for n in 1..=TERMS {
            let mut s = 0.0;
            for k in 1..=n {
                s += k as f64 * a[k] * b[n - k];
            }
            b[n] = s / n as f64;
        }
        b
    }

    /// `ln(b)` for `b[0] = 1`.
    pub fn ln(b: &[f64]) -> Vec<f64> {
        let mut a = vec![0.0; TERMS + 1];
        for n in 1..=TERMS {
            let mut s = 0.0;
            for k in 1..n {
                s += k as f64 * a[k] * b[n - k];
            }
            a[n] = b[n] - s / n as f64;
        }
        a
    }
}

impl Exposure {
    /// The exposure of `set` to a workload of rate `curve`.
    pub fn build(curve: RateCurve, set: &Intervals) -> Exposure {
        let mut cuts: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &(a, b) in set.as_slice() {
            let (a, b) = (a.max(0.0), b.max(0.0));
            if b <= a {
                continue;
            }
            let ka = a.floor();
            let kb = b.floor();
            if ka == kb {
                cuts.entry(ka as u64).or_default().push((a - ka, b - ka));
                continue;
            }
            let mut first = ka as u64;
            if a > ka {
                cuts.entry(first).or_default().push((a - ka, 1.0));
                first += 1;
            }
            if b > kb {
                cuts.entry(kb as u64).or_default().push((0.0, b - kb));
            }
            if (kb as u64) > first {
                ranges.push((first, kb as u64));
            }
        }
        let mut e = Exposure {
            curve,
            sure: 0.0,
            coef: vec![0.0; TERMS + 1],
            whole: Whole::Flat {
                seconds: 0.0,
                f: 0.0,
            },
            partials: Vec::new(),
            mean: 0.0,
            var: 0.0,
        };
        e.add_whole(&ranges);
        for (k, parts) in cuts {
            e.add_partial(k, &parts);
        }
        e
    }

    fn add_whole(&mut self, ranges: &[(u64, u64)]) {
        if self.curve.is_flat() {
            let seconds: u64 = ranges.iter().map(|(a, b)| b - a).sum();
            let (n0, f) = self.curve.second(0);
            let s = seconds as f64;
            self.sure += s * n0 as f64;
            let mut fm = f;
            for m in 1..=TERMS {
                self.coef[m] -= s * fm / m as f64;
                fm *= f;
            }
            self.mean += s * (n0 as f64 + f);
            self.var += s * f * (1.0 - f);
            self.whole = Whole::Flat { seconds: s, f };
        } else {
            let sums = CurveSums::over(self.curve, ranges);
            self.sure += sums[0];
            self.mean += sums[1];
            self.var += sums[2];
            for (m, s) in sums.iter().skip(3).enumerate() {
                self.coef[m + 1] -= s / (m + 1) as f64;
            }
            self.whole = Whole::Curve {
                ranges: ranges.to_vec(),
            };
        }
    }

    /// Second `k`, of which the set covers the relative parts `parts` of `[0, 1)`.
    fn add_partial(&mut self, k: u64, parts: &[(f64, f64)]) {
        let (n0, f) = self.curve.second(k);
        let mut cases: [Case; 2] = Default::default();
        let mut fulls = [0u64; 2];
        for (c, (n, prob)) in [(n0, 1.0 - f), (n0 + 1, f)].into_iter().enumerate() {
            let mut inside: BTreeMap<u64, f64> = BTreeMap::new();
            let nf = n as f64;
            // Strata strictly between a part's first and last lie wholly inside it (parts are
            // disjoint, so no other part meets them): counted, not visited one by one.
            let mut full = 0u64;
            for &(a, b) in parts {
                if n == 0 {
                    break;
                }
                // Strata [i/n, (i+1)/n) the part meets, and how much of each (as a fraction of
                // the stratum: the operation's inclusion probability).
                let first = ((a * nf).floor() as u64).min(n - 1);
                let last = (((b * nf).ceil() as u64).max(first + 1)).min(n);
                let mut meet = |i: u64| {
                    let lo = (i as f64 / nf).max(a);
                    let hi = ((i + 1) as f64 / nf).min(b);
                    if hi > lo {
                        *inside.entry(i).or_insert(0.0) += (hi - lo) * nf;
                    }
                };
                if last - first <= 2 {
                    (first..last).for_each(&mut meet);
                } else {
                    meet(first);
                    meet(last - 1);
                    full += last - first - 2;
                }
            }
            let mut cut = Vec::new();
            for (_, p) in inside {
                if p >= 1.0 - 1e-12 {
                    full += 1;
                } else {
                    cut.push(p);
                }
            }
            fulls[c] = full;
            cases[c] = Case {
                prob,
                extra_full: full,
                cut,
            };
        }
        // Moments of the count in this second.
        let mut m1 = 0.0;
        let mut m2 = 0.0;
        for c in &cases {
            let mean = c.extra_full as f64 + c.cut.iter().sum::<f64>();
            let var: f64 = c.cut.iter().map(|p| p * (1.0 - p)).sum();
            m1 += c.prob * mean;
            m2 += c.prob * (var + mean * mean);
        }
        self.mean += m1;
        self.var += (m2 - m1 * m1).max(0.0);
        // The operations both cases hold for sure go to `sure`; the rest is a series.
        let common = if f > 0.0 {
            fulls[0].min(fulls[1])
        } else {
            fulls[0]
        };
        self.sure += common as f64;
        for c in cases.iter_mut() {
            c.extra_full -= common.min(c.extra_full);
        }
        let case_series = |c: &Case| {
            let mut s = vec![0.0; TERMS + 1];
            for _ in 0..c.extra_full {
                series::log1m(1.0, &mut s);
            }
            for &p in &c.cut {
                series::log1m(p, &mut s);
            }
            s
        };
        let s0 = case_series(&cases[0]);
        let total = if f > 0.0 {
            // ln((1 − f) e^s0 + f e^s1) = s0 + ln(1 − f + f e^(s1 − s0)).
            let s1 = case_series(&cases[1]);
            let delta: Vec<f64> = s1.iter().zip(&s0).map(|(a, b)| a - b).collect();
            let mut b = series::exp(&delta);
            for (n, x) in b.iter_mut().enumerate() {
                *x = if n == 0 { 1.0 } else { f * *x };
            }
            let lb = series::ln(&b);
            s0.iter().zip(&lb).map(|(a, b)| a + b).collect()
        } else {
            s0
        };
        for (c, t) in self.coef.iter_mut().zip(&total) {
            *c += t;
        }
        self.partials.push(cases);
    }

    /// Expected number of operations.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Variance of the number of operations.
    pub fn var(&self) -> f64 {
        self.var
    }

    /// `−L''(0)`: how far the count is from a Poisson one (`E[N] − Var[N]` for whole seconds);
    /// it sets the small negative correlation between far-apart units (see `moments`).
    pub fn curvature(&self) -> f64 {
        (self.sure - 2.0 * self.coef[2]).max(0.0)
    }

    /// Whether the set holds no operation at all.
    pub fn is_empty(&self) -> bool {
        self.mean <= 0.0
    }

    /// `L(q) = ln P(no operation touches a set one operation touches with probability q)`.
    #[inline]
    pub fn log_none(&self, q: f64) -> f64 {
        if q <= 0.0 || self.mean <= 0.0 {
            return 0.0;
        }
        let q = q.min(1.0);
        let sure = if self.sure > 0.0 {
            self.sure * (-q).ln_1p()
        } else {
            0.0
        };
        if q > SERIES_LIMIT {
            return sure + self.exact_rest(q);
        }
        let terms = if q < 1e-4 {
            4
        } else if q < 1e-3 {
            6
        } else if q < 1e-2 {
            9
        } else if q < 0.05 {
            14
        } else if q < 0.2 {
            25
        } else {
            TERMS
        };
        let mut acc = 0.0;
        for m in (1..=terms).rev() {
            acc = (acc + self.coef[m]) * q;
        }
        sure + acc
    }

    /// `ψ(q) = exp(L(q))`.
    #[inline]
    pub fn none(&self, q: f64) -> f64 {
        // The operations that certainly happen alone already make ψ 0 in f64 (the rest of L
        // only lowers it): no need to walk the seconds for it.
        if q > SERIES_LIMIT && self.sure * (-q.min(1.0)).ln_1p() < UNDERFLOW {
            return 0.0;
        }
        self.log_none(q).exp()
    }

    /// `L(q) − sure · ln(1 − q)`, term by term (for large `q`).
    fn exact_rest(&self, q: f64) -> f64 {
        let l1 = |p: f64| (-p * q).ln_1p();
        let mut s = match &self.whole {
            Whole::Flat { seconds, f } => seconds * l1(*f),
            Whole::Curve { ranges } => {
                let mut s = 0.0;
                for &(a, b) in ranges {
                    for k in a..b {
                        s += l1(self.curve.second(k).1);
                    }
                }
                s
            }
        };
        for cases in &self.partials {
            let case_log = |c: &Case| {
                let mut v = if c.extra_full > 0 {
                    c.extra_full as f64 * l1(1.0)
                } else {
                    0.0
                };
                for &p in &c.cut {
                    v += l1(p);
                }
                v
            };
            let mix: f64 = cases
                .iter()
                .filter(|c| c.prob > 0.0)
                .map(|c| c.prob * case_log(c).exp())
                .sum();
            s += mix.ln();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{Locality, SizeDist};

    fn spec(iops: f64, diurnal: Option<Diurnal>) -> WorkloadSpec {
        WorkloadSpec {
            iops,
            read_fraction: 0.0,
            sizes: SizeDist::typical(),
            locality: Locality::Uniform,
            diurnal,
            growth_per_day: 0.0,
            daily_change: None,
        }
    }

    /// `ψ(q)` straight from the definition: second by second, case by case, operation by
    /// operation.
    fn brute(curve: RateCurve, set: &Intervals, q: f64) -> (f64, f64) {
        let mut log = 0.0;
        let mut mean = 0.0;
        let end = set.as_slice().last().map_or(0.0, |p| p.1).ceil() as u64;
        for k in 0..end {
            let (n0, f) = curve.second(k);
            let mut mix = 0.0;
            let mut m = 0.0;
            for (n, p) in [(n0, 1.0 - f), (n0 + 1, f)] {
                let mut prod = 1.0;
                for i in 0..n {
                    let lo = k as f64 + i as f64 / n as f64;
                    let hi = k as f64 + (i + 1) as f64 / n as f64;
                    let inside: f64 = set
                        .as_slice()
                        .iter()
                        .map(|&(a, b)| (hi.min(b) - lo.max(a)).max(0.0))
                        .sum::<f64>()
                        * n as f64;
                    prod *= (1.0 - inside * q).max(0.0);
                    m += p * inside;
                }
                mix += p * prod;
            }
            log += mix.ln();
            mean += m;
        }
        (log, mean)
    }

    #[test]
    fn matches_the_definition() {
        let curves = [
            RateCurve::of(&spec(3.4, None)),
            RateCurve::of(&spec(0.3, None)),
            RateCurve::of(&spec(5.0, None)),
            RateCurve::of(&spec(
                7.7,
                Some(Diurnal {
                    amplitude: 0.8,
                    period_s: 40.0,
                    peak_s: 3.0,
                }),
            )),
        ];
        let sets = [
            Intervals::span(0.0, 30.0),
            Intervals::span(2.25, 17.6),
            Intervals::span(4.1, 4.7),
            {
                let mut s = Intervals::span(1.5, 3.2);
                s.add(3.4, 3.9);
                s.add(8.0, 20.5);
                s
            },
        ];
        for curve in curves {
            for set in &sets {
                let e = Exposure::build(curve, set);
                for q in [1e-7, 1e-3, 0.03, 0.3, 0.49, 0.7, 0.999, 1.0] {
                    let (want, mean) = brute(curve, set, q);
                    let got = e.log_none(q);
                    let tol = 1e-12 * want.abs().max(1.0);
                    assert!(
                        (got - want).abs() <= tol || (want.is_infinite() && got == want),
                        "{curve:?} {set:?} q={q}: {got} vs {want}"
                    );
                    assert!((e.mean() - mean).abs() < 1e-9 * mean.max(1.0));
                }
                // −L'(0) is the mean.
                let h = 1e-7;
                let slope = -e.log_none(h) / h;
                assert!((slope - e.mean()).abs() < 1e-4 * e.mean().max(1.0));
            }
        }
    }

    #[test]
    fn count_moments_match_the_generator() {
        use crate::workload::spec::{Generator, WriteBatch};
        let s = spec(
            9.37,
            Some(Diurnal {
                amplitude: 0.5,
                period_s: 600.0,
                peak_s: 100.0,
            }),
        );
        let (t0, t1) = (10.3, 400.8);
        let e = Exposure::build(RateCurve::of(&s), &Intervals::span(t0, t1));
        let mut counts = Vec::new();
        for seed in 0..200 {
            let g = Generator::new(s.clone(), 1 << 30, seed).unwrap();
            let mut b = WriteBatch::default();
            g.generate(t0, t1, &mut b);
            counts.push(b.len() as f64);
        }
        let n = counts.len() as f64;
        let mean = counts.iter().sum::<f64>() / n;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1.0);
        // The mean is within 4 standard errors; the variance of the right order (it is small:
        // only the Bernoulli operations vary).
        assert!(
            (mean - e.mean()).abs() < 4.0 * (e.var() / n).sqrt() + 1e-9,
            "{mean} {}",
            e.mean()
        );
        assert!(
            var < 2.0 * e.var() && var > 0.5 * e.var(),
            "{var} {}",
            e.var()
        );
    }
}
