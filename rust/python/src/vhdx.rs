//! `Vhdx` and `VhdxFinding`: MS-VHDX files (see `vssim_engine::vhdx`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use numpy::PyArray1;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use vssim_engine::vhdx::{self, CreateOptions, DiskType, OpenOptions};
use vssim_engine::Error;

use vssim_engine::storage::Storage;

use crate::args::{as_opt_u32, as_opt_u64, as_u64};
use crate::errors::{detached, guarded};
use crate::volume::{SnapshotView, VolumeFile};

/// One problem `check` found.
#[pyclass(module = "vssim._engine", frozen, get_all)]
pub struct VhdxFinding {
    /// "error", "warning" or "info".
    severity: String,
    structure: String,
    field: String,
    offset: u64,
    message: String,
}

#[pymethods]
impl VhdxFinding {
    /// The finding as a plain dict (for JSON).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("severity", &self.severity)?;
        d.set_item("structure", &self.structure)?;
        d.set_item("field", &self.field)?;
        d.set_item("offset", self.offset)?;
        d.set_item("message", &self.message)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "VhdxFinding({}: {} {} at {:#x}: {})",
            self.severity, self.structure, self.field, self.offset, self.message
        )
    }
}

/// The storage behind a volume handle (`SnapshotView` or `VolumeFile`), or None for anything
/// else (a path).
fn volume_storage(obj: &Bound<'_, PyAny>) -> PyResult<Option<Box<dyn Storage>>> {
    if let Ok(view) = obj.cast::<SnapshotView>() {
        return view.get().as_storage().map(Some);
    }
    if let Ok(file) = obj.cast::<VolumeFile>() {
        return file.get().as_storage().map(Some);
    }
    Ok(None)
}

fn findings(v: Vec<vhdx::Finding>) -> Vec<VhdxFinding> {
    v.into_iter()
        .map(|f| VhdxFinding {
            severity: f.severity.as_str().to_owned(),
            structure: f.structure,
            field: f.field,
            offset: f.offset,
            message: f.message,
        })
        .collect()
}

/// An open VHDX virtual disk (fixed, dynamic or differencing). Use as a context manager; a
/// writable disk is closed cleanly (log empty, LogGuid zero) on `close()`.
#[pyclass(module = "vssim._engine")]
pub struct Vhdx {
    inner: Option<vhdx::Vhdx>,
    path: PathBuf,
}

type Extents<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u64>>);

fn verr(e: vhdx::VhdxError) -> Error {
    Error::Vhdx(e)
}

impl Vhdx {
    fn disk(&self) -> PyResult<&vhdx::Vhdx> {
        self.inner.as_ref().ok_or_else(|| closed(&self.path))
    }
    fn disk_mut(&mut self) -> PyResult<&mut vhdx::Vhdx> {
        let p = self.path.clone();
        self.inner.as_mut().ok_or_else(|| closed(&p))
    }
}

fn closed(p: &std::path::Path) -> PyErr {
    crate::errors::to_py(verr(vhdx::VhdxError::state(
        &p.display().to_string(),
        "the disk is closed",
    )))
}

fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let buf = PyBuffer::<u8>::get(data)?;
    buf.to_vec(data.py())
}

#[pymethods]
impl Vhdx {
    /// Creates a new disk at `path` and returns it open for writing (locked: no other handle may
    /// open it meanwhile). An existing `path` is refused unless `overwrite` (never when it is the
    /// parent or any file of the parent's chain); the disk is written under a staged name and
    /// renamed into place. `disk_type` is "dynamic", "fixed" or "differencing" (then `parent` is
    /// the parent's path and `virtual_size` may be 0: the parent's). Block size: a power of two
    /// from 1 MiB to 256 MiB (default 32 MiB, a child: its parent's); sector sizes 512 or 4096.
    ///
    /// `durable=False` (a file at a path): the disk's later flushes and `close` do not sync it;
    /// the caller makes it durable as a whole once complete (`os.fsync`), before anything refers
    /// to it.
    #[staticmethod]
    #[pyo3(signature = (path, virtual_size = 0, *, disk_type = "dynamic", block_size = None,
                        logical_sector_size = None, physical_sector_size = None, parent = None,
                        overwrite = false, durable = true))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = as_u64::virtual_size)] virtual_size: u64,
        disk_type: &str,
        #[pyo3(from_py_with = as_opt_u64::block_size)] block_size: Option<u64>,
        #[pyo3(from_py_with = as_opt_u32::logical_sector_size)] logical_sector_size: Option<u32>,
        #[pyo3(from_py_with = as_opt_u32::physical_sector_size)] physical_sector_size: Option<u32>,
        parent: Option<PathBuf>,
        overwrite: bool,
        durable: bool,
    ) -> PyResult<Self> {
        let disk_type = guarded(|| DiskType::parse(disk_type).map_err(verr))?;
        let opts = CreateOptions {
            virtual_size,
            disk_type,
            block_size,
            logical_sector_size,
            physical_sector_size,
        };
        if let Some(st) = volume_storage(path)? {
            // A file on a volume: the new disk is written through copy-on-write.
            if parent.is_some() {
                return Err(crate::errors::to_py(verr(vhdx::VhdxError::invalid(
                    "parent",
                    "a differencing disk on a volume file is not supported: create it at a path",
                ))));
            }
            let name = PathBuf::from(st.name());
            let inner = detached(py, move || {
                vhdx::create_on(st, &opts, None, None).map_err(verr)
            })?;
            return Ok(Vhdx {
                inner: Some(inner),
                path: name,
            });
        }
        let path: PathBuf = path.extract()?;
        let p = path.clone();
        let inner = detached(py, move || {
            let mut v =
                vhdx::create_output(&p, &opts, parent.as_deref(), overwrite).map_err(verr)?;
            v.set_durable(durable);
            Ok(v)
        })?;
        Ok(Vhdx {
            inner: Some(inner),
            path,
        })
    }

    /// Opens an existing disk (and its parents), locked: exclusively when `writable`, shared
    /// otherwise (one writer, or any number of readers; `VhdxLockedError` names the holder). A
    /// pending log is validated whole, then replayed: on disk when `writable`, in memory
    /// otherwise. Parents must lie in the child's directory (or in `parent_root`, for every
    /// level), whichever locator entry leads to them; `allow_parent_escape` lifts that.
    /// `durable=False` (a file at a path, writable): neither a replay at open nor later flushes
    /// and `close` sync it (see `create`).
    #[staticmethod]
    #[pyo3(signature = (path, writable = false, *, allow_parent_escape = false, parent_root = None,
                        durable = true))]
    fn open(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        writable: bool,
        allow_parent_escape: bool,
        parent_root: Option<PathBuf>,
        durable: bool,
    ) -> PyResult<Self> {
        if let Some(st) = volume_storage(path)? {
            // A snapshot view (the disk as it was) or a live volume file (writes go through
            // copy-on-write).
            let name = PathBuf::from(st.name());
            let inner = detached(py, move || {
                vhdx::Vhdx::open_storage(
                    st,
                    OpenOptions {
                        writable,
                        allow_parent_escape,
                        ..OpenOptions::default()
                    },
                )
                .map_err(verr)
            })?;
            return Ok(Vhdx {
                inner: Some(inner),
                path: name,
            });
        }
        let path: PathBuf = path.extract()?;
        let p = path.clone();
        let inner = detached(py, move || {
            vhdx::Vhdx::open_with(
                &p,
                OpenOptions {
                    writable,
                    allow_parent_escape,
                    parent_root,
                    unsynced: !durable,
                    ..OpenOptions::default()
                },
            )
            .map_err(verr)
        })?;
        Ok(Vhdx {
            inner: Some(inner),
            path,
        })
    }

    /// Reads `length` bytes at virtual byte `offset`.
    fn read<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = as_u64::offset)] offset: u64,
        #[pyo3(from_py_with = as_u64::length)] length: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let d = self.disk()?;
        // The range is checked before the bytes object is allocated.
        let too_large = || {
            crate::errors::to_py(verr(vhdx::VhdxError::invalid(
                "length",
                format!(
                    "range [{offset}, {offset} + {length}) ends past the virtual disk size {}",
                    d.virtual_size()
                ),
            )))
        };
        if offset
            .checked_add(length)
            .is_none_or(|e| e > d.virtual_size())
        {
            return Err(too_large());
        }
        let len = usize::try_from(length).map_err(|_| too_large())?;
        // Read straight into the new bytes object (not shared with anyone yet), GIL released.
        PyBytes::new_with(py, len, |buf| {
            detached(py, move || d.read(offset, buf).map_err(verr))
        })
    }

    /// Writes `data` (bytes or any buffer) at virtual byte `offset`.
    fn write(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::offset)] offset: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let data = bytes_of(data)?;
        let d = self.disk_mut()?;
        detached(py, move || d.write(offset, &data).map_err(verr))
    }

    /// Writes into this disk what `source` reads in each run `offsets[i], lengths[i]` (bytes,
    /// uint64 arrays): what an incremental backup copies from the snapshot's disk into its
    /// differencing file, in one call. Every run is checked first (inside both disks); returns the
    /// bytes copied. The GIL is released meanwhile.
    fn copy_from(
        &mut self,
        py: Python<'_>,
        source: PyRef<'_, Vhdx>,
        offsets: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let offs = crate::arrays::u64_vec(offsets, "offsets")?;
        let lens = crate::arrays::u64_vec(lengths, "lengths")?;
        if offs.len() != lens.len() {
            return Err(crate::errors::to_py(Error::invalid(
                "lengths",
                format!(
                    "has {} entries but offsets has {}; the arrays must be the same length",
                    lens.len(),
                    offs.len()
                ),
            )));
        }
        let runs: Vec<(u64, u64)> = offs.into_iter().zip(lens).collect();
        let src = source.disk()?;
        let d = self.disk_mut()?;
        detached(py, move || d.copy_runs_from(src, &runs).map_err(verr))
    }

    /// Makes `[offset, offset + length)` read as zeros; whole blocks are released
    /// (PAYLOAD_BLOCK_ZERO).
    fn trim(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = as_u64::offset)] offset: u64,
        #[pyo3(from_py_with = as_u64::length)] length: u64,
    ) -> PyResult<()> {
        let d = self.disk_mut()?;
        detached(py, move || d.trim(offset, length).map_err(verr))
    }

    /// Makes every completed write durable (BAT updates go through the log).
    fn flush(&mut self, py: Python<'_>) -> PyResult<()> {
        let d = self.disk_mut()?;
        detached(py, move || d.flush().map_err(verr))
    }

    /// Flushes and closes (LogGuid left zero). Closing twice is harmless.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(mut d) = self.inner.take() {
            detached(py, move || d.close().map_err(verr))?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        _args: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Allocated data as merged runs `(offsets, lengths)` (uint64, bytes, ascending): what a
    /// backup must read. A differencing disk includes what it inherits from its parents.
    fn allocated_extents<'py>(&self, py: Python<'py>) -> PyResult<Extents<'py>> {
        let d = self.disk()?;
        let runs = detached(py, move || d.allocated_extents().map_err(verr))?;
        let (o, l): (Vec<u64>, Vec<u64>) = runs.into_iter().unzip();
        Ok((PyArray1::from_vec(py, o), PyArray1::from_vec(py, l)))
    }

    /// Payload BAT state of every block (uint8: 0 not present, 2 zero, 6 fully present, 7
    /// partially present, ...).
    fn block_states<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let d = self.disk()?;
        let n = d.geometry().payload_blocks;
        let v: Vec<u8> = (0..n).map(|b| vhdx::bat::state(d.block_entry(b))).collect();
        Ok(PyArray1::from_vec(py, v))
    }

    /// Hex BLAKE3 of the disk's whole virtual content as read through the chain (ranges no file
    /// holds are hashed as zeros without being read). Equal digests: the disks read the same.
    fn digest(&self, py: Python<'_>) -> PyResult<String> {
        let d = self.disk()?;
        detached(py, move || d.digest().map_err(verr))
    }

    /// The content digest of the virtual disk, `"blake3-leaves-64k:<hex>"`: BLAKE3 over its 64 KiB
    /// leaves in order, each all-zero leaf (unallocated, a hole, or zeros written) as part of a
    /// run, every other by its hash. Equal exactly when the disks read the same, byte for byte, as
    /// `digest`; but only the leaves where a file of the chain may hold data are read (the BAT,
    /// sector bitmaps and the files' holes tell), so it costs the data held, not the virtual size.
    fn content_digest(&self, py: Python<'_>) -> PyResult<String> {
        let d = self.disk()?;
        detached(py, move || d.content_digest().map_err(verr))
    }

    /// The content digests of this disk and of `other`, `(mine, theirs)`: each exactly as
    /// `content_digest` gives it, but every leaf is read from both and compared, and a leaf they
    /// share is hashed once — what verifying a copy against its source costs.
    fn content_digests_with(
        &self,
        py: Python<'_>,
        other: PyRef<'_, Vhdx>,
    ) -> PyResult<(String, String)> {
        let (d, o) = (self.disk()?, other.disk()?);
        detached(py, move || d.content_digests_with(o).map_err(verr))
    }

    /// Write-through metadata mode: every `write`/`trim` that allocates commits the BAT change
    /// through the log before it returns (as Hyper-V acknowledges an allocating write). Default
    /// off: BAT changes are committed at `flush`/`close`.
    #[getter]
    fn get_commit_each_write(&self) -> PyResult<bool> {
        Ok(self.disk()?.commit_each_write())
    }

    #[setter]
    fn set_commit_each_write(&mut self, py: Python<'_>, on: bool) -> PyResult<()> {
        let d = self.disk_mut()?;
        detached(py, move || d.set_commit_each_write(on).map_err(verr))
    }

    /// Validates this disk's file; returns every finding.
    fn check(&self, py: Python<'_>) -> PyResult<Vec<VhdxFinding>> {
        let d = self.disk()?;
        Ok(findings(detached(py, move || Ok(d.check()))?))
    }

    /// Validates the file at `path` without opening it as a disk (works on broken files); every
    /// refusal of an open is among the findings. A path that is not a readable regular file,
    /// or a disk another handle holds for writing, raises instead.
    #[staticmethod]
    fn check_file(py: Python<'_>, path: PathBuf) -> PyResult<Vec<VhdxFinding>> {
        Ok(findings(detached(py, move || {
            vhdx::try_check_file(&path).map_err(verr)
        })?))
    }

    /// Writes the whole virtual disk to a raw sparse file; returns the non-zero bytes written.
    /// `path` is never this disk or one of its parents; an existing file is replaced only with
    /// `overwrite`; the file appears under its name only when complete.
    #[pyo3(signature = (path, *, overwrite = false))]
    fn export_raw(&self, py: Python<'_>, path: PathBuf, overwrite: bool) -> PyResult<u64> {
        let d = self.disk()?;
        detached(py, move || d.export_raw(&path, overwrite).map_err(verr))
    }

    /// Copies this disk (a chain flattened) into a new dynamic disk holding only allocated,
    /// non-zero data; returns the bytes copied. `path` as for `export_raw`.
    #[pyo3(signature = (path, block_size = None, *, overwrite = false))]
    fn copy_to(
        &self,
        py: Python<'_>,
        path: PathBuf,
        #[pyo3(from_py_with = as_opt_u64::block_size)] block_size: Option<u64>,
        overwrite: bool,
    ) -> PyResult<u64> {
        let d = self.disk()?;
        detached(py, move || {
            d.copy_to(&path, block_size, overwrite).map_err(verr)
        })
    }

    /// Makes a new dynamic disk at `path` from the raw image `raw`; returns it open for writing.
    /// `path` is never `raw` itself; an existing file is replaced only with `overwrite`.
    #[staticmethod]
    #[pyo3(signature = (raw, path, *, block_size = None, logical_sector_size = None,
                        overwrite = false))]
    fn import_raw(
        py: Python<'_>,
        raw: PathBuf,
        path: PathBuf,
        #[pyo3(from_py_with = as_opt_u64::block_size)] block_size: Option<u64>,
        #[pyo3(from_py_with = as_opt_u32::logical_sector_size)] logical_sector_size: Option<u32>,
        overwrite: bool,
    ) -> PyResult<Self> {
        let p = path.clone();
        let inner = detached(py, move || {
            vhdx::Vhdx::import_raw(&raw, &p, block_size, logical_sector_size, overwrite)
                .map_err(verr)
        })?;
        Ok(Vhdx {
            inner: Some(inner),
            path,
        })
    }

    /// Merges the differencing disk `child` into its parent, atomically (a crash leaves the old
    /// parent with its child intact, or the merged parent); returns the parent's path. The
    /// child is left as it was and no longer opens (its parent changed).
    #[staticmethod]
    #[pyo3(signature = (child, *, allow_parent_escape = false))]
    fn merge(py: Python<'_>, child: PathBuf, allow_parent_escape: bool) -> PyResult<PathBuf> {
        detached(py, move || {
            vhdx::Vhdx::merge(&child, allow_parent_escape).map_err(verr)
        })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_none()
    }
    #[getter]
    fn writable(&self) -> PyResult<bool> {
        Ok(self.disk()?.is_writable())
    }
    #[getter]
    fn virtual_size(&self) -> PyResult<u64> {
        Ok(self.disk()?.virtual_size())
    }
    #[getter]
    fn block_size(&self) -> PyResult<u64> {
        Ok(self.disk()?.block_size())
    }
    #[getter]
    fn logical_sector_size(&self) -> PyResult<u32> {
        Ok(self.disk()?.logical_sector_size())
    }
    #[getter]
    fn physical_sector_size(&self) -> PyResult<u32> {
        Ok(self.disk()?.physical_sector_size())
    }
    /// "fixed", "dynamic" or "differencing".
    #[getter]
    fn disk_type(&self) -> PyResult<&'static str> {
        Ok(self.disk()?.disk_type().as_str())
    }
    #[getter]
    fn virtual_disk_id(&self) -> PyResult<String> {
        Ok(self.disk()?.virtual_disk_id().hyphenated().to_string())
    }
    #[getter]
    fn data_write_guid(&self) -> PyResult<String> {
        Ok(self.disk()?.data_write_guid().hyphenated().to_string())
    }
    #[getter]
    fn file_write_guid(&self) -> PyResult<String> {
        Ok(self.disk()?.file_write_guid().hyphenated().to_string())
    }
    #[getter]
    fn log_guid(&self) -> PyResult<String> {
        Ok(self.disk()?.log_guid().hyphenated().to_string())
    }
    /// Whether opening replayed a pending log.
    #[getter]
    fn replayed_log(&self) -> PyResult<bool> {
        Ok(self.disk()?.replayed_log)
    }
    #[getter]
    fn file_length(&self) -> PyResult<u64> {
        let d = self.disk()?;
        guarded(|| d.file_length().map_err(verr))
    }
    /// The parent's path (a differencing disk), else None.
    #[getter]
    fn parent_path(&self) -> PyResult<Option<PathBuf>> {
        Ok(self.disk()?.parent_path().map(PathBuf::from))
    }
    /// The parent locator's `parent_linkage` (the parent's DataWriteGuid), else None.
    #[getter]
    fn parent_linkage(&self) -> PyResult<Option<String>> {
        Ok(self.disk()?.parent_linkage())
    }
    /// Every key/value of the parent locator.
    #[getter]
    fn parent_locator(&self) -> PyResult<BTreeMap<String, String>> {
        Ok(self.disk()?.parent_locator().into_iter().collect())
    }

    fn __repr__(&self) -> String {
        match &self.inner {
            Some(d) => format!(
                "Vhdx({:?}, {}, virtual_size={}, block_size={})",
                self.path.display().to_string(),
                d.disk_type().as_str(),
                d.virtual_size(),
                d.block_size()
            ),
            None => format!("Vhdx({:?}, closed)", self.path.display().to_string()),
        }
    }
}
