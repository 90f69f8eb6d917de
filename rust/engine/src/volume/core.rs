//! The volume's shared core: the copy-on-write state, the journal and the diff-area file, and the
//! I/O every handle goes through. One mutex guards it; a live write holds it from its copies to
//! the live write itself, so a snapshot can never fall between the two.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::error::{Result, VolumeError};
use super::journal::{CopyEntry, DeleteReason, Journal, Record};
use super::lock::Locks;
use super::state::{CowState, Gone, Plan, SnapFile, Source};
use crate::storage::read_exact_skipping_holes;

pub(crate) type Shared = Arc<Mutex<Core>>;

pub(crate) fn lock(shared: &Shared) -> Result<MutexGuard<'_, Core>> {
    let core = shared
        .lock()
        .map_err(|_| VolumeError::State("the volume's state was poisoned by a panic".to_owned()))?;
    if core.closed {
        return Err(VolumeError::State(format!(
            "the volume {} was closed",
            core.root.display()
        )));
    }
    Ok(core)
}

#[derive(Debug)]
pub(crate) struct Core {
    pub root: PathBuf,
    pub diff_dir: PathBuf,
    pub state: CowState,
    pub journal: Journal,
    pub diff: File,
    pub diff_path: PathBuf,
    /// The root's and the diff area's locks, held until the volume is closed.
    pub locks: Option<Locks>,
    pub limit: Option<u64>,
    pub durable: bool,
    /// Snapshots deleted because the diff area was full, in order (VolSnap event 24).
    pub auto_deleted: Vec<u64>,
    /// Length of the diff file (tracked, so a failed write can be cut back to it).
    pub diff_len: u64,
    /// The diff file is not cut back below this (volsnap keeps its diff area allocated too).
    pub reserve: u64,
    /// Reused buffer of old chunks on their way to the diff area.
    pub scratch: Vec<u8>,
    /// Copy through user space and record a CRC-32C of every copied chunk (checked at open);
    /// otherwise copy inside the kernel, unchecked.
    pub checksum_copies: bool,
    /// Where the diff file's cursor is, when known (only in-kernel copies move it).
    pub diff_pos: Option<u64>,
    /// What opening the volume found and did (recovery notes).
    pub notes: Vec<String>,
    pub closed: bool,
    /// The most diff-area slots in use since the peak was last reset (`Volume::counters`).
    pub peak_used: u64,
}

impl Core {
    fn chunk_shift(&self) -> u32 {
        self.state.chunk_shift
    }

    fn chunk_size(&self) -> u64 {
        self.state.chunk_size()
    }

    /// Appends and applies records (the on-disk index first, then memory).
    pub(crate) fn commit(&mut self, records: &[Record], sync: bool) -> Result<()> {
        self.journal
            .append(records)
            .map_err(|e| diff_error(self.journal.path(), e))?;
        if sync {
            self.journal
                .sync()
                .map_err(|e| diff_error(self.journal.path(), e))?;
        }
        for r in records {
            self.state.apply(r).map_err(|m| {
                VolumeError::State(format!("volume index rejected its own record: {m}"))
            })?;
        }
        Ok(())
    }

    /// Makes everything written so far durable: diff data, then the index.
    pub(crate) fn barrier(&mut self) -> Result<()> {
        self.diff
            .sync_data()
            .map_err(|e| diff_error(&self.diff_path, e))?;
        self.journal
            .sync()
            .map_err(|e| diff_error(self.journal.path(), e))
    }

    /// Shrinks the diff file to the slots still in use at its end (but not below the reserve,
    /// of what was already allocated).
    pub(crate) fn trim_diff(&mut self) -> Result<()> {
        let used_end = u64::from(self.state.trim()) << self.chunk_shift();
        let keep = self.diff_len.min(self.reserve) & !(self.chunk_size() - 1);
        let len = used_end.max(keep);
        if len != self.diff_len {
            self.diff
                .set_len(len)
                .map_err(|e| diff_error(&self.diff_path, e))?;
            self.diff_len = len;
        }
        Ok(())
    }

    /// Writes `bytes` at `at` in the diff file; on failure cuts the file back to its length
    /// before, so a refused write leaves nothing behind.
    fn write_diff(&mut self, bytes: &[u8], at: u64) -> Result<()> {
        if let Err(e) = self.diff.write_all_at(bytes, at) {
            let _ = self.diff.set_len(self.diff_len);
            return Err(diff_error(&self.diff_path, e));
        }
        Ok(())
    }

    /// Deletes a snapshot (durably); returns the diff-area bytes freed.
    pub(crate) fn delete(&mut self, id: u64, reason: DeleteReason) -> Result<u64> {
        let before = self.state.used_slots();
        self.commit(&[Record::Delete { id, reason }], true)?;
        self.trim_diff()?;
        Ok((before - self.state.used_slots()) << self.chunk_shift())
    }

    /// With a diff-area limit, deletes the oldest snapshots (durably, reported in `auto_deleted`)
    /// until `need(state) + extra` new slots fit; `need` is asked again after each deletion.
    fn make_room(&mut self, extra: u64, mut need: impl FnMut(&CowState) -> u64) -> Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        loop {
            let n = need(&self.state) + extra;
            if n == 0 || (self.state.used_slots() + n) << self.chunk_shift() <= limit {
                return Ok(());
            }
            let Some(oldest) = self.state.snaps.first().map(|s| s.id) else {
                return Ok(());
            };
            self.delete(oldest, DeleteReason::DiffAreaFull)?;
            self.auto_deleted.push(oldest);
        }
    }

    /// Copies the planned old chunks of the live `file` to the diff area and indexes them.
    fn copy_out(&mut self, key: &str, file: &File, plan: &Plan) -> Result<()> {
        let cs = self.chunk_size();
        let slots = self.state.next_slots(plan.len());
        if !self.checksum_copies {
            return self.copy_out_in_kernel(key, file, plan, &slots);
        }
        let mut data = std::mem::take(&mut self.scratch);
        data.resize(plan.len() * cs as usize, 0);
        let result = self.copy_out_with(key, file, plan, &slots, &mut data);
        self.scratch = data;
        result
    }

    fn copy_out_with(
        &mut self,
        key: &str,
        file: &File,
        plan: &Plan,
        slots: &[u32],
        data: &mut [u8],
    ) -> Result<()> {
        let cs = self.chunk_size();
        // Read runs of consecutive chunks in one call each; what no snapshot needs is zeros.
        let mut i = 0;
        while i < plan.len() {
            let j = run_end(plan, i, cs, |_| true);
            let start = plan[i].chunk * cs;
            let have = ((plan[j - 1].chunk * cs + plan[j - 1].bytes) - start) as usize;
            let run = &mut data[i * cs as usize..j * cs as usize];
            let (buf, zeros) = run.split_at_mut(have);
            zeros.fill(0);
            file.read_exact_at(buf, start)
                .map_err(|e| VolumeError::io(key, e))?;
            i = j;
        }
        let mut i = 0;
        while i < plan.len() {
            let mut j = i + 1;
            while j < plan.len() && slots[j] == slots[j - 1] + 1 {
                j += 1;
            }
            self.write_diff(
                &data[i * cs as usize..j * cs as usize],
                u64::from(slots[i]) * cs,
            )?;
            i = j;
        }
        let entries = plan
            .iter()
            .enumerate()
            .map(|(k, p)| CopyEntry {
                chunk: p.chunk,
                slot: slots[k],
                data_crc: Some(crc32c::crc32c(
                    &data[k * cs as usize..(k + 1) * cs as usize],
                )),
                serves: p.serves.clone(),
            })
            .collect();
        self.finish_diff_write(
            slots,
            &[Record::Copies {
                path: key.to_owned(),
                entries,
            }],
        )
    }

    /// Copies the planned chunks file-to-file inside the kernel (`copy_file_range` through
    /// `std::io::copy`): no pass through user space, so no checksum of the data either.
    fn copy_out_in_kernel(
        &mut self,
        key: &str,
        file: &File,
        plan: &Plan,
        slots: &[u32],
    ) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let cs = self.chunk_size();
        let mut i = 0;
        while i < plan.len() {
            let j = run_end(plan, i, cs, |k| slots[k] == slots[k - 1] + 1);
            let start = plan[i].chunk * cs;
            let end = (plan[j - 1].chunk + 1) * cs;
            let have = (plan[j - 1].chunk * cs + plan[j - 1].bytes) - start;
            let at = u64::from(slots[i]) * cs;
            // Both cursors are only ever moved here, under the volume's lock (every other access
            // is positional), so the diff file's is known and its seek often saved.
            let mut src = file;
            let mut dst = &self.diff;
            let mut copied = src.seek(SeekFrom::Start(start));
            if copied.is_ok() && self.diff_pos != Some(at) {
                copied = dst.seek(SeekFrom::Start(at));
            }
            self.diff_pos = None;
            let copied = copied.and_then(|_| std::io::copy(&mut src.take(have), &mut dst));
            match copied {
                Ok(n) if n == have => self.diff_pos = Some(at + have),
                Ok(n) => {
                    let _ = self.diff.set_len(self.diff_len);
                    return Err(VolumeError::io(
                        key,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "copied {n} of {have} bytes at {start}: the file is shorter than \
                                 the snapshots need (changed outside the volume?)"
                            ),
                        ),
                    ));
                }
                Err(e) => {
                    let _ = self.diff.set_len(self.diff_len);
                    return Err(diff_error(&self.diff_path, e));
                }
            }
            if have < end - start {
                // The slot may be reused: its part past the file's end must read as zeros.
                let zeros = vec![0u8; (end - start - have) as usize];
                self.write_diff(&zeros, at + have)?;
            }
            i = j;
        }
        let entries = plan
            .iter()
            .enumerate()
            .map(|(k, p)| CopyEntry {
                chunk: p.chunk,
                slot: slots[k],
                data_crc: None,
                serves: p.serves.clone(),
            })
            .collect();
        self.finish_diff_write(
            slots,
            &[Record::Copies {
                path: key.to_owned(),
                entries,
            }],
        )
    }

    /// After slot data is written: (durable: fsync it,) append the records, note the new length.
    fn finish_diff_write(&mut self, slots: &[u32], records: &[Record]) -> Result<()> {
        if self.durable {
            if let Err(e) = self.diff.sync_data() {
                let _ = self.diff.set_len(self.diff_len);
                return Err(diff_error(&self.diff_path, e));
            }
        }
        if let Err(e) = self.commit(records, self.durable) {
            let _ = self.diff.set_len(self.diff_len);
            return Err(e);
        }
        let end = slots
            .iter()
            .map(|&s| (u64::from(s) + 1) << self.chunk_shift())
            .max()
            .unwrap_or(0);
        self.diff_len = self.diff_len.max(end);
        self.peak_used = self.peak_used.max(self.state.used_slots());
        Ok(())
    }

    /// Prepares a live write of `[offset, end)` to `key`: copies what the snapshots still need.
    pub(crate) fn before_live_change(
        &mut self,
        key: &str,
        file: &File,
        offset: u64,
        end: u64,
    ) -> Result<()> {
        if end <= offset || self.state.snaps.is_empty() {
            return Ok(());
        }
        let shift = self.chunk_shift();
        let first = offset >> shift;
        let last = ((end - 1) >> shift) + 1;
        self.make_room(0, |s| s.plan_copies(key, first, last).len() as u64)?;
        let plan = self.state.plan_copies(key, first, last);
        if !plan.is_empty() {
            self.copy_out(key, file, &plan)?;
        }
        Ok(())
    }

    /// The error for a snapshot that is not live.
    pub(crate) fn not_live(&self, id: u64) -> VolumeError {
        match self.state.gone.get(&id) {
            Some(Gone::Deleted(DeleteReason::User)) => VolumeError::SnapshotDeleted {
                id,
                reason: "deleted by request".to_owned(),
            },
            Some(Gone::Deleted(DeleteReason::DiffAreaFull)) => VolumeError::SnapshotDeleted {
                id,
                reason: format!(
                    "the diff area could not grow past its limit of {} bytes, so the oldest \
                     snapshots were deleted (VolSnap event 24)",
                    self.limit.unwrap_or(0)
                ),
            },
            Some(Gone::Invalid(reason)) => VolumeError::SnapshotInvalid {
                id,
                reason: reason.clone(),
            },
            None => VolumeError::UnknownSnapshot { id },
        }
    }

    pub(crate) fn snap_file(&self, id: u64, key: &str) -> Result<&SnapFile> {
        let snap = self.state.snap(id).ok_or_else(|| self.not_live(id))?;
        snap.files
            .get(key)
            .ok_or_else(|| VolumeError::NotInSnapshot {
                id,
                path: key.to_owned(),
            })
    }

    /// Reads `buf.len()` bytes at `offset` of `key` as snapshot `id` shows it (callers go
    /// through [`Core::view_read_checked`], which acts on a damaged slot).
    fn view_read(
        &self,
        id: u64,
        key: &str,
        live: Option<&File>,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<()> {
        let f = self.snap_file(id, key)?;
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= f.view_len())
            .ok_or_else(|| {
                VolumeError::io(
                    format!("snapshot {id}: {key}"),
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "read of {} bytes at {offset} ends past the end ({} bytes)",
                            buf.len(),
                            f.view_len()
                        ),
                    ),
                )
            })?;
        let cs = self.chunk_size();
        let shift = self.chunk_shift();
        // Walk pieces, coalescing runs of the same source that are contiguous on disk.
        let mut pos = offset;
        while pos < end {
            let c = pos >> shift;
            let src = self.state.source(f, c);
            let mut run_end = ((c + 1) << shift).min(end);
            let mut next = c + 1;
            while run_end < end {
                let s = self.state.source(f, next);
                let contiguous = match (src, s) {
                    (Source::Live, Source::Live) | (Source::Zero, Source::Zero) => true,
                    (Source::Slot(a), Source::Slot(b)) => u64::from(b) == u64::from(a) + (next - c),
                    _ => false,
                };
                if !contiguous {
                    break;
                }
                run_end = ((next + 1) << shift).min(end);
                next += 1;
            }
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            match src {
                Source::Zero => out.fill(0),
                Source::Slot(slot) => self.read_slots((id, key, c), slot, pos & (cs - 1), out)?,
                Source::Live => {
                    // Bytes past the snapshot-time length were not there: zeros.
                    let have = f.size.clamp(pos, run_end) - pos;
                    let (data, zeros) = out.split_at_mut(have as usize);
                    zeros.fill(0);
                    if !data.is_empty() {
                        let file = live.ok_or_else(|| missing_live(id, key))?;
                        read_exact_skipping_holes(file, data, pos).map_err(|e| {
                            if e.kind() == io::ErrorKind::UnexpectedEof {
                                missing_live(id, key)
                            } else {
                                VolumeError::io(key, e)
                            }
                        })?;
                    }
                }
            }
            pos = run_end;
        }
        Ok(())
    }

    /// Reads `out` from the run of consecutive diff-area slots from `slot` (which holds chunk
    /// `chunk` of `key` in snapshot `id`), starting `within` bytes into it. A slot with a recorded
    /// CRC-32C is read whole and checked before any of its bytes are handed out.
    fn read_slots(
        &self,
        (id, key, chunk): (u64, &str, u64),
        slot: u32,
        within: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let cs = self.chunk_size();
        let count = (within + out.len() as u64).div_ceil(cs);
        let slots = (0..count).map(|k| slot + k as u32);
        let at = u64::from(slot) * cs;
        let read_error = |e| VolumeError::io(&self.diff_path, e);
        if slots.clone().all(|s| self.state.slot_crc(s).is_none()) {
            return self
                .diff
                .read_exact_at(out, at + within)
                .map_err(read_error);
        }
        // Whole slots asked for (a backup's aligned reads) are read and checked in place; parts
        // of slots go through a buffer of the whole slots (on an error `out` holds no promise).
        let aligned = within == 0 && out.len() as u64 == count * cs;
        let mut whole = Vec::new();
        let data: &mut [u8] = if aligned {
            &mut *out
        } else {
            whole.resize((count * cs) as usize, 0);
            &mut whole
        };
        self.diff.read_exact_at(data, at).map_err(read_error)?;
        for (k, s) in slots.enumerate() {
            let Some(expected) = self.state.slot_crc(s) else {
                continue;
            };
            let found = crc32c::crc32c(&data[k * cs as usize..(k + 1) * cs as usize]);
            if found != expected {
                return Err(VolumeError::DiffAreaDamaged {
                    path: self.diff_path.clone(),
                    slot: s,
                    offset: u64::from(s) * cs,
                    id,
                    key: key.to_owned(),
                    chunk: chunk + k as u64,
                    expected,
                    found,
                });
            }
        }
        if !aligned {
            out.copy_from_slice(&whole[within as usize..within as usize + out.len()]);
        }
        Ok(())
    }

    /// [`Core::view_read`], and when a diff-area slot fails its check, every snapshot that uses
    /// it is marked invalid (durably, when the journal can take it) before the error returns.
    pub(crate) fn view_read_checked(
        &mut self,
        id: u64,
        key: &str,
        live: Option<&File>,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<()> {
        let result = self.view_read(id, key, live, buf, offset);
        if let Err(damage @ VolumeError::DiffAreaDamaged { slot, .. }) = &result {
            let reason = format!("damaged: {damage}");
            let users = self.state.slot_users().remove(slot).unwrap_or_default();
            let records: Vec<Record> = users
                .into_iter()
                .map(|id| Record::Invalidate {
                    id,
                    reason: reason.clone(),
                })
                .collect();
            // Not recorded (the journal refused it): the next open finds the damage again.
            let _ = self.commit(&records, true);
        }
        result
    }

    /// Writes into a writable view: every touched chunk gets a fresh diff-area slot.
    pub(crate) fn view_write(
        &mut self,
        id: u64,
        key: &str,
        live: Option<&File>,
        buf: &[u8],
        offset: u64,
    ) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| {
            VolumeError::invalid("offset", format!("{offset} + length overflows"))
        })?;
        let cs = self.chunk_size();
        let shift = self.chunk_shift();
        let first = offset >> shift;
        let last = ((end - 1) >> shift) + 1;
        self.make_room(last - first, |_| 0)?;
        let old_len = self.snap_file(id, key)?.view_len();
        let mut records = Vec::new();
        if end > old_len {
            records.push(Record::ViewResize {
                id,
                path: key.to_owned(),
                size: end,
            });
        }
        let slots = self.state.next_slots((last - first) as usize);
        let mut data = vec![0u8; ((last - first) * cs) as usize];
        // The chunks' current content (within the old length), then the new bytes over it.
        let cur_start = first << shift;
        let cur_end = (last << shift).min(old_len);
        if cur_end > cur_start {
            self.view_read_checked(
                id,
                key,
                live,
                &mut data[..(cur_end - cur_start) as usize],
                cur_start,
            )?;
        }
        data[(offset - cur_start) as usize..][..buf.len()].copy_from_slice(buf);
        for (k, slot) in slots.iter().enumerate() {
            let bytes = &data[k * cs as usize..(k + 1) * cs as usize];
            self.write_diff(bytes, u64::from(*slot) * cs)?;
            records.push(Record::ViewWrite {
                id,
                path: key.to_owned(),
                chunk: first + k as u64,
                slot: *slot,
                data_crc: crc32c::crc32c(bytes),
            });
        }
        self.finish_diff_write(&slots, &records)
    }

    /// Sets a writable view's length.
    pub(crate) fn view_set_len(
        &mut self,
        id: u64,
        key: &str,
        live: Option<&File>,
        len: u64,
    ) -> Result<()> {
        let cs = self.chunk_size();
        let old_len = self.snap_file(id, key)?.view_len();
        if len < old_len && !len.is_multiple_of(cs) {
            // Zero the tail of the chunk the new end falls in (it may be read again after a grow).
            let tail_end = ((len / cs + 1) * cs).min(old_len);
            let zeros = vec![0u8; (tail_end - len) as usize];
            self.view_write(id, key, live, &zeros, len)?;
        }
        self.commit(
            &[Record::ViewResize {
                id,
                path: key.to_owned(),
                size: len,
            }],
            self.durable,
        )
    }
}

/// The end of the run of planned copies from `i`: consecutive chunks, all but the last needed
/// whole, and `more(k)` for each further entry `k`.
fn run_end(plan: &Plan, i: usize, cs: u64, more: impl Fn(usize) -> bool) -> usize {
    let mut j = i + 1;
    while j < plan.len()
        && plan[j].chunk == plan[j - 1].chunk + 1
        && plan[j - 1].bytes == cs
        && more(j)
    {
        j += 1;
    }
    j
}

fn missing_live(id: u64, key: &str) -> VolumeError {
    VolumeError::SnapshotInvalid {
        id,
        reason: format!(
            "{key}: the live file is shorter than the snapshot needs; it was changed outside \
             the volume"
        ),
    }
}

pub(crate) fn diff_error(path: &Path, source: io::Error) -> VolumeError {
    VolumeError::DiffArea {
        path: path.to_owned(),
        source,
    }
}

impl Core {
    /// A clean close: data, then the Close record that says so; the lock is released and every
    /// handle fails from now on.
    pub(crate) fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let synced = self.barrier();
        let closed = self
            .journal
            .append(&[Record::Close])
            .and_then(|()| self.journal.sync())
            .map_err(|e| diff_error(self.journal.path(), e));
        self.locks = None;
        // Let go of the diff area's files now, even while handles keep this core alive (so the
        // folder can be removed or unmounted): nothing reads them once `closed` is set.
        if let Ok(null) = File::open("/dev/null") {
            if let Ok(null2) = null.try_clone() {
                self.journal.release(null2);
            }
            self.diff = null;
        }
        synced.and(closed)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
