//! `WorkloadSpec`: one VM's I/O, built once from its keywords and validated there, then given to
//! `ModelCluster.add_vm` and `WorkloadGenerator` (the keywords are written out only here).

use pyo3::prelude::*;
use vssim_engine::estimate::change_fraction;
use vssim_engine::workload::{self, DiskData, Diurnal, Locality, SizeDist};

use crate::args::as_opt_vec_u32;
use crate::errors::{guarded, InvalidArgumentError};

/// One VM's I/O: `iops` operations a second (reads and writes), `read_fraction` of them reads;
/// `sizes`/`weights` the request-size mix (default: a typical 4 KiB–1 MiB mix); `locality`
/// "uniform", "hotspot" (`hot_fraction` of the disk gets `hot_share` of the writes), "zipf"
/// (`theta`) or "log" (a sequential log over `region_fraction` of the disk); with
/// `diurnal_amplitude` > 0 the rate follows the day (`diurnal_period_s`, peak at
/// `diurnal_peak_s`). Operations land in the disk's data (its allocated extent); the disk grows
/// by `growth_per_day` (a fraction of that data a day, appended at the allocation frontier).
/// `daily_change` (a fraction of the data a day's writes change at the tracking granularity)
/// sizes the hot spot for each disk it runs on (`hot_fraction` is then ignored; see
/// `vssim.engine.calibrate`). Every value is checked here: the error names the keyword and its
/// limits.
#[pyclass(module = "vssim._engine", name = "WorkloadSpec", frozen)]
#[derive(Clone)]
pub struct WorkloadSpec {
    pub(crate) inner: workload::WorkloadSpec,
}

fn locality(
    kind: &str,
    hot_fraction: f64,
    hot_share: f64,
    theta: f64,
    region_fraction: f64,
) -> PyResult<Locality> {
    Ok(match kind {
        "uniform" => Locality::Uniform,
        "hotspot" => Locality::HotSpot {
            hot_fraction,
            hot_share,
        },
        "zipf" => Locality::Zipf { theta },
        "log" => Locality::SequentialLog { region_fraction },
        other => {
            return Err(InvalidArgumentError::new_err(format!(
                "invalid argument `locality`: {other:?}; expected \"uniform\", \"hotspot\", \
                 \"zipf\" or \"log\""
            )))
        }
    })
}

fn size_dist(sizes: Option<Vec<u32>>, weights: Option<Vec<f64>>) -> PyResult<SizeDist> {
    match (sizes, weights) {
        (None, None) => Ok(SizeDist::typical()),
        (Some(s), Some(w)) => guarded(|| SizeDist::new(&s, &w)),
        (Some(s), None) => {
            let w = vec![1.0; s.len()];
            guarded(|| SizeDist::new(&s, &w))
        }
        (None, Some(_)) => Err(InvalidArgumentError::new_err(
            "invalid argument `weights`: given without `sizes`",
        )),
    }
}

#[pymethods]
impl WorkloadSpec {
    #[new]
    #[pyo3(signature = (
        *, iops = 100.0, read_fraction = 0.3, sizes = None, weights = None,
        locality = "uniform", hot_fraction = 0.1, hot_share = 0.9, theta = 0.99,
        region_fraction = 0.05, diurnal_amplitude = 0.0, diurnal_period_s = 86400.0,
        diurnal_peak_s = 50400.0, growth_per_day = 0.0, daily_change = None
    ))]
    #[expect(clippy::too_many_arguments)]
    fn new(
        iops: f64,
        read_fraction: f64,
        #[pyo3(from_py_with = as_opt_vec_u32::sizes)] sizes: Option<Vec<u32>>,
        weights: Option<Vec<f64>>,
        locality: &str,
        hot_fraction: f64,
        hot_share: f64,
        theta: f64,
        region_fraction: f64,
        diurnal_amplitude: f64,
        diurnal_period_s: f64,
        diurnal_peak_s: f64,
        growth_per_day: f64,
        daily_change: Option<f64>,
    ) -> PyResult<Self> {
        let inner = workload::WorkloadSpec {
            iops,
            read_fraction,
            sizes: size_dist(sizes, weights)?,
            locality: self::locality(locality, hot_fraction, hot_share, theta, region_fraction)?,
            diurnal: (diurnal_amplitude != 0.0).then_some(Diurnal {
                amplitude: diurnal_amplitude,
                period_s: diurnal_period_s,
                peak_s: diurnal_peak_s,
            }),
            growth_per_day,
            daily_change,
        };
        guarded(|| inner.validate())?;
        Ok(WorkloadSpec { inner })
    }

    /// Operations per second (reads and writes).
    #[getter]
    fn iops(&self) -> f64 {
        self.inner.iops
    }

    #[getter]
    fn read_fraction(&self) -> f64 {
        self.inner.read_fraction
    }

    /// Mean request size in bytes.
    #[getter]
    fn mean_size(&self) -> f64 {
        self.inner.sizes.mean()
    }

    /// "uniform", "hotspot", "zipf" or "log".
    #[getter]
    fn locality(&self) -> &'static str {
        match self.inner.locality {
            Locality::Uniform => "uniform",
            Locality::HotSpot { .. } => "hotspot",
            Locality::Zipf { .. } => "zipf",
            Locality::SequentialLog { .. } => "log",
        }
    }

    /// Hot spot: the share of the disk's data it covers (None for other localities).
    #[getter]
    fn hot_fraction(&self) -> Option<f64> {
        match self.inner.locality {
            Locality::HotSpot { hot_fraction, .. } => Some(hot_fraction),
            _ => None,
        }
    }

    /// Hot spot: the share of the operations that land in it (None for other localities).
    #[getter]
    fn hot_share(&self) -> Option<f64> {
        match self.inner.locality {
            Locality::HotSpot { hot_share, .. } => Some(hot_share),
            _ => None,
        }
    }

    /// New data a day, as a fraction of the disk's data at the start.
    #[getter]
    fn growth_per_day(&self) -> f64 {
        self.inner.growth_per_day
    }

    /// The daily-change target the hot spot is sized to on each disk (None once calibrated).
    #[getter]
    fn daily_change(&self) -> Option<f64> {
        self.inner.daily_change
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.inner == other.inner
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkloadSpec(iops={}, read_fraction={}, locality={:?}, growth_per_day={}, \
             daily_change={:?})",
            self.inner.iops,
            self.inner.read_fraction,
            self.inner.locality,
            self.inner.growth_per_day,
            self.inner.daily_change
        )
    }
}

impl WorkloadSpec {
    /// The spec to generate with on `disk`: a daily-change target calibrated into its hot spot
    /// (`estimate::change_fraction::calibrate`), any other spec as it is.
    pub(crate) fn for_disk(
        spec: workload::WorkloadSpec,
        disk: DiskData,
        tracking_block: u64,
    ) -> vssim_engine::Result<workload::WorkloadSpec> {
        if spec.daily_change.is_none() {
            return Ok(spec);
        }
        Ok(change_fraction::calibrate(&spec, disk, tracking_block)?.spec)
    }

    /// The spec a call was given, or the keywords' defaults (built by calling the class, so the
    /// defaults have one home: its signature).
    pub(crate) fn given_or_default(
        py: Python<'_>,
        spec: Option<PyRef<'_, WorkloadSpec>>,
    ) -> PyResult<workload::WorkloadSpec> {
        match spec {
            Some(s) => Ok(s.inner.clone()),
            None => {
                let made = py.get_type::<WorkloadSpec>().call0()?;
                Ok(made.cast::<WorkloadSpec>()?.get().inner.clone())
            }
        }
    }
}
