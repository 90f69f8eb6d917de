//! `ChangeTracker`: changed-block tracking of one virtual disk (see `vssim_engine::cbt`).

use std::path::PathBuf;

use numpy::PyArray1;
use pyo3::prelude::*;
use vssim_engine::cbt;
use vssim_engine::chunkset::{with_scratch, ChunkSet};

use vssim_engine::error::check_extents;

use crate::args::as_u64;
use crate::arrays::{for_each_slice, u32_ints, u64_ints, Extents};
use crate::errors::{detached, guarded};
use crate::shared::Shared;

/// Changed-block tracking of one virtual disk: the blocks written since the last backup.
///
/// Safe to share between threads: calls on one tracker take turns (a thread waits, GIL released,
/// while another's call runs).
#[pyclass(module = "vssim._engine", frozen)]
pub struct ChangeTracker {
    inner: Shared<cbt::ChangeTracker>,
}

/// Writes per dealt piece of a batch (8 bytes of records a write are held at once).
const DEALT_PIECE: usize = 1 << 24;

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
        Ok(ChangeTracker {
            inner: Shared::new(inner),
        })
    }

    /// Marks the blocks a batch of writes touches (`offsets` uint64, `lengths` uint32, in bytes);
    /// returns how many blocks became changed. The batch is checked whole first: a bad entry
    /// changes nothing. The GIL is released while the batch is applied.
    fn mark(
        &self,
        py: Python<'_>,
        offsets: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let offsets = u64_ints(offsets, "offsets")?;
        let lengths = u32_ints(lengths, "lengths")?;
        let (offsets, lengths) = (offsets.as_slice(), lengths.as_slice());
        let mut t = self.inner.lease(py);
        let t = &mut *t;
        if offsets.len() < ChunkSet::PARALLEL_MIN {
            guarded(|| check_extents(offsets, lengths, t.disk_size()))?;
            let mut fresh = 0;
            for_each_slice(offsets, lengths, |_, ob, lb| {
                let inner = &mut *t;
                fresh += detached(py, move || inner.mark(ob, lb))?;
                Ok(())
            })?;
            return Ok(fresh);
        }
        // A batch in several pieces is checked whole first; one piece is checked as it is read:
        // dealt to the shards straight from numpy's buffers, holding the GIL so no Python code can
        // change them meanwhile (on the pool's threads), then applied with the GIL released.
        if offsets.len() > DEALT_PIECE {
            guarded(|| check_extents(offsets, lengths, t.disk_size()))?;
        }
        with_scratch(|dealt| {
            let mut fresh = 0;
            for (ob, lb) in offsets.chunks(DEALT_PIECE).zip(lengths.chunks(DEALT_PIECE)) {
                guarded(|| t.deal_marks(ob, lb, dealt))?;
                let (tr, d) = (&mut *t, &*dealt);
                fresh += detached(py, move || Ok(tr.apply_dealt(d)))?;
            }
            Ok(fresh)
        })
    }

    /// Changed data as merged runs: `(offsets, lengths)`, two uint64 arrays in bytes, ascending.
    fn changed_extents<'py>(&self, py: Python<'py>) -> PyResult<Extents<'py>> {
        let t = self.inner.lease(py);
        let inner = &*t;
        let runs = detached(py, move || Ok(inner.changed_extents()))?;
        let (offs, lens): (Vec<u64>, Vec<u64>) = runs.into_iter().unzip();
        Ok((PyArray1::from_vec(py, offs), PyArray1::from_vec(py, lens)))
    }

    /// Forgets every change (after a backup took them).
    fn reset(&self, py: Python<'_>) {
        self.inner.lease(py).reset();
    }

    /// Saves the tracker to its own file (atomically, with a CRC-32C checksum).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let t = self.inner.lease(py);
        let inner = &*t;
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
        Ok(ChangeTracker {
            inner: Shared::new(inner),
        })
    }

    #[getter]
    fn disk_id(&self, py: Python<'_>) -> String {
        self.inner.lease(py).disk_id().to_owned()
    }

    #[getter]
    fn disk_size(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).disk_size()
    }

    #[getter]
    fn block_size(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).block_size()
    }

    /// Number of changed blocks.
    #[getter]
    fn changed_blocks(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).changed_blocks()
    }

    /// Bytes an incremental backup reads (the last block cut at the disk's end).
    #[getter]
    fn changed_bytes(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).changed_bytes()
    }

    /// Memory the tracker holds, in bytes.
    #[getter]
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        self.inner.lease(py).memory_bytes()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let t = self.inner.lease(py);
        format!(
            "ChangeTracker(disk_id={:?}, disk_size={}, block_size={}, changed_blocks={})",
            t.disk_id(),
            t.disk_size(),
            t.block_size(),
            t.changed_blocks()
        )
    }
}
