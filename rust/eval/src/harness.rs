//! Runs a router over the packets of a scenario and records every episode.
//!
//! Common random numbers: the twin's own evolution (churn, degradation, mobility, background
//! traffic, watchdog observations) draws from the twin's RNG, which no routing choice touches,
//! and episode `j` of environment `i` draws its source, destination and every hop's losses from
//! a stream seeded by (`seed + i`, `j`). Two policies therefore route the same packets over the
//! same mesh evolution (queues aside, which their own traffic fills), and episodes pair up by
//! (environment, episode).

use meshrl_env::{AutoresetMode, EnvConfig, EnvError, InvalidAction, Outcome, VecEnv};
use serde::Serialize;

use crate::baselines::{Decision, Router};

/// One finished packet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Episode {
    pub env: u32,
    pub episode: u64,
    pub outcome: u8,
    /// `LossCause as u8` when lost, else 0.
    pub loss_cause: u8,
    /// End-to-end latency, ms.
    pub latency_ms: f32,
    pub hops: u32,
    pub shortest_hops: u32,
    pub source: u32,
    pub destination: u32,
}

impl Episode {
    pub fn delivered(&self) -> bool {
        self.outcome == Outcome::Delivered as u8
    }
}

/// How many packets, over how many parallel environments, from which seed.
#[derive(Clone, Copy, Debug)]
pub struct EvalOptions {
    /// Packets to route in total (1 ..= [`MAX_EPISODES`]); environment `i` routes
    /// `episodes / num_envs` of them, one more when `i < episodes % num_envs`.
    pub episodes: usize,
    /// Environments stepped in parallel (1 ..= `episodes`).
    pub num_envs: usize,
    pub seed: u64,
}

/// Most packets one evaluation routes per policy and scenario.
pub const MAX_EPISODES: usize = 10_000_000;

impl EvalOptions {
    /// Checks the counts; the error names the option.
    pub fn validate(&self) -> Result<(), EnvError> {
        if !(1..=MAX_EPISODES).contains(&self.episodes) {
            return Err(EnvError::invalid(
                "episodes",
                format!("must be in 1..={MAX_EPISODES}, got {}", self.episodes),
            ));
        }
        if !(1..=self.episodes).contains(&self.num_envs) {
            return Err(EnvError::invalid(
                "num_envs",
                format!(
                    "must be in 1..={} (at most one environment per packet), got {}",
                    self.episodes, self.num_envs
                ),
            ));
        }
        Ok(())
    }
}

/// Routes `opts.episodes` packets of scenario `cfg` with `router`; episodes come back sorted
/// by (environment, episode), the pairing key across policies.
pub fn evaluate(
    cfg: &EnvConfig,
    router: &mut dyn Router,
    opts: &EvalOptions,
) -> Result<Vec<Episode>, EnvError> {
    let mut cfg = cfg.clone();
    cfg.env.autoreset_mode = AutoresetMode::NextStep;
    cfg.env.invalid_action = InvalidAction::Lose;
    opts.validate()?;
    let num_envs = opts.num_envs;
    let quota = |i: usize| (opts.episodes / num_envs + usize::from(i < opts.episodes % num_envs)) as u64;
    let per_env = quota(0);
    let per_twin = cfg.env.envs_per_twin;
    let ttl = cfg.env.ttl as u64;
    let mut env = VecEnv::new(cfg, num_envs)?;
    env.reset(Some(opts.seed))?;
    router.reset();
    let (k, d) = (env.max_neighbors(), env.obs_dim());
    let mut episodes = Vec::with_capacity(opts.episodes);
    let mut done_count = vec![0u64; num_envs];
    let mut finished = vec![false; num_envs];
    let mut actions = vec![0i64; num_envs];
    let mut before = vec![0f32; num_envs];
    let max_steps = per_env * (ttl + 2) + 16;
    for _ in 0..max_steps {
        if done_count.iter().enumerate().all(|(i, &c)| c >= quota(i)) {
            break;
        }
        {
            let b = env.buffers();
            for i in 0..num_envs {
                let info = &b.info[i];
                before[i] = info.latency_ms;
                actions[i] = if finished[i] {
                    0 // ignored: this step resets the environment
                } else {
                    router.next_hop(i / per_twin, env.twin_of(i), &Decision::of(b, i, d, k)) as i64
                };
            }
        }
        let from: Vec<(usize, usize)> = env
            .buffers()
            .info
            .iter()
            .map(|i| (i.node as usize, i.destination as usize))
            .collect();
        env.step(&actions)?;
        let b = env.buffers();
        for i in 0..num_envs {
            let info = b.info[i];
            if !finished[i] {
                let (node, dest) = from[i];
                router.feedback(
                    i / per_twin,
                    env.twin_of(i),
                    node,
                    actions[i] as usize,
                    dest,
                    &info,
                    info.latency_ms - before[i],
                );
            }
            finished[i] = b.terminated[i] || b.truncated[i];
            if finished[i] && info.episode < quota(i) {
                done_count[i] += 1;
                episodes.push(Episode {
                    env: i as u32,
                    episode: info.episode,
                    outcome: info.outcome as u8,
                    loss_cause: info.loss_cause,
                    latency_ms: info.latency_ms,
                    hops: info.path_length,
                    shortest_hops: info.shortest_hops,
                    source: info.source,
                    destination: info.destination,
                });
            }
        }
    }
    episodes.sort_by_key(|e| (e.env, e.episode));
    Ok(episodes)
}
