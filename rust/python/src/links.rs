//! `max_min_rates` and `MaxMinLayout`: the max-min fair rates of shared links (see
//! `vssim_engine::links`).

use pyo3::prelude::*;
use vssim_engine::links::{self, Class, Group};
use vssim_engine::Error;

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
    let background = groups(background);
    guarded(|| links::max_min_rates(&capacity, &classes, &background))
}

fn groups(background: Vec<(usize, f64, u64)>) -> Vec<Group> {
    background
        .into_iter()
        .map(|(link, demand, flows)| Group {
            link,
            demand,
            flows,
        })
        .collect()
}

/// A layout of links held between fills: the capacities, the classes' paths and the background
/// groups stay, and each fill passes only the classes' transfer counts — what changes between two
/// finishes of a set's copies (the arguments were most of a call's cost: 10 µs for a 2012
/// cluster's 81 links, 15 classes and 62 groups).
#[pyclass(module = "vssim._engine", frozen)]
pub struct MaxMinLayout {
    capacity: Vec<f64>,
    paths: Vec<Vec<usize>>,
    background: Vec<Group>,
}

#[pymethods]
impl MaxMinLayout {
    #[new]
    fn new(capacity: Vec<f64>, paths: Vec<Vec<usize>>, background: Vec<(usize, f64, u64)>) -> Self {
        MaxMinLayout {
            capacity,
            paths,
            background: groups(background),
        }
    }

    /// `max_min_rates(capacity, zip(paths, transfers), background)`: `transfers` per class, in
    /// the layout's order.
    fn rates(&self, transfers: Vec<u64>) -> PyResult<(Vec<f64>, Vec<f64>)> {
        if transfers.len() != self.paths.len() {
            return Err(crate::errors::to_py(Error::invalid(
                "transfers",
                format!(
                    "{} counts for {} classes; expected one per class",
                    transfers.len(),
                    self.paths.len()
                ),
            )));
        }
        let classes: Vec<Class<'_>> = self
            .paths
            .iter()
            .zip(transfers)
            .map(|(path, transfers)| Class { path, transfers })
            .collect();
        guarded(|| links::max_min_rates(&self.capacity, &classes, &self.background))
    }
}
