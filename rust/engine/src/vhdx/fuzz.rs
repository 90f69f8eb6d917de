//! The body of the fuzz target (`fuzz/fuzz_targets/vhdx_open.rs`) and of the proptest that
//! stands in for it in `cargo test`: damage a valid file, then open, read, write and check it.
//! Whatever the bytes, nothing may panic.

use super::check::check_storage;
use super::file::{OpenOptions, Vhdx};
use crate::storage::MemStorage;

/// Applies `damage` (5-byte records: u32 LE offset within the first 4 MiB, then a byte) to
/// `template`, optionally truncates it (the first byte of `damage` picks how), then uses it.
pub fn exercise(template: &[u8], damage: &[u8]) {
    let mut bytes = template.to_vec();
    for rec in damage.chunks_exact(5) {
        let off = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize % (4 << 20);
        if let Some(b) = bytes.get_mut(off) {
            *b = rec[4];
        }
    }
    if let Some(&t) = damage.first() {
        if t < 8 {
            bytes.truncate(bytes.len() * usize::from(t) / 8);
        }
    }
    run(bytes);
}

/// Opens `bytes` as a VHDX (read-only, then writable in memory) and uses it.
pub fn run(bytes: Vec<u8>) {
    let mem = MemStorage {
        bytes,
        name: "fuzz".into(),
    };
    let _ = check_storage(&mem, None);
    if let Ok(v) = Vhdx::open_storage(Box::new(mem.clone()), OpenOptions::default()) {
        let n = v.virtual_size().min(3 << 20) as usize;
        let mut buf = vec![0u8; n];
        let _ = v.read(0, &mut buf);
        let _ = v.allocated_extents();
        let _ = v.check();
    }
    let opts = OpenOptions {
        writable: true,
        ..OpenOptions::default()
    };
    if let Ok(mut v) = Vhdx::open_storage(Box::new(mem), opts) {
        let _ = v.write(4096 + 3, &[0x5a; 70_000]);
        let _ = v.trim(0, v.block_size());
        let _ = v.flush();
        let _ = v.close();
    }
}

/// A small dynamic disk with data and a pending log (left by an unclean stop): the seed the
/// damage is applied to. `None` when the temporary directory is unusable.
pub fn template() -> Option<Vec<u8>> {
    use super::create::{create, CreateOptions};
    let dir = std::env::temp_dir().join(format!("vssim-fuzz-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let p = dir.join("t.vhdx");
    let _ = std::fs::remove_file(&p);
    let opts = CreateOptions {
        block_size: Some(1 << 20),
        ..CreateOptions::dynamic(6 << 20)
    };
    let mut d = create(&p, &opts, None).ok()?;
    d.write(0, &[7u8; 300_000]).ok()?;
    d.flush().ok()?;
    d.abandon();
    let bytes = std::fs::read(&p).ok();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}
