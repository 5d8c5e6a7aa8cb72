//! `meshrl._core` evaluation: route the same packets with several baselines on one scenario.

use meshrl_env::EnvConfig;
use meshrl_eval::{baseline, evaluate, stats, EvalOptions, BASELINES};
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{env_err, guard};

/// Evaluates baselines (by name) on a scenario (JSON config). Returns the summaries and paired
/// comparisons as JSON, and each policy's episodes as a dict of NumPy arrays.
#[pyfunction]
#[pyo3(signature = (policies, config_json, scenario, episodes=2000, seed=0, num_envs=256))]
pub fn evaluate_baselines<'py>(
    py: Python<'py>,
    policies: Vec<String>,
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
    let mut routers = Vec::new();
    for p in &policies {
        let name = p.strip_prefix("baseline:").unwrap_or(p);
        let router = baseline(name, seed).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown policy `{p}`; baselines: {}",
                BASELINES.join(", ")
            ))
        })?;
        routers.push(router);
    }
    let opts = EvalOptions {
        episodes,
        num_envs,
        seed,
    };
    let runs = py.detach(|| {
        guard(|| {
            routers
                .iter_mut()
                .map(|r| {
                    evaluate(&cfg, r.as_mut(), &opts)
                        .map(|e| (r.name(), e))
                        .map_err(env_err)
                })
                .collect::<PyResult<Vec<_>>>()
        })
    })?;
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(evaluate_baselines, m)?)?;
    m.add("BASELINES", BASELINES.to_vec())?;
    Ok(())
}
