//! `cargo bench -p vssim-engine`: raw rates of the trackers on a hot-spot write stream (10 million
//! writes of 4–64 KiB on a 2 TiB volume, 90 % into a hot tenth), without Python in the way.

use std::time::Instant;

use vssim_engine::cbt::ChangeTracker;
use vssim_engine::cow::CowTracker;
use vssim_engine::estimate::EstimateCluster;
use vssim_engine::workload::{
    DiskKind, Generator, Locality, ModelCluster, SizeDist, VmConfig, WorkloadSpec, WriteBatch,
};

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

/// CPU time this process's threads have run, in ns (Linux `schedstat`; 0 elsewhere): on a shared
/// machine it is steadier than the wall clock.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `cargo bench -p vssim-engine -- [cow|cbt|gen|run|estimate]`: only the sections named (all by
/// default).
fn wanted(section: &str) -> bool {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    args.is_empty() || args.iter().any(|a| a == section)
}

fn main() -> Result<(), vssim_engine::Error> {
    if wanted("cow") || wanted("cbt") {
        trackers()?;
    }
    workload()?;
    if wanted("estimate") {
        estimate()?;
    }
    Ok(())
}

/// The 64-node examples' VMs (127 GiB disks, 40 GiB allocated, hot spot, 20 write IOPS of 30 %
/// reads), `n` of them on 16 CSVs — of 64 TiB here, so that no CSV fills (the examples' 16 TiB
/// ones do, with today's workload: see README), every CSV snapshotted at 60 s.
fn example_vms(n: u64) -> Vec<VmConfig> {
    (0..n)
        .map(|v| VmConfig {
            csv: (v % 16) as usize,
            disk_size: 127 << 30,
            allocated: 40 << 30,
            block_size: 32 << 20,
            kind: DiskKind::Dynamic,
            spec: WorkloadSpec {
                iops: 20.0 / 0.7,
                read_fraction: 0.3,
                sizes: SizeDist::typical(),
                locality: Locality::HotSpot {
                    hot_fraction: 0.1,
                    hot_share: 0.9,
                },
                diurnal: None,
                growth_per_day: 0.0,
                daily_change: None,
            },
            seed: 4000 + v,
            cbt_block_size: 65536,
        })
        .collect()
}

/// A full backup's windows on the estimate: snapshots at 60 s, then `hours` of hourly
/// windows, every VM's file size and changes read, the snapshots deleted.
fn estimate_window(n: u64, hours: u64) -> Result<(f64, f64), vssim_engine::Error> {
    let mut c = EstimateCluster::new();
    for _ in 0..16 {
        c.add_csv(64 << 40, 16384, None)?;
    }
    for cfg in example_vms(n) {
        c.add_vm(cfg)?;
    }
    c.advance(0.0, 60.0)?;
    let ids: Vec<u64> = (0..16)
        .map(|csv| c.snapshot(csv))
        .collect::<Result<_, _>>()?;
    let mut t = 60.0;
    for _ in 0..hours {
        c.advance(t, t + 3600.0)?;
        t += 3600.0;
    }
    let mut read = 0.0;
    for v in 0..n as usize {
        read += c.file_size(v)?.mean + c.changes(v)?.1.mean;
    }
    let mut copied = 0.0;
    for (csv, id) in ids.into_iter().enumerate() {
        copied += c.total_chunks_copied(csv)?;
        c.delete_snapshot(csv, id)?;
    }
    Ok((read, copied))
}

/// The estimate tier on the examples' cluster: a 52-hour full backup window (ws2012's full
/// backup of the 4,000-VM example) at 1,000–8,000 VMs (cost per VM), and against the per-write
/// engine on the same cluster over the first 60 s after the snapshots (the exact run of the
/// whole window would take hours).
fn estimate() -> Result<(), vssim_engine::Error> {
    for n in [1000u64, 2000, 4000, 8000] {
        let (secs, (read, copied)) = best_of(1, || estimate_window(n, 52))?;
        println!(
            "estimate  {n:>5} VMs, 52 h full backup  {secs:.3} s  {:.1} µs/VM  \
             ({:.1} TB read, {copied:.3e} chunks copied)",
            secs / n as f64 * 1e6,
            read / 1e12
        );
    }
    let n = 4000;
    let short = 60.0;
    let (exact_secs, exact_copied) = best_of(1, || {
        let mut c = ModelCluster::new();
        for _ in 0..16 {
            c.add_csv(64 << 40, 16384, None)?;
        }
        for cfg in example_vms(n) {
            c.add_vm(cfg)?;
        }
        c.advance(0.0, 60.0)?;
        for csv in 0..16 {
            c.snapshot(csv)?;
        }
        c.advance(60.0, 60.0 + short)?;
        (0..16)
            .map(|csv| Ok(c.cow(csv)?.total_chunks_copied() as f64))
            .sum::<Result<f64, _>>()
    })?;
    let (est_secs, est_copied) = best_of(1, || {
        let mut c = EstimateCluster::new();
        for _ in 0..16 {
            c.add_csv(64 << 40, 16384, None)?;
        }
        for cfg in example_vms(n) {
            c.add_vm(cfg)?;
        }
        c.advance(0.0, 60.0)?;
        for csv in 0..16 {
            c.snapshot(csv)?;
        }
        c.advance(60.0, 60.0 + short)?;
        (0..16)
            .map(|csv| c.total_chunks_copied(csv))
            .sum::<Result<f64, _>>()
    })?;
    let (full_secs, _) = best_of(1, || estimate_window(n, 52))?;
    println!(
        "estimate vs exact, {n} VMs, 60 s after the snapshots: exact {exact_secs:.2} s, \
         estimate {est_secs:.3} s ({:.0}× faster); chunks copied {exact_copied:.0} vs \
         {est_copied:.0} ({:+.3} %); the 52 h window: estimate {full_secs:.2} s, exact ≈ {:.0} s \
         at the short window's rate ({:.0}×)",
        exact_secs / est_secs,
        (est_copied - exact_copied) / exact_copied * 100.0,
        exact_secs / short * 52.0 * 3600.0,
        exact_secs / short * 52.0 * 3600.0 / full_secs
    );
    Ok(())
}

fn trackers() -> Result<(), vssim_engine::Error> {
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
    small_batches()
}

/// A CSV's window as change tracking sees it: 250 disks of 4 GiB, each marking a batch of 35
/// writes of 8–16 KiB in its 100 MiB hot region (a 0.5 s window at 70 write IOPS), disk after
/// disk, 2,000 windows (the serial path: a batch this small never goes to the pool); then the
/// same windows as the CSV's copy-on-write tracker sees them.
fn small_batches() -> Result<(), vssim_engine::Error> {
    let (disks, per, windows) = (250usize, 35usize, 2000usize);
    let mut rng = Rng(0x5eed);
    let hot = 100u64 << 20;
    let batches: Vec<(Vec<u64>, Vec<u32>)> = (0..disks * 16)
        .map(|i| {
            let base = ((i % disks) as u64 % 9) << 26;
            let offs = (0..per)
                .map(|_| base + rng.next() % (hot / 4096) * 4096)
                .collect();
            let lens = (0..per)
                .map(|_| {
                    if rng.next().is_multiple_of(8) {
                        16384
                    } else {
                        8192
                    }
                })
                .collect();
            (offs, lens)
        })
        .collect();
    let (secs, blocks) = best_of(5, || {
        let mut cbts = (0..disks)
            .map(|d| ChangeTracker::new(&format!("disk{d}"), 4 << 30, 65536))
            .collect::<Result<Vec<_>, _>>()?;
        let mut blocks = 0;
        for w in 0..windows {
            for (d, cbt) in cbts.iter_mut().enumerate() {
                let (offs, lens) = &batches[(w % 16) * disks + d];
                blocks += cbt.mark(offs, lens)?;
            }
        }
        Ok(blocks)
    })?;
    let n = disks * per * windows;
    println!(
        "cbt  {disks} disks x {per} writes a window  {n} writes  {secs:.3} s  {:.1} ns/write  \
         ({blocks} blocks changed)",
        secs / n as f64 * 1e9
    );
    // The same windows on one CSV's copy-on-write tracker, one snapshot: each disk's writes a
    // group (its file 1 GiB after the last one's on the volume), one `apply_groups` a window.
    let vol: Vec<(Vec<u64>, Vec<u32>)> = batches
        .iter()
        .enumerate()
        .map(|(i, (offs, lens))| {
            let file = ((i % disks) as u64) << 30;
            (
                offs.iter().map(|&o| (o & ((1 << 30) - 1)) + file).collect(),
                lens.clone(),
            )
        })
        .collect();
    let (secs, chunks) = best_of(5, || {
        let mut t = CowTracker::new(16 << 40, 16384, None)?;
        t.create_snapshot(16 << 40)?;
        let mut copied = vec![0u64; disks];
        for w in 0..windows {
            let groups: Vec<(&[u64], &[u32])> = vol[(w % 16) * disks..][..disks]
                .iter()
                .map(|(o, l)| (&o[..], &l[..]))
                .collect();
            t.apply_groups(&groups, &mut copied)?;
        }
        Ok(copied.iter().sum::<u64>())
    })?;
    println!(
        "cow  {disks} groups x {per} writes a window  {n} writes  {secs:.3} s  {:.1} ns/write  \
         ({chunks} chunks copied)",
        secs / n as f64 * 1e9
    );
    Ok(())
}

fn spec() -> WorkloadSpec {
    WorkloadSpec {
        iops: 100.0,
        read_fraction: 0.3,
        sizes: SizeDist::typical(),
        locality: Locality::HotSpot {
            hot_fraction: 0.1,
            hot_share: 0.9,
        },
        diurnal: None,
        growth_per_day: 0.0,
        daily_change: None,
    }
}

/// The modelled cluster of the scenario benchmark's shape, cut to 16 CSVs × 125 VMs: 4 GiB
/// dynamic disks with 1 GiB allocated, 100 IOPS each (70 writes/s), every CSV snapshotted; then
/// 60 simulated seconds in 10 s windows (ws2012's workload clock) and in 0.25 s windows (the
/// many short syncs of a ws2008r2 run). Also the generator alone.
fn workload() -> Result<(), vssim_engine::Error> {
    if !wanted("gen") && !wanted("run") {
        return Ok(());
    }
    let g = Generator::new(spec(), 4 << 30, 7)?;
    let mut b = WriteBatch::default();
    let cpu = cpu_ns();
    let (secs, n) = best_of(5, || {
        b.clear();
        g.generate(0.0, 200_000.0, &mut b);
        Ok(b.len())
    })?;
    let cpu = (cpu_ns() - cpu) as f64 / 6.0;
    println!(
        "gen  hot spot       {n} writes  {secs:.3} s  {:.1} ns/write  (CPU {:.1} ns/write)",
        secs / n as f64 * 1e9,
        cpu / n as f64
    );
    // Short windows of many streams (a ws2008r2 protocol step looks at one CSV of 250 VMs for
    // a twentieth of a second): the per-call cost, not the per-write one.
    let gens = (0..250)
        .map(|v| Generator::new(spec(), 4 << 30, v))
        .collect::<Result<Vec<_>, _>>()?;
    let (secs, n) = best_of(5, || {
        let mut n = 0;
        for w in 0..400 {
            let t = f64::from(w) * 0.05;
            for g in &gens {
                b.clear();
                g.generate(t, t + 0.05, &mut b);
                n += b.len();
            }
        }
        Ok(n)
    })?;
    println!(
        "gen  0.05 s windows of 250 streams  {n} writes  {:.1} us/window  {:.1} ns/write",
        secs / 400.0 * 1e6,
        secs / n as f64 * 1e9
    );
    if !wanted("run") {
        return Ok(());
    }
    for window in [60.0, 10.0, 0.25] {
        let cpu = cpu_ns();
        let (secs, writes) = best_of(2, || {
            let mut c = scenario_cluster(2000)?;
            for csv in 0..16 {
                c.snapshot(csv)?;
            }
            let mut t = 0.0;
            let mut writes = 0;
            while t < 60.0 {
                let r = c.advance(t, t + window)?;
                writes += r.vms.iter().map(|v| v.writes).sum::<u64>();
                t += window;
            }
            Ok(writes)
        })?;
        // Three runs (best_of runs once more than `rounds`).
        let cpu = (cpu_ns() - cpu) as f64 / 3.0;
        println!(
            "run  {window:>5} s windows  {writes} writes  {secs:.3} s  {:.1} ns/write  \
             (CPU {:.1} ns/write, setup included)",
            secs / writes as f64 * 1e9,
            cpu / writes as f64
        );
    }
    one_csv_at_a_time()
}

/// The scenario benchmark's cluster shape: 16 CSVs, `vms` VMs dealt over them, each a 4 GiB
/// dynamic disk with 1 GiB allocated running [`spec`].
fn scenario_cluster(vms: u64) -> Result<ModelCluster, vssim_engine::Error> {
    let mut c = ModelCluster::new();
    for _ in 0..16 {
        c.add_csv(16 << 40, 16384, None)?;
    }
    for v in 0..vms {
        c.add_vm(VmConfig {
            csv: (v % 16) as usize,
            disk_size: 4 << 30,
            allocated: 1 << 30,
            block_size: 32 << 20,
            kind: DiskKind::Dynamic,
            spec: spec(),
            seed: v,
            cbt_block_size: 65536,
        })?;
    }
    Ok(c)
}

/// The ws2008r2 throughput run's pattern: 16 CSVs of 250 VMs (the scenario benchmark's 4,000),
/// brought up to date one at a time, as a protocol step looks at one CSV — each CSV's window
/// `dt` long, the other fifteen CSVs' windows run between two of its own (so its VMs' state is
/// cold again), no snapshot. Time per window and per write, setup excluded.
fn one_csv_at_a_time() -> Result<(), vssim_engine::Error> {
    for snapshot in [false, true] {
        one_csv_at_a_time_with(snapshot)?;
    }
    Ok(())
}

/// [`one_csv_at_a_time`], with every CSV snapshotted (freshly, for each window length) or not.
fn one_csv_at_a_time_with(snapshot: bool) -> Result<(), vssim_engine::Error> {
    let mut c = scenario_cluster(4000)?;
    let mut t = 0.0;
    let mut handles = vec![None; 16];
    for dt in [0.05, 0.5, 2.25] {
        if snapshot {
            for (csv, h) in handles.iter_mut().enumerate() {
                if let Some(old) = h.take() {
                    c.delete_snapshot(csv, old)?;
                }
                *h = Some(c.snapshot(csv)?);
            }
        }
        let (mut writes, mut windows) = (0u64, 0u64);
        let start = Instant::now();
        let cpu = cpu_ns();
        while start.elapsed().as_secs_f64() < 1.0 {
            for csv in 0..16 {
                let r = c.advance_csvs(&[(csv, t)], t + dt)?;
                writes += r.vms.iter().map(|v| v.writes).sum::<u64>();
                windows += 1;
            }
            t += dt;
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = (cpu_ns() - cpu) as f64;
        let what = if snapshot {
            "snapshotted"
        } else {
            "no snapshot"
        };
        println!(
            "run1 {dt:>5} s windows  one CSV of 250 VMs at a time, {what}  {windows} windows  \
             {:.1} us/window  {:.1} ns/write  (CPU {:.1} ns/write)",
            secs / windows as f64 * 1e6,
            secs / writes as f64 * 1e9,
            cpu / writes as f64
        );
    }
    Ok(())
}
