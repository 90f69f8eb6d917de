//! Arrays in: numpy arrays (or anything `numpy.asarray` takes) become owned vectors, checked
//! element by element, before the GIL is released — a borrowed buffer is never read while detached.

use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::InvalidArgumentError;

/// Byte runs out: `(offsets, lengths)` as two uint64 arrays.
pub type Extents<'py> = (Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u64>>);

fn bad(name: &str, msg: String) -> PyErr {
    InvalidArgumentError::new_err(format!("invalid argument `{name}`: {msg}"))
}

/// A 1-D integer array-like as a numpy array of dtype `int64` or `uint64`, refusing floats,
/// bools and other shapes.
fn as_integer_array<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    if ndim != 1 {
        return Err(bad(
            name,
            format!("expected a 1-D array, found {ndim} dimensions"),
        ));
    }
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    match kind.as_str() {
        "u" => arr.call_method1("astype", ("uint64",)),
        "i" => arr.call_method1("astype", ("int64",)),
        _ => {
            let dtype = arr.getattr("dtype")?.str()?.to_string();
            Err(bad(name, format!("expected integers, found dtype {dtype}")))
        }
    }
}

/// Values of a 1-D integer array as `u64`; negatives are refused with their index.
pub fn u64_vec(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u64>> {
    if let Ok(a) = obj.cast::<PyArray1<u64>>() {
        let ro = a.readonly();
        return Ok(ro.as_array().to_vec());
    }
    let arr = as_integer_array(obj, name)?;
    if let Ok(a) = arr.cast::<PyArray1<u64>>() {
        return Ok(a.readonly().as_array().to_vec());
    }
    let a = arr.cast::<PyArray1<i64>>()?.readonly();
    let view = a.as_array();
    let mut out = Vec::with_capacity(a.len());
    for (i, &v) in view.iter().enumerate() {
        if v < 0 {
            return Err(bad(
                name,
                format!("entry {i} is {v}; expected a value >= 0"),
            ));
        }
        out.push(v as u64);
    }
    Ok(out)
}

/// Values of a 1-D integer array as `u32`; values outside `0..=u32::MAX` are refused.
pub fn u32_vec(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u32>> {
    if let Ok(a) = obj.cast::<PyArray1<u32>>() {
        return Ok(a.readonly().as_array().to_vec());
    }
    let wide = u64_vec(obj, name)?;
    let mut out = Vec::with_capacity(wide.len());
    for (i, v) in wide.into_iter().enumerate() {
        let v = u32::try_from(v).map_err(|_| {
            bad(
                name,
                format!("entry {i} is {v}; expected at most {}", u32::MAX),
            )
        })?;
        out.push(v);
    }
    Ok(out)
}

/// Entries handed to the engine per GIL release when streaming a borrowed array: big enough that
/// the release costs nothing, small enough that the copy stays a few megabytes.
const SLICE: usize = 1 << 22;

/// A 1-D array of `T` that is either borrowed from numpy (already the right dtype and contiguous,
/// so nothing is copied up front) or converted into an owned vector.
pub enum Ints<'py, T: numpy::Element> {
    Borrowed(numpy::PyReadonlyArray1<'py, T>),
    Owned(Vec<T>),
}

impl<T: numpy::Element + Copy> Ints<'_, T> {
    /// The values as one slice (borrowed arrays must be contiguous; see `u64_ints`/`u32_ints`).
    pub fn as_slice(&self) -> &[T] {
        match self {
            Ints::Borrowed(a) => a.as_slice().unwrap_or(&[]),
            Ints::Owned(v) => v,
        }
    }
}

/// Like [`u64_vec`], but a contiguous `uint64` array is borrowed instead of copied.
pub fn u64_ints<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Ints<'py, u64>> {
    if let Ok(a) = obj.cast::<PyArray1<u64>>() {
        let ro = a.readonly();
        if ro.as_slice().is_ok() {
            return Ok(Ints::Borrowed(ro));
        }
    }
    u64_vec(obj, name).map(Ints::Owned)
}

/// Like [`u32_vec`], but a contiguous `uint32` array is borrowed instead of copied.
pub fn u32_ints<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Ints<'py, u32>> {
    if let Ok(a) = obj.cast::<PyArray1<u32>>() {
        let ro = a.readonly();
        if ro.as_slice().is_ok() {
            return Ok(Ints::Borrowed(ro));
        }
    }
    u32_vec(obj, name).map(Ints::Owned)
}

/// Streams `(offsets, lengths)` to `each` in slices of [`SLICE`] entries copied into owned buffers,
/// so `each` may release the GIL while it works on them. `each` gets the slice's start index.
pub fn for_each_slice(
    offsets: &[u64],
    lengths: &[u32],
    mut each: impl FnMut(usize, &[u64], &[u32]) -> PyResult<()>,
) -> PyResult<()> {
    thread_local! {
        // Reused between calls: a fresh 48 MB buffer per call would fault its pages in each time.
        static BUFFERS: std::cell::RefCell<(Vec<u64>, Vec<u32>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    BUFFERS.with(|cell| {
        // A nested call (never expected) gets buffers of its own rather than a borrow panic.
        let mut own = (Vec::new(), Vec::new());
        let mut guard = cell.try_borrow_mut();
        let (offs_buf, lens_buf) = match guard.as_deref_mut() {
            Ok(bufs) => (&mut bufs.0, &mut bufs.1),
            Err(_) => (&mut own.0, &mut own.1),
        };
        for start in (0..offsets.len()).step_by(SLICE) {
            let end = (start + SLICE).min(offsets.len());
            offs_buf.clear();
            offs_buf.extend_from_slice(&offsets[start..end]);
            lens_buf.clear();
            lens_buf.extend_from_slice(&lengths[start..end]);
            each(start, offs_buf, lens_buf)?;
        }
        Ok(())
    })
}
