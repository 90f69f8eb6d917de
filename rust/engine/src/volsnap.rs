//! The system provider (volsnap) in figures, shared by the model of its copy-on-write
//! ([`crate::cow`]) and the real thing ([`crate::volume`]): one home, so the two cannot disagree.

/// volsnap's copy-on-write unit: 16 KiB, whatever the volume's cluster size.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 * 1024;
/// At most 512 shadow copies per volume (`VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED` past it).
pub const MAX_SNAPSHOTS: usize = 512;
