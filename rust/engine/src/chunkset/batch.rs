//! Batches of extents: checked and dealt to the shards in one pass over the caller's arrays, then
//! applied shard by shard in parallel.
//!
//! A *record* is one extent's chunks inside one leaf, packed in a `u64`: the first chunk in the
//! low `MAX_LEN_BITS` bits, the count minus one above. Dealing reads each extent once, checks it
//! against the device's size, and appends one record (two or more only where the extent crosses a
//! leaf boundary) to the list of the shard that owns the leaf. Applying runs each shard's lists on
//! its own thread: the shard's share of a hot region stays in that core's cache, and no two
//! threads touch one leaf. The lists keep the order of the extents, though with one live
//! snapshot the order does not change the answer (a chunk is new exactly once either way).
//!
//! Dealing can run where the caller's arrays may be read (the Python binding does it holding the
//! GIL, reading numpy's buffers in place, on the pool's threads) and applying elsewhere (with the
//! GIL released): [`Dealt`] carries the records between the two.

use rayon::prelude::*;

use super::{
    bitmap_insert_small, pack, unpack, Bitmap, ChunkSet, LastLeaf, LEAF_BITS, LEAF_SHIFT,
    LEAF_WORDS, SHARDS, SPARSE,
};
use crate::error::{check_extents, Result};

/// Batches smaller than this are applied on the calling thread, record by record.
const PARALLEL_MIN: usize = ChunkSet::PARALLEL_MIN;

/// Grouped batches ([`ChunkSet::deal_groups`]) at least this large are dealt and applied on the
/// pool's threads: a modelled CSV's window is one such batch of a few thousand to tens of
/// thousands of writes (model choice, measured with `benches/bench_scenario.py -k throughput`
/// beside `SMALL_WINDOW_OPS`: 4,096 and 1,024 both beat 16,384 once windows run in the pool).
pub const GROUPED_PARALLEL_MIN: usize = 1 << 12;

/// Bits of a short record's shard-local chunk (the rest of its 32 bits: the count minus one).
const SHORT_BITS: u32 = 26;

/// One shard's records from one part of the input, in input order: the usual ones (at most 64
/// chunks, a shard-local chunk below 2^26 — every chunk of universes up to 2^28 chunks, 4 TiB in
/// 16 KiB chunks) in 32 bits, half the memory traffic; the others packed in 64.
#[derive(Debug, Default)]
struct Lists {
    short: Vec<u32>,
    long: Vec<u64>,
}

impl Lists {
    fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
    }
}

/// Where one group's records start in one part's lists (grouped batches only).
#[derive(Debug, Clone, Copy)]
struct Mark {
    group: usize,
    short: [usize; SHARDS],
    long: [usize; SHARDS],
}

impl Mark {
    fn at(group: usize, lists: &[Lists]) -> Mark {
        Mark {
            group,
            short: std::array::from_fn(|k| lists[k].short.len()),
            long: std::array::from_fn(|k| lists[k].long.len()),
        }
    }
}

/// A batch of extents dealt to the shards (see the module doc). Its buffers are kept between
/// batches, so a large batch does not fault in fresh pages every time.
#[derive(Debug, Default)]
pub struct Dealt {
    /// Per part of the input (one per thread): per shard, its records.
    parts: Vec<Vec<Lists>>,
    /// Per part, for a grouped batch: where each group's records start, in input order.
    marks: Vec<Vec<Mark>>,
}

impl Dealt {
    /// Records held (one per extent and leaf it touches).
    pub fn len(&self) -> usize {
        self.parts
            .iter()
            .flatten()
            .map(|l| l.short.len() + l.long.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of buffer held.
    pub fn memory_bytes(&self) -> usize {
        self.parts
            .iter()
            .flatten()
            .map(|l| l.short.capacity() * 4 + l.long.capacity() * 8)
            .sum()
    }
}

/// The decoder of shard `k`'s short records: (first chunk, count minus one).
#[inline(always)]
fn short_decoder(k: usize) -> impl Fn(u32) -> (u64, u32) + Copy {
    let k64 = k as u64;
    move |r: u32| {
        let local = u64::from(r) & ((1 << SHORT_BITS) - 1);
        let slot = (local >> LEAF_SHIFT) * SHARDS as u64 + k64;
        (
            (slot << LEAF_SHIFT) | (local & (LEAF_BITS - 1)),
            r >> SHORT_BITS,
        )
    }
}

/// Appends the records of the extents to `out`, one list per shard; `false` if an extent ends past
/// `size` bytes (or overflows), in which case the records are not to be used. Extents of zero
/// bytes touch nothing; chunks at or past `len` are dropped.
fn deal_part(
    offsets: &[u64],
    lengths: &[u32],
    shift: u32,
    size: u64,
    len: u64,
    lists: &mut Vec<Lists>,
) -> bool {
    // The lists are worked on from this thread's stack: their lengths change at every record, and
    // kept beside another thread's lists they would share a cache line.
    let mut out = std::mem::take(lists);
    let ok = deal_into(offsets, lengths, shift, size, len, &mut out);
    *lists = out;
    ok
}

fn deal_into(
    offsets: &[u64],
    lengths: &[u32],
    shift: u32,
    size: u64,
    len: u64,
    out: &mut [Lists],
) -> bool {
    let mut ok = true;
    for (&off, &n) in offsets.iter().zip(lengths) {
        let end = off.wrapping_add(u64::from(n));
        if n == 0 || end < off || end > size {
            ok &= n == 0;
            continue;
        }
        let first = off >> shift;
        let last = ((end - 1) >> shift).min(len.wrapping_sub(1));
        if first > last {
            continue;
        }
        if (first ^ last) >> LEAF_SHIFT == 0 {
            // The usual extent: inside one leaf, one record.
            let slot = first >> LEAF_SHIFT;
            let lists = &mut out[slot as usize % SHARDS];
            let local = ((slot / SHARDS as u64) << LEAF_SHIFT) | (first & (LEAF_BITS - 1));
            let extra = last - first;
            if local < 1 << SHORT_BITS && extra < 64 {
                lists
                    .short
                    .push(local as u32 | ((extra as u32) << SHORT_BITS));
            } else {
                lists.long.push(pack(first, extra));
            }
            continue;
        }
        let mut a = first;
        while a <= last {
            let b = last.min(a | (LEAF_BITS - 1));
            out[(a >> LEAF_SHIFT) as usize % SHARDS]
                .long
                .push(pack(a, b - a));
            a = b + 1;
        }
    }
    ok
}

impl ChunkSet {
    /// Checks the extents `[offsets[i], offsets[i] + lengths[i])` against a device of `size`
    /// bytes and deals the chunks they touch (chunk `c` is bytes `[c << shift, (c + 1) << shift)`)
    /// into `out`, replacing what it held. One pass over the arrays, on the pool's threads for a
    /// large batch. A bad extent is reported as [`check_extents`] reports it, and `out` is then
    /// empty.
    pub fn deal(
        &self,
        offsets: &[u64],
        lengths: &[u32],
        shift: u32,
        size: u64,
        out: &mut Dealt,
    ) -> Result<()> {
        if offsets.len() != lengths.len() {
            return check_extents(offsets, lengths, size);
        }
        let parts = if offsets.len() < PARALLEL_MIN {
            1
        } else {
            rayon::current_num_threads().clamp(1, 64)
        };
        out.parts.resize_with(parts, Default::default);
        out.marks.clear();
        let per = offsets.len().div_ceil(parts).max(1);
        let len = self.len;
        let ok = out
            .parts
            .par_iter_mut()
            .enumerate()
            .map(|(p, lists)| {
                let start = (p * per).min(offsets.len());
                let end = (start + per).min(offsets.len());
                lists.resize_with(SHARDS, Lists::default);
                for l in lists.iter_mut() {
                    l.clear();
                    // Most batches spread evenly: room for an even share and a margin.
                    l.short.reserve((end - start) / SHARDS + (end - start) / 16);
                }
                deal_part(
                    &offsets[start..end],
                    &lengths[start..end],
                    shift,
                    size,
                    len,
                    lists,
                )
            })
            .reduce(|| true, |a, b| a & b);
        if !ok {
            out.parts.iter_mut().flatten().for_each(Lists::clear);
            check_extents(offsets, lengths, size)?;
        }
        Ok(())
    }

    /// Applies a dealt batch; returns how many of the new chunks lie below `count_below`. The
    /// result is the same as inserting the extents one by one.
    pub fn apply_dealt(&mut self, dealt: &Dealt, count_below: u64) -> u64 {
        let apply = |(k, shard): (usize, &mut super::Shard)| -> u64 {
            let short = short_decoder(k);
            dealt
                .parts
                .iter()
                .map(|lists| {
                    shard.insert_records(&lists[k].short, short, count_below)
                        + shard.insert_records(&lists[k].long, unpack, count_below)
                })
                .sum()
        };
        if dealt.len() < PARALLEL_MIN {
            return self.shards.iter_mut().enumerate().map(apply).sum();
        }
        self.shards.par_iter_mut().enumerate().map(apply).sum()
    }

    /// Like [`deal`](Self::deal), for several batches (*groups*) dealt as one: the records keep
    /// the groups' order, and [`apply_dealt_groups`](Self::apply_dealt_groups) then credits each
    /// new chunk to the group whose extent set it first — as inserting the groups one after the
    /// other would. A bad extent is reported as [`check_extents`] reports it for its group, and
    /// `out` is then empty.
    pub fn deal_groups(
        &self,
        groups: &[(&[u64], &[u32])],
        shift: u32,
        size: u64,
        out: &mut Dealt,
    ) -> Result<()> {
        for &(o, l) in groups {
            if o.len() != l.len() {
                return check_extents(o, l, size);
            }
        }
        // Where each group starts in the batch, and where the batch ends.
        let mut starts = Vec::with_capacity(groups.len() + 1);
        let mut total = 0;
        for &(o, _) in groups {
            starts.push(total);
            total += o.len();
        }
        starts.push(total);
        let parts = if total < GROUPED_PARALLEL_MIN {
            1
        } else {
            rayon::current_num_threads().clamp(1, 64)
        };
        out.parts.resize_with(parts, Default::default);
        out.marks.resize_with(parts, Vec::new);
        let per = total.div_ceil(parts).max(1);
        let len = self.len;
        let deal_one = |(p, (lists, marks)): (usize, (&mut Vec<Lists>, &mut Vec<Mark>))| {
            let start = (p * per).min(total);
            let end = (start + per).min(total);
            lists.resize_with(SHARDS, Lists::default);
            for l in lists.iter_mut() {
                l.clear();
                l.short.reserve((end - start) / SHARDS + (end - start) / 16);
            }
            marks.clear();
            let mut ok = true;
            let mut pos = start;
            // The group holding `pos`: the last one starting at or before it.
            let mut g = starts.partition_point(|&s| s <= pos).saturating_sub(1);
            while pos < end {
                while starts[g + 1] <= pos {
                    g += 1;
                }
                let (o, l) = groups[g];
                let a = pos - starts[g];
                let b = end.min(starts[g + 1]) - starts[g];
                marks.push(Mark::at(g, lists));
                ok &= deal_part(&o[a..b], &l[a..b], shift, size, len, lists);
                pos = starts[g] + b;
            }
            ok
        };
        // One part is dealt on the calling thread: handing it to the pool would cost a wake-up.
        let ok = if parts == 1 {
            out.parts
                .iter_mut()
                .zip(out.marks.iter_mut())
                .enumerate()
                .all(deal_one)
        } else {
            out.parts
                .par_iter_mut()
                .zip(out.marks.par_iter_mut())
                .enumerate()
                .map(deal_one)
                .reduce(|| true, |a, b| a & b)
        };
        if !ok {
            out.parts.iter_mut().flatten().for_each(Lists::clear);
            out.marks.iter_mut().for_each(Vec::clear);
            for &(o, l) in groups {
                check_extents(o, l, size)?;
            }
        }
        Ok(())
    }

    /// Applies a batch dealt by [`deal_groups`](Self::deal_groups): adds to `fresh[g]` how many
    /// of the chunks new to the set lie below `count_below` and were first set by group `g`
    /// (`fresh` has one entry per group). Each shard applies its records in input order, and a
    /// chunk lives in one shard, so the credit is that of inserting the groups in turn.
    pub fn apply_dealt_groups(&mut self, dealt: &Dealt, count_below: u64, fresh: &mut [u64]) {
        let groups = fresh.len();
        let apply = |(k, shard): (usize, &mut super::Shard)| -> Vec<u64> {
            let short = short_decoder(k);
            let mut mine = vec![0u64; groups];
            for (lists, marks) in dealt.parts.iter().zip(&dealt.marks) {
                let l = &lists[k];
                for (i, m) in marks.iter().enumerate() {
                    let (se, le) = marks
                        .get(i + 1)
                        .map_or((l.short.len(), l.long.len()), |n| (n.short[k], n.long[k]));
                    let (ss, ls) = (m.short[k], m.long[k]);
                    // Most of a window's groups (a CSV's VMs) write in one leaf, so one shard:
                    // the others pass their empty segments here.
                    let mut n = 0;
                    if ss < se {
                        n += shard.insert_records(&l.short[ss..se], short, count_below);
                    }
                    if ls < le {
                        n += shard.insert_records(&l.long[ls..le], unpack, count_below);
                    }
                    if let Some(f) = mine.get_mut(m.group) {
                        *f += n;
                    }
                }
            }
            mine
        };
        let sum = |mut a: Vec<u64>, b: Vec<u64>| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        };
        let total = if dealt.len() < GROUPED_PARALLEL_MIN {
            self.shards
                .iter_mut()
                .enumerate()
                .map(apply)
                .fold(vec![0; groups], sum)
        } else {
            self.shards
                .par_iter_mut()
                .enumerate()
                .map(apply)
                .reduce(|| vec![0; groups], sum)
        };
        fresh.iter_mut().zip(&total).for_each(|(f, t)| *f += t);
    }

    /// Inserts the leading extents that are usual ones in the [`LastLeaf`] — at most 64 chunks
    /// of that bitmap leaf, all below `below` — and returns how many it took and the new chunks
    /// among them; it stops at the first other one (extents of zero bytes, which touch nothing,
    /// it passes). The serial path's hot loop: the leaf's words are a slice of their own and the
    /// count a local, so the loop keeps its state in registers — with the words beside the
    /// tracker's other `u64`s behind one `&mut self`, every store to a word could have changed
    /// them, and each write reloaded them.
    #[inline(always)]
    fn last_leaf_run(
        &mut self,
        offsets: &[u64],
        lengths: &[u32],
        shift: u32,
        below: u64,
    ) -> (usize, u64) {
        let LastLeaf { slot, shard, base } = self.last;
        if slot == u64::MAX {
            return (0, 0);
        }
        let shard = &mut self.shards[shard];
        // (A bitmap leaf's words are always there: `base` came from its entry.)
        let Some(Ok(words)) = shard
            .words
            .get_mut(base..base + LEAF_WORDS)
            .map(<&mut Bitmap>::try_from)
        else {
            return (0, 0);
        };
        let mut fresh = 0;
        let mut done = offsets.len().min(lengths.len());
        // Asks the cache for the word a write at `off` sets first, if it lies in this leaf.
        let ask = |words: &[u64], off: u64| {
            let c = off >> shift;
            if c >> LEAF_SHIFT == slot {
                prefetch(words, (c as usize & (LEAF_BITS as usize - 1)) >> 6);
            }
        };
        for &ahead in offsets.iter().take(PREFETCH_AHEAD) {
            ask(&words[..], ahead);
        }
        for (k, (&off, &len)) in offsets.iter().zip(lengths).enumerate() {
            if let Some(&ahead) = offsets.get(k + PREFETCH_AHEAD) {
                ask(&words[..], ahead);
            }
            if len == 0 {
                continue;
            }
            let first = off >> shift;
            let end = ((off.saturating_add(u64::from(len)) - 1) >> shift) + 1;
            if end - first > 64
                || first >> LEAF_SHIFT != slot
                || (end - 1) >> LEAF_SHIFT != slot
                || end > below
            {
                done = k;
                break;
            }
            let lo = first as u32 & (LEAF_BITS as u32 - 1);
            fresh += bitmap_insert_small(words, 0, lo, lo + (end - first - 1) as u32);
        }
        shard.count += fresh;
        (done, fresh)
    }

    /// Makes leaf `slot` the [`LastLeaf`] if it is a bitmap; false if it is sparse or absent.
    fn find_bitmap_leaf(&mut self, slot: u64) -> bool {
        let shard = (slot % SHARDS as u64) as usize;
        let e = self.shards[shard].entry(slot);
        if e & SPARSE != 0 {
            // (ABSENT has the SPARSE bit set.)
            return false;
        }
        self.last = LastLeaf {
            slot,
            shard,
            base: e as usize * LEAF_WORDS,
        };
        true
    }

    /// Inserts the chunks every extent touches — extent `i` is bytes
    /// `[offsets[i], offsets[i] + lengths[i])`, chunk `c` is bytes `[c << shift, (c + 1) << shift)`
    /// — and returns how many new chunks lie below `count_below`. Large batches run on several
    /// threads, one shard each; the result is the same as inserting the extents one by one (the
    /// caller checked every extent lies inside the universe; chunks past it are dropped).
    pub fn insert_extents(
        &mut self,
        offsets: &[u64],
        lengths: &[u32],
        shift: u32,
        count_below: u64,
    ) -> u64 {
        let n = offsets.len().min(lengths.len());
        let (offsets, lengths) = (&offsets[..n], &lengths[..n]);
        if n < PARALLEL_MIN {
            let below = self.len.min(count_below);
            let (mut fresh, mut i) = (0, 0);
            while i < n {
                let (done, got) = self.last_leaf_run(&offsets[i..], &lengths[i..], shift, below);
                fresh += got;
                i += done;
                let (Some(&off), Some(&len)) = (offsets.get(i), lengths.get(i)) else {
                    break;
                };
                if len == 0 {
                    // (Only with no last leaf yet: a run passes these.)
                    i += 1;
                    continue;
                }
                let first = off >> shift;
                let end = ((off.saturating_add(u64::from(len)) - 1) >> shift) + 1;
                let slot = first >> LEAF_SHIFT;
                // The usual write of another leaf: if that leaf is a bitmap it becomes the last,
                // and the next run takes this write (a run never stops at a usual write of the
                // last leaf, so this cannot turn for ever).
                if end - first <= 64
                    && (first ^ (end - 1)) >> LEAF_SHIFT == 0
                    && end <= below
                    && slot != self.last.slot
                    && self.find_bitmap_leaf(slot)
                {
                    continue;
                }
                fresh += self.insert_range_counting_below(first, end, count_below);
                i += 1;
            }
            return fresh;
        }
        with_scratch(|dealt| {
            // Sizes cannot fail here: `u64::MAX` bytes admits every extent that does not overflow.
            match self.deal(offsets, lengths, shift, u64::MAX, dealt) {
                Ok(()) => self.apply_dealt(dealt, count_below),
                Err(_) => 0,
            }
        })
    }
}

/// How many writes (records) ahead the serial path and [`usual_run`](super::usual_run) ask the
/// cache for the word a write will set: a leaf is cold at each of its set's batches (a CSV's
/// VMs take turns with the other CSVs'), and a write's word is a random one of it, so without
/// the hint each write waited on its load. Model choice, measured with `cargo bench -p
/// vssim-engine --bench trackers -- run` (README, "What changed on 3 December (eighth
/// session)"): 16 against none 7-19 % faster a window; 32 and 48 inside the noise of 16.
pub(super) const PREFETCH_AHEAD: usize = 16;

/// Asks the cache for `words[i]` (nothing if out of range).
#[inline(always)]
pub(super) fn prefetch(words: &[u64], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(w) = words.get(i) {
        #[allow(unsafe_code)]
        // SAFETY: a prefetch of a valid reference; it reads nothing the program sees.
        unsafe {
            core::arch::x86_64::_mm_prefetch(
                std::ptr::from_ref(w).cast::<i8>(),
                core::arch::x86_64::_MM_HINT_T0,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (words, i);
}

/// Runs `f` with a dealt-batch buffer from a small pool shared by every set, so repeated large
/// batches (and new trackers) reuse warm pages.
pub fn with_scratch<T>(f: impl FnOnce(&mut Dealt) -> T) -> T {
    use std::sync::Mutex;
    static POOL: Mutex<Vec<Dealt>> = Mutex::new(Vec::new());
    let mut dealt = POOL
        .lock()
        .map(|mut p| p.pop().unwrap_or_default())
        .unwrap_or_default();
    let out = f(&mut dealt);
    if let Ok(mut p) = POOL.lock() {
        if p.len() < 4 {
            p.push(dealt);
        }
    }
    out
}
