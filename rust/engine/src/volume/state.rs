//! The volume's copy-on-write state in memory: live snapshots, which old chunk of which file each
//! one finds where, and the diff area's slot table. No I/O here: the same [`CowState::apply`]
//! runs for a live operation (after its journal record is written) and for journal replay at
//! open, so what is on disk and what is in memory cannot drift apart.
//!
//! The copy-once rule, per file: snapshot `s` has *preserved* chunk `c` (a map `c → slot`) once
//! `c` was written after `s` was taken, for chunks that existed then (`c < alloc`). A write to `c`
//! walks the live snapshots newest first: a snapshot that already preserved `c` ends the walk (every
//! older one preserved it at that same earlier write), one for which `c` lay past the file's end is
//! skipped (the file was shorter then), the others need the old chunk. One copy serves them all,
//! so the slot's reference count is their number; deleting a snapshot drops its references and a
//! slot nobody refers to is free. This is the reference model `cow::CowTracker` is tested against,
//! so the counts agree with the tracker's (`volume/tests.rs` checks it on random streams).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::journal::{CopyEntry, DeleteReason, Record};

/// Overlay marker of a writable view: the chunk reads as zeros (the view was truncated over it).
pub(crate) const ZERO_SLOT: u32 = u32::MAX;

/// One file as a snapshot holds it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapFile {
    /// Length at the snapshot instant.
    pub size: u64,
    /// Chunks that held data then: `ceil(size / chunk)`.
    pub alloc: u64,
    /// Old chunks copied into the diff area for this snapshot.
    pub preserved: HashMap<u64, u32>,
    /// Chunks written through a writable view (auto-recovery); they win over `preserved`.
    pub overlay: HashMap<u64, u32>,
    /// Length after writes or truncation through a writable view.
    pub view_size: Option<u64>,
}

impl SnapFile {
    pub fn view_len(&self) -> u64 {
        self.view_size.unwrap_or(self.size)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Snap {
    pub id: u64,
    pub created_unix: u64,
    pub files: HashMap<String, SnapFile>,
    /// Chunks copied while this was the newest snapshot.
    pub copied_while_newest: u64,
}

/// A snapshot that is no longer usable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gone {
    Deleted(DeleteReason),
    Invalid(String),
}

/// Where the bytes of one chunk of a snapshot view come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The diff area's slot.
    Slot(u32),
    /// The live file (the chunk was not written since the snapshot); bytes past the snapshot-time
    /// length read as zeros.
    Live,
    /// Zeros (past the file's end at snapshot time, or truncated in a writable view).
    Zero,
}

/// One planned copy: the chunk, the ids of the snapshots it will serve, and how many of its
/// bytes they need (the rest lay past the file's end for all of them: zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedCopy {
    pub chunk: u64,
    pub serves: Vec<u64>,
    pub bytes: u64,
}

pub(crate) type Plan = Vec<PlannedCopy>;

#[derive(Debug, Clone)]
pub(crate) struct CowState {
    pub chunk_shift: u32,
    /// Live snapshots, oldest first.
    pub snaps: Vec<Snap>,
    pub gone: BTreeMap<u64, Gone>,
    pub next_id: u64,
    /// Reference count of every diff-area slot (0 = free).
    refs: Vec<u32>,
    /// CRC-32C of every used slot's data (None: copied unchecked).
    crcs: Vec<Option<u32>>,
    free: BTreeSet<u32>,
    used: u64,
    /// Per file: the largest `alloc` over live snapshots (writes past it copy nothing).
    max_alloc: HashMap<String, u64>,
    pub total_copied: u64,
}

impl CowState {
    pub fn new(chunk_size: u64) -> Self {
        CowState {
            chunk_shift: chunk_size.trailing_zeros(),
            snaps: Vec::new(),
            gone: BTreeMap::new(),
            next_id: 1,
            refs: Vec::new(),
            crcs: Vec::new(),
            free: BTreeSet::new(),
            used: 0,
            max_alloc: HashMap::new(),
            total_copied: 0,
        }
    }

    pub fn chunk_size(&self) -> u64 {
        1 << self.chunk_shift
    }

    /// Diff-area slots in use.
    pub fn used_slots(&self) -> u64 {
        self.used
    }

    /// The CRC-32C recorded for a used slot (None: free, or copied unchecked).
    pub fn slot_crc(&self, slot: u32) -> Option<u32> {
        let i = slot as usize;
        if self.refs.get(i).copied().unwrap_or(0) > 0 {
            self.crcs[i]
        } else {
            None
        }
    }

    /// Used slots and the ids of the live snapshots that refer to each.
    pub fn slot_users(&self) -> BTreeMap<u32, Vec<u64>> {
        let mut out: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for s in &self.snaps {
            for f in s.files.values() {
                for &slot in f.preserved.values().chain(f.overlay.values()) {
                    if slot != ZERO_SLOT {
                        out.entry(slot).or_default().push(s.id);
                    }
                }
            }
        }
        out
    }

    pub fn snap(&self, id: u64) -> Option<&Snap> {
        self.snaps.iter().find(|s| s.id == id)
    }

    /// The chunks of `path` in `[first, end)` a live write would copy now, and whom each serves.
    pub fn plan_copies(&self, path: &str, first: u64, end: u64) -> Plan {
        let Some(&max_alloc) = self.max_alloc.get(path) else {
            return Vec::new();
        };
        let end = end.min(max_alloc);
        if first >= end {
            return Vec::new();
        }
        // The snapshots holding this file, newest first.
        let holders: Vec<(u64, &SnapFile)> = self
            .snaps
            .iter()
            .rev()
            .filter_map(|s| s.files.get(path).map(|f| (s.id, f)))
            .collect();
        let cs = self.chunk_size();
        let mut plan = Vec::new();
        for c in first..end {
            let mut serves = Vec::new();
            let mut size = 0;
            for &(id, f) in &holders {
                if c >= f.alloc {
                    continue;
                }
                if f.preserved.contains_key(&c) {
                    break;
                }
                serves.push(id);
                size = size.max(f.size);
            }
            if !serves.is_empty() {
                plan.push(PlannedCopy {
                    chunk: c,
                    serves,
                    // c < alloc for each, so each size is past the chunk's start.
                    bytes: (size - c * cs).min(cs),
                });
            }
        }
        plan
    }

    /// The `n` slots the next copies will use: free ones lowest first, then new ones at the end.
    pub fn next_slots(&self, n: usize) -> Vec<u32> {
        let mut out: Vec<u32> = self.free.iter().take(n).copied().collect();
        let mut next = self.refs.len() as u32;
        while out.len() < n {
            out.push(next);
            next += 1;
        }
        out
    }

    /// Where chunk `c` of `path` in snapshot `id` comes from (the snapshot must be live and hold
    /// the file).
    pub fn source(&self, f: &SnapFile, c: u64) -> Source {
        if let Some(&slot) = f.overlay.get(&c) {
            return if slot == ZERO_SLOT {
                Source::Zero
            } else {
                Source::Slot(slot)
            };
        }
        if let Some(&slot) = f.preserved.get(&c) {
            return Source::Slot(slot);
        }
        if c < f.alloc {
            Source::Live
        } else {
            Source::Zero
        }
    }

    fn take_slot(&mut self, slot: u32, count: u32, crc: Option<u32>) -> Result<(), String> {
        let i = slot as usize;
        if slot == ZERO_SLOT {
            return Err("slot number is the zero marker".to_owned());
        }
        if i >= self.refs.len() {
            for s in self.refs.len()..i {
                self.free.insert(s as u32);
            }
            self.refs.resize(i + 1, 0);
            self.crcs.resize(i + 1, None);
        } else if self.refs[i] != 0 {
            return Err(format!("slot {slot} is already in use"));
        } else {
            self.free.remove(&slot);
        }
        self.refs[i] = count;
        self.crcs[i] = crc;
        self.used += 1;
        Ok(())
    }

    fn drop_ref(&mut self, slot: u32) {
        let i = slot as usize;
        if slot == ZERO_SLOT || i >= self.refs.len() || self.refs[i] == 0 {
            return;
        }
        self.refs[i] -= 1;
        if self.refs[i] == 0 {
            self.free.insert(slot);
            self.used -= 1;
        }
    }

    /// Recounts every slot's references from the live snapshots (after recovery removed some in
    /// a way the counts may not have followed).
    pub fn rebuild_refs(&mut self) {
        let users = self.slot_users();
        self.refs.iter_mut().for_each(|r| *r = 0);
        self.free.clear();
        self.used = 0;
        for (&slot, ids) in &users {
            if let Some(r) = self.refs.get_mut(slot as usize) {
                *r = ids.len() as u32;
                self.used += 1;
            }
        }
        for (i, &r) in self.refs.iter().enumerate() {
            if r == 0 {
                self.free.insert(i as u32);
            }
        }
    }

    /// Drops free slots at the end of the table; returns the new slot count.
    pub fn trim(&mut self) -> u32 {
        while let Some(&last) = self.free.last() {
            if last as usize + 1 != self.refs.len() {
                break;
            }
            self.free.remove(&last);
            self.refs.pop();
            self.crcs.pop();
        }
        self.refs.len() as u32
    }

    fn recompute_max_alloc<'a>(&mut self, paths: impl Iterator<Item = &'a String>) {
        for p in paths {
            let m = self
                .snaps
                .iter()
                .filter_map(|s| s.files.get(p).map(|f| f.alloc))
                .max();
            match m {
                Some(m) if m > 0 => {
                    self.max_alloc.insert(p.clone(), m);
                }
                _ => {
                    self.max_alloc.remove(p);
                }
            }
        }
    }

    fn remove(&mut self, id: u64, why: Gone) -> Result<(), String> {
        let Some(i) = self.snaps.iter().position(|s| s.id == id) else {
            // Deleting an invalid (already removed) snapshot only changes its listing.
            return match self.gone.get(&id) {
                Some(_) => {
                    self.gone.insert(id, why);
                    Ok(())
                }
                None => Err(format!("snapshot {id} is not live")),
            };
        };
        let snap = self.snaps.remove(i);
        for f in snap.files.values() {
            for &slot in f.preserved.values().chain(f.overlay.values()) {
                self.drop_ref(slot);
            }
        }
        self.recompute_max_alloc(snap.files.keys());
        self.gone.insert(id, why);
        Ok(())
    }

    fn snap_file_mut(&mut self, id: u64, path: &str) -> Result<&mut SnapFile, String> {
        self.snaps
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| format!("snapshot {id} is not live"))?
            .files
            .get_mut(path)
            .ok_or_else(|| format!("snapshot {id} has no file {path:?}"))
    }

    /// Applies one journal record. An error means the record does not fit the state (a corrupt
    /// journal); the state may then be partly changed and must not be trusted.
    pub fn apply(&mut self, rec: &Record) -> Result<(), String> {
        let shift = self.chunk_shift;
        match rec {
            Record::Header { .. } | Record::Session { .. } | Record::Close => {}
            Record::IdFloor { next_id } => self.next_id = self.next_id.max(*next_id),
            Record::Create {
                id,
                created_unix,
                files,
            } => {
                if *id < self.next_id {
                    return Err(format!(
                        "snapshot id {id} is not above the last one ({})",
                        self.next_id - 1
                    ));
                }
                let files: HashMap<String, SnapFile> = files
                    .iter()
                    .map(|(p, size)| {
                        let alloc = size.div_ceil(1 << shift);
                        (
                            p.clone(),
                            SnapFile {
                                size: *size,
                                alloc,
                                ..SnapFile::default()
                            },
                        )
                    })
                    .collect();
                let paths: Vec<String> = files.keys().cloned().collect();
                self.snaps.push(Snap {
                    id: *id,
                    created_unix: *created_unix,
                    files,
                    copied_while_newest: 0,
                });
                self.next_id = id + 1;
                self.recompute_max_alloc(paths.iter());
            }
            Record::Delete { id, reason } => self.remove(*id, Gone::Deleted(*reason))?,
            Record::Invalidate { id, reason } => {
                if self.snap(*id).is_some() {
                    self.remove(*id, Gone::Invalid(reason.clone()))?;
                } else {
                    // Already gone: keep the more telling reason.
                    self.gone.insert(*id, Gone::Invalid(reason.clone()));
                }
            }
            Record::Copies { path, entries } => {
                for CopyEntry {
                    chunk,
                    slot,
                    data_crc,
                    serves,
                } in entries
                {
                    if serves.is_empty() {
                        return Err(format!("copy of chunk {chunk} serves no snapshot"));
                    }
                    for &id in serves {
                        let f = self.snap_file_mut(id, path)?;
                        if f.preserved.insert(*chunk, *slot).is_some() {
                            return Err(format!(
                                "chunk {chunk} of {path:?} copied twice for snapshot {id}"
                            ));
                        }
                    }
                    self.take_slot(*slot, serves.len() as u32, *data_crc)?;
                }
                if let Some(newest) = self.snaps.last_mut() {
                    newest.copied_while_newest += entries.len() as u64;
                }
                self.total_copied += entries.len() as u64;
            }
            Record::ViewWrite {
                id,
                path,
                chunk,
                slot,
                data_crc,
            } => {
                self.snap_file_mut(*id, path)?;
                self.take_slot(*slot, 1, Some(*data_crc))?;
                let f = self.snap_file_mut(*id, path)?;
                let old = f.overlay.insert(*chunk, *slot);
                if let Some(old) = old {
                    self.drop_ref(old);
                }
            }
            Record::ViewResize { id, path, size } => {
                let f = self.snap_file_mut(*id, path)?;
                let old_len = f.view_len();
                f.view_size = Some(*size);
                let mut dropped = Vec::new();
                if *size < old_len {
                    // Whole chunks past the new end read as zeros from now on.
                    let from = size.div_ceil(1 << shift);
                    let to = old_len.div_ceil(1 << shift).max(f.alloc);
                    for c in from..to {
                        if let Some(old) = f.overlay.insert(c, ZERO_SLOT) {
                            dropped.push(old);
                        }
                    }
                }
                for s in dropped {
                    self.drop_ref(s);
                }
            }
        }
        Ok(())
    }
}
