//! The modelled cluster: CSVs with copy-on-write, VMs with their disks and workloads.
//!
//! `advance(t0, t1)` moves every running VM through a window of simulated time: each VM's guest
//! writes are generated, marked in its change tracker, mapped through its VHDX layout and file
//! extents onto its CSV, and applied to the CSV's copy-on-write tracker. CSVs are independent, so
//! they advance in parallel (rayon); inside a CSV whatever depends on order — volume allocation,
//! copy-on-write credit — follows VM order (`cluster/window.rs` says how each parallel step keeps
//! it), which keeps every figure the same whatever the thread count.
//!
//! Copy-on-write attribution: the VMs of a CSV occupy disjoint chunks (extents are 1 MiB aligned),
//! so when no snapshot can be deleted during the window, the CSV's writes are applied in one call,
//! each VM's a group, and each VM's copies are its own. When the diff-area limit could be reached, the CSV's writes are
//! merged in time order and applied one by one, so the snapshots die at the right write.
//!
//! Free space: a CSV's free bytes are its size less its files and, when volsnap keeps the diff
//! area on the volume itself (its default), less the diff area. Below the CSV's thresholds
//! ([`SpaceRules`]) the engine reports a low-space warning and pauses the VMs with dynamic disks
//! (Hyper-V's paused-critical) at the write that crossed it; a write is never dropped
//! ([`capacity`]).

use rayon::prelude::*;

mod capacity;
mod materialize;
mod window;
pub use capacity::{Foresight, Pause, PauseCause, SpaceRules};
pub use materialize::RealWindow;
use window::{advance_csv, quiet_io};

use super::layout::{DiskKind, FileExtents, Piece, VhdxModel};
use super::spec::{DiskData, Generator, WorkloadSpec};
use crate::cbt::ChangeTracker;
use crate::cow::CowTracker;
use crate::error::{check_window, Error, Result};

const MIB: u64 = 1 << 20;

/// One VM's disk and workload.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub csv: usize,
    pub disk_size: u64,
    /// Bytes of the disk allocated when the simulation starts (dynamic disks), and the guest's
    /// data its overwrites land in (any kind; 0: nothing is known of it, the whole disk is taken
    /// to hold data — [`VmConfig::data`]).
    pub allocated: u64,
    pub block_size: u64,
    pub kind: DiskKind,
    pub spec: WorkloadSpec,
    /// The VM's stream key (derive it from the scenario seed and the VM's identity).
    pub seed: u64,
    /// Changed-block tracking granularity.
    pub cbt_block_size: u64,
}

impl VmConfig {
    /// The disk as its stream sees it: its data is the allocated extent (the whole disk when
    /// `allocated` is 0).
    pub fn data(&self) -> DiskData {
        DiskData {
            size: self.disk_size,
            used: if self.allocated > 0 {
                self.allocated
            } else {
                self.disk_size
            },
        }
    }
}

/// Counters of one VM over a window (or since the start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmTotals {
    pub writes: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub bytes_read: u64,
    /// CSV chunks copied to the diff area because of this VM's writes (data and metadata).
    pub chunks_copied: u64,
    pub blocks_allocated: u64,
}

impl VmTotals {
    fn add(&mut self, o: &VmTotals) {
        self.writes += o.writes;
        self.bytes_written += o.bytes_written;
        self.reads += o.reads;
        self.bytes_read += o.bytes_read;
        self.chunks_copied += o.chunks_copied;
        self.blocks_allocated += o.blocks_allocated;
    }
}

/// A snapshot volsnap deleted: (CSV, snapshot id, time of the write that deleted it).
pub type Deletion = (usize, u64, f64);

/// What a window did.
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    /// Per VM, indexed by VM id.
    pub vms: Vec<VmTotals>,
    /// The VMs of the CSVs advanced (the only ones `vms` can have counted), in CSV order.
    pub disks: Vec<usize>,
    /// Snapshots deleted because a diff area filled: (CSV, snapshot id, time).
    pub deleted: Vec<Deletion>,
    /// Of `deleted`, those the diff area could not grow for because the volume it lives on was
    /// full (not its limit): (CSV, snapshot id).
    pub volume_full: Vec<(usize, u64)>,
    /// VMs paused (paused-critical) during the window, in time order.
    pub paused: Vec<Pause>,
    /// CSVs whose free space fell below their warning level during the window: (CSV, time).
    pub low_space: Vec<(usize, f64)>,
    /// Per CSV advanced: the fewest free bytes it had during the window (CSV, bytes).
    pub lowest_free: Vec<(usize, u64)>,
    /// Per CSV advanced: the most bytes its diff area held during the window (CSV, bytes; just
    /// before a deletion, if one shrank it).
    pub peak_diff: Vec<(usize, u64)>,
    /// What the real volumes did (only when something is materialized).
    pub real: Option<RealWindow>,
}

#[derive(Debug, Clone)]
struct Vm {
    id: usize,
    gen: Generator,
    disk: VhdxModel,
    extents: FileExtents,
    cbt: ChangeTracker,
    running: bool,
    /// When the VM was paused because its CSV ran out of space (it issues no I/O since).
    paused: Option<f64>,
    totals: VmTotals,
}

impl Vm {
    /// Whether the VM issues I/O now.
    fn active(&self) -> bool {
        self.running && self.paused.is_none()
    }
}

#[derive(Debug)]
struct Csv {
    cow: CowTracker,
    size: u64,
    /// Volume allocation high-water mark: the next free byte (1 MiB aligned).
    next_free: u64,
    vms: Vec<Vm>,
    /// The real volume and disks of a materialized CSV.
    mat: Option<Box<materialize::MatCsv>>,
    rules: SpaceRules,
    /// When the free space first fell below `rules.warn_below`.
    warned: Option<f64>,
}

impl Csv {
    /// The model of this CSV alone, without its real volume: a copy to run a window on that
    /// must not touch any file.
    fn model_copy(&self) -> Csv {
        Csv {
            cow: self.cow.clone(),
            size: self.size,
            next_free: self.next_free,
            vms: self.vms.clone(),
            mat: None,
            rules: self.rules,
            warned: self.warned,
        }
    }
}

/// Every CSV and VM of a modelled cluster.
#[derive(Debug, Default)]
pub struct ModelCluster {
    csvs: Vec<Csv>,
    /// VM id → (CSV, position in that CSV's list).
    index: Vec<(usize, usize)>,
}

impl ModelCluster {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a CSV of `size` bytes; returns its id.
    pub fn add_csv(
        &mut self,
        size: u64,
        chunk_size: u64,
        diff_area_limit: Option<u64>,
    ) -> Result<usize> {
        let cow = CowTracker::new(size, chunk_size, diff_area_limit)?;
        self.csvs.push(Csv {
            cow,
            size,
            next_free: MIB,
            vms: Vec::new(),
            mat: None,
            rules: SpaceRules::default(),
            warned: None,
        });
        Ok(self.csvs.len() - 1)
    }

    /// Sets where CSV `csv`'s diff area lives and the free-space levels Hyper-V acts at (from
    /// the CSV's next window on).
    pub fn set_space_rules(&mut self, csv: usize, rules: SpaceRules) -> Result<()> {
        self.csv_mut(csv)?.rules = rules;
        Ok(())
    }

    /// CSV `csv`'s free bytes now: its size less its files and (diff area on the volume) its
    /// diff area.
    pub fn free_bytes(&self, csv: usize) -> Result<u64> {
        Ok(capacity::free(self.csv(csv)?))
    }

    /// When VM `vm` was paused because its CSV ran out of space, if it was.
    pub fn paused_at(&self, vm: usize) -> Result<Option<f64>> {
        Ok(self.vm(vm)?.paused)
    }

    /// When CSV `csv`'s free space first fell below its warning level, if it did.
    pub fn low_space_at(&self, csv: usize) -> Result<Option<f64>> {
        Ok(self.csv(csv)?.warned)
    }

    /// Adds a VM; its disk file is placed at the CSV's free space. Returns its id.
    pub fn add_vm(&mut self, cfg: VmConfig) -> Result<usize> {
        let id = self.index.len();
        let csv_count = self.csvs.len();
        let csv = self.csvs.get_mut(cfg.csv).ok_or_else(|| {
            Error::invalid(
                "csv",
                format!("{} is not a CSV id (there are {csv_count})", cfg.csv),
            )
        })?;
        let disk = VhdxModel::new(cfg.disk_size, cfg.block_size, cfg.kind, cfg.allocated)?;
        let data = cfg.data();
        let gen = Generator::for_disk(cfg.spec, data, cfg.seed)?;
        let cbt = ChangeTracker::new(&format!("vm-{id}"), cfg.disk_size, cfg.cbt_block_size)?;
        let initial = disk.file_size().div_ceil(MIB) * MIB;
        if csv.next_free + initial > csv.size {
            return Err(Error::invalid(
                "allocated",
                format!(
                    "VM {id}'s disk file ({initial} bytes) does not fit on CSV {}: {} of {} bytes \
                     are already used",
                    cfg.csv, csv.next_free, csv.size
                ),
            ));
        }
        let extents = FileExtents::new(csv.next_free, disk.file_size(), cfg.block_size);
        csv.next_free += initial;
        self.index.push((cfg.csv, csv.vms.len()));
        csv.vms.push(Vm {
            id,
            gen,
            disk,
            extents,
            cbt,
            running: true,
            paused: None,
            totals: VmTotals::default(),
        });
        Ok(id)
    }

    pub fn csv_count(&self) -> usize {
        self.csvs.len()
    }

    pub fn vm_count(&self) -> usize {
        self.index.len()
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

    fn vm(&self, vm: usize) -> Result<&Vm> {
        let &(c, p) = self
            .index
            .get(vm)
            .ok_or_else(|| Error::invalid("vm", format!("{vm} is not a VM id")))?;
        Ok(&self.csvs[c].vms[p])
    }

    fn vm_mut(&mut self, vm: usize) -> Result<&mut Vm> {
        let &(c, p) = self
            .index
            .get(vm)
            .ok_or_else(|| Error::invalid("vm", format!("{vm} is not a VM id")))?;
        Ok(&mut self.csvs[c].vms[p])
    }

    /// Takes a system-provider snapshot of a CSV now: the allocated extent is the volume's
    /// allocation high-water mark.
    pub fn snapshot(&mut self, csv: usize) -> Result<u64> {
        let c = self.csv_mut(csv)?;
        let alloc = c.next_free.min(c.size);
        let real = match c.mat.as_deref_mut() {
            Some(m) => Some(m.create_snapshot()?),
            None => None,
        };
        let id = c.cow.create_snapshot(alloc)?;
        if let (Some(m), Some(real)) = (c.mat.as_deref_mut(), real) {
            m.map_snapshot(id, real);
        }
        Ok(id)
    }

    /// Deletes a snapshot (and, on a materialized CSV, its real twin if still live); returns the
    /// model's diff-area bytes freed.
    pub fn delete_snapshot(&mut self, csv: usize, snapshot: u64) -> Result<u64> {
        let c = self.csv_mut(csv)?;
        let freed = c.cow.delete_snapshot(snapshot)?;
        if let Some(m) = c.mat.as_deref_mut() {
            m.delete_snapshot(snapshot)?;
        }
        Ok(freed)
    }

    pub fn cow(&self, csv: usize) -> Result<&CowTracker> {
        Ok(&self.csv(csv)?.cow)
    }

    /// Bytes of the CSV in use (allocation high-water mark).
    pub fn csv_used_bytes(&self, csv: usize) -> Result<u64> {
        Ok(self.csv(csv)?.next_free)
    }

    pub fn set_running(&mut self, vm: usize, running: bool) -> Result<()> {
        self.vm_mut(vm)?.running = running;
        Ok(())
    }

    /// Ends every VM's writer session on its disk: closing rewrites both headers if the log was
    /// used (those writes go through copy-on-write like any other), and the next write starts a
    /// new session. Materialized disks are really closed and reopened.
    pub fn close_sessions(&mut self) -> Result<()> {
        for c in &mut self.csvs {
            let mut offs = Vec::new();
            let mut lens = Vec::new();
            for (pos, v) in c.vms.iter_mut().enumerate() {
                offs.clear();
                lens.clear();
                let Vm { disk, extents, .. } = v;
                disk.close_session(&mut |p: Piece| {
                    extents.to_volume(p, &mut |vp: Piece| {
                        offs.push(vp.offset);
                        lens.push(vp.length);
                    });
                });
                if !offs.is_empty() {
                    let out = c.cow.apply_writes(&offs, &lens, None)?;
                    v.totals.chunks_copied += out.chunks_copied;
                }
                if let Some(m) = c.mat.as_deref_mut() {
                    m.close_session(pos)?;
                }
            }
        }
        Ok(())
    }

    /// The spec VM `vm`'s stream runs.
    pub fn workload(&self, vm: usize) -> Result<&WorkloadSpec> {
        Ok(self.vm(vm)?.gen.spec())
    }

    pub fn totals(&self, vm: usize) -> Result<VmTotals> {
        Ok(self.vm(vm)?.totals)
    }

    /// The VHDX file's size now (what a full, file-level backup of the disk reads).
    pub fn file_size(&self, vm: usize) -> Result<u64> {
        Ok(self.vm(vm)?.disk.file_size())
    }

    /// Payload bytes allocated in the VHDX now.
    pub fn allocated_bytes(&self, vm: usize) -> Result<u64> {
        Ok(self.vm(vm)?.disk.allocated_bytes())
    }

    pub fn change_tracker(&self, vm: usize) -> Result<&ChangeTracker> {
        Ok(&self.vm(vm)?.cbt)
    }

    pub fn reset_changes(&mut self, vm: usize) -> Result<()> {
        self.vm_mut(vm)?.cbt.reset();
        Ok(())
    }

    /// Advances every running VM through `[t0, t1)` seconds of simulated time.
    pub fn advance(&mut self, t0: f64, t1: f64) -> Result<WindowReport> {
        let all: Vec<(usize, f64)> = (0..self.csvs.len()).map(|c| (c, t0)).collect();
        self.advance_csvs(&all, t1)
    }

    /// The first snapshot CSV `csv`'s full diff area would delete if its VMs ran from `t0` to
    /// `t1` with nothing else happening, and the time of the write that would delete it; the
    /// cluster is not changed (the window runs on a copy of the CSV). None when the CSV has no
    /// snapshot, or no diff-area limit and its diff area off the volume, or the window fills
    /// nothing.
    pub fn first_deletion(&self, csv: usize, t0: f64, t1: f64) -> Result<Option<(u64, f64)>> {
        Ok(self.foresee(csv, t0, t1)?.deletion)
    }

    /// What CSV `csv`'s window `[t0, t1)` would bring if nothing else happened — the first
    /// snapshot a full diff area (or a full volume) deletes, the first VM paused for want of
    /// space, the low-space warning — each with its time; the cluster is not changed (the window
    /// runs on a copy of the CSV when something can happen at all).
    pub fn foresee(&self, csv: usize, t0: f64, t1: f64) -> Result<Foresight> {
        check_window(t0, t1)?;
        let c = self.csv(csv)?;
        let deletions_possible = c.cow.snapshot_count() > 0
            && (c.cow.diff_area_limit().is_some() || c.rules.diff_area_on_volume);
        if !deletions_possible && !capacity::may_cross(c) {
            return Ok(Foresight::default());
        }
        let mut copy = c.model_copy();
        let out = advance_csv(csv, &mut copy, t0, t1)?;
        Ok(Foresight {
            deletion: out
                .deleted
                .iter()
                .min_by(|a, b| a.2.total_cmp(&b.2))
                .map(|&(_, id, t)| (id, t)),
            pause: out.paused.first().map(|p| p.time),
            low_space: out.low_space,
        })
    }

    /// The bytes each VM of CSV `csv` would read and write in `[t0, t1)` (`(VM id, bytes)`, in
    /// the CSV's order), if that window is short (a few thousand operations) and could change
    /// nothing else — no low-space warning, pause or full volume within its writes' reach, and
    /// no diff-area limit with a snapshot to delete: then the CSV need not advance for a caller
    /// to know them (a window advanced later through `[t0, t1)` counts exactly these). `None`
    /// when it could, or is longer: advance it then. The cluster is not changed.
    pub fn quiet_io(&self, csv: usize, t0: f64, t1: f64) -> Result<Option<Vec<(usize, u64)>>> {
        check_window(t0, t1)?;
        Ok(quiet_io(self.csv(csv)?, t0, t1))
    }

    /// Advances the running VMs of some CSVs, each from its own time to `t1`: `from` lists
    /// `(csv, t0)` pairs (each CSV at most once). CSVs are independent, so a caller may keep
    /// each at its own point in time and bring only the ones it looks at up to date; the
    /// report's VMs on other CSVs read zero.
    pub fn advance_csvs(&mut self, from: &[(usize, f64)], t1: f64) -> Result<WindowReport> {
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
        let results: Vec<(usize, Result<CsvOutcome>)> = match from {
            // One CSV (a protocol step looks at one): the window runs on one of the pool's
            // threads (`rayon::scope` from outside the pool hands it over and waits), so its
            // parallel steps are shared with the other through the pool's own queues instead of
            // each waking the pool from this thread (ws2008r2's ~5,500 single-CSV windows: 9.0
            // -> 7.0 s, `benches/bench_scenario.py -k throughput`); its small steps run there
            // alone.
            // A small window runs where it is called: handing it to the pool and waiting costs
            // two thread switches, a quarter of such a window's time (ws2008r2's ~1,100
            // windows of under a thousand writes; `cargo bench -p vssim-engine -- run`, run1's
            // 0.05 s windows: 204 -> 116 us a window with `is_small`'s bound).
            &[(ci, t0)] => match self.csvs.get_mut(ci) {
                Some(csv) if window::is_small(csv, t0, t1) => {
                    vec![(ci, advance_csv(ci, csv, t0, t1))]
                }
                Some(csv) => vec![(ci, rayon::scope(|_| advance_csv(ci, csv, t0, t1)))],
                None => Vec::new(),
            },
            _ => self
                .csvs
                .par_iter_mut()
                .enumerate()
                .filter_map(|(ci, csv)| start[ci].map(|t0| (ci, advance_csv(ci, csv, t0, t1))))
                .collect(),
        };
        let mut report = WindowReport {
            vms: vec![VmTotals::default(); self.index.len()],
            ..WindowReport::default()
        };
        for (ci, r) in results {
            let out = r?;
            for (id, t) in out.vms {
                report.vms[id] = t;
                report.disks.push(id);
            }
            report.deleted.extend(out.deleted);
            report.volume_full.extend(out.volume_full);
            report.paused.extend(out.paused);
            report.low_space.extend(out.low_space.map(|t| (ci, t)));
            report.lowest_free.push((ci, out.lowest_free));
            report.peak_diff.push((ci, out.peak_diff));
        }
        report.deleted.sort_by(|a, b| a.2.total_cmp(&b.2));
        report.paused.sort_by(|a, b| a.time.total_cmp(&b.time));
        report.low_space.sort_by(|a, b| a.1.total_cmp(&b.1));
        report.real = self.collect_real()?;
        Ok(report)
    }
}

/// What one CSV's window did.
#[derive(Debug, Default)]
struct CsvOutcome {
    /// (VM id, its window's counters).
    vms: Vec<(usize, VmTotals)>,
    deleted: Vec<Deletion>,
    volume_full: Vec<(usize, u64)>,
    paused: Vec<Pause>,
    low_space: Option<f64>,
    lowest_free: u64,
    peak_diff: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::{Locality, SizeDist};

    fn spec(iops: f64) -> WorkloadSpec {
        WorkloadSpec {
            iops,
            read_fraction: 0.25,
            sizes: SizeDist::typical(),
            locality: Locality::HotSpot {
                hot_fraction: 0.2,
                hot_share: 0.8,
            },
            diurnal: None,
            growth_per_day: 0.0,
            daily_change: None,
        }
    }

    fn cluster(limit: Option<u64>, csv_size: u64) -> ModelCluster {
        let mut c = ModelCluster::new();
        for _ in 0..3 {
            c.add_csv(csv_size, 16384, limit).unwrap();
        }
        for v in 0..12u64 {
            c.add_vm(VmConfig {
                csv: (v % 3) as usize,
                disk_size: 4 << 30,
                allocated: (v % 4) << 30,
                block_size: 32 * MIB,
                kind: if v % 5 == 0 {
                    DiskKind::Fixed
                } else {
                    DiskKind::Dynamic
                },
                spec: spec(200.0 + v as f64),
                seed: 1000 + v,
                cbt_block_size: 65536,
            })
            .unwrap();
        }
        c
    }

    fn snapshot_all(c: &mut ModelCluster) {
        for csv in 0..c.csv_count() {
            c.snapshot(csv).unwrap();
        }
    }

    #[test]
    fn a_quiet_window_s_bytes_are_the_window_s_counts() {
        // Roomy CSVs, with a snapshot and without: what `quiet_io` says a short window will read
        // and write is what advancing through it (and further) counts, VM by VM; nothing
        // changes.
        for snap in [false, true] {
            let mut c = cluster(None, 100 << 30);
            if snap {
                snapshot_all(&mut c);
            }
            c.advance(0.0, 3.0).unwrap();
            let before: Vec<VmTotals> = (0..c.vm_count()).map(|v| c.totals(v).unwrap()).collect();
            let quiet: Vec<Vec<(usize, u64)>> = (0..c.csv_count())
                .map(|csv| {
                    c.quiet_io(csv, 3.0, 4.5)
                        .unwrap()
                        .expect("a short roomy window")
                })
                .collect();
            assert_eq!(quiet.iter().map(Vec::len).sum::<usize>(), c.vm_count());
            for (v, then) in before.iter().enumerate() {
                assert_eq!(c.totals(v).unwrap(), *then, "asking changed nothing");
            }
            // (Advancing through it in a longer window counts the same writes:
            // `windows_do_not_change_the_outcome`.)
            c.advance(3.0, 4.5).unwrap();
            for (id, bytes) in quiet.into_iter().flatten() {
                let (now, then) = (c.totals(id).unwrap(), before[id]);
                let moved =
                    now.bytes_written + now.bytes_read - then.bytes_written - then.bytes_read;
                assert_eq!(moved, bytes, "VM {id}");
                assert!(bytes > 0);
            }
        }
    }

    #[test]
    fn a_window_that_could_act_is_not_quiet() {
        // A diff-area limit with a snapshot: a write may delete it.
        let mut c = cluster(Some(1 << 30), 100 << 30);
        assert!(c.quiet_io(0, 0.0, 1.0).unwrap().is_some());
        // A long window: advancing it costs what asking would.
        assert!(c.quiet_io(0, 0.0, 30.0).unwrap().is_none());
        snapshot_all(&mut c);
        assert!(c.quiet_io(0, 0.0, 1.0).unwrap().is_none());
        // Free space within reach of Hyper-V's levels (the files take most of a small CSV).
        let mut tight = cluster(None, 11 << 30);
        tight
            .set_space_rules(
                0,
                SpaceRules {
                    diff_area_on_volume: true,
                    warn_below: 2 << 30,
                    pause_below: 200 << 20,
                },
            )
            .unwrap();
        assert!(tight.quiet_io(0, 0.0, 1.0).unwrap().is_none());
        assert!(c.quiet_io(0, 5.0, 1.0).is_err());
        assert!(c.quiet_io(9, 0.0, 1.0).is_err());
    }

    #[test]
    fn windows_do_not_change_the_outcome() {
        let mut a = cluster(None, 100 << 30);
        let mut b = cluster(None, 100 << 30);
        snapshot_all(&mut a);
        snapshot_all(&mut b);
        a.advance(0.0, 30.0).unwrap();
        b.advance(0.0, 7.5).unwrap();
        b.advance(7.5, 30.0).unwrap();
        for vm in 0..a.vm_count() {
            assert_eq!(a.totals(vm).unwrap(), b.totals(vm).unwrap());
            assert_eq!(
                a.change_tracker(vm).unwrap().changed_extents(),
                b.change_tracker(vm).unwrap().changed_extents()
            );
        }
        for csv in 0..3 {
            assert_eq!(
                a.cow(csv).unwrap().diff_area_bytes(),
                b.cow(csv).unwrap().diff_area_bytes()
            );
        }
    }

    #[test]
    fn per_vm_copies_add_up_to_the_csv() {
        let mut c = cluster(None, 100 << 30);
        snapshot_all(&mut c);
        let r = c.advance(0.0, 20.0).unwrap();
        for csv in 0..3 {
            let sum: u64 = (0..c.vm_count())
                .filter(|v| v % 3 == csv)
                .map(|v| r.vms[v].chunks_copied)
                .sum();
            assert_eq!(sum, c.cow(csv).unwrap().total_chunks_copied());
            assert!(sum > 0);
        }
        assert!(r.vms.iter().any(|t| t.blocks_allocated > 0));
    }

    #[test]
    fn time_ordered_path_agrees_with_batch_path() {
        // A limit too close for the batch path, but never actually reached.
        let mut a = cluster(None, 100 << 30);
        let mut b = cluster(Some(4 << 30), 100 << 30);
        snapshot_all(&mut a);
        snapshot_all(&mut b);
        let ra = a.advance(0.0, 60.0).unwrap();
        let rb = b.advance(0.0, 60.0).unwrap();
        assert!(!b.cow(0).unwrap().cannot_overflow(&[u32::MAX; 100_000]));
        assert!(rb.deleted.is_empty());
        assert_eq!(ra.vms, rb.vms);
        for csv in 0..3 {
            // The parallel mapping grew the files where the sequential one did.
            assert_eq!(
                a.csv_used_bytes(csv).unwrap(),
                b.csv_used_bytes(csv).unwrap()
            );
        }
    }

    #[test]
    fn full_diff_area_deletes_snapshots_with_their_time() {
        let mut c = cluster(Some(64 * MIB), 100 << 30);
        snapshot_all(&mut c);
        let r = c.advance(0.0, 60.0).unwrap();
        assert!(!r.deleted.is_empty());
        for &(csv, id, t) in &r.deleted {
            assert!(!c.cow(csv).unwrap().is_live(id));
            assert!((0.0..60.0).contains(&t));
        }
    }

    #[test]
    fn first_deletion_foresees_the_window_without_changing_it() {
        let mut c = cluster(Some(64 * MIB), 100 << 30);
        snapshot_all(&mut c);
        let before = c.cow(0).unwrap().diff_area_bytes();
        let (id, t) = c.first_deletion(0, 0.0, 60.0).unwrap().unwrap();
        assert_eq!(c.cow(0).unwrap().diff_area_bytes(), before);
        assert!(c.cow(0).unwrap().is_live(id));
        // Up to just before that write nothing dies; through it, that snapshot does, then.
        let r = c.advance_csvs(&[(0, 0.0)], t).unwrap();
        assert!(r.deleted.is_empty());
        let r = c.advance_csvs(&[(0, t)], t + 1e-9).unwrap();
        assert_eq!(r.deleted, vec![(0, id, t)]);
        // No limit, or no snapshot: nothing to foresee.
        let mut d = cluster(None, 100 << 30);
        assert_eq!(d.first_deletion(0, 0.0, 60.0).unwrap(), None);
        snapshot_all(&mut d);
        assert_eq!(d.first_deletion(0, 0.0, 60.0).unwrap(), None);
        assert!(d.first_deletion(9, 0.0, 1.0).is_err());
    }

    #[test]
    fn csvs_advanced_separately_reach_the_same_state() {
        let mut a = cluster(None, 100 << 30);
        let mut b = cluster(None, 100 << 30);
        snapshot_all(&mut a);
        snapshot_all(&mut b);
        a.advance(0.0, 20.0).unwrap();
        // CSV 1 in small steps, CSV 0 in one, CSV 2 in two; then a snapshot of CSV 1 at 20 s.
        let r = b.advance_csvs(&[(1, 0.0)], 3.0).unwrap();
        assert_eq!(r.vms[0], VmTotals::default(), "VM 0 is on CSV 0");
        assert!(r.vms[1].writes > 0);
        b.advance_csvs(&[(1, 3.0), (2, 0.0)], 11.0).unwrap();
        b.advance_csvs(&[(0, 0.0), (1, 11.0), (2, 11.0)], 20.0)
            .unwrap();
        for vm in 0..a.vm_count() {
            assert_eq!(a.totals(vm).unwrap(), b.totals(vm).unwrap());
        }
        for csv in 0..3 {
            assert_eq!(
                a.cow(csv).unwrap().total_chunks_copied(),
                b.cow(csv).unwrap().total_chunks_copied()
            );
        }
        assert!(b.advance_csvs(&[(1, 0.0), (1, 0.0)], 1.0).is_err());
        assert!(b.advance_csvs(&[(7, 0.0)], 1.0).is_err());
        assert!(b.advance_csvs(&[(0, 2.0)], 1.0).is_err());
    }

    #[test]
    fn stopped_vms_do_not_write() {
        let mut c = cluster(None, 100 << 30);
        c.set_running(4, false).unwrap();
        let r = c.advance(0.0, 5.0).unwrap();
        assert_eq!(r.vms[4], VmTotals::default());
        assert!(r.vms[5].writes > 0);
    }

    #[test]
    fn bad_input() {
        let mut c = cluster(None, 100 << 30);
        assert!(c.advance(5.0, 1.0).is_err());
        assert!(c.snapshot(9).is_err());
        assert!(c.totals(99).is_err());
        let mut cfg = VmConfig {
            csv: 7,
            disk_size: 1 << 30,
            allocated: 0,
            block_size: 32 * MIB,
            kind: DiskKind::Dynamic,
            spec: spec(1.0),
            seed: 0,
            cbt_block_size: 65536,
        };
        assert!(c.add_vm(cfg.clone()).is_err());
        cfg.csv = 0;
        cfg.disk_size = 200 << 30;
        cfg.allocated = 200 << 30;
        cfg.kind = DiskKind::Fixed;
        assert!(c.add_vm(cfg).is_err(), "does not fit on the CSV");
    }
}
