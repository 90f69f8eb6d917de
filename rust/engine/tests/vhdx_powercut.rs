//! Power cut at every write: a session of writes, flushes and a trim runs on a storage that stops
//! accepting writes after N of them, for every N. Reopening what is left (read-only, replaying in
//! memory, and writable, replaying on disk) must always succeed, the two must agree, and the disk
//! must read exactly as after the last completed step or after the step in flight — never a mix,
//! never garbage where nothing was written.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use vssim_engine::storage::Storage;
use vssim_engine::vhdx::{self, CreateOptions, OpenOptions, Severity, Vhdx};

const MIB: u64 = 1 << 20;

struct CutStorage {
    bytes: Arc<Mutex<Vec<u8>>>,
    budget: Arc<AtomicI64>,
}

impl CutStorage {
    fn spend(&self) -> io::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(io::Error::other("power cut"));
        }
        Ok(())
    }
}

impl Storage for CutStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let b = self.bytes.lock().unwrap();
        let s = offset as usize;
        let e = s + buf.len();
        if e > b.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&b[s..e]);
        Ok(())
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.spend()?;
        let mut b = self.bytes.lock().unwrap();
        let s = offset as usize;
        if s + buf.len() > b.len() {
            b.resize(s + buf.len(), 0);
        }
        b[s..s + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.lock().unwrap().len() as u64)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.spend()?;
        self.bytes.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        "cut".into()
    }
}

fn storage(bytes: Vec<u8>, budget: i64) -> (CutStorage, Arc<Mutex<Vec<u8>>>) {
    let shared = Arc::new(Mutex::new(bytes));
    let st = CutStorage {
        bytes: shared.clone(),
        budget: Arc::new(AtomicI64::new(budget)),
    };
    (st, shared)
}

/// One step of the session.
type Step = dyn Fn(&mut Vhdx) -> vhdx::VResult<()>;

/// The session; returns how many flushes completed (0..=4, 4 = clean close).
fn session(st: CutStorage, parent: Option<&[u8]>) -> u32 {
    let opts = OpenOptions {
        writable: true,
        parent: parent.map(open_parent),
        ..OpenOptions::default()
    };
    let Ok(mut d) = Vhdx::open_storage(Box::new(st), opts) else {
        return 0;
    };
    let mut done = 0;
    let steps: [&Step; 4] = [
        &|d| d.write(0, &[1u8; 65536]),
        &|d| {
            d.write(3 * MIB, &[2u8; 65536])?;
            d.write(5 * MIB + 7, &[3u8; 1000])
        },
        &|d| {
            d.trim(3 * MIB, MIB)?;
            d.write(7 * MIB, &vec![4u8; (2 * MIB) as usize])
        },
        &|d| d.write(0, &[5u8; 512]),
    ];
    for (i, step) in steps.iter().enumerate() {
        let r = if i < 3 {
            step(&mut d).and_then(|()| d.flush())
        } else {
            step(&mut d).and_then(|()| d.close())
        };
        if r.is_err() {
            d.abandon();
            return done;
        }
        done += 1;
    }
    done
}

fn open_parent(bytes: &[u8]) -> Box<Vhdx> {
    let (st, _) = storage(bytes.to_vec(), 0);
    Box::new(Vhdx::open_storage(Box::new(st), OpenOptions::default()).unwrap())
}

fn read(v: &Vhdx, off: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    v.read(off, &mut b).unwrap();
    b
}

#[test]
fn every_power_cut_recovers_to_a_flushed_state() {
    let (st, base) = storage(Vec::new(), i64::MAX);
    let opts = CreateOptions {
        block_size: Some(MIB),
        ..CreateOptions::dynamic(10 * MIB)
    };
    vhdx::create_on(Box::new(st), &opts, None, None)
        .unwrap()
        .close()
        .unwrap();
    let base = base.lock().unwrap().clone();
    run_cuts(&base, None, vec![0u8; (10 * MIB) as usize]);
}

#[test]
fn every_power_cut_of_a_differencing_child_recovers() {
    // Parent: 9s over the first 6 MiB.
    let (st, parent) = storage(Vec::new(), i64::MAX);
    let opts = CreateOptions {
        block_size: Some(MIB),
        ..CreateOptions::dynamic(10 * MIB)
    };
    let mut p = vhdx::create_on(Box::new(st), &opts, None, None).unwrap();
    p.write(0, &vec![9u8; (6 * MIB) as usize]).unwrap();
    p.close().unwrap();
    drop(p);
    let parent = parent.lock().unwrap().clone();
    let linkage = format!("{{{}}}", open_parent(&parent).data_write_guid());
    let locator = vhdx::metadata::ParentLocator {
        entries: vec![
            ("parent_linkage".into(), linkage),
            ("relative_path".into(), ".\\parent.vhdx".into()),
        ],
    };
    let (st, child) = storage(Vec::new(), i64::MAX);
    let diff = CreateOptions {
        disk_type: vhdx::DiskType::Differencing,
        ..CreateOptions::dynamic(0)
    };
    vhdx::create_on(
        Box::new(st),
        &diff,
        Some(open_parent(&parent)),
        Some(locator),
    )
    .unwrap()
    .close()
    .unwrap();
    let child = child.lock().unwrap().clone();
    let mut initial = vec![0u8; (10 * MIB) as usize];
    initial[..(6 * MIB) as usize].fill(9);
    run_cuts(&child, Some(&parent), initial);
}

fn run_cuts(base: &[u8], parent: Option<&[u8]>, initial: Vec<u8>) {
    // How many writes a whole session makes.
    let counter = Arc::new(AtomicI64::new(i64::MAX));
    let (mut st, _) = storage(base.to_vec(), 0);
    st.budget = counter.clone();
    assert_eq!(session(st, parent), 4);
    let total = i64::MAX - counter.load(Ordering::SeqCst);
    assert!(total > 20, "{total}");
    // The disk after each step: an atomic step is either wholly there or not at all.
    let mut model = initial;
    let mut expected = vec![model.clone()];
    let put = |m: &mut Vec<u8>, off: u64, data: &[u8]| {
        m[off as usize..off as usize + data.len()].copy_from_slice(data);
    };
    put(&mut model, 0, &[1u8; 65536]);
    expected.push(model.clone());
    put(&mut model, 3 * MIB, &[2u8; 65536]);
    put(&mut model, 5 * MIB + 7, &[3u8; 1000]);
    expected.push(model.clone());
    put(&mut model, 3 * MIB, &vec![0u8; MIB as usize]);
    put(&mut model, 7 * MIB, &vec![4u8; (2 * MIB) as usize]);
    expected.push(model.clone());
    put(&mut model, 0, &[5u8; 512]);
    expected.push(model);
    for cut in 0..=total {
        let (st, bytes) = storage(base.to_vec(), cut);
        let done = session(st, parent);
        let after = bytes.lock().unwrap().clone();
        let (ro_st, _) = storage(after.clone(), 0);
        let ro_opts = OpenOptions {
            parent: parent.map(open_parent),
            ..OpenOptions::default()
        };
        let ro = Vhdx::open_storage(Box::new(ro_st), ro_opts)
            .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let image = read(&ro, 0, 10 * MIB);
        let (rw_st, _) = storage(after.clone(), i64::MAX);
        let rw_opts = OpenOptions {
            writable: true,
            parent: parent.map(open_parent),
            ..OpenOptions::default()
        };
        let mut rw = Vhdx::open_storage(Box::new(rw_st), rw_opts).unwrap();
        assert!(read(&rw, 0, 10 * MIB) == image, "cut {cut}: replays differ");
        assert!(rw.log_guid().is_nil());
        assert!(rw.check().iter().all(|f| f.severity != Severity::Error));
        rw.close().unwrap();
        let ok =
            image == expected[done as usize] || (done < 4 && image == expected[done as usize + 1]);
        assert!(
            ok,
            "cut {cut} after {done} completed steps: image matches neither state"
        );
    }
}

// ---- merge ---------------------------------------------------------------------------------

/// A parent (`size` bytes, 1 MiB blocks, data in every `parent_stride`-th block) and a child
/// over it that writes whole blocks, partial blocks over present and absent parent blocks, and
/// trims — every `stride` blocks, so that a large `size` touches several BAT pages.
fn merge_pair(size: u64, stride: u64, parent_stride: usize) -> (Vec<u8>, Vec<u8>) {
    let opts = CreateOptions {
        block_size: Some(MIB),
        ..CreateOptions::dynamic(size)
    };
    let (st, parent) = storage(Vec::new(), i64::MAX);
    let mut p = vhdx::create_on(Box::new(st), &opts, None, None).unwrap();
    let blocks = size / MIB;
    for b in (0..blocks).step_by(parent_stride) {
        p.write(b * MIB, &vec![(b % 250 + 1) as u8; MIB as usize])
            .unwrap();
    }
    p.close().unwrap();
    drop(p);
    let parent = parent.lock().unwrap().clone();
    let linkage = format!("{{{}}}", open_parent(&parent).data_write_guid());
    let locator = vhdx::metadata::ParentLocator {
        entries: vec![
            ("parent_linkage".into(), linkage),
            ("relative_path".into(), ".\\parent.vhdx".into()),
        ],
    };
    let (st, child) = storage(Vec::new(), i64::MAX);
    let diff = CreateOptions {
        disk_type: vhdx::DiskType::Differencing,
        ..CreateOptions::dynamic(0)
    };
    let mut c = vhdx::create_on(
        Box::new(st),
        &diff,
        Some(open_parent(&parent)),
        Some(locator),
    )
    .unwrap();
    let mut b = 0;
    let mut k = 0u64;
    while b + 2 < blocks {
        match k % 4 {
            0 => c.write(b * MIB, &vec![0xC0; MIB as usize]).unwrap(),
            1 => c.write(b * MIB + 4096, &[0xC1; 10_000]).unwrap(),
            2 => c.write(b * MIB + 512 * 9, &[0xC2; 3000]).unwrap(),
            _ => c.trim(b * MIB, MIB).unwrap(),
        }
        b += stride;
        k += 1;
    }
    c.close().unwrap();
    drop(c);
    let child = child.lock().unwrap().clone();
    (parent, child)
}

fn open_child(child: &[u8], parent: Box<Vhdx>) -> vhdx::VResult<Vhdx> {
    let (st, _) = storage(child.to_vec(), 0);
    Vhdx::open_storage(
        Box::new(st),
        OpenOptions {
            parent: Some(parent),
            ..OpenOptions::default()
        },
    )
}

/// Merges `child` into `parent` on a storage that stops after `budget` writes; returns the
/// parent's bytes afterwards and whether the merge returned Ok.
fn merge_with_cut(parent: &[u8], child: &[u8], budget: i64, per_entry: usize) -> (Vec<u8>, bool) {
    let (st, bytes) = storage(parent.to_vec(), budget);
    let p = Vhdx::open_storage(
        Box::new(st),
        OpenOptions {
            writable: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let mut c = open_child(child, Box::new(p)).unwrap();
    let ok = c.merge_into_parent_with(per_entry).is_ok();
    // Past the cut no write lands, whatever closing the disks tries.
    drop(c);
    let after = bytes.lock().unwrap().clone();
    (after, ok)
}

/// What a disk reads, whole: its non-zero MiBs (unallocated ranges read as zeros and are not
/// read; two disks read the same exactly when these are equal).
fn image(v: &Vhdx) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for (o, l) in v.allocated_extents().unwrap() {
        let mut p = o - o % MIB;
        while p < o + l {
            let n = MIB.min(v.virtual_size() - p);
            let b = read(v, p, n);
            if b.iter().any(|&x| x != 0) {
                out.insert(p, b);
            }
            p += MIB;
        }
    }
    out
}

fn merge_cuts(size: u64, stride: u64, parent_stride: usize, per_entry: usize) -> (u32, u32) {
    let (parent, child) = merge_pair(size, stride, parent_stride);
    let old = image(&open_parent(&parent));
    let new = image(&open_child(&child, open_parent(&parent)).unwrap());
    assert_ne!(old, new);
    // How many writes a whole merge makes.
    let counter = Arc::new(AtomicI64::new(i64::MAX));
    {
        let (mut st, _) = storage(parent.clone(), 0);
        st.budget = counter.clone();
        let p = Vhdx::open_storage(
            Box::new(st),
            OpenOptions {
                writable: true,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        let mut c = open_child(&child, Box::new(p)).unwrap();
        c.merge_into_parent_with(per_entry).unwrap();
    }
    let total = i64::MAX - counter.load(Ordering::SeqCst);
    assert!(total > 10, "{total}");
    let (mut olds, mut news) = (0, 0);
    for cut in 0..=total {
        let (after, ok) = merge_with_cut(&parent, &child, cut, per_entry);
        // Read-only (replaying in memory) and writable (replaying on disk) agree.
        let ro = open_parent(&after);
        let got = image(&ro);
        let (rw_st, fixed) = storage(after.clone(), i64::MAX);
        let rw_opts = OpenOptions {
            writable: true,
            ..OpenOptions::default()
        };
        let mut rw = Vhdx::open_storage(Box::new(rw_st), rw_opts)
            .unwrap_or_else(|e| panic!("cut {cut}: the parent does not open writable: {e}"));
        assert!(image(&rw) == got, "cut {cut}: replays differ");
        assert!(rw.log_guid().is_nil());
        let errors: Vec<_> = rw
            .check()
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "cut {cut}: {errors:?}");
        rw.close().unwrap();
        drop(rw);
        let fixed = fixed.lock().unwrap().clone();
        if got == old {
            // The old parent: the child is intact and still its child.
            let c = open_child(&child, open_parent(&fixed))
                .unwrap_or_else(|e| panic!("cut {cut}: old parent, child refused: {e}"));
            assert!(image(&c) == new, "cut {cut}: the child reads differently");
            assert!(
                !ok || cut == total,
                "cut {cut}: merge said Ok but nothing changed"
            );
            olds += 1;
        } else {
            assert!(
                got == new,
                "cut {cut}: the parent is neither old nor merged"
            );
            assert!(
                open_child(&child, open_parent(&fixed)).is_err(),
                "cut {cut}: the merged parent still takes the old child"
            );
            news += 1;
        }
    }
    // The last cut is a merge that completed.
    let (after, ok) = merge_with_cut(&parent, &child, total, per_entry);
    assert!(ok);
    assert!(image(&open_parent(&after)) == new);
    (olds, news)
}

#[test]
fn every_power_cut_of_a_merge_leaves_the_old_parent_or_the_merged_one() {
    let (olds, news) = merge_cuts(10 * MIB, 1, 3, 254);
    // Both outcomes occur: the commit is one instant inside the merge, not at either end.
    assert!(olds > 5 && news > 2, "{olds} old, {news} new");
}

#[test]
fn every_power_cut_of_a_merge_logged_in_several_entries_leaves_old_or_new() {
    // 1.5 GiB of 1 MiB blocks: the child touches three BAT pages, logged as three entries.
    let (olds, news) = merge_cuts(1536 * MIB, 300, 150, 1);
    assert!(olds > 5 && news > 2, "{olds} old, {news} new");
}
