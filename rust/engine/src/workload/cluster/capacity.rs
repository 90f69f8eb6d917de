//! A CSV's free space, as Hyper-V and volsnap act on it.
//!
//! # How this works
//!
//! A CSV's free bytes are its size less its files (the allocation high-water mark) and, when the
//! diff area lives on the volume itself — volsnap's default —, less the diff area. Three things
//! happen as it shrinks ([`SpaceRules`] holds the levels; the Python layer passes Hyper-V's):
//!
//! - below `warn_below` Hyper-V logs low-space warnings: the instant is reported, once;
//! - below `pause_below` Hyper-V pauses every running VM of the CSV with a dynamic disk
//!   (*paused-critical*): from that write on they issue no I/O; fixed disks keep running;
//! - a dynamic disk's write whose new blocks no longer fit pauses its VM there (the write waits
//!   with the paused VM: it is never dropped), and a copy-on-write copy the volume cannot hold
//!   makes volsnap delete the oldest snapshot, as a full diff area does.
//!
//! A window first asks [`window_fits`]: can the free space reach the highest level still to come
//! (the warning, the pause, an empty volume) whatever the window's writes do? Almost always it
//! cannot, and the window takes the fast paths of `window.rs` unchanged. Otherwise it takes
//! [`advance_in_time_order`], the reference: every VM's writes merged in time order (ties in VM
//! order, then write order), each mapped, applied to copy-on-write with the volume's room as the
//! diff area's bound, and followed by a look at the free space, so each level is crossed at the
//! exact write that crosses it, whatever the windows.

use super::window::Scratch;
use super::{materialize, Csv, CsvOutcome, Vm, VmTotals};
use crate::error::Result;
use crate::vhdx::format::{HEADER_OFFSETS, HEADER_SIZE, LOG_SECTOR};
use crate::workload::cluster::MIB;
use crate::workload::layout::{DiskKind, Piece};
use crate::workload::spec::{ReadCount, WriteBatch};
use rayon::prelude::*;

/// Where a CSV's diff area lives, and the free-space levels Hyper-V acts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceRules {
    /// The diff area takes the CSV's own free space (volsnap's default: shadow storage on the
    /// volume itself); false when it lives on another volume.
    pub diff_area_on_volume: bool,
    /// Below this many free bytes, Hyper-V logs low-space warnings (0: never).
    pub warn_below: u64,
    /// Below this many free bytes, Hyper-V pauses the CSV's VMs with dynamic disks (0: only
    /// when a write's block no longer fits).
    pub pause_below: u64,
}

impl Default for SpaceRules {
    fn default() -> Self {
        SpaceRules {
            diff_area_on_volume: true,
            warn_below: 0,
            pause_below: 0,
        }
    }
}

/// Why a VM was paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseCause {
    /// The CSV's free space fell below `pause_below`.
    LowSpace,
    /// One of its writes needed a block the volume no longer had room for.
    VolumeFull,
}

/// A VM paused because its CSV ran out of space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pause {
    pub vm: usize,
    pub time: f64,
    pub cause: PauseCause,
}

/// What a CSV's next window would bring (see `ModelCluster::foresee`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Foresight {
    /// The first snapshot deleted (diff area or volume full) and when.
    pub deletion: Option<(u64, f64)>,
    /// When the first VM would be paused.
    pub pause: Option<f64>,
    /// When the free space would fall below the warning level.
    pub low_space: Option<f64>,
}

/// The diff area's share of the CSV's space, if it lives there.
fn diff_on_volume(csv: &Csv, diff: u64) -> u64 {
    if csv.rules.diff_area_on_volume {
        diff
    } else {
        0
    }
}

/// Free bytes of the CSV now.
pub(super) fn free(csv: &Csv) -> u64 {
    free_with_diff(csv, csv.cow.diff_area_bytes())
}

/// Free bytes of the CSV with its files as they are now and a diff area of `diff` bytes.
pub(super) fn free_with_diff(csv: &Csv, diff: u64) -> u64 {
    csv.size
        .saturating_sub(csv.next_free.saturating_add(diff_on_volume(csv, diff)))
}

/// Whether a VM can still be paused for want of space: running, not paused, with a dynamic disk.
fn pausable(vm: &Vm) -> bool {
    vm.active() && vm.disk.kind() == DiskKind::Dynamic
}

/// The free bytes the window must keep for nothing to happen: the highest level still to come.
fn headroom(csv: &Csv) -> u64 {
    let mut h = 0;
    if csv.warned.is_none() {
        h = csv.rules.warn_below;
    }
    if csv.vms.iter().any(pausable) {
        h = h.max(csv.rules.pause_below);
    }
    h
}

/// Whether a level could be reached now, before any write (a look for `foresee`).
pub(super) fn may_cross(csv: &Csv) -> bool {
    headroom(csv) > 0 || csv.vms.iter().any(pausable)
}

/// Bytes the VM's file can take on the volume for its write `[off, off + len)` now, at most
/// ([`file_growth`] of the blocks it allocates); 0 if it allocates nothing.
fn growth(vm: &Vm, off: u64, len: u32) -> u64 {
    file_growth(vm.disk.blocks_to_allocate(off, len), vm.disk.block_size())
}

/// Bytes and pieces of volume writes one guest write of `length` bytes can cause at most: its
/// data (split at every block boundary), the headers of a new session and, if it allocates, the
/// log entry, the headers on the log's first use and the BAT pages (`VhdxModel::map_write`).
fn write_bound(block_size: u64, length: u32, allocates: bool) -> (u64, u64) {
    let spanned = u64::from(length) / block_size + 2;
    let headers = HEADER_OFFSETS.len() as u64;
    let mut bytes = u64::from(length) + headers * HEADER_SIZE as u64;
    let mut pieces = spanned + headers;
    if allocates {
        // One log entry per ≤ 120 pages (at most one page per block), each at most a descriptor
        // sector per page plus the page; the headers again; one BAT page per block.
        bytes +=
            (2 * spanned + 1) * LOG_SECTOR + headers * HEADER_SIZE as u64 + spanned * LOG_SECTOR;
        pieces += spanned + headers + spanned;
    }
    (bytes, pieces)
}

/// Whether no level can be reached in this window whatever its writes (`guest`, per VM) do: the
/// files may grow by every unallocated block the writes touch (each once), and the diff area
/// (when on the volume, with a snapshot) by every chunk their volume pieces can touch; and all
/// that still leaves the headroom free. One pass over the writes, the VMs in parallel.
pub(super) fn window_fits(csv: &Csv, guest: &[WriteBatch]) -> bool {
    let keep = headroom(csv);
    let free_now = free(csv);
    if free_now < keep {
        return false;
    }
    let room = free_now - keep;
    let cow_counts = csv.rules.diff_area_on_volume && csv.cow.snapshot_count() > 0;
    let chunk = csv.cow.chunk_size();
    // First from each VM's write count and bytes alone (no lookup per write): a CSV with room
    // to spare needs no more.
    let rough: u64 = csv
        .vms
        .iter()
        .zip(guest)
        .map(|(vm, b)| rough_bound(vm, b, cow_counts, chunk))
        .fold(0, u64::saturating_add);
    if rough <= room {
        return true;
    }
    let most: u64 = csv
        .vms
        .par_iter()
        .zip(guest.par_iter())
        .map(|(vm, b)| vm_bound(vm, b, cow_counts, chunk))
        .reduce(|| 0, u64::saturating_add);
    most <= room
}

/// Whether the VM's file can still grow: a dynamic disk not yet allocated whole.
fn may_grow(vm: &Vm) -> bool {
    vm.disk.kind() == DiskKind::Dynamic && vm.disk.allocated_bytes() < vm.disk.virtual_size()
}

/// What one VM's writes `b` can take on the volume at most ([`window_fits`]'s pass): the
/// distinct new blocks they allocate, and (`cow_counts`) every chunk their volume pieces can
/// touch.
fn vm_bound(vm: &Vm, b: &WriteBatch, cow_counts: bool, chunk: u64) -> u64 {
    let block = vm.disk.block_size();
    // A disk allocated whole (or fixed) has nothing to look up.
    let may_grow = may_grow(vm);
    let mut new_blocks: Vec<u64> = Vec::new();
    // Copy-on-write: the sum of `write_bound` over the writes, from sums (it is linear
    // in the length), with what allocating writes add on top.
    let (mut bytes, mut pieces, mut extra) = (0u64, 0u64, 0u64);
    for (&off, &len) in b.offsets.iter().zip(&b.lengths) {
        bytes += u64::from(len);
        pieces += u64::from(len) / block;
        if may_grow && vm.disk.blocks_to_allocate(off, len) > 0 {
            let first = off / block;
            let last = (off + u64::from(len) - 1) / block;
            new_blocks.extend((first..=last).filter(|&k| !vm.disk.is_allocated(k)));
            extra += allocation_bound(block, len, chunk);
        }
    }
    let copy = if cow_counts {
        let n = b.lengths.len() as u64;
        let (b0, p0) = write_bound(block, 0, false);
        let (bytes, pieces) = (bytes + n * b0, pieces + n * p0);
        bytes
            .saturating_add(pieces.saturating_mul(2 * chunk))
            .saturating_add(extra)
    } else {
        0
    };
    new_blocks.sort_unstable();
    new_blocks.dedup();
    file_growth(new_blocks.len() as u64, block).saturating_add(copy)
}

/// An upper bound of what [`window_fits`]'s pass counts for one VM's writes `b`, from their
/// count and bytes: every write allocating (if the disk can grow), its blocks up to the disk's
/// unallocated ones; `Σ ⌊len / block⌋ ≤ bytes / block`, and what allocating adds to
/// [`write_bound`] is linear in the blocks a write spans (so it is summed from its value at
/// two spans).
fn rough_bound(vm: &Vm, b: &WriteBatch, cow_counts: bool, chunk: u64) -> u64 {
    let n = b.lengths.len() as u64;
    if n == 0 {
        return 0;
    }
    let block = vm.disk.block_size();
    let bytes: u64 = b.lengths.iter().map(|&l| u64::from(l)).sum();
    // Blocks spanned, summed over the writes (each `len / block + 2`).
    let spanned = (bytes / block).saturating_add(2 * n);
    let (b0, p0) = write_bound(block, 0, false);
    let mut grow = 0;
    let mut extra = 0u64;
    if may_grow(vm) {
        let unallocated = (vm.disk.virtual_size() - vm.disk.allocated_bytes()).div_ceil(block);
        grow = file_growth(spanned.min(unallocated), block);
        // What allocating adds for a write spanning 2 blocks (length 0) and 3 (one block):
        // `a s + c` in between and beyond, summed over the writes' spans.
        let (at2, at3) = (
            allocation_bound(block, 0, chunk),
            allocation_bound(block, block as u32, chunk),
        );
        let slope = at3 - at2;
        let base = at2 - 2 * slope;
        extra = spanned
            .saturating_mul(slope)
            .saturating_add(n.saturating_mul(base));
    }
    if !cow_counts {
        return grow;
    }
    let pieces = (bytes / block).saturating_add(n.saturating_mul(p0));
    let copy = bytes
        .saturating_add(n.saturating_mul(b0))
        .saturating_add(pieces.saturating_mul(2 * chunk))
        .saturating_add(extra);
    grow.saturating_add(copy)
}

/// What allocating adds to a write of `length` bytes' copy-on-write bound: the log and BAT
/// bytes [`write_bound`] adds, and two chunks per piece it adds.
fn allocation_bound(block: u64, length: u32, chunk: u64) -> u64 {
    let (all, plain) = (
        write_bound(block, length, true),
        write_bound(block, length, false),
    );
    (all.0 - plain.0) + 2 * (all.1 - plain.1) * chunk
}

/// Bytes a file that allocates `blocks` new blocks of `block` bytes can take on the volume at
/// most: each block appended at the file's end rounded up to 1 MiB
/// (`VhdxModel::map_write`), and the file mapped in whole blocks (`FileExtents::grow`), so
/// one unit more per 1 MiB of rounding and one more at the end.
fn file_growth(blocks: u64, block: u64) -> u64 {
    if blocks == 0 {
        return 0;
    }
    let rounding = (blocks * MIB).div_ceil(block);
    (blocks + rounding + 1).saturating_mul(block)
}

/// The reference path (see the module doc): CSV `ci`'s window from `t0`, its guest writes in
/// `s.guest` and reads in `reads` (per VM), into `window` (per VM) and `out`.
pub(super) fn advance_in_time_order(
    ci: usize,
    csv: &mut Csv,
    t0: f64,
    s: &mut Scratch,
    reads: &[ReadCount],
    window: &mut [VmTotals],
    out: &mut CsvOutcome,
) -> Result<()> {
    let n = csv.vms.len();
    let guest = &s.guest[..n];
    let mut order: Vec<(f64, u32, u32)> =
        Vec::with_capacity(guest.iter().map(WriteBatch::len).sum());
    for (pos, g) in guest.iter().enumerate() {
        order.extend(
            g.times
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, pos as u32, i as u32)),
        );
    }
    // Stable: equal times keep VM order, then write order.
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let limit = csv.cow.diff_area_limit();
    let mut accepted: Vec<(Vec<u64>, Vec<u32>)> = vec![(Vec::new(), Vec::new()); n];
    let mut pieces: (Vec<u64>, Vec<u32>) = (Vec::new(), Vec::new());
    let mut paused_here: Vec<Option<f64>> = vec![None; n];
    let mut lowest = free(csv);
    let mut peak = csv.cow.diff_area_bytes();
    // Below a level already at the window's start (a CSV that starts full, or rules just set):
    // it acts now.
    look(csv, t0, &mut paused_here, out);
    let result = (|| -> Result<()> {
        for &(time, pos, i) in &order {
            let pos = pos as usize;
            let Csv {
                cow,
                size,
                next_free,
                vms,
                mat,
                rules,
                ..
            } = &mut *csv;
            let vm = &mut vms[pos];
            if !vm.active() {
                continue; // paused earlier in this window: the rest of its stream never happens
            }
            let (off, len) = (
                guest[pos].offsets[i as usize],
                guest[pos].lengths[i as usize],
            );
            let diff = if rules.diff_area_on_volume {
                cow.diff_area_bytes()
            } else {
                0
            };
            let used = next_free.saturating_add(diff);
            let needed = growth(vm, off, len);
            if needed > 0 && used.saturating_add(needed) > *size {
                vm.paused = Some(time);
                paused_here[pos] = Some(time);
                out.paused.push(Pause {
                    vm: vm.id,
                    time,
                    cause: PauseCause::VolumeFull,
                });
                continue;
            }
            let w = &mut window[pos];
            w.writes += 1;
            w.bytes_written += u64::from(len);
            accepted[pos].0.push(off);
            accepted[pos].1.push(len);
            if mat.as_deref().is_some_and(|m| m.has_vm(pos)) {
                s.mat.push(materialize::MatWrite {
                    pos: pos as u32,
                    offset: off,
                    length: len,
                    time,
                });
            }
            pieces.0.clear();
            pieces.1.clear();
            let Vm { disk, extents, .. } = vm;
            w.blocks_allocated += disk.map_write(off, len, &mut |piece: Piece| {
                while extents.mapped() < piece.offset + u64::from(piece.length) {
                    extents.grow(*next_free);
                    *next_free += extents.unit();
                }
                extents.to_volume(piece, &mut |vp: Piece| {
                    pieces.0.push(vp.offset);
                    pieces.1.push(vp.length);
                });
            });
            if cow.snapshot_count() > 0 {
                // The diff area grows only into what the volume has left.
                let room = size.saturating_sub(*next_free);
                let bound = if rules.diff_area_on_volume {
                    Some(limit.map_or(room, |l| l.min(room)))
                } else {
                    limit
                };
                cow.set_diff_area_limit(bound);
                // Before the copies: a deletion they cause shrinks the diff area again.
                peak = peak.max(cow.diff_area_bytes());
                let d = if rules.diff_area_on_volume {
                    cow.diff_area_bytes()
                } else {
                    0
                };
                lowest = lowest.min(size.saturating_sub(next_free.saturating_add(d)));
                let done = cow.apply_writes(&pieces.0, &pieces.1, None)?;
                w.chunks_copied += done.chunks_copied;
                let by_volume = rules.diff_area_on_volume && limit.is_none_or(|l| room < l);
                for id in done.deleted_snapshots {
                    out.deleted.push((ci, id, time));
                    if by_volume {
                        out.volume_full.push((ci, id));
                    }
                }
            }
            lowest = lowest.min(free(csv));
            look(csv, time, &mut paused_here, out);
        }
        Ok(())
    })();
    csv.cow.set_diff_area_limit(limit);
    result?;
    out.lowest_free = lowest.min(free(csv));
    out.peak_diff = peak.max(csv.cow.diff_area_bytes());
    // Change tracking sees what was issued; a VM paused in the window read only until then.
    for (pos, vm) in csv.vms.iter_mut().enumerate() {
        let (offs, lens) = &accepted[pos];
        vm.cbt.mark(offs, lens)?;
        let w = &mut window[pos];
        let r = match paused_here[pos] {
            None => reads[pos],
            Some(t) => {
                let mut scratch = WriteBatch::default();
                vm.gen.generate(t0, next_up(t), &mut scratch)
            }
        };
        w.reads = r.reads;
        w.bytes_read = r.bytes;
    }
    Ok(())
}

/// After a write at `time` (or at the window's start): the warning and the pause, if the free
/// space is now below their levels.
fn look(csv: &mut Csv, time: f64, paused_here: &mut [Option<f64>], out: &mut CsvOutcome) {
    let left = free(csv);
    if csv.warned.is_none() && left < csv.rules.warn_below {
        csv.warned = Some(time);
        out.low_space = Some(time);
    }
    if left < csv.rules.pause_below {
        for (pos, vm) in csv.vms.iter_mut().enumerate() {
            if pausable(vm) {
                vm.paused = Some(time);
                paused_here[pos] = Some(time);
                out.paused.push(Pause {
                    vm: vm.id,
                    time,
                    cause: PauseCause::LowSpace,
                });
            }
        }
    }
}

/// The next float above `t`: a window `[t0, next_up(t))` includes what happens at `t`.
fn next_up(t: f64) -> f64 {
    if t.is_finite() {
        f64::from_bits(if t >= 0.0 {
            t.to_bits() + 1
        } else {
            t.to_bits() - 1
        })
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::cluster::{ModelCluster, VmConfig};
    use crate::workload::spec::{Generator, Locality, SizeDist, WorkloadSpec};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn spec(iops: f64) -> WorkloadSpec {
        WorkloadSpec {
            iops,
            read_fraction: 0.25,
            sizes: SizeDist::typical(),
            locality: Locality::Uniform,
            diurnal: None,
            growth_per_day: 0.0,
            daily_change: None,
        }
    }

    fn vm(csv: usize, kind: DiskKind, iops: f64, seed: u64) -> VmConfig {
        VmConfig {
            csv,
            disk_size: 4 * GIB,
            allocated: if kind == DiskKind::Fixed { 4 * GIB } else { 0 },
            block_size: 32 * MIB,
            kind,
            spec: spec(iops),
            seed,
            cbt_block_size: 65536,
        }
    }

    /// One CSV with `free` bytes free at the start: a dynamic VM (id 0) and a fixed one (id 1).
    fn mixed(free: u64, rules: SpaceRules) -> ModelCluster {
        let build = |size: u64| {
            let mut c = ModelCluster::new();
            c.add_csv(size, 16384, None).unwrap();
            c.set_space_rules(0, rules).unwrap();
            c.add_vm(vm(0, DiskKind::Dynamic, 400.0, 1)).unwrap();
            c.add_vm(vm(0, DiskKind::Fixed, 400.0, 2)).unwrap();
            c
        };
        let used = build(100 * GIB).csv_used_bytes(0).unwrap();
        let c = build(used + free);
        assert_eq!(c.free_bytes(0).unwrap(), free);
        c
    }

    fn rules(warn: u64, pause: u64) -> SpaceRules {
        SpaceRules {
            diff_area_on_volume: true,
            warn_below: warn,
            pause_below: pause,
        }
    }

    #[test]
    fn the_rough_bound_is_never_below_the_pass() {
        // Dynamic disks with nothing allocated (every write allocates) and fixed ones; windows
        // of a few writes to many; with and without copy-on-write counted.
        let c = mixed(64 * GIB, rules(0, 0));
        let csv = &c.csvs[0];
        for vm in &csv.vms {
            for (t0, t1) in [(0.0, 0.01), (0.0, 1.0), (3.0, 60.0)] {
                let mut b = WriteBatch::default();
                vm.gen.generate(t0, t1, &mut b);
                for cow in [false, true] {
                    let (rough, pass) = (
                        rough_bound(vm, &b, cow, 16384),
                        vm_bound(vm, &b, cow, 16384),
                    );
                    assert!(
                        rough >= pass,
                        "{rough} < {pass}: {} writes, cow {cow}",
                        b.len()
                    );
                    if !b.is_empty() && cow {
                        assert!(pass > 0);
                    }
                }
            }
        }
    }

    #[test]
    fn a_full_volume_pauses_the_writer_and_drops_nothing() {
        // No levels: the dynamic VM runs until a write's new block no longer fits, and pauses
        // there; every write it issued before is applied.
        let mut c = ModelCluster::new();
        c.add_csv(256 * MIB, 16384, None).unwrap();
        c.add_vm(vm(0, DiskKind::Dynamic, 500.0, 7)).unwrap();
        let r = c.advance(0.0, 30.0).unwrap();
        assert_eq!(r.paused.len(), 1, "{:?}", r.paused);
        let p = r.paused[0];
        assert_eq!((p.vm, p.cause), (0, PauseCause::VolumeFull));
        assert_eq!(c.paused_at(0).unwrap(), Some(p.time));
        let mut all = WriteBatch::default();
        Generator::new(spec(500.0), 4 * GIB, 7)
            .unwrap()
            .generate(0.0, p.time, &mut all);
        assert_eq!(c.totals(0).unwrap().writes, all.len() as u64);
        assert!(c.csv_used_bytes(0).unwrap() <= 256 * MIB);
        // Paused: nothing more, reads included.
        let later = c.advance(30.0, 40.0).unwrap();
        assert_eq!(later.vms[0], VmTotals::default());
    }

    #[test]
    fn low_space_pauses_dynamic_disks_and_spares_fixed_ones() {
        let mut c = mixed(512 * MIB, rules(400 * MIB, 200 * MIB));
        let r = c.advance(0.0, 60.0).unwrap();
        let p = *r.paused.first().expect("the dynamic VM pauses");
        assert_eq!((p.vm, p.cause), (0, PauseCause::LowSpace));
        assert_eq!(r.paused.len(), 1, "the fixed VM is not paused");
        let (warned_csv, warned) = r.low_space[0];
        assert_eq!(warned_csv, 0);
        assert!(warned < p.time, "warned at {warned}, paused at {}", p.time);
        assert!(c.free_bytes(0).unwrap() < 200 * MIB);
        assert!(
            c.free_bytes(0).unwrap() + 33 * MIB >= 200 * MIB,
            "paused at the crossing"
        );
        let later = c.advance(60.0, 70.0).unwrap();
        assert_eq!(later.vms[0], VmTotals::default());
        assert!(later.vms[1].writes > 0 && later.vms[1].reads > 0);
    }

    #[test]
    fn windows_do_not_move_the_pause() {
        let mut a = mixed(2560 * MIB, rules(2 * GIB, 200 * MIB));
        let mut b = mixed(2560 * MIB, rules(2 * GIB, 200 * MIB));
        let ra = a.advance(0.0, 60.0).unwrap();
        let mut paused = Vec::new();
        let mut low = Vec::new();
        let mut t = 0.0;
        while t < 60.0 {
            let r = b.advance(t, t + 2.5).unwrap();
            paused.extend(r.paused);
            low.extend(r.low_space);
            t += 2.5;
        }
        assert!(!ra.paused.is_empty());
        assert_eq!(ra.paused, paused);
        assert_eq!(ra.low_space, low);
        for v in 0..2 {
            assert_eq!(a.totals(v).unwrap(), b.totals(v).unwrap());
        }
        assert_eq!(a.csv_used_bytes(0).unwrap(), b.csv_used_bytes(0).unwrap());
    }

    #[test]
    fn the_diff_area_counts_against_free_space_unless_it_lives_elsewhere() {
        // Fixed disks only: nothing grows but the diff area.
        let make = |on_volume: bool| {
            let mut c = ModelCluster::new();
            c.add_csv(8 * GIB + 2 * GIB + 16 * MIB, 16384, None)
                .unwrap();
            c.set_space_rules(
                0,
                SpaceRules {
                    diff_area_on_volume: on_volume,
                    warn_below: 0,
                    pause_below: 0,
                },
            )
            .unwrap();
            c.add_vm(vm(0, DiskKind::Fixed, 2000.0, 3)).unwrap();
            c.add_vm(vm(0, DiskKind::Fixed, 2000.0, 4)).unwrap();
            let id = c.snapshot(0).unwrap();
            (c, id)
        };
        let (mut on, id_on) = make(true);
        let (mut off, id_off) = make(false);
        let before = off.free_bytes(0).unwrap();
        assert_eq!(on.free_bytes(0).unwrap(), before);
        let r_off = off.advance(0.0, 5.0).unwrap();
        let r_on = on.advance(0.0, 5.0).unwrap();
        assert!(r_off.deleted.is_empty());
        let diff = off.cow(0).unwrap().diff_area_bytes();
        assert!(diff > 0);
        assert_eq!(
            off.free_bytes(0).unwrap(),
            before,
            "a diff area elsewhere costs nothing"
        );
        assert_eq!(
            on.free_bytes(0).unwrap(),
            before - diff,
            "on the volume it takes its size"
        );
        assert_eq!(r_on.vms, r_off.vms);
        // Until the volume is full: then volsnap deletes the snapshot (a full volume, not a
        // limit), while the diff area elsewhere keeps it.
        let r_on = on.advance(5.0, 120.0).unwrap();
        let r_off = off.advance(5.0, 120.0).unwrap();
        assert!(r_off.deleted.is_empty() && off.cow(0).unwrap().is_live(id_off));
        assert_eq!(r_on.deleted.len(), 1);
        assert_eq!(r_on.volume_full, vec![(0, id_on)]);
        assert!(!on.cow(0).unwrap().is_live(id_on));
        assert!(
            r_on.lowest_free[0].1 < 16384 * 40,
            "it ran down to the last chunks"
        );
    }

    #[test]
    fn capacity_path_agrees_with_the_fast_paths() {
        // A warning level above the whole volume forces the reference path for the first window
        // (it warns at once, and changes nothing else).
        for limit in [None, Some(4 * GIB)] {
            let build = |warn: u64| {
                let mut c = ModelCluster::new();
                for _ in 0..2 {
                    c.add_csv(100 * GIB, 16384, limit).unwrap();
                    let csv = c.csv_count() - 1;
                    c.set_space_rules(csv, rules(warn, 0)).unwrap();
                }
                for v in 0..8u64 {
                    let kind = if v % 3 == 0 {
                        DiskKind::Fixed
                    } else {
                        DiskKind::Dynamic
                    };
                    let mut cfg = vm((v % 2) as usize, kind, 300.0 + v as f64, 50 + v);
                    cfg.allocated = if kind == DiskKind::Fixed {
                        4 * GIB
                    } else {
                        (v % 3) * GIB
                    };
                    c.add_vm(cfg).unwrap();
                }
                for csv in 0..2 {
                    c.snapshot(csv).unwrap();
                }
                c
            };
            let mut fast = build(0);
            let mut reference = build(200 * GIB);
            let rf = fast.advance(0.0, 30.0).unwrap();
            let rr = reference.advance(0.0, 30.0).unwrap();
            assert_eq!(rr.low_space, vec![(0, 0.0), (1, 0.0)]);
            assert_eq!(rf.vms, rr.vms, "limit {limit:?}");
            assert_eq!(rf.lowest_free, rr.lowest_free);
            for v in 0..8 {
                assert_eq!(
                    fast.change_tracker(v).unwrap().changed_extents(),
                    reference.change_tracker(v).unwrap().changed_extents()
                );
            }
            for csv in 0..2 {
                assert_eq!(
                    fast.csv_used_bytes(csv).unwrap(),
                    reference.csv_used_bytes(csv).unwrap()
                );
                assert_eq!(
                    fast.cow(csv).unwrap().diff_area_bytes(),
                    reference.cow(csv).unwrap().diff_area_bytes()
                );
            }
        }
    }

    #[test]
    fn foresee_finds_the_pause_without_changing_anything() {
        let mut c = mixed(2560 * MIB, rules(2 * GIB, 200 * MIB));
        let used = c.csv_used_bytes(0).unwrap();
        let f = c.foresee(0, 0.0, 60.0).unwrap();
        let t = f.pause.expect("a pause within the minute");
        assert!(f.low_space.expect("and the warning before it") < t);
        assert_eq!(f.deletion, None);
        assert_eq!(c.csv_used_bytes(0).unwrap(), used);
        assert_eq!(c.paused_at(0).unwrap(), None);
        let r = c.advance(0.0, t).unwrap();
        assert!(r.paused.is_empty());
        let r = c.advance(t, next_up(t)).unwrap();
        assert_eq!(r.paused.len(), 1);
        assert_eq!(r.paused[0].time, t);
        // Nothing to foresee on a roomy CSV without levels.
        let mut roomy = ModelCluster::new();
        roomy.add_csv(100 * GIB, 16384, None).unwrap();
        roomy.set_space_rules(0, rules(0, 0)).unwrap();
        roomy.add_vm(vm(0, DiskKind::Fixed, 10.0, 1)).unwrap();
        assert_eq!(roomy.foresee(0, 0.0, 60.0).unwrap(), Foresight::default());
    }

    #[test]
    fn a_csv_that_starts_below_the_pause_level_pauses_at_once() {
        let mut c = mixed(300 * MIB, rules(2 * GIB, 400 * MIB));
        let r = c.advance(0.0, 1.0).unwrap();
        assert_eq!(r.low_space, vec![(0, 0.0)]);
        assert_eq!(r.paused.len(), 1);
        assert_eq!((r.paused[0].vm, r.paused[0].time), (0, 0.0));
        assert_eq!(r.vms[0], VmTotals::default());
        assert!(r.vms[1].writes > 0);
    }
}
