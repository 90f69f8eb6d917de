//! `max_min_rates`, `demands_if_they_fit` and `FairShare`: the max-min fair rates of shared links
//! and the state of a run's links (see `vssim_engine::links`).

use pyo3::prelude::*;
use vssim_engine::links::fair_share;
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

/// `demands_if_they_fit(capacity, groups)`: the rates the filling gives background `groups`
/// (link, demand, flows) alone on a link of `capacity` when their demands fit with room to
/// spare — each its own demand —, else None.
#[pyfunction]
pub fn demands_if_they_fit(capacity: f64, groups: Vec<(usize, f64, u64)>) -> Option<Vec<f64>> {
    links::demands_if_they_fit(capacity, &self::groups(groups))
}

/// The links of a run with the transfers and background flows crossing them
/// (`vssim_engine::links::fair_share`): `FairShareLinks` keeps the clock and the transfers'
/// events and calls in at each instant something changes. Links are indices; every time is the
/// clock's now. Short calls: they hold the GIL.
#[pyclass(module = "vssim._engine")]
pub struct FairShare {
    inner: fair_share::FairShare,
}

#[pymethods]
impl FairShare {
    /// Links of `capacity` bytes moved per second, `weight` bytes carried per byte moved,
    /// `rank` each link's place among the links by name; the clock at `now`.
    #[new]
    fn new(capacity: Vec<f64>, weight: Vec<f64>, rank: Vec<usize>, now: f64) -> PyResult<Self> {
        let inner = guarded(|| fair_share::FairShare::new(capacity, weight, rank, now))?;
        Ok(FairShare { inner })
    }

    /// A transfer of `nbytes` (> 0) over `path` (link indices) starts; returns its number.
    fn start(&mut self, now: f64, path: Vec<usize>, nbytes: u64) -> PyResult<u64> {
        guarded(|| self.inner.start(now, &path, nbytes))
    }

    /// Takes transfer `seq` off its class; the bytes it had moved, or None when it is not under
    /// way.
    fn cancel(&mut self, seq: u64, now: f64) -> PyResult<Option<u64>> {
        guarded(|| self.inner.cancel(seq, now))
    }

    /// Sets the background of `key`: per link, groups (demand per flow in bytes/s, flows);
    /// whether anything changed.
    fn set_flows(&mut self, key: &str, now: f64, flows: fair_share::Table) -> PyResult<bool> {
        guarded(|| self.inner.set_flows(key, now, flows))
    }

    /// Finish what is done and recompute the rates: (the transfers finished, in order; the time
    /// to the next finish, inf for none).
    fn reschedule(&mut self) -> PyResult<(Vec<u64>, f64)> {
        let s = guarded(|| self.inner.reschedule())?;
        Ok((s.finished, s.next_in))
    }

    /// The timer for the earliest finish fired: as `reschedule`, with what is due done.
    fn wake(&mut self, now: f64) -> PyResult<(Vec<u64>, f64)> {
        let s = guarded(|| self.inner.wake(now))?;
        Ok((s.finished, s.next_in))
    }

    /// Progress every transfer up to `now`.
    fn settle(&mut self, now: f64) -> PyResult<()> {
        guarded(|| self.inner.settle(now))
    }

    /// Bytes moved over `link` up to `now`, transfers under way included (changes nothing).
    fn moved(&self, link: usize, now: f64) -> PyResult<f64> {
        guarded(|| self.inner.moved(link, now))
    }

    /// Bytes each link carried, by index.
    fn link_bytes(&self) -> Vec<i64> {
        self.inner.link_bytes()
    }

    /// Seconds each link was busy, by index.
    fn link_busy(&self) -> Vec<f64> {
        self.inner.link_busy().to_vec()
    }

    /// How many transfers cross each link now, by index.
    fn users(&self) -> Vec<u64> {
        self.inner.users().to_vec()
    }

    /// Each link's background demand now (bytes/s), by index.
    fn load(&self) -> Vec<f64> {
        self.inner.load().to_vec()
    }

    /// The classes: (path, transfers, rate per transfer), in the order they came.
    fn classes(&self) -> Vec<(Vec<usize>, u64, f64)> {
        self.inner.classes()
    }

    /// The background by key: (key, per link (link, groups (demand per flow, flows))).
    fn background(&self) -> Vec<(String, fair_share::Table)> {
        self.inner.background()
    }

    /// The background flows: (link, demand per flow, flows, rate per flow).
    fn flows(&self) -> Vec<(usize, f64, i64, f64)> {
        self.inner.flows()
    }

    /// Transfers started.
    #[getter]
    fn transfers(&self) -> u64 {
        self.inner.transfers
    }
}
