//! One error type for the engine's trackers. Messages name the argument, its value and what was
//! expected, so the Python exception built from them needs no more context.

use std::path::PathBuf;

/// Errors of the engine's trackers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed a value outside its domain (the input is at fault, nothing changed).
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument { name: &'static str, message: String },

    /// A state error: the call is legal in general but not now (e.g. too many snapshots).
    #[error("{0}")]
    State(String),

    /// The estimate tier does not provide `what` (only the exact, per-write engine does).
    #[error("the estimate tier does not provide {what}: {why}")]
    NotEstimated { what: &'static str, why: String },

    /// A persisted tracker file could not be used; it was not loaded, not even in part.
    #[error("{path}: {message}")]
    TrackerFile { path: PathBuf, message: String },

    /// A volume or snapshot operation failed (see [`crate::volume::VolumeError`]).
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// A VHDX file or call failed (see [`crate::vhdx::VhdxError`]).
    #[error(transparent)]
    Vhdx(#[from] crate::vhdx::VhdxError),

    /// Operating-system I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks a time window `[t0, t1)` in seconds: finite, `0 <= t0 <= t1` (every cluster's window,
/// and the generator's through Python, refuse the same way).
pub fn check_window(t0: f64, t1: f64) -> Result<()> {
    if t0.is_finite() && t1.is_finite() && t0 >= 0.0 && t1 >= t0 {
        Ok(())
    } else {
        Err(Error::invalid(
            "window",
            format!("[{t0}, {t1}): expected 0 <= t0 <= t1, finite"),
        ))
    }
}

/// Checks the batch arrays of `offsets` / `lengths` against a device of `size` bytes.
///
/// The whole batch is checked before any of it is applied, so a bad entry leaves the tracker as it
/// was.
pub fn check_extents(offsets: &[u64], lengths: &[u32], size: u64) -> Result<()> {
    if offsets.len() != lengths.len() {
        return Err(Error::invalid(
            "lengths",
            format!(
                "has {} entries but offsets has {}; the arrays must be the same length",
                lengths.len(),
                offsets.len()
            ),
        ));
    }
    // One branch-free pass (the compiler runs it several entries an instruction): a batch is
    // good as a rule, and only a bad one is walked again for its first bad entry. `off + len <=
    // size` without an overflow is `len <= size` and `off <= size - len`.
    let bad = offsets
        .iter()
        .zip(lengths)
        .fold(false, |bad, (&off, &len)| {
            let len = u64::from(len);
            bad | (len > size) | (off > size.wrapping_sub(len))
        });
    if !bad {
        return Ok(());
    }
    for (i, (&off, &len)) in offsets.iter().zip(lengths).enumerate() {
        let end = off.checked_add(u64::from(len));
        match end {
            Some(end) if end <= size => {}
            _ => {
                return Err(Error::invalid(
                    "offsets",
                    format!(
                        "entry {i}: offset {off} + length {len} ends past the end of the \
                         {size}-byte device"
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Checks that `unit` is a power of two within `[min, max]` bytes.
pub fn check_power_of_two(name: &'static str, unit: u64, min: u64, max: u64) -> Result<()> {
    if !unit.is_power_of_two() || unit < min || unit > max {
        return Err(Error::invalid(
            name,
            format!("{unit} is not a power of two between {min} and {max} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_past_end_are_refused_with_the_index() {
        let err = check_extents(&[0, 100], &[10, 10], 105).unwrap_err();
        assert!(err.to_string().contains("entry 1"), "{err}");
    }

    #[test]
    fn overflowing_extent_is_refused() {
        assert!(check_extents(&[u64::MAX], &[1], u64::MAX).is_err());
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        assert!(check_extents(&[0, 1], &[1], 10).is_err());
    }

    proptest::proptest! {
        /// The one-pass test answers as entry-by-entry arithmetic: the first bad entry named,
        /// near the ends of the device and of `u64` too.
        #[test]
        fn one_pass_agrees_with_entry_by_entry(
            entries in proptest::collection::vec(
                (
                    proptest::prop_oneof![0u64..1000, (u64::MAX - 1000)..=u64::MAX],
                    proptest::prop_oneof![0u32..1000, (u32::MAX - 10)..=u32::MAX],
                ),
                0..20,
            ),
            size in proptest::prop_oneof![0u64..2000, (u64::MAX - 2000)..=u64::MAX],
        ) {
            let (offs, lens): (Vec<u64>, Vec<u32>) = entries.iter().copied().unzip();
            let first_bad = entries.iter().position(|&(o, l)| {
                u128::from(o) + u128::from(l) > u128::from(size)
            });
            match (check_extents(&offs, &lens, size), first_bad) {
                (Ok(()), None) => {}
                (Err(e), Some(i)) => proptest::prop_assert!(
                    e.to_string().contains(&format!("entry {i}:")),
                    "{e}"
                ),
                (got, want) => proptest::prop_assert!(false, "{got:?} against {want:?}"),
            }
        }
    }

    #[test]
    fn power_of_two_bounds() {
        assert!(check_power_of_two("chunk_size", 16384, 4096, 1 << 20).is_ok());
        assert!(check_power_of_two("chunk_size", 12288, 4096, 1 << 20).is_err());
        assert!(check_power_of_two("chunk_size", 2048, 4096, 1 << 20).is_err());
        assert!(check_power_of_two("chunk_size", 2 << 20, 4096, 1 << 20).is_err());
    }
}
