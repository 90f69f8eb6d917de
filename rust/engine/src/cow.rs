//! Copy-on-write snapshot tracking of one volume, as the system provider (volsnap) does it.
//!
//! How this works. Live snapshots are kept oldest first; snapshot `k` owns an *epoch*: the time from
//! its creation to the next live snapshot's creation (or to now, for the newest). Each epoch keeps
//! `written`, the chunks first written during it. A snapshot has preserved chunk `c` exactly when
//! `c` was written in its own epoch or a later one. So a write to `c` during the newest epoch `n`:
//!
//! - `c` already in `written[n]`: nothing to copy (the copy-once rule);
//! - otherwise, if `c` was allocated when snapshot `n` was taken, the old chunk is copied once into
//!   snapshot `n`'s diff area — and that one copy serves every older snapshot that had not preserved
//!   `c` either, since none of them saw a write to `c` since they were taken (volsnap's rule);
//! - if `c` lies beyond snapshot `n`'s allocated extent (free space then), it is copied only if an
//!   older snapshot still needs it (the volume had shrunk in between), else not at all.
//!
//! Deleting the oldest snapshot frees its diff area. Deleting a newer one merges its epoch into the
//! previous snapshot's: copies still needed by an older snapshot move to that snapshot's diff area
//! (as volsnap keeps them), the rest are freed. With a diff-area limit, a copy that would not fit
//! first deletes the oldest snapshots until it does — and the caller is told which ones.

use crate::chunkset::{with_scratch, ChunkSet, Dealt, GROUPED_PARALLEL_MIN};
use crate::error::{check_extents, check_power_of_two, Error, Result};

pub use crate::volsnap::{DEFAULT_CHUNK_SIZE, MAX_SNAPSHOTS};
/// Smallest and largest copy units the tracker accepts.
pub const MIN_CHUNK_SIZE: u64 = 4 * 1024;
pub const MAX_CHUNK_SIZE: u64 = 1024 * 1024;

/// One live snapshot and its epoch.
#[derive(Debug, Clone)]
struct Epoch {
    id: u64,
    /// Chunks below this were allocated at snapshot time; only they are ever copied for it.
    alloc_chunks: u64,
    /// Chunks first written during this epoch.
    written: ChunkSet,
    /// Chunks copied into this diff area that lie at or past `alloc_chunks` (they serve an older
    /// snapshot whose allocated extent was larger). Empty unless the volume shrank.
    copied_beyond: ChunkSet,
    /// Chunks held in this snapshot's diff area now.
    diff_chunks: u64,
    /// Chunks copied while this snapshot was the newest (cumulative; not changed by merges).
    copied_while_newest: u64,
}

/// What one live snapshot costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: u64,
    pub allocated_bytes: u64,
    /// Chunks held in this snapshot's diff area now.
    pub diff_area_chunks: u64,
    /// Chunks copied while this snapshot was the newest one.
    pub chunks_copied: u64,
}

/// The result of applying a batch of writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub chunks_copied: u64,
    pub bytes_copied: u64,
    /// Snapshots deleted because the diff area was full, oldest first.
    pub deleted_snapshots: Vec<u64>,
}

impl WriteOutcome {
    /// Adds the outcome of the next part of a batch.
    pub fn add(&mut self, part: WriteOutcome) {
        self.chunks_copied += part.chunks_copied;
        self.bytes_copied += part.bytes_copied;
        self.deleted_snapshots.extend(part.deleted_snapshots);
    }
}

/// Copy-on-write tracker of one volume.
#[derive(Debug, Clone)]
pub struct CowTracker {
    volume_size: u64,
    chunk_shift: u32,
    chunk_count: u64,
    diff_area_limit: Option<u64>,
    /// Live snapshots, oldest first.
    epochs: Vec<Epoch>,
    next_id: u64,
    diff_chunks: u64,
    peak_diff_chunks: u64,
    total_copied: u64,
    /// The largest `alloc_chunks` of any snapshot but the newest; a write past the newest one's
    /// extent needs the slow path only below this.
    older_alloc_max: u64,
    /// The `written` set of the epoch removed last, for the next snapshot to start from.
    spare: Spare,
}

/// An emptied `written` set kept for the next epoch ([`ChunkSet::empty_keeping_bitmaps`]):
/// where a CSV's snapshots come and go (Windows Server 2008 R2 takes one per set), the next
/// epoch's writes land on the leaves the last one's did, and starting from its bitmaps spares
/// every leaf's sparse phase, its conversion and its fresh pages. Memory only: no count or
/// answer depends on it, and a copy of the tracker (a foresight's) starts without one.
#[derive(Debug, Default)]
struct Spare(Option<ChunkSet>);

impl Clone for Spare {
    fn clone(&self) -> Self {
        Spare(None)
    }
}

impl CowTracker {
    /// A tracker for a volume of `volume_size` bytes copied in units of `chunk_size` bytes
    /// (a power of two, 4 KiB – 1 MiB), with an optional diff-area limit in bytes.
    pub fn new(volume_size: u64, chunk_size: u64, diff_area_limit: Option<u64>) -> Result<Self> {
        check_power_of_two("chunk_size", chunk_size, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)?;
        let chunk_count = ChunkSet::universe_for("volume_size", volume_size, chunk_size, "chunk")?;
        Ok(CowTracker {
            volume_size,
            chunk_shift: chunk_size.trailing_zeros(),
            chunk_count,
            diff_area_limit,
            epochs: Vec::new(),
            next_id: 1,
            diff_chunks: 0,
            peak_diff_chunks: 0,
            total_copied: 0,
            older_alloc_max: 0,
            spare: Spare::default(),
        })
    }

    pub fn volume_size(&self) -> u64 {
        self.volume_size
    }

    pub fn chunk_size(&self) -> u64 {
        1 << self.chunk_shift
    }

    pub fn diff_area_limit(&self) -> Option<u64> {
        self.diff_area_limit
    }

    /// Changes the limit; takes effect at the next copy (as `vssadmin resize shadowstorage`).
    pub fn set_diff_area_limit(&mut self, limit: Option<u64>) {
        self.diff_area_limit = limit;
    }

    /// Bytes held in the diff area now.
    pub fn diff_area_bytes(&self) -> u64 {
        self.diff_chunks << self.chunk_shift
    }

    /// The most bytes the diff area ever held.
    pub fn peak_diff_area_bytes(&self) -> u64 {
        self.peak_diff_chunks << self.chunk_shift
    }

    /// Chunks copied since the tracker was made (the copy-on-write I/O done).
    pub fn total_chunks_copied(&self) -> u64 {
        self.total_copied
    }

    /// Memory held by the tracker's sets, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.epochs
            .iter()
            .map(|e| e.written.memory_bytes() + e.copied_beyond.memory_bytes())
            .sum::<usize>()
            + self.spare.0.as_ref().map_or(0, ChunkSet::memory_bytes)
            + std::mem::size_of::<Self>()
    }

    /// Live snapshots, oldest first.
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.epochs
            .iter()
            .map(|e| SnapshotInfo {
                id: e.id,
                allocated_bytes: (e.alloc_chunks << self.chunk_shift).min(self.volume_size),
                diff_area_chunks: e.diff_chunks,
                chunks_copied: e.copied_while_newest,
            })
            .collect()
    }

    /// How many snapshots are live.
    pub fn snapshot_count(&self) -> usize {
        self.epochs.len()
    }

    pub fn is_live(&self, id: u64) -> bool {
        self.epochs.iter().any(|e| e.id == id)
    }

    /// Takes a snapshot now. `allocated_bytes` is the volume's allocated extent: chunks at or past
    /// it held free space and are never copied for this snapshot.
    pub fn create_snapshot(&mut self, allocated_bytes: u64) -> Result<u64> {
        if allocated_bytes > self.volume_size {
            return Err(Error::invalid(
                "allocated_bytes",
                format!(
                    "{allocated_bytes} is larger than the volume ({} bytes)",
                    self.volume_size
                ),
            ));
        }
        if self.epochs.len() >= MAX_SNAPSHOTS {
            return Err(Error::State(format!(
                "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED: the volume already has {MAX_SNAPSHOTS} \
                 live snapshots"
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Some(prev) = self.epochs.last() {
            self.older_alloc_max = self.older_alloc_max.max(prev.alloc_chunks);
        }
        let written = self.fresh_written();
        self.epochs.push(Epoch {
            id,
            alloc_chunks: allocated_bytes.div_ceil(self.chunk_size()),
            written,
            copied_beyond: ChunkSet::new(self.chunk_count),
            diff_chunks: 0,
            copied_while_newest: 0,
        });
        Ok(id)
    }

    /// Deletes a live snapshot; returns the diff-area bytes freed.
    pub fn delete_snapshot(&mut self, id: u64) -> Result<u64> {
        let index =
            self.epochs.iter().position(|e| e.id == id).ok_or_else(|| {
                Error::invalid("snapshot_id", format!("{id} is not a live snapshot"))
            })?;
        let before = self.diff_chunks;
        self.remove_epoch(index);
        Ok((before - self.diff_chunks) << self.chunk_shift)
    }

    /// An empty set for a new epoch's `written`: the spare if there is one (every epoch's set
    /// has the tracker's one universe).
    fn fresh_written(&mut self) -> ChunkSet {
        match self.spare.0.take() {
            Some(mut set) => {
                set.empty_keeping_bitmaps();
                set
            }
            None => ChunkSet::new(self.chunk_count),
        }
    }

    fn remove_epoch(&mut self, index: usize) {
        let gone = self.epochs.remove(index);
        if index == 0 {
            // The oldest: nobody older can need its copies.
            self.diff_chunks -= gone.diff_chunks;
        } else {
            let prev = index - 1;
            let prev_alloc = self.epochs[prev].alloc_chunks;
            let mut kept = 0u64;
            let mut kept_beyond = Vec::new();
            let held = gone
                .written
                .iter()
                .take_while(|&c| c < gone.alloc_chunks)
                .chain(gone.copied_beyond.iter());
            for c in held {
                if self.needed_before(c, prev) {
                    kept += 1;
                    if c >= prev_alloc {
                        kept_beyond.push(c);
                    }
                }
            }
            let p = &mut self.epochs[prev];
            p.diff_chunks += kept;
            for c in kept_beyond {
                p.copied_beyond.insert(c);
            }
            p.written.union_with(&gone.written);
            self.diff_chunks -= gone.diff_chunks - kept;
        }
        self.spare.0 = Some(gone.written);
        self.release_orphans(index);
        self.older_alloc_max = self
            .epochs
            .iter()
            .rev()
            .skip(1)
            .map(|e| e.alloc_chunks)
            .max()
            .unwrap_or(0);
    }

    /// Frees copies held past a snapshot's allocated extent (`copied_beyond`, kept only for an older
    /// snapshot) in epochs from `from` on, once no live older snapshot needs them any more.
    fn release_orphans(&mut self, from: usize) {
        for k in from..self.epochs.len() {
            if self.epochs[k].copied_beyond.is_empty() {
                continue;
            }
            let orphans: Vec<u64> = self.epochs[k]
                .copied_beyond
                .iter()
                .filter(|&c| k == 0 || !self.needed_before(c, k - 1))
                .collect();
            let e = &mut self.epochs[k];
            for &c in &orphans {
                e.copied_beyond.remove(c);
            }
            e.diff_chunks -= orphans.len() as u64;
            self.diff_chunks -= orphans.len() as u64;
        }
    }

    /// Whether a live snapshot at or before `upto` still needs the old copy of `c`: it had `c`
    /// allocated and nobody wrote `c` since it was taken (before the current epoch's copy).
    fn needed_before(&self, c: u64, upto: usize) -> bool {
        for e in self.epochs[..=upto].iter().rev() {
            if e.written.contains(c) {
                return false;
            }
            if c < e.alloc_chunks {
                return true;
            }
        }
        false
    }

    /// Chunks the write `[first, last]` would copy now, without changing anything.
    fn copies_needed(&self, first: u64, end: u64) -> u64 {
        let Some(newest) = self.epochs.last() else {
            return 0;
        };
        let alloc_end = end.min(newest.alloc_chunks);
        let mut n = if first < alloc_end {
            (alloc_end - first) - newest.written.count_range(first, alloc_end)
        } else {
            0
        };
        let beyond = first.max(newest.alloc_chunks);
        let slow_end = end.min(self.older_alloc_max);
        let upto = self.epochs.len() - 1;
        for c in beyond..slow_end {
            if !newest.written.contains(c) && upto > 0 && self.needed_before(c, upto - 1) {
                n += 1;
            }
        }
        n
    }

    /// Applies one write of `[offset, offset + length)`; returns the chunks it copied.
    fn write_one(&mut self, offset: u64, length: u32, outcome: &mut WriteOutcome) -> u64 {
        if length == 0 || self.epochs.is_empty() {
            return 0;
        }
        let first = offset >> self.chunk_shift;
        let end = ((offset + u64::from(length) - 1) >> self.chunk_shift) + 1;
        if let Some(limit) = self.diff_area_limit {
            // Make room first: delete the oldest snapshots until this write's copies fit.
            loop {
                let need = self.copies_needed(first, end);
                if need == 0 || (self.diff_chunks + need) << self.chunk_shift <= limit {
                    break;
                }
                let oldest = self.epochs[0].id;
                self.remove_epoch(0);
                outcome.deleted_snapshots.push(oldest);
                if self.epochs.is_empty() {
                    return 0;
                }
            }
        }
        let upto = self.epochs.len() - 1;
        let older_alloc_max = self.older_alloc_max;
        let mut copied = {
            let newest = &mut self.epochs[upto];
            let alloc_end = end.min(newest.alloc_chunks);
            if first < alloc_end {
                newest.written.insert_range(first, alloc_end)
            } else {
                0
            }
        };
        let beyond = first.max(self.epochs[upto].alloc_chunks);
        if beyond < end {
            if beyond < older_alloc_max {
                for c in beyond..end {
                    if self.epochs[upto].written.contains(c) {
                        continue;
                    }
                    let needed = c < older_alloc_max && upto > 0 && self.needed_before(c, upto - 1);
                    let newest = &mut self.epochs[upto];
                    newest.written.insert(c);
                    if needed {
                        newest.copied_beyond.insert(c);
                        copied += 1;
                    }
                }
            } else {
                self.epochs[upto].written.insert_range(beyond, end);
            }
        }
        let newest = &mut self.epochs[upto];
        newest.diff_chunks += copied;
        newest.copied_while_newest += copied;
        self.diff_chunks += copied;
        self.total_copied += copied;
        self.peak_diff_chunks = self.peak_diff_chunks.max(self.diff_chunks);
        copied
    }

    /// Whether the batch's chunks can be applied in any order (and so in parallel): no copy can
    /// overflow the diff area (so no snapshot is deleted mid-batch), and no chunk past the newest
    /// snapshot's allocated extent is needed by an older one. Then each chunk's fate depends only
    /// on whether it was written before in this epoch, and the copies are the new chunks below the
    /// newest snapshot's extent.
    fn batch_is_independent(&self, lengths: &[u32]) -> bool {
        let Some(newest) = self.epochs.last() else {
            return false;
        };
        if self.older_alloc_max > newest.alloc_chunks {
            return false;
        }
        self.cannot_overflow(lengths)
    }

    /// Whether the writes of `lengths` can be applied without the diff area overflowing (so no
    /// snapshot can be deleted by them), whatever they hit.
    pub fn cannot_overflow(&self, lengths: &[u32]) -> bool {
        self.copies_fit(self.most_copies(lengths))
    }

    /// The most chunks the writes of `lengths` can copy: each copies at most the chunks it spans.
    fn most_copies(&self, lengths: &[u32]) -> u64 {
        lengths
            .iter()
            .map(|&n| (u64::from(n) >> self.chunk_shift) + 2)
            .sum()
    }

    /// Whether `most` more chunks fit in the diff area.
    fn copies_fit(&self, most: u64) -> bool {
        match self.diff_area_limit {
            None => true,
            Some(limit) => self
                .diff_chunks
                .checked_add(most)
                .and_then(|n| n.checked_mul(1 << self.chunk_shift))
                .is_some_and(|bytes| bytes <= limit),
        }
    }

    /// Applies a batch of writes in order. The whole batch is checked first: a bad entry changes
    /// nothing. When `per_write` is given (same length as `offsets`), it receives the chunks each
    /// write copied.
    pub fn apply_writes(
        &mut self,
        offsets: &[u64],
        lengths: &[u32],
        per_write: Option<&mut [u32]>,
    ) -> Result<WriteOutcome> {
        if per_write.is_none() && offsets.len() >= ChunkSet::PARALLEL_MIN {
            return with_scratch(|dealt| {
                if self.deal_writes(offsets, lengths, dealt)? {
                    Ok(self.apply_dealt(dealt))
                } else {
                    self.apply_in_order(offsets, lengths, None)
                }
            });
        }
        self.apply_in_order(offsets, lengths, per_write)
    }

    /// The first half of a batch whose writes are independent (see `batch_is_independent`):
    /// checks every write and deals its chunks into `dealt` — one pass over the arrays — and
    /// returns true; [`apply_dealt`](Self::apply_dealt) then applies them, with nothing else
    /// done to the tracker in between. Returns false (nothing dealt, nothing checked) when the
    /// batch must be applied in order with [`apply_writes`](Self::apply_writes). So a caller can
    /// read its arrays in one place and apply them in another (the Python binding reads numpy's
    /// buffers holding the GIL and applies with it released).
    pub fn deal_writes(&self, offsets: &[u64], lengths: &[u32], dealt: &mut Dealt) -> Result<bool> {
        let Some(newest) = self.epochs.last() else {
            return Ok(false);
        };
        if !self.batch_is_independent(lengths) {
            return Ok(false);
        }
        newest
            .written
            .deal(offsets, lengths, self.chunk_shift, self.volume_size, dealt)?;
        Ok(true)
    }

    /// Applies a batch dealt by [`deal_writes`](Self::deal_writes) (which returned true).
    pub fn apply_dealt(&mut self, dealt: &Dealt) -> WriteOutcome {
        let Some(newest) = self.epochs.last_mut() else {
            return WriteOutcome::default();
        };
        let copied = newest.written.apply_dealt(dealt, newest.alloc_chunks);
        self.count_copies(copied)
    }

    /// Applies several batches (*groups*: one VM's writes of a window each) as
    /// [`apply_writes`](Self::apply_writes) on each in turn would, and adds each group's chunks
    /// copied to `copied[g]`. Every group is checked first: a bad entry changes nothing. When the
    /// writes are independent (see `batch_is_independent`) and many, they are dealt in one pass
    /// and applied shard by shard on the pool's threads, each new chunk credited to the group
    /// whose write touched it first — as in turn; otherwise the groups go one by one.
    pub fn apply_groups(
        &mut self,
        groups: &[(&[u64], &[u32])],
        copied: &mut [u64],
    ) -> Result<WriteOutcome> {
        if copied.len() != groups.len() {
            return Err(Error::invalid(
                "copied",
                format!("has {} entries, expected {}", copied.len(), groups.len()),
            ));
        }
        let total: usize = groups.iter().map(|g| g.0.len()).sum();
        // As `batch_is_independent`, for the groups together.
        let independent = self
            .epochs
            .last()
            .is_some_and(|newest| self.older_alloc_max <= newest.alloc_chunks)
            && self.copies_fit(groups.iter().map(|g| self.most_copies(g.1)).sum());
        if total >= GROUPED_PARALLEL_MIN && independent {
            let (shift, size) = (self.chunk_shift, self.volume_size);
            let fresh = with_scratch(|dealt| -> Result<Vec<u64>> {
                let mut fresh = vec![0u64; groups.len()];
                if let Some(newest) = self.epochs.last_mut() {
                    newest.written.deal_groups(groups, shift, size, dealt)?;
                    newest
                        .written
                        .apply_dealt_groups(dealt, newest.alloc_chunks, &mut fresh);
                }
                Ok(fresh)
            })?;
            let all: u64 = fresh.iter().sum();
            copied.iter_mut().zip(&fresh).for_each(|(c, f)| *c += f);
            return Ok(self.count_copies(all));
        }
        for &(o, l) in groups {
            check_extents(o, l, self.volume_size)?;
        }
        let mut outcome = WriteOutcome::default();
        for (&(o, l), c) in groups.iter().zip(copied.iter_mut()) {
            let part = self.apply_checked(o, l, None);
            *c += part.chunks_copied;
            outcome.add(part);
        }
        Ok(outcome)
    }

    /// Books `copied` chunks copied into the newest snapshot's diff area by an independent batch.
    fn count_copies(&mut self, copied: u64) -> WriteOutcome {
        if let Some(newest) = self.epochs.last_mut() {
            newest.diff_chunks += copied;
            newest.copied_while_newest += copied;
        }
        self.diff_chunks += copied;
        self.total_copied += copied;
        self.peak_diff_chunks = self.peak_diff_chunks.max(self.diff_chunks);
        WriteOutcome {
            chunks_copied: copied,
            bytes_copied: copied << self.chunk_shift,
            deleted_snapshots: Vec::new(),
        }
    }

    /// Applies a batch write by write, in order (the batch checked first).
    fn apply_in_order(
        &mut self,
        offsets: &[u64],
        lengths: &[u32],
        per_write: Option<&mut [u32]>,
    ) -> Result<WriteOutcome> {
        check_extents(offsets, lengths, self.volume_size)?;
        if let Some(out) = per_write.as_deref() {
            if out.len() != offsets.len() {
                return Err(Error::invalid(
                    "per_write",
                    format!("has {} entries, expected {}", out.len(), offsets.len()),
                ));
            }
        }
        Ok(self.apply_checked(offsets, lengths, per_write))
    }

    /// [`apply_in_order`](Self::apply_in_order) of a batch already checked (and `per_write`, if
    /// given, of its length).
    fn apply_checked(
        &mut self,
        offsets: &[u64],
        lengths: &[u32],
        mut per_write: Option<&mut [u32]>,
    ) -> WriteOutcome {
        let mut outcome = WriteOutcome::default();
        if self.epochs.is_empty() {
            if let Some(out) = per_write {
                out.fill(0);
            }
            return outcome;
        }
        if per_write.is_none() && self.batch_is_independent(lengths) {
            let shift = self.chunk_shift;
            let copied = self.epochs.last_mut().map_or(0, |e| {
                e.written
                    .insert_extents(offsets, lengths, shift, e.alloc_chunks)
            });
            return self.count_copies(copied);
        }
        for (i, (&off, &len)) in offsets.iter().zip(lengths).enumerate() {
            let copied = self.write_one(off, len, &mut outcome);
            outcome.chunks_copied += copied;
            if let Some(out) = per_write.as_deref_mut() {
                out[i] = copied as u32;
            }
        }
        outcome.bytes_copied = outcome.chunks_copied << self.chunk_shift;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    const K: u64 = 16 * 1024;

    fn tracker(size: u64) -> CowTracker {
        CowTracker::new(size, K, None).unwrap()
    }

    #[test]
    fn first_write_copies_later_writes_do_not() {
        let mut t = tracker(1 << 30);
        let s = t.create_snapshot(1 << 30).unwrap();
        let o = t
            .apply_writes(&[0, 100, K], &[4096, 10, 4096], None)
            .unwrap();
        assert_eq!(o.chunks_copied, 2);
        assert_eq!(t.diff_area_bytes(), 2 * K);
        assert_eq!(t.snapshots()[0].id, s);
    }

    #[test]
    fn no_snapshot_no_copy() {
        let mut t = tracker(1 << 20);
        assert_eq!(
            t.apply_writes(&[0], &[4096], None).unwrap().chunks_copied,
            0
        );
    }

    #[test]
    fn unallocated_chunks_are_never_copied() {
        let mut t = tracker(1 << 20);
        t.create_snapshot(2 * K).unwrap();
        let o = t
            .apply_writes(&[0, 5 * K], &[(4 * K) as u32, 4096], None)
            .unwrap();
        assert_eq!(o.chunks_copied, 2);
    }

    #[test]
    fn one_copy_serves_every_older_snapshot() {
        let mut t = tracker(1 << 20);
        let a = t.create_snapshot(1 << 20).unwrap();
        let b = t.create_snapshot(1 << 20).unwrap();
        assert_eq!(t.apply_writes(&[0], &[1], None).unwrap().chunks_copied, 1);
        // Deleting the newest keeps the copy: the older one still needs it.
        assert_eq!(t.delete_snapshot(b).unwrap(), 0);
        assert_eq!(t.diff_area_bytes(), K);
        assert_eq!(t.apply_writes(&[0], &[1], None).unwrap().chunks_copied, 0);
        assert_eq!(t.delete_snapshot(a).unwrap(), K);
        assert_eq!(t.peak_diff_area_bytes(), K);
    }

    #[test]
    fn shrink_then_write_copies_for_the_older_snapshot() {
        let mut t = tracker(1 << 20);
        t.create_snapshot(1 << 20).unwrap();
        t.create_snapshot(K).unwrap();
        // Chunk 3 is free for the newest snapshot but allocated for the oldest.
        assert_eq!(
            t.apply_writes(&[3 * K], &[1], None).unwrap().chunks_copied,
            1
        );
    }

    #[test]
    fn diff_area_limit_deletes_the_oldest_and_reports_it() {
        let mut t = CowTracker::new(1 << 20, K, Some(2 * K)).unwrap();
        let a = t.create_snapshot(1 << 20).unwrap();
        t.apply_writes(&[0, K], &[1, 1], None).unwrap();
        let b = t.create_snapshot(1 << 20).unwrap();
        let o = t.apply_writes(&[2 * K], &[1], None).unwrap();
        assert_eq!(o.deleted_snapshots, vec![a]);
        assert_eq!(o.chunks_copied, 1);
        assert!(t.is_live(b) && !t.is_live(a));
        assert_eq!(t.diff_area_bytes(), K);
    }

    #[test]
    fn bad_batch_changes_nothing() {
        let mut t = tracker(1 << 20);
        t.create_snapshot(1 << 20).unwrap();
        assert!(t.apply_writes(&[0, 1 << 20], &[1, 1], None).is_err());
        assert_eq!(t.total_chunks_copied(), 0);
        assert_eq!(t.apply_writes(&[0], &[1], None).unwrap().chunks_copied, 1);
    }

    #[test]
    fn a_bad_entry_in_any_group_changes_nothing() {
        for n in [10, GROUPED_PARALLEL_MIN] {
            let mut t = tracker(1 << 30);
            t.create_snapshot(1 << 30).unwrap();
            let offs = vec![0u64; n];
            let lens = vec![4096u32; n];
            let bad_offs = [5u64, 1 << 30];
            let bad_lens = [4096u32, 1];
            let groups = [(&offs[..], &lens[..]), (&bad_offs[..], &bad_lens[..])];
            let mut copied = [0u64; 2];
            let err = t.apply_groups(&groups, &mut copied).unwrap_err();
            assert!(err.to_string().contains("entry 1"), "{err}");
            assert_eq!(copied, [0, 0]);
            assert_eq!(t.total_chunks_copied(), 0);
            assert_eq!(t.apply_writes(&[0], &[1], None).unwrap().chunks_copied, 1);
        }
    }

    #[test]
    fn bad_arguments() {
        assert!(CowTracker::new(1 << 20, 3000, None).is_err());
        assert!(CowTracker::new(0, K, None).is_err());
        let mut t = tracker(1 << 20);
        assert!(t.create_snapshot(2 << 20).is_err());
        assert!(t.delete_snapshot(99).is_err());
        for _ in 0..MAX_SNAPSHOTS {
            t.create_snapshot(0).unwrap();
        }
        assert!(matches!(t.create_snapshot(0), Err(Error::State(_))));
    }

    #[test]
    fn sixty_four_tib_volume_costs_megabytes() {
        let mut t = tracker(64 << 40);
        t.create_snapshot(64 << 40).unwrap();
        // 4 GiB of writes in 64 KiB pieces spread over the whole volume.
        let n = 65_536u64;
        let offs: Vec<u64> = (0..n).map(|i| i * ((64 << 40) / n)).collect();
        let lens = vec![64 * 1024u32; n as usize];
        t.apply_writes(&offs, &lens, None).unwrap();
        assert!(t.memory_bytes() < 600 << 20, "{}", t.memory_bytes());
        assert_eq!(t.total_chunks_copied(), 4 * n);
    }

    /// The plain reference: every snapshot keeps the set of chunks it preserved; a write copies
    /// once if any live snapshot needs the chunk; a copy is freed when no snapshot it serves lives.
    #[derive(Default)]
    struct Reference {
        snaps: Vec<(u64, u64, BTreeSet<u64>)>, // id, alloc chunks, preserved chunks
        /// Each copy: chunk and the ids it serves.
        copies: Vec<(u64, BTreeSet<u64>)>,
        next: u64,
        total: u64,
        peak: usize,
    }

    impl Reference {
        fn write(&mut self, c: u64) -> u64 {
            let mut serves = BTreeSet::new();
            for (id, alloc, pres) in self.snaps.iter_mut() {
                if !pres.contains(&c) {
                    pres.insert(c);
                    if c < *alloc {
                        serves.insert(*id);
                    }
                }
            }
            if serves.is_empty() {
                0
            } else {
                self.copies.push((c, serves));
                self.total += 1;
                self.peak = self.peak.max(self.copies.len());
                1
            }
        }
        fn delete(&mut self, id: u64) {
            self.snaps.retain(|s| s.0 != id);
            for (_, serves) in self.copies.iter_mut() {
                serves.remove(&id);
            }
            self.copies.retain(|(_, s)| !s.is_empty());
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, u32),
        Snap(u64),
        Delete(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..64 * K, 1u32..(3 * K as u32)).prop_map(|(o, l)| Op::Write(o, l)),
            1 => (0u64..=80 * K).prop_map(Op::Snap),
            1 => (0usize..8).prop_map(Op::Delete),
        ]
    }

    proptest! {
        /// A large batch goes the dealt, parallel way; asking for per-write counts forces the
        /// same batch through write-by-write application: both must agree on everything.
        #[test]
        fn dealt_batch_matches_write_by_write(
            exts in proptest::collection::vec((0u64..(64 << 20), 0u32..200_000), 1..200),
            alloc in 0u64..=(64 << 20),
            first in proptest::collection::vec((0u64..(64 << 20), 1u32..100_000), 0..20),
        ) {
            let size = 64u64 << 20;
            let reps = ChunkSet::PARALLEL_MIN / exts.len() + 1;
            let offs: Vec<u64> = exts.iter().map(|e| e.0.min(size - 1)).cycle().take(exts.len() * reps).collect();
            let lens: Vec<u32> = exts.iter().zip(&offs).map(|(e, &o)| e.1.min((size - o) as u32)).cycle().take(offs.len()).collect();
            let (fo, fl): (Vec<u64>, Vec<u32>) = first.iter().map(|&(o, n)| (o, n.min((size - o) as u32))).unzip();
            let mut dealt = tracker(size);
            let mut ordered = tracker(size);
            for t in [&mut dealt, &mut ordered] {
                t.create_snapshot(alloc).unwrap();
                t.apply_writes(&fo, &fl, None).unwrap();
            }
            let got = dealt.apply_writes(&offs, &lens, None).unwrap();
            let mut per = vec![0u32; offs.len()];
            let want = ordered.apply_writes(&offs, &lens, Some(&mut per)).unwrap();
            prop_assert_eq!(got.chunks_copied, want.chunks_copied);
            prop_assert_eq!(per.iter().map(|&c| u64::from(c)).sum::<u64>(), want.chunks_copied);
            prop_assert_eq!(dealt.diff_area_bytes(), ordered.diff_area_bytes());
            prop_assert_eq!(dealt.snapshots(), ordered.snapshots());
            // The sets are equal: a further write copies the same everywhere.
            for c in (0..size).step_by(1 << 20) {
                let a = dealt.apply_writes(&[c], &[1], None).unwrap().chunks_copied;
                let b = ordered.apply_writes(&[c], &[1], None).unwrap().chunks_copied;
                prop_assert_eq!(a, b);
            }
        }

        /// Groups applied in one call (dealt, parallel, credited per group) against the same
        /// groups applied one after the other with per-write counts: the same copies per group
        /// (groups may overlap: the first to touch a chunk has it), the same state after. With a
        /// second snapshot over a smaller extent, or a diff-area limit in reach, the call goes
        /// group by group and must still agree. Up to 300 cuts: a CSV's window is hundreds of
        /// VMs' groups of a few writes each, many of them empty or of one record in a shard.
        #[test]
        fn grouped_batch_matches_groups_in_turn(
            exts in proptest::collection::vec((0u64..(64 << 20), 0u32..200_000), 1..120),
            cuts in proptest::collection::vec(0usize..10_000, 0..300),
            alloc in 0u64..=(64 << 20),
            second in proptest::option::of(0u64..=(64 << 20)),
            limit in proptest::option::of(320u64 << 20..(2 << 30)),
        ) {
            let size = 64u64 << 20;
            let reps = GROUPED_PARALLEL_MIN / exts.len() + 1;
            let offs: Vec<u64> = exts.iter().map(|e| e.0.min(size - 1)).cycle().take(exts.len() * reps).collect();
            let lens: Vec<u32> = exts.iter().zip(&offs).map(|(e, &o)| e.1.min((size - o) as u32)).cycle().take(offs.len()).collect();
            let mut at: Vec<usize> = cuts.iter().map(|&c| c * offs.len() / 10_000).collect();
            at.push(0);
            at.push(offs.len());
            at.sort_unstable();
            let groups: Vec<(&[u64], &[u32])> = at.windows(2).map(|w| (&offs[w[0]..w[1]], &lens[w[0]..w[1]])).collect();
            let make = || {
                let mut t = CowTracker::new(size, K, limit).unwrap();
                t.create_snapshot(alloc).unwrap();
                if let Some(s2) = second {
                    t.create_snapshot(s2).unwrap();
                }
                t
            };
            let (mut grouped, mut in_turn) = (make(), make());
            let mut got = vec![0u64; groups.len()];
            let out = grouped.apply_groups(&groups, &mut got).unwrap();
            let mut want = Vec::new();
            for &(o, l) in &groups {
                let mut per = vec![0u32; o.len()];
                in_turn.apply_writes(o, l, Some(&mut per)).unwrap();
                want.push(per.iter().map(|&c| u64::from(c)).sum::<u64>());
            }
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(out.chunks_copied, want.iter().sum::<u64>());
            prop_assert_eq!(grouped.diff_area_bytes(), in_turn.diff_area_bytes());
            prop_assert_eq!(grouped.total_chunks_copied(), in_turn.total_chunks_copied());
            prop_assert_eq!(grouped.snapshots(), in_turn.snapshots());
            for c in (0..size).step_by(1 << 20) {
                let a = grouped.apply_writes(&[c], &[1], None).unwrap().chunks_copied;
                let b = in_turn.apply_writes(&[c], &[1], None).unwrap().chunks_copied;
                prop_assert_eq!(a, b);
            }
        }

        /// A new epoch that starts from the last one's emptied set (the spare) answers as one
        /// that starts from a new set: the same ops on a tracker and on a copy made before each
        /// snapshot (a copy has no spare), over several leaves, with writes that make bitmaps.
        #[test]
        fn the_spare_set_changes_no_answer(ops in proptest::collection::vec(
            prop_oneof![
                6 => (0u64..(512 << 20), 1u32..(2 << 20)).prop_map(|(o, l)| Op::Write(o, l)),
                1 => (0u64..=(512 << 20)).prop_map(Op::Snap),
                2 => (0usize..8).prop_map(Op::Delete),
            ],
            1..80,
        )) {
            let size = 512u64 << 20;
            let mut t = CowTracker::new(size, 4096, None).unwrap();
            let mut u = t.clone();
            for op in ops {
                match op {
                    Op::Write(o, l) => {
                        let l = l.min((size - o) as u32);
                        let got = t.apply_writes(&[o], &[l], None).unwrap();
                        prop_assert_eq!(got, u.apply_writes(&[o], &[l], None).unwrap());
                    }
                    Op::Snap(a) => {
                        u = u.clone();
                        prop_assert!(u.spare.0.is_none());
                        prop_assert_eq!(t.create_snapshot(a).unwrap(), u.create_snapshot(a).unwrap());
                    }
                    Op::Delete(i) => {
                        if t.snapshot_count() > 0 {
                            let id = t.snapshots()[i % t.snapshot_count()].id;
                            prop_assert_eq!(t.delete_snapshot(id).unwrap(), u.delete_snapshot(id).unwrap());
                        }
                    }
                }
                prop_assert_eq!(t.snapshots(), u.snapshots());
                prop_assert_eq!(t.diff_area_bytes(), u.diff_area_bytes());
                prop_assert_eq!(t.peak_diff_area_bytes(), u.peak_diff_area_bytes());
                for (a, b) in t.epochs.iter().zip(&u.epochs) {
                    prop_assert_eq!(a.written.runs(), b.written.runs());
                    prop_assert_eq!(a.written.count(), b.written.count());
                }
            }
        }

        #[test]
        fn matches_the_reference(ops in proptest::collection::vec(op(), 1..120)) {
            let size = 80 * K;
            let mut t = tracker(size);
            let mut r = Reference { next: 1, ..Default::default() };
            for op in ops {
                match op {
                    Op::Write(o, l) => {
                        let l = l.min((size - o) as u32);
                        let got = t.apply_writes(&[o], &[l], None).unwrap().chunks_copied;
                        let mut want = 0;
                        for c in o / K..=(o + u64::from(l) - 1) / K {
                            want += r.write(c);
                        }
                        prop_assert_eq!(got, want);
                    }
                    Op::Snap(a) => {
                        let id = t.create_snapshot(a).unwrap();
                        prop_assert_eq!(id, r.next);
                        r.next += 1;
                        r.snaps.push((id, a.div_ceil(K), BTreeSet::new()));
                    }
                    Op::Delete(i) => {
                        if !r.snaps.is_empty() {
                            let id = r.snaps[i % r.snaps.len()].0;
                            t.delete_snapshot(id).unwrap();
                            r.delete(id);
                        }
                    }
                }
                prop_assert_eq!(t.diff_area_bytes(), r.copies.len() as u64 * K);
                prop_assert_eq!(t.total_chunks_copied(), r.total);
                prop_assert_eq!(t.peak_diff_area_bytes(), r.peak as u64 * K);
            }
            // Per-snapshot diff areas add up.
            let by_snap: BTreeMap<u64, u64> = t.snapshots().iter().map(|s| (s.id, s.diff_area_chunks)).collect();
            prop_assert_eq!(by_snap.values().sum::<u64>() * K, t.diff_area_bytes());
        }
    }
}
