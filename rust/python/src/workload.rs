//! `ModelCluster`: modelled CSVs and VMs whose workloads run in the engine (see
//! `vssim_engine::workload`).

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use vssim_engine::cbt;
use vssim_engine::vhdx::format::DEFAULT_BLOCK_SIZE;
use vssim_engine::volsnap::DEFAULT_CHUNK_SIZE;
use vssim_engine::workload::{
    self, DiskData, DiskKind, Foresight, PauseCause, SpaceRules, VmConfig,
};

use crate::args::{as_opt_u64, as_u64, as_usize, as_vec_usize};
use crate::arrays::Extents;
use crate::errors::{detached, guarded, InvalidArgumentError};
use crate::spec::WorkloadSpec;
use crate::volume::Volume;

/// The CSVs and VMs of a modelled cluster. Each VM's writes are generated in the engine for a
/// window of simulated time, mapped through its VHDX layout onto its CSV, and fed to the CSV's
/// copy-on-write tracker and the disk's change tracker — every CSV in parallel, GIL released.
#[pyclass(module = "vssim._engine")]
pub struct ModelCluster {
    inner: workload::ModelCluster,
    calibrated: Calibrations,
}

/// Specs calibrated so far: (spec as given, disk, tracking block) → the spec to run. The VMs of
/// a cluster share a few specs and disk geometries, and a calibration depends on nothing else.
#[derive(Default)]
pub(crate) struct Calibrations(
    Vec<(
        workload::WorkloadSpec,
        DiskData,
        u64,
        workload::WorkloadSpec,
    )>,
);

impl Calibrations {
    /// The spec a VM runs for `given` on `disk` at a tracking granularity of `unit` bytes: a
    /// daily-change target calibrated into its hot spot (GIL released), once per geometry.
    pub(crate) fn spec_for(
        &mut self,
        py: Python<'_>,
        given: workload::WorkloadSpec,
        disk: DiskData,
        unit: u64,
    ) -> PyResult<workload::WorkloadSpec> {
        if given.daily_change.is_none() {
            return Ok(given);
        }
        let key = |(s, d, b, _): &&(_, DiskData, u64, _)| *s == given && *d == disk && *b == unit;
        if let Some((.., done)) = self.0.iter().find(key) {
            return Ok(done.clone());
        }
        let done = detached(py, || WorkloadSpec::for_disk(given.clone(), disk, unit))?;
        self.0.push((given, disk, unit, done.clone()));
        Ok(done)
    }

    /// One VM's configuration from `add_vm`'s arguments (`ModelCluster` and `EstimateCluster`
    /// take the same), its daily-change target calibrated (:meth:`spec_for`): `sizes` is
    /// `[allocated, block_size, seed, cbt_block_size]`.
    pub(crate) fn vm_config(
        &mut self,
        py: Python<'_>,
        csv: usize,
        disk_size: u64,
        workload: Option<PyRef<'_, WorkloadSpec>>,
        sizes: [u64; 4],
        fixed: bool,
    ) -> PyResult<VmConfig> {
        let [allocated, block_size, seed, cbt_block_size] = sizes;
        let mut cfg = VmConfig {
            csv,
            disk_size,
            allocated,
            block_size,
            kind: if fixed {
                DiskKind::Fixed
            } else {
                DiskKind::Dynamic
            },
            spec: WorkloadSpec::given_or_default(py, workload)?,
            seed,
            cbt_block_size,
        };
        let data = cfg.data();
        cfg.spec = self.spec_for(py, cfg.spec, data, cbt_block_size)?;
        Ok(cfg)
    }
}

/// `advance_csvs`' `csvs` and `t0s` as (CSV, start) pairs, refused when their lengths differ
/// (`ModelCluster` and `EstimateCluster` take the same).
pub(crate) fn csv_starts(csvs: Vec<usize>, t0s: Vec<f64>) -> PyResult<Vec<(usize, f64)>> {
    if csvs.len() != t0s.len() {
        return Err(InvalidArgumentError::new_err(format!(
            "invalid argument `t0s`: {} times for {} CSVs",
            t0s.len(),
            csvs.len()
        )));
    }
    Ok(csvs.into_iter().zip(t0s).collect())
}

/// A window's foresight as the dict `foresee` returns (both clusters).
pub(crate) fn foresight_dict<'py>(py: Python<'py>, f: &Foresight) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("deletion", f.deletion)?;
    d.set_item("pause", f.pause)?;
    d.set_item("low_space", f.low_space)?;
    Ok(d)
}

/// A window's report as the dict `advance` returns.
fn report_dict<'py>(
    py: Python<'py>,
    report: &workload::WindowReport,
    sparse: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    // `sparse`: only the advanced CSVs' VMs (`disks`: which, in order), as the estimate sends
    // them; a window of one CSV of a large cluster would otherwise send thousands of zeros per
    // counter. Else every VM, by id.
    let col = |f: fn(&workload::VmTotals) -> u64| -> Vec<u64> {
        if sparse {
            report.disks.iter().map(|&id| f(&report.vms[id])).collect()
        } else {
            report.vms.iter().map(f).collect()
        }
    };
    if sparse {
        // int64 (numpy's index type): indexing with uint64 ids makes numpy convert them first.
        let ids: Vec<i64> = report.disks.iter().map(|&id| id as i64).collect();
        d.set_item("disks", PyArray1::from_vec(py, ids))?;
    }
    d.set_item("writes", PyArray1::from_vec(py, col(|t| t.writes)))?;
    d.set_item(
        "bytes_written",
        PyArray1::from_vec(py, col(|t| t.bytes_written)),
    )?;
    d.set_item("reads", PyArray1::from_vec(py, col(|t| t.reads)))?;
    d.set_item("bytes_read", PyArray1::from_vec(py, col(|t| t.bytes_read)))?;
    d.set_item(
        "chunks_copied",
        PyArray1::from_vec(py, col(|t| t.chunks_copied)),
    )?;
    d.set_item(
        "blocks_allocated",
        PyArray1::from_vec(py, col(|t| t.blocks_allocated)),
    )?;
    let csvs: Vec<u64> = report.deleted.iter().map(|d| d.0 as u64).collect();
    let ids: Vec<u64> = report.deleted.iter().map(|d| d.1).collect();
    let times: Vec<f64> = report.deleted.iter().map(|d| d.2).collect();
    let full: Vec<bool> = report
        .deleted
        .iter()
        .map(|d| report.volume_full.contains(&(d.0, d.1)))
        .collect();
    d.set_item("deleted_csv", PyArray1::from_vec(py, csvs))?;
    d.set_item("deleted_snapshot", PyArray1::from_vec(py, ids))?;
    d.set_item("deleted_time", PyArray1::from_vec(py, times))?;
    d.set_item("deleted_volume_full", PyArray1::from_vec(py, full))?;
    let vms: Vec<u64> = report.paused.iter().map(|p| p.vm as u64).collect();
    let times: Vec<f64> = report.paused.iter().map(|p| p.time).collect();
    let full: Vec<bool> = report
        .paused
        .iter()
        .map(|p| p.cause == PauseCause::VolumeFull)
        .collect();
    d.set_item("paused_vm", PyArray1::from_vec(py, vms))?;
    d.set_item("paused_time", PyArray1::from_vec(py, times))?;
    d.set_item("paused_volume_full", PyArray1::from_vec(py, full))?;
    let csvs: Vec<u64> = report.low_space.iter().map(|l| l.0 as u64).collect();
    let times: Vec<f64> = report.low_space.iter().map(|l| l.1).collect();
    d.set_item("low_space_csv", PyArray1::from_vec(py, csvs))?;
    d.set_item("low_space_time", PyArray1::from_vec(py, times))?;
    let csvs: Vec<u64> = report.lowest_free.iter().map(|l| l.0 as u64).collect();
    let bytes: Vec<u64> = report.lowest_free.iter().map(|l| l.1).collect();
    d.set_item("lowest_free_csv", PyArray1::from_vec(py, csvs))?;
    d.set_item("lowest_free_bytes", PyArray1::from_vec(py, bytes))?;
    let bytes: Vec<u64> = report.peak_diff.iter().map(|l| l.1).collect();
    d.set_item("peak_diff_area_bytes", PyArray1::from_vec(py, bytes))?;
    if let Some(real) = &report.real {
        let csvs: Vec<u64> = real.deleted.iter().map(|d| d.0 as u64).collect();
        let ids: Vec<u64> = real.deleted.iter().map(|d| d.1).collect();
        let times: Vec<f64> = real.deleted.iter().map(|d| d.2).collect();
        d.set_item(
            "real_chunks_copied",
            PyArray1::from_vec(py, real.chunks_copied.clone()),
        )?;
        d.set_item(
            "real_file_bytes",
            PyArray1::from_vec(py, real.file_bytes.clone()),
        )?;
        d.set_item("real_deleted_csv", PyArray1::from_vec(py, csvs))?;
        d.set_item("real_deleted_snapshot", PyArray1::from_vec(py, ids))?;
        d.set_item("real_deleted_time", PyArray1::from_vec(py, times))?;
    }
    Ok(d)
}

#[pymethods]
impl ModelCluster {
    #[new]
    fn new() -> Self {
        ModelCluster {
            inner: workload::ModelCluster::new(),
            calibrated: Calibrations::default(),
        }
    }

    /// Adds a CSV of `size` bytes with its copy-on-write tracker; returns its id (0, 1, …).
    /// Its free space is its size less its files and, with `diff_area_on_volume` (volsnap's
    /// default), less its diff area; below `warn_below` free bytes the window reports a
    /// low-space warning, below `pause_below` it pauses the CSV's VMs with dynamic disks at the
    /// write that crossed it (and a dynamic disk's write whose block no longer fits pauses its
    /// VM there): no write is ever dropped.
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

    /// Adds a VM with one VHDX disk of `disk_size` bytes on CSV `csv` (`allocated` bytes of it
    /// allocated at the start, `block_size`-byte blocks, `fixed` or dynamic), running `workload`
    /// (a `WorkloadSpec`; default: `WorkloadSpec()`) as the stream `seed`; returns its id
    /// (0, 1, …). The guest's data is the allocated extent (the whole disk when `allocated` is
    /// 0): operations land there, growth goes past it; a daily-change target is calibrated for
    /// the disk at `cbt_block_size` (:meth:`workload` gives the spec the VM runs).
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
        guarded(|| self.inner.add_vm(cfg))
    }

    /// The spec VM `vm` runs (its daily-change target calibrated into its hot spot).
    fn workload(&self, vm: usize) -> PyResult<WorkloadSpec> {
        let spec = guarded(|| self.inner.workload(vm).cloned())?;
        Ok(WorkloadSpec { inner: spec })
    }

    /// Advances every running VM through `[t0, t1)` seconds. Returns a dict of per-VM uint64
    /// arrays (index = VM id): `writes`, `bytes_written`, `reads`, `bytes_read`, `chunks_copied`,
    /// `blocks_allocated`; the snapshots a full diff area deleted: `deleted_csv`,
    /// `deleted_snapshot` (uint64), `deleted_time` (float64 seconds), `deleted_volume_full`
    /// (bool: the volume had no room, not the limit); the VMs paused for want of space, in time
    /// order: `paused_vm`, `paused_time`, `paused_volume_full` (bool: a write's block no longer
    /// fit; else the free space fell below `pause_below`); the CSVs whose free space fell below
    /// `warn_below`: `low_space_csv`, `low_space_time`; and per CSV advanced its fewest free
    /// bytes and its diff area's most in the window: `lowest_free_csv`, `lowest_free_bytes`,
    /// `peak_diff_area_bytes` (in the same order). When
    /// something is materialized, also what the real volumes did: `real_chunks_copied`,
    /// `real_file_bytes` (per VM, 0 for VMs not materialized), and the real snapshots the
    /// diff-area limit deleted: `real_deleted_csv`, `real_deleted_snapshot` (volume ids),
    /// `real_deleted_time`.
    fn advance<'py>(&mut self, py: Python<'py>, t0: f64, t1: f64) -> PyResult<Bound<'py, PyDict>> {
        let inner = &mut self.inner;
        let report = detached(py, move || inner.advance(t0, t1))?;
        report_dict(py, &report, false)
    }

    /// Advances the VMs of the CSVs `csvs`, CSV `csvs[i]` from `t0s[i]` seconds to `t1` (each CSV
    /// at most once); the others stay where they are. The result is :meth:`advance`'s dict
    /// with the per-VM counters of the advanced CSVs' VMs only, and `disks` (int64): their VM
    /// ids, in the same order.
    fn advance_csvs<'py>(
        &mut self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_vec_usize::csvs)] csvs: Vec<usize>,
        t0s: Vec<f64>,
        t1: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let from = csv_starts(csvs, t0s)?;
        let inner = &mut self.inner;
        let report = detached(py, move || inner.advance_csvs(&from, t1))?;
        report_dict(py, &report, true)
    }

    /// The bytes the VMs of CSV `csv` would read and write in `[t0, t1)`, as `(vm_ids, bytes)`
    /// (int64 and uint64 arrays, in the CSV's order), if that window is short (a few thousand
    /// operations) and could change nothing else: no low-space warning, pause or full volume
    /// within its writes' reach, no diff-area limit with a snapshot to delete. Then a window
    /// advanced later through `[t0, t1)` counts exactly these, and a caller need not advance the
    /// CSV to know them. None when it could, or is longer (advance it then: asking would cost
    /// about what the window does). Changes nothing; GIL released.
    #[allow(clippy::type_complexity)]
    fn quiet_io<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        t0: f64,
        t1: f64,
    ) -> PyResult<Option<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u64>>)>> {
        let inner = &self.inner;
        let got = detached(py, move || inner.quiet_io(csv, t0, t1))?;
        Ok(got.map(|vms| {
            let ids: Vec<i64> = vms.iter().map(|&(id, _)| id as i64).collect();
            let bytes: Vec<u64> = vms.iter().map(|&(_, b)| b).collect();
            (PyArray1::from_vec(py, ids), PyArray1::from_vec(py, bytes))
        }))
    }

    /// The first snapshot CSV `csv`'s full diff area would delete if its VMs ran from `t0` to
    /// `t1` with nothing else happening, as `(snapshot_id, time)`, or None; changes nothing.
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

    /// What CSV `csv`'s window `[t0, t1)` would bring if nothing else happened, as a dict:
    /// `deletion` (`(snapshot_id, time)` of the first snapshot a full diff area or volume
    /// deletes, or None), `pause` (when the first VM is paused for want of space, or None),
    /// `low_space` (when the free space falls below the warning level, or None); changes
    /// nothing.
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

    /// CSV `csv`'s free bytes now: its size less its files and (diff area on the volume) its
    /// diff area.
    fn free_bytes(&self, #[pyo3(from_py_with = as_usize::csv)] csv: usize) -> PyResult<u64> {
        guarded(|| self.inner.free_bytes(csv))
    }

    /// When VM `vm` was paused because its CSV ran out of space (seconds), or None.
    fn paused_at(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<Option<f64>> {
        guarded(|| self.inner.paused_at(vm))
    }

    /// When CSV `csv`'s free space first fell below its warning level (seconds), or None.
    fn low_space_at(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<Option<f64>> {
        guarded(|| self.inner.low_space_at(csv))
    }

    /// Takes a system-provider snapshot of CSV `csv` now; returns its id. A materialized CSV's
    /// volume takes its real snapshot at the same instant (`real_snapshot_id`).
    fn snapshot(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<u64> {
        let inner = &mut self.inner;
        detached(py, move || inner.snapshot(csv))
    }

    /// Deletes a snapshot of CSV `csv` (and its real twin, if still live); returns the modelled
    /// diff-area bytes freed.
    fn delete_snapshot(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<u64> {
        let inner = &mut self.inner;
        detached(py, move || inner.delete_snapshot(csv, snapshot_id))
    }

    /// Materialized mode: CSV `csv`'s materialized VMs live as real VHDX files on `volume` (the
    /// same volume object, shared). The volume's diff-area limit is set to the CSV's; the CSV
    /// must track 16 KiB chunks (the volume's), and neither may have a snapshot yet.
    fn materialize_csv(
        &mut self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        volume: &Volume,
    ) -> PyResult<()> {
        let v = volume.get()?;
        guarded(|| self.inner.materialize_csv(csv, v))
    }

    /// Makes VM `vm`'s disk a real VHDX at `path` (relative to its CSV's volume root; folders
    /// created) with the model disk's geometry and initial allocation, open in write-through
    /// mode. Before the CSV's first snapshot and the VM's first write. From then on `advance`
    /// applies the VM's guest writes to it.
    fn materialize_vm(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_usize::vm)] vm: usize,
        path: String,
    ) -> PyResult<()> {
        let inner = &mut self.inner;
        detached(py, move || inner.materialize_vm(vm, &path))
    }

    /// The volume's snapshot id for the model's snapshot `snapshot_id` of CSV `csv`.
    fn real_snapshot_id(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<u64> {
        guarded(|| self.inner.real_snapshot_id(csv, snapshot_id))
    }

    /// Bytes in the real volume's diff area now (materialized CSV).
    fn real_diff_area_bytes(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<u64> {
        guarded(|| self.inner.real_diff_area_bytes(csv))
    }

    /// The most bytes the real diff area held since the CSV was materialized (write by write).
    fn real_peak_diff_area_bytes(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<u64> {
        guarded(|| self.inner.real_peak_diff_area_bytes(csv))
    }

    /// Chunks the real volume copied since the CSV was materialized.
    fn real_total_chunks_copied(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<u64> {
        guarded(|| self.inner.real_total_chunks_copied(csv))
    }

    /// The VM's real VHDX path relative to its volume root, or None if not materialized.
    fn materialized_path(
        &self,
        #[pyo3(from_py_with = as_usize::vm)] vm: usize,
    ) -> PyResult<Option<String>> {
        guarded(|| self.inner.materialized_path(vm))
    }

    /// The VM's real totals since it was materialized: `(chunks_copied, file_bytes)` (session
    /// closes included), or None if not materialized.
    fn real_vm_totals(
        &self,
        #[pyo3(from_py_with = as_usize::vm)] vm: usize,
    ) -> PyResult<Option<(u64, u64)>> {
        guarded(|| self.inner.real_vm_totals(vm))
    }

    /// Closes every real VHDX cleanly (LogGuid zero) and flushes the volumes; advancing
    /// materialized VMs afterwards is an error.
    fn close_materialized(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = &mut self.inner;
        detached(py, move || inner.close_materialized())
    }

    /// Whether snapshot `snapshot_id` of CSV `csv` is still live.
    fn is_live(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<bool> {
        guarded(|| Ok(self.inner.cow(csv)?.is_live(snapshot_id)))
    }

    /// Bytes in CSV `csv`'s diff area now.
    fn diff_area_bytes(&self, #[pyo3(from_py_with = as_usize::csv)] csv: usize) -> PyResult<u64> {
        guarded(|| Ok(self.inner.cow(csv)?.diff_area_bytes()))
    }

    /// The most bytes CSV `csv`'s diff area ever held.
    fn peak_diff_area_bytes(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<u64> {
        guarded(|| Ok(self.inner.cow(csv)?.peak_diff_area_bytes()))
    }

    /// Chunks copied on CSV `csv` since the start.
    fn total_chunks_copied(
        &self,
        #[pyo3(from_py_with = as_usize::csv)] csv: usize,
    ) -> PyResult<u64> {
        guarded(|| Ok(self.inner.cow(csv)?.total_chunks_copied()))
    }

    /// Bytes of CSV `csv` in use (its allocation high-water mark).
    fn used_bytes(&self, #[pyo3(from_py_with = as_usize::csv)] csv: usize) -> PyResult<u64> {
        guarded(|| self.inner.csv_used_bytes(csv))
    }

    /// Pauses (False) or resumes (True) a VM's I/O (saved state, node down).
    fn set_running(
        &mut self,
        #[pyo3(from_py_with = as_usize::vm)] vm: usize,
        running: bool,
    ) -> PyResult<()> {
        guarded(|| self.inner.set_running(vm, running))
    }

    /// Ends every disk's writer session: closing rewrites the VHDX headers if the log was used
    /// (copy-on-write counts them), the next write starts a new session. Materialized disks are
    /// really closed and reopened.
    fn close_sessions(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = &mut self.inner;
        detached(py, move || inner.close_sessions())
    }

    /// The VHDX file's size now: what a file-level full backup of the disk reads.
    fn file_size(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<u64> {
        guarded(|| self.inner.file_size(vm))
    }

    /// Payload bytes allocated in the VM's VHDX now.
    fn allocated_bytes(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<u64> {
        guarded(|| self.inner.allocated_bytes(vm))
    }

    /// Bytes changed on the VM's disk since its change tracking was last reset.
    fn changed_bytes(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<u64> {
        guarded(|| Ok(self.inner.change_tracker(vm)?.changed_bytes()))
    }

    /// Change-tracking blocks of the VM's disk changed since its tracking was last reset.
    fn changed_blocks(&self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<u64> {
        guarded(|| Ok(self.inner.change_tracker(vm)?.changed_blocks()))
    }

    /// Changed runs of the VM's disk: `(offsets, lengths)` uint64 arrays.
    fn changed_extents<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_usize::vm)] vm: usize,
    ) -> PyResult<Extents<'py>> {
        let runs = guarded(|| Ok(self.inner.change_tracker(vm)?.changed_extents()))?;
        let (o, l): (Vec<u64>, Vec<u64>) = runs.into_iter().unzip();
        Ok((PyArray1::from_vec(py, o), PyArray1::from_vec(py, l)))
    }

    /// Forgets the VM's changes (after a backup took them).
    fn reset_changes(&mut self, #[pyo3(from_py_with = as_usize::vm)] vm: usize) -> PyResult<()> {
        guarded(|| self.inner.reset_changes(vm))
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
            "ModelCluster(csvs={}, vms={})",
            self.inner.csv_count(),
            self.inner.vm_count()
        )
    }
}
