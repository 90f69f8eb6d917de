//! Proof that [`VhdxModel`] is the VHDX writer: the real writer (`vhdx::Vhdx`, write-through
//! metadata mode) runs on a recording storage beside the model, on the same guest write streams;
//! after every write the file writes it made are the pieces the model emitted (same offsets,
//! lengths and order), the file sizes are equal, and at every epoch boundary (a snapshot) the set
//! of 16 KiB chunks written in the epoch is the same. Session closes (close and reopen) included.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::layout::{DiskKind, Piece, VhdxModel};
use super::spec::{Generator, Locality, SizeDist, WorkloadSpec, WriteBatch};
use crate::storage::Storage;
use crate::vhdx::{create_on, CreateOptions, DiskType, OpenOptions, Vhdx};

const MIB: u64 = 1 << 20;

/// Proptest cases: `PROPTEST_CASES` if set (`make bench` soaks), else `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const CHUNK: u64 = 16 * 1024;
const PAGE: u64 = 64 * 1024;

/// Sparse bytes in memory; records every write (offset, length) in order.
#[derive(Default)]
struct Rec {
    pages: BTreeMap<u64, Vec<u8>>,
    len: u64,
    log: Vec<Piece>,
}

#[derive(Clone, Default)]
struct RecStorage(Arc<Mutex<Rec>>);

impl Storage for RecStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let r = self.0.lock().unwrap();
        if offset + buf.len() as u64 > r.len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match r.pages.get(&(at / PAGE)) {
                Some(p) => dst.copy_from_slice(&p[(at % PAGE) as usize..(at % PAGE) as usize + n]),
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut r = self.0.lock().unwrap();
        r.log.push(Piece {
            offset,
            length: buf.len() as u32,
        });
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
            let page = r
                .pages
                .entry(at / PAGE)
                .or_insert_with(|| vec![0; PAGE as usize]);
            page[(at % PAGE) as usize..(at % PAGE) as usize + n]
                .copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        r.len = r.len.max(offset + buf.len() as u64);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap().len)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut r = self.0.lock().unwrap();
        r.len = len;
        let keep = len.div_ceil(PAGE);
        r.pages.retain(|&p, _| p < keep);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        "recorded".into()
    }
}

/// The model and the real writer side by side.
struct Pair {
    model: VhdxModel,
    st: RecStorage,
    disk: Vhdx,
    model_epoch: BTreeSet<u64>,
    real_epoch: BTreeSet<u64>,
    guest: u64,
}

fn chunks(set: &mut BTreeSet<u64>, p: Piece) {
    if p.length > 0 {
        set.extend(p.offset / CHUNK..=(p.offset + u64::from(p.length) - 1) / CHUNK);
    }
}

fn reopen(st: &RecStorage) -> Vhdx {
    let mut d = Vhdx::open_storage(
        Box::new(st.clone()),
        OpenOptions {
            writable: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    d.set_commit_each_write(true).unwrap();
    d
}

impl Pair {
    /// As materialized mode makes a disk: create, write the initially allocated blocks (one
    /// sector each, in order), close, reopen in write-through mode.
    fn new(virtual_size: u64, block_size: u64, kind: DiskKind, allocated: u64) -> Pair {
        let model = VhdxModel::new(virtual_size, block_size, kind, allocated).unwrap();
        let st = RecStorage::default();
        let opts = CreateOptions {
            virtual_size,
            disk_type: match kind {
                DiskKind::Fixed => DiskType::Fixed,
                DiskKind::Dynamic => DiskType::Dynamic,
            },
            block_size: Some(block_size),
            logical_sector_size: Some(512),
            physical_sector_size: Some(4096),
        };
        let mut disk = create_on(Box::new(st.clone()), &opts, None, None).unwrap();
        assert_eq!(disk.geometry(), model.geometry());
        if kind == DiskKind::Dynamic {
            for b in (0..model.geometry().payload_blocks).take_while(|&b| model.is_allocated(b)) {
                disk.write(b * block_size, &[0xA5; 512]).unwrap();
            }
        }
        disk.close().unwrap();
        drop(disk);
        let disk = reopen(&st);
        for b in 0..model.geometry().payload_blocks {
            let e = disk.block_entry(b);
            match model.block_offset(b) {
                Some(off) => assert_eq!(e, crate::vhdx::bat::entry(6, off), "block {b}"),
                None => assert_eq!(e & 7, 0, "block {b}"),
            }
        }
        let pair = Pair {
            model,
            st,
            disk,
            model_epoch: BTreeSet::new(),
            real_epoch: BTreeSet::new(),
            guest: 0,
        };
        pair.check_size();
        pair.st.0.lock().unwrap().log.clear();
        pair
    }

    fn check_size(&self) {
        assert_eq!(
            self.disk.file_length().unwrap(),
            self.model.file_size(),
            "file sizes after {} guest writes",
            self.guest
        );
    }

    /// Takes what the real writer wrote since the last call.
    fn real_writes(&mut self) -> Vec<Piece> {
        let log = std::mem::take(&mut self.st.0.lock().unwrap().log);
        for &p in &log {
            chunks(&mut self.real_epoch, p);
        }
        log
    }

    fn write(&mut self, offset: u64, length: u32) {
        self.guest += 1;
        let mut model = Vec::new();
        self.model.map_write(offset, length, &mut |p| model.push(p));
        for &p in &model {
            chunks(&mut self.model_epoch, p);
        }
        let data = vec![(self.guest % 251) as u8; length as usize];
        self.disk.write(offset, &data).unwrap();
        let real = self.real_writes();
        assert_eq!(
            model, real,
            "guest write {} ({length} bytes at {offset})",
            self.guest
        );
        self.check_size();
    }

    fn close_session(&mut self) {
        let mut model = Vec::new();
        self.model.close_session(&mut |p| model.push(p));
        for &p in &model {
            chunks(&mut self.model_epoch, p);
        }
        self.disk.close().unwrap();
        self.disk = reopen(&self.st);
        let real = self.real_writes();
        assert_eq!(model, real, "close after {} guest writes", self.guest);
        self.check_size();
    }

    fn epoch(&mut self) {
        assert_eq!(
            self.model_epoch, self.real_epoch,
            "chunks written in the epoch ending after {} guest writes",
            self.guest
        );
        self.model_epoch.clear();
        self.real_epoch.clear();
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write { slot: u64, sectors: u32 },
    Snapshot,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (any::<u64>(), prop_oneof![Just(1u32), Just(8), Just(16), Just(32), Just(128), Just(512), Just(2048), 1u32..2048])
            .prop_map(|(slot, sectors)| Op::Write { slot, sectors }),
        2 => Just(Op::Snapshot),
        1 => Just(Op::Close),
    ]
}

fn run(vs: u64, bs: u64, kind: DiskKind, allocated: u64, ops: &[Op]) {
    let mut pair = Pair::new(vs, bs, kind, allocated);
    for o in ops {
        match *o {
            Op::Write { slot, sectors } => {
                let len = u64::from(sectors) * 512;
                // 4 KiB aligned, as the generator places them.
                let slots = (vs - len) / 4096 + 1;
                pair.write((slot % slots) * 4096, len as u32);
            }
            Op::Snapshot => pair.epoch(),
            Op::Close => pair.close_session(),
        }
    }
    pair.epoch();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn model_and_writer_agree_write_for_write(
        fixed in any::<bool>(),
        bs_log in 0u32..=8,
        vs_mib in 64u64..=512,
        vs_tail in 0u64..2048,
        alloc_frac in 0u64..=4,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let bs = MIB << bs_log;
        let vs = vs_mib * MIB - vs_tail * 512;
        let kind = if fixed { DiskKind::Fixed } else { DiskKind::Dynamic };
        run(vs, bs, kind, vs * alloc_frac / 4, &ops);
    }
}

/// Generator streams (the sizes and alignments materialized mode really sees), with snapshots
/// between windows and a session close in the middle.
#[test]
fn generator_streams_agree() {
    for (i, (kind, bs, locality)) in [
        (DiskKind::Dynamic, 8 * MIB, Locality::Uniform),
        (
            DiskKind::Dynamic,
            32 * MIB,
            Locality::HotSpot {
                hot_fraction: 0.1,
                hot_share: 0.9,
            },
        ),
        (
            DiskKind::Fixed,
            MIB,
            Locality::SequentialLog {
                region_fraction: 0.3,
            },
        ),
        (DiskKind::Dynamic, 256 * MIB, Locality::Zipf { theta: 0.9 }),
    ]
    .into_iter()
    .enumerate()
    {
        let vs = 256 * MIB;
        let spec = WorkloadSpec {
            iops: 400.0,
            read_fraction: 0.2,
            sizes: SizeDist::typical(),
            locality,
            diurnal: None,
            growth_per_day: 0.0,
            daily_change: None,
        };
        let gen = Generator::new(spec, vs, 77 + i as u64).unwrap();
        let mut pair = Pair::new(vs, bs, kind, if i == 1 { 40 * MIB } else { 0 });
        let mut batch = WriteBatch::default();
        for w in 0..6 {
            batch.clear();
            gen.generate(f64::from(w), f64::from(w + 1), &mut batch);
            for k in 0..batch.len() {
                pair.write(batch.offsets[k], batch.lengths[k]);
            }
            pair.epoch();
            if w == 3 {
                pair.close_session();
            }
        }
        assert!(pair.guest > 1000);
    }
}

/// The model's layout is what `vhdx::create` makes, for every block size and both kinds.
#[test]
fn layouts_match_create() {
    for bs_log in 0..=8 {
        let bs = MIB << bs_log;
        for vs in [64 * MIB, 256 * MIB - 512, 3 * 256 * MIB + 4096] {
            for kind in [DiskKind::Fixed, DiskKind::Dynamic] {
                let pair = Pair::new(vs, bs, kind, vs / 3);
                assert_eq!(pair.disk.file_length().unwrap(), pair.model.file_size());
                let first = (0..pair.model.geometry().payload_blocks)
                    .find_map(|b| pair.model.block_offset(b));
                assert_eq!(first, Some(pair.model.data_offset()));
            }
        }
    }
}
