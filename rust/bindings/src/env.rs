//! `meshrl._core.VecEnv`: the Rust vectorized routing environment, with its buffers exposed
//! as NumPy arrays.

use meshrl_env::obs::{self, FEATURE_NAMES};
use meshrl_env::twin::{LossCause, NO_NEIGHBOR};
use meshrl_env::{EnvConfig, StepInfo, VecEnv};
use numpy::ndarray::{Array2, ArrayView1, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{env_err, guard, EnvStateError};

/// B routing environments stepped together in Rust. The Python classes in `meshrl.envs` wrap
/// this; use those unless you need the raw buffers.
#[pyclass(name = "VecEnv", module = "meshrl._core")]
pub struct PyVecEnv {
    inner: VecEnv,
}

/// A NumPy view of `data` as `shape`, owned by `owner`. The buffers are allocated once in
/// `VecEnv::new` and never reallocated, so the view stays valid while `owner` lives.
fn view2<'py, T: numpy::Element>(
    owner: &Bound<'py, PyVecEnv>,
    data: &[T],
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let v = ArrayView2::from_shape((rows, cols), data)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    // SAFETY: see above; `owner` becomes the array's base object and keeps the memory alive.
    Ok(unsafe { PyArray2::borrow_from_array(&v, owner.clone().into_any()) })
}

fn view1<'py, T: numpy::Element>(
    owner: &Bound<'py, PyVecEnv>,
    data: &[T],
) -> Bound<'py, PyArray1<T>> {
    let v = ArrayView1::from(data);
    // SAFETY: as in `view2`.
    unsafe { PyArray1::borrow_from_array(&v, owner.clone().into_any()) }
}

/// Struct-of-arrays copy of step infos, as a dict of NumPy arrays.
fn info_dict<'py>(py: Python<'py>, infos: &[StepInfo]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    macro_rules! column {
        ($name:literal, $f:expr) => {
            d.set_item(
                $name,
                infos.iter().map($f).collect::<Vec<_>>().into_pyarray(py),
            )?;
        };
    }
    column!("outcome", |i: &StepInfo| i.outcome as u8);
    // `packet`, not `episode`: Gymnasium's and SB3's episode-statistics wrappers own that key.
    column!("packet", |i: &StepInfo| i.episode as i64);
    column!("loss_cause", |i: &StepInfo| i.loss_cause);
    column!("reset", |i: &StepInfo| i.reset);
    column!("source", |i: &StepInfo| i.source as i64);
    column!("destination", |i: &StepInfo| i.destination as i64);
    column!("node", |i: &StepInfo| i.node as i64);
    column!("path_length", |i: &StepInfo| i.path_length as i64);
    column!("shortest_hops", |i: &StepInfo| i.shortest_hops as i64);
    column!("latency_ms", |i: &StepInfo| i.latency_ms);
    column!("episode_return", |i: &StepInfo| i.episode_return);
    Ok(d)
}

#[pymethods]
impl PyVecEnv {
    /// Builds `num_envs` environments from a JSON config (the schema of `default_config()`).
    #[new]
    fn new(py: Python<'_>, config_json: &str, num_envs: usize) -> PyResult<Self> {
        let cfg = EnvConfig::from_json_str(config_json).map_err(env_err)?;
        let inner = py.detach(|| guard(|| VecEnv::new(cfg, num_envs).map_err(env_err)))?;
        Ok(PyVecEnv { inner })
    }

    #[getter]
    fn num_envs(&self) -> usize {
        self.inner.num_envs()
    }

    #[getter]
    fn max_neighbors(&self) -> usize {
        self.inner.max_neighbors()
    }

    #[getter]
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim()
    }

    /// The validated config as JSON.
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.config()).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Starts new episodes everywhere: `seed` (int, environment i gets seed + i), `seeds` (one
    /// per environment), or neither (continue the random streams).
    #[pyo3(signature = (seed=None, seeds=None))]
    fn reset(
        &mut self,
        py: Python<'_>,
        seed: Option<u64>,
        seeds: Option<Vec<u64>>,
    ) -> PyResult<()> {
        let inner = &mut self.inner;
        py.detach(|| {
            guard(|| match seeds {
                Some(s) => inner.reset_with_seeds(&s).map_err(env_err),
                None => inner.reset(seed).map_err(env_err),
            })
        })
    }

    /// Steps every environment with an int64 array of neighbour-slot indices, shape (B,).
    fn step(&mut self, py: Python<'_>, actions: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let actions = actions
            .as_slice()
            .map_err(|_| PyValueError::new_err("actions must be C-contiguous"))?;
        let inner = &mut self.inner;
        py.detach(|| guard(|| inner.step(actions).map_err(env_err)))
    }

    /// Zero-copy view of the observations, float32 (B, obs_dim); overwritten by every step.
    fn obs_view<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let this = slf.borrow();
        let (b, d) = (this.inner.num_envs(), this.inner.obs_dim());
        view2(slf, &this.inner.buffers().obs, b, d)
    }

    /// Zero-copy view of the action masks, int8 (B, max_neighbors).
    fn mask_view<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray2<i8>>> {
        let this = slf.borrow();
        let (b, k) = (this.inner.num_envs(), this.inner.max_neighbors());
        view2(slf, &this.inner.buffers().mask, b, k)
    }

    /// Zero-copy view of the rewards, float32 (B,).
    fn reward_view<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<f32>> {
        let this = slf.borrow();
        view1(slf, &this.inner.buffers().reward)
    }

    /// Zero-copy view of the terminated flags, bool (B,).
    fn terminated_view<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<bool>> {
        let this = slf.borrow();
        view1(slf, &this.inner.buffers().terminated)
    }

    /// Zero-copy view of the truncated flags, bool (B,).
    fn truncated_view<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyArray1<bool>> {
        let this = slf.borrow();
        view1(slf, &this.inner.buffers().truncated)
    }

    /// Zero-copy view of the final observations (SAME_STEP autoreset), float32 (B, obs_dim).
    fn final_obs_view<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let this = slf.borrow();
        let b = &this.inner.buffers();
        let rows = b.final_info.len();
        view2(slf, &b.final_obs, rows, this.inner.obs_dim())
    }

    /// Zero-copy view of the final masks (SAME_STEP autoreset), int8 (B, max_neighbors).
    fn final_mask_view<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray2<i8>>> {
        let this = slf.borrow();
        let b = &this.inner.buffers();
        let rows = b.final_info.len();
        view2(slf, &b.final_mask, rows, this.inner.max_neighbors())
    }

    /// The last step's infos as a dict of arrays (copies).
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.buffers().info)
    }

    /// Infos of the steps that ended episodes (SAME_STEP autoreset), as a dict of arrays.
    fn final_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        info_dict(py, &self.inner.buffers().final_info)
    }

    /// A snapshot (copies) of the mesh that environment `env_index` routes its packet through,
    /// as a dict of arrays: `positions` float64 (N, 2), metres; `active` bool (N,); `trust`
    /// float32 (N,), 0..1; `neighbors` int64 (N, max_neighbors), the neighbour-table slots, -1
    /// where empty; and per slot the measured link metrics, float32 (N, max_neighbors):
    /// `rssi_dbm` (dBm), `latency_ms` (ms), `packet_loss` (probability per frame) and
    /// `bandwidth_mbps` (Mbps), zero where empty.
    #[pyo3(signature = (env_index=0))]
    fn network<'py>(&self, py: Python<'py>, env_index: usize) -> PyResult<Bound<'py, PyDict>> {
        let b = self.inner.num_envs();
        if env_index >= b {
            return Err(PyIndexError::new_err(format!(
                "env_index {env_index} is out of range: must be in 0..{b}"
            )));
        }
        if self.inner.twins().is_empty() {
            return Err(EnvStateError::new_err("no network yet: call reset() first"));
        }
        let twin = self.inner.twin_of(env_index);
        let (n, k) = (twin.num_nodes(), twin.max_neighbors());
        let shape_err = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
        let d = PyDict::new(py);
        let positions: Vec<f64> = twin.positions().iter().flatten().copied().collect();
        d.set_item(
            "positions",
            Array2::from_shape_vec((n, 2), positions)
                .map_err(shape_err)?
                .into_pyarray(py),
        )?;
        d.set_item(
            "active",
            (0..n)
                .map(|u| twin.is_active(u))
                .collect::<Vec<_>>()
                .into_pyarray(py),
        )?;
        d.set_item(
            "trust",
            (0..n)
                .map(|u| twin.trust(u))
                .collect::<Vec<_>>()
                .into_pyarray(py),
        )?;
        let neighbors: Vec<i64> = (0..n)
            .flat_map(|u| twin.neighbors(u).iter())
            .map(|&v| if v == NO_NEIGHBOR { -1 } else { v as i64 })
            .collect();
        d.set_item(
            "neighbors",
            Array2::from_shape_vec((n, k), neighbors)
                .map_err(shape_err)?
                .into_pyarray(py),
        )?;
        macro_rules! metric {
            ($name:literal, $field:ident) => {
                let values: Vec<f32> = (0..n)
                    .flat_map(|u| twin.link_metrics(u).iter())
                    .map(|m| m.$field)
                    .collect();
                d.set_item(
                    $name,
                    Array2::from_shape_vec((n, k), values)
                        .map_err(shape_err)?
                        .into_pyarray(py),
                )?;
            };
        }
        metric!("rssi_dbm", rssi_dbm);
        metric!("latency_ms", latency_ms);
        metric!("packet_loss", packet_loss);
        metric!("bandwidth_mbps", bandwidth_mbps);
        Ok(d)
    }
}

/// The default environment config as JSON: every section and field with its default.
#[pyfunction]
pub fn default_config() -> PyResult<String> {
    serde_json::to_string(&EnvConfig::default()).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Reads and validates a TOML config file; returns it as JSON.
#[pyfunction]
pub fn load_config(path: &str) -> PyResult<String> {
    let cfg = EnvConfig::from_toml_file(path).map_err(env_err)?;
    serde_json::to_string(&cfg).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Validates a JSON config and returns it normalized (defaults filled in).
#[pyfunction]
pub fn validate_config(config_json: &str) -> PyResult<String> {
    let cfg = EnvConfig::from_json_str(config_json).map_err(env_err)?;
    serde_json::to_string(&cfg).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVecEnv>()?;
    m.add_function(wrap_pyfunction!(default_config, m)?)?;
    m.add_function(wrap_pyfunction!(load_config, m)?)?;
    m.add_function(wrap_pyfunction!(validate_config, m)?)?;
    let causes: Vec<&str> = std::iter::once("none")
        .chain(LossCause::ALL.iter().map(|c| c.name()))
        .collect();
    m.add("LOSS_CAUSES", causes)?;
    m.add(
        "OUTCOMES",
        vec!["in_flight", "delivered", "lost", "ttl_expired"],
    )?;
    m.add("FEATURE_NAMES", FEATURE_NAMES.to_vec())?;
    m.add("FEATURES_PER_NEIGHBOR", obs::FEATURES_PER_NEIGHBOR)?;
    Ok(())
}
