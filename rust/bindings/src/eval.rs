//! `meshrl._core` evaluation: route the same packets with several baselines on one scenario.

use meshrl_env::EnvConfig;
use meshrl_eval::{
    baseline, evaluate, evaluate_batch, stats, BatchEvalError, EvalOptions, BASELINES,
};
use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{env_err, guard};

/// Evaluates policies on a scenario (JSON config): baselines by name (`baseline:NAME`) and
/// Python callables `act(obs [n, obs_dim] float32, mask [n, k] int8) -> n slots`, given as
/// `(name, callable)`. Returns the summaries and paired comparisons as JSON, and each policy's
/// episodes as a dict of NumPy arrays.
#[pyfunction]
#[pyo3(signature = (policies, config_json, scenario, episodes=2000, seed=0, num_envs=256))]
pub fn evaluate_baselines<'py>(
    py: Python<'py>,
    policies: Vec<Bound<'py, PyAny>>,
    config_json: &str,
    scenario: &str,
    episodes: usize,
    seed: u64,
    num_envs: usize,
) -> PyResult<(String, Bound<'py, PyDict>)> {
    if episodes == 0 {
        return Err(PyValueError::new_err("episodes must be at least 1"));
    }
    if policies.is_empty() {
        return Err(PyValueError::new_err("give at least one policy"));
    }
    let cfg = EnvConfig::from_json_str(config_json).map_err(env_err)?;
    enum Entry<'py> {
        Router(Box<dyn meshrl_eval::Router>),
        Python(String, Bound<'py, PyAny>),
    }
    let mut entries = Vec::new();
    for p in &policies {
        if let Ok(p) = p.extract::<String>() {
            let name = p.strip_prefix("baseline:").unwrap_or(&p);
            let router = baseline(name, seed).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "unknown policy `{p}`; baselines: {}",
                    BASELINES.join(", ")
                ))
            })?;
            entries.push(Entry::Router(router));
        } else if let Ok((name, f)) = p.extract::<(String, Bound<'py, PyAny>)>() {
            if !f.is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "policy `{name}` is not callable: give act(obs, mask) -> actions"
                )));
            }
            entries.push(Entry::Python(name, f));
        } else {
            return Err(PyTypeError::new_err(format!(
                "a policy is `baseline:NAME` or (name, act) with act(obs, mask) -> actions, got {}",
                p.get_type().name()?
            )));
        }
    }
    let opts = EvalOptions {
        episodes,
        num_envs,
        seed,
    };
    let mut runs = Vec::with_capacity(entries.len());
    for entry in entries {
        runs.push(match entry {
            Entry::Router(mut r) => {
                let eps =
                    py.detach(|| guard(|| evaluate(&cfg, r.as_mut(), &opts).map_err(env_err)))?;
                (r.name(), eps)
            }
            Entry::Python(name, f) => {
                let eps = evaluate_python(py, &cfg, &opts, &name, &f)?;
                (name, eps)
            }
        });
    }
    let summaries: Vec<_> = runs
        .iter()
        .map(|(name, eps)| stats::summarize(name, scenario, eps, seed))
        .collect();
    let paired: Vec<_> = runs
        .split_first()
        .map(|(first, rest)| {
            rest.iter()
                .map(|o| stats::compare(&first.0, &first.1, &o.0, &o.1, scenario, seed))
                .collect()
        })
        .unwrap_or_default();
    let json = serde_json::json!({ "summaries": summaries, "paired": paired }).to_string();
    let per_policy = PyDict::new(py);
    for (name, eps) in &runs {
        let d = PyDict::new(py);
        macro_rules! column {
            ($key:literal, $f:expr) => {
                d.set_item(
                    $key,
                    eps.iter().map($f).collect::<Vec<_>>().into_pyarray(py),
                )?;
            };
        }
        column!("env", |e: &meshrl_eval::Episode| e.env as i64);
        column!("episode", |e: &meshrl_eval::Episode| e.episode as i64);
        column!("delivered", |e: &meshrl_eval::Episode| e.delivered());
        column!("outcome", |e: &meshrl_eval::Episode| e.outcome);
        column!("loss_cause", |e: &meshrl_eval::Episode| e.loss_cause);
        column!("latency_ms", |e: &meshrl_eval::Episode| e.latency_ms);
        column!("hops", |e: &meshrl_eval::Episode| e.hops as i64);
        column!("shortest_hops", |e: &meshrl_eval::Episode| e.shortest_hops
            as i64);
        column!("source", |e: &meshrl_eval::Episode| e.source as i64);
        column!("destination", |e: &meshrl_eval::Episode| e.destination
            as i64);
        per_policy.set_item(name, d)?;
    }
    Ok((json, per_policy))
}

/// Routes with a Python callable, one call per step for all environments.
fn evaluate_python<'py>(
    py: Python<'py>,
    cfg: &EnvConfig,
    opts: &EvalOptions,
    name: &str,
    f: &Bound<'py, PyAny>,
) -> PyResult<Vec<meshrl_eval::Episode>> {
    let k = cfg.topology.max_neighbors;
    let np = py.import("numpy")?;
    let mut act = |obs: &[f32], mask: &[i8], actions: &mut [i64]| -> PyResult<()> {
        let n = actions.len();
        let d = obs.len() / n.max(1);
        let o = PyArray1::from_slice(py, obs).reshape([n, d])?;
        let m = PyArray1::from_slice(py, mask).reshape([n, k])?;
        let out = f.call1((o, m))?;
        let a = np.call_method1("asarray", (out,))?;
        let kind: String = a.getattr("dtype")?.getattr("kind")?.extract()?;
        if kind != "i" && kind != "u" {
            return Err(PyTypeError::new_err(format!(
                "policy `{name}` must return integer slots, got dtype {}",
                a.getattr("dtype")?.str()?
            )));
        }
        let a = a
            .call_method1("astype", ("int64",))?
            .call_method1("reshape", (-1,))?;
        let a: PyReadonlyArray1<'_, i64> = a.extract()?;
        let a = a.as_slice()?;
        if a.len() != n {
            return Err(PyValueError::new_err(format!(
                "policy `{name}` returned {} actions for {n} environments",
                a.len()
            )));
        }
        actions.copy_from_slice(a);
        Ok(())
    };
    guard(|| {
        evaluate_batch(cfg, opts, &mut act).map_err(|e| match e {
            BatchEvalError::Env(e) => env_err(e),
            BatchEvalError::Policy(e) => e,
        })
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(evaluate_baselines, m)?)?;
    m.add("BASELINES", BASELINES.to_vec())?;
    Ok(())
}
