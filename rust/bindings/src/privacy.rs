//! `meshrl._core` privacy: the RDP accountant, DP-FedAvg, and in-process secure aggregation.
//! Heavy calls release the GIL.

use meshrl_privacy::accountant::{compute_rdp, AccountantStep};
use meshrl_privacy::dp::{self, AdaptiveClipping, OutputBound};
use meshrl_privacy::secagg::{Graph, Quantization};
use meshrl_privacy::{
    Clipping, DpConfig, DpFedAvg, Dropouts, NoisePlacement, RdpAccountant, SecAggConfig, Stage,
};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::error::{guard, privacy_err, SecureAggregationError};

/// Reads an integer argument in `lo..=hi`: `TypeError` for a non-int (bools included),
/// `ValueError` naming `name` and the range when out of it (never an unnamed OverflowError).
fn int_arg(value: &Bound<'_, PyAny>, name: &str, lo: u64, hi: u64) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int in {lo}..={hi}, not a bool"
        )));
    }
    let index = value
        .py()
        .import("operator")?
        .call_method1("index", (value,))
        .map_err(|_| {
            PyTypeError::new_err(format!("{name} must be an int in {lo}..={hi}, got {value}"))
        })?;
    if index.lt(lo)? || index.gt(hi)? {
        return Err(PyValueError::new_err(format!(
            "{name} must be in {lo}..={hi}, got {index}"
        )));
    }
    index.extract()
}

fn int_or(
    value: &Option<Bound<'_, PyAny>>,
    default: u64,
    name: &str,
    lo: u64,
    hi: u64,
) -> PyResult<u64> {
    value
        .as_ref()
        .map_or(Ok(default), |v| int_arg(v, name, lo, hi))
}

fn slice<'a>(a: &'a PyReadonlyArray1<'_, f32>, name: &str) -> PyResult<&'a [f32]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// The RDP accountant of the Poisson-subsampled Gaussian mechanism (dp-accounting's orders
/// and conversion; Opacus's method names).
#[pyclass(name = "RdpAccountant", module = "meshrl._core")]
pub struct PyRdpAccountant {
    inner: RdpAccountant,
}

#[pymethods]
impl PyRdpAccountant {
    #[new]
    #[pyo3(signature = (orders=None))]
    fn new(orders: Option<Vec<f64>>) -> PyResult<Self> {
        let inner = match orders {
            None => RdpAccountant::new(),
            Some(o) => guard(|| RdpAccountant::with_orders(o).map_err(privacy_err))?,
        };
        Ok(Self { inner })
    }

    #[pyo3(signature = (noise_multiplier, sample_rate, steps=None))]
    fn step(
        &mut self,
        py: Python<'_>,
        noise_multiplier: f64,
        sample_rate: f64,
        steps: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let steps = int_or(&steps, 1, "steps", 0, u64::MAX)?;
        let inner = &mut self.inner;
        py.detach(|| {
            guard(|| {
                inner
                    .step(noise_multiplier, sample_rate, steps)
                    .map_err(privacy_err)
            })
        })
    }

    fn get_epsilon(&self, delta: f64) -> PyResult<f64> {
        guard(|| self.inner.get_epsilon(delta).map_err(privacy_err))
    }

    fn get_privacy_spent(&self, delta: f64) -> PyResult<(f64, f64)> {
        guard(|| self.inner.get_privacy_spent(delta).map_err(privacy_err))
    }

    fn history(&self) -> Vec<(f64, f64, u64)> {
        self.inner
            .history()
            .iter()
            .map(
                |AccountantStep {
                     noise_multiplier,
                     sample_rate,
                     steps,
                 }| (*noise_multiplier, *sample_rate, *steps),
            )
            .collect()
    }

    fn orders(&self) -> Vec<f64> {
        self.inner.orders().to_vec()
    }

    fn rdp(&self) -> Vec<f64> {
        self.inner.rdp().to_vec()
    }
}

/// RDP (nats) at each order after `steps` steps.
#[pyfunction]
#[pyo3(name = "compute_rdp", signature = (noise_multiplier, sample_rate, steps, orders=None))]
fn py_compute_rdp(
    noise_multiplier: f64,
    sample_rate: f64,
    steps: Bound<'_, PyAny>,
    orders: Option<Vec<f64>>,
) -> PyResult<Vec<f64>> {
    let steps = int_arg(&steps, "steps", 0, u64::MAX)?;
    let orders = orders.unwrap_or_else(meshrl_privacy::accountant::default_orders);
    guard(|| compute_rdp(noise_multiplier, sample_rate, steps, &orders).map_err(privacy_err))
}

/// The smallest noise multiplier meeting `target_epsilon` at `delta`.
#[pyfunction]
#[pyo3(name = "noise_multiplier_for")]
fn py_noise_multiplier_for(
    py: Python<'_>,
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    steps: Bound<'_, PyAny>,
) -> PyResult<f64> {
    let steps = int_arg(&steps, "steps", 1, u64::MAX)?;
    py.detach(|| {
        guard(|| {
            meshrl_privacy::noise_multiplier_for(target_epsilon, delta, sample_rate, steps)
                .map_err(privacy_err)
        })
    })
}

/// Clips a float32 vector to L2 norm `clip_norm`; returns (clipped copy, norm before).
#[pyfunction]
#[pyo3(name = "clip_l2")]
fn py_clip_l2<'py>(
    py: Python<'py>,
    update: PyReadonlyArray1<'py, f32>,
    clip_norm: f64,
) -> PyResult<(Bound<'py, PyArray1<f32>>, f64)> {
    let mut v = slice(&update, "update")?.to_vec();
    let norm = guard(|| dp::clip_l2(&mut v, clip_norm).map_err(privacy_err))?;
    Ok((v.into_pyarray(py), norm))
}

/// A copy of `x` plus N(0, stddev²) noise per coordinate, from a ChaCha20 stream seeded by `seed`.
#[pyfunction]
#[pyo3(name = "add_gaussian_noise", signature = (x, stddev, seed=None))]
fn py_add_gaussian_noise<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    stddev: f64,
    seed: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let seed = int_or(&seed, 0, "seed", 0, u64::MAX)?;
    let mut v = slice(&x, "x")?.to_vec();
    guard(|| {
        dp::add_gaussian_noise(&mut v, stddev, &mut dp::seeded_rng(seed)).map_err(privacy_err)
    })?;
    Ok(v.into_pyarray(py))
}

/// L2 sensitivity of a rule's output by its bound: "sum", "mean" (needs num_clients),
/// "convex_combination", "coordinate_wise" (needs kept and of).
#[pyfunction]
#[pyo3(name = "l2_sensitivity", signature = (bound, clip_norm, num_clients=None, kept=None, of=None))]
fn py_l2_sensitivity(
    bound: &str,
    clip_norm: f64,
    num_clients: Option<Bound<'_, PyAny>>,
    kept: Option<Bound<'_, PyAny>>,
    of: Option<Bound<'_, PyAny>>,
) -> PyResult<f64> {
    let need = |v: &Option<Bound<'_, PyAny>>, name: &str| -> PyResult<usize> {
        let v = v
            .as_ref()
            .ok_or_else(|| PyTypeError::new_err(format!("bound {bound:?} needs {name}")))?;
        Ok(int_arg(v, name, 1, u32::MAX as u64)? as usize)
    };
    let b = match bound {
        "sum" => OutputBound::Sum,
        "mean" => OutputBound::MeanOf { num_clients: need(&num_clients, "num_clients")? },
        "convex_combination" => OutputBound::ConvexCombination,
        "coordinate_wise" => OutputBound::CoordinateWise { kept: need(&kept, "kept")?, of: need(&of, "of")? },
        other => return Err(PyValueError::new_err(format!(
            "bound must be \"sum\", \"mean\", \"convex_combination\" or \"coordinate_wise\", got {other:?}"
        ))),
    };
    guard(|| dp::l2_sensitivity(b, clip_norm).map_err(privacy_err))
}

/// L2 sensitivity of a `meshrl.fl` rule's output over `num_clients` clipped updates.
#[pyfunction]
#[pyo3(name = "rule_sensitivity", signature = (rule, clip_norm, num_clients, num_byzantine=None, beta=0.1))]
fn py_rule_sensitivity(
    rule: &str,
    clip_norm: f64,
    num_clients: Bound<'_, PyAny>,
    num_byzantine: Option<Bound<'_, PyAny>>,
    beta: f64,
) -> PyResult<f64> {
    let n = int_arg(&num_clients, "num_clients", 1, u32::MAX as u64)? as usize;
    let f = int_or(&num_byzantine, 0, "num_byzantine", 0, n as u64)? as usize;
    guard(|| {
        let bound = OutputBound::for_rule(rule, n, f, beta).map_err(privacy_err)?;
        dp::l2_sensitivity(bound, clip_norm).map_err(privacy_err)
    })
}

/// Raises `ValueError` naming `rule` unless it can run on a secure sum.
#[pyfunction]
#[pyo3(name = "require_sum_based_rule")]
fn py_require_sum_based_rule(rule: &str) -> PyResult<()> {
    guard(|| meshrl_privacy::secagg::require_sum_based_rule(rule).map_err(privacy_err))
}

fn round_dict<'py>(py: Python<'py>, r: dp::DpRound) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("sum", r.sum.into_pyarray(py))?;
    d.set_item("mean", r.mean.into_pyarray(py))?;
    d.set_item("clip_norm", r.clip_norm)?;
    d.set_item("next_clip_norm", r.next_clip_norm)?;
    d.set_item("noise_stddev", r.noise_stddev)?;
    d.set_item("noisy_unclipped_fraction", r.noisy_unclipped_fraction)?;
    d.set_item("num_clients", r.num_clients)?;
    Ok(d)
}

/// DP-FedAvg's server: the clip norm (fixed or adaptive) and the noise.
#[pyclass(name = "DpFedAvg", module = "meshrl._core")]
pub struct PyDpFedAvg {
    inner: DpFedAvg,
}

#[pymethods]
impl PyDpFedAvg {
    #[new]
    #[pyo3(signature = (noise_multiplier, clip_norm, adaptive=false, target_unclipped_quantile=0.5,
                        clip_learning_rate=0.2, clipped_count_stddev=None, noise="server", seed=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        noise_multiplier: f64,
        clip_norm: f64,
        adaptive: bool,
        target_unclipped_quantile: f64,
        clip_learning_rate: f64,
        clipped_count_stddev: Option<f64>,
        noise: &str,
        seed: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let noise = match noise {
            "server" => NoisePlacement::Server,
            "distributed" => NoisePlacement::Distributed,
            "local" => NoisePlacement::Local,
            other => {
                return Err(PyValueError::new_err(format!(
                    "noise must be \"server\", \"distributed\" or \"local\", got {other:?}"
                )))
            }
        };
        let clipping = if adaptive {
            Clipping::Adaptive(AdaptiveClipping {
                initial_clip_norm: clip_norm,
                target_unclipped_quantile,
                learning_rate: clip_learning_rate,
                clipped_count_stddev,
            })
        } else {
            Clipping::Fixed { clip_norm }
        };
        let seed = int_or(&seed, 0, "seed", 0, u64::MAX)?;
        let inner = guard(|| {
            DpFedAvg::new(
                DpConfig {
                    noise_multiplier,
                    clipping,
                    noise,
                },
                seed,
            )
            .map_err(privacy_err)
        })?;
        Ok(Self { inner })
    }

    #[getter]
    fn clip_norm(&self) -> f64 {
        self.inner.clip_norm()
    }

    fn update_noise_multiplier(&self, num_clients: Bound<'_, PyAny>) -> PyResult<f64> {
        let m = int_arg(&num_clients, "num_clients", 1, u32::MAX as u64)? as usize;
        guard(|| self.inner.update_noise_multiplier(m).map_err(privacy_err))
    }

    /// One round over a C-contiguous float32 `[m, d]` matrix.
    fn aggregate<'py>(
        &mut self,
        py: Python<'py>,
        updates: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = updates.shape()[1];
        let data = updates
            .as_slice()
            .map_err(|_| PyValueError::new_err("updates must be C-contiguous"))?;
        if d == 0 || data.is_empty() {
            return Err(PyValueError::new_err(format!(
                "updates must be non-empty, got shape {:?}",
                updates.shape()
            )));
        }
        let rows: Vec<&[f32]> = data.chunks(d).collect();
        let inner = &mut self.inner;
        let r = py.detach(|| guard(|| inner.aggregate(&rows).map_err(privacy_err)))?;
        round_dict(py, r)
    }

    /// A client's clipped (and, by placement, noised) update, with the unclipped bit appended
    /// under adaptive clipping; `seed` seeds the client's noise.
    #[pyo3(signature = (update, num_clients, seed=None))]
    fn client_contribution<'py>(
        &self,
        py: Python<'py>,
        update: PyReadonlyArray1<'py, f32>,
        num_clients: Bound<'py, PyAny>,
        seed: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let m = int_arg(&num_clients, "num_clients", 1, u32::MAX as u64)? as usize;
        let seed = int_or(&seed, 0, "seed", 0, u64::MAX)?;
        let mut rng = dp::seeded_rng(seed);
        let update = slice(&update, "update")?;
        let out = guard(|| {
            self.inner
                .client_contribution(update, m, &mut rng)
                .map_err(privacy_err)
        })?;
        Ok(out.into_pyarray(py))
    }

    /// Finishes a round from the sum of `num_clients` contributions.
    fn finish_round<'py>(
        &mut self,
        py: Python<'py>,
        summed: PyReadonlyArray1<'py, f32>,
        num_clients: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = int_arg(&num_clients, "num_clients", 1, u32::MAX as u64)? as usize;
        let summed = slice(&summed, "summed")?;
        let r = guard(|| self.inner.finish_round(summed, m).map_err(privacy_err))?;
        round_dict(py, r)
    }
}

fn stage(name: &str) -> PyResult<Stage> {
    Stage::ALL
        .into_iter()
        .find(|s| s.to_string() == name)
        .ok_or_else(|| PyValueError::new_err(format!(
            "dropouts keys must be \"advertise_keys\", \"share_keys\", \"masked_input\", \"consistency_check\" or \"unmasking\", got {name:?}"
        )))
}

/// Runs secure aggregation in process over `inputs` (1-D float32 arrays or None); returns a
/// dict: sum, included, dropouts [(client, stage)], forged_shares, max_error.
#[pyfunction]
#[pyo3(name = "secure_sum", signature = (inputs, threshold, clip_range=1.0, modulus_bits=None, degree=None,
                                         graph_seed=None, dropouts=None, session=None, sign_messages=true, seed=None))]
#[allow(clippy::too_many_arguments)]
fn py_secure_sum<'py>(
    py: Python<'py>,
    inputs: Vec<Option<PyReadonlyArray1<'py, f32>>>,
    threshold: Bound<'py, PyAny>,
    clip_range: f32,
    modulus_bits: Option<Bound<'py, PyAny>>,
    degree: Option<Bound<'py, PyAny>>,
    graph_seed: Option<Bound<'py, PyAny>>,
    dropouts: Option<Bound<'py, PyDict>>,
    session: Option<Bound<'py, PyAny>>,
    sign_messages: bool,
    seed: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let n = inputs.len();
    let max_n = meshrl_privacy::secagg::MAX_CLIENTS as u64;
    let threshold = int_arg(&threshold, "threshold", 2, n.max(2) as u64)? as usize;
    let modulus_bits = int_or(&modulus_bits, 32, "modulus_bits", 8, 64)? as u32;
    let graph = match &degree {
        None => Graph::Complete,
        Some(k) => Graph::Harary {
            degree: int_arg(k, "degree", 2, max_n)? as usize,
            seed: int_or(&graph_seed, 0, "graph_seed", 0, u64::MAX)?,
        },
    };
    let slices: Vec<Option<&[f32]>> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_ref()
                .map(|a| {
                    a.as_slice().map_err(|_| {
                        PyValueError::new_err(format!("input {i} must be C-contiguous"))
                    })
                })
                .transpose()
        })
        .collect::<PyResult<_>>()?;
    let dim = slices.iter().flatten().map(|s| s.len()).next().unwrap_or(0);
    let mut script = Dropouts::none();
    if let Some(d) = dropouts {
        for (k, v) in d.iter() {
            let s = stage(
                &k.extract::<String>()
                    .map_err(|_| PyTypeError::new_err("dropouts keys must be stage names"))?,
            )?;
            let ids: Vec<Bound<'_, PyAny>> = v
                .extract()
                .map_err(|_| PyTypeError::new_err("dropouts values must be lists of client ids"))?;
            let list = match s {
                Stage::AdvertiseKeys => &mut script.advertise_keys,
                Stage::ShareKeys => &mut script.share_keys,
                Stage::MaskedInput => &mut script.masked_input,
                Stage::ConsistencyCheck => &mut script.consistency_check,
                Stage::Unmasking => &mut script.unmasking,
            };
            for id in &ids {
                list.push(int_arg(id, "dropouts", 0, n.saturating_sub(1) as u64)? as usize);
            }
        }
    }
    let config = SecAggConfig {
        num_clients: n,
        threshold,
        dim,
        graph,
        quantization: Quantization {
            clip_range,
            modulus_bits,
        },
        session: int_or(&session, 0, "session", 0, u64::MAX)?,
        sign_messages,
    };
    let seed = int_or(&seed, 0, "seed", 0, u64::MAX)?;
    let o = py.detach(|| {
        guard(|| meshrl_privacy::secure_sum(&slices, &config, &script, seed).map_err(privacy_err))
    })?;
    let d = PyDict::new(py);
    d.set_item("sum", o.sum.into_pyarray(py))?;
    d.set_item("included", o.included)?;
    d.set_item(
        "dropouts",
        o.dropouts
            .iter()
            .map(|(u, s)| (*u, s.to_string()))
            .collect::<Vec<_>>(),
    )?;
    d.set_item(
        "forged_shares",
        o.forged_shares
            .iter()
            .map(|f| (f.holder, f.owner, f.kind.to_string()))
            .collect::<Vec<_>>(),
    )?;
    d.set_item("max_error", o.max_error)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "SecureAggregationError",
        m.py().get_type::<SecureAggregationError>(),
    )?;
    m.add_class::<PyRdpAccountant>()?;
    m.add_class::<PyDpFedAvg>()?;
    m.add_function(wrap_pyfunction!(py_compute_rdp, m)?)?;
    m.add_function(wrap_pyfunction!(py_noise_multiplier_for, m)?)?;
    m.add_function(wrap_pyfunction!(py_clip_l2, m)?)?;
    m.add_function(wrap_pyfunction!(py_add_gaussian_noise, m)?)?;
    m.add_function(wrap_pyfunction!(py_l2_sensitivity, m)?)?;
    m.add_function(wrap_pyfunction!(py_rule_sensitivity, m)?)?;
    m.add_function(wrap_pyfunction!(py_require_sum_based_rule, m)?)?;
    m.add_function(wrap_pyfunction!(py_secure_sum, m)?)?;
    Ok(())
}
