//! Arrays in: numpy arrays (or anything `numpy.asarray` takes) become owned vectors, checked
//! element by element, before the GIL is released — a borrowed buffer is never read while detached.

use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::InvalidArgumentError;

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
