//! What a snapshot view holds, and copying it out without the zeros: the data extents of a view
//! (so a digest reads only where data may be) and a sparse copy of a view into a new file.
//!
//! A view's chunk comes from the diff area (a slot), from the live file (not written since the
//! snapshot; bytes past the snapshot-time length are zeros), or is zeros. So the view may hold
//! data where the live file does (`SEEK_DATA`/`SEEK_HOLE`, below the snapshot-time length) and in
//! every chunk held in a slot; everything else reads as zeros. A copy moves each live data piece
//! file to file inside the kernel (`copy_file_range`, which clones blocks where the file system
//! can: Btrfs, XFS with reflink), reads the diff area's chunks through the checked read (a slot
//! with a CRC-32C is checked, a damaged one fails the copy and invalidates its snapshots, as any
//! view read does), and leaves the rest a hole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::core::Core;
use super::error::{Result, VolumeError};
use super::handle::SnapshotView;
use super::state::{Source, ZERO_SLOT};
use crate::storage::{file_data_extents, merge_extents};

impl Core {
    /// The data extents of `key` as snapshot `id` shows it (see the module doc).
    pub(crate) fn view_data_extents(
        &self,
        id: u64,
        key: &str,
        live: Option<&File>,
    ) -> Result<Vec<(u64, u64)>> {
        let f = self.snap_file(id, key)?;
        let len = f.view_len();
        let cs = self.state.chunk_size();
        let mut ranges = match live {
            Some(file) => {
                let have = file.metadata().map_err(|e| VolumeError::io(key, e))?.len();
                file_data_extents(file, have.min(f.size).min(len))
                    .map_err(|e| VolumeError::io(key, e))?
            }
            None => Vec::new(),
        };
        let slots = f
            .preserved
            .iter()
            .chain(f.overlay.iter())
            .filter(|&(_, &slot)| slot != ZERO_SLOT)
            .map(|(&c, _)| c);
        for c in slots {
            let at = c * cs;
            if at < len {
                ranges.push((at, cs.min(len - at)));
            }
        }
        Ok(merge_extents(ranges))
    }

    /// Copies `key` as snapshot `id` shows it into `dest` (an empty file), data extents only:
    /// holes stay holes. Returns the view's length (what the copy covers).
    pub(crate) fn view_copy_to(
        &mut self,
        id: u64,
        key: &str,
        live: Option<&File>,
        dest: &File,
        dest_name: &str,
    ) -> Result<u64> {
        let extents = self.view_data_extents(id, key, live)?;
        let f = self.snap_file(id, key)?;
        let len = f.view_len();
        let size = f.size;
        let shift = self.state.chunk_shift;
        // Pieces of one source each, `(start, length, from the diff area)`; runs of consecutive
        // slots and of live chunks go in one piece.
        let mut pieces: Vec<(u64, u64, bool)> = Vec::new();
        for (start, n) in extents {
            let end = start + n;
            let mut pos = start;
            while pos < end {
                let c = pos >> shift;
                let src = self.state.source(f, c);
                let mut piece_end = ((c + 1) << shift).min(end);
                let mut next = c + 1;
                while piece_end < end {
                    let contiguous = match (src, self.state.source(f, next)) {
                        (Source::Live, Source::Live) | (Source::Zero, Source::Zero) => true,
                        (Source::Slot(a), Source::Slot(b)) => {
                            u64::from(b) == u64::from(a) + (next - c)
                        }
                        _ => false,
                    };
                    if !contiguous {
                        break;
                    }
                    piece_end = ((next + 1) << shift).min(end);
                    next += 1;
                }
                match src {
                    Source::Zero => {}
                    Source::Slot(_) => pieces.push((pos, piece_end - pos, true)),
                    // Bytes past the snapshot-time length were not there: a hole.
                    Source::Live => {
                        let have = size.clamp(pos, piece_end) - pos;
                        if have > 0 {
                            pieces.push((pos, have, false));
                        }
                    }
                }
                pos = piece_end;
            }
        }
        let mut buf = Vec::new();
        for (pos, n, slot) in pieces {
            if slot {
                buf.resize(n as usize, 0);
                self.view_read_checked(id, key, live, &mut buf, pos)?;
                dest.write_all_at(&buf, pos)
                    .map_err(|e| VolumeError::io(dest_name, e))?;
            } else {
                let file = live.ok_or_else(|| {
                    VolumeError::io(key, io::Error::from(io::ErrorKind::NotFound))
                })?;
                copy_range(file, pos, dest, pos, n).map_err(|e| VolumeError::io(key, e))?;
            }
        }
        dest.set_len(len)
            .map_err(|e| VolumeError::io(dest_name, e))?;
        Ok(len)
    }
}

/// Copies `n` bytes at `from` of `src` to `to` of `dst` inside the kernel (`copy_file_range`),
/// through user space where the kernel cannot (another file system, an old kernel).
pub(crate) fn copy_range(src: &File, from: u64, dst: &File, to: u64, n: u64) -> io::Result<()> {
    use rustix::io::Errno;
    let (mut a, mut b, mut left) = (from, to, n);
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut a), dst, Some(&mut b), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the source ends at {a}, before the {n} bytes at {from} were copied"),
                ))
            }
            Ok(done) => left -= done as u64,
            Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) => {
                return copy_through_user_space(src, a, dst, b, left)
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_through_user_space(src: &File, from: u64, dst: &File, to: u64, n: u64) -> io::Result<()> {
    let mut buf = vec![0u8; n.min(8 << 20) as usize];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..k], from + done)?;
        dst.write_all_at(&buf[..k], to + done)?;
        done += k as u64;
    }
    Ok(())
}

impl SnapshotView {
    /// Copies the file as this snapshot shows it into a new file at `dest` (refused if it exists),
    /// sparse: only data extents are copied, inside the kernel. Returns the bytes the copy covers
    /// (the view's length).
    pub fn copy_to(&self, dest: &std::path::Path) -> Result<u64> {
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| VolumeError::io(dest, e))?;
        let mut core = super::core::lock(&self.shared)?;
        let name = dest.display().to_string();
        let copied = core.view_copy_to(self.id, &self.key, self.live.as_ref(), &out, &name);
        drop(core);
        match copied {
            Ok(n) => Ok(n),
            Err(e) => {
                let _ = std::fs::remove_file(dest);
                Err(e)
            }
        }
    }

    /// See [`Storage::data_extents`](crate::storage::Storage::data_extents).
    pub fn data_extents(&self) -> Result<Vec<(u64, u64)>> {
        let core = super::core::lock(&self.shared)?;
        core.view_data_extents(self.id, &self.key, self.live.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::storage::{file_data_extents, Storage};
    use crate::volume::{Volume, VolumeOptions};

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A sparse file, a snapshot, then live writes over data, over holes and past the end: the
    /// view's extents cover every byte it holds, and its sparse copy reads the same as the view
    /// while staying sparse.
    #[test]
    fn view_extents_and_sparse_copy() {
        let d = Dir(std::env::temp_dir().join(format!("vssim-sparse-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&d.0);
        std::fs::create_dir_all(d.0.join("root")).unwrap();
        let v = Volume::open(
            &d.0.join("root"),
            &d.0.join("diff"),
            VolumeOptions::default(),
        )
        .unwrap();
        let f = v.open_file(Path::new("disk.bin"), true).unwrap();
        f.set_len(32 << 20).unwrap();
        f.write(&[7u8; 5000], 1 << 20).unwrap();
        f.write(&[9u8; 100], 20 << 20).unwrap();
        let id = v.create_snapshot().unwrap();
        // Over data (preserved), over a hole (preserved: zeros), past the end (not preserved).
        f.write(&[1u8; 30000], (1 << 20) + 2000).unwrap();
        f.write(&[2u8; 4096], 10 << 20).unwrap();
        f.write(&[3u8; 4096], 40 << 20).unwrap();
        let view = v.open_view(id, Path::new("disk.bin"), false).unwrap();
        let len = view.len().unwrap();
        assert_eq!(len, 32 << 20);
        let mut want = vec![0u8; len as usize];
        view.read(&mut want, 0).unwrap();
        assert_eq!(want[(1 << 20) + 2000], 7);
        assert_eq!(want[10 << 20], 0);
        let ext = Storage::data_extents(&view).unwrap().unwrap();
        for (i, &b) in want.iter().enumerate() {
            if b != 0 {
                let at = i as u64;
                assert!(
                    ext.iter().any(|&(o, n)| o <= at && at < o + n),
                    "byte {at} outside {ext:?}"
                );
            }
        }
        assert!(ext.iter().map(|e| e.1).sum::<u64>() < 1 << 20, "{ext:?}");
        let out = d.0.join("copy.bin");
        assert_eq!(view.copy_to(&out).unwrap(), len);
        let got = std::fs::read(&out).unwrap();
        assert!(got == want, "the copy differs from the view");
        let file = std::fs::File::open(&out).unwrap();
        let held: u64 = file_data_extents(&file, len)
            .unwrap()
            .iter()
            .map(|e| e.1)
            .sum();
        assert!(
            held < 1 << 20,
            "the copy is not sparse: {held} bytes of data"
        );
        assert!(
            view.copy_to(&out).is_err(),
            "an existing file is never overwritten"
        );
    }
}
