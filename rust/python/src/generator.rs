//! `WorkloadGenerator`: one VM's I/O stream as `ModelCluster` generates it, on its own (no VHDX
//! layout, no trackers) — to look at a workload, and to benchmark the generator.

use numpy::PyArray1;
use pyo3::prelude::*;
use vssim_engine::cbt;
use vssim_engine::error::check_window;
use vssim_engine::workload::{DiskData, Generator, WriteBatch};

use crate::args::{as_opt_u64, as_u64};
use crate::errors::{detached, guarded};
use crate::spec::WorkloadSpec;

/// The writes of `generate`: `(times, offsets, lengths, reads, read_bytes)`.
type Generated<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<u64>>,
    Bound<'py, PyArray1<u32>>,
    u64,
    u64,
);

/// One VM disk's seeded I/O stream: `workload` (a `WorkloadSpec`, as `ModelCluster.add_vm`
/// takes it) on a disk of `disk_size` bytes holding `used` bytes of data (default: all of it),
/// the same stream for the same `seed` (a pure function of the seed and the second). A
/// daily-change target is calibrated for the disk at `tracking_block` bytes.
#[pyclass(module = "vssim._engine", frozen)]
pub struct WorkloadGenerator {
    inner: Generator,
}

#[pymethods]
impl WorkloadGenerator {
    #[new]
    #[pyo3(signature = (
        disk_size, workload = None, *, seed = 0, used = None,
        tracking_block = cbt::DEFAULT_BLOCK_SIZE
    ))]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::disk_size)] disk_size: u64,
        workload: Option<PyRef<'_, WorkloadSpec>>,
        #[pyo3(from_py_with = as_u64::seed)] seed: u64,
        #[pyo3(from_py_with = as_opt_u64::used)] used: Option<u64>,
        #[pyo3(from_py_with = as_u64::tracking_block)] tracking_block: u64,
    ) -> PyResult<Self> {
        let spec = WorkloadSpec::given_or_default(py, workload)?;
        let disk = DiskData {
            size: disk_size,
            used: used.unwrap_or(disk_size),
        };
        let inner = guarded(|| {
            let spec = WorkloadSpec::for_disk(spec, disk, tracking_block)?;
            Generator::for_disk(spec, disk, seed)
        })?;
        Ok(WorkloadGenerator { inner })
    }

    /// The spec the stream runs (a daily-change target calibrated into its hot spot).
    #[getter]
    fn workload(&self) -> WorkloadSpec {
        WorkloadSpec {
            inner: self.inner.spec().clone(),
        }
    }

    /// The writes whose time lies in `[t0, t1)` seconds, in time order: `times` (float64
    /// seconds), `offsets` (uint64 bytes, 4 KiB aligned), `lengths` (uint32 bytes); and the
    /// reads there, counted: `reads`, `read_bytes`. GIL released.
    fn generate<'py>(&self, py: Python<'py>, t0: f64, t1: f64) -> PyResult<Generated<'py>> {
        guarded(|| check_window(t0, t1))?;
        let inner = &self.inner;
        let (batch, reads) = detached(py, move || {
            let mut batch = WriteBatch::default();
            let reads = inner.generate(t0, t1, &mut batch);
            Ok((batch, reads))
        })?;
        Ok((
            PyArray1::from_vec(py, batch.times),
            PyArray1::from_vec(py, batch.offsets),
            PyArray1::from_vec(py, batch.lengths),
            reads.reads,
            reads.bytes,
        ))
    }

    fn __repr__(&self) -> String {
        let s = self.inner.spec();
        format!(
            "WorkloadGenerator(iops={}, read_fraction={}, locality={:?})",
            s.iops, s.read_fraction, s.locality
        )
    }
}
