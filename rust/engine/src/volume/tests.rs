//! Volume tests: behaviour, bad input, recovery, and random interleavings against a plain
//! reference (byte copies of every file at every snapshot instant) and against `CowTracker`.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::lock::{DIFF_LOCK_NAME, ROOT_LOCK_NAME};
use super::open::COMPACT_AT;
use super::*;
use crate::cow::CowTracker;
use crate::storage::Storage;

const K: u64 = 16 * 1024;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "vssim-vol-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("root")).unwrap();
        TempDir(p)
    }
    fn root(&self) -> PathBuf {
        self.0.join("root")
    }
    fn diff(&self) -> PathBuf {
        self.0.join("diff")
    }
    fn open(&self) -> Volume {
        Volume::open(&self.root(), &self.diff(), VolumeOptions::default()).unwrap()
    }
    fn open_with(&self, o: VolumeOptions) -> Result<Volume> {
        Volume::open(&self.root(), &self.diff(), o)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ends a session as `kill -9` would: no clean close (the core lives on, unreachable), and its
/// locks dropped as the kernel drops a dead process's (the lock files stay).
fn die(v: &Volume) {
    if let Some(locks) = lock(&v.shared).unwrap().locks.take() {
        locks.drop_as_if_killed();
    }
    std::mem::forget(v.shared.clone());
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut b = vec![0u8; len];
    fill_pattern(&mut b, seed);
    b
}

fn view_bytes(v: &Volume, id: u64, path: &str) -> Result<Vec<u8>> {
    let view = v.open_view(id, Path::new(path), false)?;
    let mut b = vec![0u8; view.len()? as usize];
    view.read(&mut b, 0)?;
    Ok(b)
}

fn write(v: &Volume, path: &str, off: u64, data: &[u8]) {
    v.open_file(Path::new(path), true)
        .unwrap()
        .write(data, off)
        .unwrap();
}

#[test]
fn view_shows_the_snapshot_instant_and_copies_once() {
    let t = TempDir::new("basic");
    let v = t.open();
    let old = pattern(5 * K as usize + 100, 1);
    write(&v, "vm/disk.vhdx", 0, &old);
    let s = v.create_snapshot().unwrap();
    write(&v, "vm/disk.vhdx", 100, &pattern(20_000, 2));
    write(&v, "vm/disk.vhdx", 150, &pattern(10, 3)); // rewrite: no copy
    write(&v, "vm/disk.vhdx", 9 * K, &pattern(5000, 4)); // growth: no copy
    assert_eq!(v.stats().unwrap().total_chunks_copied, 2);
    assert_eq!(v.stats().unwrap().diff_area_bytes, 2 * K);
    assert_eq!(view_bytes(&v, s, "vm/disk.vhdx").unwrap(), old);
    let live = std::fs::read(t.root().join("vm/disk.vhdx")).unwrap();
    assert_ne!(live[..old.len()], old[..]);
    // A file made after the snapshot is not in it.
    write(&v, "vm/new.bin", 0, b"new");
    let err = v.open_view(s, Path::new("vm/new.bin"), false).unwrap_err();
    assert!(matches!(err, VolumeError::NotInSnapshot { .. }), "{err}");
}

#[test]
fn last_partial_chunk_is_copied_when_written_past_the_old_end() {
    let t = TempDir::new("partial");
    let v = t.open();
    write(&v, "f", 0, &pattern(10_000, 1));
    let s = v.create_snapshot().unwrap();
    write(&v, "f", 12_000, &pattern(100, 2));
    assert_eq!(v.stats().unwrap().total_chunks_copied, 1);
    assert_eq!(view_bytes(&v, s, "f").unwrap(), pattern(10_000, 1));
}

#[test]
fn truncation_and_removal_keep_the_snapshot_whole() {
    let t = TempDir::new("trunc");
    let v = t.open();
    write(&v, "a", 0, &pattern(70_000, 1));
    write(&v, "b", 0, &pattern(40_000, 2));
    let s = v.create_snapshot().unwrap();
    v.open_file(Path::new("a"), false)
        .unwrap()
        .set_len(20_000)
        .unwrap();
    v.remove_file(Path::new("b")).unwrap();
    assert!(!t.root().join("b").exists());
    write(&v, "b", 0, b"reborn");
    assert_eq!(view_bytes(&v, s, "a").unwrap(), pattern(70_000, 1));
    assert_eq!(view_bytes(&v, s, "b").unwrap(), pattern(40_000, 2));
}

#[test]
fn diff_area_limit_deletes_the_oldest_and_views_fail_cleanly() {
    let t = TempDir::new("limit");
    let v = t
        .open_with(VolumeOptions {
            diff_area_max_bytes: Some(3 * K),
            ..Default::default()
        })
        .unwrap();
    write(&v, "f", 0, &pattern(8 * K as usize, 1));
    let a = v.create_snapshot().unwrap();
    let view_a = v.open_view(a, Path::new("f"), false).unwrap();
    write(&v, "f", 0, &pattern(2 * K as usize, 2));
    let b = v.create_snapshot().unwrap();
    write(&v, "f", 4 * K, &pattern(2 * K as usize, 3));
    assert_eq!(v.stats().unwrap().auto_deleted, vec![a]);
    let mut buf = [0u8; 10];
    let err = view_a.read(&mut buf, 0).unwrap_err();
    assert!(
        matches!(err, VolumeError::SnapshotDeleted { id, .. } if id == a),
        "{err}"
    );
    assert!(err.to_string().contains("VolSnap event 24"), "{err}");
    // Through the Storage trait the error keeps its engine form.
    let io = Storage::read_at(&view_a, &mut buf, 0).unwrap_err();
    let inner = io.get_ref().and_then(|e| e.downcast_ref::<VolumeError>());
    assert!(matches!(inner, Some(VolumeError::SnapshotDeleted { .. })));
    let mut want = pattern(8 * K as usize, 1);
    want[..2 * K as usize].copy_from_slice(&pattern(2 * K as usize, 2));
    assert_eq!(view_bytes(&v, b, "f").unwrap(), want);
}

#[test]
fn deleting_a_snapshot_frees_its_diff_area() {
    let t = TempDir::new("free");
    let v = t.open();
    write(&v, "f", 0, &pattern(10 * K as usize, 1));
    let a = v.create_snapshot().unwrap();
    write(&v, "f", 0, &pattern(10 * K as usize, 2));
    let st = v.stats().unwrap();
    assert_eq!(st.diff_area_bytes, 10 * K);
    assert_eq!(st.diff_file_bytes, 10 * K);
    assert_eq!(v.delete_snapshot(a).unwrap(), 10 * K);
    let st = v.stats().unwrap();
    assert_eq!((st.diff_area_bytes, st.diff_file_bytes), (0, 0));
    assert!(matches!(
        v.delete_snapshot(a),
        Err(VolumeError::SnapshotDeleted { .. })
    ));
    assert!(matches!(
        v.open_view(99, Path::new("f"), false),
        Err(VolumeError::UnknownSnapshot { id: 99 })
    ));
}

#[test]
fn writable_view_writes_land_in_the_diff_area_and_persist() {
    let t = TempDir::new("writable");
    let live_bytes = pattern(3 * K as usize, 1);
    let s;
    {
        let v = t.open();
        write(&v, "d.vhdx", 0, &live_bytes);
        s = v.create_snapshot().unwrap();
        let ro = v.open_view(s, Path::new("d.vhdx"), false).unwrap();
        assert!(matches!(
            ro.write(b"x", 0),
            Err(VolumeError::ReadOnly { .. })
        ));
        let w = v.open_view(s, Path::new("d.vhdx"), true).unwrap();
        w.write(b"recovered", 100).unwrap();
        w.write(&pattern(100, 5), 3 * K - 50).unwrap(); // grows the view
        assert_eq!(w.len().unwrap(), 3 * K + 50);
        w.set_len(K + 7).unwrap();
        w.set_len(2 * K).unwrap();
    }
    assert_eq!(std::fs::read(t.root().join("d.vhdx")).unwrap(), live_bytes);
    let v = t.open();
    let mut want = live_bytes.clone();
    want[100..109].copy_from_slice(b"recovered");
    want.truncate(K as usize + 7);
    want.resize(2 * K as usize, 0);
    assert_eq!(view_bytes(&v, s, "d.vhdx").unwrap(), want);
}

#[test]
fn snapshots_persist_across_reopen() {
    let t = TempDir::new("persist");
    let (a, b);
    {
        let v = t.open();
        write(&v, "x/y", 0, &pattern(50_000, 1));
        a = v.create_snapshot().unwrap();
        write(&v, "x/y", 1000, &pattern(30_000, 2));
        b = v.create_snapshot().unwrap();
        write(&v, "x/y", 0, &pattern(50_000, 3));
    }
    let v = t.open();
    assert_eq!(v.live_snapshots().unwrap(), vec![a, b]);
    assert!(v.recovery_notes().unwrap().is_empty());
    assert_eq!(view_bytes(&v, a, "x/y").unwrap(), pattern(50_000, 1));
    let mut at_b = pattern(50_000, 1);
    at_b[1000..31_000].copy_from_slice(&pattern(30_000, 2));
    assert_eq!(view_bytes(&v, b, "x/y").unwrap(), at_b);
    // Ids keep counting after a reopen.
    assert_eq!(v.create_snapshot().unwrap(), b + 1);
}

fn journal_path(t: &TempDir) -> PathBuf {
    t.diff().join(JOURNAL_NAME)
}

#[test]
fn torn_journal_tail_marks_snapshots_invalid() {
    let t = TempDir::new("torn");
    let s;
    {
        let v = t.open();
        write(&v, "f", 0, &pattern(4 * K as usize, 1));
        s = v.create_snapshot().unwrap();
        write(&v, "f", 0, &pattern(100, 2));
        die(&v); // no clean close: the process "died"
    }
    // Cut the last record (the copy) in half, as a crash during its append would.
    let j = journal_path(&t);
    let bytes = std::fs::read(&j).unwrap();
    let scan = journal::scan(&bytes);
    let (_, off, _) = scan.records.last().unwrap();
    std::fs::write(&j, &bytes[..*off as usize + 10]).unwrap();
    std::fs::remove_file(t.diff().join(DIFF_LOCK_NAME)).unwrap();
    let v = t.open();
    let err = view_bytes(&v, s, "f").unwrap_err();
    assert!(matches!(err, VolumeError::SnapshotInvalid { .. }), "{err}");
    assert!(err.to_string().contains("torn or corrupt"), "{err}");
    let st = v.snapshots().unwrap();
    assert!(matches!(st[0].state, SnapshotState::Invalid(_)));
    // The invalidation is itself persistent, and the snapshot can be deleted.
    drop(v);
    let v = t.open();
    assert!(view_bytes(&v, s, "f").is_err());
    v.delete_snapshot(s).unwrap();
    assert!(v.live_snapshots().unwrap().is_empty());
}

#[test]
fn unclean_session_on_an_earlier_boot_is_not_trusted_unless_durable() {
    for durable in [false, true] {
        let t = TempDir::new("boot");
        let s;
        {
            let v = t
                .open_with(VolumeOptions {
                    durable,
                    boot_id: Some("boot-1".into()),
                    ..Default::default()
                })
                .unwrap();
            write(&v, "f", 0, &pattern(2 * K as usize, 1));
            s = v.create_snapshot().unwrap();
            write(&v, "f", 0, &pattern(10, 2));
            die(&v);
        }
        std::fs::remove_file(t.diff().join(DIFF_LOCK_NAME)).unwrap();
        // Same boot: a killed process loses nothing the kernel took.
        let same = t
            .open_with(VolumeOptions {
                boot_id: Some("boot-1".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            view_bytes(&same, s, "f").unwrap(),
            pattern(2 * K as usize, 1)
        );
        die(&same);
        std::fs::remove_file(t.diff().join(DIFF_LOCK_NAME)).unwrap();
        let other = t
            .open_with(VolumeOptions {
                boot_id: Some("boot-2".into()),
                ..Default::default()
            })
            .unwrap();
        let r = view_bytes(&other, s, "f");
        // The second session (ordered mode, boot-1) was itself unclean.
        assert!(
            matches!(r, Err(VolumeError::SnapshotInvalid { .. })),
            "durable={durable}: {r:?}"
        );
    }
    // A durable session that died, reopened on another boot, is trusted.
    let t = TempDir::new("boot-durable");
    let s;
    {
        let v = t
            .open_with(VolumeOptions {
                durable: true,
                boot_id: Some("boot-1".into()),
                ..Default::default()
            })
            .unwrap();
        write(&v, "f", 0, &pattern(2 * K as usize, 1));
        s = v.create_snapshot().unwrap();
        write(&v, "f", 0, &pattern(10, 2));
        die(&v);
    }
    std::fs::remove_file(t.diff().join(DIFF_LOCK_NAME)).unwrap();
    let v = t
        .open_with(VolumeOptions {
            boot_id: Some("boot-2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(view_bytes(&v, s, "f").unwrap(), pattern(2 * K as usize, 1));
}

#[test]
fn corrupt_diff_slot_invalidates_its_snapshots() {
    let t = TempDir::new("crc");
    let checked = VolumeOptions {
        checksum_copies: true,
        ..Default::default()
    };
    let s;
    {
        let v = t.open_with(checked.clone()).unwrap();
        write(&v, "f", 0, &pattern(2 * K as usize, 1));
        s = v.create_snapshot().unwrap();
        write(&v, "f", 0, &pattern(10, 2));
    }
    let d = t.diff().join(DIFF_NAME);
    let mut bytes = std::fs::read(&d).unwrap();
    bytes[5] ^= 0xff;
    std::fs::write(&d, bytes).unwrap();
    let v = t.open_with(checked).unwrap();
    let err = view_bytes(&v, s, "f").unwrap_err();
    assert!(err.to_string().contains("CRC-32C"), "{err}");
}

#[test]
fn a_journal_that_is_not_ours_is_refused_untouched() {
    let t = TempDir::new("foreign");
    std::fs::create_dir_all(t.diff()).unwrap();
    std::fs::write(journal_path(&t), b"not a journal at all").unwrap();
    let err = t.open_with(VolumeOptions::default()).unwrap_err();
    assert!(matches!(err, VolumeError::Journal { .. }), "{err}");
    assert_eq!(
        std::fs::read(journal_path(&t)).unwrap(),
        b"not a journal at all"
    );
    assert!(!t.diff().join(DIFF_LOCK_NAME).exists());
}

#[test]
fn paths_outside_the_root_are_refused() {
    let t = TempDir::new("paths");
    std::fs::create_dir_all(t.0.join("elsewhere")).unwrap();
    std::fs::write(t.0.join("elsewhere/secret"), b"s").unwrap();
    std::os::unix::fs::symlink(t.0.join("elsewhere"), t.root().join("out")).unwrap();
    std::fs::create_dir_all(t.root().join("in")).unwrap();
    std::os::unix::fs::symlink(t.root().join("in"), t.root().join("alias")).unwrap();
    let v = t.open();
    for bad in [
        "../elsewhere/secret",
        "a/../../x",
        "out/secret",
        "out/new",
        "",
        ".",
    ] {
        let err = v.open_file(Path::new(bad), true).unwrap_err();
        assert!(
            matches!(err, VolumeError::OutsideRoot { .. }),
            "{bad}: {err}"
        );
    }
    let abs = t.0.join("elsewhere/secret");
    assert!(v.open_file(&abs, false).is_err());
    assert!(!t.0.join("elsewhere/new").exists());
    // A symlink that stays inside resolves to the same file (same copy-on-write key).
    let f = v.open_file(Path::new("alias/f"), true).unwrap();
    assert_eq!(f.key(), "in/f");
    let g = v.open_file(&t.root().join("in/f"), false).unwrap();
    assert_eq!(g.key(), "in/f");
}

#[test]
fn diff_area_inside_the_root_is_excluded_and_protected() {
    let t = TempDir::new("inside");
    let v = Volume::open(
        &t.root(),
        &t.root().join("shadow"),
        VolumeOptions::default(),
    )
    .unwrap();
    write(&v, "f", 0, b"abc");
    let s = v.create_snapshot().unwrap();
    assert_eq!(v.snapshot_files(s).unwrap(), vec![("f".to_owned(), 3)]);
    assert!(v
        .open_file(Path::new("shadow/vssim-volume.diff"), false)
        .is_err());
}

#[test]
fn a_second_opener_is_refused_while_the_first_lives() {
    let t = TempDir::new("busy");
    let v = t.open();
    let err = t.open_with(VolumeOptions::default()).unwrap_err();
    assert!(matches!(err, VolumeError::Busy { .. }), "{err}");
    drop(v);
    t.open();
}

#[test]
fn a_second_volume_on_the_same_root_is_refused_whatever_its_diff_area() {
    // Issue 15 item 5: with only the diff area locked, a second volume on the same root with
    // another diff area wrote freely, and the first one's snapshot view showed the new bytes.
    let t = TempDir::new("rootlock");
    let v = t.open();
    write(&v, "f", 0, &pattern(2 * K as usize, 1));
    let s = v.create_snapshot().unwrap();
    let other = t.0.join("other-diff");
    let err = Volume::open(&t.root(), &other, VolumeOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, VolumeError::Busy { what: "root", .. }),
        "{err}"
    );
    assert!(
        msg.contains(&t.root().canonicalize().unwrap().display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // The same root through a symlink is the same root.
    let alias = t.0.join("alias");
    std::os::unix::fs::symlink(t.root(), &alias).unwrap();
    assert!(matches!(
        Volume::open(&alias, &other, VolumeOptions::default()),
        Err(VolumeError::Busy { what: "root", .. })
    ));
    // Nothing of the refused opens was left behind, and the view is still the snapshot's.
    assert!(!other.exists(), "a refused open makes no diff-area folder");
    assert_eq!(view_bytes(&v, s, "f").unwrap(), pattern(2 * K as usize, 1));
    // The lock file is the volume's, not one of its files.
    assert_eq!(v.snapshot_files(s).unwrap(), vec![("f".to_owned(), 2 * K)]);
    assert!(matches!(
        v.open_file(Path::new(ROOT_LOCK_NAME), false),
        Err(VolumeError::OutsideRoot { .. })
    ));
    drop(v);
    assert!(!t.root().join(ROOT_LOCK_NAME).exists());
    Volume::open(&t.root(), &other, VolumeOptions::default()).unwrap();
}

#[test]
fn export_writes_the_snapshot_out() {
    let t = TempDir::new("export");
    let v = t.open();
    write(&v, "vm/a", 0, &pattern(40_000, 1));
    write(&v, "b", 0, &pattern(100, 2));
    let s = v.create_snapshot().unwrap();
    write(&v, "vm/a", 0, &pattern(40_000, 3));
    let dest = t.0.join("out");
    assert_eq!(v.export_snapshot(s, &dest).unwrap(), 40_100);
    assert_eq!(
        std::fs::read(dest.join("vm/a")).unwrap(),
        pattern(40_000, 1)
    );
    assert_eq!(std::fs::read(dest.join("b")).unwrap(), pattern(100, 2));
    assert!(v.export_snapshot(s, &t.root().join("x")).is_err());
}

// ---- random interleavings ------------------------------------------------------------------

const FILES: [&str; 3] = ["vm1/disk.vhdx", "vm2/disk.vhdx", "vm1/config.xml"];

#[derive(Debug, Clone)]
enum Op {
    Write {
        file: usize,
        off: u64,
        len: u32,
        seed: u64,
    },
    Truncate {
        file: usize,
        len: u64,
    },
    Remove {
        file: usize,
    },
    Snap,
    Delete {
        pick: usize,
    },
    ViewWrite {
        pick: usize,
        file: usize,
        off: u64,
        len: u32,
        seed: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..FILES.len(), 0u64..7 * K, 1u32..(2 * K as u32), any::<u64>())
            .prop_map(|(file, off, len, seed)| Op::Write { file, off, len, seed }),
        1 => (0..FILES.len(), 0u64..6 * K).prop_map(|(file, len)| Op::Truncate { file, len }),
        1 => (0..FILES.len()).prop_map(|file| Op::Remove { file }),
        3 => Just(Op::Snap),
        2 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        2 => (any::<usize>(), 0..FILES.len(), 0u64..7 * K, 1u32..(K as u32), any::<u64>())
            .prop_map(|(pick, file, off, len, seed)| Op::ViewWrite { pick, file, off, len, seed }),
        1 => Just(Op::Reopen),
    ]
}

/// The reference: every file's bytes, live and at every live snapshot's instant.
#[derive(Default)]
struct Model {
    live: BTreeMap<String, Vec<u8>>,
    snaps: BTreeMap<u64, BTreeMap<String, Vec<u8>>>,
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32)
}

fn check_all(v: &Volume, m: &Model, root: &Path) -> std::result::Result<(), TestCaseError> {
    for (path, bytes) in &m.live {
        let on_disk = std::fs::read(root.join(path)).unwrap();
        prop_assert!(&on_disk == bytes, "live {path} differs");
    }
    prop_assert_eq!(
        v.live_snapshots().unwrap(),
        m.snaps.keys().copied().collect::<Vec<_>>()
    );
    for (id, files) in &m.snaps {
        let listed: Vec<String> = v
            .snapshot_files(*id)
            .unwrap()
            .into_iter()
            .map(|f| f.0)
            .collect();
        prop_assert_eq!(listed, files.keys().cloned().collect::<Vec<_>>());
        for (path, bytes) in files {
            let got = view_bytes(v, *id, path).unwrap();
            prop_assert!(&got == bytes, "snapshot {} of {} differs", id, path);
        }
    }
    Ok(())
}

fn run_ops(
    ops: Vec<Op>,
    limit: Option<u64>,
    checksum_copies: bool,
    reserve: u64,
) -> std::result::Result<(), TestCaseError> {
    let t = TempDir::new("prop");
    let opts = VolumeOptions {
        diff_area_max_bytes: limit,
        checksum_copies,
        diff_area_reserve_bytes: reserve,
        ..Default::default()
    };
    let mut v = t.open_with(opts.clone()).unwrap();
    let mut m = Model::default();
    // One CowTracker per file sees the same stream (truncation = a write of the part cut off).
    let mut trackers: Vec<CowTracker> = FILES
        .iter()
        .enumerate()
        .map(|(i, _)| CowTracker::new(1 << 30, K, if i == 0 { limit } else { None }).unwrap())
        .collect();
    let files: &[&str] = if limit.is_some() { &FILES[..1] } else { &FILES };
    let mut expected_copies = 0u64;
    for op in ops {
        match op {
            Op::Write {
                file,
                off,
                len,
                seed,
            } => {
                let file = file % files.len();
                let data = pattern(len as usize, seed);
                let path = files[file];
                let f = v.open_file(Path::new(path), true).unwrap();
                let before = v.stats().unwrap().auto_deleted.len();
                f.write(&data, off).unwrap();
                let out = trackers[file].apply_writes(&[off], &[len], None).unwrap();
                expected_copies += out.chunks_copied;
                let deleted = v.stats().unwrap().auto_deleted[before..].to_vec();
                if limit.is_some() {
                    prop_assert_eq!(&deleted, &out.deleted_snapshots);
                }
                for id in deleted {
                    m.snaps.remove(&id);
                }
                let b = m.live.entry(path.to_owned()).or_default();
                let end = (off as usize) + data.len();
                if b.len() < end {
                    b.resize(end, 0);
                }
                b[off as usize..end].copy_from_slice(&data);
            }
            Op::Truncate { file, len } => {
                let path = files[file % files.len()];
                let Some(b) = m.live.get_mut(path) else {
                    continue;
                };
                let old = b.len() as u64;
                let before = v.stats().unwrap().auto_deleted.len();
                v.open_file(Path::new(path), false)
                    .unwrap()
                    .set_len(len)
                    .unwrap();
                let deleted = v.stats().unwrap().auto_deleted[before..].to_vec();
                let mut want_deleted = Vec::new();
                if len < old {
                    let out = trackers[file % files.len()]
                        .apply_writes(&[len], &[(old - len) as u32], None)
                        .unwrap();
                    expected_copies += out.chunks_copied;
                    want_deleted = out.deleted_snapshots;
                }
                prop_assert_eq!(&deleted, &want_deleted);
                for id in deleted {
                    m.snaps.remove(&id);
                }
                b.resize(len as usize, 0);
            }
            Op::Remove { file } => {
                let path = files[file % files.len()];
                let Some(b) = m.live.remove(path) else {
                    continue;
                };
                let before = v.stats().unwrap().auto_deleted.len();
                v.remove_file(Path::new(path)).unwrap();
                let deleted = v.stats().unwrap().auto_deleted[before..].to_vec();
                let mut want_deleted = Vec::new();
                if !b.is_empty() {
                    let out = trackers[file % files.len()]
                        .apply_writes(&[0], &[b.len() as u32], None)
                        .unwrap();
                    expected_copies += out.chunks_copied;
                    want_deleted = out.deleted_snapshots;
                }
                prop_assert_eq!(&deleted, &want_deleted);
                for id in deleted {
                    m.snaps.remove(&id);
                }
            }
            Op::Snap => {
                let id = v.create_snapshot().unwrap();
                for (i, path) in files.iter().enumerate() {
                    let size = m.live.get(*path).map_or(0, |b| b.len() as u64);
                    let tid = trackers[i].create_snapshot(size).unwrap();
                    prop_assert_eq!(tid, id);
                }
                m.snaps.insert(id, m.live.clone());
            }
            Op::Delete { pick } => {
                if m.snaps.is_empty() {
                    continue;
                }
                let id = *m.snaps.keys().nth(pick % m.snaps.len()).unwrap();
                v.delete_snapshot(id).unwrap();
                for t in trackers.iter_mut().take(files.len()) {
                    t.delete_snapshot(id).unwrap();
                }
                m.snaps.remove(&id);
            }
            Op::ViewWrite {
                pick,
                file,
                off,
                len,
                seed,
            } => {
                if m.snaps.is_empty() {
                    continue;
                }
                let id = *m.snaps.keys().nth(pick % m.snaps.len()).unwrap();
                let path = files[file % files.len()];
                let Some(b) = m.snaps.get_mut(&id).unwrap().get_mut(path) else {
                    continue;
                };
                let data = pattern(len as usize, seed);
                let view = v.open_view(id, Path::new(path), true).unwrap();
                // (Run without a diff-area limit only: no deletions can follow.)
                view.write(&data, off).unwrap();
                let end = off as usize + data.len();
                if b.len() < end {
                    b.resize(end, 0);
                }
                b[off as usize..end].copy_from_slice(&data);
            }
            Op::Reopen => {
                drop(v);
                v = t.open_with(opts.clone()).unwrap();
                let notes = v.recovery_notes().unwrap();
                prop_assert!(notes.iter().all(|n| n.contains("compacted")), "{:?}", notes);
            }
        }
        check_all(&v, &m, &t.root())?;
    }
    if limit.is_none() {
        prop_assert_eq!(v.stats().unwrap().total_chunks_copied, expected_copies);
        let want: u64 = trackers.iter().map(|t| t.diff_area_bytes()).sum();
        // View writes add private slots; without them the diff areas agree to the byte.
        let private: u64 = {
            let core = lock(&v.shared).unwrap();
            core.state
                .snaps
                .iter()
                .flat_map(|s| s.files.values())
                .map(|f| {
                    f.overlay
                        .values()
                        .filter(|&&s| s != state::ZERO_SLOT)
                        .count() as u64
                })
                .sum()
        };
        prop_assert_eq!(v.stats().unwrap().diff_area_bytes, want + private * K);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_interleavings_match_the_reference(
        ops in proptest::collection::vec(op(), 1..60),
        checksum in any::<bool>(),
        reserve in prop_oneof![Just(0u64), Just(4 * K), Just(1 << 20)],
    ) {
        run_ops(ops, None, checksum, reserve)?;
    }

    #[test]
    fn with_a_diff_area_limit_deletions_match_the_tracker(
        ops in proptest::collection::vec(op(), 1..60),
        limit_chunks in 1u64..8,
    ) {
        let ops = ops.into_iter().filter(|o| !matches!(o, Op::ViewWrite { .. })).collect();
        run_ops(ops, Some(limit_chunks * K), limit_chunks % 2 == 0, 0)?;
    }
}

#[test]
fn storage_handles_go_through_copy_on_write() {
    let t = TempDir::new("storage");
    let v = t.open();
    let mut live: Box<dyn Storage> = Box::new(v.open_file(Path::new("d.vhdx"), true).unwrap());
    live.write_at(&pattern(3 * K as usize, 1), 0).unwrap();
    let s = v.create_snapshot().unwrap();
    live.write_at(b"new header", 0).unwrap();
    live.set_len(K).unwrap();
    live.flush().unwrap();
    assert_eq!(live.len().unwrap(), K);
    assert!(!live.is_read_only());
    let mut view: Box<dyn Storage> = Box::new(v.open_view(s, Path::new("d.vhdx"), false).unwrap());
    assert!(view.is_read_only());
    assert_eq!(view.len().unwrap(), 3 * K);
    let mut buf = vec![0u8; 3 * K as usize];
    view.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, pattern(3 * K as usize, 1));
    let err = view.write_at(b"x", 0).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(view.read_at(&mut buf, 1).is_err()); // past the end
    assert!(view.name().contains("snapshot 1"));
    let mut w: Box<dyn Storage> = Box::new(v.open_view(s, Path::new("d.vhdx"), true).unwrap());
    w.write_at(b"recovered", 5).unwrap();
    w.flush().unwrap();
    let mut got = [0u8; 9];
    w.read_at(&mut got, 5).unwrap();
    assert_eq!(&got, b"recovered");
    let mut head = [0u8; 10];
    live.read_at(&mut head, 0).unwrap();
    assert_eq!(&head, b"new header");
}

#[test]
fn at_most_512_live_snapshots() {
    let t = TempDir::new("max");
    let v = t.open();
    write(&v, "f", 0, b"x");
    for _ in 0..MAX_SNAPSHOTS {
        v.create_snapshot().unwrap();
    }
    let err = v.create_snapshot().unwrap_err();
    assert!(
        err.to_string().contains("MAXIMUM_NUMBER_OF_SNAPSHOTS"),
        "{err}"
    );
    // One write, one copy serving all 512 (the copy-once rule).
    write(&v, "f", 0, b"y");
    assert_eq!(v.stats().unwrap().total_chunks_copied, 1);
    assert_eq!(view_bytes(&v, 1, "f").unwrap(), b"x");
    assert_eq!(view_bytes(&v, 512, "f").unwrap(), b"x");
}

#[test]
fn a_journal_with_nothing_live_is_compacted_and_ids_go_on() {
    let t = TempDir::new("compact");
    let last;
    {
        let v = t.open();
        write(&v, "f", 0, &pattern(64 * K as usize, 1));
        let mut id = 0;
        for round in 0..8 {
            id = v.create_snapshot().unwrap();
            for c in 0..64 {
                write(&v, "f", c * K, &pattern(10, round * 100 + c));
            }
            v.delete_snapshot(id).unwrap();
        }
        last = id;
        assert!(v.stats().unwrap().journal_bytes > COMPACT_AT);
    }
    let v = t.open();
    let notes = v.recovery_notes().unwrap();
    assert!(notes.iter().any(|n| n.contains("compacted")), "{notes:?}");
    assert!(v.stats().unwrap().journal_bytes < 200);
    assert_eq!(v.create_snapshot().unwrap(), last + 1);
    drop(v);
    let v = t.open();
    assert_eq!(v.live_snapshots().unwrap(), vec![last + 1]);
}

#[test]
fn a_diff_file_cut_short_invalidates_the_snapshots_that_need_it() {
    let t = TempDir::new("short");
    let (a, b);
    {
        let v = t.open();
        write(&v, "f", 0, &pattern(4 * K as usize, 1));
        a = v.create_snapshot().unwrap();
        write(&v, "f", 0, &pattern(10, 2)); // slot 0, for a
        b = v.create_snapshot().unwrap();
        write(&v, "f", 3 * K, &pattern(10, 3)); // slot 1, for a and b
    }
    let d = t.diff().join(DIFF_NAME);
    let f = std::fs::OpenOptions::new().write(true).open(&d).unwrap();
    f.set_len(K + 100).unwrap();
    drop(f);
    let v = t.open();
    for id in [a, b] {
        let err = view_bytes(&v, id, "f").unwrap_err();
        assert!(err.to_string().contains("slot 1"), "{err}");
    }
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over() {
    let t = TempDir::new("stale");
    drop(t.open());
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(t.diff().join(DIFF_LOCK_NAME), format!("{dead}\n")).unwrap();
    let v = t.open();
    assert_eq!(
        std::fs::read_to_string(t.diff().join(DIFF_LOCK_NAME)).unwrap(),
        format!("{}\n", std::process::id())
    );
    drop(v);
    assert!(!t.diff().join(DIFF_LOCK_NAME).exists());
}

#[test]
fn a_journal_whose_first_header_was_cut_short_starts_anew() {
    let t = TempDir::new("halfheader");
    drop(t.open());
    let j = journal_path(&t);
    let bytes = std::fs::read(&j).unwrap();
    let scan = journal::scan(&bytes);
    let (_, second, _) = scan.records[1];
    for cut in [0usize, 1, 5, second as usize - 1] {
        // A crash inside a fresh journal's header comes before its diff file is made.
        let _ = std::fs::remove_file(t.diff().join(DIFF_NAME));
        std::fs::write(&j, &bytes[..cut]).unwrap();
        let v = t.open();
        assert!(v.live_snapshots().unwrap().is_empty());
        drop(v);
    }
}

#[test]
fn a_record_that_does_not_fit_the_index_invalidates_and_is_dropped() {
    let t = TempDir::new("unfit");
    let s;
    {
        let v = t.open();
        write(&v, "f", 0, &pattern(2 * K as usize, 1));
        s = v.create_snapshot().unwrap();
        write(&v, "f", 0, &pattern(10, 2));
    }
    // A well-framed record that claims slot 0 again, for the same chunk: it cannot be right.
    let j = journal_path(&t);
    let mut bytes = std::fs::read(&j).unwrap();
    let n = journal::scan(&bytes).records.len() as u64;
    let bogus = journal::Record::Copies {
        path: "f".into(),
        entries: vec![journal::CopyEntry {
            chunk: 0,
            slot: 0,
            data_crc: None,
            serves: vec![s],
        }],
    };
    bytes.extend(bogus.frame(n + 1));
    bytes.extend(journal::Record::Close.frame(n + 2));
    std::fs::write(&j, &bytes).unwrap();
    let v = t.open();
    let notes = v.recovery_notes().unwrap().join("\n");
    assert!(notes.contains("does not fit the index"), "{notes}");
    assert!(matches!(
        view_bytes(&v, s, "f"),
        Err(VolumeError::SnapshotInvalid { .. })
    ));
    drop(v);
    // Recovery rewrote the tail: the next open is clean and agrees.
    let v = t.open();
    assert!(v.recovery_notes().unwrap().is_empty());
    assert!(view_bytes(&v, s, "f").is_err());
}

/// A closed volume with snapshot 1 of `f` whose first chunk was copied to the diff area.
fn volume_with_a_copy(t: &TempDir, options: VolumeOptions) -> u64 {
    let v = t.open_with(options).unwrap();
    write(&v, "f", 0, &pattern(2 * K as usize, 1));
    let s = v.create_snapshot().unwrap();
    write(&v, "f", 0, &pattern(100, 2));
    s
}

#[test]
fn a_missing_or_empty_journal_beside_a_diff_file_is_refused_and_nothing_changes() {
    // Issue 15 item 7: deleting or emptying the journal made the next open start afresh, with no
    // note, and truncate the diff file (the snapshots silently gone).
    let t = TempDir::new("nojournal");
    volume_with_a_copy(&t, VolumeOptions::default());
    let diff = std::fs::read(t.diff().join(DIFF_NAME)).unwrap();
    assert_eq!(diff.len() as u64, K);
    for emptied in [false, true] {
        if emptied {
            std::fs::write(journal_path(&t), b"").unwrap();
        } else {
            std::fs::remove_file(journal_path(&t)).unwrap();
        }
        let err = t.open_with(VolumeOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, VolumeError::Journal { .. }), "{msg}");
        assert!(
            msg.contains(if emptied { "is empty" } else { "is missing" }),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{} ({} bytes)", DIFF_NAME, K)),
            "{msg}"
        );
        assert!(msg.contains("discard_snapshots"), "{msg}");
        assert_eq!(std::fs::read(t.diff().join(DIFF_NAME)).unwrap(), diff);
        assert_eq!(journal_path(&t).exists(), emptied, "no journal was made up");
        assert!(!t.diff().join(DIFF_LOCK_NAME).exists());
    }
    // Asked for, the snapshots are discarded, and it says so.
    let v = t
        .open_with(VolumeOptions {
            discard_snapshots: true,
            ..Default::default()
        })
        .unwrap();
    let notes = v.recovery_notes().unwrap().join("\n");
    assert!(notes.contains("discarded"), "{notes}");
    assert!(v.snapshots().unwrap().is_empty());
    assert_eq!(v.stats().unwrap().diff_file_bytes, 0);
    drop(v);
    assert!(t.open().recovery_notes().unwrap().is_empty());
}

#[test]
fn a_zeroed_diff_file_is_found_by_the_view_that_reads_it() {
    // Issue 15 item 7: with default options a zeroed diff file gave wrong snapshot bytes while
    // the snapshot stayed live.
    let t = TempDir::new("zeroed");
    let s = volume_with_a_copy(&t, VolumeOptions::default());
    let d = t.diff().join(DIFF_NAME);
    let len = std::fs::metadata(&d).unwrap().len();
    std::fs::write(&d, vec![0u8; len as usize]).unwrap();
    let v = t.open();
    let err = view_bytes(&v, s, "f").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, VolumeError::DiffAreaDamaged { .. }), "{msg}");
    assert!(
        msg.contains(&d.canonicalize().unwrap().display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("offset 0"), "{msg}");
    let want = crc32c::crc32c(&pattern(2 * K as usize, 1)[..K as usize]);
    assert!(msg.contains(&format!("expected {want:#010x}")), "{msg}");
    assert!(
        msg.contains(&format!(
            "found {:#010x}",
            crc32c::crc32c(&[0u8; K as usize])
        )),
        "{msg}"
    );
    // The snapshot is reported as damaged from then on, in this session and the next.
    let listed = v.snapshots().unwrap();
    assert!(
        matches!(&listed[0].state, SnapshotState::Invalid(r) if r.contains("CRC-32C")),
        "{listed:?}"
    );
    assert!(matches!(
        view_bytes(&v, s, "f"),
        Err(VolumeError::SnapshotInvalid { .. })
    ));
    drop(v);
    let v = t.open();
    assert!(matches!(
        view_bytes(&v, s, "f"),
        Err(VolumeError::SnapshotInvalid { .. })
    ));
}

#[test]
fn a_diff_file_damaged_while_the_volume_is_open_is_found_too() {
    let t = TempDir::new("zeroed-live");
    let v = t.open();
    write(&v, "f", 0, &pattern(3 * K as usize, 1));
    let s = v.create_snapshot().unwrap();
    write(&v, "f", K, &pattern(10, 2));
    let view = v.open_view(s, Path::new("f"), false).unwrap();
    let mut one = vec![0u8; 10];
    view.read(&mut one, K + 5).unwrap();
    let d = std::fs::OpenOptions::new()
        .write(true)
        .open(t.diff().join(DIFF_NAME))
        .unwrap();
    d.write_all_at(b"garbage", 100).unwrap();
    // A read of any part of the damaged chunk fails, and the snapshot is invalid from then on,
    // also where it reads the live file.
    assert!(matches!(
        view.read(&mut one, K + 5000),
        Err(VolumeError::DiffAreaDamaged { .. })
    ));
    assert!(matches!(
        view.read(&mut one, 0),
        Err(VolumeError::SnapshotInvalid { .. })
    ));
}
