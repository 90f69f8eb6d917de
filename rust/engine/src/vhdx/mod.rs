//! MS-VHDX: create, read and write fixed, dynamic and differencing virtual disks, with the
//! crash-consistent metadata log. The facts are in `shared/spec/vhdx.md`; one module per
//! structure:
//!
//! - [`format`]: little-endian fields, CRC-32C, GUIDs and constants;
//! - [`header`], [`region`], [`metadata`], [`bat`], [`log`]: the on-disk structures;
//! - [`file`]: [`Vhdx`], an open disk and its reads; `open.rs` opens (and replays a pending
//!   log), `write.rs` writes, trims and commits BAT changes through the log;
//! - [`create`]: new disks; [`parent`]: parent locators and the chain's rules; [`check`]:
//!   validation that reports every finding; [`backup`]: allocated extents, copy, raw
//!   conversion; `merge.rs`: crash-safe merge of a child into its parent;
//! - [`lock`]: one writer or many readers per file; [`paths`]: what an input may be and how an
//!   output is written (never onto an input, staged, replaced only when asked).

pub mod backup;
pub mod bat;
pub mod check;
mod copy;
pub mod create;
mod digest;
pub mod error;
pub mod file;
pub mod format;
#[doc(hidden)]
pub mod fuzz;
pub mod header;
pub mod lock;
pub mod log;
mod merge;
pub mod metadata;
mod open;
pub mod parent;
pub mod paths;
pub mod region;
mod replayed;
mod write;

pub use check::{check_file, check_storage, try_check_file, Finding, Severity};
pub use create::{create, create_on, create_output, CreateOptions};
pub use digest::{CONTENT_DIGEST_SCHEME, LEAF as CONTENT_DIGEST_LEAF};
pub use error::{Location, VResult, VhdxError};
pub use file::{OpenOptions, Vhdx};
pub use parent::MAX_CHAIN_DEPTH;

/// The three kinds of VHDX disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
}

impl DiskType {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }

    pub fn parse(s: &str) -> VResult<DiskType> {
        match s {
            "fixed" => Ok(DiskType::Fixed),
            "dynamic" => Ok(DiskType::Dynamic),
            "differencing" => Ok(DiskType::Differencing),
            _ => Err(VhdxError::invalid(
                "disk_type",
                format!("{s:?} is not \"fixed\", \"dynamic\" or \"differencing\""),
            )),
        }
    }
}
