//! `EstimateCluster`: the estimate tier (see `vssim_engine::estimate`) with `ModelCluster`'s
//! methods and result keys, figures as float64 expectations with `*_var` variances.

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use vssim_engine::cbt;
use vssim_engine::estimate::{self, Est, EstimateReport, VmEstimate};
use vssim_engine::vhdx::format::DEFAULT_BLOCK_SIZE;
use vssim_engine::volsnap::DEFAULT_CHUNK_SIZE;
use vssim_engine::workload::SpaceRules;
use vssim_engine::Error;

use crate::args::{as_opt_u64, as_u64, as_usize, as_vec_usize};
use crate::errors::{detached, guarded, to_py};
use crate::spec::WorkloadSpec;
use crate::workload::{csv_starts, foresight_dict, Calibrations};

/// The CSVs and VMs of a cluster, estimated: for each VM and each interval between snapshot
/// events, what the per-write engine (`ModelCluster`) would count in expectation — copies,
/// changed blocks, allocation, the diff area and the instants a full one deletes snapshots —
/// in closed form, at a cost that does not grow with the number of writes.
#[pyclass(module = "vssim._engine")]
pub struct EstimateCluster {
    inner: estimate::EstimateCluster,
    /// Daily-change targets calibrated as `ModelCluster` does (the same spec for the same disk).
    calibrated: Calibrations,
}

fn not_provided(what: &'static str, why: &str) -> PyErr {
    to_py(Error::NotEstimated {
        what,
        why: why.to_owned(),
    })
}

/// A per-VM figure of a window's estimate.
type Field = (&'static str, fn(&VmEstimate) -> Est);

/// A window's report as the dict `advance` returns (float64 expectations, `*_var` variances):
/// with `dense` (the cluster's VMs), arrays indexed by VM id; else the advanced CSVs' VMs only,
/// `disks` their ids in the arrays' order (a window of one CSV of a 4,000-VM cluster sends its
/// 250, not 4,000 mostly zeros).
fn report_dict<'py>(
    py: Python<'py>,
    report: &EstimateReport,
    dense: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let fields: [Field; 6] = [
        ("writes", |v| v.ops.writes),
        ("bytes_written", |v| v.ops.bytes_written),
        ("reads", |v| v.ops.reads),
        ("bytes_read", |v| v.ops.bytes_read),
        ("chunks_copied", |v| v.chunks_copied),
        ("blocks_allocated", |v| v.blocks_allocated),
    ];
    let column = |g: &dyn Fn(&VmEstimate) -> f64| -> Vec<f64> {
        match dense {
            Some(n) => {
                let mut out = vec![0.0; n];
                for (id, v) in &report.vms {
                    out[*id] = g(v);
                }
                out
            }
            None => report.vms.iter().map(|(_, v)| g(v)).collect(),
        }
    };
    if dense.is_none() {
        // int64 (numpy's index type): indexing with uint64 ids makes numpy convert them first.
        let ids: Vec<i64> = report.vms.iter().map(|&(id, _)| id as i64).collect();
        d.set_item("disks", PyArray1::from_vec(py, ids))?;
    }
    for (name, f) in fields {
        d.set_item(name, PyArray1::from_vec(py, column(&|v| f(v).mean)))?;
        d.set_item(
            format!("{name}_var"),
            PyArray1::from_vec(py, column(&|v| f(v).var)),
        )?;
    }
    let n = dense.unwrap_or(report.vms.len());
    // A window the CSV could fill in is refused, so no write is ever dropped here.
    d.set_item("dropped_writes", PyArray1::from_vec(py, vec![0.0f64; n]))?;
    let csvs: Vec<u64> = report.deleted.iter().map(|d| d.0 as u64).collect();
    let ids: Vec<u64> = report.deleted.iter().map(|d| d.1).collect();
    let times: Vec<f64> = report.deleted.iter().map(|d| d.2).collect();
    d.set_item("deleted_csv", PyArray1::from_vec(py, csvs))?;
    d.set_item("deleted_snapshot", PyArray1::from_vec(py, ids))?;
    d.set_item("deleted_time", PyArray1::from_vec(py, times))?;
    // Volsnap's deletions for a full volume and Hyper-V's pauses never come from the estimate
    // (a window that reaches them is refused).
    let n = report.deleted.len();
    d.set_item(
        "deleted_volume_full",
        PyArray1::from_vec(py, vec![false; n]),
    )?;
    d.set_item("paused_vm", PyArray1::from_vec(py, Vec::<u64>::new()))?;
    d.set_item("paused_time", PyArray1::from_vec(py, Vec::<f64>::new()))?;
    d.set_item(
        "paused_volume_full",
        PyArray1::from_vec(py, Vec::<bool>::new()),
    )?;
    let csvs: Vec<u64> = report.low_space.iter().map(|l| l.0 as u64).collect();
    let times: Vec<f64> = report.low_space.iter().map(|l| l.1).collect();
    d.set_item("low_space_csv", PyArray1::from_vec(py, csvs))?;
    d.set_item("low_space_time", PyArray1::from_vec(py, times))?;
    let csvs: Vec<u64> = report.lowest_free.iter().map(|l| l.0 as u64).collect();
    let bytes: Vec<f64> = report.lowest_free.iter().map(|l| l.1).collect();
    d.set_item("lowest_free_csv", PyArray1::from_vec(py, csvs))?;
    d.set_item("lowest_free_bytes", PyArray1::from_vec(py, bytes))?;
    let bytes: Vec<f64> = report.peak_diff.iter().map(|l| l.1).collect();
    d.set_item("peak_diff_area_bytes", PyArray1::from_vec(py, bytes))?;
    Ok(d)
}

#[pymethods]
impl EstimateCluster {
    #[new]
    fn new() -> Self {
        EstimateCluster {
            calibrated: Calibrations::default(),
            inner: estimate::EstimateCluster::new(),
        }
    }

    /// Adds a CSV of `size` bytes; returns its id (0, 1, …). The same arguments as
    /// `ModelCluster.add_csv`: the low-space warning comes at the instant the expected free
    /// space crosses `warn_below` (root-finding); a window in which it would reach
    /// `pause_below` (Hyper-V pauses VMs at a write) or an empty volume is refused with
    /// `NotEstimatedError`.
    #[pyo3(signature = (
        size, chunk_size = DEFAULT_CHUNK_SIZE, diff_area_limit = None, *,
        diff_area_on_volume = true, warn_below = 0, pause_below = 0
    ))]
    fn add_csv(
        &mut self,
        #[pyo3(from_py_with = as_u64::size)] size: u64,
        #[pyo3(from_py_with = as_u64::chunk_size)] chunk_size: u64,
        #[pyo3(from_py_with = as_opt_u64::diff_area_limit)] diff_area_limit: Option<u64>,
        diff_area_on_volume: bool,
        #[pyo3(from_py_with = as_u64::warn_below)] warn_below: u64,
        #[pyo3(from_py_with = as_u64::pause_below)] pause_below: u64,
    ) -> PyResult<usize> {
        let rules = SpaceRules {
            diff_area_on_volume,
            warn_below,
            pause_below,
        };
        guarded(|| {
            let id = self.inner.add_csv(size, chunk_size, diff_area_limit)?;
            self.inner.set_space_rules(id, rules)?;
            Ok(id)
        })
    }

    /// Adds a VM with one VHDX disk on CSV `csv`; returns its id (0, 1, …). The same arguments
    /// as `ModelCluster.add_vm` (a `WorkloadSpec`, built by the same code).
    #[pyo3(signature = (
        csv, disk_size, workload = None, *, allocated = 0, block_size = DEFAULT_BLOCK_SIZE,
        fixed = false, seed = 0, cbt_block_size = cbt::DEFAULT_BLOCK_SIZE
    ))]
    #[expect(clippy::too_many_arguments)]
    fn add_vm(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        #[pyo3(from_py_with = as_u64::disk_size)] disk_size: u64,
        workload: Option<PyRef<'_, WorkloadSpec>>,
        #[pyo3(from_py_with = as_u64::allocated)] allocated: u64,
        #[pyo3(from_py_with = as_u64::block_size)] block_size: u64,
        fixed: bool,
        #[pyo3(from_py_with = as_u64::seed)] seed: u64,
        #[pyo3(from_py_with = as_u64::cbt_block_size)] cbt_block_size: u64,
    ) -> PyResult<usize> {
        let cfg = self.calibrated.vm_config(
            py,
            csv,
            disk_size,
            workload,
            [allocated, block_size, seed, cbt_block_size],
            fixed,
        )?;
        let inner = &mut self.inner;
        detached(py, move || inner.add_vm(cfg))
    }

    /// The spec VM `vm` runs (its daily-change target calibrated into its hot spot).
    fn workload(&self, vm: usize) -> PyResult<WorkloadSpec> {
        let spec = guarded(|| self.inner.workload(vm).cloned())?;
        Ok(WorkloadSpec { inner: spec })
    }

    /// Advances every running VM through `[t0, t1)` seconds. Returns a dict of per-VM float64
    /// arrays (index = VM id): the expectations `writes`, `bytes_written`, `reads`,
    /// `bytes_read`, `chunks_copied`, `blocks_allocated`, `dropped_writes` (always 0: a window
    /// in which a CSV could fill is refused with `NotEstimatedError`) and their variances
    /// `*_var`; and the snapshots the diff-area limit deletes, at the instant the expected diff
    /// area reaches it: `deleted_csv`, `deleted_snapshot` (uint64), `deleted_time` (float64).
    fn advance<'py>(&mut self, py: Python<'py>, t0: f64, t1: f64) -> PyResult<Bound<'py, PyDict>> {
        let inner = &mut self.inner;
        let report = detached(py, move || inner.advance(t0, t1))?;
        report_dict(py, &report, Some(self.inner.vm_count()))
    }

    /// Advances the VMs of the CSVs `csvs`, CSV `csvs[i]` from `t0s[i]` seconds to `t1` (each
    /// at most once); the others stay where they are. :meth:`advance`'s dict, but its per-VM
    /// arrays hold only the VMs of `csvs` — `disks` (int64) their ids, in the arrays' order
    /// (a window of one CSV of a large cluster sends its VMs, not every VM's zero). With
    /// `variances=False` the chunks copied's variances are 0 and not worked out (the
    /// expectations are the same).
    #[pyo3(signature = (csvs, t0s, t1, variances = true))]
    fn advance_csvs<'py>(
        &mut self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_vec_usize::csvs)] csvs: Vec<usize>,
        t0s: Vec<f64>,
        t1: f64,
        variances: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let from = csv_starts(csvs, t0s)?;
        let inner = &mut self.inner;
        let report = detached(py, move || inner.advance_csvs_with(&from, t1, variances))?;
        report_dict(py, &report, None)
    }

    /// The first snapshot CSV `csv`'s full diff area would delete if its VMs ran from `t0` to
    /// `t1` with nothing else happening, as `(snapshot_id, time)` (the instant the expected
    /// diff area reaches the limit), or None; changes nothing.
    fn first_deletion(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        t0: f64,
        t1: f64,
    ) -> PyResult<Option<(u64, f64)>> {
        let inner = &self.inner;
        detached(py, move || inner.first_deletion(csv, t0, t1))
    }

    /// What CSV `csv`'s window `[t0, t1)` would bring if nothing else happened, as
    /// `ModelCluster.foresee`'s dict (`deletion`, `pause` — always None —, `low_space`, at
    /// their expected instants); changes nothing.
    fn foresee<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        t0: f64,
        t1: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inner = &self.inner;
        let f = detached(py, move || inner.foresee(csv, t0, t1))?;
        foresight_dict(py, &f)
    }

    /// CSV `csv`'s expected free bytes now: its size less its files and (diff area on the
    /// volume) its diff area.
    fn free_bytes(&self, #[pyo3(from_py_with = as_usize::csv)] csv: usize) -> PyResult<f64> {
        guarded(|| self.inner.free_bytes(csv))
    }

    /// Never paused (a window that would pause VMs is refused): None, as `ModelCluster`'s
    /// answer for a VM that was not.
    fn paused_at(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<Option<f64>> {
        guarded(|| self.inner.workload(vm).map(|_| None))
    }

    /// When CSV `csv`'s expected free space first fell below its warning level, or None.
    fn low_space_at(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<Option<f64>> {
        guarded(|| self.inner.low_space_at(csv))
    }

    /// Takes a snapshot of CSV `csv` at its time; returns its id.
    fn snapshot(&mut self, #[pyo3(from_py_with = as_usize::csv)] csv: usize) -> PyResult<u64> {
        guarded(|| self.inner.snapshot(csv))
    }

    /// Deletes a snapshot of CSV `csv`; returns the expected diff-area bytes freed.
    fn delete_snapshot(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<f64> {
        let inner = &mut self.inner;
        detached(py, move || inner.delete_snapshot(csv, snapshot_id))
    }

    /// Whether snapshot `snapshot_id` of CSV `csv` is still live.
    fn is_live(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<bool> {
        guarded(|| self.inner.is_live(csv, snapshot_id))
    }

    /// Expected bytes in CSV `csv`'s diff area now.
    fn diff_area_bytes(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<f64> {
        let inner = &self.inner;
        detached(py, move || inner.diff_area_bytes(csv))
    }

    /// The most the expected diff area of CSV `csv` held.
    fn peak_diff_area_bytes(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<f64> {
        guarded(|| self.inner.peak_diff_area_bytes(csv))
    }

    /// Expected chunks copied on CSV `csv` since the start.
    fn total_chunks_copied(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<f64> {
        guarded(|| self.inner.total_chunks_copied(csv))
    }

    /// Expected bytes of CSV `csv` in use (its allocation high-water mark).
    fn used_bytes(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<f64> {
        let inner = &self.inner;
        detached(py, move || inner.csv_used_bytes(csv))
    }

    /// Pauses (False) or resumes (True) a VM's I/O.
    fn set_running(
        &mut self,
        #[pyo3(from_py_with = as_usize::vm)] vm: usize,
        running: bool,
    ) -> PyResult<()> {
        guarded(|| self.inner.set_running(vm, running))
    }

    /// Expected size of the VM's VHDX file now (what a full backup of the disk reads).
    fn file_size(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.file_size(vm)?.mean))
    }

    /// Variance of :meth:`file_size`.
    fn file_size_var(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.file_size(vm)?.var))
    }

    /// Expected payload bytes allocated in the VM's VHDX now.
    fn allocated_bytes(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.allocated_bytes(vm)?.mean))
    }

    /// Variance of :meth:`allocated_bytes`.
    fn allocated_bytes_var(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.allocated_bytes(vm)?.var))
    }

    /// Expected bytes changed on the VM's disk since its change tracking was last reset (what
    /// an incremental backup reads).
    fn changed_bytes(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.changes(vm)?.1.mean))
    }

    /// Variance of :meth:`changed_bytes`.
    fn changed_bytes_var(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.changes(vm)?.1.var))
    }

    /// Expected change-tracking blocks changed since the VM's tracking was last reset.
    fn changed_blocks(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.changes(vm)?.0.mean))
    }

    /// Variance of :meth:`changed_blocks`.
    fn changed_blocks_var(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<f64> {
        guarded(|| Ok(self.inner.changes(vm)?.0.var))
    }

    /// Not provided: an expectation has no runs. Raises `NotEstimatedError`.
    fn changed_extents(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<()> {
        let _ = vm;
        Err(not_provided(
            "changed_extents",
            "an expectation of changed blocks has no runs to read; the exact engine \
             (ModelCluster) tracks them",
        ))
    }

    /// Forgets the VM's changes (after a backup took them).
    fn reset_changes(&mut self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<()> {
        guarded(|| self.inner.reset_changes(vm))
    }

    /// Not provided (a session close rewrites headers of disks whose log was used: the exact
    /// engine follows that write by write). Raises `NotEstimatedError`.
    fn close_sessions(&mut self) -> PyResult<()> {
        Err(not_provided(
            "close_sessions",
            "closing writer sessions is modelled by the exact engine (ModelCluster) only",
        ))
    }

    /// Not provided: materialized mode writes real disks. Raises `NotEstimatedError`.
    #[pyo3(signature = (*args, **kwargs))]
    fn materialize_csv(
        &mut self,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = (args, kwargs);
        Err(not_provided(
            "materialization",
            "real disks need every write: use ModelCluster.materialize_csv",
        ))
    }

    /// Not provided: materialized mode writes real disks. Raises `NotEstimatedError`.
    #[pyo3(signature = (*args, **kwargs))]
    fn materialize_vm(
        &mut self,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = (args, kwargs);
        Err(not_provided(
            "materialization",
            "real disks need every write: use ModelCluster.materialize_vm",
        ))
    }

    #[getter]
    fn csv_count(&self) -> usize {
        self.inner.csv_count()
    }

    #[getter]
    fn vm_count(&self) -> usize {
        self.inner.vm_count()
    }

    fn __repr__(&self) -> String {
        format!(
            "EstimateCluster(csvs={}, vms={})",
            self.inner.csv_count(),
            self.inner.vm_count()
        )
    }
}
