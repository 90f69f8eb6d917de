//! `max_min_rates`: the max-min fair rates of shared links (see `vssim_engine::links`).

use pyo3::prelude::*;
use vssim_engine::links::{self, Class, Group};

use crate::errors::guarded;

/// The max-min fair rates, by progressive filling, on links of `capacity` (bytes/s, by index):
/// `classes` are (path as link indices, number of transfers) — every transfer of a class gets the
/// same rate —, `background` (link index, demand per flow > 0, number of flows) groups of equal
/// flows on one link each. Returns the per-transfer rate of each class and the per-flow rate of
/// each background group. A short call: it holds the GIL.
#[pyfunction]
pub fn max_min_rates(
    capacity: Vec<f64>,
    classes: Vec<(Vec<usize>, u64)>,
    background: Vec<(usize, f64, u64)>,
) -> PyResult<(Vec<f64>, Vec<f64>)> {
    let classes: Vec<Class<'_>> = classes
        .iter()
        .map(|(path, transfers)| Class {
            path,
            transfers: *transfers,
        })
        .collect();
    let background: Vec<Group> = background
        .into_iter()
        .map(|(link, demand, flows)| Group {
            link,
            demand,
            flows,
        })
        .collect();
    guarded(|| links::max_min_rates(&capacity, &classes, &background))
}
