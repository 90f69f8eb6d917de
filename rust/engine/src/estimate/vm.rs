//! One VM's expected counts, and their variances, from its profile and the exposures of the
//! time sets they concern.
//!
//! How this works. Every count is a sum of indicators over units: "unit `u` was first written
//! in `[t0, t1)` of the epoch that began at `τ`" is `1[untouched in [τ, t0)] − 1[untouched in
//! [τ, t1)]`, whose expectation is `ψ_[τ,t0)(q_u) − ψ_[τ,t1)(q_u)` exactly (see `exposure`). A
//! CSV chunk can only be copied when its VHDX block was allocated when the snapshot was taken:
//! for a block allocated at the start that is certain, otherwise it is `1 − ψ_[0,τ)(q_block)` —
//! the block's allocation and the chunk's write lie in disjoint time, so they are independent.
//! Means are exact sums over unit classes. Variances are second-order in the per-operation
//! probabilities: each unit's own Bernoulli variance; the positive covariance of neighbours one
//! write can touch together (`ψ(q_u + q_v − q_uv)`, with `q_uv` from the size mix); the small
//! negative covariance of far units through the operation count (`−κ q_u q_v …`, `κ = −L''(0)`);
//! and, for chunks of blocks not allocated at the start, the variance of the block's own
//! allocation times what the block's chunks contribute.
//!
//! Metadata (each term is a count of distinct CSV chunks written, like data):
//! - the two VHDX headers, rewritten at a session's first write and when the log is first used
//!   (the first allocating write): exact from the first-write and first-allocation laws;
//! - the log: one entry (8 KiB) per allocating write, at consecutive ring positions from the
//!   start of the session, so an interval's entries cover `⌈(phase + D) / k⌉` chunks (`k`
//!   entries per chunk, `D` allocations in the interval, `phase` the first one's place in its
//!   chunk); with blocks allocated independently, `E` of that follows from the generating
//!   functions of `D` and of the allocations before, evaluated at the `k`-th roots of unity;
//! - the BAT: a BAT chunk is written when one of the blocks it maps is allocated:
//!   `1 − Π_b (1 − P(b first allocated in the interval))`, blocks taken as independent.
//!
//! Stated approximations (besides the second-order variances): blocks are allocated
//! independently of each other for the log and BAT terms (the operation count couples them by
//! `O(q_b q_b' · Var N)`); a write that allocates two blocks writes one log entry, counted as two
//! (a share of allocations about `mean write / block size`: 0.1 % at 32 MiB blocks).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHasher;

use super::exposure::{Exposure, RateCurve};
use super::growth;
use super::intervals::Intervals;
use super::profile::{BlockClass, Profile, Touch, UnitSet};
use super::seqlog::{units_first_written_var, units_untouched, LogLaw, OpSet, Scratch};
use crate::workload::layout::DiskKind;

/// An expectation and its variance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Est {
    pub mean: f64,
    pub var: f64,
}

impl Est {
    pub fn new(mean: f64, var: f64) -> Self {
        Est {
            mean,
            var: var.max(0.0),
        }
    }

    /// `self − other` for the same quantity at a later time (the variance of the difference is
    /// not the difference of variances: callers computing increments use the increment's own).
    pub fn scale(self, k: f64) -> Est {
        Est::new(self.mean * k, self.var * k * k)
    }
}

impl std::ops::Add for Est {
    type Output = Est;
    fn add(self, o: Est) -> Est {
        Est::new(self.mean + o.mean, self.var + o.var)
    }
}

impl std::ops::AddAssign for Est {
    fn add_assign(&mut self, o: Est) {
        *self = *self + o;
    }
}

/// A time set as the touch models need it: the law of its operation count (every model), and
/// its operations by index (the sequential log). The law is built when first asked for (a
/// question about growth alone never needs it) and then shared by every copy.
#[derive(Debug, Clone)]
pub struct Times {
    curve: RateCurve,
    exposure: Arc<OnceLock<Exposure>>,
    pub ops: Option<Arc<OpSet>>,
    /// The set itself (the growth path's writes are the ones whose times lie in it).
    pub set: Arc<Intervals>,
}

impl Times {
    fn new(curve: RateCurve, set: Intervals, log: Option<&LogLaw>) -> Times {
        Times {
            curve,
            exposure: Arc::new(OnceLock::new()),
            ops: log.map(|l| Arc::new(l.ops(&set))),
            set: Arc::new(set),
        }
    }

    /// The law of the set's operation count.
    pub fn e(&self) -> &Exposure {
        self.exposure
            .get_or_init(|| Exposure::build(self.curve, &self.set))
    }
}

/// Time sets built once per (rate curve, set) and shared by every VM that has them.
///
/// A CSV keeps its cache from one window to the next: the sets a window ends with (`[0, t1)`,
/// `[τ, t1)`) are the ones the next window starts from (`[0, t0)`, `[τ, t0)`), and an epoch's
/// `[0, τ)` is the same in every window of it. [`ExposureCache::next_window`] forgets what the
/// window just ended did not use, so the cache holds about two windows' sets.
#[derive(Default)]
pub struct ExposureCache {
    map: HashMap<Box<[u64]>, (Times, u64), BuildHasherDefault<FxHasher>>,
    /// The current window's number (an entry's second field: the last window that used it).
    window: u64,
    /// The key being looked up (built here: a hit allocates nothing).
    key: Vec<u64>,
}

/// A cut of an activity set: its intervals inside `[a, b)`.
#[derive(Clone, Copy)]
pub struct Cut<'a> {
    pub active: &'a Intervals,
    pub a: f64,
    pub b: f64,
}

impl<'a> Cut<'a> {
    /// The whole set.
    pub fn whole(active: &'a Intervals) -> Self {
        Cut {
            active,
            a: f64::NEG_INFINITY,
            b: f64::INFINITY,
        }
    }

    fn set(self) -> Intervals {
        self.active.within(self.a, self.b)
    }
}

impl ExposureCache {
    fn build_key(&mut self, curve: RateCurve, cut: Cut<'_>, log: Option<&LogLaw>) {
        let key = &mut self.key;
        key.clear();
        key.push(curve.iops.to_bits());
        // The sequential log's operations by index depend on its own rate (`per_second`) as
        // well as the curve: two logs of one curve but other rates must not share them.
        key.push(log.map_or(0, |l| 1 + l.per_second()));
        if let Some(d) = curve.diurnal {
            key.extend([
                d.amplitude.to_bits(),
                d.period_s.to_bits(),
                d.peak_s.to_bits(),
            ]);
        }
        key.push(u64::MAX);
        for (a, b) in cut.active.clipped(cut.a, cut.b) {
            key.push(a.to_bits());
            key.push(b.to_bits());
        }
    }

    fn entry(&mut self, curve: RateCurve, cut: Cut<'_>, log: Option<&LogLaw>) -> Times {
        self.build_key(curve, cut, log);
        let window = self.window;
        if let Some(slot) = self.map.get_mut(self.key.as_slice()) {
            slot.1 = window;
            return slot.0.clone();
        }
        let times = Times::new(curve, cut.set(), log);
        self.map
            .insert(self.key.clone().into_boxed_slice(), (times.clone(), window));
        times
    }

    /// The time set `cut` alone (no touch model's operations by index).
    pub fn get_cut(&mut self, curve: RateCurve, cut: Cut<'_>) -> Times {
        self.entry(curve, cut, None)
    }

    /// The time set for `p`'s touch model.
    pub fn times(&mut self, p: &Profile, curve: RateCurve, set: &Intervals) -> Times {
        self.times_cut(p, curve, Cut::whole(set))
    }

    /// The time set `cut` for `p`'s touch model.
    pub fn times_cut(&mut self, p: &Profile, curve: RateCurve, cut: Cut<'_>) -> Times {
        let log = match &p.touch {
            Touch::Log { law, .. } => Some(law),
            Touch::Classes { .. } => None,
        };
        self.entry(curve, cut, log)
    }

    /// A window ended: forget the sets it did not use (the next window needs only those).
    pub fn next_window(&mut self) {
        let current = self.window;
        self.map.retain(|_, (_, used)| *used == current);
        self.window += 1;
    }

    /// Time sets held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The estimate's terms: all on (what the per-write engine counts); the agreement tests turn one
/// off to show that each is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// VHDX header rewrites (session start, first log use).
    pub headers: bool,
    /// BAT page writes of allocations.
    pub bat: bool,
    /// Log entries of allocations.
    pub log: bool,
    /// Only chunks allocated when the snapshot was taken are copied (a block allocated after
    /// it was free space then).
    pub allocated_at_snapshot: bool,
    /// The growth path's writes (new data past the disk's data).
    pub growth: bool,
}

impl Default for Terms {
    fn default() -> Self {
        Terms {
            headers: true,
            bat: true,
            log: true,
            allocated_at_snapshot: true,
            growth: true,
        }
    }
}

/// What a VM's guest did in a window: operations, writes and reads with their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpsEst {
    pub writes: Est,
    pub bytes_written: Est,
    pub reads: Est,
    pub bytes_read: Est,
}

/// The guest's operations in exposure `e` of the time set `set` (exact: a compound sum over the
/// operation count, plus the growth writes whose times lie in the set).
pub fn ops(p: &Profile, e: &Exposure, set: &Intervals) -> OpsEst {
    let (n, vn) = (e.mean(), e.var());
    let rho = p.spec.read_fraction;
    let part = |share: f64| {
        let count = Est::new(n * share, n * share * (1.0 - share) + vn * share * share);
        let m1 = share * p.size_mean;
        let m2 = share * p.size_sq;
        let bytes = Est::new(n * m1, n * (m2 - m1 * m1) + vn * m1 * m1);
        (count, bytes)
    };
    let (mut writes, mut bytes_written) = part(1.0 - rho);
    let (reads, bytes_read) = part(rho);
    if let Some(g) = &p.growth {
        let (n, bytes) = g.ops(set);
        writes.mean += n;
        bytes_written.mean += bytes;
    }
    OpsEst {
        writes,
        bytes_written,
        reads,
        bytes_read,
    }
}

/// The time sets of one epoch window: `[τ, t0)` and `[τ, t1)` (the epoch so far, before and
/// after the window), `[t0, t1)` itself, and `[0, τ)` (before the snapshot), each cut to the
/// VM's activity; `[0, t0)`, `[0, t1)` for the metadata laws.
pub struct EpochWindow<'a> {
    pub terms: Terms,
    pub pre: &'a Times,
    pub lo: &'a Times,
    pub hi: &'a Times,
    pub win: &'a Times,
    pub all_lo: &'a Times,
    pub all_hi: &'a Times,
}

/// Units first written in the window (of the epoch), weighted by `weight(block)`.
/// Returns the estimate and, per block class, the mean first-written units of one block (for
/// the block-allocation variance).
fn first_written(
    set: &UnitSet,
    w: &EpochWindow<'_>,
    weight: &dyn Fn(Option<u32>) -> f64,
    with_var: bool,
    per_block: &mut [f64],
) -> Est {
    let (lo, hi, win) = (w.lo.e(), w.hi.e(), w.win.e());
    let (k_lo, k_win) = (lo.curvature(), win.curvature());
    let mut mean = 0.0;
    let mut var = 0.0;
    let (mut far_lo, mut far_win, mut far_self) = (0.0, 0.0, 0.0);
    // (class, weight, p, its units' own variance) for the near-pair pass.
    let mut own: Vec<(usize, f64, f64, f64)> = Vec::new();
    for (i, c) in set.classes.iter().enumerate() {
        let wt = weight(c.block);
        if wt <= 0.0 || c.q <= 0.0 {
            continue;
        }
        let s_lo = lo.none(c.q);
        let s_hi = hi.none(c.q);
        let p = (s_lo - s_hi).max(0.0);
        mean += c.count * wt * p;
        if let Some(b) = c.block {
            if let Some(y) = per_block.get_mut(b as usize) {
                *y += c.count * p;
            }
        }
        if !with_var || p <= 0.0 {
            continue;
        }
        let self_var = c.count * wt * p * (1.0 - wt * p);
        var += self_var;
        own.push((i, wt, p, self_var));
        far_lo += c.count * wt * c.q * p;
        far_win += c.count * wt * c.q * s_hi;
        far_self += c.count * wt * wt * c.q * c.q * (k_lo * p * p + k_win * s_hi * s_hi);
    }
    if with_var {
        var += near_pairs(&mut own, |i, wt, p| {
            let c = &set.classes[i];
            let s_win = win.none(c.q);
            let mut near = 0.0;
            for &(ratio, mult) in &set.pairs {
                let q2 = c.q * (2.0 - ratio);
                let both = lo.none(q2) * (1.0 - 2.0 * s_win) + hi.none(q2);
                near += 2.0 * mult * (both - p * p);
            }
            c.count * wt * near
        });
        var += -k_lo * far_lo * far_lo - k_win * far_win * far_win + far_self;
    }
    Est::new(mean, var)
}

/// The near-pair covariances of unit classes, `own` = (class, weight, p, own variance): computed
/// exactly for the classes that hold 99.9 % of the own variance (largest first, at most 64 of
/// them), and for the rest — edge units, a tail of small classes — taken at the same ratio to
/// their own variance as the computed ones' (so nothing is dropped, only extrapolated).
fn near_pairs(
    own: &mut [(usize, f64, f64, f64)],
    mut near: impl FnMut(usize, f64, f64) -> f64,
) -> f64 {
    let total: f64 = own.iter().map(|o| o.3).sum();
    if total <= 0.0 {
        return 0.0;
    }
    own.sort_unstable_by(|a, b| b.3.total_cmp(&a.3));
    let (mut exact, mut exact_own) = (0.0, 0.0);
    for &(i, wt, p, v) in own.iter().take(64) {
        if exact_own >= 0.999 * total {
            break;
        }
        exact += near(i, wt, p);
        exact_own += v;
    }
    let ratio = if exact_own > 0.0 {
        exact / exact_own
    } else {
        0.0
    };
    exact + ratio * (total - exact_own)
}

/// The variance blocks not allocated at the start add to their chunks' count: whether each was
/// allocated before the snapshot, times what its chunks contribute (`per_block`: the class's
/// first-written chunks, summed over its blocks).
fn block_allocation_var(blocks: &[BlockClass], pre: &Exposure, per_block: &[f64]) -> f64 {
    let kappa = pre.curvature();
    let (mut v, mut far, mut far_self) = (0.0, 0.0, 0.0);
    for (b, &sum) in blocks.iter().zip(per_block) {
        if b.count <= 0.0 || sum <= 0.0 {
            continue;
        }
        let y = sum / b.count;
        let s0 = pre.none(b.q);
        let w = 1.0 - s0;
        v += b.count * w * (1.0 - w) * y * y;
        far += b.count * b.q * s0 * y;
        far_self += b.count * (b.q * s0 * y).powi(2);
    }
    v - kappa * (far * far - far_self)
}

/// Units touched in `e` (a plain occupancy count: change tracking since a reset, blocks
/// allocated since the start).
fn touched(classes: &[(f64, f64)], pairs: &[(f64, f64)], e: &Exposure, with_var: bool) -> Est {
    let kappa = e.curvature();
    let (mut mean, mut var, mut far, mut far_self) = (0.0, 0.0, 0.0, 0.0);
    let mut own: Vec<(usize, f64, f64, f64)> = Vec::new();
    for (i, &(count, q)) in classes.iter().enumerate() {
        if q <= 0.0 || count <= 0.0 {
            continue;
        }
        let s = e.none(q);
        let p = 1.0 - s;
        mean += count * p;
        if !with_var {
            continue;
        }
        var += count * p * s;
        own.push((i, 1.0, p, count * p * s));
        far += count * q * s;
        far_self += count * (q * s).powi(2);
    }
    if with_var {
        var += near_pairs(&mut own, |i, _, p| {
            let (count, q) = classes[i];
            let s = 1.0 - p;
            let mut near = 0.0;
            for &(ratio, mult) in pairs {
                near += 2.0 * mult * (e.none(q * (2.0 - ratio)) - s * s);
            }
            count * near
        });
        var -= kappa * (far * far - far_self);
    }
    Est::new(mean, var)
}

/// The log's units of `unit` bytes: per unit reached, the chance it stays untouched in `t`.
fn log_units(law: &LogLaw, t: &Times, unit: u64, disk: u64) -> (u64, Vec<f64>) {
    match &t.ops {
        Some(ops) => units_untouched(law, ops, unit, disk),
        None => (0, Vec::new()),
    }
}

/// Change-tracking blocks changed in `t`, and the bytes an incremental backup reads for them.
pub fn changed(p: &Profile, t: &Times, with_var: bool) -> (Est, Est) {
    let (mut n, mut bytes) = changed_by_overwrites(p, t, with_var);
    if let Some(g) = &p.growth {
        let (k, b) = growth::units(
            &g.ranges(&t.set),
            p.cbt_block_size,
            None,
            p.layout.virtual_size,
        );
        n.mean += k;
        bytes.mean += b;
    }
    (n, bytes)
}

fn changed_by_overwrites(p: &Profile, t: &Times, with_var: bool) -> (Est, Est) {
    let unit = p.cbt_block_size as f64;
    match &p.touch {
        Touch::Classes { cbt, .. } => {
            let e = t.e();
            let blocks: Vec<(f64, f64)> = cbt.classes.iter().map(|c| (c.count, c.q)).collect();
            let n = touched(&blocks, &cbt.pairs, e, with_var);
            // Bytes: the same units weighted by their size (only the last may be short).
            let mut bytes = n.scale(unit);
            for c in cbt.classes.iter().filter(|c| c.bytes < unit) {
                let pc = 1.0 - e.none(c.q);
                bytes.mean -= c.count * (unit - c.bytes) * pc;
            }
            (n, bytes)
        }
        Touch::Log { law, .. } => {
            let disk = p.layout.virtual_size;
            let (first, vals) = log_units(law, t, p.cbt_block_size, disk);
            let (mut mean, mut bytes) = (0.0, 0.0);
            for (i, u) in vals.iter().enumerate() {
                let k = first + i as u64;
                let size = (((k + 1) * p.cbt_block_size).min(disk) - k * p.cbt_block_size) as f64;
                mean += 1.0 - u;
                bytes += size * (1.0 - u);
            }
            let var = match (&t.ops, with_var) {
                (Some(ops), true) => {
                    let empty = law.ops(&Intervals::new());
                    let (_, c) =
                        units_first_written_var(law, &empty, ops, ops, p.cbt_block_size, disk);
                    c.iter().sum()
                }
                _ => 0.0,
            };
            (Est::new(mean, var), Est::new(bytes, var * unit * unit))
        }
    }
}

/// Per class of blocks not allocated at the start: `(blocks, P(untouched in t))`.
fn block_states(p: &Profile, t: &Times) -> Vec<(f64, f64)> {
    match &p.touch {
        Touch::Classes { blocks, .. } => {
            blocks.iter().map(|b| (b.count, t.e().none(b.q))).collect()
        }
        Touch::Log { law, blocks, .. } => {
            let (first, vals) = log_units(law, t, p.layout.block_size, p.layout.virtual_size);
            blocks
                .iter()
                .map(|&b| {
                    let none = b
                        .checked_sub(first)
                        .and_then(|i| vals.get(i as usize))
                        .copied()
                        .unwrap_or(1.0);
                    (1.0, none)
                })
                .collect()
        }
    }
}

/// P(no write into the blocks not allocated at the start, in `t`): the first allocation's law.
fn alloc_none(p: &Profile, t: &Times) -> f64 {
    if p.growth.is_some_and(|g| g.allocates_in(&t.set)) {
        return 0.0;
    }
    match &p.touch {
        Touch::Classes { q_alloc, .. } => t.e().none(*q_alloc),
        Touch::Log {
            law, alloc_range, ..
        } => match (alloc_range, &t.ops) {
            (Some((lo, hi)), Some(ops)) => law
                .log_untouched(ops, *lo, *hi, &mut Scratch::default())
                .exp(),
            _ => 1.0,
        },
    }
}

/// VHDX blocks allocated in `t` (the VM's activity since the start) beyond the initial ones.
pub fn allocated(p: &Profile, t: &Times, with_var: bool) -> Est {
    let mut est = allocated_by_overwrites(p, t, with_var);
    if let Some(g) = &p.growth {
        est.mean += g
            .new_blocks(&t.set)
            .iter()
            .map(|(a, b)| (b - a) as f64)
            .sum::<f64>();
    }
    est
}

fn allocated_by_overwrites(p: &Profile, t: &Times, with_var: bool) -> Est {
    match &p.touch {
        // No write reaches a block not allocated at the start (the usual case: the streams
        // land in the disk's data): the operation count's law is not needed.
        Touch::Classes { blocks, .. } if blocks.is_empty() => Est::default(),
        Touch::Classes {
            blocks,
            block_pairs,
            ..
        } => {
            let classes: Vec<(f64, f64)> = blocks.iter().map(|b| (b.count, b.q)).collect();
            touched(&classes, block_pairs, t.e(), with_var)
        }
        Touch::Log { .. } => {
            let states = block_states(p, t);
            let mean = states.iter().map(|(n, s)| n * (1.0 - s)).sum();
            let var = states.iter().map(|(n, s)| n * s * (1.0 - s)).sum();
            Est::new(mean, var)
        }
    }
}

/// The probability every block of the disk is allocated after `t`.
pub fn all_allocated(p: &Profile, t: &Times) -> f64 {
    let free = (p.layout.blocks - p.layout.initially.min(p.layout.blocks)) as f64;
    if let Some(g) = &p.growth {
        // Growth is the only allocator of a disk that grows (see `growth`).
        let grown: f64 = g
            .new_blocks(&t.set)
            .iter()
            .map(|(a, b)| (b - a) as f64)
            .sum();
        return if grown >= free { 1.0 } else { 0.0 };
    }
    let reach: f64 = block_states(p, t).iter().map(|s| s.0).sum();
    if reach < free {
        return 0.0;
    }
    let mut log = 0.0;
    for (n, s) in block_states(p, t) {
        let w = 1.0 - s;
        if w <= 0.0 {
            return 0.0;
        }
        log += n * w.ln();
    }
    log.exp()
}

/// Distinct metadata chunks written in an interval, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetaEst {
    pub headers: Est,
    pub bat: Est,
    pub log: Est,
}

impl MetaEst {
    pub fn total(&self) -> Est {
        self.headers + self.bat + self.log
    }
}

/// Expected distinct metadata chunks written in the epoch interval whose time sets are
/// `pre = [0, τ)`, `inn = [τ, t)`, `all = [0, t)`; and a variance.
pub fn metadata(p: &Profile, pre: &Times, inn: &Times, all: &Times, terms: Terms) -> MetaEst {
    let l = &p.layout;
    let q_w = 1.0 - p.spec.read_fraction;
    // Headers: some header write in [τ, t) (session start or first allocation).
    let (a_pre, a_inn, a_all) = (alloc_none(p, pre), alloc_none(p, inn), alloc_none(p, all));
    let p_hdr = (1.0 - (1.0 - a_pre) - all.e().none(q_w) - a_all + pre.e().none(q_w) * a_inn)
        .clamp(0.0, 1.0);
    let mut est = MetaEst::default();
    if terms.headers {
        est.headers = Est::new(
            l.header_chunks * p_hdr,
            l.header_chunks * l.header_chunks * p_hdr * (1.0 - p_hdr),
        );
    }
    let bat = match &p.touch {
        Touch::Classes { bat, .. } | Touch::Log { bat, .. } => bat,
    };
    if l.kind == DiskKind::Fixed {
        return est;
    }
    if let Some(g) = &p.growth {
        // Growth is the only allocator (see `growth`): its blocks, allocated before τ or first
        // in the interval, are certain.
        let count = |set: &Intervals| -> f64 {
            g.new_blocks(set).iter().map(|(a, b)| (b - a) as f64).sum()
        };
        let (before, by_end) = (count(&pre.set), count(&all.set));
        if terms.bat {
            let n = g.bat_chunks(&pre.set, &all.set, p.chunk_size);
            est.bat = Est::new(n, 0.0);
        }
        if terms.log {
            let ma = [(before, 1.0, 0.0), ((by_end - before).max(0.0), 0.0, 1.0)];
            est.log = log_chunks(
                l.log_entries_per_chunk,
                l.log_ring_entries,
                l.log_chunks,
                &ma,
            );
        }
        return est;
    }
    if bat.is_empty() {
        return est;
    }
    // Per block class: allocated before τ (m), first allocated in [τ, t) (a).
    let ma: Vec<(f64, f64, f64)> = block_states(p, pre)
        .into_iter()
        .zip(block_states(p, all))
        .map(|((n, s_pre), (_, s_all))| (n, 1.0 - s_pre, (s_pre - s_all).max(0.0)))
        .collect();
    // BAT chunks.
    for chunk in bat.iter().filter(|_| terms.bat) {
        let mut log_none = 0.0;
        for &(k, n) in chunk {
            let a = ma.get(k as usize).map_or(0.0, |x| x.2);
            log_none += n * (-a).ln_1p();
        }
        let pc = 1.0 - log_none.exp();
        est.bat += Est::new(pc, pc * (1.0 - pc));
    }
    if terms.log {
        est.log = log_chunks(
            l.log_entries_per_chunk,
            l.log_ring_entries,
            l.log_chunks,
            &ma,
        );
    }
    est
}

/// Expected distinct log chunks the allocations of an interval write (see the module doc).
/// `ma`: per block class `(count, P(allocated before), P(first allocated in the interval))`.
fn log_chunks(k: f64, ring: f64, ring_chunks: f64, ma: &[(f64, f64, f64)]) -> Est {
    let mu: f64 = ma.iter().map(|(n, _, a)| n * a).sum();
    let var_d: f64 = ma.iter().map(|(n, _, a)| n * a * (1.0 - a)).sum();
    if mu <= 0.0 {
        return Est::default();
    }
    let p0 = ma
        .iter()
        .map(|(n, _, a)| n * (-a).ln_1p())
        .sum::<f64>()
        .exp();
    // E[(D − c)^+] for the ring's saturation, D taken as normal (only matters near c).
    let excess = |c: f64| {
        let sd = var_d.sqrt();
        if sd <= 0.0 {
            return (mu - c).max(0.0);
        }
        let z = (c - mu) / sd;
        let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let tail = 0.5 * libm_erfc(z / std::f64::consts::SQRT_2);
        (sd * pdf + (mu - c) * tail).max(0.0)
    };
    if k <= 1.0 {
        // Each entry covers 1/k chunks.
        let per = 1.0 / k;
        let mean = per * (mu - excess(ring));
        return Est::new(mean.min(ring_chunks), per * per * var_d);
    }
    let kk = k.round() as usize;
    // Generating functions at the k-th roots of unity: X = M + D (allocations before and in
    // the interval), M alone, and M on {D = 0}.
    let mut px = vec![0.0; kk];
    let mut pm = vec![0.0; kk];
    let mut pm0 = vec![0.0; kk];
    for l in 0..kk {
        let theta = std::f64::consts::TAU * l as f64 / kk as f64;
        let (c, s) = (theta.cos(), theta.sin());
        let pow = |base_re: f64, base_im: f64, n: f64| {
            let r = (base_re * base_re + base_im * base_im).sqrt();
            let a = base_im.atan2(base_re);
            if r <= 0.0 {
                return (0.0, 0.0, true);
            }
            (n * r.ln(), n * a, false)
        };
        let mut acc = [(0.0f64, 0.0f64, false); 3];
        for &(n, m, a) in ma {
            let terms = [
                (1.0 - m - a + (m + a) * c, (m + a) * s),
                (1.0 - m + m * c, m * s),
                (1.0 - m - a + m * c, m * s),
            ];
            for (t, (re, im)) in acc.iter_mut().zip(terms) {
                let (lr, ang, zero) = pow(re, im, n);
                t.0 += lr;
                t.1 += ang;
                t.2 |= zero;
            }
        }
        // Transform back: P(· ≡ j) = (1/k) Σ_l ω^(−jl) G(ω^l).
        for (out, t) in [&mut px, &mut pm, &mut pm0].into_iter().zip(acc) {
            if t.2 {
                continue;
            }
            let mag = t.0.exp();
            for (j, o) in out.iter_mut().enumerate() {
                let ang = t.1 - theta * j as f64;
                *o += mag * ang.cos() / kk as f64;
            }
        }
    }
    let kf = kk as f64;
    let e_ph: f64 = pm.iter().enumerate().map(|(j, p)| j as f64 * p).sum();
    let e_ph0: f64 = pm0.iter().enumerate().map(|(j, p)| j as f64 * p).sum();
    let e_mod: f64 = (0..kk)
        .map(|j| ((j + kk - 1) % kk) as f64 * (px[j] - pm0[j]))
        .sum();
    let p_any = 1.0 - p0;
    let e_y = e_ph - e_ph0 + mu;
    let mean = (e_y - p_any - e_mod) / kf + p_any;
    let mean = (mean - excess(ring - e_ph) / kf).clamp(0.0, ring_chunks);
    Est::new(mean, var_d / (kf * kf))
}

/// The complementary error function (Numerical Recipes' `erfcc`, |error| < 1.2e-7).
fn libm_erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// CSV chunks (data and metadata) the VM first writes in the window of an epoch: the copies it
/// causes when that epoch's snapshot is the newest.
pub fn chunks_first_written(p: &Profile, w: &EpochWindow<'_>, with_var: bool) -> Est {
    let mut est = match &p.touch {
        Touch::Classes { chunks, blocks, .. } => {
            let all = !w.terms.allocated_at_snapshot;
            let weights: Vec<f64> = blocks
                .iter()
                .map(|b| if all { 1.0 } else { 1.0 - w.pre.e().none(b.q) })
                .collect();
            let weight = |b: Option<u32>| match b {
                None => 1.0,
                Some(k) => weights.get(k as usize).copied().unwrap_or(0.0),
            };
            let mut per_block = vec![0.0; blocks.len()];
            let mut est = first_written(chunks, w, &weight, with_var, &mut per_block);
            if with_var && !blocks.is_empty() {
                est.var += block_allocation_var(blocks, w.pre.e(), &per_block);
            }
            est
        }
        Touch::Log { law, blocks, .. } => {
            let disk = p.layout.virtual_size;
            let (first, lo) = log_units(law, w.lo, p.chunk_size, disk);
            let (first_hi, hi) = log_units(law, w.hi, p.chunk_size, disk);
            let pre_blocks = block_states(p, w.pre);
            let bs = p.layout.block_size;
            let cut = if p.layout.kind == DiskKind::Fixed {
                p.layout.blocks
            } else {
                p.layout.initially
            };
            let weight = |unit: u64| {
                let b = unit * p.chunk_size / bs;
                if b < cut || !w.terms.allocated_at_snapshot {
                    1.0
                } else {
                    blocks
                        .binary_search(&b)
                        .ok()
                        .and_then(|i| pre_blocks.get(i))
                        .map_or(0.0, |(_, s)| 1.0 - s)
                }
            };
            let (mut mean, mut pq) = (0.0, 0.0);
            // Per block reached: its first-written chunks (for the allocation variance).
            let mut per_block = vec![0.0; blocks.len()];
            for (i, h) in hi.iter().enumerate() {
                let u = first_hi + i as u64;
                let l = u
                    .checked_sub(first)
                    .and_then(|k| lo.get(k as usize))
                    .copied()
                    .unwrap_or(1.0);
                let f = (l - h).max(0.0);
                let x = weight(u) * f;
                mean += x;
                pq += x * (1.0 - x);
                if let Ok(k) = blocks.binary_search(&(u * p.chunk_size / bs)) {
                    per_block[k] += f;
                }
            }
            let mut var = 0.0;
            if let (true, Some(lo_ops), Some(hi_ops), Some(win_ops)) =
                (with_var, &w.lo.ops, &w.hi.ops, &w.win.ops)
            {
                let (fv, c) =
                    units_first_written_var(law, lo_ops, hi_ops, win_ops, p.chunk_size, disk);
                for (i, ci) in c.iter().enumerate() {
                    let wt = weight(fv + i as u64);
                    var += wt * wt * ci;
                }
                for ((_, s), y) in pre_blocks.iter().zip(&per_block) {
                    var += s * (1.0 - s) * y * y;
                }
            }
            let _ = pq;
            Est::new(mean, var)
        }
    };
    if let Some(g) = &p.growth {
        let mask = (p.layout.kind == DiskKind::Dynamic && w.terms.allocated_at_snapshot)
            .then(|| g.allocated(&w.pre.set));
        let disk = p.layout.virtual_size;
        let count =
            |t: &Times| growth::units(&g.ranges(&t.set), p.chunk_size, mask.as_deref(), disk).0;
        est.mean += (count(w.hi) - count(w.lo)).max(0.0);
    }
    let m_hi = metadata(p, w.pre, w.hi, w.all_hi, w.terms).total();
    let m_lo = metadata(p, w.pre, w.lo, w.all_lo, w.terms).total();
    est += Est::new(m_hi.mean - m_lo.mean, (m_hi.var - m_lo.var).abs());
    est
}
