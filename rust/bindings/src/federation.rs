//! `meshrl._core.Federation` and `meshrl._core.FederatedWorker`: the in-process federation and
//! one worker on its own (what a Flower client runs).

use std::path::Path;

use meshrl_federation::{evaluate_policies, train_central, Federation, FederationConfig, Worker};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{federation_err, guard, ppo_err};

/// A federation config from a TOML path or a JSON string (the same fields; relative paths
/// from the working directory).
fn load(path: Option<&str>, json: Option<&str>) -> PyResult<FederationConfig> {
    match (path, json) {
        (Some(p), None) => FederationConfig::load(p).map_err(federation_err),
        (None, Some(j)) => FederationConfig::from_json_str(j, Path::new(".")).map_err(federation_err),
        _ => Err(PyValueError::new_err("give a federation config: a TOML path or a dict")),
    }
}

fn weights<'a>(a: &'a PyReadonlyArray1<'_, f32>) -> PyResult<&'a [f32]> {
    a.as_slice().map_err(|_| PyValueError::new_err("weights must be a C-contiguous float32 vector"))
}

fn to_json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The in-process federation on a virtual clock.
#[pyclass(name = "Federation", module = "meshrl._core", unsendable)]
pub struct PyFederation {
    inner: Federation,
}

#[pymethods]
impl PyFederation {
    #[new]
    #[pyo3(signature = (path=None, config_json=None))]
    fn new(py: Python<'_>, path: Option<&str>, config_json: Option<&str>) -> PyResult<Self> {
        let cfg = load(path, config_json)?;
        let inner = py.detach(|| guard(|| Federation::new(cfg).map_err(federation_err)))?;
        Ok(PyFederation { inner })
    }

    /// Continues a federation from its checkpoint.
    #[staticmethod]
    fn resume(py: Python<'_>, path: &str) -> PyResult<Self> {
        let inner = py.detach(|| guard(|| Federation::resume(path).map_err(federation_err)))?;
        Ok(PyFederation { inner })
    }

    /// The model ledger's path (`[trust]` only).
    #[getter]
    fn ledger_path(&self) -> Option<String> {
        self.inner.ledger_path().map(|p| p.display().to_string())
    }

    /// The validators (worker indices, replica order) and which are Byzantine (`[trust]` only).
    #[getter]
    fn validators(&self) -> Option<(Vec<usize>, Vec<bool>)> {
        self.inner.validators()
    }

    /// The resolved config (JSON).
    #[getter]
    fn config(&self) -> PyResult<String> {
        to_json(self.inner.config())
    }

    #[getter]
    fn round(&self) -> u64 {
        self.inner.round()
    }

    #[getter]
    fn num_workers(&self) -> usize {
        self.inner.num_workers()
    }

    #[getter]
    fn byzantine(&self) -> Vec<bool> {
        self.inner.byzantine().to_vec()
    }

    #[getter]
    fn model_hash(&self) -> String {
        self.inner.model_hash()
    }

    #[getter]
    fn total_samples(&self) -> u64 {
        self.inner.total_samples()
    }

    /// The nodes of worker `i`'s site.
    fn site(&self, i: usize) -> PyResult<Vec<u32>> {
        if i >= self.inner.num_workers() {
            return Err(PyValueError::new_err(format!("worker {i} does not exist (0..{})", self.inner.num_workers())));
        }
        Ok(self.inner.site(i).to_vec())
    }

    /// Runs one round (the GIL released); returns its report (JSON).
    fn run_round(&mut self, py: Python<'_>) -> PyResult<String> {
        let fed = &mut self.inner;
        let report = py.detach(|| guard(|| fed.run_round().map_err(federation_err)))?;
        to_json(&report)
    }

    /// Every round's report so far (JSON list).
    fn history(&self) -> PyResult<String> {
        to_json(&self.inner.history())
    }

    fn global_weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.inner.global_weights().to_vec().into_pyarray(py)
    }

    fn set_global_weights(&mut self, w: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let w = weights(&w)?.to_vec();
        guard(|| self.inner.set_global_weights(&w).map_err(federation_err))
    }

    fn save_checkpoint(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        let fed = &self.inner;
        py.detach(|| guard(|| fed.save_checkpoint(path).map_err(federation_err)))
    }

    /// Saves the global model as a weights file (`meshrl export` turns it into a node export).
    fn save_weights(&mut self, path: &str) -> PyResult<()> {
        guard(|| self.inner.global_learner().map_err(federation_err)?.save(path).map_err(ppo_err))
    }

    /// Exports the global model for mesh nodes; returns the checksum.
    fn export(&mut self, path: &str) -> PyResult<u64> {
        guard(|| {
            let policy = self.inner.global_learner().map_err(federation_err)?.policy();
            policy.export(path, &meshrl_ppo::ExportOptions::default()).map_err(ppo_err)
        })
    }

    /// The global model (greedy) next to the baselines (and, with `central_samples`, a policy
    /// trained centrally on that many samples) on `episodes` packets; JSON.
    #[pyo3(signature = (episodes, seed, baselines, central_samples=None))]
    fn evaluate(
        &mut self,
        py: Python<'_>,
        episodes: usize,
        seed: u64,
        baselines: Vec<String>,
        central_samples: Option<u64>,
    ) -> PyResult<String> {
        let fed = &mut self.inner;
        let result = py.detach(|| {
            guard(|| {
                let mut policies = vec![("federated".to_string(), fed.global_learner().map_err(federation_err)?.policy())];
                if let Some(n) = central_samples {
                    let central = train_central(fed.config(), n).map_err(federation_err)?;
                    policies.push(("central".to_string(), central.policy()));
                }
                let names: Vec<&str> = baselines.iter().map(String::as_str).collect();
                evaluate_policies(&fed.config().env, &policies, &names, episodes, seed).map_err(federation_err)
            })
        })?;
        to_json(&result)
    }
}

/// One worker of a federation on its own: a Flower client's local training.
#[pyclass(name = "FederatedWorker", module = "meshrl._core", unsendable)]
pub struct PyWorker {
    inner: Worker,
    nodes: Vec<u32>,
}

#[pymethods]
impl PyWorker {
    /// Worker `worker` (a node, or a site with `federation.sites`) of the federation config.
    #[new]
    #[pyo3(signature = (worker, path=None, config_json=None))]
    fn new(py: Python<'_>, worker: usize, path: Option<&str>, config_json: Option<&str>) -> PyResult<Self> {
        let cfg = load(path, config_json)?;
        let inner = py.detach(|| guard(|| Federation::new(cfg).and_then(|f| f.make_worker(worker)).map_err(federation_err)))?;
        let nodes = inner.nodes().to_vec();
        Ok(PyWorker { inner, nodes })
    }

    #[getter]
    fn nodes(&self) -> Vec<u32> {
        self.nodes.clone()
    }

    /// One round from the global weights: returns (delta, num_samples, metrics).
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        global_weights: PyReadonlyArray1<'py, f32>,
        round: u64,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, u64, Bound<'py, PyDict>)> {
        let g = weights(&global_weights)?.to_vec();
        let w = &mut self.inner;
        let u = py.detach(|| guard(|| w.fit(&g, round).map_err(federation_err)))?;
        let metrics = PyDict::new(py);
        metrics.set_item("delivery_ratio", u.delivery_ratio)?;
        metrics.set_item("episodic_return", u.episodic_return)?;
        Ok((u.delta.into_pyarray(py), u.num_samples, metrics))
    }
}

/// Reads a federation config (TOML) and returns it resolved (JSON): the environment loaded
/// with its overrides, every section with its defaults.
#[pyfunction]
fn load_federation_config(path: &str) -> PyResult<String> {
    to_json(&FederationConfig::load(path).map_err(federation_err)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load_federation_config, m)?)?;
    m.add_class::<PyFederation>()?;
    m.add_class::<PyWorker>()?;
    Ok(())
}
