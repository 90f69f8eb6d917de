//! A sparse set of chunk numbers: a radix structure in the manner of roaring bitmaps.
//!
//! The universe `[0, len)` is cut into leaves of 32,768 chunks, dealt round-robin to `SHARDS`
//! shards (leaf slot modulo `SHARDS`), so a batch can be applied by several threads at once, each
//! owning whole leaves — and each keeping its share of a hot region in its own core's cache. A
//! shard finds a leaf in two steps: a directory entry per 1,024 of its slots names a page of
//! entries, allocated once one of those slots is used; the entry names the leaf. A leaf holds its
//! chunks as a sorted `u16` array while they are few (2 bytes a chunk) and as a 4 KiB bitmap once
//! they are many. So memory follows what was touched, not the universe: a 64 TiB volume in
//! 16 KiB chunks costs a few hundred bytes of directory and nothing else until it is written, and
//! a few scattered writes per gigabyte cost a few bytes each.
//!
//! Batches of extents go through `batch.rs`: one pass over the caller's arrays checks every
//! extent and deals it, as one packed record per leaf it touches, to the shard that owns the leaf;
//! then each shard applies its records, on its own thread, with a branch-free path for the usual
//! record (a bitmap leaf, at most 64 chunks).

mod batch;

pub use batch::{with_scratch, Dealt, GROUPED_PARALLEL_MIN};

use crate::error::{Error, Result};

const LEAF_SHIFT: u32 = 15;
const LEAF_BITS: u64 = 1 << LEAF_SHIFT;
const LEAF_WORDS: usize = (LEAF_BITS / 64) as usize;
/// A directory entry covers this many of a shard's slots (one page of entries, 4 KiB).
const PAGE_SHIFT: u32 = 10;
const PAGE_SLOTS: usize = 1 << PAGE_SHIFT;
const ABSENT: u32 = u32::MAX;
/// An entry with this bit set names a sparse leaf; otherwise a bitmap leaf.
const SPARSE: u32 = 1 << 31;
/// A sparse leaf turns into a bitmap beyond this many chunks: past that, inserting into the sorted
/// array costs more time than the bitmap's extra memory is worth (model choice, measured with
/// `cargo bench -p vssim-engine` and `benches/bench_cow.py`: a hot-spot stream's cold leaves each
/// take ~100 inserts before they turn, and at 256 those sorted inserts were a third of the run).
const SPARSE_MAX: usize = 32;
/// Leaves are dealt to shards round-robin (leaf slot modulo `SHARDS`).
const SHARDS: usize = 4;
/// Universe bound: chunk numbers fit in this many bits (records pack one beside a length).
const MAX_LEN_BITS: u32 = 40;

type Bitmap = [u64; LEAF_WORDS];
type Page = [u32; PAGE_SLOTS];

/// Bits `[lo, hi)` of a word set (requires `lo < hi <= 64`).
#[inline]
fn word_mask(lo: u64, hi: u64) -> u64 {
    let upper = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// Sets bits `[lo, hi)` of a leaf's bitmap; returns how many were clear.
#[inline]
fn bitmap_insert(map: &mut [u64], lo: u64, hi: u64) -> u64 {
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

/// Sets bits `lo..=hi` of the bitmap leaf whose words start at `base` in `words`; the bits span at
/// most two words (`hi - lo < 64`). Returns how many were clear. The usual write of a batch: no
/// loop, one branch that follows the data.
#[inline(always)]
fn bitmap_insert_small(words: &mut [u64], base: usize, lo: u32, hi: u32) -> u64 {
    let w1 = base + ((lo >> 6) as usize & (LEAF_WORDS - 1));
    let w2 = base + ((hi >> 6) as usize & (LEAF_WORDS - 1));
    let m_lo = u64::MAX << (lo & 63);
    let m_hi = u64::MAX >> (63 - (hi & 63));
    if w1 == w2 {
        let m = m_lo & m_hi;
        let old = words[w1];
        words[w1] = old | m;
        u64::from((!old & m).count_ones())
    } else {
        let (a, b) = (words[w1], words[w2]);
        words[w1] = a | m_lo;
        words[w2] = b | m_hi;
        u64::from((!a & m_lo).count_ones() + (!b & m_hi).count_ones())
    }
}

/// ORs a sparse leaf's chunks into a bitmap.
fn or_sparse(map: &mut [u64], v: &[u16]) {
    for &b in v {
        map[usize::from(b) / 64] |= 1 << (b % 64);
    }
}

/// Inserts local bits `[lo, hi)` into a sorted array; returns how many were new.
fn sparse_insert(v: &mut Vec<u16>, lo: u64, hi: u64) -> u64 {
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

/// Packs chunks `first..=first + extra` (inside one leaf) into a record.
#[inline(always)]
fn pack(first: u64, extra: u64) -> u64 {
    first | (extra << MAX_LEN_BITS)
}

#[inline(always)]
fn unpack(record: u64) -> (u64, u32) {
    (
        record & ((1 << MAX_LEN_BITS) - 1),
        (record >> MAX_LEN_BITS) as u32,
    )
}

static ABSENT_PAGE: Page = [ABSENT; PAGE_SLOTS];

/// Applies records while each is a usual one — its leaf (found by `entry`) a bitmap, its chunks at
/// most 64 and below `count_below` — and returns how many it applied and the new chunks among
/// them; it stops at the first record that is not usual.
#[inline(always)]
fn usual_run<R: Copy>(
    entry: impl Fn(u64) -> u32,
    decode: impl Fn(R) -> (u64, u32),
    words: &mut [u64],
    records: &[R],
    count_below: u64,
) -> (usize, u64) {
    let mut fresh = 0;
    for (i, &r) in records.iter().enumerate() {
        if let Some(&ahead) = records.get(i + batch::PREFETCH_AHEAD) {
            let (first, _) = decode(ahead);
            let e = entry(first >> LEAF_SHIFT);
            if e & SPARSE == 0 {
                let lo = first as usize & (LEAF_BITS as usize - 1);
                batch::prefetch(words, e as usize * LEAF_WORDS + (lo >> 6));
            }
        }
        let (first, extra) = decode(r);
        let e = entry(first >> LEAF_SHIFT);
        if e & SPARSE != 0 || extra >= 64 || first + u64::from(extra) >= count_below {
            // (ABSENT has the SPARSE bit set.)
            return (i, fresh);
        }
        let lo = first as u32 & (LEAF_BITS as u32 - 1);
        fresh += bitmap_insert_small(words, e as usize * LEAF_WORDS, lo, lo + extra);
    }
    (records.len(), fresh)
}

/// One leaf, read-only.
#[derive(Clone, Copy)]
enum LeafRef<'a> {
    Sparse(&'a [u16]),
    /// The leaf's `LEAF_WORDS` words.
    Dense(&'a [u64]),
}

impl LeafRef<'_> {
    fn contains(self, bit: u64) -> bool {
        match self {
            LeafRef::Dense(map) => map[(bit / 64) as usize] & (1 << (bit % 64)) != 0,
            LeafRef::Sparse(v) => v.binary_search(&(bit as u16)).is_ok(),
        }
    }

    /// Chunks among local bits `[lo, hi)`.
    fn count_range(self, lo: u64, hi: u64) -> u64 {
        match self {
            LeafRef::Dense(map) => {
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
            LeafRef::Sparse(v) => {
                let a = v.partition_point(|&x| u64::from(x) < lo);
                let b = v.partition_point(|&x| u64::from(x) < hi);
                (b - a) as u64
            }
        }
    }

    /// The non-zero 64-bit words of the leaf, ascending, as (word index, word).
    fn words(self) -> Vec<(usize, u64)> {
        match self {
            LeafRef::Dense(map) => map
                .iter()
                .enumerate()
                .filter(|(_, &w)| w != 0)
                .map(|(i, &w)| (i, w))
                .collect(),
            LeafRef::Sparse(v) => {
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

    fn to_bitmap(self) -> Box<Bitmap> {
        let mut map = Box::new([0u64; LEAF_WORDS]);
        match self {
            LeafRef::Dense(words) => map.copy_from_slice(words),
            LeafRef::Sparse(v) => or_sparse(&mut map[..], v),
        }
        map
    }
}

/// The leaves of one shard. A shard's *local* slot is the global slot divided by `SHARDS`.
#[derive(Clone, Debug, Default)]
struct Shard {
    /// Per page of local slots: its index in `pages`, or `ABSENT`.
    dir: Vec<u32>,
    /// Entries: `ABSENT`, a bitmap leaf's index, or `SPARSE |` an index in `sparse`.
    pages: Vec<Box<Page>>,
    /// The bitmap leaves, one after the other: leaf `i` is words `i * LEAF_WORDS ..`. One array,
    /// so the hot path finds a word with no pointer to follow.
    words: Vec<u64>,
    /// The global slot of each bitmap leaf, then of each sparse one (iteration in chunk order).
    dense_slot: Vec<u32>,
    sparse: Vec<Vec<u16>>,
    sparse_slot: Vec<u32>,
    count: u64,
}

impl Shard {
    fn new(local_slots: u64) -> Self {
        Shard {
            dir: vec![ABSENT; local_slots.div_ceil(PAGE_SLOTS as u64) as usize],
            ..Shard::default()
        }
    }

    #[inline(always)]
    fn entry(&self, slot: u64) -> u32 {
        let local = (slot / SHARDS as u64) as usize;
        match self.dir[local >> PAGE_SHIFT] {
            ABSENT => ABSENT,
            page => self.pages[page as usize][local & (PAGE_SLOTS - 1)],
        }
    }

    fn set_entry(&mut self, slot: u64, value: u32) {
        let local = (slot / SHARDS as u64) as usize;
        let d = local >> PAGE_SHIFT;
        if self.dir[d] == ABSENT {
            self.dir[d] = self.pages.len() as u32;
            self.pages.push(Box::new([ABSENT; PAGE_SLOTS]));
        }
        let page = self.dir[d] as usize;
        self.pages[page][local & (PAGE_SLOTS - 1)] = value;
    }

    fn dense_words(&self, index: u32) -> &[u64] {
        let base = index as usize * LEAF_WORDS;
        &self.words[base..base + LEAF_WORDS]
    }

    fn dense_words_mut(&mut self, index: usize) -> &mut [u64] {
        let base = index * LEAF_WORDS;
        &mut self.words[base..base + LEAF_WORDS]
    }

    fn leaf(&self, slot: u64) -> Option<LeafRef<'_>> {
        match self.entry(slot) {
            ABSENT => None,
            e if e & SPARSE != 0 => Some(LeafRef::Sparse(&self.sparse[(e & !SPARSE) as usize])),
            e => Some(LeafRef::Dense(self.dense_words(e))),
        }
    }

    /// A new, empty bitmap leaf at `slot`; returns its index.
    fn push_dense(&mut self, slot: u64) -> usize {
        let d = self.dense_slot.len();
        self.words.resize((d + 1) * LEAF_WORDS, 0);
        self.dense_slot.push(slot as u32);
        self.set_entry(slot, d as u32);
        d
    }

    /// Turns sparse leaf `index` (at `slot`) into a bitmap leaf; returns its index.
    fn densify(&mut self, slot: u64, index: usize) -> usize {
        let chunks = self.sparse.swap_remove(index);
        self.sparse_slot.swap_remove(index);
        if let Some(&moved) = self.sparse_slot.get(index) {
            self.set_entry(u64::from(moved), SPARSE | index as u32);
        }
        let d = self.push_dense(slot);
        or_sparse(self.dense_words_mut(d), &chunks);
        d
    }

    /// The bitmap of leaf `slot`, made (or converted) if need be.
    fn dense_mut(&mut self, slot: u64) -> &mut [u64] {
        let d = match self.entry(slot) {
            ABSENT => self.push_dense(slot),
            e if e & SPARSE != 0 => self.densify(slot, (e & !SPARSE) as usize),
            e => e as usize,
        };
        self.dense_words_mut(d)
    }

    /// Inserts local bits `[lo, hi)` of leaf `slot`; returns how many were new.
    fn insert_in_leaf(&mut self, slot: u64, lo: u64, hi: u64) -> u64 {
        let e = self.entry(slot);
        let fresh = if e != ABSENT && e & SPARSE == 0 {
            bitmap_insert(self.dense_words_mut(e as usize), lo, hi)
        } else {
            let held = if e == ABSENT {
                0
            } else {
                self.sparse[(e & !SPARSE) as usize].len()
            };
            if held + (hi - lo) as usize > SPARSE_MAX {
                bitmap_insert(self.dense_mut(slot), lo, hi)
            } else {
                let index = if e == ABSENT {
                    self.sparse.push(Vec::new());
                    self.sparse_slot.push(slot as u32);
                    let i = self.sparse.len() - 1;
                    self.set_entry(slot, SPARSE | i as u32);
                    i
                } else {
                    (e & !SPARSE) as usize
                };
                sparse_insert(&mut self.sparse[index], lo, hi)
            }
        };
        self.count += fresh;
        fresh
    }

    /// Inserts chunks `[start, end)`, which lie inside leaf `slot`; returns the new ones below
    /// `count_below`.
    fn insert_counting_below(&mut self, slot: u64, start: u64, end: u64, count_below: u64) -> u64 {
        let base = slot << LEAF_SHIFT;
        let (lo, hi) = (start - base, end - base);
        if end <= count_below {
            self.insert_in_leaf(slot, lo, hi)
        } else if start >= count_below {
            self.insert_in_leaf(slot, lo, hi);
            0
        } else {
            let cut = count_below - base;
            let below = self.insert_in_leaf(slot, lo, cut);
            self.insert_in_leaf(slot, cut, hi);
            below
        }
    }

    /// Inserts the chunks of packed records (see `batch.rs`: `first..=first + extra`, inside
    /// one leaf); returns the new ones below `count_below`. The hot path of every batch: runs of
    /// usual records (a bitmap leaf, at most 64 chunks) go through a tight loop that keeps its
    /// state in registers; the others, one at a time, through the general insert.
    #[inline(always)]
    fn insert_records<R: Copy>(
        &mut self,
        records: &[R],
        decode: impl Fn(R) -> (u64, u32) + Copy,
        count_below: u64,
    ) -> u64 {
        let mut fresh = 0;
        let mut i = 0;
        while i < records.len() {
            let (done, fast) = if self.dir.len() == 1 {
                // One page covers the shard (universes up to 2^27 chunks: 2 TiB in 16 KiB
                // chunks): find entries with one load.
                let page: &Page = self.pages.first().map_or(&ABSENT_PAGE, |p| p);
                let entry = |slot: u64| page[(slot / SHARDS as u64) as usize & (PAGE_SLOTS - 1)];
                usual_run(entry, decode, &mut self.words, &records[i..], count_below)
            } else {
                let (dir, pages) = (&self.dir, &self.pages);
                let entry = |slot: u64| {
                    let local = (slot / SHARDS as u64) as usize;
                    match dir.get(local >> PAGE_SHIFT) {
                        Some(&p) if p != ABSENT => pages[p as usize][local & (PAGE_SLOTS - 1)],
                        _ => ABSENT,
                    }
                };
                usual_run(entry, decode, &mut self.words, &records[i..], count_below)
            };
            self.count += fast;
            fresh += fast;
            i += done;
            if let Some(&r) = records.get(i) {
                let (first, extra) = decode(r);
                let slot = first >> LEAF_SHIFT;
                fresh += self.insert_counting_below(
                    slot,
                    first,
                    first + u64::from(extra) + 1,
                    count_below,
                );
                i += 1;
            }
        }
        fresh
    }

    fn remove(&mut self, slot: u64, bit: u64) -> bool {
        let was = match self.entry(slot) {
            ABSENT => false,
            e if e & SPARSE != 0 => {
                let v = &mut self.sparse[(e & !SPARSE) as usize];
                match v.binary_search(&(bit as u16)) {
                    Ok(i) => {
                        v.remove(i);
                        true
                    }
                    Err(_) => false,
                }
            }
            e => {
                let word = &mut self.dense_words_mut(e as usize)[(bit / 64) as usize];
                let mask = 1u64 << (bit % 64);
                let was = *word & mask != 0;
                *word &= !mask;
                was
            }
        };
        self.count -= u64::from(was);
        was
    }

    /// ORs `words` into leaf `slot`; returns how many bits were new.
    fn or_bitmap(&mut self, slot: u64, words: &Bitmap) -> u64 {
        let map = self.dense_mut(slot);
        let mut added = 0;
        for (dst, &src) in map.iter_mut().zip(words.iter()) {
            added += u64::from((!*dst & src).count_ones());
            *dst |= src;
        }
        self.count += added;
        added
    }

    fn memory_bytes(&self) -> usize {
        self.dir.capacity() * 4
            + self.pages.capacity() * std::mem::size_of::<Box<Page>>()
            + self.pages.len() * std::mem::size_of::<Page>()
            + self.words.capacity() * 8
            + (self.dense_slot.capacity() + self.sparse_slot.capacity()) * 4
            + self.sparse.capacity() * std::mem::size_of::<Vec<u16>>()
            + self.sparse.iter().map(|v| v.capacity() * 2).sum::<usize>()
    }
}

/// A set of `u64` chunk numbers below a fixed bound (see the module doc).
#[derive(Clone, Debug)]
pub struct ChunkSet {
    len: u64,
    shards: Vec<Shard>,
    /// The bitmap leaf a small batch set bits in last ([`LastLeaf`]).
    last: LastLeaf,
}

/// The bitmap leaf last written by a small batch (`batch.rs`'s serial path): its slot, shard and
/// first word. A small batch is one VM's writes of a short window, cold in cache since its last
/// one, and finding a leaf follows the shard's directory, a page and the entry — four dependent
/// loads, four misses per VM and window; a VM's writes mostly fall in one leaf (32,768 blocks:
/// 2 GiB of disk at 64 KiB), so the next write of the leaf finds its words here. Valid while
/// the leaf exists: a bitmap leaf never moves or turns sparse, and [`ChunkSet::clear`] — the one
/// call that frees leaves — forgets it.
#[derive(Clone, Copy, Debug)]
struct LastLeaf {
    /// `u64::MAX`: none.
    slot: u64,
    shard: usize,
    base: usize,
}

impl LastLeaf {
    const NONE: LastLeaf = LastLeaf {
        slot: u64::MAX,
        shard: 0,
        base: 0,
    };
}

impl ChunkSet {
    /// The largest universe a set can have: 2^40 chunks (16 PiB in volsnap's 16 KiB chunks,
    /// 64 PiB of disk in 64 KiB change-tracking blocks).
    pub const MAX_LEN: u64 = 1 << MAX_LEN_BITS;

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
                format!(
                    "{size} bytes is {n} {what}s of {unit} bytes; at most {} {what}s \
                     ({} bytes) can be tracked",
                    Self::MAX_LEN,
                    Self::MAX_LEN.saturating_mul(unit)
                ),
            ));
        }
        Ok(n)
    }

    /// An empty set over the universe `[0, len)` (`len` at most [`MAX_LEN`](Self::MAX_LEN); a
    /// larger one is cut to it — callers check with [`universe_for`](Self::universe_for)).
    pub fn new(len: u64) -> Self {
        let len = len.min(Self::MAX_LEN);
        let slots = len.div_ceil(LEAF_BITS);
        let shards = (0..SHARDS as u64)
            .map(|s| Shard::new(slots.saturating_sub(s).div_ceil(SHARDS as u64)))
            .collect();
        ChunkSet {
            len,
            shards,
            last: LastLeaf::NONE,
        }
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

    /// Bytes of memory this set holds (directories, pages and leaves).
    pub fn memory_bytes(&self) -> usize {
        self.shards.iter().map(Shard::memory_bytes).sum::<usize>()
            + self.shards.capacity() * std::mem::size_of::<Shard>()
            + std::mem::size_of::<Self>()
    }

    /// Removes every chunk but keeps the bitmap leaves, zeroed, where they were (the sparse
    /// leaves are freed): a set made again over the same universe, its hot leaves already
    /// bitmaps. What a copy-on-write tracker's new epoch starts from when the last one's set is
    /// free — the same writes then take the batch's fast path from the first, with no sorted
    /// inserts, no leaf turned into a bitmap and no memory asked of the system (every query
    /// answers as for [`ChunkSet::new`]: an all-zero bitmap leaf holds nothing).
    pub fn empty_keeping_bitmaps(&mut self) {
        for s in &mut self.shards {
            for i in 0..s.sparse_slot.len() {
                let slot = u64::from(s.sparse_slot[i]);
                s.set_entry(slot, ABSENT);
            }
            s.sparse.clear();
            s.sparse_slot.clear();
            s.words.fill(0);
            s.count = 0;
        }
        self.last = LastLeaf::NONE;
    }

    /// Removes every chunk, keeping the universe. Frees the leaves.
    pub fn clear(&mut self) {
        for s in &mut self.shards {
            *s = Shard::new(s.dir.len() as u64 * PAGE_SLOTS as u64);
        }
        self.last = LastLeaf::NONE;
    }

    fn shard_of(&self, slot: u64) -> &Shard {
        &self.shards[(slot % SHARDS as u64) as usize]
    }

    fn shard_mut(&mut self, slot: u64) -> &mut Shard {
        &mut self.shards[(slot % SHARDS as u64) as usize]
    }

    fn leaf(&self, slot: u64) -> Option<LeafRef<'_>> {
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

    /// Removes one chunk; true when it was in the set.
    pub fn remove(&mut self, chunk: u64) -> bool {
        if chunk >= self.len {
            return false;
        }
        let slot = chunk >> LEAF_SHIFT;
        self.shard_mut(slot).remove(slot, chunk & (LEAF_BITS - 1))
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

    /// The leaves that exist, in chunk order, as (leaf slot, leaf).
    fn leaves_in_order(&self) -> impl Iterator<Item = (u64, LeafRef<'_>)> + '_ {
        let mut order: Vec<u64> = self
            .shards
            .iter()
            .flat_map(|s| s.dense_slot.iter().chain(&s.sparse_slot))
            .map(|&slot| u64::from(slot))
            .collect();
        order.sort_unstable();
        order
            .into_iter()
            .filter_map(move |slot| self.leaf(slot).map(|leaf| (slot, leaf)))
    }

    /// The set's non-zero 64-bit words in chunk order, as (first chunk of the word, word).
    fn words_in_order(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.leaves_in_order().flat_map(|(slot, leaf)| {
            let base = slot << LEAF_SHIFT;
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
            .map(|(slot, leaf)| (slot as u32, leaf.to_bitmap()))
    }

    /// Number of leaves a universe of `len` chunks has.
    pub fn slots_for(len: u64) -> u64 {
        len.div_ceil(LEAF_BITS)
    }

    /// Words in one leaf bitmap.
    pub const LEAF_WORDS: usize = LEAF_WORDS;

    /// Batches of at least this many extents are worth dealing to the shards' threads; smaller
    /// ones are applied extent by extent on the calling thread.
    pub const PARALLEL_MIN: usize = 1 << 16;

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
        self.shard_mut(slot).or_bitmap(slot, &masked);
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
        // 64 TiB in 16 KiB chunks: a few directory entries.
        let s = ChunkSet::new((64u64 << 40) / 16384);
        assert!(s.memory_bytes() <= 4096, "{}", s.memory_bytes());
        // The largest universe: still a directory of a few hundred KiB at most.
        let s = ChunkSet::new(ChunkSet::MAX_LEN);
        assert!(s.memory_bytes() <= 1 << 20, "{}", s.memory_bytes());
    }

    #[test]
    fn universe_past_the_bound_is_refused_with_the_limit() {
        let err = ChunkSet::universe_for("volume_size", 1 << 58, 16384, "chunk")
            .unwrap_err()
            .to_string();
        assert!(err.contains("1099511627776 chunks"), "{err}");
        assert!(ChunkSet::universe_for("volume_size", 1 << 54, 16384, "chunk").is_ok());
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

    #[test]
    fn sparse_leaves_turn_dense_and_keep_their_chunks() {
        let mut s = ChunkSet::new(1 << 22);
        // Many sparse leaves, then fill some past SPARSE_MAX so sparse entries move around.
        for slot in 0..40u64 {
            s.insert(slot * LEAF_BITS + 7);
        }
        for slot in (0..40u64).step_by(3) {
            s.insert_range(slot * LEAF_BITS + 100, slot * LEAF_BITS + 200);
        }
        for slot in 0..40u64 {
            assert!(s.contains(slot * LEAF_BITS + 7), "slot {slot}");
            assert_eq!(s.contains(slot * LEAF_BITS + 150), slot % 3 == 0);
        }
        assert_eq!(s.count(), 40 + 14 * 100);
    }

    #[test]
    fn emptied_set_keeps_its_bitmaps_and_holds_nothing() {
        let mut s = ChunkSet::new(6 * LEAF_BITS);
        s.insert_range(LEAF_BITS + 10, LEAF_BITS + 500); // a bitmap leaf
        s.insert(3 * LEAF_BITS + 7); // a sparse one
        let before = s.memory_bytes();
        s.empty_keeping_bitmaps();
        assert_eq!(s.count(), 0);
        assert!(s.is_empty());
        assert_eq!(s.iter().count(), 0);
        assert!(s.runs().is_empty());
        assert!(!s.contains(LEAF_BITS + 10) && !s.contains(3 * LEAF_BITS + 7));
        assert_eq!(s.count_range(0, 6 * LEAF_BITS), 0);
        assert_eq!(
            s.leaf_entries()
                .filter(|(_, m)| m.iter().any(|&w| w != 0))
                .count(),
            0
        );
        // The bitmap stays (its memory), the sparse leaf's chunks are freed.
        assert!(
            s.memory_bytes() <= before,
            "{} > {before}",
            s.memory_bytes()
        );
        assert!(s.memory_bytes() >= LEAF_WORDS * 8);
        assert!(s.shards.iter().all(|sh| sh.sparse.is_empty()));
        // Filled again, it counts every chunk as new, on both kinds of leaf.
        assert_eq!(s.insert_range(LEAF_BITS, LEAF_BITS + 600), 600);
        assert!(s.insert(3 * LEAF_BITS + 7));
        assert_eq!(s.count(), 601);
        assert_eq!(s.runs(), vec![(LEAF_BITS, 600), (3 * LEAF_BITS + 7, 1)]);
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreeset(ops in proptest::collection::vec((0u64..200_000, 1u64..3000, 0u8..3), 0..200)) {
            let len = 200_000u64;
            let mut s = ChunkSet::new(len);
            let mut r = BTreeSet::new();
            for (start, n, kind) in ops {
                match kind {
                    0 => {
                        let fresh = s.insert(start);
                        prop_assert_eq!(fresh, r.insert(start));
                    }
                    1 => {
                        let end = (start + n).min(len);
                        let before = r.len() as u64;
                        for c in start..end { r.insert(c); }
                        prop_assert_eq!(s.insert_range(start, start + n), r.len() as u64 - before);
                    }
                    _ => {
                        prop_assert_eq!(s.remove(start), r.remove(&start));
                    }
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

        /// The dealt, parallel path against extent-by-extent insertion, on universes of many
        /// leaves (every shard, leaves past one page of a shard's directory), extents that cross
        /// leaf boundaries, spans past 64 chunks, sparse leaves turning dense, and a count bound
        /// anywhere.
        #[test]
        fn parallel_extents_match_one_by_one(
            exts in proptest::collection::vec((0u64..4200, -300_000i64..300_000, 0u32..300_000), 1..300),
            shift in prop_oneof![Just(9u32), Just(12u32), Just(14u32)],
            below_leaf in 0u64..4200,
            prefill in proptest::collection::vec(0u64..4200, 0..40),
        ) {
            let len = 4200 * LEAF_BITS + 77;
            let size = len << shift;
            let extent = |&(leaf, delta, n): &(u64, i64, u32)| {
                let off = ((leaf << (LEAF_SHIFT + shift)) as i64 + delta).clamp(0, size as i64 - 1) as u64;
                (off, n.min((size - off) as u32))
            };
            let (offs, lens): (Vec<u64>, Vec<u32>) = exts.iter().map(extent).unzip();
            // Repeat the batch so it crosses the parallel threshold.
            let reps = ChunkSet::PARALLEL_MIN / exts.len() + 1;
            let offs: Vec<u64> = offs.iter().copied().cycle().take(offs.len() * reps).collect();
            let lens: Vec<u32> = lens.iter().copied().cycle().take(lens.len() * reps).collect();
            let count_below = below_leaf * LEAF_BITS + 5;
            let mut par = ChunkSet::new(len);
            let mut seq = ChunkSet::new(len);
            for &leaf in &prefill {
                par.insert_range(leaf * LEAF_BITS, leaf * LEAF_BITS + 40);
                seq.insert_range(leaf * LEAF_BITS, leaf * LEAF_BITS + 40);
            }
            let got = par.insert_extents(&offs, &lens, shift, count_below);
            let mut want = 0;
            for (&o, &n) in offs.iter().zip(&lens) {
                if n > 0 {
                    want += seq.insert_range_counting_below(o >> shift, ((o + u64::from(n) - 1) >> shift) + 1, count_below);
                }
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(par.count(), seq.count());
            prop_assert_eq!(par.runs(), seq.runs());
        }

        /// The same on a universe past what short records reach (shard-local chunks past 2^26):
        /// records of both widths in one batch.
        #[test]
        fn parallel_extents_match_one_by_one_on_a_huge_universe(
            exts in proptest::collection::vec((0u64..(1 << 34), 0u32..300_000), 1..100),
        ) {
            let len = 1u64 << 34;
            let shift = 12;
            let size = len << shift;
            // Half the extents low (short records), half anywhere (long ones, mostly).
            let extent = |(i, &(c, n)): (usize, &(u64, u32))| {
                let off = if i % 2 == 0 { (c % (1 << 24)) << shift } else { c << shift };
                (off, n.min((size - off) as u32))
            };
            let (offs, lens): (Vec<u64>, Vec<u32>) = exts.iter().enumerate().map(extent).unzip();
            let reps = ChunkSet::PARALLEL_MIN / exts.len() + 1;
            let offs: Vec<u64> = offs.iter().copied().cycle().take(offs.len() * reps).collect();
            let lens: Vec<u32> = lens.iter().copied().cycle().take(lens.len() * reps).collect();
            let mut par = ChunkSet::new(len);
            let got = par.insert_extents(&offs, &lens, shift, u64::MAX);
            let mut seq = ChunkSet::new(len);
            let mut want = 0;
            for (&o, &n) in offs.iter().zip(&lens) {
                if n > 0 {
                    want += seq.insert_range(o >> shift, ((o + u64::from(n) - 1) >> shift) + 1);
                }
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(par.runs(), seq.runs());
        }

        /// Small batches (the serial path and its [`LastLeaf`]) against a plain set: extents
        /// across a few leaves, some batches after a `clear`, some with a `count_below`.
        #[test]
        fn small_batches_match_a_plain_set(
            batches in proptest::collection::vec(
                (
                    proptest::collection::vec((0u64..4, 0u64..LEAF_BITS, 0u32..200_000), 0..80),
                    any::<bool>(),
                    proptest::option::of(0u64..4 * LEAF_BITS),
                ),
                1..12,
            ),
        ) {
            let shift = 12;
            let len = 4 * LEAF_BITS;
            let size = len << shift;
            let mut set = ChunkSet::new(len);
            let mut want = std::collections::BTreeSet::new();
            for (exts, clear_first, below) in &batches {
                if *clear_first {
                    set.clear();
                    want.clear();
                }
                let count_below = below.unwrap_or(u64::MAX);
                let (offs, lens): (Vec<u64>, Vec<u32>) = exts
                    .iter()
                    .map(|&(leaf, at, n)| {
                        let off = ((leaf * LEAF_BITS + at) << shift).min(size - 1);
                        (off, n.min((size - off) as u32))
                    })
                    .unzip();
                let mut fresh = 0;
                for (&o, &n) in offs.iter().zip(&lens) {
                    for c in (o >> shift)..=((o + u64::from(n.max(1)) - 1) >> shift) {
                        if n > 0 && want.insert(c) && c < count_below {
                            fresh += 1;
                        }
                    }
                }
                prop_assert_eq!(set.insert_extents(&offs, &lens, shift, count_below), fresh);
                prop_assert_eq!(set.count(), want.len() as u64);
            }
            prop_assert!(want.iter().all(|&c| set.contains(c)));
        }

        #[test]
        fn dealing_refuses_a_bad_extent_and_keeps_nothing(
            n in 1usize..200_000,
            bad in 0usize..200_000,
        ) {
            let len = 1u64 << 20;
            let size = len << 14;
            let bad = bad % n;
            let mut offs: Vec<u64> = (0..n as u64).map(|i| (i * 7919 * 4096) % (size - 65536)).collect();
            let lens = vec![65536u32; n];
            offs[bad] = size - 65535;
            let set = ChunkSet::new(len);
            let mut dealt = Dealt::default();
            let err = set.deal(&offs, &lens, 14, size, &mut dealt).unwrap_err().to_string();
            prop_assert!(err.contains(&format!("entry {bad}:")), "{}", err);
            prop_assert!(dealt.is_empty());
        }
    }
}
