//! The body of the fuzz target (`fuzz/fuzz_targets/vhdx_open.rs`) and of the proptest loop that
//! stands in for it in `cargo test`: damage a valid file, then open, read, write and check it.
//!
//! Two seeds, both left dirty by an unclean stop (a pending log): a dynamic disk, and a
//! differencing child (with its parent locator) whose parent is held in memory. Two kinds of
//! damage: byte records in the first 4 MiB (half of them aimed at the structures' first bytes —
//! headers, region tables, log, BAT, metadata table, parent locator), or a forged log entry that
//! is valid as a log (checksum, sequence) with descriptors, targets and file offsets taken from
//! the input — what reaches the replay's validation. Whatever the bytes:
//! - nothing panics, aborts or hangs;
//! - whenever an open refuses the file, `check` reports an error (the two cannot disagree).

use std::sync::OnceLock;

use super::check::check_with_parent;
use super::file::{OpenOptions, Vhdx};
use crate::storage::MemStorage;

/// The seed files.
pub struct Templates {
    pub dynamic: Vec<u8>,
    pub child: Vec<u8>,
    pub parent: Vec<u8>,
}

/// The seeds (built once per process); `None` when the temporary directory is unusable.
pub fn templates() -> Option<&'static Templates> {
    static T: OnceLock<Option<Templates>> = OnceLock::new();
    T.get_or_init(build).as_ref()
}

/// Picks a seed with the first byte of `data` (even: dynamic, odd: the child), applies the rest
/// as damage (see [`damage`]) and uses the file.
pub fn exercise_any(data: &[u8]) {
    let Some(t) = templates() else {
        return;
    };
    match data.split_first() {
        Some((&k, rest)) => match k % 4 {
            0 => run(damage(&t.dynamic, rest), None),
            1 => run(damage(&t.child, rest), Some(&t.parent)),
            2 => run(forge_log(&t.dynamic, rest), None),
            _ => run(forge_log(&t.child, rest), Some(&t.parent)),
        },
        None => run(t.dynamic.clone(), None),
    }
}

/// Where damage records with the top bit of their offset set land: the first bytes of each
/// structure of the seeds' layout (headers, region tables, log, BAT, metadata table, locator).
const HOT_SPOTS: [usize; 8] = [
    0,
    64 << 10,
    128 << 10,
    192 << 10,
    1 << 20,
    2 << 20,
    3 << 20,
    (3 << 20) + (64 << 10),
];

/// Replaces the seed's log with one entry forged from `data`: Flushed- and LastFileOffset, then
/// 9-byte descriptors (kind, target in 4 KiB units, zero length in 4 KiB units), each checksummed
/// and sequenced correctly so that it reaches the replay's checks.
pub fn forge_log(template: &[u8], data: &[u8]) -> Vec<u8> {
    use super::format::*;
    let mut bytes = template.to_vec();
    let word = |i: usize| -> u64 {
        let mut a = [0u8; 4];
        for (k, b) in a.iter_mut().enumerate() {
            *b = data.get(i + k).copied().unwrap_or(0);
        }
        u64::from(u32::from_le_bytes(a))
    };
    let len = bytes.len() as u64;
    // Offsets near the file's end most of the time, anywhere sometimes.
    let near = |w: u64| -> u64 {
        if w & 1 == 0 {
            (len + (w >> 1) % (64 << 20)).saturating_sub(32 << 20)
        } else {
            w << 12
        }
    };
    // Mostly what a writer would log (inside the file), sometimes anything.
    let flushed = if word(0) & 2 == 0 {
        near(word(0)).min(len)
    } else {
        near(word(0))
    };
    let last = if word(4) & 2 == 0 {
        flushed + (word(4) % (4 << 20))
    } else {
        near(word(4)).max(flushed)
    };
    let sectors = (len / 4096).max(1);
    let descs: Vec<(bool, u64, u64)> = data
        .get(8..)
        .unwrap_or(&[])
        .chunks_exact(9)
        .take(40)
        .map(|c| {
            let w = |i: usize| u64::from(u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]));
            let target = if c[0] & 2 == 0 {
                w(1) % sectors
            } else {
                w(1) % (1 << 20)
            };
            (c[0] % 2 == 0, target << 12, (w(5) % 64) << 12)
        })
        .collect();
    let ds = super::log::desc_sectors(descs.len());
    let data_n = descs.iter().filter(|d| !d.0).count();
    let mut e = vec![0u8; (ds + data_n) * 4096];
    e[0..4].copy_from_slice(b"loge");
    let elen = e.len() as u32;
    put_u32(&mut e, 8, elen);
    put_u64(&mut e, 16, 1);
    put_u32(&mut e, 24, descs.len() as u32);
    let guid = uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);
    put_guid(&mut e, 32, &guid);
    put_u64(&mut e, 48, flushed);
    put_u64(&mut e, 56, last);
    let mut sector = ds;
    for (i, (zero, off, zlen)) in descs.iter().enumerate() {
        let d = 64 + i * 32;
        if *zero {
            e[d..d + 4].copy_from_slice(b"zero");
            put_u64(&mut e, d + 8, *zlen);
        } else {
            e[d..d + 4].copy_from_slice(b"desc");
            let s = sector * 4096;
            e[s..s + 4].copy_from_slice(b"data");
            put_u32(&mut e, s + 4092, 1);
            e[s + 8..s + 4092].fill(0xA5);
            sector += 1;
        }
        put_u64(&mut e, d + 16, *off);
        put_u64(&mut e, d + 24, 1);
    }
    seal(&mut e, 4);
    if bytes.len() < (1 << 20) + e.len() {
        return bytes;
    }
    bytes[1 << 20..2 << 20].fill(0);
    bytes[1 << 20..(1 << 20) + e.len()].copy_from_slice(&e);
    for h in HEADER_OFFSETS {
        let h = h as usize;
        put_guid(&mut bytes, h + 48, &guid);
        seal(&mut bytes[h..h + HEADER_SIZE], 4);
    }
    bytes
}

/// Applies `damage` (5-byte records: u32 LE offset within the first 4 MiB, then a byte) to
/// `template`, and truncates it when the first byte is below 8 (to that many eighths).
pub fn damage(template: &[u8], damage: &[u8]) -> Vec<u8> {
    let mut bytes = template.to_vec();
    for rec in damage.chunks_exact(5) {
        let raw = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let off = if raw & 0x8000_0000 != 0 {
            HOT_SPOTS[(raw as usize >> 12) % HOT_SPOTS.len()] + (raw as usize & 0xFFF)
        } else {
            raw as usize % (4 << 20)
        };
        if let Some(b) = bytes.get_mut(off) {
            *b = rec[4];
        }
    }
    if let Some(&t) = damage.first() {
        if t < 8 {
            bytes.truncate(bytes.len() * usize::from(t) / 8);
        }
    }
    bytes
}

fn mem(bytes: Vec<u8>) -> MemStorage {
    MemStorage {
        bytes,
        name: "fuzz".into(),
    }
}

fn parent_of(bytes: Option<&Vec<u8>>) -> Option<Box<Vhdx>> {
    let b = bytes?;
    Vhdx::open_storage(Box::new(mem(b.clone())), OpenOptions::default())
        .ok()
        .map(Box::new)
}

/// Opens `bytes` as a VHDX (read-only, then writable in memory) and uses it; a differencing disk
/// gets `parent` (a file's bytes) as its parent.
pub fn run(bytes: Vec<u8>, parent: Option<&Vec<u8>>) {
    let st = mem(bytes);
    let p = parent_of(parent);
    let findings = check_with_parent(&st, None, p.as_deref());
    let opts = |writable: bool| OpenOptions {
        writable,
        parent: parent_of(parent),
        ..OpenOptions::default()
    };
    match Vhdx::open_storage(Box::new(st.clone()), opts(false)) {
        Ok(v) => {
            let n = v.virtual_size().min(3 << 20) as usize;
            let mut buf = vec![0u8; n];
            let _ = v.read(0, &mut buf);
            let _ = v.allocated_extents();
            let _ = v.digest();
            let _ = v.check();
        }
        Err(e) => {
            let reported = findings
                .iter()
                .any(|f| f.severity == super::check::Severity::Error);
            assert!(
                reported,
                "open refused the file ({e}) but check found no error: {findings:?}"
            );
        }
    }
    if let Ok(mut v) = Vhdx::open_storage(Box::new(st), opts(true)) {
        let _ = v.write(4096 + 3, &[0x5a; 70_000]);
        let _ = v.trim(0, v.block_size());
        let _ = v.flush();
        let _ = v.close();
    }
}

/// A small dynamic disk and a differencing child of another, each with data and a pending log
/// (left by an unclean stop).
fn build() -> Option<Templates> {
    use super::create::{create, CreateOptions};
    use super::DiskType;
    let dir = std::env::temp_dir().join(format!("vssim-fuzz-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let opts = CreateOptions {
        block_size: Some(1 << 20),
        ..CreateOptions::dynamic(6 << 20)
    };
    let (d, p, c) = (dir.join("t.vhdx"), dir.join("p.vhdx"), dir.join("c.avhdx"));
    let built = (|| {
        let mut t = create(&d, &opts, None).ok()?;
        t.write(0, &[7u8; 300_000]).ok()?;
        t.flush().ok()?;
        t.abandon();
        let mut base = create(&p, &opts, None).ok()?;
        base.write(1 << 20, &[8u8; 1 << 20]).ok()?;
        base.close().ok()?;
        drop(base);
        let diff = CreateOptions {
            disk_type: DiskType::Differencing,
            ..CreateOptions::dynamic(0)
        };
        let mut child = create(&c, &diff, Some(&p)).ok()?;
        child.write(5000, &[9u8; 70_000]).ok()?;
        child.write(3 << 20, &[10u8; 1 << 20]).ok()?;
        child.flush().ok()?;
        child.abandon();
        Some(Templates {
            dynamic: std::fs::read(&d).ok()?,
            child: std::fs::read(&c).ok()?,
            parent: std::fs::read(&p).ok()?,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_open_and_are_dirty() {
        let t = templates().expect("templates");
        let v = Vhdx::open_storage(Box::new(mem(t.dynamic.clone())), OpenOptions::default())
            .expect("dynamic seed");
        assert!(v.replayed_log);
        let c = Vhdx::open_storage(
            Box::new(mem(t.child.clone())),
            OpenOptions {
                parent: parent_of(Some(&t.parent)),
                ..OpenOptions::default()
            },
        )
        .expect("child seed");
        assert!(c.replayed_log);
        assert!(c.parent().is_some());
        exercise_any(&[]);
        exercise_any(&[1]);
        // A forged entry whose only descriptor zeroes the file's start: refused, not replayed.
        let forged = forge_log(&t.dynamic, &[0; 17]);
        assert!(Vhdx::open_storage(Box::new(mem(forged)), OpenOptions::default()).is_err());
    }
}
