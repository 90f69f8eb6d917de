//! Shared links on the virtual clock (the modelled runs' `FairShareLinks` in Python keeps the
//! transfers and the clock; this tier holds its arithmetic).
//!
//! - [`max_min`]: the max-min fair rates of transfers and background flows crossing links, by
//!   progressive filling.

pub mod max_min;

pub use max_min::{max_min_rates, Class, Group, FULL};
