//! `ChangeTracker`: changed-block tracking of one virtual disk (see `vssim_engine::cbt`).

use std::path::PathBuf;

use numpy::PyArray1;
use pyo3::prelude::*;
use vssim_engine::cbt;

use vssim_engine::error::check_extents;

use crate::args::as_u64;
use crate::arrays::{for_each_slice, u32_ints, u64_ints, Extents};
use crate::errors::{detached, guarded};

/// Changed-block tracking of one virtual disk: the blocks written since the last backup.
#[pyclass(module = "vssim._engine")]
pub struct ChangeTracker {
    inner: cbt::ChangeTracker,
}

#[pymethods]
impl ChangeTracker {
    /// A tracker for the disk `disk_id` of `disk_size` bytes, in blocks of `block_size` bytes
    /// (a power of two, 512 B – 256 MiB; default 64 KiB).
    #[new]
    #[pyo3(signature = (disk_id, disk_size, block_size = cbt::DEFAULT_BLOCK_SIZE))]
    fn new(
        disk_id: &str,
        #[pyo3(from_py_with = as_u64::disk_size)] disk_size: u64,
        #[pyo3(from_py_with = as_u64::block_size)] block_size: u64,
    ) -> PyResult<Self> {
        let inner = guarded(|| cbt::ChangeTracker::new(disk_id, disk_size, block_size))?;
        Ok(ChangeTracker { inner })
    }

    /// Marks the blocks a batch of writes touches (`offsets` uint64, `lengths` uint32, in bytes);
    /// returns how many blocks became changed. The batch is checked whole first.
    fn mark(
        &mut self,
        py: Python<'_>,
        offsets: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let offsets = u64_ints(offsets, "offsets")?;
        let lengths = u32_ints(lengths, "lengths")?;
        let (offsets, lengths) = (offsets.as_slice(), lengths.as_slice());
        guarded(|| check_extents(offsets, lengths, self.inner.disk_size()))?;
        let mut fresh = 0;
        for_each_slice(offsets, lengths, |_, ob, lb| {
            let inner = &mut self.inner;
            fresh += detached(py, move || inner.mark(ob, lb))?;
            Ok(())
        })?;
        Ok(fresh)
    }

    /// Changed data as merged runs: `(offsets, lengths)`, two uint64 arrays in bytes, ascending.
    fn changed_extents<'py>(&self, py: Python<'py>) -> PyResult<Extents<'py>> {
        let inner = &self.inner;
        let runs = detached(py, move || Ok(inner.changed_extents()))?;
        let (offs, lens): (Vec<u64>, Vec<u64>) = runs.into_iter().unzip();
        Ok((PyArray1::from_vec(py, offs), PyArray1::from_vec(py, lens)))
    }

    /// Forgets every change (after a backup took them).
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// Saves the tracker to its own file (atomically, with a CRC-32C checksum).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let inner = &self.inner;
        detached(py, move || inner.save(&path))
    }

    /// Loads a tracker saved by `save`. With `disk_id`, a file of another disk is refused.
    /// A file that fails its checksum is refused whole (`TrackerFileError`).
    #[staticmethod]
    #[pyo3(signature = (path, disk_id = None))]
    fn load(py: Python<'_>, path: PathBuf, disk_id: Option<String>) -> PyResult<Self> {
        let inner = detached(py, move || {
            cbt::ChangeTracker::load(&path, disk_id.as_deref())
        })?;
        Ok(ChangeTracker { inner })
    }

    #[getter]
    fn disk_id(&self) -> &str {
        self.inner.disk_id()
    }

    #[getter]
    fn disk_size(&self) -> u64 {
        self.inner.disk_size()
    }

    #[getter]
    fn block_size(&self) -> u64 {
        self.inner.block_size()
    }

    /// Number of changed blocks.
    #[getter]
    fn changed_blocks(&self) -> u64 {
        self.inner.changed_blocks()
    }

    /// Bytes an incremental backup reads (the last block cut at the disk's end).
    #[getter]
    fn changed_bytes(&self) -> u64 {
        self.inner.changed_bytes()
    }

    /// Memory the tracker holds, in bytes.
    #[getter]
    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    fn __repr__(&self) -> String {
        format!(
            "ChangeTracker(disk_id={:?}, disk_size={}, block_size={}, changed_blocks={})",
            self.inner.disk_id(),
            self.inner.disk_size(),
            self.inner.block_size(),
            self.inner.changed_blocks()
        )
    }
}
