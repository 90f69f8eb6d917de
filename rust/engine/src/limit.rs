//! The memory system's limit for a tracker's batch: the same chunk bits a write stream sets, set
//! the plainest way there is — each of the pool's threads takes its share of the stream and sets
//! its bits in a flat bitmap of its own over the whole universe (the hot region of a hot-spot
//! stream is then a bitmap of the hot region's size, in that core's cache), then the bitmaps are
//! ORed together and the bits below a bound counted.
//!
//! Nothing else is done: no check of the extents beyond staying inside the bitmap, no sparse
//! structure, no copy-once bookkeeping, no count of new bits per write. A tracker cannot do less
//! work for the same stream, so the benchmarks report the engine's time as a fraction of this one
//! (`engine.bitset_limit`, `vssim bench-report`).

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Bits a limit bitmap may have: one per thread is held at once.
pub const MAX_UNIVERSE: u64 = 1 << 31;

/// Sets bits `first..=last` of a flat bitmap (with one spare word at its end).
#[inline(always)]
fn set_bits(map: &mut [u64], first: u64, last: u64) {
    if last - first < 64 {
        let w1 = (first >> 6) as usize;
        let lo = u64::MAX << (first & 63);
        let hi = u64::MAX >> (63 - (last & 63));
        if w1 == (last >> 6) as usize {
            map[w1] |= lo & hi;
        } else {
            map[w1] |= lo;
            map[w1 + 1] |= hi;
        }
    } else {
        for c in first..=last {
            map[(c >> 6) as usize] |= 1 << (c & 63);
        }
    }
}

/// Sets the bits of chunks `[c << shift, (c + 1) << shift)` that the extents
/// `[offsets[i], offsets[i] + lengths[i])` touch, in a universe of `universe` chunks (extents
/// past it are skipped), and returns how many distinct chunks below `count_below` were set.
pub fn bitset_limit(
    offsets: &[u64],
    lengths: &[u32],
    shift: u32,
    universe: u64,
    count_below: u64,
) -> Result<u64> {
    if universe > MAX_UNIVERSE {
        return Err(Error::invalid(
            "volume_size",
            format!(
                "{universe} chunks: the limit's bitmaps hold at most {MAX_UNIVERSE} (one per thread)"
            ),
        ));
    }
    if offsets.len() != lengths.len() {
        return Err(Error::invalid(
            "lengths",
            format!(
                "has {} entries but offsets has {}; the arrays must be the same length",
                lengths.len(),
                offsets.len()
            ),
        ));
    }
    let words = universe.div_ceil(64) as usize + 1;
    let parts = rayon::current_num_threads().max(1);
    let per = offsets.len().div_ceil(parts).max(1);
    let maps: Vec<Vec<u64>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let start = (p * per).min(offsets.len());
            let end = (start + per).min(offsets.len());
            let mut map = vec![0u64; words];
            for (&off, &n) in offsets[start..end].iter().zip(&lengths[start..end]) {
                let first = off >> shift;
                let last = (off.saturating_add(u64::from(n)).saturating_sub(1)) >> shift;
                if n == 0 || last >= universe {
                    continue;
                }
                set_bits(&mut map, first, last);
            }
            map
        })
        .collect();
    let below = count_below.min(universe);
    let full_words = (below / 64) as usize;
    const SPAN: usize = 1 << 14;
    let count = (0..words.div_ceil(SPAN))
        .into_par_iter()
        .map(|s| {
            let (a, b) = (s * SPAN, ((s + 1) * SPAN).min(words));
            let mut n = 0u64;
            for w in a..b {
                let word = maps.iter().fold(0, |acc, m| acc | m[w]);
                let word = if w < full_words {
                    word
                } else if w == full_words && !below.is_multiple_of(64) {
                    word & ((1 << (below % 64)) - 1)
                } else {
                    0
                };
                n += u64::from(word.count_ones());
            }
            n
        })
        .sum();
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkset::ChunkSet;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn counts_what_a_chunk_set_counts(
            exts in proptest::collection::vec((0u64..(8 << 20), 0u32..300_000), 0..300),
            count_below in 0u64..700,
        ) {
            let universe = (8u64 << 20) / 16384 + 20;
            let offs: Vec<u64> = exts.iter().map(|e| e.0).collect();
            let lens: Vec<u32> = exts.iter().map(|e| e.1).collect();
            let got = bitset_limit(&offs, &lens, 14, universe, count_below).unwrap();
            let mut set = ChunkSet::new(universe);
            let want = set.insert_extents(&offs, &lens, 14, count_below);
            prop_assert_eq!(got, want);
        }
    }
}
