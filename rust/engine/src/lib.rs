//! vssim-engine: the hot path of vssim, in plain Rust (no Python).
//!
//! - [`cow`]: copy-on-write snapshot tracking of one volume, as the system provider (volsnap) does it.
//! - [`cbt`]: changed-block tracking of one virtual disk, what an incremental backup reads.
//! - [`chunkset`]: the sparse two-level bitmap both of them are built on.
//! - [`storage`]: positional byte storage (files, memory, volume files and snapshot views).
//! - [`volume`]: real copy-on-write snapshots of a folder, with a persistent diff area.
//! - [`storage`]: where bytes live (a file, memory, a snapshot view).
//! - [`vhdx`]: MS-VHDX files: create, read, write, differencing chains, the log, check.
//!
//! Every fallible call returns [`Error`]; nothing here panics on bad input.

pub mod cbt;
pub mod chunkset;
pub mod cow;
pub mod error;
pub mod storage;
pub mod vhdx;
pub mod volume;
pub mod workload;

pub use error::{Error, Result};
