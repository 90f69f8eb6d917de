//! The estimate tier: in closed form, what the per-write engine (`workload::ModelCluster`) would
//! count in expectation — and with what variance — for the same generator and layout, at a cost
//! that does not grow with the number of writes.
//!
//! # How this works
//!
//! Every figure the per-write engine reports is a count of distinct units written in a set of
//! time: CSV chunks first written in a copy-on-write epoch (the copies), change-tracking blocks
//! written since a reset (what an incremental reads), VHDX blocks written since the start (the
//! file's growth), BAT and log chunks (the metadata an allocation writes). Its expectation is a
//! sum over units of the probability the unit is written, and that probability follows from the
//! generator itself:
//!
//! - [`exposure`]: the law of the number of operations a time set holds (second `k` has
//!   `⌊r_k⌋ + Bernoulli(frac r_k)` operations at stratified times), as `L(q) = ln E[(1 − q)^N]`
//!   in closed form; `1 − exp(L(q))` is the chance a unit one operation writes with probability
//!   `q` is written at all — exact, including partly covered seconds and a diurnal rate;
//! - [`density`]: per request size, the probability of each start slot (from
//!   `Generator::placement`); `q` for a byte range is a sum of interval masses;
//! - [`classes`]: units grouped into runs of equal `q` (clean runs between the law's piece
//!   bounds, edge units one by one), exact; [`zipf`]: the Zipf locality's extents grouped by
//!   probability on geometric grids (error ≤ 0.36 % stated there, 0.004 % measured);
//!   [`seqlog`]: the sequential log, whose writes follow a deterministic path: per unit a product
//!   over the path's operations, evaluated once per period of the path;
//! - [`profile`]: one VM disk's units, blocks and metadata layout, built once;
//! - [`vm`]: one VM's expected counts and variances from its profile and the exposures of the
//!   sets they concern (copies: a chunk counts when its block was allocated before the
//!   snapshot; metadata: headers, log ring, BAT chunks);
//! - [`cluster`]: [`EstimateCluster`], `ModelCluster`'s twin: snapshots as epochs, the diff area
//!   as a sum of epoch terms (increasing between events), the instant it reaches a limit found
//!   by root-finding ([`rootfind`]), the oldest snapshot deleted there as volsnap does;
//! - [`change_fraction`]: the fraction of a disk's data a stream changes in a duration at a
//!   tracking granularity (the same unit sums as an incremental's changed blocks), and its
//!   inverse: the calibration of `WorkloadSpec::daily_change` into a hot spot.
//!
//! # Terms, grouping, error
//!
//! Means are exact sums over classes, except: Zipf's grouped extents (bounded in `zipf`); the
//! sequential log's diurnal streaks, interpolated (0.1 % of the sum, tested); the log's and
//! BAT's metadata with blocks allocated independently of each other; one log entry per
//! allocated block (a write allocating two writes one: ≈ mean write / block size of them).
//! Variances are second-order in the per-operation probabilities (a unit's own, its neighbours'
//! through shared writes, far units' through the operation count, a block's allocation); the
//! log's neighbour covariances exact on sampled distances. What the tier does not model is
//! refused with `Error::NotEstimated`: a CSV that fills (the per-write engine then drops the
//! writes that need a block), changed runs, materialized disks, session closes.
//!
//! # Extending it
//!
//! A locality confined to a region `(start, length)` of the disk is a placement whose start law
//! has that support: [`density::StartLaw`] takes any pieces, so the class machinery needs
//! nothing new. A growth stream appended at the allocation frontier is a deterministic path, as
//! the log's: one more term of the same kind as `seqlog` (its units' probabilities along the
//! path), added to the unit sums.
//!
//! The agreement with the per-write engine is tested in `agreement` (every locality, size mixes,
//! read shares, a diurnal curve, overlapping snapshots, fixed and partly allocated disks, a
//! diff-area limit; each term shown to matter by dropping it).

pub mod change_fraction;
pub mod classes;
pub mod cluster;
pub mod density;
pub mod exposure;
pub mod growth;
pub mod intervals;
pub mod profile;
pub mod rootfind;
pub mod seqlog;
pub mod vm;
pub mod zipf;

#[cfg(test)]
mod agreement;

pub use change_fraction::{calibrate, change_fraction, Calibration};
pub use cluster::{EstimateCluster, EstimateReport, VmEstimate};
pub use exposure::{Exposure, RateCurve};
pub use intervals::Intervals;
pub use vm::Est;
