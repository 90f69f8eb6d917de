//! A sparse set of chunk numbers: a two-level bitmap.
//!
//! The universe `[0, len)` is cut into leaves of 32,768 chunks (a 4 KiB bitmap each). The top level
//! holds one `u32` per leaf: the leaf's index in an arena, or `ABSENT`. A leaf exists only once one
//! of its chunks was inserted, so memory follows what was touched, not the universe: a 64 TiB
//! volume in 16 KiB chunks has 131,072 leaves' worth of top level (512 KiB) and nothing else until
//! it is written. Dense regions cost one bit per chunk, like a flat bitmap.

const LEAF_SHIFT: u32 = 15;
const LEAF_BITS: u64 = 1 << LEAF_SHIFT;
const LEAF_WORDS: usize = (LEAF_BITS / 64) as usize;
const ABSENT: u32 = u32::MAX;

type Leaf = [u64; LEAF_WORDS];

/// A set of `u64` chunk numbers below a fixed bound, stored as a two-level bitmap.
#[derive(Clone, Debug)]
pub struct ChunkSet {
    len: u64,
    top: Vec<u32>,
    leaves: Vec<Box<Leaf>>,
    /// Where each arena leaf sits in `top`, so iteration can go in chunk order.
    leaf_slot: Vec<u32>,
    count: u64,
}

/// Bits `[lo, hi)` of a word set (requires `lo < hi <= 64`).
#[inline]
fn word_mask(lo: u64, hi: u64) -> u64 {
    let upper = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

impl ChunkSet {
    /// An empty set over the universe `[0, len)`.
    pub fn new(len: u64) -> Self {
        let slots = len.div_ceil(LEAF_BITS) as usize;
        ChunkSet {
            len,
            top: vec![ABSENT; slots],
            leaves: Vec::new(),
            leaf_slot: Vec::new(),
            count: 0,
        }
    }

    /// The size of the universe.
    pub fn universe(&self) -> u64 {
        self.len
    }

    /// Number of chunks in the set.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of memory this set holds (top level and leaves).
    pub fn memory_bytes(&self) -> usize {
        self.top.capacity() * 4
            + self.leaf_slot.capacity() * 4
            + self.leaves.capacity() * std::mem::size_of::<usize>()
            + self.leaves.len() * std::mem::size_of::<Leaf>()
    }

    /// Removes every chunk, keeping the universe. Frees the leaves.
    pub fn clear(&mut self) {
        self.top.iter_mut().for_each(|t| *t = ABSENT);
        self.leaves = Vec::new();
        self.leaf_slot = Vec::new();
        self.count = 0;
    }

    pub fn contains(&self, chunk: u64) -> bool {
        if chunk >= self.len {
            return false;
        }
        match self.top[(chunk >> LEAF_SHIFT) as usize] {
            ABSENT => false,
            leaf => {
                let bit = chunk & (LEAF_BITS - 1);
                self.leaves[leaf as usize][(bit / 64) as usize] & (1 << (bit % 64)) != 0
            }
        }
    }

    fn leaf_mut(&mut self, slot: usize) -> &mut Leaf {
        let mut idx = self.top[slot];
        if idx == ABSENT {
            idx = self.leaves.len() as u32;
            self.leaves.push(Box::new([0; LEAF_WORDS]));
            self.leaf_slot.push(slot as u32);
            self.top[slot] = idx;
        }
        &mut self.leaves[idx as usize]
    }

    /// Inserts one chunk; true when it was not in the set. Chunks past the universe are ignored
    /// (callers check bounds first).
    #[inline]
    pub fn insert(&mut self, chunk: u64) -> bool {
        if chunk >= self.len {
            return false;
        }
        let bit = chunk & (LEAF_BITS - 1);
        let leaf = self.leaf_mut((chunk >> LEAF_SHIFT) as usize);
        let word = &mut leaf[(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        let fresh = *word & mask == 0;
        *word |= mask;
        self.count += u64::from(fresh);
        fresh
    }

    /// Inserts every chunk of `[start, end)` (clipped to the universe); returns how many were new.
    pub fn insert_range(&mut self, start: u64, end: u64) -> u64 {
        let end = end.min(self.len);
        if start >= end {
            return 0;
        }
        if end - start == 1 {
            return u64::from(self.insert(start));
        }
        let mut fresh = 0;
        let mut pos = start;
        while pos < end {
            let slot = (pos >> LEAF_SHIFT) as usize;
            let leaf_end = ((slot as u64 + 1) << LEAF_SHIFT).min(end);
            let leaf = self.leaf_mut(slot);
            let mut bit = pos & (LEAF_BITS - 1);
            let stop = bit + (leaf_end - pos);
            while bit < stop {
                let w = (bit / 64) as usize;
                let lo = bit % 64;
                let hi = (stop - (bit - lo)).min(64);
                let mask = word_mask(lo, hi);
                fresh += u64::from((!leaf[w] & mask).count_ones());
                leaf[w] |= mask;
                bit += hi - lo;
            }
            pos = leaf_end;
        }
        self.count += fresh;
        fresh
    }

    /// Removes one chunk; true when it was in the set.
    pub fn remove(&mut self, chunk: u64) -> bool {
        if chunk >= self.len {
            return false;
        }
        let idx = self.top[(chunk >> LEAF_SHIFT) as usize];
        if idx == ABSENT {
            return false;
        }
        let bit = chunk & (LEAF_BITS - 1);
        let word = &mut self.leaves[idx as usize][(bit / 64) as usize];
        let mask = 1u64 << (bit % 64);
        let was = *word & mask != 0;
        *word &= !mask;
        self.count -= u64::from(was);
        was
    }

    /// Number of chunks of the set inside `[start, end)`.
    pub fn count_range(&self, start: u64, end: u64) -> u64 {
        let end = end.min(self.len);
        let mut n = 0;
        let mut pos = start;
        while pos < end {
            let slot = (pos >> LEAF_SHIFT) as usize;
            let leaf_end = ((slot as u64 + 1) << LEAF_SHIFT).min(end);
            if let Some(leaf) = self.leaf(slot) {
                let mut bit = pos & (LEAF_BITS - 1);
                let stop = bit + (leaf_end - pos);
                while bit < stop {
                    let lo = bit % 64;
                    let hi = (stop - (bit - lo)).min(64);
                    n += u64::from((leaf[(bit / 64) as usize] & word_mask(lo, hi)).count_ones());
                    bit += hi - lo;
                }
            }
            pos = leaf_end;
        }
        n
    }

    fn leaf(&self, slot: usize) -> Option<&Leaf> {
        match self.top[slot] {
            ABSENT => None,
            idx => Some(&self.leaves[idx as usize]),
        }
    }

    /// The leaves that exist, in chunk order, as (first chunk of the leaf, bitmap).
    fn leaves_in_order(&self) -> impl Iterator<Item = (u64, &Leaf)> + '_ {
        let mut order: Vec<u32> = self.leaf_slot.clone();
        order.sort_unstable();
        order.into_iter().filter_map(move |slot| {
            self.leaf(slot as usize)
                .map(|leaf| (u64::from(slot) << LEAF_SHIFT, leaf))
        })
    }

    /// Every chunk of the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.leaves_in_order().flat_map(|(base, leaf)| {
            leaf.iter().enumerate().flat_map(move |(w, &word)| {
                let mut bits = word;
                std::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let tz = u64::from(bits.trailing_zeros());
                    bits &= bits - 1;
                    Some(base + w as u64 * 64 + tz)
                })
            })
        })
    }

    /// Maximal runs of consecutive chunks, ascending, as `(first, count)`.
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (base, leaf) in self.leaves_in_order() {
            for (w, &word) in leaf.iter().enumerate() {
                let mut bits = word;
                let mut offset = 0u64;
                while bits != 0 {
                    let tz = u64::from(bits.trailing_zeros());
                    bits >>= tz;
                    offset += tz;
                    let ones = u64::from((!bits).trailing_zeros());
                    let first = base + w as u64 * 64 + offset;
                    match runs.last_mut() {
                        Some((start, len)) if *start + *len == first => *len += ones,
                        _ => runs.push((first, ones)),
                    }
                    offset += ones;
                    bits = if ones == 64 { 0 } else { bits >> ones };
                }
            }
        }
        runs
    }

    /// Adds every chunk of `other` (same universe or smaller).
    pub fn union_with(&mut self, other: &ChunkSet) {
        for (base, leaf) in other.leaves_in_order() {
            let slot = (base >> LEAF_SHIFT) as usize;
            if slot >= self.top.len() {
                break;
            }
            let mine = self.leaf_mut(slot);
            let mut fresh = 0u64;
            for (a, &b) in mine.iter_mut().zip(leaf.iter()) {
                fresh += u64::from((!*a & b).count_ones());
                *a |= b;
            }
            self.count += fresh;
        }
    }

    /// Serialises the set as (leaf slot, bitmap) pairs: the top level is implied by `len`.
    pub fn leaf_entries(&self) -> impl Iterator<Item = (u32, &[u64; LEAF_WORDS])> + '_ {
        self.leaves_in_order()
            .map(|(base, leaf)| ((base >> LEAF_SHIFT) as u32, leaf))
    }

    /// Number of leaves a universe of `len` chunks has.
    pub fn slots_for(len: u64) -> u64 {
        len.div_ceil(LEAF_BITS)
    }

    /// Words in one leaf bitmap.
    pub const LEAF_WORDS: usize = LEAF_WORDS;

    /// Rebuilds one leaf from its bitmap; the caller checked `slot` is in range and new.
    pub fn set_leaf(&mut self, slot: u32, words: &[u64; LEAF_WORDS]) {
        // Bits past the universe never count: mask them off so a crafted file cannot inflate
        // `count` or make `runs` report chunks that do not exist.
        let base = u64::from(slot) << LEAF_SHIFT;
        let valid = (self.len - base).min(LEAF_BITS);
        let leaf = self.leaf_mut(slot as usize);
        let mut added = 0u64;
        for (w, (dst, &src)) in leaf.iter_mut().zip(words.iter()).enumerate() {
            let lo = w as u64 * 64;
            let src = if lo >= valid {
                0
            } else if lo + 64 > valid {
                src & word_mask(0, valid - lo)
            } else {
                src
            };
            added += u64::from((!*dst & src).count_ones());
            *dst |= src;
        }
        self.count += added;
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
    }
}
