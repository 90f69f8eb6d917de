//! One CSV's window: its VMs' guest writes generated, mapped through their VHDX layouts onto the
//! volume, and applied to the CSV's copy-on-write tracker.
//!
//! # How this works
//!
//! Every window generates all of the CSV's streams first (in parallel: they are independent),
//! then decides once, from the CSV's state and those writes, which path maps them:
//!
//! - the capacity path ([`capacity::advance_in_time_order`]) when the CSV's free space could
//!   reach a level Hyper-V or volsnap acts at during the window (a warning, a pause, a full
//!   volume): every write of every VM in time order, mapped, copied-on-write and followed by a
//!   look at the free space — the reference path;
//! - [`map_in_parallel`] when copy-on-write needs no time order;
//! - [`map_in_order`] otherwise (a diff-area limit needs the pieces);
//!
//! and then, when the pieces were kept (a diff-area limit), which path applies them:
//! [`apply_per_vm`] when the limit cannot be reached in this window, else
//! [`apply_in_time_order`]. Each function's doc says why its result is the reference's: where
//! the free space cannot reach a threshold, the order files grow in moves their blocks on the
//! volume but not a count (growth lies past every snapshot's extent, so it is never copied), and
//! the cluster tests (`time_ordered_path_agrees_with_batch_path`, `windows_do_not_change_the_
//! outcome`, `capacity_path_agrees_with_the_fast_paths`) check the paths against each other.

use rayon::prelude::*;

use super::{capacity, materialize, Csv, CsvOutcome, Deletion, Vm, VmTotals};
use crate::cow::CowTracker;
use crate::error::Result;
use crate::workload::layout::Piece;
use crate::workload::spec::{ReadCount, WriteBatch};

/// Scratch space of one CSV's window.
#[derive(Default)]
pub(super) struct Scratch {
    /// Per VM of the CSV: its guest writes of the window, and their pieces.
    pub(super) guest: Vec<WriteBatch>,
    pieces: Vec<Pieces>,
    kept: Kept,
    /// Per VM of the CSV: its range in `kept.vol_*`.
    ranges: Vec<(usize, usize)>,
    /// Accepted guest writes of materialized VMs, for the real disks.
    pub(super) mat: Vec<materialize::MatWrite>,
}

/// What the sequential path keeps: one VM's accepted guest writes (for its change tracker), and
/// the CSV's volume pieces with the time of the write each comes from.
#[derive(Default)]
struct Kept {
    accepted_offs: Vec<u64>,
    accepted_lens: Vec<u32>,
    vol_offs: Vec<u64>,
    vol_lens: Vec<u32>,
    vol_times: Vec<f64>,
}

impl Kept {
    fn truncate(&mut self, len: usize) {
        self.vol_offs.truncate(len);
        self.vol_lens.truncate(len);
        self.vol_times.truncate(len);
    }
}

impl Scratch {
    fn clear(&mut self) {
        self.guest.iter_mut().for_each(WriteBatch::clear);
        self.kept.accepted_offs.clear();
        self.kept.accepted_lens.clear();
        self.kept.truncate(0);
        self.ranges.clear();
        self.mat.clear();
    }
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

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// A window of fewer operations than this runs on one thread alone: handing a few hundred
/// writes to the other costs more than it saves (model choice, measured with
/// `benches/bench_scenario.py -k throughput` while every single-CSV window ran on a pool thread:
/// ws2008r2's run took 12.4 s at 16,384, 12.1–12.2 s at 4,096 and 11.6–12.2 s at 1,024; before
/// that, windows under 16 K writes cost 0.2–1.4 µs a write through the pool). A single-CSV
/// window [`is_small`] expects below it now runs on the caller's thread, not handed over.
const SMALL_WINDOW_OPS: f64 = 4096.0;

/// Whether CSV `csv`'s window `[t0, t1)` should have fewer than [`SMALL_WINDOW_OPS`]
/// operations: such a window runs on one thread, the caller's. A second's `n` operations are
/// spread one per `1/n` of it (the generator's strata), so a window holds at most `n` times its
/// length and one more per second it touches; `n` is at most twice a VM's mean rate (a diurnal
/// curve's peak), rounded up. Only the choice of threads depends on it, never a count.
pub(super) fn is_small(csv: &Csv, t0: f64, t1: f64) -> bool {
    let seconds = (t1.ceil() - t0.floor()).max(1.0);
    let most_ops: f64 = csv
        .vms
        .iter()
        .filter(|vm| vm.active())
        .map(|vm| (vm.gen.spec().iops * 2.0 + 1.0) * (t1 - t0) + 2.0 * seconds)
        .sum();
    most_ops < SMALL_WINDOW_OPS
}

/// How a CSV's window runs, decided once from the CSV's state and the window's writes.
#[derive(Debug, Clone, Copy)]
struct Mode {
    has_snapshot: bool,
    /// The free space cannot reach a level anything acts at ([`capacity::window_fits`]).
    roomy: bool,
    /// A snapshot and no diff-area limit: no write can delete a snapshot, so each VM's pieces
    /// go to copy-on-write as soon as they are mapped.
    at_once: bool,
}

impl Mode {
    /// The pieces must be kept for the whole CSV (a diff-area limit may delete snapshots).
    fn keeps_pieces(self) -> bool {
        self.has_snapshot && !self.at_once
    }
}

/// Runs `f` with this thread's scratch buffers, cleared. They live per thread, reused window
/// after window, and are taken out while in use: a thread waiting inside rayon may run another
/// CSV's window meanwhile.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    let mut s = SCRATCH.with(|cell| cell.take());
    s.clear();
    let out = f(&mut s);
    SCRATCH.with(|cell| cell.replace(s));
    out
}

/// Runs CSV `ci`'s window `[t0, t1)`.
pub(super) fn advance_csv(ci: usize, csv: &mut Csv, t0: f64, t1: f64) -> Result<CsvOutcome> {
    with_scratch(|s| advance_csv_with(ci, csv, t0, t1, s))
}

fn advance_csv_with(
    ci: usize,
    csv: &mut Csv,
    t0: f64,
    t1: f64,
    s: &mut Scratch,
) -> Result<CsvOutcome> {
    let mut window: Vec<VmTotals> = vec![VmTotals::default(); csv.vms.len()];
    let reads = generate(csv, t0, t1, s, is_small(csv, t0, t1));
    let small = (s.guest[..csv.vms.len()]
        .iter()
        .map(WriteBatch::len)
        .sum::<usize>() as f64)
        < SMALL_WINDOW_OPS;
    let has_snapshot = csv.cow.snapshot_count() > 0;
    let mode = Mode {
        has_snapshot,
        roomy: capacity::window_fits(csv, &s.guest[..csv.vms.len()]),
        at_once: has_snapshot && csv.cow.diff_area_limit().is_none(),
    };
    let mut out = CsvOutcome::default();
    if !mode.roomy {
        capacity::advance_in_time_order(ci, csv, t0, s, &reads, &mut window, &mut out)?;
    } else if !mode.keeps_pieces() {
        // Nothing can reach a threshold and copy-on-write needs no order: every write is
        // issued, marked and mapped in one pass per VM.
        map_in_parallel(csv, s, &reads, &mut window, mode, small)?;
        out.lowest_free = capacity::free(csv);
        out.peak_diff = csv.cow.diff_area_bytes();
    } else {
        // Nothing can reach a threshold, but a diff-area limit may delete a snapshot: every
        // write is issued and marked at once, and its pieces kept for the copy-on-write.
        let n = csv.vms.len();
        let mark =
            |(vm, b): (&mut Vm, &WriteBatch)| vm.cbt.mark(&b.offsets, &b.lengths).map(|_| ());
        if small {
            csv.vms.iter_mut().zip(&s.guest[..n]).try_for_each(mark)?;
        } else {
            csv.vms
                .par_iter_mut()
                .zip(s.guest[..n].par_iter())
                .try_for_each(mark)?;
        }
        map_in_order(csv, s, &reads, &mut window, mode)?;
        let peak = if csv.cow.cannot_overflow(&s.kept.vol_lens) {
            apply_per_vm(&mut csv.cow, s, &mut window)?;
            csv.cow.diff_area_bytes()
        } else {
            let (deleted, peak) = apply_in_time_order(ci, &mut csv.cow, s, &mut window)?;
            out.deleted = deleted;
            peak
        };
        out.lowest_free = capacity::free_with_diff(csv, peak);
        out.peak_diff = peak;
    }
    if let Some(m) = csv.mat.as_deref_mut() {
        m.apply(ci, &mut s.mat)?;
    }
    out.vms.reserve(csv.vms.len());
    for (vm, w) in csv.vms.iter_mut().zip(window) {
        vm.totals.add(&w);
        out.vms.push((vm.id, w));
    }
    Ok(out)
}

/// The bytes each VM of the CSV reads and writes in `[t0, t1)` (`(VM id, bytes)`, in the CSV's
/// VM order), if that window is short ([`is_small`]) and can change nothing but those counts:
/// no level Hyper-V or volsnap acts at is within its writes' reach ([`capacity::window_fits`])
/// and no diff-area limit can delete a snapshot (none set, or no snapshot). Then every generated
/// write is accepted, and a window advanced later through `[t0, t1)` counts exactly these.
/// `None` otherwise: advance the CSV instead (a longer window's streams would be generated
/// twice for little: its fixed cost, what asking saves, is spread over many writes). The
/// streams are generated into this thread's scratch; the CSV is not changed.
pub(super) fn quiet_io(csv: &Csv, t0: f64, t1: f64) -> Option<Vec<(usize, u64)>> {
    let limit_may_delete = csv.cow.snapshot_count() > 0 && csv.cow.diff_area_limit().is_some();
    if limit_may_delete || !is_small(csv, t0, t1) {
        return None;
    }
    with_scratch(|s| {
        let reads = generate(csv, t0, t1, s, true);
        let n = csv.vms.len();
        capacity::window_fits(csv, &s.guest[..n]).then(|| {
            csv.vms
                .iter()
                .zip(&s.guest[..n])
                .zip(&reads)
                .map(|((vm, g), r)| {
                    let written: u64 = g.lengths.iter().map(|&l| u64::from(l)).sum();
                    (vm.id, written + r.bytes)
                })
                .collect()
        })
    })
}

/// Generates every running VM's stream for the window into `s.guest`, in parallel (the streams
/// are independent, and a CSV's window is often the only one running: a protocol step looks at
/// one CSV; a `small` window on the calling thread); returns each VM's reads.
fn generate(csv: &Csv, t0: f64, t1: f64, s: &mut Scratch, small: bool) -> Vec<ReadCount> {
    let n = csv.vms.len();
    if s.guest.len() < n {
        s.guest.resize_with(n, WriteBatch::default);
    }
    let one = |(vm, batch): (&Vm, &mut WriteBatch)| {
        batch.clear();
        if vm.active() {
            vm.gen.generate(t0, t1, batch)
        } else {
            ReadCount::default()
        }
    };
    if small {
        return csv
            .vms
            .iter()
            .zip(s.guest[..n].iter_mut())
            .map(one)
            .collect();
    }
    csv.vms
        .par_iter()
        .zip(s.guest[..n].par_iter_mut())
        .map(one)
        .collect()
}

/// Fills a VM's window counters from its accepted writes.
fn count_writes(w: &mut VmTotals, reads: ReadCount, lengths: &[u32]) {
    w.reads = reads.reads;
    w.bytes_read = reads.bytes;
    w.writes = lengths.len() as u64;
    w.bytes_written = lengths.iter().map(|&l| u64::from(l)).sum();
}

/// Keeps the accepted writes of a materialized VM for its real disk.
fn keep_for_real_disk(out: &mut Vec<materialize::MatWrite>, pos: usize, g: &WriteBatch) {
    for i in 0..g.len() {
        out.push(materialize::MatWrite {
            pos: pos as u32,
            offset: g.offsets[i],
            length: g.lengths[i],
            time: g.times[i],
        });
    }
}

/// Applies when no threshold can be reached (`mode.roomy`) and copy-on-write needs no time order
/// (no snapshot, or no diff-area limit): every VM's writes are marked and mapped in parallel, in
/// three steps that give the sequential result. Each disk's layout is its own (so mapping it
/// alone is mapping it in order), and so is its change tracker; the files then grow on the volume
/// in VM order, each file's growth units the next free ones, as the sequential path grows them;
/// file → volume is again per VM. The usual write — inside an allocated block, inside one of the
/// file's extents — is mapped onto the volume in the first step ([`map_vm`]); the others' file
/// pieces wait for the files to grow. The CSV tracker's copy-on-write is one call
/// ([`CowTracker::apply_groups`]: each VM's pieces a group in VM order, dealt and applied on the
/// pool's threads), which credits each copy as applying the VMs in turn would — and, the VMs'
/// extents being disjoint, each VM's copies are its own (the order of a VM's own pieces does not
/// change which chunks they copy: with one write's pieces or another's first, a chunk is new
/// exactly once).
fn map_in_parallel(
    csv: &mut Csv,
    s: &mut Scratch,
    reads: &[ReadCount],
    window: &mut [VmTotals],
    mode: Mode,
    small: bool,
) -> Result<()> {
    let n = csv.vms.len();
    if s.pieces.len() < n {
        s.pieces.resize_with(n, Pieces::default);
    }
    let one = |((vm, g), p): ((&mut Vm, &WriteBatch), &mut Pieces)| -> Result<(u64, u64)> {
        vm.cbt.mark(&g.offsets, &g.lengths)?;
        Ok(map_vm(vm, g, p, mode.has_snapshot))
    };
    let mapped: Vec<(u64, u64)> = if small {
        csv.vms
            .iter_mut()
            .zip(&s.guest[..n])
            .zip(s.pieces[..n].iter_mut())
            .map(one)
            .collect::<Result<_>>()?
    } else {
        csv.vms
            .par_iter_mut()
            .zip(s.guest[..n].par_iter())
            .zip(s.pieces[..n].par_iter_mut())
            .map(one)
            .collect::<Result<_>>()?
    };
    // The files grow in VM order, each the next free units (as the sequential path grows them);
    // then the file pieces that waited for it are mapped to the volume.
    let mut waiting = false;
    for ((vm, &(_, end)), p) in csv.vms.iter_mut().zip(&mapped).zip(&s.pieces[..n]) {
        while vm.extents.mapped() < end {
            vm.extents.grow(csv.next_free);
            csv.next_free += vm.extents.unit();
        }
        waiting |= mode.has_snapshot && !p.file_offs.is_empty();
    }
    if waiting {
        let map = |(vm, p): (&Vm, &mut Pieces)| map_to_volume(vm, p);
        if small {
            csv.vms.iter().zip(s.pieces[..n].iter_mut()).for_each(map);
        } else {
            csv.vms
                .par_iter()
                .zip(s.pieces[..n].par_iter_mut())
                .for_each(map);
        }
    }
    for (pos, vm) in csv.vms.iter().enumerate() {
        s.ranges.push((0, 0));
        if !vm.active() {
            continue;
        }
        let (g, w) = (&s.guest[pos], &mut window[pos]);
        if csv.mat.as_deref().is_some_and(|m| m.has_vm(pos)) {
            keep_for_real_disk(&mut s.mat, pos, g);
        }
        count_writes(w, reads[pos], &g.lengths);
        w.blocks_allocated = mapped[pos].0;
    }
    if mode.has_snapshot {
        // One copy-on-write call for the CSV's window, each VM's pieces a group in VM order
        // (an inactive VM's group is empty): the result of applying them VM by VM.
        let groups: Vec<(&[u64], &[u32])> = s.pieces[..n]
            .iter()
            .zip(&csv.vms)
            .map(|(p, vm)| {
                if vm.active() {
                    (&p.vol_offs[..], &p.vol_lens[..])
                } else {
                    (&[][..], &[][..])
                }
            })
            .collect();
        apply_grouped(&mut csv.cow, &groups, window)?;
    }
    Ok(())
}

/// Applies `groups` (one per VM of the CSV, in VM order) in one copy-on-write call and adds each
/// VM's copies to its window counters.
fn apply_grouped(
    cow: &mut CowTracker,
    groups: &[(&[u64], &[u32])],
    window: &mut [VmTotals],
) -> Result<()> {
    let mut copied = vec![0u64; groups.len()];
    cow.apply_groups(groups, &mut copied)?;
    for (w, c) in window.iter_mut().zip(copied) {
        w.chunks_copied += c;
    }
    Ok(())
}

/// Maps one disk's guest writes. The usual write (inside an allocated block: `in_place`) makes
/// no file piece: with `to_volume` (a snapshot needs the volume's pieces) its volume piece is
/// made at once when one file extent holds it, and without, nothing is. Every other write's file
/// pieces are kept for [`map_to_volume`] once the file has grown. Returns the blocks the writes
/// allocated and the end of the file they reach.
fn map_vm(vm: &mut Vm, g: &WriteBatch, p: &mut Pieces, to_volume: bool) -> (u64, u64) {
    p.clear();
    let Vm { disk, extents, .. } = vm;
    let (mut allocated, mut end) = (0, 0);
    for (&off, &len) in g.offsets.iter().zip(&g.lengths) {
        if let Some(at) = disk.in_place(off, len) {
            // `map_write` would emit exactly this piece (and so reach this end) if called.
            end = end.max(at + u64::from(len));
            if !to_volume {
                continue;
            }
            if let Some(v) = extents.contiguous(at, len) {
                p.vol_offs.push(v);
                p.vol_lens.push(len);
                continue;
            }
        }
        allocated += disk.map_write(off, len, &mut |piece: Piece| {
            end = end.max(piece.offset + u64::from(piece.length));
            p.file_offs.push(piece.offset);
            p.file_lens.push(piece.length);
        });
    }
    (allocated, end)
}

/// Maps one disk's file pieces onto the volume (its extents have grown to hold them).
fn map_to_volume(vm: &Vm, p: &mut Pieces) {
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
}

/// Applies when no threshold can be reached but a diff-area limit needs every piece of the CSV
/// kept with its time: VM by VM, write by write, each write mapped, growing the file as it goes,
/// and its volume pieces kept in `s.kept` (VM `pos`'s in `s.ranges[pos]`) for
/// [`apply_per_vm`] or [`apply_in_time_order`].
fn map_in_order(
    csv: &mut Csv,
    s: &mut Scratch,
    reads: &[ReadCount],
    window: &mut [VmTotals],
    mode: Mode,
) -> Result<()> {
    debug_assert!(mode.roomy && mode.keeps_pieces());
    let Csv {
        next_free,
        vms,
        mat,
        ..
    } = csv;
    let kept = &mut s.kept;
    for (pos, vm) in vms.iter_mut().enumerate() {
        let start = kept.vol_offs.len();
        if !vm.active() {
            s.ranges.push((start, start));
            continue;
        }
        let w = &mut window[pos];
        w.reads = reads[pos].reads;
        w.bytes_read = reads[pos].bytes;
        let real = mat
            .as_deref()
            .is_some_and(|m| m.has_vm(pos))
            .then_some((pos, &mut s.mat));
        map_vm_in_order(vm, &s.guest[pos], kept, real, &mut *next_free, w);
        s.ranges.push((start, kept.vol_offs.len()));
    }
    Ok(())
}

/// One VM's writes of [`map_in_order`]: counted, kept for the real disk (`real`: the VM's
/// position and the list), and mapped onto the volume with their times.
fn map_vm_in_order(
    vm: &mut Vm,
    guest: &WriteBatch,
    kept: &mut Kept,
    mut real: Option<(usize, &mut Vec<materialize::MatWrite>)>,
    next_free: &mut u64,
    w: &mut VmTotals,
) {
    let Vm { disk, extents, .. } = vm;
    for i in 0..guest.len() {
        let (off, len, time) = (guest.offsets[i], guest.lengths[i], guest.times[i]);
        if let Some((pos, mat)) = real.as_mut() {
            mat.push(materialize::MatWrite {
                pos: *pos as u32,
                offset: off,
                length: len,
                time,
            });
        }
        w.writes += 1;
        w.bytes_written += u64::from(len);
        let (vol_offs, vol_lens, vol_times) =
            (&mut kept.vol_offs, &mut kept.vol_lens, &mut kept.vol_times);
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
}

/// Applies the kept pieces VM by VM — in one call, each VM's pieces a group
/// ([`CowTracker::apply_groups`]). Applies when the diff-area limit cannot be reached in this
/// window ([`CowTracker::cannot_overflow`]): then no snapshot is deleted, and — the VMs' extents
/// being disjoint — which chunk is copied does not depend on the order of the VMs' writes, so the
/// counts are those of the time order.
fn apply_per_vm(cow: &mut CowTracker, s: &Scratch, window: &mut [VmTotals]) -> Result<()> {
    let k = &s.kept;
    let groups: Vec<(&[u64], &[u32])> = s
        .ranges
        .iter()
        .map(|&(a, b)| (&k.vol_offs[a..b], &k.vol_lens[a..b]))
        .collect();
    apply_grouped(cow, &groups, window)
}

/// Applies the kept pieces in time order across the CSV's VMs, write by write, so that a
/// snapshot the full diff area deletes dies at the write that filled it, which carries its time.
/// Returns the deletions `(CSV, snapshot, time)` and the most the diff area held meanwhile.
fn apply_in_time_order(
    ci: usize,
    cow: &mut CowTracker,
    s: &Scratch,
    window: &mut [VmTotals],
) -> Result<(Vec<Deletion>, u64)> {
    let k = &s.kept;
    let mut owner = vec![0usize; k.vol_offs.len()];
    for (pos, &(a, b)) in s.ranges.iter().enumerate() {
        owner[a..b].iter_mut().for_each(|o| *o = pos);
    }
    // Stable: one VM's pieces keep their order.
    let mut order: Vec<usize> = (0..k.vol_offs.len()).collect();
    order.sort_by(|&x, &y| k.vol_times[x].total_cmp(&k.vol_times[y]));
    let mut deleted = Vec::new();
    let mut peak = cow.diff_area_bytes();
    for &i in &order {
        // The diff area changes only here: its most is one of the sizes before an apply (a
        // deletion shrinks it) or the last.
        peak = peak.max(cow.diff_area_bytes());
        let out = cow.apply_writes(&k.vol_offs[i..=i], &k.vol_lens[i..=i], None)?;
        window[owner[i]].chunks_copied += out.chunks_copied;
        for id in out.deleted_snapshots {
            deleted.push((ci, id, k.vol_times[i]));
        }
        peak = peak.max(cow.diff_area_bytes());
    }
    Ok((deleted, peak))
}
