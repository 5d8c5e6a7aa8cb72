//! A trained policy next to the routers to beat, on a scenario under its own load, paired on
//! the same packets: what `meshrl train` prints at the end and `Trainer.evaluate` returns.

use meshrl_env::EnvConfig;
use meshrl_eval::stats::{self, Paired, Summary};
use meshrl_eval::{baseline, evaluate, EvalOptions, BASELINES};
use serde::Serialize;

use crate::{Policy, PolicyRouter, PpoError};

/// Baselines a learned router is compared with, strongest first where known. Names this
/// build does not have are skipped.
pub const COMPARE_BASELINES: [&str; 6] = [
    "etx",
    "etx_trust",
    "latency",
    "backpressure",
    "shortest_path",
    "random",
];

/// The policy (sampled and greedy) and each baseline on one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub scenario: String,
    /// `ppo`, `ppo (greedy)`, then the baselines.
    pub summaries: Vec<Summary>,
    /// The baseline with the highest delivery ratio.
    pub best_baseline: String,
    /// `ppo` − ETX, `ppo (greedy)` − ETX, `ppo` − best, `ppo (greedy)` − best (paired).
    pub paired: Vec<Paired>,
}

/// Environments for an evaluation of `episodes` packets under `cfg`'s own load: whole twins of
/// `envs_per_twin` packets, at least 256 environments when there are packets for them.
pub fn own_load_envs(cfg: &EnvConfig, episodes: usize) -> usize {
    let per = cfg.env.envs_per_twin.max(1);
    let want = 256usize.div_ceil(per).max(1) * per;
    want.min(episodes).max(1)
}

/// Routes `episodes` packets of `cfg` with `policy` (sampled and argmax) and each baseline
/// in [`COMPARE_BASELINES`], on the same packets and mesh evolution (`seed`).
pub fn compare(
    policy: &Policy,
    scenario: &str,
    cfg: &EnvConfig,
    episodes: usize,
    seed: u64,
) -> Result<Comparison, PpoError> {
    let k = cfg.topology.max_neighbors;
    let d = cfg.env.features.obs_dim(k);
    if (policy.obs_dim(), policy.max_neighbors()) != (d, k) {
        return Err(PpoError::input(
            "scenario",
            format!(
                "`{scenario}` has {k} neighbour slots and `{}` features (obs_dim {d}); the policy \
                 was trained for {} slots, obs_dim {}",
                cfg.env.features.name(),
                policy.max_neighbors(),
                policy.obs_dim()
            ),
        ));
    }
    let opts = EvalOptions {
        episodes,
        num_envs: own_load_envs(cfg, episodes),
        seed,
    };
    let mut runs = Vec::new();
    for deterministic in [false, true] {
        let mut router = PolicyRouter {
            policy: policy.clone(),
            name: if deterministic { "ppo (greedy)" } else { "ppo" }.into(),
            deterministic,
            seed,
        };
        let eps = evaluate(cfg, &mut router, &opts)?;
        runs.push((router.name.clone(), eps));
    }
    for name in COMPARE_BASELINES.iter().filter(|n| BASELINES.contains(n)) {
        let mut r = baseline(name, seed).expect("a known baseline");
        let eps = evaluate(cfg, r.as_mut(), &opts)?;
        runs.push((r.name(), eps));
    }
    let summaries: Vec<Summary> = runs
        .iter()
        .map(|(name, eps)| stats::summarize(name, scenario, eps, seed))
        .collect();
    let best = (2..runs.len())
        .max_by(|&a, &b| summaries[a].delivery_ratio.total_cmp(&summaries[b].delivery_ratio))
        .expect("at least one baseline");
    let etx = runs.iter().position(|(n, _)| n == "baseline:etx").unwrap_or(best);
    let mut paired = Vec::new();
    for reference in [etx, best] {
        for p in 0..2 {
            paired.push(stats::compare(
                &runs[p].0, &runs[p].1, &runs[reference].0, &runs[reference].1, scenario, seed,
            ));
        }
    }
    Ok(Comparison {
        scenario: scenario.to_string(),
        best_baseline: runs[best].0.clone(),
        summaries,
        paired,
    })
}
