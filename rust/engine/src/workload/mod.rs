//! Per-VM write workloads, generated in the engine and fed straight into the trackers.
//!
//! - [`rng`]: keyed, seeded random streams (same seed → same stream, any thread order);
//! - [`spec`]: what a VM's I/O looks like, and the generator of its stream (`lanes`: its
//!   hot-spot and uniform operations eight at a time on AVX-512 CPUs);
//! - [`layout`]: guest offsets → VHDX file offsets (block allocation, BAT and log writes) →
//!   volume offsets (file extents);
//! - [`cluster`]: every VM of every CSV advanced through a time window in parallel, with the
//!   CSVs' copy-on-write and the disks' change tracking.

pub mod cluster;
#[cfg(target_arch = "x86_64")]
mod lanes;
pub mod layout;
#[cfg(test)]
mod layout_proof;
pub mod rng;
pub mod spec;

pub use cluster::{
    Foresight, ModelCluster, Pause, PauseCause, SpaceRules, VmConfig, VmTotals, WindowReport,
};
pub use layout::{DiskKind, FileExtents, Piece, VhdxModel};
pub use spec::{
    DiskData, Diurnal, Generator, Growth, Locality, Placement, SizeDist, SizePlacement,
    WorkloadSpec, WriteBatch,
};
