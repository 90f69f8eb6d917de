//! `vssim._engine`: the PyO3 face of vssim-engine. Conversion, GIL release and error mapping only;
//! every rule lives in the engine crate.

use pyo3::prelude::*;

mod arrays;
mod cbt;
mod cow;
mod errors;
mod generator;
mod vhdx;
mod volume;
mod workload;

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<cow::CowTracker>()?;
    m.add_class::<cow::WriteResult>()?;
    m.add_class::<cow::SnapshotInfo>()?;
    m.add_class::<cbt::ChangeTracker>()?;
    m.add_class::<workload::ModelCluster>()?;
    m.add_class::<generator::WorkloadGenerator>()?;
    m.add_class::<volume::Volume>()?;
    m.add_class::<volume::VolumeSnapshotInfo>()?;
    m.add_class::<volume::Snapshot>()?;
    m.add_class::<volume::VolumeFile>()?;
    m.add_class::<volume::SnapshotView>()?;
    m.add_class::<vhdx::Vhdx>()?;
    m.add_class::<vhdx::VhdxFinding>()?;
    Ok(())
}
