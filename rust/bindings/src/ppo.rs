//! `meshrl._core.Trainer`: the Rust PPO trainer, driven from Python.

use meshrl_env::EnvConfig;
use meshrl_eval::{baseline, evaluate, stats, EvalOptions};
use meshrl_ppo::{PolicyRouter, PpoConfig, PpoError, Trainer, UpdateStats};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{env_err, guard, MeshrlError};

fn ppo_err(e: PpoError) -> PyErr {
    match e {
        PpoError::Env(e) => env_err(e),
        PpoError::InvalidConfig { .. } => PyValueError::new_err(e.to_string()),
        PpoError::Weights(ref m) if m.contains("No such file") || m.contains("os error") => {
            PyOSError::new_err(e.to_string())
        }
        PpoError::Weights(_) => PyValueError::new_err(e.to_string()),
        PpoError::NonFinite(_) => MeshrlError::new_err(e.to_string()),
    }
}

fn contiguous<'a, T: numpy::Element>(
    a: &'a numpy::PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

fn stats_dict<'py>(py: Python<'py>, s: &UpdateStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("global_step", s.global_step)?;
    for (name, value) in [
        ("charts/episodic_return", s.episodic_return as f64),
        ("charts/SPS", s.sps),
        ("charts/learning_rate", s.learning_rate),
        ("losses/policy_loss", s.policy_loss as f64),
        ("losses/value_loss", s.value_loss as f64),
        ("losses/entropy", s.entropy as f64),
        ("losses/approx_kl", s.approx_kl as f64),
        ("losses/clipfrac", s.clipfrac as f64),
        ("losses/explained_variance", s.explained_variance as f64),
        ("routing/delivery_ratio", s.delivery_ratio as f64),
        ("routing/latency_ms", s.latency_ms as f64),
        ("routing/hops", s.hops as f64),
    ] {
        d.set_item(name, value)?;
    }
    Ok(d)
}

/// PPO on the Rust routing environment (CPU, burn `flex`). Build it from JSON configs; the
/// Python class `meshrl.ppo.Trainer` wraps this.
#[pyclass(name = "Trainer", module = "meshrl._core")]
pub struct PyTrainer {
    inner: Trainer,
    env_cfg: EnvConfig,
}

#[pymethods]
impl PyTrainer {
    #[new]
    fn new(py: Python<'_>, env_config_json: &str, ppo_config_json: &str) -> PyResult<Self> {
        let env_cfg = EnvConfig::from_json_str(env_config_json).map_err(env_err)?;
        let ppo: PpoConfig = serde_json::from_str(ppo_config_json)
            .map_err(|e| PyValueError::new_err(format!("bad ppo config: {e}")))?;
        let cfg = env_cfg.clone();
        let inner = py.detach(|| guard(|| Trainer::new(cfg, ppo).map_err(ppo_err)))?;
        Ok(PyTrainer { inner, env_cfg })
    }

    /// A trainer for any environment with `obs_dim` observations and `num_actions` discrete
    /// actions (a gymnasium VectorEnv driven from Python).
    #[staticmethod]
    fn for_spaces(obs_dim: usize, num_actions: usize, ppo_config_json: &str) -> PyResult<Self> {
        let ppo: PpoConfig = serde_json::from_str(ppo_config_json)
            .map_err(|e| PyValueError::new_err(format!("bad ppo config: {e}")))?;
        let inner = guard(|| Trainer::for_spaces(obs_dim, num_actions, ppo).map_err(ppo_err))?;
        Ok(PyTrainer {
            inner,
            env_cfg: EnvConfig::default(),
        })
    }

    /// Sampled actions, their log-probabilities and the critic's values for a batch
    /// (obs n × obs_dim float32, mask n × K int8, both flat).
    fn sample<'py>(
        &mut self,
        py: Python<'py>,
        obs: PyReadonlyArray1<'py, f32>,
        mask: PyReadonlyArray1<'py, i8>,
    ) -> PyResult<(
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<f32>>,
        Bound<'py, PyArray1<f32>>,
    )> {
        let (a, lp, v) = self
            .inner
            .sample(contiguous(&obs, "obs")?, contiguous(&mask, "mask")?)
            .map_err(ppo_err)?;
        Ok((a.into_pyarray(py), lp.into_pyarray(py), v.into_pyarray(py)))
    }

    /// Critic values for a batch of observations (flat n × obs_dim).
    fn values<'py>(
        &self,
        py: Python<'py>,
        obs: PyReadonlyArray1<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let v = self.inner.values(contiguous(&obs, "obs")?).map_err(ppo_err)?;
        Ok(v.into_pyarray(py))
    }

    /// Stores one step of every environment (flat arrays; rewards include γ·V(final obs) for
    /// truncated episodes).
    #[allow(clippy::too_many_arguments)]
    fn store_transition(
        &mut self,
        obs: PyReadonlyArray1<'_, f32>,
        mask: PyReadonlyArray1<'_, i8>,
        actions: PyReadonlyArray1<'_, i64>,
        logps: PyReadonlyArray1<'_, f32>,
        values: PyReadonlyArray1<'_, f32>,
        rewards: PyReadonlyArray1<'_, f32>,
        dones: PyReadonlyArray1<'_, bool>,
    ) -> PyResult<()> {
        self.inner
            .store_transition(
                contiguous(&obs, "obs")?,
                contiguous(&mask, "mask")?,
                contiguous(&actions, "actions")?,
                contiguous(&logps, "logps")?,
                contiguous(&values, "values")?,
                contiguous(&rewards, "rewards")?,
                contiguous(&dones, "dones")?,
            )
            .map_err(ppo_err)
    }

    /// One PPO update on the stored transitions; `last_obs` follow the last stored step.
    fn update_from_buffer<'py>(
        &mut self,
        py: Python<'py>,
        last_obs: PyReadonlyArray1<'py, f32>,
        lr: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let o = contiguous(&last_obs, "last_obs")?.to_vec();
        let inner = &mut self.inner;
        let stats = py.detach(|| guard(|| inner.update_from_buffer(&o, lr).map_err(ppo_err)))?;
        stats_dict(py, &stats)
    }

    /// Reports a finished episode's return (for charts/episodic_return).
    fn record_episode(&mut self, episodic_return: f32) {
        self.inner.record_episode(episodic_return);
    }

    #[getter]
    fn global_step(&self) -> u64 {
        self.inner.global_step()
    }

    /// Trains for `steps` environment steps. `callback(stats: dict)` runs after every update;
    /// returning `False` stops training. Returns the last update's stats.
    #[pyo3(signature = (steps, callback=None))]
    fn train<'py>(
        &mut self,
        py: Python<'py>,
        steps: u64,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        if steps == 0 {
            return Err(PyValueError::new_err("steps must be at least 1"));
        }
        let inner = &mut self.inner;
        let mut raised: Option<PyErr> = None;
        let last = py.detach(|| {
            guard(|| {
                inner
                    .train(steps, |s| {
                        let Some(cb) = callback.as_ref() else {
                            return true;
                        };
                        Python::attach(|py| {
                            let keep =
                                stats_dict(py, s)
                                    .and_then(|d| cb.call1(py, (d,)))
                                    .and_then(|r| {
                                        if r.is_none(py) {
                                            Ok(true)
                                        } else {
                                            r.extract::<bool>(py)
                                        }
                                    });
                            match keep {
                                Ok(k) => k,
                                Err(e) => {
                                    raised = Some(e);
                                    false
                                }
                            }
                        })
                    })
                    .map_err(ppo_err)
            })
        })?;
        if let Some(e) = raised {
            return Err(e);
        }
        stats_dict(py, &last)
    }

    /// Delivery ratio and latency of the policy (sampled, and greedy) next to shortest path
    /// and random, on `episodes` packets the training never saw.
    #[pyo3(signature = (episodes=2048, seed=1_000_003))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        episodes: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        if episodes == 0 {
            return Err(PyValueError::new_err("episodes must be at least 1"));
        }
        let opts = EvalOptions {
            episodes,
            num_envs: 64,
            seed,
        };
        let (inner, cfg) = (&self.inner, &self.env_cfg);
        let rows = py.detach(|| {
            guard(|| {
                let mut rows = Vec::new();
                for (name, deterministic) in [("ppo", false), ("ppo_greedy", true)] {
                    let mut r = PolicyRouter {
                        policy: inner.policy(),
                        name: name.into(),
                        deterministic,
                        seed: 0,
                    };
                    let eps = evaluate(cfg, &mut r, &opts).map_err(env_err)?;
                    rows.push(stats::summarize(name, "eval", &eps, 0));
                }
                for name in ["shortest_path", "random"] {
                    let mut r = baseline(name, 0).expect("known baseline");
                    let eps = evaluate(cfg, r.as_mut(), &opts).map_err(env_err)?;
                    rows.push(stats::summarize(name, "eval", &eps, 0));
                }
                Ok(rows)
            })
        })?;
        let out = PyDict::new(py);
        for s in rows {
            let d = PyDict::new(py);
            d.set_item("delivery_ratio", s.delivery_ratio)?;
            d.set_item("delivery_ci", (s.delivery_ci.low, s.delivery_ci.high))?;
            d.set_item("latency_ms", s.latency_mean_ms)?;
            d.set_item("hops", s.hops_mean)?;
            d.set_item("episodes", s.episodes)?;
            out.set_item(s.policy, d)?;
        }
        Ok(out)
    }

    /// The policy's parameters as one flat float32 array (what federated learning exchanges).
    fn get_weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.inner.get_weights().into_pyarray(py)
    }

    /// Replaces the parameters; wrong length or non-finite values raise ValueError.
    fn set_weights(&mut self, weights: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let w = weights
            .as_slice()
            .map_err(|_| PyValueError::new_err("weights must be C-contiguous"))?;
        self.inner.set_weights(w).map_err(ppo_err)
    }

    /// Saves the weights atomically (checksummed file).
    fn save(&self, path: &str) -> PyResult<()> {
        self.inner.save(path).map_err(ppo_err)
    }

    /// Loads weights saved for the same architecture.
    fn load(&mut self, path: &str) -> PyResult<()> {
        self.inner.load(path).map_err(ppo_err)
    }

    /// The actor's logits (n × K, unmasked, flat) for observations (n × obs_dim float32).
    fn logits<'py>(
        &self,
        py: Python<'py>,
        obs: PyReadonlyArray1<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let o = obs
            .as_slice()
            .map_err(|_| PyValueError::new_err("obs must be C-contiguous"))?;
        let policy = self.inner.policy();
        let d = policy.obs_dim();
        if o.is_empty() || o.len() % d != 0 {
            return Err(PyValueError::new_err(format!(
                "obs must hold n × {d} values; got {}",
                o.len()
            )));
        }
        let logits = py.detach(|| guard(|| Ok(policy.logits(o))))?;
        Ok(logits.into_pyarray(py))
    }

    /// Exports the policy for mesh nodes (safetensors + model card); returns the checksum.
    #[pyo3(signature = (path, critic=false, training_config_json=None))]
    fn export(
        &self,
        path: &str,
        critic: bool,
        training_config_json: Option<&str>,
    ) -> PyResult<u64> {
        let training_config = training_config_json
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("bad training config JSON: {e}")))?;
        let opts = meshrl_ppo::ExportOptions {
            include_critic: critic,
            training_config,
        };
        self.inner.policy().export(path, &opts).map_err(ppo_err)
    }

    /// Actions for observations (n × obs_dim float32) and masks (n × K int8).
    #[pyo3(signature = (obs, mask, deterministic=false, seed=0))]
    fn get_action<'py>(
        &self,
        py: Python<'py>,
        obs: PyReadonlyArray1<'py, f32>,
        mask: PyReadonlyArray1<'py, i8>,
        deterministic: bool,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (o, m) = (
            obs.as_slice()
                .map_err(|_| PyValueError::new_err("obs must be C-contiguous"))?,
            mask.as_slice()
                .map_err(|_| PyValueError::new_err("mask must be C-contiguous"))?,
        );
        let policy = self.inner.policy();
        let (d, k) = (policy.obs_dim(), policy.max_neighbors());
        if o.len() % d != 0 || m.len() != o.len() / d * k {
            return Err(PyValueError::new_err(format!(
                "obs must hold n × {d} values and mask n × {k}; got {} and {}",
                o.len(),
                m.len()
            )));
        }
        Ok(policy.act(o, m, deterministic, seed).into_pyarray(py))
    }
}

/// Reads a training config (`configs/train/*.toml`); returns (env JSON, ppo JSON, total_steps).
#[pyfunction]
pub fn load_train_config(path: &str) -> PyResult<(String, String, u64)> {
    let (cfg, env) = meshrl_ppo::TrainConfig::load(path).map_err(ppo_err)?;
    let to_json =
        |v: serde_json::Result<String>| v.map_err(|e| PyValueError::new_err(e.to_string()));
    Ok((
        to_json(serde_json::to_string(&env))?,
        to_json(serde_json::to_string(&cfg.ppo))?,
        cfg.total_steps,
    ))
}

/// The default PPO config as JSON (the prototype's values).
#[pyfunction]
pub fn default_ppo_config() -> PyResult<String> {
    serde_json::to_string(&PpoConfig::default()).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTrainer>()?;
    m.add_function(wrap_pyfunction!(load_train_config, m)?)?;
    m.add_function(wrap_pyfunction!(default_ppo_config, m)?)?;
    Ok(())
}
