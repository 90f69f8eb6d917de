//! The modelled cluster: CSVs with copy-on-write, VMs with their disks and workloads.
//!
//! `advance(t0, t1)` moves every running VM through a window of simulated time: each VM's guest
//! writes are generated, marked in its change tracker, mapped through its VHDX layout and file
//! extents onto its CSV, and applied to the CSV's copy-on-write tracker. CSVs are independent, so
//! they advance in parallel (rayon); inside a CSV the work is sequential in VM order, which keeps
//! volume allocation — and so every figure — the same whatever the thread count.
//!
//! Copy-on-write attribution: the VMs of a CSV occupy disjoint chunks (extents are 1 MiB aligned),
//! so when no snapshot can be deleted during the window, each VM's writes are applied as one batch
//! and its copies are its own. When the diff-area limit could be reached, the CSV's writes are
//! merged in time order and applied one by one, so the snapshots die at the right write.

use rayon::prelude::*;

use super::layout::{DiskKind, FileExtents, Piece, VhdxModel};
use super::spec::{Generator, ReadCount, WorkloadSpec, WriteBatch};
use crate::cbt::ChangeTracker;
use crate::cow::CowTracker;
use crate::error::{Error, Result};

const MIB: u64 = 1 << 20;

/// One VM's disk and workload.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub csv: usize,
    pub disk_size: u64,
    /// Bytes of the disk allocated when the simulation starts (dynamic disks).
    pub allocated: u64,
    pub block_size: u64,
    pub kind: DiskKind,
    pub spec: WorkloadSpec,
    /// The VM's stream key (derive it from the scenario seed and the VM's identity).
    pub seed: u64,
    /// Changed-block tracking granularity.
    pub cbt_block_size: u64,
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
    /// Writes dropped because the CSV had no free space for the block they needed.
    pub dropped_writes: u64,
}

impl VmTotals {
    fn add(&mut self, o: &VmTotals) {
        self.writes += o.writes;
        self.bytes_written += o.bytes_written;
        self.reads += o.reads;
        self.bytes_read += o.bytes_read;
        self.chunks_copied += o.chunks_copied;
        self.blocks_allocated += o.blocks_allocated;
        self.dropped_writes += o.dropped_writes;
    }
}

/// What a window did.
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    /// Per VM, indexed by VM id.
    pub vms: Vec<VmTotals>,
    /// Snapshots deleted because a diff area filled: (CSV, snapshot id, time).
    pub deleted: Vec<(usize, u64, f64)>,
}

#[derive(Debug, Clone)]
struct Vm {
    id: usize,
    gen: Generator,
    disk: VhdxModel,
    extents: FileExtents,
    cbt: ChangeTracker,
    running: bool,
    totals: VmTotals,
}

#[derive(Debug, Clone)]
struct Csv {
    cow: CowTracker,
    size: u64,
    /// Volume allocation high-water mark: the next free byte (1 MiB aligned).
    next_free: u64,
    vms: Vec<Vm>,
}

/// Scratch space of one CSV's window.
#[derive(Default)]
struct Scratch {
    /// Per VM of the CSV: its guest writes of the window, and their pieces.
    guest: Vec<WriteBatch>,
    pieces: Vec<Pieces>,
    accepted_offs: Vec<u64>,
    accepted_lens: Vec<u32>,
    vol_offs: Vec<u64>,
    vol_lens: Vec<u32>,
    vol_times: Vec<f64>,
    /// Per VM of the CSV: its range in `vol_*`, and its window counters.
    ranges: Vec<(usize, usize)>,
}

/// One VM's pieces of a window: its file writes, and where they land on the volume.
#[derive(Default)]
struct Pieces {
    file_offs: Vec<u64>,
    file_lens: Vec<u32>,
    vol_offs: Vec<u64>,
    vol_lens: Vec<u32>,
}

impl Pieces {
    fn clear(&mut self) {
        self.file_offs.clear();
        self.file_lens.clear();
        self.vol_offs.clear();
        self.vol_lens.clear();
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
        });
        Ok(self.csvs.len() - 1)
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
        let gen = Generator::new(cfg.spec, cfg.disk_size, cfg.seed)?;
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
        c.cow.create_snapshot(alloc)
    }

    pub fn delete_snapshot(&mut self, csv: usize, snapshot: u64) -> Result<u64> {
        self.csv_mut(csv)?.cow.delete_snapshot(snapshot)
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

    /// Ends every VM's writer session on its disk (the next write rewrites the VHDX headers).
    pub fn close_sessions(&mut self) {
        for c in &mut self.csvs {
            for v in &mut c.vms {
                v.disk.close_session();
            }
        }
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
    /// diff-area limit or no snapshot, or the window fills nothing.
    pub fn first_deletion(&self, csv: usize, t0: f64, t1: f64) -> Result<Option<(u64, f64)>> {
        if !(t0.is_finite() && t1.is_finite() && t0 >= 0.0 && t1 >= t0) {
            return Err(Error::invalid(
                "window",
                format!("[{t0}, {t1}): expected 0 <= t0 <= t1, finite"),
            ));
        }
        let c = self.csv(csv)?;
        if c.cow.diff_area_limit().is_none() || c.cow.snapshot_count() == 0 {
            return Ok(None);
        }
        let mut copy = c.clone();
        let (_, deleted) = advance_csv(csv, &mut copy, t0, t1)?;
        Ok(deleted
            .into_iter()
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(_, id, t)| (id, t)))
    }

    /// Advances the running VMs of some CSVs, each from its own time to `t1`: `from` lists
    /// `(csv, t0)` pairs (each CSV at most once). CSVs are independent, so a caller may keep
    /// each at its own point in time and bring only the ones it looks at up to date; the
    /// report's VMs on other CSVs read zero.
    pub fn advance_csvs(&mut self, from: &[(usize, f64)], t1: f64) -> Result<WindowReport> {
        let mut start: Vec<Option<f64>> = vec![None; self.csvs.len()];
        for &(c, t0) in from {
            if !(t0.is_finite() && t1.is_finite() && t0 >= 0.0 && t1 >= t0) {
                return Err(Error::invalid(
                    "window",
                    format!("[{t0}, {t1}): expected 0 <= t0 <= t1, finite"),
                ));
            }
            let slot = start
                .get_mut(c)
                .ok_or_else(|| Error::invalid("csv", format!("{c} is not a CSV id")))?;
            if slot.replace(t0).is_some() {
                return Err(Error::invalid("csv", format!("{c} is listed twice")));
            }
        }
        let results: Vec<Result<CsvOutcome>> = self
            .csvs
            .par_iter_mut()
            .enumerate()
            .filter_map(|(ci, csv)| start[ci].map(|t0| advance_csv(ci, csv, t0, t1)))
            .collect();
        let mut report = WindowReport {
            vms: vec![VmTotals::default(); self.index.len()],
            deleted: Vec::new(),
        };
        for r in results {
            let (vms, deleted) = r?;
            for (id, t) in vms {
                report.vms[id] = t;
            }
            report.deleted.extend(deleted);
        }
        report.deleted.sort_by(|a, b| a.2.total_cmp(&b.2));
        Ok(report)
    }
}

type CsvOutcome = (Vec<(usize, VmTotals)>, Vec<(usize, u64, f64)>);

fn advance_csv(ci: usize, csv: &mut Csv, t0: f64, t1: f64) -> Result<CsvOutcome> {
    // Scratch buffers live per thread, reused window after window (taken out while in use: a
    // thread waiting inside rayon may run another CSV's window meanwhile).
    let mut s = SCRATCH.with(|cell| cell.take());
    s.clear();
    let out = advance_csv_with(ci, csv, t0, t1, &mut s);
    SCRATCH.with(|cell| cell.replace(s));
    out
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl Scratch {
    fn clear(&mut self) {
        self.guest.iter_mut().for_each(WriteBatch::clear);
        self.accepted_offs.clear();
        self.accepted_lens.clear();
        self.vol_offs.clear();
        self.vol_lens.clear();
        self.vol_times.clear();
        self.ranges.clear();
    }
}

fn advance_csv_with(
    ci: usize,
    csv: &mut Csv,
    t0: f64,
    t1: f64,
    s: &mut Scratch,
) -> Result<CsvOutcome> {
    let mut window: Vec<VmTotals> = vec![VmTotals::default(); csv.vms.len()];
    let block_room = |next_free: u64, blocks: u64, block: u64| next_free + blocks * block;
    let has_snapshot = csv.cow.snapshot_count() > 0;
    // Without a diff-area limit no write can delete a snapshot: each VM's pieces go to the
    // copy-on-write tracker as soon as they are mapped (the same order as the batch path below,
    // so the same result), and nothing is kept for the CSV as a whole.
    let at_once = has_snapshot && csv.cow.diff_area_limit().is_none();
    // The VMs' streams are independent: generate them all in parallel first (a CSV's window
    // is often the only one running: a protocol step looks at one CSV).
    let n = csv.vms.len();
    if s.guest.len() < n {
        s.guest.resize_with(n, WriteBatch::default);
    }
    let reads: Vec<ReadCount> = csv
        .vms
        .par_iter()
        .zip(s.guest[..n].par_iter_mut())
        .map(|(vm, batch)| {
            batch.clear();
            if vm.running {
                vm.gen.generate(t0, t1, batch)
            } else {
                ReadCount::default()
            }
        })
        .collect();
    // When even the worst case (every write allocating every block it touches, each block
    // growing the file by itself plus up to 1 MiB of alignment, and one more growth unit per
    // file) fits on the volume, no write can be dropped: every write is accepted, and the
    // change trackers are marked in parallel too.
    let worst: u64 = csv
        .vms
        .iter()
        .zip(&s.guest[..n])
        .map(|(vm, b)| {
            let block = vm.disk.block_size();
            let blocks: u64 = b.lengths.iter().map(|&l| u64::from(l) / block + 2).sum();
            blocks.saturating_mul(block + MIB).saturating_add(block)
        })
        .fold(0u64, u64::saturating_add);
    let roomy = csv.next_free.saturating_add(worst) <= csv.size;
    if roomy {
        csv.vms
            .par_iter_mut()
            .zip(s.guest[..n].par_iter())
            .try_for_each(|(vm, b)| vm.cbt.mark(&b.offsets, &b.lengths).map(|_| ()))?;
    }
    if roomy && (at_once || !has_snapshot) {
        // No write can be dropped and copy-on-write needs no time order: map every VM's writes
        // in parallel too, in three steps that give the sequential result — each disk's layout
        // (its own), then the files' growth on the volume (in VM order, as the sequential path
        // grows them: each file's growth units are the next free ones), then file → volume.
        // Only the copy-on-write of the CSV's tracker is left in VM order.
        if s.pieces.len() < n {
            s.pieces.resize_with(n, Pieces::default);
        }
        let mapped: Vec<(u64, u64)> = csv
            .vms
            .par_iter_mut()
            .zip(s.guest[..n].par_iter())
            .zip(s.pieces[..n].par_iter_mut())
            .map(|((vm, g), p)| {
                p.clear();
                let (mut allocated, mut end) = (0, 0);
                for (&off, &len) in g.offsets.iter().zip(&g.lengths) {
                    allocated += vm.disk.map_write(off, len, &mut |piece: Piece| {
                        end = end.max(piece.offset + u64::from(piece.length));
                        p.file_offs.push(piece.offset);
                        p.file_lens.push(piece.length);
                    });
                }
                (allocated, end)
            })
            .collect();
        for (vm, &(_, end)) in csv.vms.iter_mut().zip(&mapped) {
            while vm.extents.mapped() < end {
                vm.extents.grow(csv.next_free);
                csv.next_free += vm.extents.unit();
            }
        }
        if has_snapshot {
            csv.vms
                .par_iter()
                .zip(s.pieces[..n].par_iter_mut())
                .for_each(|(vm, p)| {
                    let Pieces {
                        file_offs,
                        file_lens,
                        vol_offs,
                        vol_lens,
                    } = p;
                    for (&offset, &length) in file_offs.iter().zip(file_lens.iter()) {
                        vm.extents
                            .to_volume(Piece { offset, length }, &mut |vp: Piece| {
                                vol_offs.push(vp.offset);
                                vol_lens.push(vp.length);
                            });
                    }
                });
        }
        for (pos, vm) in csv.vms.iter().enumerate() {
            s.ranges.push((0, 0));
            if !vm.running {
                continue;
            }
            let (g, p, w) = (&s.guest[pos], &s.pieces[pos], &mut window[pos]);
            w.reads = reads[pos].reads;
            w.bytes_read = reads[pos].bytes;
            w.writes = g.len() as u64;
            w.bytes_written = g.lengths.iter().map(|&l| u64::from(l)).sum();
            w.blocks_allocated = mapped[pos].0;
            if has_snapshot {
                let out = csv.cow.apply_writes(&p.vol_offs, &p.vol_lens, None)?;
                w.chunks_copied += out.chunks_copied;
            }
        }
    } else {
        for (pos, vm) in csv.vms.iter_mut().enumerate() {
            let start = s.vol_offs.len();
            if !vm.running {
                s.ranges.push((start, start));
                continue;
            }
            let guest = &s.guest[pos];
            let w = &mut window[pos];
            w.reads = reads[pos].reads;
            w.bytes_read = reads[pos].bytes;
            s.accepted_offs.clear();
            s.accepted_lens.clear();
            let Vm { disk, extents, .. } = vm;
            let largest = guest.lengths.iter().copied().max().unwrap_or(0);
            for i in 0..guest.len() {
                let (off, len, time) = (guest.offsets[i], guest.lengths[i], guest.times[i]);
                if !roomy {
                    // Room on the volume for the blocks this write would allocate? Otherwise the
                    // write fails (Hyper-V pauses a VM whose CSV is full); it is counted, not
                    // applied. (No need to ask the layout while even the largest write's blocks
                    // would fit.)
                    let bound = u64::from(largest) / disk.block_size() + 2;
                    if block_room(csv.next_free, bound, disk.block_size()) > csv.size {
                        let needed = disk.blocks_to_allocate(off, len);
                        if needed > 0
                            && block_room(csv.next_free, needed, disk.block_size()) > csv.size
                        {
                            w.dropped_writes += 1;
                            continue;
                        }
                    }
                    s.accepted_offs.push(off);
                    s.accepted_lens.push(len);
                }
                w.writes += 1;
                w.bytes_written += u64::from(len);
                let next_free = &mut csv.next_free;
                let (vol_offs, vol_lens, vol_times) =
                    (&mut s.vol_offs, &mut s.vol_lens, &mut s.vol_times);
                w.blocks_allocated += disk.map_write(off, len, &mut |piece: Piece| {
                    while extents.mapped() < piece.offset + u64::from(piece.length) {
                        extents.grow(*next_free);
                        *next_free += extents.unit();
                    }
                    extents.to_volume(piece, &mut |vp: Piece| {
                        vol_offs.push(vp.offset);
                        vol_lens.push(vp.length);
                        vol_times.push(time);
                    });
                });
            }
            if !roomy {
                vm.cbt.mark(&s.accepted_offs, &s.accepted_lens)?;
            }
            if at_once {
                let out = csv
                    .cow
                    .apply_writes(&s.vol_offs[start..], &s.vol_lens[start..], None)?;
                w.chunks_copied += out.chunks_copied;
            }
            if !has_snapshot || at_once {
                s.vol_offs.truncate(start);
                s.vol_lens.truncate(start);
                s.vol_times.truncate(start);
            }
            s.ranges.push((start, s.vol_offs.len()));
        }
    }
    let mut deleted = Vec::new();
    if has_snapshot && !at_once {
        if csv.cow.cannot_overflow(&s.vol_lens) {
            for (pos, &(a, b)) in s.ranges.iter().enumerate() {
                if a < b {
                    let out = csv
                        .cow
                        .apply_writes(&s.vol_offs[a..b], &s.vol_lens[a..b], None)?;
                    window[pos].chunks_copied += out.chunks_copied;
                }
            }
        } else {
            // Time order across the CSV's VMs: stable, so one VM's pieces keep their order.
            let mut owner = vec![0usize; s.vol_offs.len()];
            for (pos, &(a, b)) in s.ranges.iter().enumerate() {
                owner[a..b].iter_mut().for_each(|o| *o = pos);
            }
            let mut order: Vec<usize> = (0..s.vol_offs.len()).collect();
            order.sort_by(|&x, &y| s.vol_times[x].total_cmp(&s.vol_times[y]));
            // Apply write by write so a deletion carries the time of the write that caused it.
            for &i in &order {
                let out = csv
                    .cow
                    .apply_writes(&s.vol_offs[i..=i], &s.vol_lens[i..=i], None)?;
                window[owner[i]].chunks_copied += out.chunks_copied;
                for id in out.deleted_snapshots {
                    deleted.push((ci, id, s.vol_times[i]));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(csv.vms.len());
    for (vm, w) in csv.vms.iter_mut().zip(window) {
        vm.totals.add(&w);
        out.push((vm.id, w));
    }
    Ok((out, deleted))
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
    fn full_volume_drops_writes_that_need_new_blocks() {
        let mut c = ModelCluster::new();
        c.add_csv(64 * MIB, 16384, None).unwrap();
        c.add_vm(VmConfig {
            csv: 0,
            disk_size: 4 << 30,
            allocated: 0,
            block_size: 32 * MIB,
            kind: DiskKind::Dynamic,
            spec: spec(500.0),
            seed: 1,
            cbt_block_size: 65536,
        })
        .unwrap();
        let r = c.advance(0.0, 10.0).unwrap();
        assert!(r.vms[0].dropped_writes > 0);
        assert!(c.csv_used_bytes(0).unwrap() <= 64 * MIB);
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
