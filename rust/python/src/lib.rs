//! `vssim._engine`: the PyO3 face of vssim-engine. Conversion, GIL release and error mapping only;
//! every rule lives in the engine crate.

use pyo3::prelude::*;

mod args;
mod arrays;
mod cbt;
mod change_fraction;
mod cow;
mod errors;
mod estimate;
mod generator;
mod limit;
mod links;
mod shared;
mod spec;
mod vhdx;
mod volume;
mod workload;

/// Makes the importing thread — Python's main thread, as a rule, the one that calls the engine —
/// one of the workers of rayon's global pool, beside `n - 1` threads of its own (`n`:
/// `RAYON_NUM_THREADS` when a positive integer, else the usable cores, as rayon's default).
/// An engine call from that thread then runs its parallel parts on it and one fewer pool
/// thread: no job handed to the pool and waited for, no thread woken to start it and put to
/// sleep after, and `n` threads on `n` cores, not `n + 1` (measured with
/// `benches/bench_scenario.py -k throughput`: ws2008r2's 5,390 windows, most of a few
/// milliseconds, spent 4.7-5.1 s in the engine against 6.2-6.8 s, ws2012's 149 1.46-1.52 s
/// against 1.62-1.63 s). Calls from other threads are handed to the pool as before. A child
/// forked after the import has none of the pool's threads, but its main thread is still the
/// pool's first worker: its calls run there, alone, and finish (they used to wait for ever for
/// threads the fork left behind). With one thread in all nothing changes: a pool whose one
/// worker is the importing thread would leave another thread's call waiting for a worker that
/// never looks for work.
fn join_the_pool() {
    let n = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    if n >= 2 {
        // An error means the pool exists already (it is made once per process): keep it.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .use_current_thread()
            .build_global();
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    join_the_pool();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    add_constants(m)?;
    m.add_class::<cow::CowTracker>()?;
    m.add_class::<cow::WriteResult>()?;
    m.add_class::<cow::SnapshotInfo>()?;
    m.add_class::<cbt::ChangeTracker>()?;
    m.add_class::<workload::ModelCluster>()?;
    m.add_class::<estimate::EstimateCluster>()?;
    m.add_class::<generator::WorkloadGenerator>()?;
    m.add_class::<spec::WorkloadSpec>()?;
    m.add_class::<volume::Volume>()?;
    m.add_class::<volume::VolumeSnapshotInfo>()?;
    m.add_class::<volume::Snapshot>()?;
    m.add_class::<volume::VolumeFile>()?;
    m.add_class::<volume::SnapshotView>()?;
    m.add_class::<vhdx::Vhdx>()?;
    m.add_class::<vhdx::VhdxFinding>()?;
    m.add_function(wrap_pyfunction!(change_fraction::calibrate, m)?)?;
    m.add_function(wrap_pyfunction!(change_fraction::change_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(limit::bitset_limit, m)?)?;
    m.add_function(wrap_pyfunction!(links::max_min_rates, m)?)?;
    m.add_class::<links::FairShare>()?;
    m.add_function(wrap_pyfunction!(links::demands_if_they_fit, m)?)?;
    Ok(())
}

/// The engine's figures Python needs, as module attributes (`vssim.engine` re-exports them), so
/// they have one home: the engine crate.
fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use vssim_engine::{cbt, cow, vhdx::format, volsnap};
    m.add("DEFAULT_CHUNK_SIZE", volsnap::DEFAULT_CHUNK_SIZE)?;
    m.add("MIN_CHUNK_SIZE", cow::MIN_CHUNK_SIZE)?;
    m.add("MAX_CHUNK_SIZE", cow::MAX_CHUNK_SIZE)?;
    m.add("MAX_SNAPSHOTS", volsnap::MAX_SNAPSHOTS)?;
    m.add("DEFAULT_CBT_BLOCK_SIZE", cbt::DEFAULT_BLOCK_SIZE)?;
    m.add("VHDX_DEFAULT_BLOCK_SIZE", format::DEFAULT_BLOCK_SIZE)?;
    m.add("VHDX_MIN_BLOCK_SIZE", format::MIN_BLOCK_SIZE)?;
    m.add("VHDX_MAX_BLOCK_SIZE", format::MAX_BLOCK_SIZE)?;
    m.add("VHDX_MAX_VIRTUAL_SIZE", format::MAX_VIRTUAL_SIZE)?;
    m.add("VHDX_MAX_CHAIN_DEPTH", vssim_engine::vhdx::MAX_CHAIN_DEPTH)?;
    m.add("GROWTH_WRITE", vssim_engine::workload::spec::GROWTH_WRITE)?;
    m.add("DAY_S", vssim_engine::workload::spec::DAY_S)?;
    m.add(
        "CONTENT_DIGEST_SCHEME",
        vssim_engine::vhdx::CONTENT_DIGEST_SCHEME,
    )?;
    Ok(())
}
