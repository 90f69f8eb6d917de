//! What a backup needs: the allocated extents of a disk (or of a differencing chain seen as one
//! disk), a copy into a new dynamic disk holding only that data, and raw ↔ VHDX conversion. Every
//! output follows the rule of `paths.rs`. (Merging a child into its parent is `merge.rs`.)

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::bat;
use super::create::{create_in_place, CreateOptions};
use super::error::{VResult, VhdxError};
use super::file::Vhdx;
use super::format::*;
use super::paths::{self, Input, Output};
use super::DiskType;

/// Merges sorted, possibly touching `(offset, length)` runs.
fn merge_runs(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (o, l) in v {
        if l == 0 {
            continue;
        }
        match out.last_mut() {
            Some((po, pl)) if *po + *pl >= o => {
                let end = (*po + *pl).max(o + l);
                *pl = end - *po;
            }
            _ => out.push((o, l)),
        }
    }
    out
}

/// `a` minus the ranges `cut` (both sorted and merged).
fn subtract(a: &[(u64, u64)], cut: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(o, l) in a {
        let mut s = o;
        let e = o + l;
        while j < cut.len() && cut[j].0 + cut[j].1 <= s {
            j += 1;
        }
        let mut k = j;
        while s < e && k < cut.len() && cut[k].0 < e {
            let (co, cl) = cut[k];
            if co > s {
                out.push((s, co - s));
            }
            s = s.max(co + cl);
            k += 1;
        }
        if s < e {
            out.push((s, e - s));
        }
    }
    out
}

impl Vhdx {
    /// The byte ranges that hold data in this disk seen whole (its own blocks, and for a
    /// differencing disk the parent's data where this disk defers to it), merged and ascending.
    pub fn allocated_extents(&self) -> VResult<Vec<(u64, u64)>> {
        let bs = self.geo.block_size;
        let vs = self.meta.virtual_size;
        let mut own = Vec::new();
        let mut masked = Vec::new();
        for b in 0..self.geo.payload_blocks {
            let start = b * bs;
            let len = bs.min(vs - start);
            match bat::state(self.block_entry(b)) {
                bat::PB_FULLY_PRESENT | bat::PB_PARTIALLY_PRESENT => own.push((start, len)),
                bat::PB_NOT_PRESENT => {}
                _ => masked.push((start, len)),
            }
        }
        let own = merge_runs(own);
        let Some(p) = &self.parent else {
            return Ok(own);
        };
        let cut = merge_runs(own.iter().chain(&masked).copied().collect());
        let inherited = subtract(&p.allocated_extents()?, &cut);
        Ok(merge_runs(own.into_iter().chain(inherited).collect()))
    }

    /// Copies this disk (a chain is flattened) into a new dynamic disk at `dest` that holds only
    /// the allocated, non-zero data. Returns the bytes copied. `dest` follows the output rule
    /// (`paths.rs`): never one of this chain's files, replaced only with `overwrite`, staged and
    /// renamed into place when complete.
    pub fn copy_to(&self, dest: &Path, block_size: Option<u64>, overwrite: bool) -> VResult<u64> {
        let out = Output::begin(dest, overwrite, self.inputs())?;
        let mut disk = create_in_place(
            out.staged(),
            &CreateOptions {
                virtual_size: self.meta.virtual_size,
                disk_type: DiskType::Dynamic,
                block_size: Some(block_size.unwrap_or(self.geo.block_size)),
                logical_sector_size: Some(self.meta.logical_sector_size),
                physical_sector_size: Some(self.meta.physical_sector_size),
            },
            None,
            None,
        )?;
        let copied = self.copy_extents(|off, data| disk.write(off, data))?;
        disk.close()?;
        drop(disk);
        out.commit()?;
        Ok(copied)
    }

    /// Feeds every allocated, non-zero piece (at most 4 MiB, block aligned) to `sink`.
    fn copy_extents(&self, mut sink: impl FnMut(u64, &[u8]) -> VResult<()>) -> VResult<u64> {
        let step = self.geo.block_size.min(4 * MIB);
        let mut buf = vec![0u8; step as usize];
        let mut copied = 0u64;
        for (o, l) in self.allocated_extents()? {
            let mut p = o;
            while p < o + l {
                let n = (step - p % step).min(o + l - p) as usize;
                self.read(p, &mut buf[..n])?;
                if buf[..n].iter().any(|&b| b != 0) {
                    sink(p, &buf[..n])?;
                    copied += n as u64;
                }
                p += n as u64;
            }
        }
        Ok(copied)
    }

    /// Writes the whole virtual disk as a raw (sparse) file at `dest` (the output rule applies,
    /// as for [`Vhdx::copy_to`]).
    pub fn export_raw(&self, dest: &Path, overwrite: bool) -> VResult<u64> {
        let out = Output::begin(dest, overwrite, self.inputs())?;
        let name = dest.display().to_string();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(out.staged())
            .map_err(|e| VhdxError::io(&name, e))?;
        f.set_len(self.meta.virtual_size)
            .map_err(|e| VhdxError::io(&name, e))?;
        let n = self.copy_extents(|off, data| {
            f.write_all_at(data, off)
                .map_err(|e| VhdxError::io(&name, e))
        })?;
        f.sync_all().map_err(|e| VhdxError::io(&name, e))?;
        drop(f);
        out.commit()?;
        Ok(n)
    }

    /// Makes a dynamic disk at `dest` from a raw image (size rounded up to the sector size);
    /// all-zero blocks stay unallocated. `dest` follows the output rule (never the raw image
    /// itself; replaced only with `overwrite`; published when complete). Returns it open.
    pub fn import_raw(
        src: &Path,
        dest: &Path,
        block_size: Option<u64>,
        logical_sector_size: Option<u32>,
        overwrite: bool,
    ) -> VResult<Vhdx> {
        let name = src.display().to_string();
        paths::check_regular(src).or_else(|e| match &e {
            // A raw image may be a block device; a directory or FIFO may not.
            VhdxError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
                let is_dev = std::fs::metadata(src).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_block_device()
                });
                if is_dev {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            _ => Err(e),
        })?;
        let mut f = File::open(src).map_err(|e| VhdxError::io(&name, e))?;
        let len = f.metadata().map_err(|e| VhdxError::io(&name, e))?.len();
        let inputs = Input::at(src).into_iter().collect();
        let out = Output::begin(dest, overwrite, inputs)?;
        let lss = logical_sector_size.unwrap_or(512);
        let mut disk = create_in_place(
            out.staged(),
            &CreateOptions {
                virtual_size: round_up(len.max(1), u64::from(lss)),
                disk_type: DiskType::Dynamic,
                block_size,
                logical_sector_size: Some(lss),
                physical_sector_size: None,
            },
            None,
            None,
        )?;
        let step = disk.block_size().min(4 * MIB) as usize;
        let mut buf = vec![0u8; step];
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(step as u64) as usize;
            f.read_exact(&mut buf[..n])
                .map_err(|e| VhdxError::io(&name, e))?;
            if buf[..n].iter().any(|&b| b != 0) {
                disk.write(pos, &buf[..n])?;
            }
            pos += n as u64;
        }
        disk.flush()?;
        out.commit()?;
        disk.name = dest.display().to_string();
        disk.path = Some(dest.to_path_buf());
        Ok(disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_algebra() {
        assert_eq!(
            merge_runs(vec![(10, 5), (0, 10), (20, 1)]),
            vec![(0, 15), (20, 1)]
        );
        assert_eq!(
            subtract(&[(0, 100)], &[(10, 10), (50, 60)]),
            vec![(0, 10), (20, 30)]
        );
    }
}
