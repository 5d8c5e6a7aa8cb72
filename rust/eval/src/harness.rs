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
    router.reset();
    let mut driver = RouterDriver {
        router,
        before: Vec::new(),
        from: Vec::new(),
    };
    run(cfg, opts, &mut driver).map_err(|e| match e {
        BatchEvalError::Env(e) => e,
        BatchEvalError::Policy(never) => match never {},
    })
}

/// Why [`evaluate_batch`] stopped: the environment, or the policy's own error.
#[derive(Debug)]
pub enum BatchEvalError<E> {
    Env(EnvError),
    Policy(E),
}

impl<E> From<EnvError> for BatchEvalError<E> {
    fn from(e: EnvError) -> Self {
        BatchEvalError::Env(e)
    }
}

/// Like [`evaluate`], for a policy that decides for every environment at once (a Python
/// callable, a batched network): each step `act(obs, mask, actions)` gets the observations
/// `[num_envs × obs_dim]` and masks `[num_envs × num_actions]` (row-major; rows of
/// environments that reset in this step read all-valid, their action is ignored) and writes
/// one slot per environment. A slot outside the mask loses the packet (`invalid_action`),
/// as in the environment. The same packets as [`evaluate`] with the same options.
pub fn evaluate_batch<E>(
    cfg: &EnvConfig,
    opts: &EvalOptions,
    act: &mut dyn FnMut(&[f32], &[i8], &mut [i64]) -> Result<(), E>,
) -> Result<Vec<Episode>, BatchEvalError<E>> {
    run(
        cfg,
        opts,
        &mut BatchDriver {
            act,
            mask: Vec::new(),
        },
    )
}

/// What picks the actions of one step, and what it learns after it.
trait Driver {
    type Error;
    /// Fills `actions` for every environment not `finished` (those reset in this step).
    fn decide(
        &mut self,
        env: &VecEnv,
        finished: &[bool],
        actions: &mut [i64],
    ) -> Result<(), Self::Error>;
    /// After the step.
    fn observe(&mut self, _env: &VecEnv, _finished: &[bool], _actions: &[i64]) {}
}

struct RouterDriver<'a> {
    router: &'a mut dyn Router,
    before: Vec<f32>,
    from: Vec<(usize, usize)>,
}

impl Driver for RouterDriver<'_> {
    type Error = std::convert::Infallible;

    fn decide(
        &mut self,
        env: &VecEnv,
        finished: &[bool],
        actions: &mut [i64],
    ) -> Result<(), Self::Error> {
        let b = env.buffers();
        let (k, d) = (env.max_neighbors(), env.obs_dim());
        let per_twin = env.config().env.envs_per_twin;
        self.before.clear();
        self.from.clear();
        for (i, a) in actions.iter_mut().enumerate() {
            let info = &b.info[i];
            self.before.push(info.latency_ms);
            self.from
                .push((info.node as usize, info.destination as usize));
            *a = if finished[i] {
                0 // ignored: this step resets the environment
            } else {
                self.router
                    .next_hop(i / per_twin, env.twin_of(i), &Decision::of(b, i, d, k))
                    as i64
            };
        }
        Ok(())
    }

    fn observe(&mut self, env: &VecEnv, finished: &[bool], actions: &[i64]) {
        let b = env.buffers();
        let per_twin = env.config().env.envs_per_twin;
        for i in 0..actions.len() {
            if !finished[i] {
                let info = b.info[i];
                let (node, dest) = self.from[i];
                self.router.feedback(
                    i / per_twin,
                    env.twin_of(i),
                    node,
                    actions[i] as usize,
                    dest,
                    &info,
                    info.latency_ms - self.before[i],
                );
            }
        }
    }
}

struct BatchDriver<'a, E> {
    act: &'a mut dyn FnMut(&[f32], &[i8], &mut [i64]) -> Result<(), E>,
    mask: Vec<i8>,
}

impl<E> Driver for BatchDriver<'_, E> {
    type Error = E;

    fn decide(&mut self, env: &VecEnv, finished: &[bool], actions: &mut [i64]) -> Result<(), E> {
        let b = env.buffers();
        let k = env.max_neighbors();
        self.mask.clear();
        self.mask.extend_from_slice(&b.mask);
        for (i, _) in finished.iter().enumerate().filter(|(_, f)| **f) {
            self.mask[i * k..(i + 1) * k].fill(1);
        }
        (self.act)(&b.obs, &self.mask, actions)?;
        for (a, _) in actions.iter_mut().zip(finished).filter(|(_, f)| **f) {
            *a = 0;
        }
        Ok(())
    }
}

/// The evaluation loop every policy shares: quotas per environment, steps until every
/// environment routed its packets, episodes sorted by (environment, episode).
fn run<D: Driver>(
    cfg: &EnvConfig,
    opts: &EvalOptions,
    driver: &mut D,
) -> Result<Vec<Episode>, BatchEvalError<D::Error>> {
    let mut cfg = cfg.clone();
    cfg.env.autoreset_mode = AutoresetMode::NextStep;
    cfg.env.invalid_action = InvalidAction::Lose;
    opts.validate()?;
    let num_envs = opts.num_envs;
    let quota =
        |i: usize| (opts.episodes / num_envs + usize::from(i < opts.episodes % num_envs)) as u64;
    let per_env = quota(0);
    let ttl = cfg.env.ttl as u64;
    let mut env = VecEnv::new(cfg, num_envs)?;
    env.reset(Some(opts.seed))?;
    let mut episodes = Vec::with_capacity(opts.episodes);
    let mut done_count = vec![0u64; num_envs];
    let mut finished = vec![false; num_envs];
    let mut actions = vec![0i64; num_envs];
    let max_steps = per_env * (ttl + 2) + 16;
    for _ in 0..max_steps {
        if done_count.iter().enumerate().all(|(i, &c)| c >= quota(i)) {
            break;
        }
        driver
            .decide(&env, &finished, &mut actions)
            .map_err(BatchEvalError::Policy)?;
        let stepped_from_finished = finished.clone();
        env.step(&actions)?;
        driver.observe(&env, &stepped_from_finished, &actions);
        let b = env.buffers();
        for i in 0..num_envs {
            let info = b.info[i];
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
