//! Shared links on the virtual clock (the modelled runs' `FairShareLinks` in Python keeps the
//! clock and each transfer's event; this tier holds the state and its arithmetic).
//!
//! - [`max_min`]: the max-min fair rates of transfers and background flows crossing links, by
//!   progressive filling.
//! - [`fair_share`]: the transfers' classes, the links' counters and the background flows, and
//!   the rules that move them from one instant to the next.

pub mod fair_share;
pub mod max_min;

pub use fair_share::{demands_if_they_fit, FairShare, Schedule};
pub use max_min::{max_min_rates, Class, Group, FULL};
