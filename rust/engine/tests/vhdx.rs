//! VHDX end to end on real files and in memory: round trips, the log after a crash, chains,
//! and damaged files (a proptest standing in for the cargo-fuzz target).

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]
use std::path::PathBuf;

use proptest::prelude::*;
use vssim_engine::storage::{FileStorage, Storage};
use vssim_engine::vhdx::{self, CreateOptions, DiskType, OpenOptions, Vhdx};

const MIB: u64 = 1 << 20;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vssim-vhdx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn opts(size: u64, block: u64) -> CreateOptions {
    CreateOptions {
        block_size: Some(block),
        ..CreateOptions::dynamic(size)
    }
}

#[test]
fn round_trip_and_reopen() {
    let dir = tmp("rt");
    let p = dir.join("d.vhdx");
    let mut d = vhdx::create(&p, &opts(10 * MIB, MIB), None).unwrap();
    let data: Vec<u8> = (0..3 * MIB + 77).map(|i| (i % 251) as u8).collect();
    d.write(MIB / 2 + 3, &data).unwrap();
    d.close().unwrap();
    let r = Vhdx::open(&p, false).unwrap();
    let mut back = vec![0u8; data.len()];
    r.read(MIB / 2 + 3, &mut back).unwrap();
    assert_eq!(back, data);
    assert!(r.check().is_empty());
    assert!(r.log_guid().is_nil());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flushed_writes_survive_an_unclean_stop_and_read_only_replay_writes_nothing() {
    let dir = tmp("crash");
    let p = dir.join("d.vhdx");
    let mut d = vhdx::create(&p, &opts(8 * MIB, MIB), None).unwrap();
    d.write(0, &[1u8; 4096]).unwrap();
    d.write(5 * MIB, &[2u8; 4096]).unwrap();
    d.flush().unwrap();
    d.write(7 * MIB, &[3u8; 4096]).unwrap(); // never flushed
    d.abandon();
    let before = std::fs::read(&p).unwrap();
    let ro = Vhdx::open(&p, false).unwrap();
    assert!(ro.replayed_log);
    let mut b = vec![0u8; 4096];
    ro.read(5 * MIB, &mut b).unwrap();
    assert_eq!(b, vec![2u8; 4096]);
    ro.read(7 * MIB, &mut b).unwrap();
    assert_eq!(b, vec![0u8; 4096]);
    drop(ro);
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let mut rw = Vhdx::open(&p, true).unwrap();
    assert!(rw.log_guid().is_nil());
    rw.read(0, &mut b).unwrap();
    assert_eq!(b, vec![1u8; 4096]);
    rw.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn chain_of_three_with_partial_blocks() {
    let dir = tmp("chain");
    let base = dir.join("base.vhdx");
    let mut d = vhdx::create(&base, &opts(4 * MIB, MIB), None).unwrap();
    d.write(0, &vec![b'a'; (2 * MIB) as usize]).unwrap();
    d.close().unwrap();
    let diff = CreateOptions {
        disk_type: DiskType::Differencing,
        ..CreateOptions::dynamic(0)
    };
    let mid = dir.join("mid.avhdx");
    let mut m = vhdx::create(&mid, &diff, Some(&base)).unwrap();
    m.write(512, b"bb").unwrap();
    m.close().unwrap();
    let top = dir.join("top.avhdx");
    let mut t = vhdx::create(&top, &diff, Some(&mid)).unwrap();
    t.write(MIB + 4096, b"cc").unwrap();
    t.close().unwrap();
    let r = Vhdx::open(&top, false).unwrap();
    assert_eq!(r.disk_type(), DiskType::Differencing);
    let mut got = vec![0u8; (2 * MIB) as usize];
    r.read(0, &mut got).unwrap();
    let mut want = vec![b'a'; (2 * MIB) as usize];
    want[512..514].copy_from_slice(b"bb");
    want[(MIB + 4096) as usize..(MIB + 4098) as usize].copy_from_slice(b"cc");
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn works_over_any_storage() {
    let dir = tmp("storage");
    let p = dir.join("d.vhdx");
    let st = FileStorage::create_new(&p).unwrap();
    let mut v = vhdx::create_on(Box::new(st), &opts(3 * MIB, MIB), None, None).unwrap();
    v.write(100, b"hello").unwrap();
    v.close().unwrap();
    let st = FileStorage::open(&p, false).unwrap();
    assert!(!st.is_empty().unwrap());
    let r = Vhdx::open_storage(Box::new(st), OpenOptions::default()).unwrap();
    let mut b = [0u8; 5];
    r.read(100, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `make fuzz` without cargo-fuzz runs this with VSSIM_FUZZ_CASES set high.
fn fuzz_cases() -> u32 {
    std::env::var("VSSIM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]
    #[test]
    fn damaged_files_never_panic(damage in proptest::collection::vec(any::<u8>(), 0..120)) {
        vhdx::fuzz::exercise_any(&damage);
    }
}
