//! The digest of a disk's virtual content: BLAKE3 over every byte a reader of the disk sees, in
//! order. Ranges no file of the chain holds (unallocated, zero, unmapped blocks) are hashed as
//! zeros without being read, so a sparse disk hashes quickly and a disk and its backup (full or a
//! differencing chain) hash the same exactly when they read the same.

use super::bat;
use super::error::VResult;
use super::file::Vhdx;
use super::format::MIB;

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
}

#[cfg(test)]
mod tests {
    use crate::storage::MemStorage;
    use crate::vhdx::{create_on, CreateOptions};

    fn mem() -> Box<MemStorage> {
        Box::new(MemStorage {
            bytes: Vec::new(),
            name: "mem".into(),
        })
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
}
