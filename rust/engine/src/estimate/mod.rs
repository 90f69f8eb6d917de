//! The estimate tier: in closed form, what the per-write engine (`workload::ModelCluster`) would
//! count in expectation, for the same generator and layout.
//!
//! - [`change_fraction`]: the fraction of a disk's data a stream changes in a duration at a
//!   tracking granularity, and its inverse (the calibration of `WorkloadSpec::daily_change`).

pub mod change_fraction;

pub use change_fraction::{calibrate, change_fraction, Calibration};
