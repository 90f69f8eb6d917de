//! `bitset_limit`: the memory system's limit for a tracker's batch (see `vssim_engine::limit`).

use pyo3::prelude::*;
use vssim_engine::error::check_power_of_two;
use vssim_engine::limit;

use crate::args::{as_opt_u64, as_u64};
use crate::arrays::{u32_ints, u64_ints};
use crate::errors::guarded;

/// The memory system's limit for a tracker's batch: sets the bits of the `chunk_size`-byte chunks
/// that the writes (`offsets` uint64, `lengths` uint32, in bytes) touch on a device of
/// `volume_size` bytes — each of the engine's threads its share of the writes, into a flat bitmap
/// of its own — then ORs the bitmaps and returns how many chunks below `allocated_bytes` (default:
/// the whole device) were set: what `CowTracker.apply_writes` copies with one snapshot, or (with
/// the change-tracking block size) what `ChangeTracker.mark` marks. Nothing else is done, so no
/// tracker can take less time for the same stream; the arrays are read in place, holding the GIL.
#[pyfunction]
#[pyo3(signature = (offsets, lengths, chunk_size, volume_size, allocated_bytes = None))]
pub fn bitset_limit(
    offsets: &Bound<'_, PyAny>,
    lengths: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = as_u64::chunk_size)] chunk_size: u64,
    #[pyo3(from_py_with = as_u64::volume_size)] volume_size: u64,
    #[pyo3(from_py_with = as_opt_u64::allocated_bytes)] allocated_bytes: Option<u64>,
) -> PyResult<u64> {
    let offsets = u64_ints(offsets, "offsets")?;
    let lengths = u32_ints(lengths, "lengths")?;
    guarded(|| {
        check_power_of_two("chunk_size", chunk_size, 512, 1 << 28)?;
        let universe = volume_size.div_ceil(chunk_size);
        let below = allocated_bytes.unwrap_or(volume_size).div_ceil(chunk_size);
        limit::bitset_limit(
            offsets.as_slice(),
            lengths.as_slice(),
            chunk_size.trailing_zeros(),
            universe,
            below,
        )
    })
}
