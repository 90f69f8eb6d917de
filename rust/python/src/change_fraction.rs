//! `calibrate` and `change_fraction`: the closed form of how much of a disk's data a stream
//! changes (`vssim_engine::estimate::change_fraction`), for Python.

use pyo3::prelude::*;
use vssim_engine::cbt;
use vssim_engine::estimate::change_fraction as cf;
use vssim_engine::workload::DiskData;

use crate::args::{as_opt_u64, as_u64};
use crate::errors::detached;
use crate::spec::WorkloadSpec;

fn disk(disk_size: u64, used: Option<u64>) -> DiskData {
    DiskData {
        size: disk_size,
        used: used.unwrap_or(disk_size),
    }
}

/// `workload` sized for a disk of `disk_size` bytes holding `used` bytes of data (default: all
/// of it): its `daily_change` target turned into the hot spot that reaches it at
/// `tracking_block` bytes. Returns `(spec, reached)`: the spec the disk's stream runs and the
/// day's change fraction it gives, in closed form. A spec without a target comes back as it is
/// (`reached` its day's change, NaN for a locality the closed form does not cover).
#[pyfunction]
#[pyo3(signature = (workload, disk_size, used = None, *, tracking_block = cbt::DEFAULT_BLOCK_SIZE))]
pub fn calibrate(
    py: Python<'_>,
    workload: PyRef<'_, WorkloadSpec>,
    #[pyo3(from_py_with = as_u64::disk_size)] disk_size: u64,
    #[pyo3(from_py_with = as_opt_u64::used)] used: Option<u64>,
    #[pyo3(from_py_with = as_u64::tracking_block)] tracking_block: u64,
) -> PyResult<(WorkloadSpec, f64)> {
    let spec = workload.inner.clone();
    let d = disk(disk_size, used);
    let c = detached(py, move || cf::calibrate(&spec, d, tracking_block))?;
    Ok((WorkloadSpec { inner: c.spec }, c.reached))
}

/// The expected fraction of the disk's data (`used` bytes of `disk_size`; default all) the stream
/// `workload` with key `seed` changes in its first `seconds` seconds, at `tracking_block` bytes:
/// changed tracking blocks over the data's. Uniform and hot-spot localities; a spec with a
/// daily-change target must be calibrated first (:func:`calibrate`).
#[pyfunction]
#[pyo3(signature = (
    workload, disk_size, used = None, seconds = 86400, *, seed = 0,
    tracking_block = cbt::DEFAULT_BLOCK_SIZE
))]
pub fn change_fraction(
    py: Python<'_>,
    workload: PyRef<'_, WorkloadSpec>,
    #[pyo3(from_py_with = as_u64::disk_size)] disk_size: u64,
    #[pyo3(from_py_with = as_opt_u64::used)] used: Option<u64>,
    #[pyo3(from_py_with = as_u64::seconds)] seconds: u64,
    #[pyo3(from_py_with = as_u64::seed)] seed: u64,
    #[pyo3(from_py_with = as_u64::tracking_block)] tracking_block: u64,
) -> PyResult<f64> {
    let spec = workload.inner.clone();
    let d = disk(disk_size, used);
    detached(py, move || {
        cf::change_fraction(&spec, d, tracking_block, seed, seconds)
    })
}
