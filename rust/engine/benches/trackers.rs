//! `cargo bench -p vssim-engine`: raw rates of the trackers on a hot-spot write stream (10 million
//! writes of 4–64 KiB on a 2 TiB volume, 90 % into a hot tenth), without Python in the way.

use std::time::Instant;

use vssim_engine::cbt::ChangeTracker;
use vssim_engine::cow::CowTracker;

/// splitmix64: a tiny seeded generator, so the stream is the same on every machine.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn stream(n: usize, size: u64) -> (Vec<u64>, Vec<u32>) {
    let mut rng = Rng(42);
    let slots = (size - 65536) / 4096;
    let hot = slots / 10;
    let hot_base = rng.next() % (slots - hot);
    let mut offs = Vec::with_capacity(n);
    let mut lens = Vec::with_capacity(n);
    for _ in 0..n {
        let slot = if rng.next() % 10 < 9 {
            hot_base + rng.next() % hot
        } else {
            rng.next() % slots
        };
        offs.push(slot * 4096);
        lens.push(((rng.next() % 16 + 1) * 4096) as u32);
    }
    (offs, lens)
}

fn best_of<T>(
    rounds: usize,
    mut f: impl FnMut() -> Result<T, vssim_engine::Error>,
) -> Result<(f64, T), vssim_engine::Error> {
    let mut best = f64::INFINITY;
    let mut last = f()?;
    for _ in 0..rounds {
        let t = Instant::now();
        last = f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, last))
}

fn main() -> Result<(), vssim_engine::Error> {
    let size = 2u64 << 40;
    let n = 10_000_000;
    let (offs, lens) = stream(n, size);
    let (secs, copied) = best_of(5, || {
        let mut t = CowTracker::new(size, 16384, None)?;
        t.create_snapshot(size)?;
        Ok(t.apply_writes(&offs, &lens, None)?.chunks_copied)
    })?;
    println!(
        "cow  one snapshot   {n} writes  {secs:.3} s  {:.1} M writes/s  ({copied} chunks copied)",
        n as f64 / secs / 1e6
    );
    let (secs, copied) = best_of(5, || {
        let mut t = CowTracker::new(size, 16384, Some(64 << 30))?;
        for _ in 0..4 {
            t.create_snapshot(size)?;
        }
        Ok(t.apply_writes(&offs, &lens, None)?.chunks_copied)
    })?;
    println!(
        "cow  4 snaps, limit {n} writes  {secs:.3} s  {:.1} M writes/s  ({copied} chunks copied)",
        n as f64 / secs / 1e6
    );
    let (secs, blocks) = best_of(5, || {
        let mut t = ChangeTracker::new("bench", size, 65536)?;
        t.mark(&offs, &lens)
    })?;
    println!(
        "cbt  mark           {n} writes  {secs:.3} s  {:.1} M writes/s  ({blocks} blocks changed)",
        n as f64 / secs / 1e6
    );
    Ok(())
}
