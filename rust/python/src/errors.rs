//! Engine errors → Python exceptions. The exception classes live in `vssim.errors` (so one
//! hierarchy serves Rust and Python code alike); this file is the one place that maps to them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError};
use pyo3::prelude::*;
use vssim_engine::vhdx::VhdxError as VhdxErr;
use vssim_engine::volume::VolumeError as V;
use vssim_engine::Error;

pyo3::import_exception!(vssim.errors, VssimError);
pyo3::import_exception!(vssim.errors, InvalidArgumentError);
pyo3::import_exception!(vssim.errors, EngineStateError);
pyo3::import_exception!(vssim.errors, TrackerFileError);
pyo3::import_exception!(vssim.errors, NotEstimatedError);
pyo3::import_exception!(vssim.errors, VolumeError);
pyo3::import_exception!(vssim.errors, PathOutsideVolumeError);
pyo3::import_exception!(vssim.errors, SnapshotDeletedError);
pyo3::import_exception!(vssim.errors, SnapshotInvalidError);
pyo3::import_exception!(vssim.errors, SnapshotNotFoundError);
pyo3::import_exception!(vssim.errors, FileNotInSnapshotError);
pyo3::import_exception!(vssim.errors, ReadOnlyViewError);
pyo3::import_exception!(vssim.errors, DiffAreaError);
pyo3::import_exception!(vssim.errors, DiffAreaFullError);
pyo3::import_exception!(vssim.errors, VolumeJournalError);
pyo3::import_exception!(vssim.errors, VolumeBusyError);
pyo3::import_exception!(vssim.errors, VhdxError);
pyo3::import_exception!(vssim.errors, VhdxCorruptError);
pyo3::import_exception!(vssim.errors, VhdxUnsupportedError);
pyo3::import_exception!(vssim.errors, VhdxParentError);
pyo3::import_exception!(vssim.errors, VhdxLockedError);

/// Turns an engine error into the matching Python exception.
pub fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::InvalidArgument { .. } => InvalidArgumentError::new_err(msg),
        Error::State(_) => EngineStateError::new_err(msg),
        Error::TrackerFile { .. } => TrackerFileError::new_err(msg),
        Error::NotEstimated { .. } => NotEstimatedError::new_err(msg),
        Error::Volume(v) => volume_to_py(&v, msg),
        Error::Io { source, .. } => io_to_py(&source, msg),
        Error::Vhdx(e) => vhdx_to_py(e),
    }
}

fn volume_to_py(v: &V, msg: String) -> PyErr {
    match v {
        V::InvalidArgument { .. } => InvalidArgumentError::new_err(msg),
        V::State(_) => EngineStateError::new_err(msg),
        V::Io { source, .. } => io_to_py(source, msg),
        V::OutsideRoot { .. } => PathOutsideVolumeError::new_err(msg),
        V::SnapshotDeleted { .. } => SnapshotDeletedError::new_err(msg),
        V::SnapshotInvalid { .. } | V::DiffAreaDamaged { .. } => SnapshotInvalidError::new_err(msg),
        V::UnknownSnapshot { .. } => SnapshotNotFoundError::new_err(msg),
        V::NotInSnapshot { .. } => FileNotInSnapshotError::new_err(msg),
        V::ReadOnly { .. } => ReadOnlyViewError::new_err(msg),
        V::DiffArea { .. } if v.is_out_of_space() => DiffAreaFullError::new_err(msg),
        V::DiffArea { .. } => DiffAreaError::new_err(msg),
        V::Journal { .. } => VolumeJournalError::new_err(msg),
        V::Busy { .. } => VolumeBusyError::new_err(msg),
    }
}

/// An I/O error as the matching `OSError` — or, when it carries a volume error (a VHDX read
/// through a snapshot view that was deleted or found damaged), as that volume error's exception.
fn io_to_py(source: &std::io::Error, msg: String) -> PyErr {
    if let Some(v) = source.get_ref().and_then(|e| e.downcast_ref::<V>()) {
        return volume_to_py(v, msg);
    }
    match source.kind() {
        std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
        std::io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

/// VHDX errors: format errors carry `structure`, `field`, `offset`, `expected`, `found` and `file`
/// attributes on the exception.
fn vhdx_to_py(e: VhdxErr) -> PyErr {
    let msg = e.to_string();
    let err = match &e {
        VhdxErr::Corrupt(_) => VhdxCorruptError::new_err(msg),
        VhdxErr::Unsupported(_) => VhdxUnsupportedError::new_err(msg),
        VhdxErr::Parent(_) => VhdxParentError::new_err(msg),
        VhdxErr::InvalidArgument { .. } => InvalidArgumentError::new_err(msg),
        VhdxErr::State { .. } => VhdxError::new_err(msg),
        VhdxErr::Locked { file, holder, .. } => {
            let err = VhdxLockedError::new_err(msg);
            Python::attach(|py| {
                let v = err.value(py);
                let _ = v.setattr("file", file);
                let _ = v.setattr("holder", holder);
            });
            return err;
        }
        VhdxErr::Io { source, .. } => return io_to_py(source, msg),
    };
    if let Some(loc) = e.location() {
        Python::attach(|py| {
            let v = err.value(py);
            let _ = v.setattr("file", &loc.file);
            let _ = v.setattr("structure", loc.structure);
            let _ = v.setattr("field", loc.field);
            let _ = v.setattr("offset", loc.offset);
            let _ = v.setattr("expected", &loc.expected);
            let _ = v.setattr("found", &loc.found);
        });
    }
    err
}

/// Runs a slow engine call with the GIL released. A panic inside (a bug, never expected) comes
/// back as a `VssimError` rather than tearing through the interpreter.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, Error> + Send,
{
    let outcome = py.detach(move || catch_unwind(AssertUnwindSafe(f)));
    match outcome {
        Ok(result) => result.map_err(to_py),
        Err(payload) => Err(internal_error(&payload)),
    }
}

/// Runs a quick engine call under the GIL, with the same panic guard as [`detached`].
pub fn guarded<T, F>(f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, Error>,
{
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(to_py),
        Err(payload) => Err(internal_error(&payload)),
    }
}

fn internal_error(payload: &Box<dyn std::any::Any + Send>) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    VssimError::new_err(format!(
        "internal error in the vssim engine (please report): {what}"
    ))
}
