//! Materialized mode: the modelled cluster's disks as real VHDX files on real volumes.
//!
//! # How this works
//!
//! A materialized CSV is a [`Volume`] (a folder with real copy-on-write snapshots); each of its
//! materialized VMs has a real VHDX file there, made with the model disk's geometry and opened in
//! write-through metadata mode, so that every guest write makes exactly the file writes
//! [`VhdxModel`](crate::workload::VhdxModel) emits (see `layout.rs`). `advance` then applies
//! every guest write the model accepted to the real disk too, with deterministic bytes from a
//! keyed stream of (VM stream seed, write ordinal), in time order across the CSV's VMs (stable:
//! VM order, then write order, for equal times) — the order the model's time-ordered
//! copy-on-write path uses; when the model takes its batch path no snapshot can be deleted, and
//! per-VM counts do not depend on the order. The volume's counters are read after every guest
//! write, so copies are attributed to the VM that caused them, the diff-area peak is seen write by
//! write, and a snapshot the diff-area limit deleted carries the time of the write that did it.
//!
//! The invariant this makes testable: on the same scenario and seed, the model's counts (chunks
//! copied per VM, diff-area bytes and peak per CSV, deleted snapshots and their times, file
//! sizes) equal what the real volumes did. It holds when every VM of a materialized CSV is
//! materialized (an unmaterialized VM's writes reach only the model).
//!
//! Real files are not fsynced write by write (the storage below the VHDX writer ignores flushes:
//! the simulation models copies, not power loss); `close_materialized` closes every disk cleanly
//! and flushes the volumes.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Csv, ModelCluster};
use crate::cow::DEFAULT_CHUNK_SIZE;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::vhdx::{self, CreateOptions, DiskType, OpenOptions, Vhdx, VhdxError};
use crate::volume::{to_io, Volume, VolumeFile};
use crate::workload::layout::{DiskKind, LOGICAL_SECTOR, PHYSICAL_SECTOR};
use crate::workload::rng::Rng;

/// Label of the keyed stream that makes a materialized VM's data.
const DATA_STREAM: u64 = 0x6461_7461;

/// One accepted guest write of a materialized VM, in a window.
#[derive(Debug, Clone, Copy)]
pub(super) struct MatWrite {
    /// The VM's position in its CSV.
    pub pos: u32,
    pub offset: u64,
    pub length: u32,
    pub time: f64,
}

/// What the real volumes did in a window (indexed by VM id; zero for VMs not materialized).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealWindow {
    pub chunks_copied: Vec<u64>,
    /// Bytes written to the VHDX files (data and metadata).
    pub file_bytes: Vec<u64>,
    /// Real snapshots the diff-area limit deleted: (CSV, volume snapshot id, time of the write).
    pub deleted: Vec<(usize, u64, f64)>,
}

/// A file on the volume as the VHDX writer's storage: counts the bytes written, and ignores
/// flushes (see the module doc).
struct SimFile {
    file: VolumeFile,
    written: Arc<AtomicU64>,
}

impl Storage for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read(buf, offset).map_err(to_io)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write(buf, offset).map_err(to_io)?;
        self.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.file.len().map_err(to_io)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len).map_err(to_io)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        self.file.path().display().to_string()
    }
}

struct MatVm {
    id: usize,
    path: String,
    disk: Option<Vhdx>,
    seed: u64,
    /// Guest writes applied so far (the data stream's position).
    ordinal: u64,
    written: Arc<AtomicU64>,
    /// Bytes written when the current window started.
    window_base: u64,
    window_copied: u64,
    total_copied: u64,
}

/// The real side of one materialized CSV.
pub(super) struct MatCsv {
    volume: Volume,
    /// By VM position in the CSV.
    vms: Vec<Option<MatVm>>,
    /// Model snapshot id → volume snapshot id.
    snaps: BTreeMap<u64, u64>,
    snapshots_taken: bool,
    /// The volume's copy count when the CSV was materialized.
    base_copied: u64,
    peak: u64,
    auto_seen: usize,
    window_deleted: Vec<(usize, u64, f64)>,
    closed: bool,
    /// Why a real write failed: the real side no longer matches the model, so it stops.
    failed: Option<String>,
    buf: Vec<u8>,
}

impl fmt::Debug for MatCsv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatCsv")
            .field("root", &self.volume.root())
            .field("vms", &self.vms.iter().flatten().count())
            .field("snaps", &self.snaps)
            .finish()
    }
}

fn vhdx_err(vm: usize, what: &str, e: VhdxError) -> Error {
    match e {
        VhdxError::Io { file, source } => Error::io(
            file,
            io::Error::new(
                source.kind(),
                format!("materialized VM {vm}: {what}: {source}"),
            ),
        ),
        other => Error::Vhdx(other),
    }
}

/// Fills `buf` with the data of guest write `ordinal` of the stream `seed` (whole u64 words).
fn fill(buf: &mut [u8], seed: u64, ordinal: u64) {
    let mut rng = Rng::keyed(seed, DATA_STREAM, ordinal);
    for w in buf.chunks_exact_mut(8) {
        w.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
}

impl MatCsv {
    pub fn has_vm(&self, pos: usize) -> bool {
        self.vms.get(pos).is_some_and(Option::is_some)
    }

    fn state_error(&self, what: &str) -> Error {
        Error::State(format!(
            "materialized CSV on {}: {what}",
            self.volume.root().display()
        ))
    }

    /// Refuses to go on after `close_materialized` or a failed real write.
    fn check_usable(&self) -> Result<()> {
        if self.closed {
            return Err(self.state_error("its disks were closed (close_materialized)"));
        }
        if let Some(why) = &self.failed {
            return Err(self.state_error(&format!(
                "a real write failed earlier ({why}); the real disks no longer match the model"
            )));
        }
        Ok(())
    }

    pub fn create_snapshot(&mut self) -> Result<u64> {
        self.check_usable()?;
        self.snapshots_taken = true;
        Ok(self.volume.create_snapshot()?)
    }

    pub fn map_snapshot(&mut self, model: u64, real: u64) {
        self.snaps.insert(model, real);
    }

    /// Deletes the real twin of model snapshot `model`, if it is still live.
    pub fn delete_snapshot(&mut self, model: u64) -> Result<()> {
        if let Some(real) = self.snaps.get(&model).copied() {
            if self.volume.live_snapshots()?.contains(&real) {
                self.volume.delete_snapshot(real)?;
            }
        }
        Ok(())
    }

    /// Applies a window's accepted guest writes to the real disks (see the module doc).
    pub fn apply(&mut self, ci: usize, writes: &mut Vec<MatWrite>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.check_usable() {
            writes.clear();
            return Err(e);
        }
        // Stable: equal times keep VM order, then write order (the model's time order).
        writes.sort_by(|a, b| a.time.total_cmp(&b.time));
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| -> Result<()> {
            let mut before = self.volume.counters(true)?;
            for w in writes.iter() {
                let len = w.length as usize;
                if buf.len() < len.next_multiple_of(8) {
                    buf.resize(len.next_multiple_of(8), 0);
                }
                let Some(Some(vm)) = self.vms.get_mut(w.pos as usize) else {
                    return Err(Error::State(format!(
                        "VM at position {} of CSV {ci} is not materialized",
                        w.pos
                    )));
                };
                let data = &mut buf[..len.next_multiple_of(8)];
                fill(data, vm.seed, vm.ordinal);
                vm.ordinal += 1;
                let Some(disk) = vm.disk.as_mut() else {
                    return Err(Error::State(format!("{} is closed", vm.path)));
                };
                disk.write(w.offset, &data[..len]).map_err(|e| {
                    vhdx_err(
                        vm.id,
                        &format!("guest write of {len} bytes at {}", w.offset),
                        e,
                    )
                })?;
                let after = self.volume.counters(true)?;
                let copied = after.total_chunks_copied - before.total_chunks_copied;
                vm.window_copied += copied;
                vm.total_copied += copied;
                self.peak = self.peak.max(after.peak_diff_area_bytes);
                if after.auto_deleted > self.auto_seen {
                    for id in self.volume.auto_deleted_from(self.auto_seen)? {
                        self.window_deleted.push((ci, id, w.time));
                    }
                    self.auto_seen = after.auto_deleted;
                }
                before = after;
            }
            Ok(())
        })();
        self.buf = buf;
        writes.clear();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Closes and reopens VM `pos`'s disk (the model's `close_session`).
    pub fn close_session(&mut self, pos: usize) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let before = self.volume.counters(true)?;
        let Some(Some(vm)) = self.vms.get_mut(pos) else {
            return Ok(());
        };
        let Some(mut disk) = vm.disk.take() else {
            return Ok(());
        };
        let written_before = vm.written.load(Ordering::Relaxed);
        disk.close()
            .map_err(|e| vhdx_err(vm.id, "closing the disk", e))?;
        drop(disk);
        vm.disk = Some(open_disk(&self.volume, &vm.path, &vm.written)?);
        // Close writes are not a window's guest writes: kept out of the window figures.
        vm.window_base += vm.written.load(Ordering::Relaxed) - written_before;
        let after = self.volume.counters(true)?;
        vm.total_copied += after.total_chunks_copied - before.total_chunks_copied;
        self.peak = self.peak.max(after.peak_diff_area_bytes);
        Ok(())
    }
}

/// Opens the VHDX at `path` on the volume for writing, in write-through metadata mode.
fn open_disk(volume: &Volume, path: &str, written: &Arc<AtomicU64>) -> Result<Vhdx> {
    let file = volume.open_file(Path::new(path), false)?;
    let st = SimFile {
        file,
        written: written.clone(),
    };
    let mut disk = Vhdx::open_storage(
        Box::new(st),
        OpenOptions {
            writable: true,
            ..OpenOptions::default()
        },
    )?;
    disk.set_commit_each_write(true)?;
    Ok(disk)
}

impl ModelCluster {
    fn mat_csv(&self, csv: usize) -> Result<&MatCsv> {
        self.csv(csv)?.mat.as_deref().ok_or_else(|| {
            Error::invalid(
                "csv",
                format!("CSV {csv} is not materialized (call materialize_csv first)"),
            )
        })
    }

    /// Puts CSV `csv`'s materialized VMs on `volume`. The volume's diff-area limit is set to the
    /// CSV's (the model's limit is the one that counts); the CSV's chunk size must be the
    /// volume's (16 KiB); neither may have a live snapshot yet.
    pub fn materialize_csv(&mut self, csv: usize, volume: Volume) -> Result<()> {
        let c = self.csv_mut(csv)?;
        if c.mat.is_some() {
            return Err(Error::State(format!("CSV {csv} is already materialized")));
        }
        if c.cow.chunk_size() != DEFAULT_CHUNK_SIZE {
            return Err(Error::invalid(
                "csv",
                format!(
                    "CSV {csv} tracks {}-byte chunks; a real volume copies {DEFAULT_CHUNK_SIZE}-byte \
                     chunks, so it cannot be materialized",
                    c.cow.chunk_size()
                ),
            ));
        }
        if !c.cow.snapshots().is_empty() {
            return Err(Error::State(format!(
                "CSV {csv} already has live snapshots: materialize it before the first snapshot"
            )));
        }
        if !volume.live_snapshots()?.is_empty() {
            return Err(Error::State(format!(
                "the volume {} already has live snapshots; materialize onto a volume without any",
                volume.root().display()
            )));
        }
        volume.set_diff_area_max_bytes(c.cow.diff_area_limit())?;
        let counters = volume.counters(true)?;
        c.mat = Some(Box::new(MatCsv {
            vms: Vec::new(),
            snaps: BTreeMap::new(),
            snapshots_taken: false,
            base_copied: counters.total_chunks_copied,
            peak: counters.diff_area_bytes,
            auto_seen: counters.auto_deleted,
            window_deleted: Vec::new(),
            closed: false,
            failed: None,
            buf: Vec::new(),
            volume,
        }));
        Ok(())
    }

    /// Makes VM `vm`'s disk a real VHDX at `path` (relative to its CSV's volume root; folders are
    /// created): the model disk's geometry (fixed or dynamic, 512-byte logical and 4096-byte
    /// physical sectors), a dynamic disk's initially allocated blocks written (one sector each,
    /// in order), then closed and reopened in write-through mode, so its state is the model's
    /// fresh state. Before the CSV's first snapshot and before the VM's first write.
    pub fn materialize_vm(&mut self, vm: usize, path: &str) -> Result<()> {
        let &(ci, pos) = self
            .index
            .get(vm)
            .ok_or_else(|| Error::invalid("vm", format!("{vm} is not a VM id")))?;
        let c: &mut Csv = &mut self.csvs[ci];
        let v = &c.vms[pos];
        let Some(m) = c.mat.as_deref_mut() else {
            return Err(Error::State(format!(
                "VM {vm}'s CSV {ci} is not materialized (call materialize_csv first)"
            )));
        };
        if m.has_vm(pos) {
            return Err(Error::State(format!("VM {vm} is already materialized")));
        }
        if m.closed {
            return Err(m.state_error("its disks were closed (close_materialized)"));
        }
        if m.snapshots_taken || !c.cow.snapshots().is_empty() {
            return Err(Error::State(format!(
                "CSV {ci} already had a snapshot: materialize VM {vm} before the first one"
            )));
        }
        if v.totals.writes > 0 || v.disk.blocks_allocated() > 0 {
            return Err(Error::State(format!(
                "VM {vm} has already written to its disk: materialize it before the first advance"
            )));
        }
        let model = &v.disk;
        if !model.virtual_size().is_multiple_of(LOGICAL_SECTOR) {
            return Err(Error::invalid(
                "vm",
                format!(
                    "VM {vm}'s disk size {} is not a multiple of {LOGICAL_SECTOR} bytes",
                    model.virtual_size()
                ),
            ));
        }
        let file = m.volume.open_file(Path::new(path), true)?;
        if file.len()? != 0 {
            return Err(Error::invalid(
                "path",
                format!("{} already exists on the volume", file.path().display()),
            ));
        }
        let written = Arc::new(AtomicU64::new(0));
        let opts = CreateOptions {
            virtual_size: model.virtual_size(),
            disk_type: match model.kind() {
                DiskKind::Fixed => DiskType::Fixed,
                DiskKind::Dynamic => DiskType::Dynamic,
            },
            block_size: Some(model.block_size()),
            logical_sector_size: Some(LOGICAL_SECTOR as u32),
            physical_sector_size: Some(PHYSICAL_SECTOR as u32),
        };
        let st = SimFile {
            file,
            written: written.clone(),
        };
        let mut disk = vhdx::create_on(Box::new(st), &opts, None, None)
            .map_err(|e| vhdx_err(vm, "creating the disk", e))?;
        if model.kind() == DiskKind::Dynamic {
            let bs = model.block_size();
            let mut sector = vec![0u8; PHYSICAL_SECTOR as usize];
            let blocks = model.geometry().payload_blocks;
            for b in (0..blocks).take_while(|&b| model.is_allocated(b)) {
                fill(&mut sector, v.gen.seed(), u64::MAX - b);
                let n = (model.virtual_size() - b * bs).min(PHYSICAL_SECTOR) as usize;
                disk.write(b * bs, &sector[..n])
                    .map_err(|e| vhdx_err(vm, "writing the initial blocks", e))?;
            }
        }
        disk.close()
            .map_err(|e| vhdx_err(vm, "closing the new disk", e))?;
        drop(disk);
        let disk = open_disk(&m.volume, path, &written)?;
        let real = disk
            .file_length()
            .map_err(|e| vhdx_err(vm, "reading its length", e))?;
        if real != model.file_size() {
            return Err(Error::State(format!(
                "VM {vm}: the real VHDX is {real} bytes but the model's is {} bytes (the model's \
                 layout no longer matches the writer's)",
                model.file_size()
            )));
        }
        if m.vms.len() <= pos {
            m.vms.resize_with(pos + 1, || None);
        }
        m.vms[pos] = Some(MatVm {
            id: vm,
            path: path.to_owned(),
            disk: Some(disk),
            seed: v.gen.seed(),
            ordinal: 0,
            window_base: written.load(Ordering::Relaxed),
            written,
            window_copied: 0,
            total_copied: 0,
        });
        Ok(())
    }

    /// The real volume's snapshot id for the model's snapshot `snapshot` of CSV `csv`.
    pub fn real_snapshot_id(&self, csv: usize, snapshot: u64) -> Result<u64> {
        self.mat_csv(csv)?
            .snaps
            .get(&snapshot)
            .copied()
            .ok_or_else(|| {
                Error::invalid(
                    "snapshot_id",
                    format!("{snapshot} is not a snapshot of CSV {csv} taken while materialized"),
                )
            })
    }

    /// Bytes in the real volume's diff area now.
    pub fn real_diff_area_bytes(&self, csv: usize) -> Result<u64> {
        Ok(self.mat_csv(csv)?.volume.counters(false)?.diff_area_bytes)
    }

    /// The most bytes the real diff area held since the CSV was materialized.
    pub fn real_peak_diff_area_bytes(&self, csv: usize) -> Result<u64> {
        let m = self.mat_csv(csv)?;
        Ok(m.peak.max(m.volume.counters(false)?.peak_diff_area_bytes))
    }

    /// Chunks the real volume copied since the CSV was materialized.
    pub fn real_total_chunks_copied(&self, csv: usize) -> Result<u64> {
        let m = self.mat_csv(csv)?;
        Ok(m.volume.counters(false)?.total_chunks_copied - m.base_copied)
    }

    /// VM `vm`'s real disk, if materialized.
    fn mat_vm(&self, vm: usize) -> Result<Option<&MatVm>> {
        let &(ci, pos) = self
            .index
            .get(vm)
            .ok_or_else(|| Error::invalid("vm", format!("{vm} is not a VM id")))?;
        Ok(self.csvs[ci]
            .mat
            .as_deref()
            .and_then(|m| m.vms.get(pos))
            .and_then(Option::as_ref))
    }

    /// The path of VM `vm`'s real disk (relative to its volume root), if materialized.
    pub fn materialized_path(&self, vm: usize) -> Result<Option<String>> {
        Ok(self.mat_vm(vm)?.map(|v| v.path.clone()))
    }

    /// VM `vm`'s real totals since it was materialized: (chunks copied, bytes written to its file
    /// after creation), session closes included; None if not materialized.
    pub fn real_vm_totals(&self, vm: usize) -> Result<Option<(u64, u64)>> {
        Ok(self
            .mat_vm(vm)?
            .map(|v| (v.total_copied, v.written.load(Ordering::Relaxed))))
    }

    /// Closes every real disk cleanly (log empty, LogGuid zero) and flushes the volumes. From
    /// then on, advancing materialized VMs (and snapshots of their CSVs) is an error. Every disk
    /// is closed even if one fails; the first error is returned.
    pub fn close_materialized(&mut self) -> Result<()> {
        let mut first: Option<Error> = None;
        for c in &mut self.csvs {
            let Some(m) = c.mat.as_deref_mut() else {
                continue;
            };
            if m.closed {
                continue;
            }
            m.closed = true;
            for v in m.vms.iter_mut().flatten() {
                if let Some(mut disk) = v.disk.take() {
                    if let Err(e) = disk.close() {
                        first.get_or_insert(vhdx_err(v.id, "closing the disk", e));
                    }
                }
            }
            if let Err(e) = m.volume.flush() {
                first.get_or_insert(e.into());
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The real volumes' figures of a window (None when nothing is materialized).
    pub(super) fn collect_real(&mut self) -> Result<Option<RealWindow>> {
        if self.csvs.iter().all(|c| c.mat.is_none()) {
            return Ok(None);
        }
        let n = self.index.len();
        let mut r = RealWindow {
            chunks_copied: vec![0; n],
            file_bytes: vec![0; n],
            deleted: Vec::new(),
        };
        for c in &mut self.csvs {
            let Some(m) = c.mat.as_deref_mut() else {
                continue;
            };
            for (pos, slot) in m.vms.iter_mut().enumerate() {
                let Some(v) = slot.as_mut() else { continue };
                let id = c.vms[pos].id;
                r.chunks_copied[id] = std::mem::take(&mut v.window_copied);
                let now = v.written.load(Ordering::Relaxed);
                r.file_bytes[id] = now - v.window_base;
                v.window_base = now;
            }
            r.deleted.append(&mut m.window_deleted);
        }
        r.deleted.sort_by(|a, b| a.2.total_cmp(&b.2));
        Ok(Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::VolumeOptions;
    use crate::workload::spec::{Locality, SizeDist, WorkloadSpec};
    use crate::workload::VmConfig;

    const MIB: u64 = 1 << 20;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("vssim-mat-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root")).unwrap();
        Dir(d)
    }

    fn volume(d: &Dir, csv: usize) -> Volume {
        let root = d.0.join(format!("csv{csv}"));
        std::fs::create_dir_all(&root).unwrap();
        Volume::open(
            &root,
            &d.0.join(format!("diff{csv}")),
            VolumeOptions::default(),
        )
        .unwrap()
    }

    fn spec(v: u64) -> WorkloadSpec {
        WorkloadSpec {
            iops: 60.0 + 10.0 * v as f64,
            read_fraction: 0.25,
            sizes: SizeDist::typical(),
            locality: if v.is_multiple_of(2) {
                Locality::HotSpot {
                    hot_fraction: 0.2,
                    hot_share: 0.8,
                }
            } else {
                Locality::SequentialLog {
                    region_fraction: 0.5,
                }
            },
            diurnal: None,
            growth_per_day: 0.0,
            daily_change: None,
        }
    }

    /// 2 CSVs, 6 VMs (fixed and dynamic, 8–32 MiB blocks, 64–128 MiB disks), all materialized.
    fn cluster(d: &Dir, limit: Option<u64>) -> (ModelCluster, Vec<Volume>) {
        let mut c = ModelCluster::new();
        let mut vols = Vec::new();
        for csv in 0..2 {
            c.add_csv(8 << 30, 16384, limit).unwrap();
            let v = volume(d, csv);
            c.materialize_csv(csv, v.clone()).unwrap();
            vols.push(v);
        }
        for v in 0..6u64 {
            let id = c
                .add_vm(VmConfig {
                    csv: (v % 2) as usize,
                    disk_size: (64 + 32 * (v % 3)) * MIB,
                    allocated: (v % 3) * 20 * MIB,
                    block_size: (8 * MIB) << (v % 3),
                    kind: if v % 3 == 0 {
                        DiskKind::Fixed
                    } else {
                        DiskKind::Dynamic
                    },
                    spec: spec(v),
                    seed: 500 + v,
                    cbt_block_size: 65536,
                })
                .unwrap();
            c.materialize_vm(id, &format!("vm-{id:04}/disk0.vhdx"))
                .unwrap();
        }
        (c, vols)
    }

    fn assert_equal(c: &ModelCluster) {
        for csv in 0..c.csv_count() {
            let cow = c.cow(csv).unwrap();
            assert_eq!(c.real_diff_area_bytes(csv).unwrap(), cow.diff_area_bytes());
            assert_eq!(
                c.real_peak_diff_area_bytes(csv).unwrap(),
                cow.peak_diff_area_bytes()
            );
            assert_eq!(
                c.real_total_chunks_copied(csv).unwrap(),
                cow.total_chunks_copied()
            );
        }
        for vm in 0..c.vm_count() {
            let (copied, _) = c.real_vm_totals(vm).unwrap().unwrap();
            assert_eq!(copied, c.totals(vm).unwrap().chunks_copied, "VM {vm}");
        }
    }

    fn file_len(d: &Dir, c: &ModelCluster, vm: usize) -> u64 {
        let path = c.materialized_path(vm).unwrap().unwrap();
        std::fs::metadata(d.0.join(format!("csv{}", vm % 2)).join(path))
            .unwrap()
            .len()
    }

    #[test]
    fn real_volumes_copy_what_the_model_counts() {
        let d = dir("equal");
        let (mut c, _vols) = cluster(&d, None);
        let mut snaps = Vec::new();
        let mut copied_any = false;
        for w in 0..5 {
            for csv in 0..2 {
                snaps.push((csv, c.snapshot(csv).unwrap()));
            }
            if w == 3 {
                let (csv, id) = snaps.remove(0);
                c.delete_snapshot(csv, id).unwrap();
            }
            let t0 = f64::from(w) * 2.0;
            let r = c.advance(t0, t0 + 2.0).unwrap();
            let real = r.real.clone().unwrap();
            for vm in 0..c.vm_count() {
                assert_eq!(real.chunks_copied[vm], r.vms[vm].chunks_copied, "VM {vm}");
                copied_any |= real.chunks_copied[vm] > 0;
                assert_eq!(file_len(&d, &c, vm), c.file_size(vm).unwrap(), "VM {vm}");
                assert!(real.file_bytes[vm] >= r.vms[vm].bytes_written);
            }
            assert_equal(&c);
            if w == 2 {
                c.close_sessions().unwrap();
                assert_equal(&c);
            }
        }
        assert!(copied_any);
        c.close_materialized().unwrap();
        assert!(c.snapshot(0).is_err());
        for vm in 0..c.vm_count() {
            let path =
                d.0.join(format!("csv{}", vm % 2))
                    .join(c.materialized_path(vm).unwrap().unwrap());
            let findings = crate::vhdx::check_file(&path);
            assert!(
                findings
                    .iter()
                    .all(|f| f.severity != crate::vhdx::Severity::Error),
                "{findings:?}"
            );
        }
        // Advancing materialized VMs after the close is an error.
        assert!(c.advance(10.0, 12.0).is_err());
    }

    #[test]
    fn a_full_diff_area_deletes_the_same_snapshots_at_the_same_writes() {
        let d = dir("limit");
        let (mut c, _vols) = cluster(&d, Some(6 * MIB));
        let mut deleted = 0;
        for w in 0..6 {
            let mut ids = Vec::new();
            for csv in 0..2 {
                ids.push((csv, c.snapshot(csv).unwrap()));
            }
            let t0 = f64::from(w) * 2.0;
            let r = c.advance(t0, t0 + 2.0).unwrap();
            let real = r.real.unwrap();
            let mapped: Vec<(usize, u64, f64)> = r
                .deleted
                .iter()
                .map(|&(csv, id, t)| (csv, c.real_snapshot_id(csv, id).unwrap(), t))
                .collect();
            assert_eq!(mapped, real.deleted);
            deleted += real.deleted.len();
            for vm in 0..c.vm_count() {
                assert_eq!(real.chunks_copied[vm], r.vms[vm].chunks_copied, "VM {vm}");
            }
            assert_equal(&c);
        }
        assert!(deleted > 0, "the limit should have deleted snapshots");
        c.close_materialized().unwrap();
    }

    #[test]
    fn bad_order_is_refused() {
        let d = dir("order");
        let mut c = ModelCluster::new();
        c.add_csv(8 << 30, 16384, None).unwrap();
        c.add_csv(8 << 30, 4096, None).unwrap();
        let cfg = VmConfig {
            csv: 0,
            disk_size: 64 * MIB,
            allocated: 0,
            block_size: 8 * MIB,
            kind: DiskKind::Dynamic,
            spec: spec(0),
            seed: 1,
            cbt_block_size: 65536,
        };
        let a = c.add_vm(cfg.clone()).unwrap();
        let b = c.add_vm(cfg.clone()).unwrap();
        assert!(
            c.materialize_vm(a, "a.vhdx").is_err(),
            "CSV not materialized"
        );
        let v = volume(&d, 0);
        assert!(c.materialize_csv(1, v.clone()).is_err(), "4 KiB chunks");
        c.materialize_csv(0, v.clone()).unwrap();
        assert!(c.materialize_csv(0, v).is_err(), "twice");
        c.materialize_vm(a, "a/a.vhdx").unwrap();
        assert!(c.materialize_vm(a, "a/b.vhdx").is_err(), "VM twice");
        assert!(c.materialize_vm(b, "a/a.vhdx").is_err(), "file exists");
        assert!(
            c.materialize_vm(b, "../out.vhdx").is_err(),
            "outside the volume"
        );
        assert!(c.real_snapshot_id(0, 1).is_err());
        c.snapshot(0).unwrap();
        assert!(c.materialize_vm(b, "b.vhdx").is_err(), "after a snapshot");
        assert_eq!(c.materialized_path(a).unwrap().as_deref(), Some("a/a.vhdx"));
        assert_eq!(c.materialized_path(b).unwrap(), None);
        assert!(c.real_diff_area_bytes(1).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u8),
        Snapshot(u8),
        Delete(u8),
        CloseSessions,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            5 => (1u8..=8).prop_map(Op::Advance),
            3 => any::<u8>().prop_map(Op::Snapshot),
            1 => any::<u8>().prop_map(Op::Delete),
            1 => Just(Op::CloseSessions),
        ]
    }

    fn random_run(case: u32, limit_mib: Option<u64>, vms: &[(u8, u8, bool, u8)], ops: &[Op]) {
        let d = dir(&format!("prop{case}"));
        let mut c = ModelCluster::new();
        for csv in 0..2 {
            c.add_csv(8 << 30, 16384, limit_mib.map(|m| m * MIB))
                .unwrap();
            c.materialize_csv(csv, volume(&d, csv)).unwrap();
        }
        for (i, &(bs_log, alloc_q, fixed, loc)) in vms.iter().enumerate() {
            let bs = MIB << (bs_log % 6);
            let size = 64 * MIB + u64::from(alloc_q % 3) * 32 * MIB;
            let mut s = spec(u64::from(loc));
            if loc % 3 == 2 {
                s.locality = Locality::Uniform;
            }
            s.iops = 40.0 + f64::from(loc % 5) * 30.0;
            let id = c
                .add_vm(VmConfig {
                    csv: i % 2,
                    disk_size: size,
                    allocated: size * u64::from(alloc_q % 4) / 4,
                    block_size: bs,
                    kind: if fixed {
                        DiskKind::Fixed
                    } else {
                        DiskKind::Dynamic
                    },
                    spec: s,
                    seed: u64::from(case) * 100 + i as u64,
                    cbt_block_size: 65536,
                })
                .unwrap();
            c.materialize_vm(id, &format!("vm{id}/d.vhdx")).unwrap();
        }
        let mut t = 0.0;
        let mut live: Vec<(usize, u64)> = Vec::new();
        for o in ops {
            match *o {
                Op::Advance(q) => {
                    let t1 = t + f64::from(q) * 0.25;
                    let r = c.advance(t, t1).unwrap();
                    t = t1;
                    let real = r.real.clone().unwrap();
                    let model: Vec<(usize, u64, f64)> = r
                        .deleted
                        .iter()
                        .map(|&(csv, id, at)| (csv, c.real_snapshot_id(csv, id).unwrap(), at))
                        .collect();
                    assert_eq!(model, real.deleted);
                    for vm in 0..c.vm_count() {
                        assert_eq!(real.chunks_copied[vm], r.vms[vm].chunks_copied, "VM {vm}");
                        assert_eq!(file_len(&d, &c, vm), c.file_size(vm).unwrap(), "VM {vm}");
                    }
                    live.retain(|&(csv, id)| c.cow(csv).unwrap().is_live(id));
                }
                Op::Snapshot(k) => {
                    let csv = usize::from(k % 2);
                    live.push((csv, c.snapshot(csv).unwrap()));
                }
                Op::Delete(k) => {
                    if !live.is_empty() {
                        let (csv, id) = live.remove(usize::from(k) % live.len());
                        c.delete_snapshot(csv, id).unwrap();
                    }
                }
                Op::CloseSessions => c.close_sessions().unwrap(),
            }
            assert_equal(&c);
        }
        c.close_materialized().unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::workload::layout_proof::cases(10)))]

        /// Random clusters, windows, snapshots (taken and deleted in any order), session closes and
        /// diff-area limits: the real volumes always do what the model counts.
        #[test]
        fn random_scenarios_agree(
            limit in proptest::option::of(2u64..24),
            vms in proptest::collection::vec((0u8..6, 0u8..4, proptest::bool::ANY, 0u8..15), 2..5),
            ops in proptest::collection::vec(op(), 1..14),
        ) {
            static CASE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            random_run(case, limit, &vms, &ops);
        }
    }
}
