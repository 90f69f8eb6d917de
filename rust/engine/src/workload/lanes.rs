//! The generator's operations eight at a time (AVX-512), for the localities whose slot rule is a
//! choice and a multiply — a hot spot, and uniform (a hot spot never chosen).
//!
//! # Why
//!
//! [`Generator::generate`](super::Generator::generate) hashes a block's operations side by
//! side, but then handled them one by one: the time, the read/write draw, the size entry's
//! figures and the slot, each operation's write stored at its place — about half of the
//! generator's time in a run, and the generator a fifth of the whole run's CPU. Here every step
//! is one instruction for eight operations, the writes kept by one compress per array.
//!
//! # The same stream
//!
//! Lane `l` of a group computes what the scalar loop computes for operation `i + l`, with the
//! same integer rules (the splitmix64 finalizer, the 32-bit cuts, Lemire's multiply-shift as a
//! 128-bit product's high word built from 32-bit products) and the same IEEE operations in the
//! same order (no fused multiply-add: a product and a sum round as the scalar code rounds them);
//! a compress keeps the lanes' order, so the writes come out in the order the loop stores them.
//! The stream is the same bit for bit (`spec`'s tests compare it with the reference generator
//! and the portable path, over random specs and windows).

use std::arch::x86_64::*;

use super::rng::{GAMMA, LABEL_SALT};
use super::spec::{ReadCount, SecondOps, SizeSlots, WriteBatch, LOW32};

/// Operations a group holds: the 64-bit lanes of a vector.
const LANES: usize = 8;

/// The most size entries a group looks up by permutation (one vector holds eight).
pub(super) const MOST_SIZES: usize = LANES;

/// What the slot rule needs of each size entry, a lane per entry (entries past the last repeat
/// it: an index never reaches them), and the stream's cuts.
#[derive(Debug, Clone)]
pub(super) struct HotLanes {
    size: [u64; LANES],
    slots: [u64; LANES],
    region: [u64; LANES],
    base: [u64; LANES],
    /// The size distribution's cumulative cuts (at most [`MOST_SIZES`]).
    cuts: Vec<u64>,
    last: u64,
    read_cut: u64,
    /// 0 for uniform: no draw is below it, so every operation takes the whole disk.
    hot_cut: u64,
    align: u64,
}

impl HotLanes {
    /// The lanes of `entries` (`None` past [`MOST_SIZES`]: the scalar loop handles those).
    pub(super) fn new(
        entries: &[SizeSlots],
        cuts: &[u64],
        read_cut: u64,
        hot_cut: u64,
        align: u64,
    ) -> Option<Self> {
        let n = entries.len();
        if n == 0 || n > MOST_SIZES || cuts.len() > MOST_SIZES {
            return None;
        }
        let lane = |f: fn(&SizeSlots) -> u64| -> [u64; LANES] {
            std::array::from_fn(|l| f(&entries[l.min(n - 1)]))
        };
        Some(HotLanes {
            size: lane(|e| e.size),
            slots: lane(|e| e.slots),
            region: lane(|e| e.region),
            base: lane(|e| e.base),
            cuts: cuts.to_vec(),
            last: n as u64 - 1,
            read_cut,
            hot_cut,
            align,
        })
    }
}

/// A vector of eight copies of `x`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2")]
fn splat(x: u64) -> __m512i {
    _mm512_set1_epi64(x as i64)
}

/// Eight words, lane `l` holding `a[l]`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2")]
fn lanes_of(a: &[u64; LANES]) -> __m512i {
    _mm512_set_epi64(
        a[7] as i64,
        a[6] as i64,
        a[5] as i64,
        a[4] as i64,
        a[3] as i64,
        a[2] as i64,
        a[1] as i64,
        a[0] as i64,
    )
}

/// [`mix64`](super::rng::mix64) in every lane.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2")]
fn mix64(z: __m512i) -> __m512i {
    let z = _mm512_add_epi64(z, splat(GAMMA));
    let z = _mm512_mullo_epi64(
        _mm512_xor_si512(z, _mm512_srli_epi64::<30>(z)),
        splat(0xBF58_476D_1CE4_E5B9),
    );
    let z = _mm512_mullo_epi64(
        _mm512_xor_si512(z, _mm512_srli_epi64::<27>(z)),
        splat(0x94D0_49BB_1331_11EB),
    );
    _mm512_xor_si512(z, _mm512_srli_epi64::<31>(z))
}

/// [`scale`](super::rng::scale) in every lane: the high word of the 128-bit product `x × n`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2")]
fn scale(x: __m512i, n: __m512i) -> __m512i {
    let low = splat(LOW32);
    let (x_hi, n_hi) = (
        opaque(_mm512_srli_epi64::<32>(x)),
        _mm512_srli_epi64::<32>(n),
    );
    // `mul_epu32` multiplies the low 32 bits of each lane into 64.
    let ll = _mm512_mul_epu32(x, n);
    let lh = _mm512_mul_epu32(x, n_hi);
    let hl = _mm512_mul_epu32(x_hi, n);
    let hh = _mm512_mul_epu32(x_hi, n_hi);
    // The middle column: below 3 × 2^32, no overflow.
    let mid = _mm512_add_epi64(
        _mm512_srli_epi64::<32>(ll),
        _mm512_add_epi64(_mm512_and_si512(lh, low), _mm512_and_si512(hl, low)),
    );
    _mm512_add_epi64(
        _mm512_add_epi64(hh, _mm512_srli_epi64::<32>(lh)),
        _mm512_add_epi64(_mm512_srli_epi64::<32>(hl), _mm512_srli_epi64::<32>(mid)),
    )
}

/// `x`, out of the optimizer's sight: LLVM reads [`scale`]'s four 32-bit products as a 64-bit
/// multiply-high, which AVX-512 has no instruction for, and so splits it into eight scalar
/// multiplies and the moves between (a third of this kernel's time when it did).
#[inline]
#[target_feature(enable = "avx512f")]
fn opaque(mut x: __m512i) -> __m512i {
    // SAFETY: an empty instruction sequence that only names the register holding `x`.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::asm!(
            "/* {0} */",
            inout(zmm_reg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    x
}

impl HotLanes {
    /// Appends the writes of `ops` that lie in `[t0, t1)` to `out` and counts its reads there,
    /// as the scalar loop of `generate_with` does for the hot-spot and uniform rules. `labels` is
    /// [`label_table`](super::rng::label_table).
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2")]
    pub(super) fn second(
        &self,
        ops: &SecondOps,
        t0: f64,
        t1: f64,
        labels: &[u64],
        out: &mut WriteBatch,
        reads: &mut ReadCount,
    ) {
        if ops.hi <= ops.lo {
            return;
        }
        // Room for every operation and one vector more: each group stores whole vectors at the
        // end and keeps only its writes' lanes.
        let most = (ops.hi - ops.lo) as usize + LANES;
        out.times.reserve(most);
        out.offsets.reserve(most);
        out.lengths.reserve(most);
        let mut len = out.offsets.len();
        debug_assert!(out.times.len() == len && out.lengths.len() == len);

        let lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
        let (size_t, slots_t) = (lanes_of(&self.size), lanes_of(&self.slots));
        let (region_t, base_t) = (lanes_of(&self.region), lanes_of(&self.base));
        let key = splat(ops.key);
        let low = splat(LOW32);
        let (read_cut, hot_cut) = (splat(self.read_cut), splat(self.hot_cut));
        let (last, align, one) = (splat(self.last), splat(self.align), splat(1));
        let (base, inv) = (_mm512_set1_pd(ops.base), _mm512_set1_pd(ops.inv));
        let (from, until) = (_mm512_set1_pd(t0), _mm512_set1_pd(t1));
        let to_unit = _mm512_set1_pd(1.0 / 4_294_967_296.0);
        let mut read_count = 0u64;
        let mut read_bytes = _mm512_setzero_si512();

        let mut i = ops.lo;
        while i < ops.hi {
            let left = ops.hi - i;
            let valid: __mmask8 = if left >= LANES as u64 {
                0xFF
            } else {
                (1u8 << left) - 1
            };
            let index = _mm512_add_epi64(splat(i), lane);
            // Operation i's key: derive(key, i + 1), its label from the table while it has it.
            let first = (i + 1) as usize;
            let table = labels.get(first..first + LANES);
            let label = match table.and_then(|t| <&[u64; LANES]>::try_from(t).ok()) {
                Some(t) => lanes_of(t),
                None => mix64(_mm512_add_epi64(
                    _mm512_add_epi64(index, one),
                    splat(LABEL_SALT),
                )),
            };
            let h = mix64(_mm512_xor_si512(key, label));
            let w1 = mix64(h);
            let w2 = mix64(_mm512_add_epi64(h, splat(GAMMA)));
            // The size entry: how many cuts lie at or below the draw's high 32 bits.
            let draw = _mm512_srli_epi64::<32>(w1);
            let mut entry = _mm512_setzero_si512();
            for &cut in &self.cuts {
                let m = _mm512_cmple_epu64_mask(splat(cut), draw);
                entry = _mm512_mask_add_epi64(entry, m, entry, one);
            }
            let entry = _mm512_min_epu64(entry, last);
            let size = _mm512_permutexvar_epi64(entry, size_t);
            // time = base + (i + unit32(h >> 32)) × inv, rounded step by step as the scalar.
            let u = _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64::<32>(h)), to_unit);
            let time = _mm512_add_pd(
                base,
                _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepu64_pd(index), u), inv),
            );
            let inside = valid
                & _mm512_cmp_pd_mask::<_CMP_GE_OQ>(time, from)
                & _mm512_cmp_pd_mask::<_CMP_LT_OQ>(time, until);
            let is_read = _mm512_cmplt_epu64_mask(_mm512_and_si512(h, low), read_cut);
            let read = inside & is_read;
            let write = inside & !is_read;
            read_count += u64::from(read.count_ones());
            read_bytes = _mm512_mask_add_epi64(read_bytes, read, read_bytes, size);
            if write != 0 {
                let hot = _mm512_cmplt_epu64_mask(_mm512_and_si512(w1, low), hot_cut);
                let n = _mm512_mask_blend_epi64(
                    hot,
                    _mm512_permutexvar_epi64(entry, slots_t),
                    _mm512_permutexvar_epi64(entry, region_t),
                );
                let b = _mm512_maskz_mov_epi64(hot, _mm512_permutexvar_epi64(entry, base_t));
                let offset = _mm512_mullo_epi64(_mm512_add_epi64(b, scale(w2, n)), align);
                let times = _mm512_maskz_compress_pd(write, time);
                let offsets = _mm512_maskz_compress_epi64(write, offset);
                let lengths = _mm256_maskz_compress_epi32(write, _mm512_cvtepi64_epi32(size));
                // SAFETY: each vector has `len + LANES` elements of capacity (reserved above for
                // every operation of the second and a vector more; `len` counts only writes), and
                // the lanes past the writes are overwritten or left out of `len`.
                #[allow(unsafe_code)]
                unsafe {
                    _mm512_storeu_pd(out.times.as_mut_ptr().add(len), times);
                    _mm512_storeu_si512(out.offsets.as_mut_ptr().add(len).cast(), offsets);
                    _mm256_storeu_si256(out.lengths.as_mut_ptr().add(len).cast(), lengths);
                }
                len += write.count_ones() as usize;
            }
            i += LANES as u64;
        }
        // SAFETY: elements below `len` were written above (every group's writes, in order) and
        // lie inside the reserved capacity; f64, u64 and u32 have no invalid bit patterns.
        #[allow(unsafe_code)]
        unsafe {
            out.times.set_len(len);
            out.offsets.set_len(len);
            out.lengths.set_len(len);
        }
        reads.reads += read_count;
        reads.bytes += _mm512_reduce_add_epi64(read_bytes) as u64;
    }
}
