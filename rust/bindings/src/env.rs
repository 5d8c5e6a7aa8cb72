//! `meshrl._core.VecEnv`: the Rust vectorized routing environment, with its buffers exposed
//! as NumPy arrays.

use meshrl_env::obs::{self, FEATURE_NAMES};
use meshrl_env::twin::LossCause;
use meshrl_env::{EnvConfig, StepInfo, VecEnv};
use numpy::ndarray::{ArrayView1, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{env_err, guard};

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
    column!("episode", |i: &StepInfo| i.episode as i64);
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
