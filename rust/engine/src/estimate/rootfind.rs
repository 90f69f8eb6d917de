//! Brent's method for the instant a monotone expected curve (the diff area) reaches a level.

/// The first instant in `[a, b]` where `f` reaches 0, for `f(a) ≤ 0 < f(b)` and `f`
/// increasing: a bracket kept around the root and shrunk by the Illinois variant of regula falsi
/// (superlinear on smooth curves), bisecting whenever a step would not halve it, to within
/// `tol`. Returns the upper end (where the level is reached: the per-write engine deletes at the
/// write that would overflow).
pub fn brent(mut f: impl FnMut(f64) -> f64, a: f64, b: f64, tol: f64) -> f64 {
    let (mut lo, mut hi) = (a, b);
    let (mut flo, mut fhi) = (f(lo), f(hi));
    if flo > 0.0 {
        return lo;
    }
    if fhi <= 0.0 {
        return hi;
    }
    let mut side = 0i8;
    for _ in 0..200 {
        if hi - lo <= tol {
            break;
        }
        let width = hi - lo;
        let mut x = hi - fhi * (hi - lo) / (fhi - flo);
        if !(x > lo && x < hi) {
            x = 0.5 * (lo + hi);
        }
        let fx = f(x);
        if fx > 0.0 {
            hi = x;
            fhi = fx;
            if side == 1 {
                flo *= 0.5;
            }
            side = 1;
        } else {
            lo = x;
            flo = fx;
            if side == -1 {
                fhi *= 0.5;
            }
            side = -1;
        }
        if hi - lo > 0.5 * width {
            // A slow step: bisect once.
            let m = 0.5 * (lo + hi);
            let fm = f(m);
            if fm > 0.0 {
                hi = m;
                fhi = fm;
            } else {
                lo = m;
                flo = fm;
            }
            side = 0;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_crossings() {
        let r = brent(|t| (t * 0.01).exp() - 3.0, 0.0, 500.0, 1e-9);
        assert!((r - 3.0_f64.ln() * 100.0).abs() < 1e-6, "{r}");
        let mut calls = 0;
        let r = brent(
            |t| {
                calls += 1;
                (t - 7.25).min(1.0)
            },
            0.0,
            100.0,
            1e-9,
        );
        assert!((r - 7.25).abs() < 1e-8 && calls < 100, "{r} {calls}");
        assert_eq!(brent(|t| t, 1.0, 2.0, 1e-9), 1.0);
    }
}
