//! `Volume`, `Snapshot`, `VolumeFile`, `SnapshotView`: real copy-on-write snapshots of a folder
//! (see `vssim_engine::volume`). The handles are internally locked, so every method takes `&self`
//! and slow ones release the GIL.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use vssim_engine::storage::Storage;
use vssim_engine::volume as vol;
use vssim_engine::Error;

use crate::args::{as_opt_u64, as_u64, as_usize};
use crate::arrays::{u32_vec, u64_vec};
use crate::errors::{detached, guarded};

fn closed_error() -> PyErr {
    crate::errors::to_py(Error::State("the volume was closed".to_owned()))
}

/// [`detached`] for the volume's calls, which fail with their own `VolumeError`.
fn vol_detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> vol::Result<T> + Send) -> PyResult<T> {
    detached(py, move || f().map_err(Error::from))
}

/// [`guarded`] for the volume's calls.
fn vol_guarded<T>(f: impl FnOnce() -> vol::Result<T>) -> PyResult<T> {
    guarded(|| f().map_err(Error::from))
}

/// A folder whose files are written through copy-on-write snapshots, as the system provider
/// (volsnap) does for a Cluster Shared Volume. `diff_area_dir` holds the diff area and its
/// journal (created if missing); reopening finds earlier snapshots. The root and the diff area
/// are locked while the volume is open (`VolumeBusyError` for a second opener). `durable=True`
/// fsyncs every copy before its live write (power-loss safe, slow); the default orders writes so
/// a killed process never leaves a wrong snapshot, and marks snapshots invalid after an OS crash.
/// `diff_area_reserve_bytes`: once the diff file has grown that far it is not cut back below it
/// when snapshots are deleted (volsnap keeps its diff area allocated), so later copies overwrite
/// allocated space. `checksum_copies` (default True) records a CRC-32C of every copied chunk,
/// checked whenever a view reads it (a damaged chunk raises `SnapshotInvalidError` and the
/// snapshot stays invalid); False copies inside the kernel (`copy_file_range`), unchecked. A
/// missing or empty journal beside an existing diff file is refused (`VolumeJournalError`,
/// nothing changed) unless `discard_snapshots=True`.
#[pyclass(module = "vssim._engine", frozen)]
pub struct Volume {
    inner: std::sync::Mutex<Option<vol::Volume>>,
}

impl Volume {
    /// The engine volume this object holds (shared: a clone of the same handle).
    pub(crate) fn get(&self) -> PyResult<vol::Volume> {
        self.inner
            .lock()
            .map_err(|_| closed_error())?
            .clone()
            .ok_or_else(closed_error)
    }
}

/// One snapshot of a volume, for listings.
#[pyclass(module = "vssim._engine", frozen, get_all)]
pub struct VolumeSnapshotInfo {
    pub id: u64,
    /// `"live"`, `"deleted"` or `"invalid"`.
    pub state: String,
    /// Why it was deleted or is invalid (None when live).
    pub reason: Option<String>,
    /// Seconds since the Unix epoch (live snapshots; 0 otherwise).
    pub created_unix: u64,
    /// Files the snapshot holds (live snapshots).
    pub files: u64,
    /// Diff-area chunks it refers to (copies shared with other snapshots count for each).
    pub diff_area_chunks: u64,
    /// Chunks copied while it was the newest snapshot.
    pub chunks_copied: u64,
}

#[pymethods]
impl VolumeSnapshotInfo {
    fn __repr__(&self) -> String {
        format!(
            "VolumeSnapshotInfo(id={}, state={:?}, files={}, diff_area_chunks={})",
            self.id, self.state, self.files, self.diff_area_chunks
        )
    }
}

fn info(s: vol::SnapshotStatus) -> VolumeSnapshotInfo {
    let (state, reason) = match s.state {
        vol::SnapshotState::Live => ("live", None),
        vol::SnapshotState::Deleted(vol::DeleteReason::User) => {
            ("deleted", Some("deleted by request".to_owned()))
        }
        vol::SnapshotState::Deleted(vol::DeleteReason::DiffAreaFull) => (
            "deleted",
            Some("diff area full: oldest snapshot deleted (VolSnap event 24)".to_owned()),
        ),
        vol::SnapshotState::Invalid(m) => ("invalid", Some(m)),
    };
    VolumeSnapshotInfo {
        id: s.id,
        state: state.to_owned(),
        reason,
        created_unix: s.created_unix,
        files: s.files,
        diff_area_chunks: s.diff_area_chunks,
        chunks_copied: s.chunks_copied,
    }
}

#[pymethods]
impl Volume {
    #[new]
    #[pyo3(signature = (
        root,
        diff_area_dir,
        diff_area_max_bytes = None,
        durable = false,
        diff_area_reserve_bytes = 0,
        checksum_copies = true,
        discard_snapshots = false
    ))]
    #[expect(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        root: PathBuf,
        diff_area_dir: PathBuf,
        #[pyo3(from_py_with = as_opt_u64::diff_area_max_bytes)] diff_area_max_bytes: Option<u64>,
        durable: bool,
        #[pyo3(from_py_with = as_u64::diff_area_reserve_bytes)] diff_area_reserve_bytes: u64,
        checksum_copies: bool,
        discard_snapshots: bool,
    ) -> PyResult<Self> {
        let options = vol::VolumeOptions {
            diff_area_max_bytes,
            durable,
            diff_area_reserve_bytes,
            checksum_copies,
            discard_snapshots,
            boot_id: None,
        };
        let v = vol_detached(py, move || {
            vol::Volume::open(&root, &diff_area_dir, options)
        })?;
        Ok(Volume {
            inner: std::sync::Mutex::new(Some(v)),
        })
    }

    /// Takes a snapshot now (the files under the root and their lengths); returns its id.
    fn create_snapshot(&self, py: Python<'_>) -> PyResult<u64> {
        let v = self.get()?;
        vol_detached(py, move || v.create_snapshot())
    }

    /// Deletes a snapshot; returns the diff-area bytes freed.
    fn delete_snapshot(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<u64> {
        let v = self.get()?;
        vol_detached(py, move || v.delete_snapshot(snapshot_id))
    }

    /// Every snapshot the volume knows (live, deleted, invalid), by id.
    fn snapshots(&self) -> PyResult<Vec<VolumeSnapshotInfo>> {
        let v = self.get()?;
        Ok(vol_guarded(|| v.snapshots())?
            .into_iter()
            .map(info)
            .collect())
    }

    /// Ids of the live snapshots, oldest first.
    fn live_snapshots(&self) -> PyResult<Vec<u64>> {
        let v = self.get()?;
        vol_guarded(|| v.live_snapshots())
    }

    /// The snapshot `snapshot_id` (it must be live).
    fn snapshot(
        &self,
        #[pyo3(from_py_with = as_u64::snapshot_id)] snapshot_id: u64,
    ) -> PyResult<Snapshot> {
        let v = self.get()?;
        vol_guarded(|| v.snapshot_files(snapshot_id).map(|_| ()))?;
        Ok(Snapshot {
            volume: v,
            id: snapshot_id,
        })
    }

    /// Opens a file on the volume for reading and writing (`create` makes it and its folders).
    /// Paths are relative to the root (or absolute under it); `..` and symlinks out are refused.
    #[pyo3(signature = (path, create = false))]
    fn open(&self, py: Python<'_>, path: PathBuf, create: bool) -> PyResult<VolumeFile> {
        let v = self.get()?;
        let inner = vol_detached(py, move || v.open_file(&path, create))?;
        Ok(VolumeFile { inner })
    }

    /// Removes a file; live snapshots keep it whole (its chunks are copied first).
    fn remove(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let v = self.get()?;
        vol_detached(py, move || v.remove_file(&path))
    }

    /// Makes every completed write durable (diff area, then index).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let v = self.get()?;
        vol_detached(py, move || v.flush())
    }

    /// Closes the volume cleanly (the journal says so, the lock is released); files and views
    /// opened from it fail from then on. Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.inner.lock().map_err(|_| closed_error())?.take();
        match taken {
            Some(v) => vol_detached(py, move || v.close()),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    #[getter]
    fn root(&self) -> PyResult<PathBuf> {
        Ok(self.get()?.root().to_owned())
    }

    #[getter]
    fn diff_area_dir(&self) -> PyResult<PathBuf> {
        Ok(self.get()?.diff_area_dir().to_owned())
    }

    /// Diff-area limit in bytes, or None for unbounded; setting it takes effect at the next copy.
    #[getter]
    fn get_diff_area_max_bytes(&self) -> PyResult<Option<u64>> {
        let v = self.get()?;
        vol_guarded(|| v.diff_area_max_bytes())
    }

    #[setter]
    fn set_diff_area_max_bytes(
        &self,
        #[pyo3(from_py_with = as_opt_u64::diff_area_max_bytes)] limit: Option<u64>,
    ) -> PyResult<()> {
        let v = self.get()?;
        vol_guarded(|| v.set_diff_area_max_bytes(limit))
    }

    #[getter]
    fn durable(&self) -> PyResult<bool> {
        let v = self.get()?;
        vol_guarded(|| v.is_durable())
    }

    /// Bytes of diff area in use (16 KiB per chunk held).
    #[getter]
    fn diff_area_bytes(&self) -> PyResult<u64> {
        let v = self.get()?;
        Ok(vol_guarded(|| v.stats())?.diff_area_bytes)
    }

    /// Length of the diff-area file on disk.
    #[getter]
    fn diff_file_bytes(&self) -> PyResult<u64> {
        let v = self.get()?;
        Ok(vol_guarded(|| v.stats())?.diff_file_bytes)
    }

    #[getter]
    fn journal_bytes(&self) -> PyResult<u64> {
        let v = self.get()?;
        Ok(vol_guarded(|| v.stats())?.journal_bytes)
    }

    /// Chunks copied to the diff area since the volume's journal began.
    #[getter]
    fn total_chunks_copied(&self) -> PyResult<u64> {
        let v = self.get()?;
        Ok(vol_guarded(|| v.stats())?.total_chunks_copied)
    }

    /// Snapshots this session deleted because the diff area was full, in order.
    #[getter]
    fn auto_deleted(&self) -> PyResult<Vec<u64>> {
        let v = self.get()?;
        Ok(vol_guarded(|| v.stats())?.auto_deleted)
    }

    /// What opening the volume found: an unclean previous session, snapshots marked invalid.
    #[getter]
    fn recovery_notes(&self) -> PyResult<Vec<String>> {
        let v = self.get()?;
        vol_guarded(|| v.recovery_notes())
    }

    fn __repr__(&self) -> String {
        match self.get() {
            Ok(v) => format!("Volume(root={:?})", v.root()),
            Err(_) => "Volume(<closed>)".to_owned(),
        }
    }
}

/// One live snapshot of a volume.
#[pyclass(module = "vssim._engine", frozen)]
pub struct Snapshot {
    volume: vol::Volume,
    #[pyo3(get)]
    id: u64,
}

#[pymethods]
impl Snapshot {
    /// The file at `path` as it was at the snapshot instant. `writable=True` for auto-recovery:
    /// writes land in the diff area, never in the live file.
    #[pyo3(signature = (path, writable = false))]
    fn open(&self, py: Python<'_>, path: PathBuf, writable: bool) -> PyResult<SnapshotView> {
        let v = self.volume.clone();
        let id = self.id;
        let inner = vol_detached(py, move || v.open_view(id, &path, writable))?;
        Ok(SnapshotView { inner })
    }

    /// The snapshot's files and their lengths, by path.
    fn files(&self) -> PyResult<Vec<(String, u64)>> {
        vol_guarded(|| self.volume.snapshot_files(self.id))
    }

    /// Writes every file of the snapshot under `dest` (a new folder off the volume); returns the
    /// bytes exported.
    fn export(&self, py: Python<'_>, dest: PathBuf) -> PyResult<u64> {
        let v = self.volume.clone();
        let id = self.id;
        vol_detached(py, move || v.export_snapshot(id, &dest))
    }

    /// Deletes the snapshot; returns the diff-area bytes freed.
    fn delete(&self, py: Python<'_>) -> PyResult<u64> {
        let v = self.volume.clone();
        let id = self.id;
        vol_detached(py, move || v.delete_snapshot(id))
    }

    fn __repr__(&self) -> String {
        format!("Snapshot(id={})", self.id)
    }
}

fn read_bytes<'py>(
    py: Python<'py>,
    length: usize,
    f: impl FnOnce(&mut [u8]) -> vol::Result<()> + Send,
) -> PyResult<Bound<'py, PyBytes>> {
    let buf = vol_detached(py, move || {
        let mut buf = vec![0u8; length];
        f(&mut buf)?;
        Ok(buf)
    })?;
    Ok(PyBytes::new(py, &buf))
}

/// A file on a volume: reads are plain reads, writes and truncation go through copy-on-write.
#[pyclass(module = "vssim._engine", frozen)]
pub struct VolumeFile {
    inner: vol::VolumeFile,
}

impl VolumeFile {
    /// A `Storage` over the same file (for the VHDX layer).
    pub fn as_storage(&self) -> PyResult<Box<dyn Storage>> {
        Ok(Box::new(vol_guarded(|| self.inner.try_clone())?))
    }
}

#[pymethods]
impl VolumeFile {
    /// Reads exactly `length` bytes at `offset` (past the end is an error).
    fn read<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_u64::offset)] offset: u64,
        #[pyo3(from_py_with = as_usize::length)] length: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let f = &self.inner;
        read_bytes(py, length, move |b| f.read(b, offset))
    }

    /// Writes `data` at `offset`, growing the file if needed; old chunks live snapshots need are
    /// copied to the diff area first.
    fn write(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::offset)] offset: u64,
        data: &[u8],
    ) -> PyResult<()> {
        let data = data.to_vec();
        let f = &self.inner;
        vol_detached(py, move || f.write(&data, offset))
    }

    /// A batch of writes of deterministic pseudo-random bytes (`offsets` uint64, `lengths`
    /// uint32, content from `seed`); returns the bytes written. The GIL is released.
    #[pyo3(signature = (offsets, lengths, seed = 0))]
    fn write_pattern(
        &self,
        py: Python<'_>,
        offsets: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = as_u64::seed)] seed: u64,
    ) -> PyResult<u64> {
        let offsets = u64_vec(offsets, "offsets")?;
        let lengths = u32_vec(lengths, "lengths")?;
        let f = &self.inner;
        vol_detached(py, move || f.write_pattern(&offsets, &lengths, seed))
    }

    /// Current length in bytes.
    fn len(&self) -> PyResult<u64> {
        vol_guarded(|| self.inner.len())
    }

    /// Truncates (snapshots keep the cut part) or extends with zeros.
    fn set_len(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::length)] length: u64,
    ) -> PyResult<()> {
        let f = &self.inner;
        vol_detached(py, move || f.set_len(length))
    }

    /// Makes the completed writes durable (the copies made for them first).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let f = &self.inner;
        vol_detached(py, move || f.sync())
    }

    /// The path relative to the volume root.
    #[getter]
    fn key(&self) -> String {
        self.inner.key().to_owned()
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_owned()
    }

    #[getter]
    fn read_only(&self) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        format!("VolumeFile({:?})", self.inner.key())
    }
}

/// A file as a snapshot shows it. Read-only, or writable (auto-recovery); a read after the
/// snapshot was deleted or found invalid raises `SnapshotDeletedError` / `SnapshotInvalidError`.
#[pyclass(module = "vssim._engine", frozen)]
pub struct SnapshotView {
    inner: vol::SnapshotView,
}

impl SnapshotView {
    /// A `Storage` over the same view (for the VHDX layer: `Vhdx.open(view)`).
    pub fn as_storage(&self) -> PyResult<Box<dyn Storage>> {
        Ok(Box::new(vol_guarded(|| self.inner.try_clone())?))
    }
}

#[pymethods]
impl SnapshotView {
    /// Reads exactly `length` bytes at `offset` as of the snapshot.
    fn read<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_u64::offset)] offset: u64,
        #[pyo3(from_py_with = as_usize::length)] length: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let f = &self.inner;
        read_bytes(py, length, move |b| f.read(b, offset))
    }

    /// Writes into a writable view (the live file is never touched).
    fn write(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::offset)] offset: u64,
        data: &[u8],
    ) -> PyResult<()> {
        let data = data.to_vec();
        let f = &self.inner;
        vol_detached(py, move || f.write(&data, offset))
    }

    fn len(&self) -> PyResult<u64> {
        vol_guarded(|| self.inner.len())
    }

    /// Copies the file as the snapshot shows it into a new file `dest` (refused if it exists):
    /// only where data may be (the diff area's chunks, the live file's data extents), inside the
    /// kernel with `copy_file_range` (block clones where the file system can); holes stay holes.
    /// Returns the bytes the copy covers (the view's length).
    fn copy_to(&self, py: Python<'_>, dest: PathBuf) -> PyResult<u64> {
        let f = &self.inner;
        detached(py, move || Ok(f.copy_to(&dest)?))
    }

    fn set_len(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::length)] length: u64,
    ) -> PyResult<()> {
        let f = &self.inner;
        vol_detached(py, move || f.set_len(length))
    }

    /// Makes a writable view's writes durable.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let f = &self.inner;
        vol_detached(py, move || f.sync())
    }

    #[getter]
    fn snapshot_id(&self) -> u64 {
        self.inner.snapshot_id()
    }

    #[getter]
    fn key(&self) -> String {
        self.inner.key().to_owned()
    }

    #[getter]
    fn read_only(&self) -> bool {
        !self.inner.is_writable()
    }

    fn __repr__(&self) -> String {
        format!(
            "SnapshotView(snapshot_id={}, {:?}, read_only={})",
            self.inner.snapshot_id(),
            self.inner.key(),
            !self.inner.is_writable()
        )
    }
}
