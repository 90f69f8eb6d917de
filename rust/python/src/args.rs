//! Integer arguments in. A Python int that does not fit the engine's unsigned type (negative, or
//! too large) is refused with `InvalidArgumentError` naming the argument, its value and the
//! range — rather than PyO3's `OverflowError`, which names neither. A binding asks for it with
//! `#[pyo3(from_py_with = args::as_u64::offset)] offset: u64`; `from_py_with` hands its function
//! only the value, so every argument name has its own small converter, made once here by
//! `converters!` (one module per engine type). Anything that is not an int stays PyO3's
//! `TypeError`, which names the argument.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;

use crate::errors::InvalidArgumentError;

/// An unsigned engine integer.
pub trait Unsigned: Sized + for<'a, 'py> FromPyObject<'a, 'py, Error = PyErr> {
    const MAX: u64;
}

impl Unsigned for u64 {
    const MAX: u64 = u64::MAX;
}

impl Unsigned for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Unsigned for usize {
    const MAX: u64 = usize::MAX as u64;
}

fn out_of_range(obj: &Bound<'_, PyAny>, name: &str, max: u64) -> PyErr {
    let value = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    InvalidArgumentError::new_err(format!(
        "invalid argument `{name}`: {value}: expected an integer from 0 to {max}"
    ))
}

/// `obj` as a `T`, or `InvalidArgumentError` naming `name` when it is an int out of range.
pub fn unsigned<T: Unsigned>(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<T> {
    obj.extract::<T>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            out_of_range(obj, name, T::MAX)
        } else {
            e
        }
    })
}

/// `None`, or `obj` as a `T` (see [`unsigned`]).
pub fn optional<T: Unsigned>(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<T>> {
    if obj.is_none() {
        Ok(None)
    } else {
        unsigned(obj, name).map(Some)
    }
}

/// A sequence of `T`; an entry out of range is named with its index.
pub fn sequence<T: Unsigned>(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<T>> {
    obj.extract::<Vec<T>>().map_err(|e| {
        if !e.is_instance_of::<PyOverflowError>(obj.py()) {
            return e;
        }
        let bad = obj.try_iter().ok().and_then(|items| {
            items
                .flatten()
                .enumerate()
                .find(|(_, item)| item.extract::<T>().is_err())
        });
        match bad {
            Some((i, item)) => out_of_range(&item, &format!("{name}[{i}]"), T::MAX),
            None => out_of_range(obj, name, T::MAX),
        }
    })
}

/// `None`, or a sequence of `T` (see [`sequence`]).
pub fn optional_sequence<T: Unsigned>(
    obj: &Bound<'_, PyAny>,
    name: &str,
) -> PyResult<Option<Vec<T>>> {
    if obj.is_none() {
        Ok(None)
    } else {
        sequence(obj, name).map(Some)
    }
}

/// One converter per argument name: `converters!(how, type: name, …)` makes
/// `pub fn name(obj) -> PyResult<type>` calling `how::<elem>(obj, "name")`.
macro_rules! converters {
    ($how:ident, $out:ty, $elem:ty: $($name:ident),+ $(,)?) => {
        $(
            pub fn $name(obj: &Bound<'_, PyAny>) -> PyResult<$out> {
                super::$how::<$elem>(obj, stringify!($name))
            }
        )+
    };
}

/// Arguments of type `u64`.
pub mod as_u64 {
    use pyo3::prelude::*;
    converters!(
        unsigned, u64, u64:
        allocated, block_size, cbt_block_size, chunk_size, diff_area_reserve_bytes, disk_size,
        length, offset, pause_below, seconds, seed, size, snapshot_id, tracking_block,
        virtual_size, volume_size, warn_below,
    );
}

/// Arguments of type `usize` (ids and counts).
pub mod as_usize {
    use pyo3::prelude::*;
    converters!(unsigned, usize, usize: csv, vm, length);
}

/// Arguments of type `Option<u64>`.
pub mod as_opt_u64 {
    use pyo3::prelude::*;
    converters!(
        optional, Option<u64>, u64:
        allocated_bytes, block_size, diff_area_limit, diff_area_max_bytes, used,
    );
}

/// Arguments of type `Option<u32>`.
pub mod as_opt_u32 {
    use pyo3::prelude::*;
    converters!(optional, Option<u32>, u32: logical_sector_size, physical_sector_size);
}

/// Arguments of type `Vec<usize>`.
pub mod as_vec_usize {
    use pyo3::prelude::*;
    converters!(sequence, Vec<usize>, usize: csvs);
}

/// Arguments of type `Option<Vec<u32>>`.
pub mod as_opt_vec_u32 {
    use pyo3::prelude::*;
    converters!(optional_sequence, Option<Vec<u32>>, u32: sizes);
}
