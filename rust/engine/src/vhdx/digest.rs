//! Digests of a disk's virtual content: what a reader of the disk sees, through its chain.
//!
//! [`Vhdx::digest`] is BLAKE3 over every byte of the virtual disk, in order (what `b3sum` of the
//! raw image gives); ranges no file of the chain holds are hashed as zeros without being read, but
//! hashed all the same, so it costs the virtual size.
//!
//! [`Vhdx::content_digest`] is as strict and costs what the disk holds. The virtual disk is cut
//! into leaves of [`LEAF`] bytes (64 KiB: every payload block, 1–256 MiB, is a whole number of
//! them). A leaf whose bytes are all zero is a *zero leaf*, whatever holds it (an unallocated
//! block, a ZERO block, a hole in an allocated block, zeros written as data); any other leaf is
//! named by the BLAKE3 hash of its bytes. The root is BLAKE3 (in derive-key mode, so it can be
//! mistaken for no other hash) over the virtual size, the leaf size, and the leaves in order —
//! each run of zero leaves as `0` and its length, each other leaf as `1` and its hash. The record
//! list decodes to exactly one sequence of leaves, so two disks share a root exactly when every
//! leaf — every byte — is the same (up to a BLAKE3 collision). To find the zero leaves without
//! reading them, the chain is asked where data *may* be: the BAT (blocks that are not present
//! read as zeros, or as the parent), the sector bitmaps of partial blocks, and the data extents of
//! each file (`SEEK_DATA`/`SEEK_HOLE`, or a snapshot view's own map). Only leaves that touch such
//! a range are read; a leaf read and found all zero is a zero leaf like any other.

use rayon::prelude::*;

use super::bat;
use super::error::VResult;
use super::file::Vhdx;
use super::format::{KIB, MIB};
use crate::storage::{extents_within, merge_extents};

/// The leaf size of [`Vhdx::content_digest`].
pub const LEAF: u64 = 64 * KIB;
/// The prefix naming the scheme in a digest string (`"<scheme>:<hex>"`).
pub const CONTENT_DIGEST_SCHEME: &str = "blake3-leaves-64k";
/// The key-derivation context of the root (fixed forever for this scheme).
const ROOT_CONTEXT: &str = "vssim 2025 VHDX content digest: 64 KiB leaves, zero runs";
/// Leaves read and hashed per task.
const LEAVES_PER_TASK: u64 = 64;

impl Vhdx {
    /// Whether block `block` reads as zeros without reading any file (its entry here, or
    /// through the parents for a block a differencing disk does not hold).
    fn block_reads_as_zeros(&self, block: u64) -> bool {
        match bat::state(self.block_entry(block)) {
            bat::PB_FULLY_PRESENT | bat::PB_PARTIALLY_PRESENT => false,
            bat::PB_NOT_PRESENT => match &self.parent {
                None => true,
                Some(p) if p.block_size() == self.block_size() => p.block_reads_as_zeros(block),
                Some(_) => false,
            },
            _ => true,
        }
    }

    /// Hex BLAKE3 of the whole virtual disk as read through the chain.
    pub fn digest(&self) -> VResult<String> {
        self.check_open()?;
        let mut hasher = blake3::Hasher::new();
        let zeros = vec![0u8; MIB as usize];
        let mut buf = vec![0u8; MIB as usize];
        let bs = self.block_size();
        let size = self.virtual_size();
        let mut block = 0u64;
        while block * bs < size {
            let start = block * bs;
            let end = (start + bs).min(size);
            let zero = self.block_reads_as_zeros(block);
            let mut pos = start;
            while pos < end {
                let n = (end - pos).min(MIB) as usize;
                if zero {
                    hasher.update(&zeros[..n]);
                } else {
                    self.read(pos, &mut buf[..n])?;
                    hasher.update(&buf[..n]);
                }
                pos += n as u64;
            }
            block += 1;
        }
        Ok(hasher.finalize().to_hex().to_string())
    }

    /// Virtual ranges `(offset, length)`, ascending and disjoint, outside which the disk reads as
    /// zeros through its chain (see the module doc).
    pub fn data_map(&self) -> VResult<Vec<(u64, u64)>> {
        self.check_open()?;
        let file = self.st.data_extents().map_err(|e| self.io(e))?;
        let parent = match &self.parent {
            Some(p) => Some(p.data_map()?),
            None => None,
        };
        let bs = self.block_size();
        let size = self.virtual_size();
        let mut out: Vec<(u64, u64)> = Vec::new();
        // File bytes `[at, at + n)` hold virtual bytes from `v`: where they may hold data.
        let own = |out: &mut Vec<(u64, u64)>, at: u64, n: u64, v: u64| match &file {
            None => out.push((v, n)),
            Some(ext) => {
                out.extend(extents_within(ext, at, at + n).map(|(o, k)| (v + (o - at), k)))
            }
        };
        let from_parent = |out: &mut Vec<(u64, u64)>, v: u64, n: u64| {
            if let Some(map) = &parent {
                out.extend(extents_within(map, v, v + n));
            }
        };
        for block in 0..self.geo.payload_blocks {
            let e = self.block_entry(block);
            let v = block * bs;
            let n = bs.min(size - v);
            match bat::state(e) {
                bat::PB_FULLY_PRESENT => own(&mut out, bat::offset(e), n, v),
                bat::PB_PARTIALLY_PRESENT => {
                    let ss = self.geo.sector_size;
                    let sectors = n.div_ceil(ss);
                    let bits = self.bitmap_bits(block, 0, sectors)?;
                    let mut s = 0;
                    while s < sectors {
                        let mine = bits[s as usize];
                        let mut t = s;
                        while t < sectors && bits[t as usize] == mine {
                            t += 1;
                        }
                        let (lo, hi) = (s * ss, (t * ss).min(n));
                        if mine {
                            own(&mut out, bat::offset(e) + lo, hi - lo, v + lo);
                        } else {
                            from_parent(&mut out, v + lo, hi - lo);
                        }
                        s = t;
                    }
                }
                bat::PB_NOT_PRESENT => from_parent(&mut out, v, n),
                _ => {}
            }
        }
        Ok(merge_extents(out))
    }

    /// The content digest of the virtual disk: `"blake3-leaves-64k:<hex>"` (see the module doc).
    /// Equal for two disks exactly when they read the same, byte for byte; costs what the chain
    /// holds, not the virtual size.
    pub fn content_digest(&self) -> VResult<String> {
        let size = self.virtual_size();
        let tasks = leaf_tasks(&self.data_map()?);
        let hashed: Vec<Vec<(u64, Option<blake3::Hash>)>> = tasks
            .par_iter()
            .map(|&(a, b)| {
                let buf = self.read_leaves(a, b)?;
                Ok(leaf_hashes(&buf)
                    .enumerate()
                    .map(|(i, h)| (a + i as u64, h))
                    .collect())
            })
            .collect::<VResult<_>>()?;
        Ok(root_of(size, hashed.into_iter().flatten()))
    }

    /// The content digests of this disk and of `other`, exactly as [`content_digest`] gives each
    /// (a verification compares them): every leaf where either may hold data is read from both and
    /// compared, and a leaf they share is hashed once. Disks of different sizes are digested
    /// apart.
    ///
    /// [`content_digest`]: Self::content_digest
    pub fn content_digests_with(&self, other: &Vhdx) -> VResult<(String, String)> {
        let size = self.virtual_size();
        if other.virtual_size() != size {
            return Ok((self.content_digest()?, other.content_digest()?));
        }
        let mut map = self.data_map()?;
        map.extend(other.data_map()?);
        let tasks = leaf_tasks(&merge_extents(map));
        type Pair = (u64, Option<blake3::Hash>, Option<blake3::Hash>);
        let hashed: Vec<Vec<Pair>> = tasks
            .par_iter()
            .map(|&(a, b)| {
                let (x, y) = (self.read_leaves(a, b)?, other.read_leaves(a, b)?);
                Ok(x.chunks(LEAF as usize)
                    .zip(y.chunks(LEAF as usize))
                    .enumerate()
                    .map(|(i, (p, q))| {
                        let hp = leaf_hash(p);
                        let hq = if p == q { hp } else { leaf_hash(q) };
                        (a + i as u64, hp, hq)
                    })
                    .collect())
            })
            .collect::<VResult<_>>()?;
        let mine = root_of(size, hashed.iter().flatten().map(|&(l, h, _)| (l, h)));
        let theirs = root_of(size, hashed.iter().flatten().map(|&(l, _, h)| (l, h)));
        Ok((mine, theirs))
    }

    /// The virtual bytes of leaves `[a, b)` (the last one cut at the disk's end).
    fn read_leaves(&self, a: u64, b: u64) -> VResult<Vec<u8>> {
        let start = a * LEAF;
        let end = (b * LEAF).min(self.virtual_size());
        let mut buf = vec![0u8; (end - start) as usize];
        self.read(start, &mut buf)?;
        Ok(buf)
    }
}

/// Reading tasks for the leaves that touch `map`: runs of up to `LEAVES_PER_TASK` leaf numbers
/// `[first, end)`, ascending.
fn leaf_tasks(map: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &(o, n) in map {
        let (a, b) = (o / LEAF, (o + n).div_ceil(LEAF));
        match runs.last_mut() {
            Some((_, end)) if a <= *end => *end = (*end).max(b),
            _ => runs.push((a, b)),
        }
    }
    runs.iter()
        .flat_map(|&(a, b)| {
            (a..b)
                .step_by(LEAVES_PER_TASK as usize)
                .map(move |t| (t, (t + LEAVES_PER_TASK).min(b)))
        })
        .collect()
}

/// A leaf's name: `None` for a zero leaf, else its hash.
fn leaf_hash(leaf: &[u8]) -> Option<blake3::Hash> {
    (!all_zero(leaf)).then(|| blake3::hash(leaf))
}

fn leaf_hashes(bytes: &[u8]) -> impl Iterator<Item = Option<blake3::Hash>> + '_ {
    bytes.chunks(LEAF as usize).map(leaf_hash)
}

/// The root over the named leaves (ascending leaf numbers; every leaf not named is a zero leaf):
/// the virtual size, the leaf size, then each run of zero leaves as `0` and its length and each
/// other leaf as `1` and its hash.
fn root_of(size: u64, named: impl Iterator<Item = (u64, Option<blake3::Hash>)>) -> String {
    let mut root = blake3::Hasher::new_derive_key(ROOT_CONTEXT);
    root.update(&size.to_le_bytes());
    root.update(&LEAF.to_le_bytes());
    let mut next = 0u64; // the first leaf not yet accounted for
    let mut zeros = 0u64; // zero leaves not yet recorded, just before `next`
    for (leaf, hash) in named {
        zeros += leaf - next;
        next = leaf + 1;
        match hash {
            None => zeros += 1,
            Some(h) => {
                if zeros > 0 {
                    root.update(&[0]);
                    root.update(&zeros.to_le_bytes());
                    zeros = 0;
                }
                root.update(&[1]);
                root.update(h.as_bytes());
            }
        }
    }
    zeros += size.div_ceil(LEAF) - next;
    if zeros > 0 {
        root.update(&[0]);
        root.update(&zeros.to_le_bytes());
    }
    format!("{CONTENT_DIGEST_SCHEME}:{}", root.finalize().to_hex())
}

/// Whether every byte is zero (4 KiB at a time, each folded without a branch).
fn all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use proptest::prelude::*;

    use super::{CONTENT_DIGEST_SCHEME, LEAF, ROOT_CONTEXT};
    use crate::storage::MemStorage;
    use crate::vhdx::format::MIB;
    use crate::vhdx::{bat, create, create_on, CreateOptions, DiskType, Vhdx};

    fn mem() -> Box<MemStorage> {
        Box::new(MemStorage {
            bytes: Vec::new(),
            name: "mem".into(),
        })
    }

    /// The definition, computed the long way: every leaf of the virtual bytes.
    fn reference(content: &[u8]) -> String {
        let mut root = blake3::Hasher::new_derive_key(ROOT_CONTEXT);
        root.update(&(content.len() as u64).to_le_bytes());
        root.update(&LEAF.to_le_bytes());
        let mut zeros = 0u64;
        for leaf in content.chunks(LEAF as usize) {
            if leaf.iter().all(|&b| b == 0) {
                zeros += 1;
                continue;
            }
            if zeros > 0 {
                root.update(&[0]);
                root.update(&zeros.to_le_bytes());
                zeros = 0;
            }
            root.update(&[1]);
            root.update(blake3::hash(leaf).as_bytes());
        }
        if zeros > 0 {
            root.update(&[0]);
            root.update(&zeros.to_le_bytes());
        }
        format!("{CONTENT_DIGEST_SCHEME}:{}", root.finalize().to_hex())
    }

    fn content(d: &Vhdx) -> Vec<u8> {
        let mut b = vec![0u8; d.virtual_size() as usize];
        d.read(0, &mut b).unwrap();
        b
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "vssim-digest-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn at(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn opts(size: u64, block: u64) -> CreateOptions {
        CreateOptions {
            block_size: Some(block),
            ..CreateOptions::dynamic(size)
        }
    }

    /// Flips one bit in place (the file keeps its holes).
    fn flip(path: &Path, at: u64, bit: u8) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ (1 << bit)], at).unwrap();
    }

    fn digests(path: &Path) -> Result<(String, String), String> {
        let d = Vhdx::open(path, false).map_err(|e| e.to_string())?;
        Ok((
            d.content_digest().map_err(|e| e.to_string())?,
            d.digest().map_err(|e| e.to_string())?,
        ))
    }

    #[test]
    fn digest_is_of_the_virtual_content() {
        let size = 8 * (1 << 20);
        let mut d = create_on(mem(), &CreateOptions::dynamic(size), None, None).unwrap();
        let empty = d.digest().unwrap();
        assert_eq!(
            empty,
            blake3::hash(&vec![0u8; size as usize]).to_hex().to_string()
        );
        d.write(4096, b"hello, disk").unwrap();
        let mut content = vec![0u8; size as usize];
        content[4096..4096 + 11].copy_from_slice(b"hello, disk");
        assert_eq!(
            d.digest().unwrap(),
            blake3::hash(&content).to_hex().to_string()
        );
        // Writing zeros allocates but reads the same: same digest as before.
        d.write(4096, &[0u8; 11]).unwrap();
        assert_eq!(d.digest().unwrap(), empty);
    }

    /// Allocated zeros and unallocated blocks are one thing to the digest exactly when they read
    /// the same; one non-zero byte anywhere makes another digest.
    #[test]
    fn zeros_written_equal_unallocated_and_nothing_else_does() {
        let dir = Dir::new("zeros");
        let (a, b, c) = (dir.at("a.vhdx"), dir.at("b.vhdx"), dir.at("c.vhdx"));
        let size = 16 * MIB;
        drop(create(&a, &opts(size, MIB), None).unwrap());
        let mut d = create(&b, &opts(size, MIB), None).unwrap();
        d.write(3 * MIB, &vec![0u8; 2 * MIB as usize]).unwrap();
        d.close().unwrap();
        let mut d = create(&c, &opts(size, MIB), None).unwrap();
        d.write(3 * MIB, &vec![0u8; 2 * MIB as usize]).unwrap();
        d.write(4 * MIB + 777, &[1]).unwrap();
        d.close().unwrap();
        let (da, db, dc) = (
            digests(&a).unwrap(),
            digests(&b).unwrap(),
            digests(&c).unwrap(),
        );
        assert!(
            Vhdx::open(&b, false)
                .unwrap()
                .data_map()
                .unwrap()
                .is_empty()
                || da == db
        );
        assert_eq!(da, db, "zeros written read as unallocated");
        assert_ne!(da.0, dc.0, "one byte differs");
        assert_ne!(da.1, dc.1);
    }

    /// A byte flipped in the file: in data, in a hole of an allocated block, in metadata (a BAT
    /// entry), or where no structure points (the log region of a clean file). The digest follows
    /// the virtual content, and so does the full one: where the content changes both change,
    /// where it cannot both stay.
    #[test]
    fn a_flipped_byte_changes_the_digest_where_it_changes_the_content() {
        let dir = Dir::new("flip");
        let path = dir.at("d.vhdx");
        let size = 64 * MIB;
        let block = 2 * MIB;
        let make = || {
            let _ = std::fs::remove_file(&path);
            let mut d = create(&path, &opts(size, block), None).unwrap();
            d.write(5 * block + 4096, &[0xAB; 8192]).unwrap();
            d.write(9 * block, &[0xCD; 512]).unwrap();
            d.close().unwrap();
        };
        make();
        let d = Vhdx::open(&path, false).unwrap();
        let e5 = d.block_entry(5);
        assert_eq!(bat::state(e5), bat::PB_FULLY_PRESENT);
        let (bat_at, data_at) = (d.bat_offset + d.geometry().pb_index(5) * 8, bat::offset(e5));
        // The block is allocated, but the file holds a hole in most of it: the digest skips it.
        let held = crate::storage::extents_within(
            &d.st.data_extents().unwrap().unwrap(),
            data_at,
            data_at + block,
        )
        .map(|e| e.1)
        .sum::<u64>();
        assert!(held < block / 4, "{held}");
        drop(d);
        let before = digests(&path).unwrap();
        // (what, byte, bit, whether the virtual content changes)
        let cases: [(&str, u64, u8, bool); 5] = [
            ("data", data_at + 4096 + 100, 4, true),
            ("a hole of an allocated block", data_at + block / 2, 0, true),
            (
                "metadata: the BAT entry's state (FULLY_PRESENT -> ZERO)",
                bat_at,
                2,
                true,
            ),
            ("metadata: the BAT entry's file offset", bat_at + 2, 5, true),
            ("the log region of a clean file", MIB + 12345, 3, false),
        ];
        for (what, at, bit, changes) in cases {
            make();
            assert_eq!(digests(&path).unwrap(), before);
            flip(&path, at, bit);
            match digests(&path) {
                Ok(after) if changes => {
                    assert_ne!(after.0, before.0, "{what}: content digest unchanged");
                    assert_ne!(after.1, before.1, "{what}: full digest unchanged");
                }
                Ok(after) => assert_eq!(after, before, "{what}: the content did not change"),
                Err(e) => assert!(changes, "{what}: {e}"),
            }
        }
    }

    fn write_ops(d: &mut Vhdx, ops: &[(u64, u32, u8)]) {
        let size = d.virtual_size();
        for &(at, n, fill) in ops {
            let at = at % size;
            let n = u64::from(n).min(size - at) as usize;
            if fill == 0xFF {
                d.trim(
                    at / 4096 * 4096,
                    (n as u64 / 4096 * 4096).min(size - at / 4096 * 4096),
                )
                .unwrap();
            } else {
                d.write(at, &vec![fill; n]).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The fast digest equals the definition computed from the raw virtual bytes, for dynamic
        /// disks and differencing chains (partial blocks, trims, zeros written as data), on
        /// files (holes found by SEEK_DATA) and in memory; and a chain digests like its flattened
        /// copy.
        #[test]
        fn content_digest_is_the_leaf_list_of_the_virtual_bytes(
            base in proptest::collection::vec((0u64..(20 << 20), 1u32..300_000, prop_oneof![Just(0u8), Just(0xFFu8), 1u8..0xFE]), 0..12),
            child in proptest::collection::vec((0u64..(20 << 20), 1u32..300_000, prop_oneof![Just(0u8), Just(0xFFu8), 1u8..0xFE]), 0..12),
            block_mib in prop_oneof![Just(1u64), Just(2u64), Just(4u64)],
        ) {
            let dir = Dir::new("prop");
            let size = 20 * MIB + 3 * 512;
            let (p, c, flat) = (dir.at("p.vhdx"), dir.at("c.avhdx"), dir.at("flat.vhdx"));
            let mut d = create(&p, &opts(size, block_mib * MIB), None).unwrap();
            write_ops(&mut d, &base);
            d.close().unwrap();
            let parent = Vhdx::open(&p, false).unwrap();
            prop_assert_eq!(parent.content_digest().unwrap(), reference(&content(&parent)));
            drop(parent);
            let mut k = create(&c, &CreateOptions { disk_type: DiskType::Differencing, ..CreateOptions::dynamic(size) }, Some(&p)).unwrap();
            write_ops(&mut k, &child);
            k.close().unwrap();
            let k = Vhdx::open(&c, false).unwrap();
            let want = reference(&content(&k));
            prop_assert_eq!(&k.content_digest().unwrap(), &want);
            k.copy_to(&flat, None, false).unwrap();
            let f = Vhdx::open(&flat, false).unwrap();
            prop_assert_eq!(&f.content_digest().unwrap(), &want);
            // Paired: each digest is the one computed alone, shared leaves or not.
            let p = Vhdx::open(&p, false).unwrap();
            let (a, b) = k.content_digests_with(&f).unwrap();
            prop_assert_eq!((&a, &b), (&want, &want));
            let (a, b) = k.content_digests_with(&p).unwrap();
            prop_assert_eq!(&a, &want);
            prop_assert_eq!(b, reference(&content(&p)));
            let mut m = create_on(mem(), &opts(size, block_mib * MIB), None, None).unwrap();
            write_ops(&mut m, &base);
            write_ops(&mut m, &child);
            prop_assert_eq!(m.content_digest().unwrap(), want);
        }
    }
}
