//! `EstimateCluster`: the estimate tier's twin of `workload::ModelCluster` — the same CSVs,
//! VMs, snapshots and questions, answered with expectations (and variances) instead of counts.
//!
//! How this works. A CSV keeps its time, its snapshots (creation instant, live or not) and its
//! VMs; a VM keeps its profile and the set of time its guest ran (the windows it was advanced
//! through while running). Nothing is stepped: every figure is computed from those sets when
//! asked. volsnap's copy-on-write reduces to distinct chunks: with live snapshots `k_1 < … <
//! k_m`, the diff area holds, for each `k_i`, the chunks allocated at `k_i` that were written
//! between its creation and the next live snapshot's (the newest: until now) — each such first
//! write copied once and that copy serves every older snapshot that still lacked the chunk
//! (`cow::tests::Reference` is the rule). A window's copies are the chunks the newest
//! snapshot's epoch first writes in it. So the expected diff area is a sum of per-VM epoch terms
//! (`vm::chunks_first_written`), increasing in time between events; with a limit, the instant it
//! reaches the limit is found by Brent's method and the oldest snapshot deleted there (as
//! volsnap does), then the next crossing is sought, and so on to the window's end.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use super::exposure::RateCurve;
use super::intervals::Intervals;
use super::profile::Profile;
use super::rootfind::brent;
use super::vm::{self, Cut, EpochWindow, Est, ExposureCache, OpsEst, Terms, Times};
use crate::error::{check_window, Error, Result};
use crate::volsnap::MAX_SNAPSHOTS;
use crate::workload::layout::DiskKind;
use crate::workload::spec::WorkloadSpec;
use crate::workload::{Foresight, SpaceRules, VmConfig};

const MIB: u64 = 1 << 20;

/// Expected counters of one VM over a window (each with its variance).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VmEstimate {
    pub ops: OpsEst,
    /// CSV chunks copied to the diff area because of this VM's writes (data and metadata).
    pub chunks_copied: Est,
    pub blocks_allocated: Est,
}

/// What a window did, in expectation.
#[derive(Debug, Clone, Default)]
pub struct EstimateReport {
    /// The VMs of the CSVs advanced, `(VM id, its counters)`, by CSV then VM (the others did
    /// nothing in the window).
    pub vms: Vec<(usize, VmEstimate)>,
    /// Snapshots the diff-area limit deleted: (CSV, snapshot id, time), by time.
    pub deleted: Vec<(usize, u64, f64)>,
    /// CSVs whose expected free space fell below their warning level in the window, and the
    /// instant it did (root-finding): (CSV, time), by time.
    pub low_space: Vec<(usize, f64)>,
    /// Per CSV advanced: the fewest expected free bytes it had in the window, and the most its
    /// diff area held (just before a deletion, if one shrank it).
    pub lowest_free: Vec<(usize, f64)>,
    pub peak_diff: Vec<(usize, f64)>,
}

#[derive(Debug, Clone)]
struct Vm {
    id: usize,
    profile: Arc<Profile>,
    curve: RateCurve,
    /// When the guest ran (windows advanced through while running).
    active: Intervals,
    running: bool,
    /// Change tracking counts from here.
    cbt_reset: f64,
    /// Snapshots of the CSV with an id below this were taken before the VM was added (its file
    /// lies past their allocated extent: never copied for them).
    first_snapshot: u64,
}

#[derive(Debug, Clone, Copy)]
struct Snap {
    id: u64,
    tau: f64,
    live: bool,
}

/// A CSV's exposure cache, kept from one window to the next (see [`ExposureCache`]), behind a
/// lock so that questions asked of a `&EstimateCluster` share it too. It only saves work: a
/// copy of the CSV starts with an empty one.
#[derive(Default)]
struct SharedCache(Mutex<ExposureCache>);

impl SharedCache {
    fn lock(&self) -> MutexGuard<'_, ExposureCache> {
        // A memo a panic interrupted still holds only finished entries.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clone for SharedCache {
    fn clone(&self) -> Self {
        SharedCache::default()
    }
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedCache({} time sets)", self.lock().len())
    }
}

#[derive(Debug, Clone)]
struct Csv {
    terms: Terms,
    /// Where the diff area lives and the free-space levels Hyper-V acts at.
    rules: SpaceRules,
    /// When the expected free space first fell below `rules.warn_below`.
    warned: Option<f64>,
    size: u64,
    chunk_size: u64,
    limit: Option<u64>,
    /// Time the CSV's VMs have run to.
    t: f64,
    /// Bytes in use before any growth: the volume's first MiB and the VMs' initial files.
    base_used: u64,
    vms: Vec<Vm>,
    snaps: Vec<Snap>,
    next_id: u64,
    total_copied: f64,
    peak_chunks: f64,
    /// The expected diff area (chunks) at the CSV's time, for its live snapshots then (ids):
    /// kept current window by window (a window with no deletion adds its copies to it).
    diff_area: Option<(f64, Vec<u64>, f64)>,
    /// The expected bytes of its files at the CSV's time, when known (`(time, bytes)`: set by
    /// each window, dropped when a VM is added).
    used_now: Option<(f64, f64)>,
    cache: SharedCache,
}

/// The time sets of one VM's epoch window, built (and shared) through a cache.
fn epoch_exposures(
    cache: &mut ExposureCache,
    vm: &Vm,
    active: &Intervals,
    tau: f64,
    t0: f64,
    t1: f64,
) -> [Times; 6] {
    [
        times(cache, vm, active, 0.0, tau),
        times(cache, vm, active, tau, t0),
        times(cache, vm, active, tau, t1),
        times(cache, vm, active, t0, t1),
        times(cache, vm, active, 0.0, t0),
        times(cache, vm, active, 0.0, t1),
    ]
}

/// The VM's time set `[a, b)` of its activity.
fn times(cache: &mut ExposureCache, vm: &Vm, active: &Intervals, a: f64, b: f64) -> Times {
    cache.times_cut(&vm.profile, vm.curve, Cut { active, a, b })
}

/// Chunks `vm` first writes in `[t0, t1)` of the epoch of snapshot `snap`.
#[expect(clippy::too_many_arguments)]
fn vm_epoch(
    terms: Terms,
    cache: &mut ExposureCache,
    vm: &Vm,
    active: &Intervals,
    snap: &Snap,
    t0: f64,
    t1: f64,
    with_var: bool,
) -> Est {
    if snap.id < vm.first_snapshot || t1 <= t0 {
        return Est::default();
    }
    let [pre, lo, hi, win, all_lo, all_hi] = epoch_exposures(cache, vm, active, snap.tau, t0, t1);
    if win.e().is_empty() {
        return Est::default();
    }
    vm::chunks_first_written(
        &vm.profile,
        &EpochWindow {
            terms,
            pre: &pre,
            lo: &lo,
            hi: &hi,
            win: &win,
            all_lo: &all_lo,
            all_hi: &all_hi,
        },
        with_var,
    )
}

impl Csv {
    /// The running diff-area figure if it is current at `t` for the live snapshots.
    fn diff_area_now_at(&self, t: f64) -> Option<f64> {
        let ids: Vec<u64> = self.live().iter().map(|s| s.id).collect();
        match self.diff_area {
            Some((at, ref was, v)) if at == t && *was == ids => Some(v),
            // No snapshot: nothing held.
            _ if ids.is_empty() => Some(0.0),
            _ => None,
        }
    }

    /// Expected chunks in the diff area now (from the running figure when it is current).
    fn diff_area_now(&self) -> f64 {
        let live = self.live();
        let ids: Vec<u64> = live.iter().map(|s| s.id).collect();
        if let Some((t, ref was, v)) = self.diff_area {
            if t == self.t && *was == ids {
                return v;
            }
        }
        let actives: Vec<Intervals> = self.vms.iter().map(|v| v.active.clone()).collect();
        self.diff_area(&mut self.cache.lock(), &actives, &live, self.t)
    }

    /// Expected bytes of the CSV's files now (from the last window's figure when current).
    fn used_now(&self) -> f64 {
        match self.used_now {
            Some((t, used)) if t == self.t => used,
            _ => {
                let actives: Vec<Intervals> = self.vms.iter().map(|v| v.active.clone()).collect();
                self.used_at(&mut self.cache.lock(), &actives, self.t)
            }
        }
    }

    /// Per VM, the blocks its writes have allocated by `t`, the VMs having run through
    /// `actives` (fixed disks: none); their variances too if `with_var`.
    fn allocated_by(
        &self,
        cache: &mut ExposureCache,
        actives: &[Intervals],
        t: f64,
        with_var: bool,
    ) -> Vec<Est> {
        self.vms
            .iter()
            .zip(actives)
            .map(|(v, act)| match v.profile.layout.kind {
                DiskKind::Fixed => Est::default(),
                DiskKind::Dynamic => {
                    vm::allocated(&v.profile, &times(cache, v, act, 0.0, t), with_var)
                }
            })
            .collect()
    }

    /// Expected bytes of the CSV's files with `allocated` (per VM, from [`Csv::allocated_by`]).
    fn used_with(&self, allocated: &[Est]) -> f64 {
        let mut used = self.base_used as f64;
        for (v, a) in self.vms.iter().zip(allocated) {
            if v.profile.layout.kind == DiskKind::Dynamic {
                used += a.mean * v.profile.layout.block_size as f64;
            }
        }
        used
    }

    /// The per-write engine refuses writes that need a block once its CSV is full; the estimate
    /// does not model that: it refuses a window in which the CSV could fill (expected use plus
    /// 4σ above its size, `allocated` the VMs' blocks by `t1`), before changing anything.
    fn fill_check(&self, ci: usize, allocated: &[Est], t1: f64) -> Result<()> {
        if !self.could_fill() {
            return Ok(());
        }
        let (mut used, mut var) = (self.base_used as f64, 0.0);
        for (v, a) in self.vms.iter().zip(allocated) {
            if v.profile.layout.kind == DiskKind::Fixed {
                continue;
            }
            let bs = v.profile.layout.block_size as f64;
            used += a.mean * bs;
            var += a.var * bs * bs;
        }
        if used + 4.0 * var.sqrt() > self.size as f64 {
            return Err(Error::NotEstimated {
                what: "a CSV that fills up",
                why: format!(
                    "CSV {ci} would hold {used:.0} bytes (± {:.0}) of its {} by {t1} s; the \
                     per-write engine then refuses the writes that need a new block — run this \
                     scenario with the exact engine",
                    var.sqrt(),
                    self.size
                ),
            });
        }
        Ok(())
    }

    /// Whether the CSV could fill at all: its VMs' dynamic disks, grown to their full size,
    /// would not fit.
    fn could_fill(&self) -> bool {
        let most: u64 = self
            .vms
            .iter()
            .map(|v| {
                let l = &v.profile.layout;
                match l.kind {
                    DiskKind::Fixed => 0,
                    DiskKind::Dynamic => l.blocks.saturating_sub(l.initially) * l.block_size,
                }
            })
            .fold(self.base_used, u64::saturating_add);
        most > self.size
    }

    /// Expected bytes of the CSV's files at `t` (its first MiB, the VMs' initial files and the
    /// blocks allocated since), the VMs having run through `actives`.
    fn used_at(&self, cache: &mut ExposureCache, actives: &[Intervals], t: f64) -> f64 {
        self.used_with(&self.allocated_by(cache, actives, t, false))
    }

    /// Expected free bytes at `t` with `diff_chunks` in the diff area: the size less the files
    /// and, when the diff area lives on the volume, less the diff area.
    fn free_with(&self, used: f64, diff_chunks: f64) -> f64 {
        let diff = if self.rules.diff_area_on_volume {
            diff_chunks * self.chunk_size as f64
        } else {
            0.0
        };
        self.size as f64 - used - diff
    }

    fn free_at(
        &self,
        cache: &mut ExposureCache,
        actives: &[Intervals],
        live: &[Snap],
        t: f64,
    ) -> f64 {
        let used = self.used_at(cache, actives, t);
        let diff = self.diff_area(cache, actives, live, t);
        self.free_with(used, diff)
    }

    /// The window's free space: its lowest expected value (just before each deletion, when the
    /// diff area stood at the limit, and at the end), the most the diff area held, and the
    /// instant the free space first fell below the warning level (if it did now). A window in
    /// which it reaches Hyper-V's pause level or an empty volume is refused: the per-write
    /// engine then pauses VMs at a write, which the estimate does not model.
    #[expect(clippy::too_many_arguments)]
    fn space(
        &self,
        ci: usize,
        cache: &mut ExposureCache,
        actives: &[Intervals],
        t0: f64,
        t1: f64,
        deleted: &[(u64, f64)],
        end_chunks: f64,
        end_used: f64,
    ) -> Result<(f64, f64, Option<f64>)> {
        let limit_chunks = self
            .limit
            .map_or(0.0, |l| l as f64 / self.chunk_size as f64);
        let mut lowest = self.free_with(end_used, end_chunks);
        for &(_, at) in deleted {
            lowest = lowest.min(self.free_with(self.used_at(cache, actives, at), limit_chunks));
        }
        let peak = if deleted.is_empty() {
            end_chunks
        } else {
            end_chunks.max(limit_chunks)
        } * self.chunk_size as f64;
        let pause = self.rules.pause_below as f64;
        if lowest < pause.max(0.0) || lowest < 0.0 {
            return Err(Error::NotEstimated {
                what: "a CSV whose free space reaches Hyper-V's paused-critical level",
                why: format!(
                    "CSV {ci} would have {lowest:.0} free bytes (expected) by {t1:.1} s, \
                     below the {pause:.0} at which Hyper-V pauses its VMs with dynamic disks \
                     (or an empty volume); the per-write engine pauses them at the crossing \
                     write — run this scenario with the exact engine"
                ),
            });
        }
        let warn = self.rules.warn_below as f64;
        let mut low = None;
        if self.warned.is_none() && warn > 0.0 && lowest < warn {
            // Free space only falls between deletions: the first segment that ends below the
            // level holds the crossing.
            let mut live = self.live();
            let mut from = t0;
            let mut ends: Vec<(f64, Option<u64>)> =
                deleted.iter().map(|&(id, t)| (t, Some(id))).collect();
            ends.push((t1, None));
            for (end, id) in ends {
                // How far below the level the free space is: increasing, as `brent` wants.
                let f = |c: &mut ExposureCache, t: f64| warn - self.free_at(c, actives, &live, t);
                if f(cache, from) > 0.0 {
                    low = Some(from);
                    break;
                }
                if f(cache, end) > 0.0 {
                    low = Some(brent(
                        |t| f(&mut *cache, t),
                        from,
                        end,
                        1e-6 * (1.0 + end.abs()),
                    ));
                    break;
                }
                if let Some(id) = id {
                    live.retain(|s| s.id != id);
                }
                from = end;
            }
        }
        Ok((lowest, peak, low))
    }

    fn live(&self) -> Vec<Snap> {
        self.snaps.iter().filter(|s| s.live).copied().collect()
    }

    /// Expected chunks in the diff area at `t`, the VMs having run through `actives` (one per
    /// VM), for the live snapshots `live` (oldest first). The terms of all but the newest are
    /// fixed once the next snapshot exists: `fixed` caches their sum.
    fn diff_area(
        &self,
        cache: &mut ExposureCache,
        actives: &[Intervals],
        live: &[Snap],
        t: f64,
    ) -> f64 {
        let mut total = 0.0;
        for (i, s) in live.iter().enumerate() {
            let end = live.get(i + 1).map_or(t, |n| n.tau.min(t));
            for (vm, act) in self.vms.iter().zip(actives) {
                total += vm_epoch(self.terms, cache, vm, act, s, s.tau, end, false).mean;
            }
        }
        total
    }

    /// Runs the window `[t0, t1)` on `actives` (the VMs' activity including the window): the
    /// snapshots the limit deletes, with their instants, and the live set after.
    fn deletions(
        &self,
        cache: &mut ExposureCache,
        actives: &[Intervals],
        t0: f64,
        t1: f64,
    ) -> (Vec<(u64, f64)>, Vec<Snap>) {
        let mut live = self.live();
        let mut deleted = Vec::new();
        let Some(limit) = self.limit else {
            return (deleted, live);
        };
        let limit_chunks = limit as f64 / self.chunk_size as f64;
        // A copy is refused (and the oldest deleted) when it would not fit; one write copies a
        // chunk or two, so the level is met within that.
        let slack = 1.0;
        let mut from = t0;
        while !live.is_empty() {
            let end = self.diff_area(cache, actives, &live, t1);
            if end <= limit_chunks {
                break;
            }
            let at = if self.diff_area(cache, actives, &live, from) >= limit_chunks {
                from
            } else {
                brent(
                    |t| self.diff_area(cache, actives, &live, t) - limit_chunks,
                    from,
                    t1,
                    1e-6 * (1.0 + t1.abs()),
                )
            };
            loop {
                let oldest = live.remove(0);
                deleted.push((oldest.id, at));
                if live.is_empty()
                    || self.diff_area(cache, actives, &live, at) < limit_chunks - slack
                {
                    break;
                }
            }
            from = at;
        }
        (deleted, live)
    }
}

/// Every CSV and VM of a cluster, estimated.
#[derive(Debug, Default, Clone)]
pub struct EstimateCluster {
    csvs: Vec<Csv>,
    index: Vec<(usize, usize)>,
    terms: Terms,
}

impl EstimateCluster {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cluster with some terms of the estimate off (to show each is needed; see `Terms`).
    pub fn with_terms(terms: Terms) -> Self {
        EstimateCluster {
            terms,
            ..Self::default()
        }
    }

    /// Adds a CSV of `size` bytes; returns its id. The arguments are checked as the exact
    /// engine checks them (a `CowTracker` is made and dropped).
    pub fn add_csv(
        &mut self,
        size: u64,
        chunk_size: u64,
        diff_area_limit: Option<u64>,
    ) -> Result<usize> {
        crate::cow::CowTracker::new(size, chunk_size, diff_area_limit)?;
        self.csvs.push(Csv {
            terms: self.terms,
            rules: SpaceRules::default(),
            warned: None,
            size,
            chunk_size,
            limit: diff_area_limit,
            t: 0.0,
            base_used: MIB,
            vms: Vec::new(),
            snaps: Vec::new(),
            next_id: 1,
            total_copied: 0.0,
            peak_chunks: 0.0,
            diff_area: None,
            used_now: None,
            cache: SharedCache::default(),
        });
        Ok(self.csvs.len() - 1)
    }

    /// Adds a VM (the same configuration as `ModelCluster::add_vm`); returns its id.
    pub fn add_vm(&mut self, cfg: VmConfig) -> Result<usize> {
        let id = self.index.len();
        let n = self.csvs.len();
        let csv = self.csvs.get_mut(cfg.csv).ok_or_else(|| {
            Error::invalid(
                "csv",
                format!("{} is not a CSV id (there are {n})", cfg.csv),
            )
        })?;
        let mut profile = Profile::build(&cfg, csv.chunk_size)?;
        if !self.terms.growth {
            profile.growth = None;
        }
        crate::cbt::ChangeTracker::new("vm", cfg.disk_size, cfg.cbt_block_size)?;
        let initial = profile.layout.initial_file.div_ceil(MIB) * MIB;
        if csv.base_used + initial > csv.size {
            return Err(Error::invalid(
                "allocated",
                format!(
                    "VM {id}'s disk file ({initial} bytes) does not fit on CSV {}: {} of {} bytes \
                     are already used",
                    cfg.csv, csv.base_used, csv.size
                ),
            ));
        }
        csv.base_used += initial;
        csv.used_now = None;
        self.index.push((cfg.csv, csv.vms.len()));
        csv.vms.push(Vm {
            id,
            curve: RateCurve::of(&cfg.spec),
            profile: Arc::new(profile),
            active: Intervals::new(),
            running: true,
            cbt_reset: csv.t,
            first_snapshot: csv.next_id,
        });
        Ok(id)
    }

    pub fn csv_count(&self) -> usize {
        self.csvs.len()
    }

    pub fn vm_count(&self) -> usize {
        self.index.len()
    }

    /// The spec VM `vm`'s stream runs.
    pub fn workload(&self, vm: usize) -> Result<&WorkloadSpec> {
        Ok(&self.vm(vm)?.1.profile.spec)
    }

    fn csv(&self, csv: usize) -> Result<&Csv> {
        self.csvs
            .get(csv)
            .ok_or_else(|| Error::invalid("csv", format!("{csv} is not a CSV id")))
    }

    fn csv_mut(&mut self, csv: usize) -> Result<&mut Csv> {
        self.csvs
            .get_mut(csv)
            .ok_or_else(|| Error::invalid("csv", format!("{csv} is not a CSV id")))
    }

    fn vm(&self, vm: usize) -> Result<(&Csv, &Vm)> {
        let &(c, p) = self
            .index
            .get(vm)
            .ok_or_else(|| Error::invalid("vm", format!("{vm} is not a VM id")))?;
        Ok((&self.csvs[c], &self.csvs[c].vms[p]))
    }

    /// The CSV's time: its VMs have run up to here.
    pub fn csv_time(&self, csv: usize) -> Result<f64> {
        Ok(self.csv(csv)?.t)
    }

    /// Takes a snapshot of a CSV at its time; returns its id (1, 2, … per CSV, as the exact
    /// engine numbers them).
    pub fn snapshot(&mut self, csv: usize) -> Result<u64> {
        let c = self.csv_mut(csv)?;
        if c.snaps.iter().filter(|s| s.live).count() >= MAX_SNAPSHOTS {
            return Err(Error::State(format!(
                "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED: the volume already has {MAX_SNAPSHOTS} \
                 live snapshots"
            )));
        }
        let id = c.next_id;
        c.next_id += 1;
        let running = c.diff_area_now_at(c.t);
        c.snaps.push(Snap {
            id,
            tau: c.t,
            live: true,
        });
        // A new snapshot holds nothing yet: the running diff area stays current.
        if let Some(v) = running {
            let ids: Vec<u64> = c.live().iter().map(|s| s.id).collect();
            c.diff_area = Some((c.t, ids, v));
        }
        Ok(id)
    }

    /// Deletes a live snapshot; returns the expected diff-area bytes freed.
    pub fn delete_snapshot(&mut self, csv: usize, snapshot: u64) -> Result<f64> {
        let before = self.diff_area_bytes(csv)?;
        let c = self.csv_mut(csv)?;
        let s = c
            .snaps
            .iter_mut()
            .find(|s| s.id == snapshot && s.live)
            .ok_or_else(|| {
                Error::invalid("snapshot_id", format!("{snapshot} is not a live snapshot"))
            })?;
        s.live = false;
        let chunks = c.diff_area_now();
        // Keep the figure just summed: the next question (free space, the next window) needs it.
        let ids: Vec<u64> = c.live().iter().map(|s| s.id).collect();
        c.diff_area = Some((c.t, ids, chunks));
        Ok((before - chunks * c.chunk_size as f64).max(0.0))
    }

    pub fn is_live(&self, csv: usize, snapshot: u64) -> Result<bool> {
        Ok(self
            .csv(csv)?
            .snaps
            .iter()
            .any(|s| s.id == snapshot && s.live))
    }

    /// Expected bytes in the CSV's diff area now.
    pub fn diff_area_bytes(&self, csv: usize) -> Result<f64> {
        let c = self.csv(csv)?;
        Ok(c.diff_area_now() * c.chunk_size as f64)
    }

    /// The most the expected diff area held (it grows between events: its peaks are just
    /// before deletions and at the ends of windows).
    pub fn peak_diff_area_bytes(&self, csv: usize) -> Result<f64> {
        let c = self.csv(csv)?;
        Ok(c.peak_chunks * c.chunk_size as f64)
    }

    /// Expected chunks copied on the CSV since the start.
    pub fn total_chunks_copied(&self, csv: usize) -> Result<f64> {
        Ok(self.csv(csv)?.total_copied)
    }

    /// Expected bytes of the CSV in use (its allocation high-water mark).
    pub fn csv_used_bytes(&self, csv: usize) -> Result<f64> {
        let c = self.csv(csv)?;
        let mut used = c.base_used as f64;
        let cache = &mut c.cache.lock();
        for v in &c.vms {
            let e = times(cache, v, &v.active, 0.0, c.t);
            used += vm::allocated(&v.profile, &e, false).mean * v.profile.layout.block_size as f64;
        }
        Ok(used)
    }

    pub fn set_running(&mut self, vm: usize, running: bool) -> Result<()> {
        let &(c, p) = self
            .index
            .get(vm)
            .ok_or_else(|| Error::invalid("vm", format!("{vm} is not a VM id")))?;
        self.csvs[c].vms[p].running = running;
        Ok(())
    }

    /// Blocks allocated by the VM's writes since it was added (expected, with variance).
    pub fn blocks_allocated(&self, vm: usize) -> Result<Est> {
        let (c, v) = self.vm(vm)?;
        if v.profile.layout.kind == DiskKind::Fixed {
            return Ok(Est::default());
        }
        let e = times(&mut c.cache.lock(), v, &v.active, 0.0, c.t);
        Ok(vm::allocated(&v.profile, &e, true))
    }

    /// The VHDX file's size now (what a full backup of the disk reads).
    pub fn file_size(&self, vm: usize) -> Result<Est> {
        let (_, v) = self.vm(vm)?;
        let l = &v.profile.layout;
        Ok(Est::new(l.initial_file as f64, 0.0)
            + self.blocks_allocated(vm)?.scale(l.block_size as f64))
    }

    /// Payload bytes allocated in the VHDX now.
    pub fn allocated_bytes(&self, vm: usize) -> Result<Est> {
        let (c, v) = self.vm(vm)?;
        let l = &v.profile.layout;
        let bs = l.block_size as f64;
        let a = self.blocks_allocated(vm)?;
        let full = l.blocks as f64 * bs;
        let mut mean = (l.initially as f64) * bs + a.mean * bs;
        if full > l.virtual_size as f64 {
            // Every block allocated: the last one counts only up to the disk's end.
            let all = if l.kind == DiskKind::Fixed || l.initially >= l.blocks {
                1.0
            } else {
                let e = times(&mut c.cache.lock(), v, &v.active, 0.0, c.t);
                vm::all_allocated(&v.profile, &e)
            };
            mean -= (full - l.virtual_size as f64) * all;
        }
        if l.kind == DiskKind::Fixed {
            return Ok(Est::new(l.virtual_size as f64, 0.0));
        }
        Ok(Est::new(mean, a.var * bs * bs))
    }

    /// Change-tracking blocks changed since the VM's tracking was last reset, and the bytes an
    /// incremental backup reads for them.
    pub fn changes(&self, vm: usize) -> Result<(Est, Est)> {
        let (c, v) = self.vm(vm)?;
        let e = times(&mut c.cache.lock(), v, &v.active, v.cbt_reset, c.t);
        Ok(vm::changed(&v.profile, &e, true))
    }

    /// Forgets the VM's changes (after a backup took them).
    pub fn reset_changes(&mut self, vm: usize) -> Result<()> {
        let &(c, p) = self
            .index
            .get(vm)
            .ok_or_else(|| Error::invalid("vm", format!("{vm} is not a VM id")))?;
        let t = self.csvs[c].t;
        self.csvs[c].vms[p].cbt_reset = t;
        Ok(())
    }

    /// Advances every running VM through `[t0, t1)`.
    pub fn advance(&mut self, t0: f64, t1: f64) -> Result<EstimateReport> {
        let all: Vec<(usize, f64)> = (0..self.csvs.len()).map(|c| (c, t0)).collect();
        self.advance_csvs(&all, t1)
    }

    /// The first snapshot CSV `csv`'s full diff area would delete if its VMs ran from `t0` to
    /// `t1` with nothing else happening, and when (the expected diff area reaches the limit);
    /// nothing changes.
    pub fn first_deletion(&self, csv: usize, t0: f64, t1: f64) -> Result<Option<(u64, f64)>> {
        check_window(t0, t1)?;
        let c = self.csv(csv)?;
        if c.limit.is_none() || !c.snaps.iter().any(|s| s.live) {
            return Ok(None);
        }
        let actives = window_actives(c, t0, t1);
        let cache = &mut c.cache.lock();
        if c.could_fill() {
            c.fill_check(csv, &c.allocated_by(cache, &actives, t1, true), t1)?;
        }
        let (deleted, _) = c.deletions(cache, &actives, t0, t1);
        Ok(deleted.into_iter().next())
    }

    /// What CSV `csv`'s window `[t0, t1)` would bring if nothing else happened (as
    /// `ModelCluster::foresee`): the first snapshot the diff-area limit deletes and the
    /// low-space warning, each at its expected instant; never a pause (a window that reaches
    /// the pause level is refused). The cluster is not changed.
    pub fn foresee(&self, csv: usize, t0: f64, t1: f64) -> Result<Foresight> {
        check_window(t0, t1)?;
        let c = self.csv(csv)?;
        let (t0, t1) = (t0.max(c.t), t1.max(c.t));
        let actives = window_actives(c, t0, t1);
        let (_, out) = plan_window(csv, c, &mut c.cache.lock(), actives, t0, t1, false, false)?;
        Ok(Foresight {
            deletion: out.deleted.first().map(|&(_, id, t)| (id, t)),
            pause: None,
            low_space: out.low_space,
        })
    }

    /// Sets where CSV `csv`'s diff area lives and the free-space levels Hyper-V acts at (as
    /// `ModelCluster::set_space_rules`).
    pub fn set_space_rules(&mut self, csv: usize, rules: SpaceRules) -> Result<()> {
        let n = self.csvs.len();
        self.csvs
            .get_mut(csv)
            .ok_or_else(|| Error::invalid("csv", format!("{csv} is not a CSV id (there are {n})")))?
            .rules = rules;
        Ok(())
    }

    /// CSV `csv`'s expected free bytes now.
    pub fn free_bytes(&self, csv: usize) -> Result<f64> {
        let c = self.csv(csv)?;
        Ok(c.free_with(c.used_now(), c.diff_area_now()))
    }

    /// When CSV `csv`'s expected free space first fell below its warning level, if it did.
    pub fn low_space_at(&self, csv: usize) -> Result<Option<f64>> {
        Ok(self.csv(csv)?.warned)
    }

    /// Advances the running VMs of some CSVs, each from its own time to `t1` (as
    /// `ModelCluster::advance_csvs`).
    pub fn advance_csvs(&mut self, from: &[(usize, f64)], t1: f64) -> Result<EstimateReport> {
        self.advance_csvs_with(from, t1, true)
    }

    /// [`EstimateCluster::advance_csvs`], the copies' variances left out (zero) unless
    /// `variances`: a caller that keeps only the expectations saves their second-order terms
    /// (the expectations are the same either way).
    pub fn advance_csvs_with(
        &mut self,
        from: &[(usize, f64)],
        t1: f64,
        variances: bool,
    ) -> Result<EstimateReport> {
        let mut start: Vec<Option<f64>> = vec![None; self.csvs.len()];
        for &(c, t0) in from {
            check_window(t0, t1)?;
            let slot = start
                .get_mut(c)
                .ok_or_else(|| Error::invalid("csv", format!("{c} is not a CSV id")))?;
            if slot.replace(t0).is_some() {
                return Err(Error::invalid("csv", format!("{c} is listed twice")));
            }
        }
        // Each CSV's window is worked out on the CSV as it is and applied only when every CSV's
        // succeeded (a refused window changes nothing).
        let results: Vec<Result<(usize, Commit, CsvOutcome)>> = self
            .csvs
            .par_iter()
            .enumerate()
            .filter_map(|(ci, csv)| {
                start[ci].map(|t0| {
                    let cache = &mut csv.cache.lock();
                    let actives = window_actives(csv, t0, t1);
                    let (commit, out) =
                        plan_window(ci, csv, cache, actives, t0, t1, true, variances)?;
                    Ok((ci, commit, out))
                })
            })
            .collect();
        let done = results.into_iter().collect::<Result<Vec<_>>>()?;
        let mut report = EstimateReport::default();
        for (ci, commit, out) in done {
            self.csvs[ci].apply(commit);
            report.vms.extend(out.vms);
            report.deleted.extend(out.deleted);
            report.low_space.extend(out.low_space.map(|t| (ci, t)));
            report.lowest_free.push((ci, out.lowest_free));
            report.peak_diff.push((ci, out.peak_diff));
        }
        report.deleted.sort_by(|a, b| a.2.total_cmp(&b.2));
        report.low_space.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(report)
    }
}

/// The VMs' activity as it will be once `[t0, t1)` has run.
fn window_actives(c: &Csv, t0: f64, t1: f64) -> Vec<Intervals> {
    c.vms
        .iter()
        .map(|v| {
            let mut a = v.active.clone();
            if v.running {
                a.add(t0, t1);
            }
            a
        })
        .collect()
}

/// What one CSV's window did.
struct CsvOutcome {
    vms: Vec<(usize, VmEstimate)>,
    deleted: Vec<(usize, u64, f64)>,
    low_space: Option<f64>,
    lowest_free: f64,
    peak_diff: f64,
}

/// What a window changes in its CSV (applied by [`Csv::apply`] once every CSV's window of the
/// call succeeded).
struct Commit {
    /// The VMs' activity including the window.
    actives: Vec<Intervals>,
    t1: f64,
    /// Snapshots the diff-area limit deleted.
    deleted: Vec<u64>,
    /// The expected diff area (chunks) and files (bytes) at `t1`.
    diff_area: f64,
    used: f64,
    /// Chunks the window copied.
    copied: f64,
    low_space: Option<f64>,
}

impl Csv {
    fn apply(&mut self, c: Commit) {
        for (vm, act) in self.vms.iter_mut().zip(c.actives) {
            vm.active = act;
        }
        // Peaks: just before each deletion the diff area was at the limit; at the end,
        // whatever it holds.
        if !c.deleted.is_empty() {
            if let Some(limit) = self.limit {
                self.peak_chunks = self.peak_chunks.max(limit as f64 / self.chunk_size as f64);
            }
        }
        for s in self.snaps.iter_mut() {
            if c.deleted.contains(&s.id) {
                s.live = false;
            }
        }
        self.t = c.t1;
        let ids: Vec<u64> = self.live().iter().map(|s| s.id).collect();
        self.diff_area = Some((c.t1, ids, c.diff_area));
        self.used_now = Some((c.t1, c.used));
        self.peak_chunks = self.peak_chunks.max(c.diff_area);
        self.total_copied += c.copied;
        if c.low_space.is_some() {
            self.warned = c.low_space;
        }
        self.cache.lock().next_window();
    }
}

/// CSV `ci`'s window `[t0, t1)` (`actives`: the VMs' activity including it): what it did and
/// what it changes, the CSV left as it is; `check_fill`: refused if the CSV could fill in it;
/// `variances`: the copies' variances too.
#[expect(clippy::too_many_arguments)]
fn plan_window(
    ci: usize,
    csv: &Csv,
    cache: &mut ExposureCache,
    actives: Vec<Intervals>,
    t0: f64,
    t1: f64,
    check_fill: bool,
    variances: bool,
) -> Result<(Commit, CsvOutcome)> {
    // Each VM's blocks by the end: the fill check's, the free space's and the window's own.
    let allocated_end = csv.allocated_by(cache, &actives, t1, true);
    if check_fill {
        csv.fill_check(ci, &allocated_end, t1)?;
    }
    let newest = csv.live().last().copied();
    let (deleted, live_after) = csv.deletions(cache, &actives, t0, t1);
    // Copies go to the newest snapshot until it is deleted (then there is none left).
    let copy_end = match newest {
        Some(n) => deleted
            .iter()
            .find(|d| d.0 == n.id)
            .map_or(t1, |d| d.1.max(t0)),
        None => t0,
    };
    let mut out = Vec::with_capacity(csv.vms.len());
    let mut copied = 0.0;
    for ((vm, act), &m1) in csv.vms.iter().zip(&actives).zip(&allocated_end) {
        let mut e = VmEstimate::default();
        if vm.running && t1 > t0 {
            let cut = Cut {
                active: act,
                a: t0,
                b: t1,
            };
            let win = cache.get_cut(vm.curve, cut);
            e.ops = vm::ops(&vm.profile, win.e(), &win.set);
            if vm.profile.layout.kind == DiskKind::Dynamic {
                let a0 = times(cache, vm, act, 0.0, t0);
                let m0 = vm::allocated(&vm.profile, &a0, false).mean;
                e.blocks_allocated = Est::new(m1.mean - m0, m1.var);
            }
        }
        if let Some(n) = newest {
            e.chunks_copied = vm_epoch(csv.terms, cache, vm, act, &n, t0, copy_end, variances);
            copied += e.chunks_copied.mean;
        }
        out.push((vm.id, e));
    }
    // The diff area at the end: the running figure plus the window's copies when nothing was
    // deleted and the figure was current; else summed afresh (before anything changes, so a
    // refused window leaves the CSV as it was).
    let now = match csv.diff_area_now_at(t0) {
        Some(b) if deleted.is_empty() => b + copied,
        _ => csv.diff_area(cache, &actives, &live_after, t1),
    };
    let used = csv.used_with(&allocated_end);
    let (lowest_free, peak_diff, low_space) =
        csv.space(ci, cache, &actives, t0, t1, &deleted, now, used)?;
    debug_assert_eq!(
        csv.live()
            .iter()
            .filter(|s| !deleted.iter().any(|d| d.0 == s.id))
            .count(),
        live_after.len()
    );
    let commit = Commit {
        actives,
        t1,
        deleted: deleted.iter().map(|d| d.0).collect(),
        diff_area: now,
        used,
        copied,
        low_space,
    };
    let outcome = CsvOutcome {
        vms: out,
        deleted: deleted.into_iter().map(|(id, t)| (ci, id, t)).collect(),
        low_space,
        lowest_free,
        peak_diff,
    };
    Ok((commit, outcome))
}
