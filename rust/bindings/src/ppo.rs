//! `meshrl._core.Learner` and `meshrl._core.Trainer`: the Rust PPO learner and trainer, driven
//! from Python. A trainer's `learner` is a `Learner` sharing its state, so acting, weights and
//! export are written once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use meshrl_env::EnvConfig;
use meshrl_ppo::{EnvShare, Learner, PpoConfig, Trainer, UpdateStats};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{env_err, guard, ppo_err};

fn contiguous<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, name: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

fn stats_dict<'py>(py: Python<'py>, s: &UpdateStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in s.metrics() {
        d.set_item(name, value)?;
    }
    d.set_item("global_step", s.global_step)?;
    Ok(d)
}

fn ppo_config(json: &str) -> PyResult<PpoConfig> {
    serde_json::from_str(json).map_err(|e| PyValueError::new_err(format!("bad ppo config: {e}")))
}

fn busy() -> PyErr {
    PyRuntimeError::new_err(
        "the learner is busy (training is running: call it after train() returns, not from its \
         callback or another thread)",
    )
}

/// Where a Python `Learner` finds its learner: its own, or the one inside a trainer.
#[derive(Clone)]
enum Handle {
    Own(Arc<Mutex<Learner>>),
    Trainer(Arc<Mutex<Trainer>>),
}

impl Handle {
    fn with<R>(&self, f: impl FnOnce(&mut Learner) -> R) -> PyResult<R> {
        match self {
            Handle::Own(l) => match l.try_lock() {
                Ok(mut g) => Ok(f(&mut g)),
                Err(TryLockError::Poisoned(p)) => Ok(f(&mut p.into_inner())),
                Err(TryLockError::WouldBlock) => Err(busy()),
            },
            Handle::Trainer(t) => match t.try_lock() {
                Ok(mut g) => Ok(f(&mut g.learner)),
                Err(TryLockError::Poisoned(p)) => Ok(f(&mut p.into_inner().learner)),
                Err(TryLockError::WouldBlock) => Err(busy()),
            },
        }
    }
}

fn lock(t: &Mutex<Trainer>) -> PyResult<std::sync::MutexGuard<'_, Trainer>> {
    match t.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        Err(TryLockError::WouldBlock) => Err(busy()),
    }
}

/// PPO's actor-critic, optimizer and RNG for any environment: sample actions, store
/// transitions, update; weights in and out; act and export.
#[pyclass(name = "Learner", module = "meshrl._core")]
pub struct PyLearner {
    handle: Handle,
}

#[pymethods]
impl PyLearner {
    /// A learner for `obs_dim` observations and `num_actions` discrete actions.
    #[new]
    fn new(obs_dim: usize, num_actions: usize, ppo_config_json: &str) -> PyResult<Self> {
        let ppo = ppo_config(ppo_config_json)?;
        let learner = guard(|| Learner::for_spaces(obs_dim, num_actions, ppo).map_err(ppo_err))?;
        Ok(PyLearner {
            handle: Handle::Own(Arc::new(Mutex::new(learner))),
        })
    }

    /// The network's shape as JSON (obs_dim, num_actions, hidden, architecture, ...).
    #[getter]
    fn spec(&self) -> PyResult<String> {
        let spec = self.handle.with(|l| l.spec().clone())?;
        serde_json::to_string(&spec).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    #[getter]
    fn global_step(&self) -> PyResult<u64> {
        self.handle.with(|l| l.global_step())
    }

    /// The backend the network runs on: `flex` (CPU), `wgpu` or `cuda`.
    #[getter]
    fn device(&self) -> PyResult<&'static str> {
        self.handle.with(|l| l.device_name())
    }

    /// Sampled actions, their log-probabilities and the critic's values for a batch
    /// (obs n × obs_dim float32, mask n × K int8, both flat).
    fn sample<'py>(
        &self,
        py: Python<'py>,
        obs: PyReadonlyArray1<'py, f32>,
        mask: PyReadonlyArray1<'py, i8>,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>)> {
        let (o, m) = (contiguous(&obs, "obs")?, contiguous(&mask, "mask")?);
        let (a, lp, v) = self.handle.with(|l| guard(|| l.sample(o, m).map_err(ppo_err)))??;
        Ok((a.into_pyarray(py), lp.into_pyarray(py), v.into_pyarray(py)))
    }

    /// Critic values for a batch of observations (flat n × obs_dim); `mask` (n × K) marks the
    /// valid slots (all valid when omitted).
    #[pyo3(signature = (obs, mask=None))]
    fn values<'py>(
        &self,
        py: Python<'py>,
        obs: PyReadonlyArray1<'py, f32>,
        mask: Option<PyReadonlyArray1<'py, i8>>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let o = contiguous(&obs, "obs")?;
        let m = mask.as_ref().map(|m| contiguous(m, "mask")).transpose()?;
        let v = self.handle.with(|l| guard(|| l.values(o, m).map_err(ppo_err)))??;
        Ok(v.into_pyarray(py))
    }

    /// Stores one step of every environment (flat arrays; rewards include γ·V(final obs) for
    /// truncated episodes).
    #[allow(clippy::too_many_arguments)]
    fn store_transition(
        &self,
        obs: PyReadonlyArray1<'_, f32>,
        mask: PyReadonlyArray1<'_, i8>,
        actions: PyReadonlyArray1<'_, i64>,
        logps: PyReadonlyArray1<'_, f32>,
        values: PyReadonlyArray1<'_, f32>,
        rewards: PyReadonlyArray1<'_, f32>,
        dones: PyReadonlyArray1<'_, bool>,
    ) -> PyResult<()> {
        let args = (
            contiguous(&obs, "obs")?,
            contiguous(&mask, "mask")?,
            contiguous(&actions, "actions")?,
            contiguous(&logps, "logps")?,
            contiguous(&values, "values")?,
            contiguous(&rewards, "rewards")?,
            contiguous(&dones, "dones")?,
        );
        self.handle.with(|l| {
            guard(|| {
                l.store_transition(args.0, args.1, args.2, args.3, args.4, args.5, args.6)
                    .map_err(ppo_err)
            })
        })?
    }

    /// One PPO update on the stored transitions; `last_obs` follow the last stored step.
    fn update_from_buffer<'py>(
        &self,
        py: Python<'py>,
        last_obs: PyReadonlyArray1<'py, f32>,
        lr: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let o = contiguous(&last_obs, "last_obs")?.to_vec();
        let handle = self.handle.clone();
        let stats = py.detach(|| handle.with(|l| guard(|| l.update_from_buffer(&o, lr).map_err(ppo_err))))??;
        stats_dict(py, &stats)
    }

    /// Reports a finished episode's return (for charts/episodic_return).
    fn record_episode(&self, episodic_return: f32) -> PyResult<()> {
        self.handle.with(|l| l.record_episode(episodic_return))
    }

    /// The policy's parameters as one flat float32 array (what federated learning exchanges).
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        Ok(self.handle.with(|l| l.get_weights())?.into_pyarray(py))
    }

    /// Replaces the parameters; wrong length or non-finite values raise ValueError.
    fn set_weights(&self, weights: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let w = contiguous(&weights, "weights")?;
        self.handle.with(|l| l.set_weights(w).map_err(ppo_err))?
    }

    /// Saves the weights atomically (checksummed file).
    fn save(&self, path: &str) -> PyResult<()> {
        self.handle.with(|l| l.save(path).map_err(ppo_err))?
    }

    /// Loads weights saved for the same network shape.
    fn load(&self, path: &str) -> PyResult<()> {
        self.handle.with(|l| l.load(path).map_err(ppo_err))?
    }

    /// The actor's logits (n × K, unmasked, flat) for observations (n × obs_dim float32).
    fn logits<'py>(&self, py: Python<'py>, obs: PyReadonlyArray1<'py, f32>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let o = contiguous(&obs, "obs")?;
        let policy = self.handle.with(|l| l.policy())?;
        let logits = py.detach(|| guard(|| policy.logits(o).map_err(ppo_err)))?;
        Ok(logits.into_pyarray(py))
    }

    /// Actions for observations (n × obs_dim float32) and masks (n × K int8): argmax over valid
    /// slots when `deterministic`, else sampled with `seed`.
    #[pyo3(signature = (obs, mask, deterministic=false, seed=0))]
    fn get_action<'py>(
        &self,
        py: Python<'py>,
        obs: PyReadonlyArray1<'py, f32>,
        mask: PyReadonlyArray1<'py, i8>,
        deterministic: bool,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (o, m) = (contiguous(&obs, "obs")?, contiguous(&mask, "mask")?);
        let policy = self.handle.with(|l| l.policy())?;
        let a = py.detach(|| guard(|| policy.act(o, m, deterministic, seed).map_err(ppo_err)))?;
        Ok(a.into_pyarray(py))
    }

    /// Exports the policy for mesh nodes (safetensors + model card); returns the checksum.
    #[pyo3(signature = (path, critic=false, training_config_json=None))]
    fn export(&self, path: &str, critic: bool, training_config_json: Option<&str>) -> PyResult<u64> {
        let training_config = training_config_json
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("bad training config JSON: {e}")))?;
        let opts = meshrl_ppo::ExportOptions {
            include_critic: critic,
            training_config,
        };
        let policy = self.handle.with(|l| l.policy())?;
        guard(|| policy.export(path, &opts).map_err(ppo_err))
    }
}

/// PPO on the Rust routing environment(s): rollouts never cross into Python.
#[pyclass(name = "Trainer", module = "meshrl._core")]
pub struct PyTrainer {
    inner: Arc<Mutex<Trainer>>,
    /// Set while `train` runs (its callback may use the trainer, but not train it again).
    running: Arc<AtomicBool>,
}

/// Marks a trainer's `train` as running until dropped.
struct RunClaim(Arc<AtomicBool>);

impl RunClaim {
    fn claim(flag: &Arc<AtomicBool>) -> PyResult<Self> {
        if flag.swap(true, Ordering::AcqRel) {
            return Err(PyRuntimeError::new_err(
                "train() is already running on this trainer (called again from its callback or \
                 another thread); let it return first",
            ));
        }
        Ok(RunClaim(flag.clone()))
    }
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[pymethods]
impl PyTrainer {
    /// A trainer on a mixture (JSON list of `{"env": EnvConfig, "num_envs": n}`; the PPO
    /// config's `num_envs` must be their sum) drawing new meshes every `reseed_every` updates.
    #[new]
    #[pyo3(signature = (mix_json, ppo_config_json, reseed_every=0))]
    fn new(py: Python<'_>, mix_json: &str, ppo_config_json: &str, reseed_every: u64) -> PyResult<Self> {
        let ppo = ppo_config(ppo_config_json)?;
        let raw: Vec<serde_json::Value> =
            serde_json::from_str(mix_json).map_err(|e| PyValueError::new_err(format!("bad environment mixture: {e}")))?;
        let mut mix = Vec::with_capacity(raw.len());
        for m in raw {
            let env = EnvConfig::from_json_str(&m["env"].to_string()).map_err(env_err)?;
            let num_envs = m["num_envs"]
                .as_u64()
                .ok_or_else(|| PyValueError::new_err("each mixture entry needs an integer num_envs"))?;
            mix.push(EnvShare {
                env,
                num_envs: num_envs as usize,
            });
        }
        let inner = py.detach(|| guard(|| Trainer::with_mix(mix, ppo, reseed_every).map_err(ppo_err)))?;
        Ok(PyTrainer {
            inner: Arc::new(Mutex::new(inner)),
            running: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The trainer's learner (shares its state).
    #[getter]
    fn learner(&self) -> PyLearner {
        PyLearner {
            handle: Handle::Trainer(self.inner.clone()),
        }
    }

    /// The environment mixture, as the trainer runs it (JSON).
    #[getter]
    fn mix(&self) -> PyResult<String> {
        let mix = lock(&self.inner)?.mix().to_vec();
        serde_json::to_string(&mix).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Trains for `steps` environment steps. `callback(stats: dict)` runs after every update,
    /// with the trainer free: it may read or set the weights, act, evaluate or export.
    /// Returning `False` stops training. Returns the last update's stats.
    #[pyo3(signature = (steps, callback=None))]
    fn train<'py>(&self, py: Python<'py>, steps: u64, callback: Option<Py<PyAny>>) -> PyResult<Bound<'py, PyDict>> {
        if steps == 0 {
            return Err(PyValueError::new_err("steps must be at least 1"));
        }
        let _run = RunClaim::claim(&self.running)?;
        let inner = self.inner.clone();
        py.detach(|| lock(&inner).map(|mut t| t.start_run()))?;
        let mut last = UpdateStats::default();
        // The trainer is locked for one update at a time, so the callback can use it.
        while let Some(stats) = py.detach(|| {
            let mut t = lock(&inner)?;
            guard(|| t.next_update(steps, 0, None).map_err(ppo_err))
        })? {
            last = stats;
            py.check_signals()?; // Ctrl-C stops between updates
            if let Some(cb) = callback.as_ref() {
                let r = cb.call1(py, (stats_dict(py, &last)?,))?;
                if !r.is_none(py) && !r.extract::<bool>(py)? {
                    break;
                }
            }
        }
        stats_dict(py, &last)
    }

    /// The policy (sampled and greedy) next to ETX, the latency router and the other
    /// baselines on `episodes` unseen packets of `scenario_json` (default: the first training
    /// environment) under its own load, paired; as JSON (summaries, paired, best_baseline).
    #[pyo3(signature = (episodes=2048, seed=1_000_003, scenario_json=None, name="eval"))]
    fn evaluate(
        &self,
        py: Python<'_>,
        episodes: usize,
        seed: u64,
        scenario_json: Option<&str>,
        name: &str,
    ) -> PyResult<String> {
        let (policy, mut cfg) = {
            let t = lock(&self.inner)?;
            (t.policy(), t.env_config().clone())
        };
        if let Some(j) = scenario_json {
            let features = cfg.env.features;
            cfg = EnvConfig::from_json_str(j).map_err(env_err)?;
            cfg.env.features = features;
        }
        if !(1..=meshrl_eval::MAX_EPISODES).contains(&episodes) {
            return Err(PyValueError::new_err(format!(
                "episodes must be in 1..={}, got {episodes}",
                meshrl_eval::MAX_EPISODES
            )));
        }
        let c = py.detach(|| guard(|| meshrl_ppo::compare(&policy, name, &cfg, episodes, seed).map_err(ppo_err)))?;
        serde_json::to_string(&c).map_err(|e| PyValueError::new_err(e.to_string()))
    }
}

/// Reads a training config (`configs/train/*.toml`); returns (mixture JSON, ppo JSON,
/// total_steps, reseed_every, evaluation scenario paths).
#[pyfunction]
pub fn load_train_config(path: &str) -> PyResult<(String, String, u64, u64, Vec<String>)> {
    let loaded = meshrl_ppo::TrainConfig::load(path).map_err(ppo_err)?;
    let to_json = |v: serde_json::Result<String>| v.map_err(|e| PyValueError::new_err(e.to_string()));
    Ok((
        to_json(serde_json::to_string(&loaded.mix))?,
        to_json(serde_json::to_string(&loaded.cfg.ppo))?,
        loaded.cfg.total_steps,
        loaded.cfg.reseed_every,
        loaded.eval.iter().map(|p| p.display().to_string()).collect(),
    ))
}

/// The default PPO config as JSON (the prototype's values).
#[pyfunction]
pub fn default_ppo_config() -> PyResult<String> {
    serde_json::to_string(&PpoConfig::default()).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLearner>()?;
    m.add_class::<PyTrainer>()?;
    m.add_function(wrap_pyfunction!(load_train_config, m)?)?;
    m.add_function(wrap_pyfunction!(default_ppo_config, m)?)?;
    Ok(())
}
