//! A sparse set of chunk numbers: a two-level structure in the manner of roaring bitmaps.
//!
//! The universe `[0, len)` is cut into leaves of 32,768 chunks. The top level holds one `u32` per
//! leaf: its index in an arena, or `ABSENT`. A leaf exists only once one of its chunks was
//! inserted, and holds its chunks as a sorted `u16` array while they are few (2 bytes a chunk) and
//! as a 4 KiB bitmap once they are many. So memory
//! follows what was touched, not the universe: a 64 TiB volume in 16 KiB chunks costs 512 KiB of
//! top level and nothing else until it is written, and a few scattered writes per gigabyte cost a
//! few bytes each.

use crate::error::{Error, Result};

const LEAF_SHIFT: u32 = 15;
const LEAF_BITS: u64 = 1 << LEAF_SHIFT;
const LEAF_WORDS: usize = (LEAF_BITS / 64) as usize;
const ABSENT: u32 = u32::MAX;
/// A sparse leaf turns into a bitmap beyond this many chunks: past that, inserting into the sorted
/// array costs more time than the bitmap's extra memory is worth (measured with
/// `cargo bench -p vssim-engine`: 256 keeps the dense benchmark within a few percent of pure
/// bitmaps; 1,024 made it 60 % slower).
const SPARSE_MAX: usize = 256;
/// Leaves are dealt to shards round-robin (leaf slot modulo `SHARDS`), so a batch can be applied
/// by several threads at once, each owning whole leaves — and each keeping its share of a hot
/// region in its own core's cache.
const SHARDS: usize = 4;
/// Batches smaller than this are applied on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

type Bitmap = [u64; LEAF_WORDS];

/// The chunks of one leaf, as local bit numbers `0..LEAF_BITS`.
#[derive(Clone, Debug)]
enum Leaf {
    Sparse(Vec<u16>),
    Dense(Box<Bitmap>),
}

/// Bits `[lo, hi)` of a word set (requires `lo < hi <= 64`).
#[inline]
fn word_mask(lo: u64, hi: u64) -> u64 {
    let upper = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// Sets bits `[lo, hi)` of a bitmap; returns how many were clear.
#[inline(always)]
fn bitmap_insert(map: &mut Bitmap, lo: u64, hi: u64) -> u64 {
    let mut bit = lo;
    let mut fresh = 0;
    while bit < hi {
        let w = (bit / 64) as usize;
        let l = bit % 64;
        let h = (hi - (bit - l)).min(64);
        let mask = word_mask(l, h);
        fresh += u64::from((!map[w] & mask).count_ones());
        map[w] |= mask;
        bit += h - l;
    }
    fresh
}

impl Leaf {
    fn to_bitmap(&self) -> Box<Bitmap> {
        match self {
            Leaf::Dense(map) => map.clone(),
            Leaf::Sparse(v) => {
                let mut map = Box::new([0u64; LEAF_WORDS]);
                for &b in v {
                    map[usize::from(b) / 64] |= 1 << (b % 64);
                }
                map
            }
        }
    }

    /// Inserts local bits `[lo, hi)`; returns how many were new.
    #[inline(always)]
    fn insert(&mut self, lo: u64, hi: u64) -> u64 {
        match self {
            Leaf::Dense(map) => bitmap_insert(map, lo, hi),
            Leaf::Sparse(v) => {
                if v.len() + (hi - lo) as usize > SPARSE_MAX {
                    let mut map = self.to_bitmap();
                    let fresh = bitmap_insert(&mut map, lo, hi);
                    *self = Leaf::Dense(map);
                    return fresh;
                }
                let mut pos = v.partition_point(|&x| u64::from(x) < lo);
                let mut fresh = 0;
                for b in lo..hi {
                    if v.get(pos).is_some_and(|&x| u64::from(x) == b) {
                        pos += 1;
                        continue;
                    }
                    v.insert(pos, b as u16);
                    pos += 1;
                    fresh += 1;
                }
                fresh
            }
        }
    }

    fn contains(&self, bit: u64) -> bool {
        match self {
            Leaf::Dense(map) => map[(bit / 64) as usize] & (1 << (bit % 64)) != 0,
            Leaf::Sparse(v) => v.binary_search(&(bit as u16)).is_ok(),
        }
    }

    fn remove(&mut self, bit: u64) -> bool {
        match self {
            Leaf::Dense(map) => {
                let word = &mut map[(bit / 64) as usize];
                let mask = 1u64 << (bit % 64);
                let was = *word & mask != 0;
                *word &= !mask;
                was
            }
            Leaf::Sparse(v) => match v.binary_search(&(bit as u16)) {
                Ok(i) => {
                    v.remove(i);
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// Chunks among local bits `[lo, hi)`.
    fn count_range(&self, lo: u64, hi: u64) -> u64 {
        match self {
            Leaf::Dense(map) => {
                let mut n = 0;
                let mut bit = lo;
                while bit < hi {
                    let l = bit % 64;
                    let h = (hi - (bit - l)).min(64);
                    n += u64::from((map[(bit / 64) as usize] & word_mask(l, h)).count_ones());
                    bit += h - l;
                }
                n
            }
            Leaf::Sparse(v) => {
                let a = v.partition_point(|&x| u64::from(x) < lo);
                let b = v.partition_point(|&x| u64::from(x) < hi);
                (b - a) as u64
            }
        }
    }

    /// The non-zero 64-bit words of the leaf, ascending, as (word index, word).
    fn words(&self) -> Vec<(usize, u64)> {
        match self {
            Leaf::Dense(map) => map
                .iter()
                .enumerate()
                .filter(|(_, &w)| w != 0)
                .map(|(i, &w)| (i, w))
                .collect(),
            Leaf::Sparse(v) => {
                let mut out: Vec<(usize, u64)> = Vec::new();
                for &b in v {
                    let (w, bit) = (usize::from(b) / 64, b % 64);
                    match out.last_mut() {
                        Some((lw, word)) if *lw == w => *word |= 1 << bit,
                        _ => out.push((w, 1 << bit)),
                    }
                }
                out
            }
        }
    }

    /// ORs `words` in; returns how many bits were new.
    fn or_bitmap(&mut self, words: &Bitmap) -> u64 {
        let mut map = match std::mem::replace(self, Leaf::Sparse(Vec::new())) {
            Leaf::Dense(map) => map,
            sparse => sparse.to_bitmap(),
        };
        let mut added = 0;
        for (dst, &src) in map.iter_mut().zip(words.iter()) {
            added += u64::from((!*dst & src).count_ones());
            *dst |= src;
        }
        *self = Leaf::Dense(map);
        added
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Leaf::Dense(_) => std::mem::size_of::<Bitmap>(),
            Leaf::Sparse(v) => v.capacity() * 2,
        }
    }
}

/// The leaves of one shard: `top[slot / SHARDS]` is the arena index of leaf `slot`, or `ABSENT`.
#[derive(Clone, Debug, Default)]
struct Shard {
    top: Vec<u32>,
    leaves: Vec<Leaf>,
    /// Where each arena leaf sits (its global slot), so iteration can go in chunk order.
    leaf_slot: Vec<u32>,
    count: u64,
    /// Indices of the extents of the batch being applied that touch this shard (kept between
    /// batches so large batches do not fault in fresh pages every time).
    pending: Vec<u32>,
}

impl Shard {
    fn leaf(&self, slot: u64) -> Option<&Leaf> {
        match self.top[(slot / SHARDS as u64) as usize] {
            ABSENT => None,
            idx => Some(&self.leaves[idx as usize]),
        }
    }

    #[inline(always)]
    fn leaf_mut(&mut self, slot: u64) -> &mut Leaf {
        let local = (slot / SHARDS as u64) as usize;
        let mut idx = self.top[local];
        if idx == ABSENT {
            idx = self.leaves.len() as u32;
            self.leaves.push(Leaf::Sparse(Vec::new()));
            self.leaf_slot.push(slot as u32);
            self.top[local] = idx;
        }
        &mut self.leaves[idx as usize]
    }

    /// Inserts `[start, end)`, which lies inside leaf `slot`; returns how many were new.
    #[inline(always)]
    fn insert_in_leaf(&mut self, slot: u64, start: u64, end: u64) -> u64 {
        let lo = start & (LEAF_BITS - 1);
        let fresh = self.leaf_mut(slot).insert(lo, lo + (end - start));
        self.count += fresh;
        fresh
    }

    /// Inserts `[start, end)` inside leaf `slot`; returns the new chunks below `count_below`.
    #[inline(always)]
    fn insert_counting_below(&mut self, slot: u64, start: u64, end: u64, count_below: u64) -> u64 {
        if end <= count_below {
            self.insert_in_leaf(slot, start, end)
        } else if start >= count_below {
            self.insert_in_leaf(slot, start, end);
            0
        } else {
            let below = self.insert_in_leaf(slot, start, count_below);
            self.insert_in_leaf(slot, count_below, end);
            below
        }
    }
}

/// A set of `u64` chunk numbers below a fixed bound (see the module doc).
#[derive(Clone, Debug)]
pub struct ChunkSet {
    len: u64,
    shards: Vec<Shard>,
}

impl ChunkSet {
    /// The largest universe a set can have (leaf slots are `u32`).
    pub const MAX_LEN: u64 = (u32::MAX as u64) << LEAF_SHIFT;

    /// How many `unit`-byte pieces cover `size` bytes, checked against what a set can track: the
    /// universe of a tracker over a device. Errors name `name` (the size argument) and `what`.
    pub fn universe_for(name: &'static str, size: u64, unit: u64, what: &str) -> Result<u64> {
        if size == 0 {
            return Err(Error::invalid(
                name,
                format!("0 bytes: expected at least one {what}"),
            ));
        }
        let n = size.div_ceil(unit);
        if n > Self::MAX_LEN {
            return Err(Error::invalid(
                name,
                format!("{size} bytes is more {what}s of {unit} bytes than can be tracked"),
            ));
        }
        Ok(n)
    }

    /// An empty set over the universe `[0, len)`.
    pub fn new(len: u64) -> Self {
        let slots = len.div_ceil(LEAF_BITS);
        let shards = (0..SHARDS as u64)
            .map(|s| Shard {
                top: vec![ABSENT; (slots.saturating_sub(s)).div_ceil(SHARDS as u64) as usize],
                ..Shard::default()
            })
            .collect();
        ChunkSet { len, shards }
    }

    /// The size of the universe.
    pub fn universe(&self) -> u64 {
        self.len
    }

    /// Number of chunks in the set.
    pub fn count(&self) -> u64 {
        self.shards.iter().map(|s| s.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Bytes of memory this set holds (top level and leaves).
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.top.capacity() * 4
                    + s.leaf_slot.capacity() * 4
                    + s.pending.capacity() * 4
                    + s.leaves.capacity() * std::mem::size_of::<Leaf>()
                    + s.leaves.iter().map(Leaf::memory_bytes).sum::<usize>()
            })
            .sum::<usize>()
            + std::mem::size_of::<Self>()
    }

    /// Removes every chunk, keeping the universe. Frees the leaves.
    pub fn clear(&mut self) {
        for s in &mut self.shards {
            s.top.iter_mut().for_each(|t| *t = ABSENT);
            s.leaves = Vec::new();
            s.leaf_slot = Vec::new();
            s.pending = Vec::new();
            s.count = 0;
        }
    }

    fn shard_of(&self, slot: u64) -> &Shard {
        &self.shards[(slot % SHARDS as u64) as usize]
    }

    fn shard_mut(&mut self, slot: u64) -> &mut Shard {
        &mut self.shards[(slot % SHARDS as u64) as usize]
    }

    fn leaf(&self, slot: u64) -> Option<&Leaf> {
        self.shard_of(slot).leaf(slot)
    }

    pub fn contains(&self, chunk: u64) -> bool {
        chunk < self.len
            && self
                .leaf(chunk >> LEAF_SHIFT)
                .is_some_and(|leaf| leaf.contains(chunk & (LEAF_BITS - 1)))
    }

    /// Inserts one chunk; true when it was not in the set. Chunks past the universe are ignored
    /// (callers check bounds first).
    #[inline]
    pub fn insert(&mut self, chunk: u64) -> bool {
        self.insert_range(chunk, chunk.saturating_add(1)) == 1
    }

    /// Inserts every chunk of `[start, end)` (clipped to the universe); returns how many were new.
    #[inline]
    pub fn insert_range(&mut self, start: u64, end: u64) -> u64 {
        self.insert_range_counting_below(start, end, u64::MAX)
    }

    /// Inserts every chunk of `[start, end)` (clipped to the universe); returns how many of the new
    /// ones lie below `count_below`.
    #[inline]
    pub fn insert_range_counting_below(&mut self, start: u64, end: u64, count_below: u64) -> u64 {
        let end = end.min(self.len);
        let mut fresh = 0;
        let mut pos = start;
        while pos < end {
            let slot = pos >> LEAF_SHIFT;
            let leaf_end = ((slot + 1) << LEAF_SHIFT).min(end);
            fresh += self
                .shard_mut(slot)
                .insert_counting_below(slot, pos, leaf_end, count_below);
            pos = leaf_end;
        }
        fresh
    }

    /// Inserts the chunks every extent touches — extent `i` is bytes
    /// `[offsets[i], offsets[i] + lengths[i])`, chunk `c` is bytes `[c << shift, (c + 1) << shift)`
    /// — and returns how many new chunks lie below `count_below`. Large batches run on several
    /// threads, one shard each; the result is the same as inserting the extents one by one (the
    /// caller checked every extent lies inside the universe).
    pub fn insert_extents(
        &mut self,
        offsets: &[u64],
        lengths: &[u32],
        shift: u32,
        count_below: u64,
    ) -> u64 {
        use rayon::prelude::*;
        const MAX_BATCH: usize = 1 << 31;
        if offsets.len() > MAX_BATCH {
            // Indices are kept as u32 below: apply giant batches in pieces (same result).
            return offsets
                .chunks(MAX_BATCH)
                .zip(lengths.chunks(MAX_BATCH))
                .map(|(o, l)| self.insert_extents(o, l, shift, count_below))
                .sum();
        }
        let len = self.len;
        let span = |i: usize| -> Option<(u64, u64)> {
            let n = lengths[i];
            if n == 0 {
                return None;
            }
            let off = offsets[i];
            let first = off >> shift;
            Some((first, (((off + u64::from(n) - 1) >> shift) + 1).min(len)))
        };
        if offsets.len() < PARALLEL_MIN {
            return (0..offsets.len())
                .filter_map(span)
                .map(|(first, end)| self.insert_range_counting_below(first, end, count_below))
                .sum();
        }
        // One pass deals the extents to the shards that own their leaves (an extent crossing a
        // leaf boundary goes to each owner, which clips it); then each shard applies its own list
        // in the original order, on its own thread.
        for shard in &mut self.shards {
            shard.pending.clear();
        }
        for i in 0..offsets.len() {
            if let Some((first, end)) = span(i) {
                let (fs, ls) = (first >> LEAF_SHIFT, (end - 1) >> LEAF_SHIFT);
                self.shards[(fs % SHARDS as u64) as usize]
                    .pending
                    .push(i as u32);
                for slot in fs + 1..=ls.min(fs + SHARDS as u64 - 1) {
                    self.shards[(slot % SHARDS as u64) as usize]
                        .pending
                        .push(i as u32);
                }
            }
        }
        self.shards
            .par_iter_mut()
            .enumerate()
            .map(|(s, shard)| {
                let pending = std::mem::take(&mut shard.pending);
                let mut fresh = 0;
                for &i in &pending {
                    let Some((first, end)) = span(i as usize) else {
                        continue;
                    };
                    let (fs, ls) = (first >> LEAF_SHIFT, (end - 1) >> LEAF_SHIFT);
                    if fs == ls {
                        fresh += shard.insert_counting_below(fs, first, end, count_below);
                        continue;
                    }
                    for slot in (fs..=ls).filter(|slot| slot % SHARDS as u64 == s as u64) {
                        let a = first.max(slot << LEAF_SHIFT);
                        let b = end.min((slot + 1) << LEAF_SHIFT);
                        fresh += shard.insert_counting_below(slot, a, b, count_below);
                    }
                }
                shard.pending = pending;
                fresh
            })
            .sum()
    }

    /// Removes one chunk; true when it was in the set.
    pub fn remove(&mut self, chunk: u64) -> bool {
        if chunk >= self.len {
            return false;
        }
        let slot = chunk >> LEAF_SHIFT;
        let shard = self.shard_mut(slot);
        let idx = shard.top[(slot / SHARDS as u64) as usize];
        if idx == ABSENT {
            return false;
        }
        let was = shard.leaves[idx as usize].remove(chunk & (LEAF_BITS - 1));
        shard.count -= u64::from(was);
        was
    }

    /// Number of chunks of the set inside `[start, end)`.
    pub fn count_range(&self, start: u64, end: u64) -> u64 {
        let end = end.min(self.len);
        let mut n = 0;
        let mut pos = start;
        while pos < end {
            let slot = pos >> LEAF_SHIFT;
            let leaf_end = ((slot + 1) << LEAF_SHIFT).min(end);
            if let Some(leaf) = self.leaf(slot) {
                let lo = pos & (LEAF_BITS - 1);
                n += leaf.count_range(lo, lo + (leaf_end - pos));
            }
            pos = leaf_end;
        }
        n
    }

    /// The leaves that exist, in chunk order, as (first chunk of the leaf, leaf).
    fn leaves_in_order(&self) -> impl Iterator<Item = (u64, &Leaf)> + '_ {
        let mut order: Vec<u64> = self
            .shards
            .iter()
            .flat_map(|s| s.leaf_slot.iter().map(|&slot| u64::from(slot)))
            .collect();
        order.sort_unstable();
        order
            .into_iter()
            .filter_map(move |slot| self.leaf(slot).map(|leaf| (slot << LEAF_SHIFT, leaf)))
    }

    /// The set's non-zero 64-bit words in chunk order, as (first chunk of the word, word).
    fn words_in_order(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.leaves_in_order().flat_map(|(base, leaf)| {
            leaf.words()
                .into_iter()
                .map(move |(w, word)| (base + w as u64 * 64, word))
        })
    }

    /// Every chunk of the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words_in_order().flat_map(|(base, word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let tz = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                Some(base + tz)
            })
        })
    }

    /// Maximal runs of consecutive chunks, ascending, as `(first, count)`.
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (base, word) in self.words_in_order() {
            let mut bits = word;
            let mut offset = 0u64;
            while bits != 0 {
                let tz = u64::from(bits.trailing_zeros());
                bits >>= tz;
                offset += tz;
                let ones = u64::from((!bits).trailing_zeros());
                let first = base + offset;
                match runs.last_mut() {
                    Some((start, len)) if *start + *len == first => *len += ones,
                    _ => runs.push((first, ones)),
                }
                offset += ones;
                bits = if ones == 64 { 0 } else { bits >> ones };
            }
        }
        runs
    }

    /// Adds every chunk of `other` (same universe or smaller).
    pub fn union_with(&mut self, other: &ChunkSet) {
        for (slot, map) in other.leaf_entries() {
            self.set_leaf(slot, &map);
        }
    }

    /// The set as (leaf slot, bitmap) pairs, in chunk order: the top level is implied by `len`.
    pub fn leaf_entries(&self) -> impl Iterator<Item = (u32, Box<Bitmap>)> + '_ {
        self.leaves_in_order()
            .map(|(base, leaf)| ((base >> LEAF_SHIFT) as u32, leaf.to_bitmap()))
    }

    /// Number of leaves a universe of `len` chunks has.
    pub fn slots_for(len: u64) -> u64 {
        len.div_ceil(LEAF_BITS)
    }

    /// Words in one leaf bitmap.
    pub const LEAF_WORDS: usize = LEAF_WORDS;

    /// ORs a bitmap into leaf `slot` (the caller checked `slot` is in range). Bits past the
    /// universe are masked off, so a crafted file cannot inflate `count` or make `runs` report
    /// chunks that do not exist.
    pub fn set_leaf(&mut self, slot: u32, words: &Bitmap) {
        let slot = u64::from(slot);
        let base = slot << LEAF_SHIFT;
        if base >= self.len {
            return;
        }
        let valid = (self.len - base).min(LEAF_BITS);
        let mut masked = *words;
        for (w, word) in masked.iter_mut().enumerate() {
            let lo = w as u64 * 64;
            if lo >= valid {
                *word = 0;
            } else if lo + 64 > valid {
                *word &= word_mask(0, valid - lo);
            }
        }
        let shard = self.shard_mut(slot);
        let added = shard.leaf_mut(slot).or_bitmap(&masked);
        shard.count += added;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn insert_contains_count() {
        let mut s = ChunkSet::new(100_000);
        assert!(s.insert(5));
        assert!(!s.insert(5));
        assert!(s.insert(70_000));
        assert!(s.contains(5) && s.contains(70_000) && !s.contains(6));
        assert_eq!(s.count(), 2);
        assert!(!s.insert(100_000), "past the universe is ignored");
    }

    #[test]
    fn huge_universe_costs_little_until_touched() {
        // 64 TiB in 16 KiB chunks.
        let s = ChunkSet::new((64u64 << 40) / 16384);
        assert!(s.memory_bytes() <= 1 << 20, "{}", s.memory_bytes());
    }

    #[test]
    fn runs_merge_across_words_and_leaves() {
        let mut s = ChunkSet::new(1 << 20);
        s.insert_range(60, 70);
        s.insert_range(LEAF_BITS - 3, LEAF_BITS + 2);
        s.insert(500);
        assert_eq!(s.runs(), vec![(60, 10), (500, 1), (LEAF_BITS - 3, 5)]);
    }

    #[test]
    fn set_leaf_masks_bits_past_the_universe() {
        let mut s = ChunkSet::new(10);
        s.set_leaf(0, &[u64::MAX; LEAF_WORDS]);
        assert_eq!(s.count(), 10);
        assert_eq!(s.runs(), vec![(0, 10)]);
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreeset(ops in proptest::collection::vec((0u64..200_000, 1u64..3000, any::<bool>()), 0..200)) {
            let len = 200_000u64;
            let mut s = ChunkSet::new(len);
            let mut r = BTreeSet::new();
            for (start, n, single) in ops {
                if single {
                    let fresh = s.insert(start);
                    prop_assert_eq!(fresh, r.insert(start));
                } else {
                    let end = (start + n).min(len);
                    let before = r.len() as u64;
                    for c in start..end { r.insert(c); }
                    prop_assert_eq!(s.insert_range(start, start + n), r.len() as u64 - before);
                }
                prop_assert_eq!(s.count(), r.len() as u64);
            }
            let got: Vec<u64> = s.iter().collect();
            let want: Vec<u64> = r.iter().copied().collect();
            prop_assert_eq!(&got, &want);
            let expanded: Vec<u64> = s.runs().iter().flat_map(|&(a, n)| a..a + n).collect();
            prop_assert_eq!(expanded, want);
            prop_assert_eq!(s.count_range(1000, 150_000), r.range(1000..150_000).count() as u64);
        }

        #[test]
        fn parallel_extents_match_one_by_one(
            exts in proptest::collection::vec((0u64..(40 << 20), 0u32..300_000), 0..300),
            count_below in 0u64..3000,
        ) {
            let len = (40u64 << 20) / 16384 + 20;
            let offs: Vec<u64> = exts.iter().map(|e| e.0).collect();
            let lens: Vec<u32> = exts.iter().map(|e| e.1).collect();
            // Repeat the batch so it crosses the parallel threshold.
            let reps = PARALLEL_MIN / exts.len().max(1) + 1;
            let offs: Vec<u64> = offs.iter().copied().cycle().take(offs.len() * reps).collect();
            let lens: Vec<u32> = lens.iter().copied().cycle().take(lens.len() * reps).collect();
            let mut par = ChunkSet::new(len);
            let got = par.insert_extents(&offs, &lens, 14, count_below);
            let mut seq = ChunkSet::new(len);
            let mut want = 0;
            for (&o, &n) in offs.iter().zip(&lens) {
                if n > 0 {
                    want += seq.insert_range_counting_below(o >> 14, ((o + u64::from(n) - 1) >> 14) + 1, count_below);
                }
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(par.runs(), seq.runs());
            prop_assert_eq!(par.count(), seq.count());
        }
    }
}
