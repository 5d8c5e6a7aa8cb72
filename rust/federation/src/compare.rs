//! The global model next to a centrally trained one and the routers to beat, paired on the
//! same packets of the whole mesh's traffic.

use meshrl_env::EnvConfig;
use meshrl_eval::stats::{self, Paired, Summary};
use meshrl_eval::{baseline, evaluate, EvalOptions};
use meshrl_ppo::{own_load_envs, Policy, PolicyRouter, Trainer};
use serde::Serialize;

use crate::config::FederationConfig;
use crate::worker::mix_seed;
use crate::FederationError;

/// Summaries of each policy and baseline, and every one paired against the first policy.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyComparison {
    pub summaries: Vec<Summary>,
    /// (first policy − each other entry), paired on the same packets.
    pub paired: Vec<Paired>,
}

/// Routes `episodes` packets of `env` with each policy (greedy, as nodes forward) and each
/// named baseline, on the same packets and mesh evolution (`seed`).
pub fn evaluate_policies(
    env: &EnvConfig,
    policies: &[(String, Policy)],
    baselines: &[&str],
    episodes: usize,
    seed: u64,
) -> Result<PolicyComparison, FederationError> {
    let opts = EvalOptions {
        episodes,
        num_envs: own_load_envs(env, episodes),
        seed,
    };
    let mut runs = Vec::new();
    for (name, policy) in policies {
        let mut router = PolicyRouter {
            policy: policy.clone(),
            name: name.clone(),
            deterministic: true,
            seed,
        };
        runs.push((name.clone(), evaluate(env, &mut router, &opts)?));
    }
    for name in baselines {
        let mut r = baseline(name, seed)
            .ok_or_else(|| FederationError::input("baseline", format!("unknown baseline `{name}`")))?;
        runs.push((r.name(), evaluate(env, r.as_mut(), &opts)?));
    }
    let summaries = runs.iter().map(|(n, eps)| stats::summarize(n, "federation", eps, seed)).collect();
    let paired = runs
        .iter()
        .skip(1)
        .map(|(n, eps)| stats::compare(&runs[0].0, &runs[0].1, n, eps, "federation", seed))
        .collect();
    Ok(PolicyComparison { summaries, paired })
}

/// The central baseline: one trainer on the whole mesh's traffic with a round's batch
/// (`clients_per_round` workers' environments) for `total_samples` steps, the samples the
/// federation aggregated.
pub fn train_central(cfg: &FederationConfig, total_samples: u64) -> Result<Trainer, FederationError> {
    let k = cfg.federation.clients_per_round;
    let mut env = cfg.env.clone();
    env.env.envs_per_twin = cfg.ppo.num_envs;
    let ppo = meshrl_ppo::PpoConfig {
        num_envs: cfg.ppo.num_envs * k,
        minibatch_size: cfg.ppo.minibatch_size * k,
        anneal_lr: false,
        seed: mix_seed(&[cfg.federation.seed, 0xce47]),
        ..cfg.ppo.clone()
    };
    let mut trainer = Trainer::new(env, ppo)?;
    trainer.train(total_samples.max(1), |_| true)?;
    Ok(trainer)
}
