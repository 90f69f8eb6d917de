//! What one VM's I/O looks like: rate, sizes, read/write mix, where it lands, and how the rate
//! follows the day.

#[cfg(target_arch = "x86_64")]
use super::lanes::HotLanes;
use super::rng::{
    derive, derive_mixed, label_table, mix64, scale, small_label, unit32, Rng, GAMMA,
};
use crate::error::{Error, Result};

const MIB: u64 = 1 << 20;
/// Golden-ratio prime used to scatter Zipf ranks over the disk (a bijection modulo any size that
/// is not a multiple of it).
const SCATTER: u64 = 2_654_435_761;

/// Where a VM's writes land on its virtual disk.
#[derive(Debug, Clone, PartialEq)]
pub enum Locality {
    /// Anywhere, uniformly.
    Uniform,
    /// `hot_share` of the I/O lands in a hot region of `hot_fraction` of the disk (a fixed place
    /// per VM), the rest uniformly.
    HotSpot { hot_fraction: f64, hot_share: f64 },
    /// 1 MiB extents ranked by a Zipf law of exponent `theta`, ranks scattered over the disk.
    Zipf { theta: f64 },
    /// A circular log over a region of `region_fraction` of the disk, written sequentially.
    SequentialLog { region_fraction: f64 },
}

/// Request sizes and their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeDist {
    sizes: Vec<u32>,
    cumulative: Vec<f64>,
}

impl SizeDist {
    pub fn new(sizes: &[u32], weights: &[f64]) -> Result<Self> {
        if sizes.is_empty() || sizes.len() != weights.len() {
            return Err(Error::invalid(
                "sizes",
                format!(
                    "{} sizes and {} weights; expected the same non-zero number",
                    sizes.len(),
                    weights.len()
                ),
            ));
        }
        if let Some(&bad) = sizes.iter().find(|&&s| s == 0 || s % 512 != 0) {
            return Err(Error::invalid(
                "sizes",
                format!("{bad} is not a positive multiple of 512 bytes"),
            ));
        }
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(Error::invalid(
                "weights",
                format!("{weights:?}: expected finite values >= 0"),
            ));
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(Error::invalid(
                "weights",
                "sum to 0; expected a positive sum",
            ));
        }
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Ok(SizeDist {
            sizes: sizes.to_vec(),
            cumulative,
        })
    }

    /// A typical mixed server workload: mostly 4–64 KiB, a tail of large requests.
    pub fn typical() -> Self {
        SizeDist {
            sizes: vec![4096, 8192, 16384, 32768, 65536, 262_144, 1_048_576],
            cumulative: vec![0.40, 0.60, 0.70, 0.80, 0.95, 0.99, 1.0],
        }
    }

    pub fn mean(&self) -> f64 {
        let mut prev = 0.0;
        self.sizes
            .iter()
            .zip(&self.cumulative)
            .map(|(&s, &c)| {
                let p = c - prev;
                prev = c;
                f64::from(s) * p
            })
            .sum()
    }

    pub fn max(&self) -> u32 {
        self.sizes.iter().copied().max().unwrap_or(4096)
    }

    /// Each request size with the probability the generator picks it (its draw `u` lands in
    /// `[cumulative[i - 1], cumulative[i])`; the last entry also takes the rounding rest up to 1).
    pub fn entries(&self) -> Vec<(u32, f64)> {
        let last = self.sizes.len().saturating_sub(1);
        let mut prev = 0.0;
        self.sizes
            .iter()
            .zip(&self.cumulative)
            .enumerate()
            .map(|(i, (&s, &c))| {
                let p = if i == last { 1.0 - prev } else { c - prev };
                prev = c;
                (s, p.max(0.0))
            })
            .collect()
    }
}

/// The Zipf locality's rank of a uniform draw `u` over `n` 1 MiB extents: the continuous inverse
/// of a bounded power law of exponent `theta`, truncated to an integer rank in `[0, n)`.
#[inline]
pub fn zipf_rank(n: u64, theta: f64, u: f64) -> u64 {
    let x = if (theta - 1.0).abs() < 1e-9 {
        (n as f64).powf(u)
    } else {
        let e = 1.0 - theta;
        (((n as f64).powf(e) - 1.0) * u + 1.0).powf(1.0 / e)
    };
    (x as u64).saturating_sub(1).min(n - 1)
}

/// The probability [`zipf_rank`] returns `rank`: the law's mass on `[rank + 1, rank + 2)` (the
/// last rank also gets nothing past `n`).
pub fn zipf_rank_probability(n: u64, theta: f64, rank: u64) -> f64 {
    if n <= 1 {
        return if rank == 0 { 1.0 } else { 0.0 };
    }
    let nf = n as f64;
    let cdf = |x: f64| {
        if (theta - 1.0).abs() < 1e-9 {
            x.ln() / nf.ln()
        } else {
            let e = 1.0 - theta;
            (x.powf(e) - 1.0) / (nf.powf(e) - 1.0)
        }
    };
    let lo = (rank + 1) as f64;
    let hi = ((rank + 2).min(n)) as f64;
    if hi <= lo {
        0.0
    } else {
        (cdf(hi) - cdf(lo)).max(0.0)
    }
}

/// The 1 MiB extent the Zipf locality puts `rank` on, for the VM's `salt` (ranks scattered over
/// the data by a multiplicative hash).
#[inline]
pub fn zipf_extent(rank: u64, salt: u64, n: u64) -> u64 {
    (rank.wrapping_mul(SCATTER).wrapping_add(salt)) % n
}

/// A rate that follows the day: `1 + amplitude × cos(2π (t − peak) / period)`, never below 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diurnal {
    pub amplitude: f64,
    pub period_s: f64,
    pub peak_s: f64,
}

/// Operations per second around time `t` of a workload of `iops` following `diurnal`.
pub fn rate_at(iops: f64, diurnal: Option<Diurnal>, t: f64) -> f64 {
    match diurnal {
        None => iops,
        Some(d) => {
            let phase = std::f64::consts::TAU * (t - d.peak_s) / d.period_s;
            (iops * (1.0 + d.amplitude * phase.cos())).max(0.0)
        }
    }
}

/// One VM's I/O.
///
/// Where it lands: the operations' locality covers the disk's *data* — the bytes allocated when
/// the stream starts ([`DiskData::used`]), the first of the disk (a dynamic VHDX allocates its
/// blocks in order) — as a guest overwrites its files in place; hot spots, Zipf ranks and logs
/// lie inside it. The disk grows only by [`WorkloadSpec::growth_per_day`]: new data appended at
/// the allocation frontier, as a guest's file system fills.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// I/O operations per second (reads and writes).
    pub iops: f64,
    /// Share of the operations that are reads.
    pub read_fraction: f64,
    pub sizes: SizeDist,
    pub locality: Locality,
    pub diurnal: Option<Diurnal>,
    /// New data a day, as a fraction of the data at the start (0: the disk never grows). Written
    /// in [`GROWTH_WRITE`]-byte sequential writes at the allocation frontier, at a steady rate,
    /// on top of the `iops` operations (which overwrite data in place).
    pub growth_per_day: f64,
    /// A target: the fraction of the data a day's writes change at the tracking granularity.
    /// The generator reads only the locality, so a spec with a target is first turned into the
    /// hot spot that reaches it on a given disk (`estimate::change_fraction::calibrate`, which
    /// returns it with `None` here); [`Generator::for_disk`] refuses one that was not.
    pub daily_change: Option<f64>,
}

/// Bytes of each write of new data (growth) at the allocation frontier (model choice: 1 MiB,
/// a file system extending a file in large sequential writes).
pub const GROWTH_WRITE: u64 = MIB;
/// Seconds in the day `growth_per_day` and `daily_change` are measured over.
pub const DAY_S: f64 = 86_400.0;

/// A stream's disk: its virtual size and the bytes holding data when the stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskData {
    pub size: u64,
    /// Bytes of data at the start: the disk's first `used` bytes (its allocated extent).
    pub used: u64,
}

impl DiskData {
    /// A disk whose data fills it (nothing known of its allocation: a fixed disk, a disk the
    /// caller gives no allocated size for).
    pub fn full(size: u64) -> Self {
        DiskData { size, used: size }
    }

    /// The extent the stream's overwrites cover: the data, but at least the largest request
    /// (a disk with almost nothing on it still takes whole requests), and never past the disk.
    pub fn extent(&self, largest_request: u64) -> u64 {
        self.used.max(largest_request.max(ALIGN)).min(self.size)
    }
}

impl WorkloadSpec {
    pub fn validate(&self) -> Result<()> {
        if !self.iops.is_finite() || self.iops < 0.0 || self.iops > 1e7 {
            return Err(Error::invalid(
                "iops",
                format!("{}: expected 0 to 10,000,000", self.iops),
            ));
        }
        if !(0.0..=1.0).contains(&self.read_fraction) {
            return Err(Error::invalid(
                "read_fraction",
                format!("{}: expected 0 to 1", self.read_fraction),
            ));
        }
        let frac = |name: &'static str, v: f64, zero_ok: bool| {
            if v.is_finite() && v <= 1.0 && (v > 0.0 || (zero_ok && v == 0.0)) {
                Ok(())
            } else {
                Err(Error::invalid(
                    name,
                    format!("{v}: expected a fraction in (0, 1]"),
                ))
            }
        };
        match self.locality {
            Locality::Uniform => {}
            Locality::HotSpot {
                hot_fraction,
                hot_share,
            } => {
                frac("hot_fraction", hot_fraction, false)?;
                frac("hot_share", hot_share, true)?;
            }
            Locality::Zipf { theta } => {
                if !theta.is_finite() || !(0.0..=5.0).contains(&theta) {
                    return Err(Error::invalid("theta", format!("{theta}: expected 0 to 5")));
                }
            }
            Locality::SequentialLog { region_fraction } => {
                frac("region_fraction", region_fraction, false)?;
            }
        }
        if !self.growth_per_day.is_finite() || self.growth_per_day < 0.0 {
            return Err(Error::invalid(
                "growth_per_day",
                format!(
                    "{}: expected a finite fraction of the data per day, >= 0",
                    self.growth_per_day
                ),
            ));
        }
        if let Some(x) = self.daily_change {
            if !x.is_finite() || x <= 0.0 || x >= 1.0 {
                return Err(Error::invalid(
                    "daily_change",
                    format!("{x}: expected a fraction in (0, 1) of the data per day"),
                ));
            }
        }
        if let Some(d) = self.diurnal {
            if !d.amplitude.is_finite() || !(0.0..=1.0).contains(&d.amplitude) {
                return Err(Error::invalid(
                    "diurnal_amplitude",
                    format!("{}: expected 0 to 1", d.amplitude),
                ));
            }
            if !d.period_s.is_finite() || d.period_s <= 0.0 || !d.peak_s.is_finite() {
                return Err(Error::invalid(
                    "diurnal_period_s",
                    format!(
                        "{} (peak {}): expected a positive period",
                        d.period_s, d.peak_s
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Operations per second around time `t`.
    pub fn rate_at(&self, t: f64) -> f64 {
        rate_at(self.iops, self.diurnal, t)
    }
}

/// Reads seen in a window (reads cost bandwidth, never copy-on-write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCount {
    pub reads: u64,
    pub bytes: u64,
}

/// Guest writes of one window, in time order.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub times: Vec<f64>,
    pub offsets: Vec<u64>,
    pub lengths: Vec<u32>,
}

impl WriteBatch {
    pub fn reserve(&mut self, n: usize) {
        self.times.reserve(n);
        self.offsets.reserve(n);
        self.lengths.reserve(n);
    }

    pub fn clear(&mut self) {
        self.times.clear();
        self.offsets.clear();
        self.lengths.clear();
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// Operations whose draws are made together.
const BLOCK: usize = 32;
// Writes are packed at `k & (BLOCK - 1)`.
const _: () = assert!(BLOCK.is_power_of_two());

/// One operation's draws past its key `h` (which the loop reads itself: its high 32 bits the time
/// within the operation's stratum, its low 32 whether it is a read): `w1 = mix64(h)` its size
/// (high 32 bits) and, for a hot spot, whether it lands in it (or Zipf's rank; low 32 bits);
/// `w2 = mix64(h + γ)` its slot. These are the first two outputs of a splitmix64 stream seeded
/// with `h` (`γ` its increment). 32 bits are ample where a draw is compared with a probability or
/// a time within a stratum (a resolution of 2^-32); the slot keeps 64 (Lemire's multiply-shift
/// over up to 2^44 slots).
#[derive(Debug, Clone, Copy)]
struct OpDraws {
    w1: u64,
    w2: u64,
}

impl OpDraws {
    /// Hot spot: the draw compared with the hot share's cut ([`cut32`]).
    #[inline(always)]
    fn hot32(&self) -> u64 {
        self.w1 & LOW32
    }

    /// Zipf: the rank's draw, uniform in `[0, 1)`.
    #[inline(always)]
    fn hot(&self) -> f64 {
        unit32(self.w1 & LOW32)
    }

    /// Uniform in `[0, n)`.
    #[inline(always)]
    fn below(&self, n: u64) -> u64 {
        scale(self.w2, n)
    }
}

/// Every write starts on a 4 KiB boundary (the guest's page and cluster size).
pub const ALIGN: u64 = 4096;

/// Where a request of one size may land: its slot count and, per locality, its precomputed
/// region (so the per-operation path does no division or float-to-int conversion).
#[derive(Debug, Clone, Copy)]
pub(super) struct SizeSlots {
    /// The request size (cut to the data extent).
    pub(super) size: u64,
    /// Aligned start positions a request of this size has.
    pub(super) slots: u64,
    /// Hot spot: the hot slots and their first slot. Sequential log: the region and its base.
    pub(super) region: u64,
    pub(super) base: u64,
}

/// Where a request of one size may start (see [`Generator::placement`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizePlacement {
    /// The request size in bytes (cut to the data extent).
    pub size: u64,
    /// The probability an operation has this size.
    pub weight: f64,
    /// Aligned start positions (slots) a request of this size has: `0..slots`.
    pub slots: u64,
    /// Hot spot: the hot slots `base..base + region`. Sequential log: the log's slots, the same.
    /// Otherwise `slots` and 0.
    pub region: u64,
    pub base: u64,
}

/// The stream's new data: [`GROWTH_WRITE`]-byte writes from `start` on, write `j` at
/// `start + j × GROWTH_WRITE` at time `(j + 1) × GROWTH_WRITE / bytes_per_s`, up to the disk's
/// end (a pure function of `j`, so windows never change it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    pub start: u64,
    pub bytes_per_s: f64,
    pub end: u64,
}

impl Growth {
    /// Growth write `j`'s time, offset and length, if the disk has room for it.
    #[inline]
    pub fn write(&self, j: u64) -> Option<(f64, u64, u32)> {
        let offset = self.start.checked_add(j.checked_mul(GROWTH_WRITE)?)?;
        if offset >= self.end {
            return None;
        }
        let len = GROWTH_WRITE.min(self.end - offset) as u32;
        Some((
            ((j + 1) * GROWTH_WRITE) as f64 / self.bytes_per_s,
            offset,
            len,
        ))
    }

    /// The first growth write at or after time `t`.
    pub fn first_at(&self, t: f64) -> u64 {
        let guess = (t * self.bytes_per_s / GROWTH_WRITE as f64)
            .floor()
            .max(1.0) as u64
            - 1;
        let mut j = guess.saturating_sub(1);
        while self.write(j).is_some_and(|(tj, _, _)| tj < t) {
            j += 1;
        }
        j
    }

    /// Bytes appended by time `t` (the writes whose time is at most `t`), up to the disk's end.
    pub fn bytes_by(&self, t: f64) -> u64 {
        let j = self.first_at(t);
        let done = match self.write(j) {
            Some((tj, _, _)) if tj <= t => j + 1,
            _ => j,
        };
        (done.saturating_mul(GROWTH_WRITE)).min(self.end.saturating_sub(self.start))
    }
}

/// Where a stream's writes start: per request size, and the locality's own figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The extent the overwrites cover: the disk's data at the start ([`DiskData::extent`]).
    pub disk_size: u64,
    /// Bytes per slot (every write starts on a slot).
    pub align: u64,
    /// Zipf: the salt that scatters ranks over extents.
    pub salt: u64,
    /// Sequential log: slots between consecutive operations, and operation numbers per second.
    pub log_stride: u64,
    pub log_per_second: u64,
    pub sizes: Vec<SizePlacement>,
    /// New data at the allocation frontier, if the spec grows the disk.
    pub growth: Option<Growth>,
}

/// The I/O stream of one VM's disk: a pure function of `(seed, second)`.
#[derive(Debug, Clone)]
pub struct Generator {
    spec: WorkloadSpec,
    disk_size: u64,
    /// The extent the overwrites cover (the data at the start).
    span: u64,
    seed: u64,
    align: u64,
    /// Hot-spot start slot (hot spot), or the rank salt (Zipf).
    hot_base: u64,
    /// Per entry of the size distribution.
    per_size: Vec<SizeSlots>,
    /// Sequential log: slots between consecutive operations, and operations per second.
    log_stride: u64,
    log_per_second: u64,
    growth: Option<Growth>,
    /// The draws' probabilities as 32-bit integer cuts ([`cut32`]): reads, the hot spot's share,
    /// and the size distribution's cumulative weights.
    read_cut: u64,
    hot_cut: u64,
    size_cuts: Vec<u64>,
    /// The hot-spot and uniform rules' figures in vector lanes (AVX-512 CPUs; `None` for the
    /// other localities and for more than [`super::lanes::MOST_SIZES`] request sizes).
    #[cfg(target_arch = "x86_64")]
    lanes: Option<HotLanes>,
}

/// One second's operations that can fall inside a window: `lo..hi` of its `n`, operation `i` at
/// `base + (i + u) × inv` (`base` the second, `u` the operation's draw within its stratum), its
/// draws from `key`.
#[derive(Debug, Clone, Copy)]
pub(super) struct SecondOps {
    pub second: u64,
    pub key: u64,
    pub base: f64,
    pub inv: f64,
    pub lo: u64,
    pub hi: u64,
}

/// A probability `p` as the cut a 32-bit draw `x` is compared with: `unit32(x) < p` exactly when
/// `x < cut32(p)`, and `p <= unit32(x)` exactly when `cut32(p) <= x` (`unit32(x)` is `x × 2^-32`
/// with no rounding, so `x < p × 2^32` — an exact product — and `x` is an integer). Integer
/// compares run side by side across a block's operations; the floats would each need a
/// conversion first.
fn cut32(p: f64) -> u64 {
    (p * 4_294_967_296.0).ceil().clamp(0.0, 4_294_967_296.0) as u64
}

/// Whether [`Generator::generate`] takes its AVX-512 path: the CPU has every feature
/// `generate_avx512` is compiled for and `VSSIM_PORTABLE` is not set (a way to measure or rule
/// out the wide path). Decided once per process: every VM's every window asks.
#[cfg(target_arch = "x86_64")]
fn wide_lanes() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2")
            && std::is_x86_feature_detected!("popcnt")
            && std::env::var_os("VSSIM_PORTABLE").is_none()
    })
}

/// The low 32 bits of a draw word.
pub(super) const LOW32: u64 = 0xFFFF_FFFF;

/// Seed labels of a stream's fixed placements.
const HOT_LABEL: u64 = 0x486f_7453;
const ZIPF_LABEL: u64 = 0x5a69_7066;
const LOG_LABEL: u64 = 0x4c6f_6721;

/// The hot spot's slot count for `slots` start positions and `hot_fraction`, and its first slot
/// for the stream key `seed` (the widest request size's; narrower ones keep it, cut to fit).
pub fn hot_spot_slots(slots: u64, hot_fraction: f64, seed: u64) -> (u64, u64) {
    let hot = ((slots as f64 * hot_fraction) as u64).clamp(1, slots);
    (hot, derive(seed, HOT_LABEL) % (slots - hot + 1))
}

impl Generator {
    /// A generator for a disk of `disk_size` bytes whose data fills it; `seed` identifies the
    /// VM's stream.
    pub fn new(spec: WorkloadSpec, disk_size: u64, seed: u64) -> Result<Self> {
        Self::for_disk(spec, DiskData::full(disk_size), seed)
    }

    /// A generator for `disk`: overwrites inside its data, growth at its allocation frontier.
    pub fn for_disk(spec: WorkloadSpec, disk: DiskData, seed: u64) -> Result<Self> {
        spec.validate()?;
        if let Some(x) = spec.daily_change {
            return Err(Error::invalid(
                "daily_change",
                format!(
                    "{x} is a target, not a placement: calibrate the spec for the disk first \
                     (estimate::change_fraction::calibrate)"
                ),
            ));
        }
        let align = ALIGN;
        let disk_size = disk.size;
        if disk_size < u64::from(spec.sizes.max()).max(align) {
            return Err(Error::invalid(
                "disk_size",
                format!(
                    "{disk_size} bytes is smaller than the largest request ({} bytes)",
                    spec.sizes.max()
                ),
            ));
        }
        if disk.used > disk_size {
            return Err(Error::invalid(
                "used",
                format!(
                    "{} bytes of data is more than the disk ({disk_size} bytes)",
                    disk.used
                ),
            ));
        }
        let span = disk.extent(u64::from(spec.sizes.max()));
        let slots = (span - u64::from(spec.sizes.max()).min(span)) / align + 1;
        let hot_base = match spec.locality {
            Locality::HotSpot { hot_fraction, .. } => hot_spot_slots(slots, hot_fraction, seed).1,
            // For Zipf, the same field salts where the ranks land, per VM.
            Locality::Zipf { .. } => derive(seed, ZIPF_LABEL),
            _ => 0,
        };
        let log_base = match spec.locality {
            Locality::SequentialLog { region_fraction } => {
                let region = ((slots as f64 * region_fraction) as u64).clamp(1, slots);
                derive(seed, LOG_LABEL) % (slots - region + 1)
            }
            _ => 0,
        };
        let per_size: Vec<SizeSlots> = spec
            .sizes
            .sizes
            .iter()
            .map(|&s| {
                let size = u64::from(s).min(span);
                let slots = (span - size) / align + 1;
                let (region, base) = match spec.locality {
                    Locality::HotSpot { hot_fraction, .. } => {
                        let hot = ((slots as f64 * hot_fraction) as u64).clamp(1, slots);
                        (hot, hot_base.min(slots - hot))
                    }
                    Locality::SequentialLog { region_fraction } => {
                        let region = ((slots as f64 * region_fraction) as u64).clamp(1, slots);
                        (region, log_base.min(slots - region))
                    }
                    _ => (slots, 0),
                };
                SizeSlots {
                    size,
                    slots,
                    region,
                    base,
                }
            })
            .collect();
        let log_stride = (spec.sizes.mean() as u64).div_ceil(align).max(1);
        let log_per_second = spec.iops.ceil() as u64;
        let growth = (spec.growth_per_day > 0.0 && disk.used > 0).then(|| Growth {
            start: span.div_ceil(align) * align,
            bytes_per_s: spec.growth_per_day * disk.used as f64 / DAY_S,
            end: disk_size,
        });
        let read_cut = cut32(spec.read_fraction);
        let hot_cut = match spec.locality {
            Locality::HotSpot { hot_share, .. } => cut32(hot_share),
            _ => 0,
        };
        let size_cuts: Vec<u64> = spec.sizes.cumulative.iter().map(|&c| cut32(c)).collect();
        #[cfg(target_arch = "x86_64")]
        let lanes = match spec.locality {
            Locality::Uniform | Locality::HotSpot { .. } => {
                HotLanes::new(&per_size, &size_cuts, read_cut, hot_cut, align)
            }
            _ => None,
        };
        Ok(Generator {
            spec,
            disk_size,
            span,
            seed,
            align,
            hot_base,
            per_size,
            log_stride,
            log_per_second,
            growth,
            read_cut,
            hot_cut,
            size_cuts,
            #[cfg(target_arch = "x86_64")]
            lanes,
        })
    }

    /// Where this stream's writes start, as the generator places them (the estimate tier
    /// computes its probabilities from this, not from a copy of the rules).
    pub fn placement(&self) -> Placement {
        let entries = self.spec.sizes.entries();
        Placement {
            disk_size: self.span,
            align: self.align,
            salt: self.hot_base,
            log_stride: self.log_stride,
            log_per_second: self.log_per_second,
            sizes: self
                .per_size
                .iter()
                .zip(entries)
                .map(|(z, (_, weight))| SizePlacement {
                    size: z.size,
                    weight,
                    slots: z.slots,
                    region: z.region,
                    base: z.base,
                })
                .collect(),
            growth: self.growth,
        }
    }

    /// The disk's virtual size.
    pub fn disk_size(&self) -> u64 {
        self.disk_size
    }

    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// The VM's stream key.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Appends to `out` the writes whose time lies in `[t0, t1)` and returns the reads there.
    /// Second `k` draws its operation count from its own keyed generator, and operation `i` of
    /// it everything else from its own key `h = derive(derive(seed, k), i + 1)`, at stratified
    /// times `k + (i + u) / n`; so the stream does not depend on how time is cut into windows,
    /// and a window that covers part of a second only draws the operations that can fall inside
    /// it. An operation's draws are three 64-bit words: `h` and the next two outputs of a
    /// splitmix64 stream started at `h` ([`OpDraws`]).
    pub fn generate(&self, t0: f64, t1: f64, out: &mut WriteBatch) -> ReadCount {
        #[cfg(target_arch = "x86_64")]
        if wide_lanes() {
            // SAFETY: the CPU has every feature `generate_avx512` is compiled for (checked at
            // run time just above); the function itself is safe code.
            #[allow(unsafe_code)]
            return unsafe { self.generate_avx512(t0, t1, out) };
        }
        self.generate_portable(t0, t1, out)
    }

    /// [`Generator::generate`] compiled for AVX-512 (eight 64-bit lanes with a multiply: the
    /// block's three hashes an operation run eight at a time). The same operations in the same
    /// order: the same stream, bit for bit (`the_wide_path_gives_the_same_stream`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,bmi1,bmi2,popcnt")]
    fn generate_avx512(&self, t0: f64, t1: f64, out: &mut WriteBatch) -> ReadCount {
        self.generate_lanes::<true>(t0, t1, out)
    }

    /// [`Generator::generate`] on any CPU (the baseline instruction set).
    pub fn generate_portable(&self, t0: f64, t1: f64, out: &mut WriteBatch) -> ReadCount {
        self.generate_lanes::<false>(t0, t1, out)
    }

    /// The generator, its size entries found across a block's lanes (`WIDE`: eight compares an
    /// instruction) or per operation (two a vector: fewer passes win).
    #[inline(always)]
    fn generate_lanes<const WIDE: bool>(
        &self,
        t0: f64,
        t1: f64,
        out: &mut WriteBatch,
    ) -> ReadCount {
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(l)) = (WIDE, &self.lanes) {
            let labels = label_table();
            return self.window(t0, t1, out, |op, out, reads| {
                // SAFETY: `WIDE` is true only inside `generate_avx512`, which runs only once
                // `wide_lanes` found every feature `HotLanes::second` is compiled for.
                #[allow(unsafe_code)]
                unsafe {
                    l.second(op, t0, t1, labels, out, reads)
                }
            });
        }
        match self.spec.locality {
            Locality::Uniform => {
                self.generate_with::<WIDE, _>(t0, t1, out, false, |z, d, _, _| d.below(z.slots))
            }
            Locality::HotSpot { .. } => {
                let hot_cut = self.hot_cut;
                self.generate_with::<WIDE, _>(t0, t1, out, false, move |z, d, _, _| {
                    // The choice only picks the range: no branch (one in ten operations
                    // lands outside the hot spot, at random: a branch would miss on each).
                    let hot = d.hot32() < hot_cut;
                    let n = std::hint::select_unpredictable(hot, z.region, z.slots);
                    let b = std::hint::select_unpredictable(hot, z.base, 0);
                    b + d.below(n)
                })
            }
            Locality::Zipf { theta } => {
                let n = (self.span / MIB).max(1);
                let per_extent = MIB / self.align;
                let salt = self.hot_base;
                // A rank costs a `powf`: computed for writes only.
                self.generate_with::<WIDE, _>(t0, t1, out, true, move |z, d, _, _| {
                    let rank = zipf_rank(n, theta, d.hot());
                    let extent = zipf_extent(rank, salt, n);
                    (extent * per_extent + d.below(per_extent)).min(z.slots - 1)
                })
            }
            Locality::SequentialLog { .. } => {
                let (per_second, stride) = (self.log_per_second, self.log_stride);
                self.generate_with::<WIDE, _>(t0, t1, out, false, move |z, _, second, index| {
                    z.base
                        + (second.wrapping_mul(per_second).wrapping_add(index)).wrapping_mul(stride)
                            % z.region
                })
            }
        }
    }

    /// [`Generator::generate`] with the locality's slot rule `slot(size, draws, second, index)`
    /// (one loop per locality: the rule is inlined, the loop has no branch on it); a `costly`
    /// rule is computed for the window's writes only.
    #[inline(always)]
    fn generate_with<const WIDE: bool, F>(
        &self,
        t0: f64,
        t1: f64,
        out: &mut WriteBatch,
        costly: bool,
        slot: F,
    ) -> ReadCount
    where
        F: Fn(&SizeSlots, &OpDraws, u64, u64) -> u64,
    {
        let labels = label_table();
        let (read_cut, cuts) = (self.read_cut, &self.size_cuts[..]);
        let last_size = self.per_size.len() - 1;
        self.window(t0, t1, out, |op, out, reads| {
            let SecondOps {
                second,
                key,
                base,
                inv,
                lo,
                hi,
            } = *op;
            out.reserve((hi - lo) as usize);
            let mut start = lo;
            while start < hi {
                let len = (hi - start).min(BLOCK as u64) as usize;
                // A block's draws first, pass by pass over its lanes (independent hashes and
                // compares: they run side by side), then used without a branch on the
                // operation's kind (reads and writes mix at random): every operation's write is
                // stored at `k`, and `k` moves on only for writes inside the window.
                let mut h = [0u64; BLOCK];
                for (j, x) in h[..len].iter_mut().enumerate() {
                    *x = derive_mixed(key, small_label(labels, start + j as u64 + 1));
                }
                let mut w1 = [0u64; BLOCK];
                let mut w2 = [0u64; BLOCK];
                // Wide: every lane of the block (four AVX-512 passes cost less than a loop
                // with a remainder); otherwise only the operations there are.
                let lanes = if WIDE { BLOCK } else { len };
                for ((a, b), &x) in w1.iter_mut().zip(w2.iter_mut()).zip(&h[..lanes]) {
                    *a = mix64(x);
                    *b = mix64(x.wrapping_add(GAMMA));
                }
                // The size entry: how many cumulative weights lie at or below the draw (cut by
                // cut, every lane at once; or per operation, below).
                let mut entry = [0u64; BLOCK];
                if WIDE {
                    for &cut in cuts {
                        for (e, &w) in entry.iter_mut().zip(&w1) {
                            *e += u64::from(cut <= w >> 32);
                        }
                    }
                }
                let mut times = [0f64; BLOCK];
                let mut offsets = [0u64; BLOCK];
                let mut lengths = [0u32; BLOCK];
                let mut k = 0usize;
                for (j, ((&h, &w1), (&w2, &e))) in h[..len]
                    .iter()
                    .zip(&w1)
                    .zip(w2.iter().zip(&entry))
                    .enumerate()
                {
                    let d = OpDraws { w1, w2 };
                    let i = start + j as u64;
                    let time = base + (i as f64 + unit32(h >> 32)) * inv;
                    let inside = (time >= t0) & (time < t1);
                    let is_read = (h & LOW32) < read_cut;
                    let e = if WIDE {
                        e as usize
                    } else {
                        let x = w1 >> 32;
                        cuts.iter().map(|&c| usize::from(c <= x)).sum()
                    };
                    let z = &self.per_size[e.min(last_size)];
                    let read = inside & is_read;
                    let write = inside & !is_read;
                    reads.reads += u64::from(read);
                    reads.bytes += z.size * u64::from(read);
                    if costly && !write {
                        continue;
                    }
                    let offset = slot(z, &d, second, i) * self.align;
                    // `k <= j < BLOCK`: the mask only shows the compiler so.
                    let at = k & (BLOCK - 1);
                    times[at] = time;
                    offsets[at] = offset;
                    lengths[at] = z.size as u32;
                    k += usize::from(write);
                }
                out.times.extend_from_slice(&times[..k]);
                out.offsets.extend_from_slice(&offsets[..k]);
                out.lengths.extend_from_slice(&lengths[..k]);
                start += len as u64;
            }
        })
    }

    /// The window `[t0, t1)`: `per_second` called for each second it touches that has
    /// operations, with the ones that can fall inside it (it appends their writes and counts
    /// their reads), then the growth writes merged in; the reads returned.
    #[inline(always)]
    fn window(
        &self,
        t0: f64,
        t1: f64,
        out: &mut WriteBatch,
        mut per_second: impl FnMut(&SecondOps, &mut WriteBatch, &mut ReadCount),
    ) -> ReadCount {
        let mut reads = ReadCount::default();
        if t1.partial_cmp(&t0) != Some(std::cmp::Ordering::Greater) || t0 < 0.0 {
            return reads;
        }
        let from = out.len();
        for second in t0.floor() as u64..t1.ceil() as u64 {
            let key = derive(self.seed, second);
            let mut rng = Rng::new(derive(key, 0));
            let rate = self.spec.rate_at(second as f64 + 0.5);
            let whole = rate.floor();
            let n = whole as u64 + u64::from(rng.f64() < rate - whole);
            if n == 0 {
                continue;
            }
            // Operation i lies in [k + i/n, k + (i+1)/n): only these can be inside the window.
            let base = second as f64;
            let lo = (((t0 - base) * n as f64).floor() - 1.0).max(0.0) as u64;
            let hi = ((((t1 - base) * n as f64).ceil() + 1.0).max(0.0) as u64).min(n);
            let op = SecondOps {
                second,
                key,
                base,
                inv: 1.0 / n as f64,
                lo,
                hi,
            };
            per_second(&op, out, &mut reads);
        }
        if let Some(g) = &self.growth {
            append_growth(g, t0, t1, from, out);
        }
        reads
    }
}

/// Merges the growth writes of `[t0, t1)` into the window's writes `out[from..]` (in time
/// order). Growth writes are few (one per [`GROWTH_WRITE`] of new data), so each is inserted.
fn append_growth(g: &Growth, t0: f64, t1: f64, from: usize, out: &mut WriteBatch) {
    let mut j = g.first_at(t0);
    while let Some((t, offset, len)) = g.write(j) {
        if t >= t1 {
            break;
        }
        let at = from + out.times[from..].partition_point(|&x| x <= t);
        out.times.insert(at, t);
        out.offsets.insert(at, offset);
        out.lengths.insert(at, len);
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(locality: Locality) -> WorkloadSpec {
        WorkloadSpec {
            iops: 250.5,
            read_fraction: 0.3,
            sizes: SizeDist::typical(),
            locality,
            diurnal: None,
            growth_per_day: 0.0,
            daily_change: None,
        }
    }

    fn all(g: &Generator, t0: f64, t1: f64) -> WriteBatch {
        let mut b = WriteBatch::default();
        g.generate(t0, t1, &mut b);
        b
    }

    #[test]
    fn windows_do_not_change_the_stream() {
        for loc in [
            Locality::Uniform,
            Locality::HotSpot {
                hot_fraction: 0.1,
                hot_share: 0.9,
            },
            Locality::Zipf { theta: 0.99 },
            Locality::SequentialLog {
                region_fraction: 0.05,
            },
        ] {
            let g = Generator::new(spec(loc), 10 << 30, 99).unwrap();
            let whole = all(&g, 0.0, 20.0);
            let mut parts = all(&g, 0.0, 7.25);
            let rest = all(&g, 7.25, 20.0);
            parts.offsets.extend(rest.offsets);
            parts.lengths.extend(rest.lengths);
            assert_eq!(whole.offsets, parts.offsets);
            assert_eq!(whole.lengths, parts.lengths);
            assert!(whole.times.windows(2).all(|w| w[0] <= w[1]));
            for (&o, &l) in whole.offsets.iter().zip(&whole.lengths) {
                assert!(o + u64::from(l) <= 10 << 30);
                assert_eq!(o % 4096, 0);
            }
        }
    }

    /// The generator as first written (every draw of every operation, one binary search per
    /// size, divisions per operation): the optimised one must give exactly this stream.
    fn reference(g: &Generator, t0: f64, t1: f64) -> (WriteBatch, ReadCount) {
        let spec = &g.spec;
        let mut out = WriteBatch::default();
        let mut reads = ReadCount::default();
        for second in t0.floor() as u64..t1.ceil() as u64 {
            let key = derive(g.seed, second);
            let mut rng = Rng::new(derive(key, 0));
            let rate = spec.rate_at(second as f64 + 0.5);
            let whole = rate.floor();
            let n = whole as u64 + u64::from(rng.f64() < rate - whole);
            let inv = 1.0 / n as f64;
            for i in 0..n {
                // The operation's key and the next two outputs of splitmix64 seeded with it.
                let h = derive(key, i + 1);
                let w1 = mix64(h);
                let w2 = mix64(h.wrapping_add(GAMMA));
                let u32_of = |x: u64| (x as u32) as f64 / 4_294_967_296.0;
                let below = |n: u64| ((u128::from(w2) * u128::from(n)) >> 64) as u64;
                let time = second as f64 + (i as f64 + u32_of(h >> 32)) * inv;
                let is_read = u32_of(h) < spec.read_fraction;
                let c = &spec.sizes.cumulative;
                let u = u32_of(w1 >> 32);
                let size = spec.sizes.sizes[c.partition_point(|&x| x <= u).min(c.len() - 1)];
                let size = u64::from(size).min(g.span);
                let slots = (g.span - size) / g.align + 1;
                let slot = match spec.locality {
                    Locality::Uniform => below(slots),
                    Locality::HotSpot {
                        hot_fraction,
                        hot_share,
                    } => {
                        let hot = ((slots as f64 * hot_fraction) as u64).clamp(1, slots);
                        let base = g.hot_base.min(slots - hot);
                        if u32_of(w1) < hot_share {
                            base + below(hot)
                        } else {
                            below(slots)
                        }
                    }
                    Locality::Zipf { theta } => {
                        let n = (g.span / MIB).max(1);
                        let u = u32_of(w1);
                        let e = 1.0 - theta;
                        let x = if (theta - 1.0).abs() < 1e-9 {
                            (n as f64).powf(u)
                        } else {
                            (((n as f64).powf(e) - 1.0) * u + 1.0).powf(1.0 / e)
                        };
                        let rank = (x as u64).saturating_sub(1).min(n - 1);
                        let extent = (rank.wrapping_mul(SCATTER).wrapping_add(g.hot_base)) % n;
                        (extent * (MIB / g.align) + below(MIB / g.align)).min(slots - 1)
                    }
                    Locality::SequentialLog { region_fraction } => {
                        let widest = (g.span - u64::from(spec.sizes.max())) / g.align + 1;
                        let r = ((widest as f64 * region_fraction) as u64).clamp(1, widest);
                        let log_base = derive(g.seed, 0x4c6f_6721) % (widest - r + 1);
                        let region = ((slots as f64 * region_fraction) as u64).clamp(1, slots);
                        let base = log_base.min(slots - region);
                        let stride = (spec.sizes.mean() as u64).div_ceil(g.align).max(1);
                        let per_second = spec.iops.ceil() as u64;
                        base + (second * per_second + i) * stride % region
                    }
                };
                if time < t0 || time >= t1 {
                    continue;
                }
                if is_read {
                    reads.reads += 1;
                    reads.bytes += size;
                } else {
                    out.times.push(time);
                    out.offsets.push(slot * g.align);
                    out.lengths.push(size as u32);
                }
            }
        }
        // Growth: write j of 1 MiB at the frontier when (j + 1) MiB of new data is due.
        if let Some(gr) = g.growth {
            let mut j = 0u64;
            loop {
                let offset = gr.start + j * GROWTH_WRITE;
                let time = ((j + 1) * GROWTH_WRITE) as f64 / gr.bytes_per_s;
                if offset >= gr.end || time >= t1 {
                    break;
                }
                if time >= t0 {
                    let at = out.times.partition_point(|&x| x <= time);
                    out.times.insert(at, time);
                    out.offsets.insert(at, offset);
                    out.lengths
                        .insert(at, GROWTH_WRITE.min(gr.end - offset) as u32);
                }
                j += 1;
            }
        }
        (out, reads)
    }

    /// Both compiled paths and the reference, on one window.
    fn assert_paths_agree(g: &Generator, t0: f64, t1: f64) {
        let (want, wr) = reference(g, t0, t1);
        let mut wide = WriteBatch::default();
        let mut portable = WriteBatch::default();
        let r1 = g.generate(t0, t1, &mut wide);
        let r2 = g.generate_portable(t0, t1, &mut portable);
        for (name, got, r) in [("generate", &wide, r1), ("portable", &portable, r2)] {
            assert!(got.offsets == want.offsets, "{name} {t0} {t1}");
            assert!(got.lengths == want.lengths, "{name} {t0} {t1}");
            assert!(got.times == want.times, "{name} {t0} {t1}");
            assert_eq!(r, wr, "{name} {t0} {t1}");
        }
    }

    #[test]
    fn the_wide_path_gives_the_same_stream() {
        // `generate` takes the AVX-512 path where the CPU has it (this machine's does); the
        // portable path is the baseline build's.
        #[cfg(target_arch = "x86_64")]
        if !wide_lanes() {
            eprintln!("no AVX-512 here: only the portable path is compared");
        }
        for (k, loc) in [
            Locality::Uniform,
            Locality::HotSpot {
                hot_fraction: 0.02,
                hot_share: 0.7,
            },
            Locality::Zipf { theta: 0.8 },
            Locality::SequentialLog {
                region_fraction: 0.1,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let g = Generator::new(spec(loc), 8 << 30, 100 + k as u64).unwrap();
            for (t0, t1) in [(0.0, 50.0), (7.001, 7.05), (9.99, 10.02), (3.0, 3.0)] {
                assert_paths_agree(&g, t0, t1);
            }
        }
    }

    #[test]
    fn operations_past_the_label_table_match_the_reference() {
        // More operations a second than the label table holds: the lanes mix the labels
        // themselves from there on.
        for loc in [
            Locality::Uniform,
            Locality::HotSpot {
                hot_fraction: 0.05,
                hot_share: 0.8,
            },
        ] {
            let mut s = spec(loc);
            s.iops = 20_000.5;
            let g = Generator::new(s, 8 << 30, 3).unwrap();
            #[cfg(target_arch = "x86_64")]
            assert!(
                g.lanes.is_some(),
                "the hot-spot and uniform rules have lanes"
            );
            for (t0, t1) in [(0.0, 2.0), (4.8, 5.3), (6.0, 6.0001)] {
                assert_paths_agree(&g, t0, t1);
            }
        }
    }

    #[test]
    fn cuts_decide_as_the_floats() {
        // At and around every cut, and at the ends.
        for p in [
            0.0,
            0.3,
            0.9,
            0.99,
            1.0,
            0.5 + f64::EPSILON,
            1.0 / 3.0,
            1e-12,
        ] {
            let c = cut32(p);
            for x in [c.saturating_sub(2), c.saturating_sub(1), c, c + 1, 0, LOW32] {
                let x = x.min(LOW32);
                assert_eq!(unit32(x) < p, x < c, "p {p} x {x}");
                assert_eq!(p <= unit32(x), c <= x, "p {p} x {x}");
            }
        }
    }

    proptest::proptest! {
        /// Any probability and any 32-bit draw: the integer cut decides as the float compare.
        #[test]
        fn cuts_decide_as_the_floats_anywhere(p in 0.0f64..=1.0, x in 0u64..=LOW32, k in 0u64..=LOW32) {
            let c = cut32(p);
            proptest::prop_assert_eq!(unit32(x) < p, x < c);
            proptest::prop_assert_eq!(p <= unit32(x), c <= x);
            // Probabilities that are exactly a draw: the cut is that draw.
            let q = unit32(k);
            proptest::prop_assert_eq!(cut32(q), k);
        }

        /// Random specs — read share, hot share, sizes and weights — and windows: both paths
        /// give the reference stream.
        #[test]
        fn random_specs_match_the_reference(
            read in 0.0f64..=1.0,
            share in 0.0f64..=1.0,
            weights in proptest::collection::vec(0.0f64..4.0, 1..24),
            seed in 0u64..1000,
            t0 in 0.0f64..40.0,
            dt in 0.0f64..8.0,
        ) {
            let n = weights.len();
            let weights: Vec<f64> = weights.iter().enumerate()
                .map(|(i, &w)| if i == 0 { w + 0.5 } else { w }).collect();
            let sizes: Vec<u32> = (1..=n as u32).map(|k| k * 4096).collect();
            let mut s = spec(Locality::HotSpot { hot_fraction: 0.05, hot_share: share });
            s.read_fraction = read;
            s.sizes = SizeDist::new(&sizes, &weights).unwrap();
            let g = Generator::new(s, 2 << 30, seed).unwrap();
            assert_paths_agree(&g, t0, t0 + dt);
        }
    }

    #[test]
    fn stream_matches_the_reference_generator() {
        let many = SizeDist::new(
            &(1..=20).map(|k| k * 4096).collect::<Vec<u32>>(),
            &(1..=20).map(f64::from).collect::<Vec<f64>>(),
        )
        .unwrap();
        for (k, loc) in [
            Locality::Uniform,
            Locality::HotSpot {
                hot_fraction: 0.1,
                hot_share: 0.9,
            },
            Locality::Zipf { theta: 0.99 },
            Locality::Zipf { theta: 1.0 },
            Locality::SequentialLog {
                region_fraction: 0.05,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let mut s = spec(loc);
            if k % 2 == 1 {
                s.sizes = many.clone();
            }
            // A disk smaller than some requests' slots: sizes are cut to the disk. A disk with
            // data on part of it, growing (1 MiB of new data every 28 s).
            let partial = DiskData {
                size: 10 << 30,
                used: (3 << 30) + 12_345,
            };
            let mut grows = s.clone();
            grows.growth_per_day = 1.0;
            for (disk, spec_k) in [
                (DiskData::full(10 << 30), &s),
                (DiskData::full(1 << 20), &s),
                (partial, &grows),
            ] {
                let g = Generator::for_disk(spec_k.clone(), disk, 7 + k as u64).unwrap();
                let windows = [
                    (0.0, 30.0),
                    (3.3, 4.1),
                    (12.0, 12.5),
                    (27.9, 28.5),
                    (0.0, 90.0),
                ];
                for (t0, t1) in windows {
                    let got = all(&g, t0, t1);
                    assert!(!got.is_empty() || disk.size < 1 << 30 || t1 - t0 < 1.0);
                    if spec_k.growth_per_day > 0.0 && t1 >= 90.0 {
                        let new = got.offsets.iter().filter(|&&o| o >= partial.used).count();
                        assert_eq!(new, 3, "three growth writes in 90 s");
                    }
                    // Both paths give the reference's stream and reads.
                    assert_paths_agree(&g, t0, t1);
                }
            }
        }
    }

    #[test]
    fn overwrites_stay_in_the_data_and_growth_appends_at_the_frontier() {
        let used = 40u64 << 30;
        let disk = DiskData {
            size: 127 << 30,
            used,
        };
        for loc in [
            Locality::Uniform,
            Locality::HotSpot {
                hot_fraction: 0.1,
                hot_share: 0.9,
            },
            Locality::Zipf { theta: 0.99 },
            Locality::SequentialLog {
                region_fraction: 0.05,
            },
        ] {
            let mut s = spec(loc);
            s.growth_per_day = 0.05;
            let g = Generator::for_disk(s, disk, 3).unwrap();
            let b = all(&g, 0.0, 3600.0);
            let (old, new): (Vec<_>, Vec<_>) = b
                .offsets
                .iter()
                .zip(&b.lengths)
                .partition(|(&o, _)| o < used);
            assert!(old.iter().all(|(&o, &l)| o + u64::from(l) <= used));
            // An hour of 5 %/day of 40 GiB: 85.3 MiB, in 1 MiB writes one after the other.
            assert_eq!(new.len(), 85);
            for (k, (&o, &l)) in new.iter().enumerate() {
                assert_eq!((o, l), (used + k as u64 * MIB, MIB as u32));
            }
            // The localities that spread reach across the data, not just its start (the log
            // keeps to its region, which lies inside the data too).
            let top = old.iter().map(|(&o, _)| o).max().unwrap();
            if !matches!(g.spec().locality, Locality::SequentialLog { .. }) {
                assert!(top > used / 2, "{top}");
            }
        }
        // Without growth the disk's data is all it writes; growth stops at the disk's end.
        let g = Generator::for_disk(spec(Locality::Uniform), disk, 3).unwrap();
        assert!(all(&g, 0.0, 600.0).offsets.iter().all(|&o| o < used));
        let mut s = spec(Locality::Uniform);
        s.growth_per_day = 1.0;
        let near_full = DiskData {
            size: (1 << 30) + (3 << 20),
            used: 1 << 30,
        };
        let g = Generator::for_disk(s, near_full, 3).unwrap();
        let b = all(&g, 0.0, 1000.0);
        let grown: u64 = b
            .offsets
            .iter()
            .zip(&b.lengths)
            .filter(|(&o, _)| o >= 1 << 30)
            .map(|(_, &l)| u64::from(l))
            .sum();
        assert_eq!(grown, 3 << 20);
        assert_eq!(g.placement().growth.unwrap().bytes_by(1000.0), 3 << 20);
    }

    #[test]
    fn an_uncalibrated_target_or_too_much_data_is_refused() {
        let mut s = spec(Locality::Uniform);
        s.daily_change = Some(0.03);
        assert!(Generator::new(s.clone(), 1 << 30, 1).is_err());
        s.daily_change = Some(1.5);
        assert!(s.validate().is_err());
        s.daily_change = None;
        s.growth_per_day = -0.1;
        assert!(s.validate().is_err());
        let over = DiskData {
            size: 1 << 30,
            used: 2 << 30,
        };
        assert!(Generator::for_disk(spec(Locality::Uniform), over, 1).is_err());
    }

    #[test]
    fn rate_and_mix_are_respected() {
        let g = Generator::new(spec(Locality::Uniform), 1 << 30, 1).unwrap();
        let mut b = WriteBatch::default();
        let reads = g.generate(0.0, 1000.0, &mut b);
        let total = (b.len() as u64 + reads.reads) as f64;
        assert!((total / 1000.0 - 250.5).abs() < 1.0, "{total}");
        let read_share = reads.reads as f64 / total;
        assert!((read_share - 0.3).abs() < 0.01, "{read_share}");
    }

    #[test]
    fn hot_spot_concentrates() {
        let g = Generator::new(
            spec(Locality::HotSpot {
                hot_fraction: 0.1,
                hot_share: 0.9,
            }),
            100 << 30,
            5,
        )
        .unwrap();
        let b = all(&g, 0.0, 100.0);
        let base = g.hot_base * 4096;
        let hot_len = (100u64 << 30) / 10;
        let inside = b
            .offsets
            .iter()
            .filter(|&&o| o >= base && o < base + hot_len)
            .count();
        let share = inside as f64 / b.len() as f64;
        assert!(share > 0.88 && share < 0.95, "{share}");
    }

    #[test]
    fn diurnal_curve_changes_the_rate() {
        let mut s = spec(Locality::Uniform);
        s.diurnal = Some(Diurnal {
            amplitude: 0.5,
            period_s: 86_400.0,
            peak_s: 0.0,
        });
        assert!((s.rate_at(0.0) - 375.75).abs() < 1e-6);
        assert!((s.rate_at(43_200.0) - 125.25).abs() < 1e-6);
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut s = spec(Locality::HotSpot {
            hot_fraction: 0.0,
            hot_share: 0.5,
        });
        assert!(s.validate().is_err());
        s.locality = Locality::Uniform;
        s.iops = -1.0;
        assert!(s.validate().is_err());
        s.iops = 1.0;
        s.read_fraction = 1.5;
        assert!(s.validate().is_err());
        assert!(SizeDist::new(&[1000], &[1.0]).is_err());
        assert!(SizeDist::new(&[4096], &[0.0]).is_err());
        assert!(Generator::new(spec(Locality::Uniform), 4096, 1).is_err());
    }
}
