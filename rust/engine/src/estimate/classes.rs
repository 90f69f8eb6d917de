//! Units of a disk (CSV chunks, change-tracking blocks, VHDX blocks) grouped by the chance one
//! operation writes them, so a sum over millions of units costs a few hundred terms.
//!
//! How this works. With a start law of constant pieces ([`WriteLaw`]), the chance a unit is
//! written, `q(j) = Σ_s w_s · mass_s[window_s(j)]`, is the same for every unit whose windows (the
//! start slots that reach it, `span + unit − 1` wide) hold no piece bound: such units form *clean
//! runs* of equal `q`, computed once per run. Only units within a window of a bound — about
//! `(max write + unit) / unit` per bound — are *edge units*, each computed exactly. Nothing is
//! approximated: the runs are exact, and their number grows with the number of bounds (three per
//! size for a hot spot), not with the disk.

use super::density::WriteLaw;

/// Units `first..first + count`, each written by one operation with probability `q`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub first: u64,
    pub count: u64,
    pub q: f64,
}

/// Units of `unit` bytes (a multiple of the law's slot) over a disk of `disk` bytes, as runs of
/// equal write probability, ascending and covering every unit.
pub fn unit_runs(law: &WriteLaw, unit: u64, disk: u64) -> Vec<Run> {
    let units = disk.div_ceil(unit);
    let u = (unit / law.align).max(1) as i64;
    // Units whose window (for some size) has a piece bound strictly inside.
    let mut dirty: Vec<(u64, u64)> = Vec::new();
    for (beta, span) in law.breakpoints() {
        let (b, c) = (beta as i64, span as i64);
        let lo = (b - u).div_euclid(u) + 1;
        let hi = (b + c - 1 + u - 1).div_euclid(u) - 1; // ⌈(β + c − 1) / U⌉ − 1
        let lo = lo.max(0);
        let hi = hi.min(units as i64 - 1);
        if hi >= lo {
            dirty.push((lo as u64, hi as u64 + 1));
        }
    }
    dirty.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in dirty {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let q_of = |j: u64| law.touch(j * unit, ((j + 1) * unit).min(disk));
    let mut runs = Vec::new();
    let mut next = 0u64;
    for (a, b) in merged {
        if a > next {
            runs.push(Run {
                first: next,
                count: a - next,
                q: q_of(next),
            });
        }
        for j in a..b {
            runs.push(Run {
                first: j,
                count: 1,
                q: q_of(j),
            });
        }
        next = b;
    }
    if next < units {
        runs.push(Run {
            first: next,
            count: units - next,
            q: q_of(next),
        });
    }
    // Neighbouring edge units of equal probability become one run.
    let mut out: Vec<Run> = Vec::with_capacity(runs.len());
    for r in runs {
        match out.last_mut() {
            Some(last) if last.q == r.q && last.first + last.count == r.first => {
                last.count += r.count
            }
            _ => out.push(r),
        }
    }
    out
}

/// The units of `runs` (of `unit` bytes) cut at the bounds of other runs (of `outer` bytes, a
/// multiple of `unit`): each piece is `(run of units, index of the outer run it lies in)`.
pub fn split_by(runs: &[Run], unit: u64, outer: &[Run], outer_unit: u64) -> Vec<(Run, usize)> {
    let per = outer_unit / unit;
    let mut out = Vec::new();
    let mut k = 0usize;
    for r in runs {
        let mut first = r.first;
        let end = r.first + r.count;
        while first < end {
            let outer_index = first / per;
            while k + 1 < outer.len() && outer[k].first + outer[k].count <= outer_index {
                k += 1;
            }
            while k > 0 && outer[k].first > outer_index {
                k -= 1;
            }
            let outer_end_units = (outer[k].first + outer[k].count) * per;
            let stop = end.min(outer_end_units.max(first + 1));
            out.push((
                Run {
                    first,
                    count: stop - first,
                    q: r.q,
                },
                k,
            ));
            first = stop;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{Generator, Locality, SizeDist, WorkloadSpec};

    fn law(locality: Locality, disk: u64) -> WriteLaw {
        let spec = WorkloadSpec {
            iops: 10.0,
            read_fraction: 0.3,
            sizes: SizeDist::typical(),
            locality,
            diurnal: None,
            growth_per_day: 0.0,
            daily_change: None,
        };
        let g = Generator::new(spec.clone(), disk, 17).unwrap();
        WriteLaw::of(&spec, &g.placement()).unwrap()
    }

    #[test]
    fn runs_equal_the_unit_by_unit_probabilities() {
        let disk = (48 << 20) + 8192;
        for locality in [
            Locality::Uniform,
            Locality::HotSpot {
                hot_fraction: 0.1,
                hot_share: 0.9,
            },
            Locality::Zipf { theta: 1.1 },
        ] {
            let l = law(locality.clone(), disk);
            for unit in [16384u64, 65536, 1 << 20] {
                let runs = unit_runs(&l, unit, disk);
                let mut j = 0;
                for r in &runs {
                    assert_eq!(r.first, j);
                    for k in r.first..r.first + r.count {
                        let want = l.touch(k * unit, ((k + 1) * unit).min(disk));
                        assert!(
                            (want - r.q).abs() <= 1e-12 * want,
                            "{locality:?} {unit} {k}: {want} vs {} (run {r:?})",
                            r.q
                        );
                    }
                    j += r.count;
                }
                assert_eq!(j, disk.div_ceil(unit));
                if matches!(locality, Locality::HotSpot { .. }) {
                    assert!(runs.len() < 400, "{}", runs.len());
                }
            }
        }
    }

    #[test]
    fn split_follows_outer_bounds() {
        let inner = [
            Run {
                first: 0,
                count: 10,
                q: 0.1,
            },
            Run {
                first: 10,
                count: 6,
                q: 0.2,
            },
        ];
        let outer = [
            Run {
                first: 0,
                count: 1,
                q: 1.0,
            },
            Run {
                first: 1,
                count: 2,
                q: 2.0,
            },
            Run {
                first: 3,
                count: 1,
                q: 3.0,
            },
        ];
        let got = split_by(&inner, 1, &outer, 4);
        let spans: Vec<(u64, u64, usize)> =
            got.iter().map(|(r, k)| (r.first, r.count, *k)).collect();
        assert_eq!(spans, vec![(0, 4, 0), (4, 6, 1), (10, 2, 1), (12, 4, 2)]);
    }
}
