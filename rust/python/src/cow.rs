//! `CowTracker`: copy-on-write snapshot tracking of one volume (see `vssim_engine::cow`).

use numpy::PyArray1;
use pyo3::prelude::*;
use vssim_engine::chunkset::{with_scratch, ChunkSet};
use vssim_engine::cow::{self, WriteOutcome};

use vssim_engine::error::check_extents;

use crate::args::{as_opt_u64, as_u64};
use crate::arrays::{for_each_slice, u32_ints, u64_ints};
use crate::errors::{detached, guarded};
use crate::shared::Shared;

/// Copy-on-write snapshot tracking of one volume, as the system provider (volsnap) does it.
///
/// The first write to a chunk after a snapshot copies the chunk once to the diff area; later writes
/// copy nothing; one copy serves every older snapshot that had not preserved the chunk. With a
/// diff-area limit, a copy that does not fit deletes the oldest snapshots first (reported).
///
/// Safe to share between threads: calls on one tracker take turns (a thread waits, GIL released,
/// while another's call runs).
#[pyclass(module = "vssim._engine", frozen)]
pub struct CowTracker {
    inner: Shared<cow::CowTracker>,
}

/// Writes per dealt piece of a batch: the records of a piece (8 bytes a write) are held at once.
const DEALT_PIECE: usize = 1 << 24;

/// What one batch of writes cost.
#[pyclass(module = "vssim._engine", frozen, get_all)]
pub struct WriteResult {
    /// Chunks copied to the diff area by the batch.
    pub chunks_copied: u64,
    /// Bytes copied to the diff area by the batch.
    pub bytes_copied: u64,
    /// Snapshots deleted because the diff area was full, oldest first.
    pub deleted_snapshots: Vec<u64>,
    /// Chunks each write copied (uint32 array), when asked for with `per_write=True`.
    pub per_write: Option<Py<PyArray1<u32>>>,
}

#[pymethods]
impl WriteResult {
    fn __repr__(&self) -> String {
        format!(
            "WriteResult(chunks_copied={}, bytes_copied={}, deleted_snapshots={:?})",
            self.chunks_copied, self.bytes_copied, self.deleted_snapshots
        )
    }
}

/// One live snapshot and its diff-area cost.
#[pyclass(module = "vssim._engine", frozen, get_all)]
pub struct SnapshotInfo {
    /// Snapshot id, counting from 1 in creation order.
    pub id: u64,
    /// The volume's allocated extent when the snapshot was taken (rounded up to a chunk).
    pub allocated_bytes: u64,
    /// Chunks held in this snapshot's diff area now.
    pub diff_area_chunks: u64,
    /// Chunks copied while this snapshot was the newest one.
    pub chunks_copied: u64,
}

#[pymethods]
impl SnapshotInfo {
    fn __repr__(&self) -> String {
        format!(
            "SnapshotInfo(id={}, allocated_bytes={}, diff_area_chunks={}, chunks_copied={})",
            self.id, self.allocated_bytes, self.diff_area_chunks, self.chunks_copied
        )
    }
}

#[pymethods]
impl CowTracker {
    /// A tracker for a volume of `volume_size` bytes, copy unit `chunk_size` bytes (a power of two,
    /// 4 KiB – 1 MiB; volsnap uses 16 KiB), and an optional diff-area limit in bytes.
    #[new]
    #[pyo3(signature = (volume_size, chunk_size = cow::DEFAULT_CHUNK_SIZE, diff_area_limit = None))]
    fn new(
        #[pyo3(from_py_with = as_u64::volume_size)] volume_size: u64,
        #[pyo3(from_py_with = as_u64::chunk_size)] chunk_size: u64,
        #[pyo3(from_py_with = as_opt_u64::diff_area_limit)] diff_area_limit: Option<u64>,
    ) -> PyResult<Self> {
        let inner = guarded(|| cow::CowTracker::new(volume_size, chunk_size, diff_area_limit))?;
        Ok(CowTracker {
            inner: Shared::new(inner),
        })
    }

    /// Takes a snapshot now and returns its id. Chunks at or past `allocated_bytes` (default: the
    /// whole volume) were free space and are never copied for it.
    #[pyo3(signature = (allocated_bytes = None))]
    fn create_snapshot(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_opt_u64::allocated_bytes)] allocated_bytes: Option<u64>,
    ) -> PyResult<u64> {
        let mut t = self.inner.lease(py);
        let alloc = allocated_bytes.unwrap_or(t.volume_size());
        guarded(|| t.create_snapshot(alloc))
    }

    /// Deletes a live snapshot; returns the diff-area bytes freed.
    fn delete_snapshot(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<u64> {
        let mut t = self.inner.lease(py);
        guarded(|| t.delete_snapshot(snapshot_id))
    }

    /// Applies a batch of writes in order: `offsets` (bytes, uint64) and `lengths` (bytes, uint32),
    /// numpy arrays or anything `numpy.asarray` takes. The batch is checked whole first: a bad entry
    /// changes nothing. The GIL is released while the batch is applied.
    #[pyo3(signature = (offsets, lengths, per_write = false))]
    fn apply_writes(
        &self,
        py: Python<'_>,
        offsets: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
        per_write: bool,
    ) -> PyResult<WriteResult> {
        let offsets = u64_ints(offsets, "offsets")?;
        let lengths = u32_ints(lengths, "lengths")?;
        let (offsets, lengths) = (offsets.as_slice(), lengths.as_slice());
        let mut t = self.inner.lease(py);
        let t = &mut *t;
        // A batch in several pieces is checked whole first, so a bad entry anywhere changes
        // nothing; a batch of one piece is checked as it is read.
        if offsets.len() > DEALT_PIECE || per_write {
            guarded(|| check_extents(offsets, lengths, t.volume_size()))?;
        }
        let mut counts = per_write.then(|| vec![0u32; offsets.len()]);
        let mut outcome = WriteOutcome::default();
        with_scratch(|dealt| -> PyResult<()> {
            for (k, (ob, lb)) in offsets
                .chunks(DEALT_PIECE)
                .zip(lengths.chunks(DEALT_PIECE))
                .enumerate()
            {
                // Independent writes (no diff-area limit in reach, no shrunk volume) are checked
                // and dealt to the shards straight from numpy's buffers, holding the GIL so no
                // Python code can change them meanwhile (on the pool's threads: this one only
                // waits), then applied with the GIL released.
                if !per_write
                    && ob.len() >= ChunkSet::PARALLEL_MIN
                    && guarded(|| t.deal_writes(ob, lb, dealt))?
                {
                    let (tr, d) = (&mut *t, &*dealt);
                    outcome.add(detached(py, move || Ok(tr.apply_dealt(d)))?);
                    continue;
                }
                // In order: streamed to the engine in slices copied out of the (borrowed)
                // arrays, GIL released.
                guarded(|| check_extents(ob, lb, t.volume_size()))?;
                let base = k * DEALT_PIECE;
                for_each_slice(ob, lb, |start, os, ls| {
                    let inner = &mut *t;
                    let at = base + start;
                    let out = counts.as_mut().map(|c| &mut c[at..at + os.len()]);
                    outcome.add(detached(py, move || inner.apply_writes(os, ls, out))?);
                    Ok(())
                })?;
            }
            Ok(())
        })?;
        Ok(WriteResult {
            chunks_copied: outcome.chunks_copied,
            bytes_copied: outcome.bytes_copied,
            deleted_snapshots: outcome.deleted_snapshots,
            per_write: counts.map(|c| PyArray1::from_vec(py, c).unbind()),
        })
    }

    /// Live snapshots, oldest first.
    fn snapshots(&self, py: Python<'_>) -> Vec<SnapshotInfo> {
        self.inner
            .lease(py)
            .snapshots()
            .into_iter()
            .map(|s| SnapshotInfo {
                id: s.id,
                allocated_bytes: s.allocated_bytes,
                diff_area_chunks: s.diff_area_chunks,
                chunks_copied: s.chunks_copied,
            })
            .collect()
    }

    /// Whether `snapshot_id` is still live (not deleted, not lost to a full diff area).
    fn is_live(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> bool {
        self.inner.lease(py).is_live(snapshot_id)
    }

    #[getter]
    fn volume_size(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).volume_size()
    }

    #[getter]
    fn chunk_size(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).chunk_size()
    }

    /// Diff-area limit in bytes, or None for unbounded. Setting it takes effect at the next copy.
    #[getter]
    fn get_diff_area_limit(&self, py: Python<'_>) -> Option<u64> {
        self.inner.lease(py).diff_area_limit()
    }

    #[setter]
    fn set_diff_area_limit(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_opt_u64::diff_area_limit)] limit: Option<u64>,
    ) {
        self.inner.lease(py).set_diff_area_limit(limit);
    }

    /// Bytes held in the diff area now.
    #[getter]
    fn diff_area_bytes(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).diff_area_bytes()
    }

    /// The most bytes the diff area ever held.
    #[getter]
    fn peak_diff_area_bytes(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).peak_diff_area_bytes()
    }

    /// Chunks copied since the tracker was made.
    #[getter]
    fn total_chunks_copied(&self, py: Python<'_>) -> u64 {
        self.inner.lease(py).total_chunks_copied()
    }

    /// Memory the tracker holds, in bytes.
    #[getter]
    fn memory_bytes(&self, py: Python<'_>) -> usize {
        self.inner.lease(py).memory_bytes()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let t = self.inner.lease(py);
        format!(
            "CowTracker(volume_size={}, chunk_size={}, snapshots={}, diff_area_bytes={})",
            t.volume_size(),
            t.chunk_size(),
            t.snapshot_count(),
            t.diff_area_bytes()
        )
    }
}
