//! Sets of simulated time: the windows a VM's guest ran through, cut to an epoch.

/// Disjoint half-open intervals `[a, b)` of seconds, ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Intervals(Vec<(f64, f64)>);

impl Intervals {
    pub fn new() -> Self {
        Intervals(Vec::new())
    }

    /// One interval (empty when `b <= a`).
    pub fn span(a: f64, b: f64) -> Self {
        let mut s = Intervals::new();
        s.add(a, b);
        s
    }

    pub fn as_slice(&self) -> &[(f64, f64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total length in seconds.
    pub fn length(&self) -> f64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    /// Adds `[a, b)`, merging with what it touches or overlaps.
    pub fn add(&mut self, a: f64, b: f64) {
        if b.partial_cmp(&a) != Some(std::cmp::Ordering::Greater) {
            return;
        }
        // Windows usually arrive in time order: extend the last one.
        if let Some(last) = self.0.last_mut() {
            if a >= last.0 && a <= last.1 {
                last.1 = last.1.max(b);
                return;
            }
            if a > last.1 {
                self.0.push((a, b));
                return;
            }
        } else {
            self.0.push((a, b));
            return;
        }
        let mut lo = a;
        let mut hi = b;
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(x, y) in &self.0 {
            if y < lo || x > hi {
                kept.push((x, y));
            } else {
                lo = lo.min(x);
                hi = hi.max(y);
            }
        }
        kept.push((lo, hi));
        kept.sort_by(|p, q| p.0.total_cmp(&q.0));
        self.0 = kept;
    }

    /// The part of the set inside `[a, b)`.
    pub fn within(&self, a: f64, b: f64) -> Intervals {
        Intervals(self.clipped(a, b).collect())
    }

    /// The intervals of [`within`](Self::within), without making the set.
    pub fn clipped(&self, a: f64, b: f64) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.0
            .iter()
            .map(move |&(x, y)| (x.max(a), y.min(b)))
            .filter(|(lo, hi)| hi > lo)
    }

    /// The first instant of the set, if any.
    pub fn start(&self) -> Option<f64> {
        self.0.first().map(|p| p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_cuts() {
        let mut s = Intervals::new();
        s.add(0.0, 1.0);
        s.add(1.0, 2.5);
        s.add(4.0, 5.0);
        s.add(2.0, 4.5);
        assert_eq!(s.as_slice(), &[(0.0, 5.0)]);
        s.add(7.0, 8.0);
        s.add(6.0, 6.5);
        assert_eq!(s.as_slice(), &[(0.0, 5.0), (6.0, 6.5), (7.0, 8.0)]);
        assert_eq!(
            s.within(4.0, 7.5).as_slice(),
            &[(4.0, 5.0), (6.0, 6.5), (7.0, 7.5)]
        );
        assert!((s.length() - 6.5).abs() < 1e-12);
        s.add(3.0, 3.0);
        assert_eq!(s.as_slice().len(), 3);
    }
}
