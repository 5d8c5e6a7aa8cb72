//! The trainer: a [`Learner`] and the routing environments it learns on, read top to bottom
//! like CleanRL's `ppo.py`: rollout on the native vector environments → GAE and minibatch
//! epochs (in the learner) → metrics. Checkpoints are in `checkpoint.rs`.

use std::time::Instant;

use meshrl_env::{AutoresetMode, EnvConfig, Outcome, VecEnv};

use crate::config::PpoConfig;
use crate::learner::{Learner, UpdateStats};
use crate::policy::PolicySpec;
use crate::rollout::{Finished, Rollout};
use crate::PpoError;

/// One environment config of a training mixture and how many of the trainer's environments
/// run it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnvShare {
    pub env: EnvConfig,
    pub num_envs: usize,
}

/// Rewrites a step's rewards (one per environment) before the learner sees them, like
/// Gymnasium's `TransformReward`; a federation's reward-poisoning attack is one.
pub type RewardTransform = Box<dyn Fn(&mut [f32]) + Send + Sync>;

/// Trains a [`Learner`] on one routing environment config or a mixture of them.
pub struct Trainer {
    pub learner: Learner,
    mix: Vec<EnvShare>,
    envs: Vec<VecEnv>,
    reward_transform: Option<RewardTransform>,
    /// Draw new meshes every this many updates (0: only at checkpoint boundaries).
    reseed_every: u64,
    updates_done: u64,
}

/// The seed of mixture member `member`'s environments at update `update` of a run seeded
/// `seed`: a hash, so training meshes never coincide with the small seeds evaluation uses.
fn env_seed(seed: u64, update: u64, member: usize) -> u64 {
    let mut z = seed ^ update.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xc0ff_ee00_5eed;
    z ^= (member as u64).wrapping_mul(0xd1b5_4a32_d192_ed03);
    meshrl_env::twin::splitmix64(z)
}

impl Trainer {
    /// A trainer on `env_cfg` with `cfg.num_envs` environments.
    pub fn new(env_cfg: EnvConfig, cfg: PpoConfig) -> Result<Trainer, PpoError> {
        let share = EnvShare {
            env: env_cfg,
            num_envs: cfg.num_envs,
        };
        Trainer::with_mix(vec![share], cfg, 0)
    }

    /// A trainer on a mixture of environment configs (all with the same neighbour slots and
    /// feature set); `cfg.num_envs` must be the sum of the shares. Every environment runs
    /// SAME_STEP autoreset (bootstrapping on truncation needs it) and shapes rewards with the
    /// learner's `gamma`. New meshes are drawn every `reseed_every` updates (0: never).
    pub fn with_mix(mix: Vec<EnvShare>, cfg: PpoConfig, reseed_every: u64) -> Result<Trainer, PpoError> {
        cfg.validate()?;
        let first = mix
            .first()
            .ok_or_else(|| PpoError::config("env", "a training mixture needs at least one environment"))?;
        let total: usize = mix.iter().map(|s| s.num_envs).sum();
        if total != cfg.num_envs {
            return Err(PpoError::config(
                "ppo.num_envs",
                format!("is {}, the mixture's shares add up to {total}", cfg.num_envs),
            ));
        }
        let (k, features) = (first.env.topology.max_neighbors, first.env.env.features);
        let mut mix = mix;
        let mut envs = Vec::with_capacity(mix.len());
        for (j, share) in mix.iter_mut().enumerate() {
            let e = &mut share.env;
            if (e.topology.max_neighbors, e.env.features) != (k, features) {
                return Err(PpoError::config(
                    "env",
                    format!(
                        "mixture member {j} has {} slots and `{}` features, member 0 has {k} and `{}`: \
                         all members must share them",
                        e.topology.max_neighbors,
                        e.env.features.name(),
                        features.name()
                    ),
                ));
            }
            e.env.autoreset_mode = AutoresetMode::SameStep;
            e.reward.shaping_gamma = cfg.gamma;
            let mut env = VecEnv::new(e.clone(), share.num_envs)?;
            env.reset(Some(env_seed(cfg.seed, 0, j)))?;
            envs.push(env);
        }
        let spec = PolicySpec {
            obs_dim: envs[0].obs_dim(),
            num_actions: k,
            hidden: cfg.hidden.clone(),
            activation: cfg.activation,
            architecture: cfg.architecture,
            per_slot: features.per_slot(),
            context: features.context(),
            feature_set: Some(features.name().to_string()),
        };
        Ok(Trainer {
            learner: Learner::new(spec, cfg)?,
            mix,
            envs,
            reward_transform: None,
            reseed_every,
            updates_done: 0,
        })
    }

    /// The first environment config (with SAME_STEP autoreset), the one evaluation defaults to.
    pub fn env_config(&self) -> &EnvConfig {
        &self.mix[0].env
    }

    /// The training mixture.
    pub fn mix(&self) -> &[EnvShare] {
        &self.mix
    }

    pub fn reseed_every(&self) -> u64 {
        self.reseed_every
    }

    /// Updates done in the current run.
    pub fn updates_done(&self) -> u64 {
        self.updates_done
    }

    pub(crate) fn set_updates_done(&mut self, n: u64) {
        self.updates_done = n;
    }

    /// The current policy, for acting only.
    pub fn policy(&self) -> crate::Policy {
        self.learner.policy()
    }

    /// Runs `total_steps` environment steps of training (the learning rate annealed over them);
    /// `callback` sees each update's stats and may stop training by returning `false`.
    pub fn train(
        &mut self,
        total_steps: u64,
        callback: impl FnMut(&UpdateStats) -> bool,
    ) -> Result<UpdateStats, PpoError> {
        self.start_run();
        self.train_run(total_steps, 0, None, callback)
    }

    /// Continues a run of `total_steps` from the updates already done (0 for a new trainer,
    /// the checkpoint's count after [`Trainer::resume`]). Every `checkpoint_every` updates
    /// (0: never) it writes a checkpoint to `checkpoint` (when given) and reseeds the
    /// environments, so a run resumed from any checkpoint ends exactly as an uninterrupted one.
    pub fn train_run(
        &mut self,
        total_steps: u64,
        checkpoint_every: u64,
        checkpoint: Option<&std::path::Path>,
        mut callback: impl FnMut(&UpdateStats) -> bool,
    ) -> Result<UpdateStats, PpoError> {
        let mut last = UpdateStats::default();
        while let Some(stats) = self.next_update(total_steps, checkpoint_every, checkpoint)? {
            last = stats;
            if !callback(&last) {
                break;
            }
        }
        Ok(last)
    }

    /// Starts a new run: the next [`Trainer::next_update`] is its first update.
    pub fn start_run(&mut self) {
        self.updates_done = 0;
    }

    /// One update of a run of `total_steps` (what [`Trainer::train_run`] does per update:
    /// the learning rate annealed over the run, checkpoints, reseeding); `None` once the run's
    /// updates are all done. Lets a caller act between updates without a callback.
    pub fn next_update(
        &mut self,
        total_steps: u64,
        checkpoint_every: u64,
        checkpoint: Option<&std::path::Path>,
    ) -> Result<Option<UpdateStats>, PpoError> {
        let batch = self.learner.config().batch_size() as u64;
        let num_updates = total_steps.div_ceil(batch).max(1);
        if self.updates_done >= num_updates {
            return Ok(None);
        }
        let cfg = self.learner.config();
        let frac = 1.0 - self.updates_done as f64 / num_updates as f64;
        let lr = cfg.learning_rate * if cfg.anneal_lr { frac } else { 1.0 };
        let stats = self.update(lr)?;
        self.updates_done += 1;
        let boundary = |every: u64| every > 0 && self.updates_done % every == 0;
        let at_checkpoint = boundary(checkpoint_every) && self.updates_done < num_updates;
        if at_checkpoint {
            if let Some(path) = checkpoint {
                self.save_checkpoint(path, total_steps, checkpoint_every)?;
            }
        }
        if at_checkpoint || boundary(self.reseed_every) {
            self.reseed_env(self.updates_done)?;
        }
        Ok(Some(stats))
    }

    /// Rewrites every step's rewards with `transform` from now on (`None`: as the
    /// environment pays them).
    pub fn set_reward_transform(&mut self, transform: Option<RewardTransform>) {
        self.reward_transform = transform;
    }

    /// Resets every environment with seeds derived from the run's seed and `update`.
    pub fn reseed_env(&mut self, update: u64) -> Result<(), PpoError> {
        let seed = self.learner.config().seed;
        for (j, env) in self.envs.iter_mut().enumerate() {
            env.reset(Some(env_seed(seed, update, j)))?;
        }
        Ok(())
    }

    /// One rollout on the environments and one PPO update at learning rate `lr`.
    pub fn update(&mut self, lr: f64) -> Result<UpdateStats, PpoError> {
        let start = Instant::now();
        let mut stats = UpdateStats {
            learning_rate: lr,
            ..Default::default()
        };
        let (rollout, last_values) = self.collect(&mut stats)?;
        self.learner.learn(&rollout, &last_values, lr, &mut stats)?;
        stats.global_step = self.learner.global_step();
        stats.sps = rollout.actions.len() as f64 / start.elapsed().as_secs_f64();
        self.learner.episodes().summarize(&mut stats);
        Ok(stats)
    }

    /// The observations and masks of every environment, in mixture order.
    fn observe(&self, final_rows: bool) -> (Vec<f32>, Vec<i8>) {
        let (mut obs, mut mask) = (Vec::new(), Vec::new());
        for env in &self.envs {
            let b = env.buffers();
            if final_rows {
                obs.extend_from_slice(&b.final_obs);
                mask.extend_from_slice(&b.final_mask);
            } else {
                obs.extend_from_slice(&b.obs);
                mask.extend_from_slice(&b.mask);
            }
        }
        (obs, mask)
    }

    /// `num_steps` steps of every environment with the current policy (sampled actions).
    /// Returns the rollout and the values of the observations after its last step.
    pub fn collect(&mut self, stats: &mut UpdateStats) -> Result<(Rollout, Vec<f32>), PpoError> {
        let cfg = self.learner.config();
        let (n, t_max, gamma) = (cfg.num_envs, cfg.num_steps, cfg.gamma);
        let d = self.learner.spec().obs_dim;
        let mut r = Rollout::new(n);
        for _ in 0..t_max {
            // Rollout: act on every environment's observation.
            let (obs, mask) = self.observe(false);
            let t0 = Instant::now();
            let (logits, values) = self.learner.infer_unchecked(&obs, &mask);
            let (actions, logps) = self.learner.sample_unchecked(&logits, &mask);
            stats.inference_s += t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let mut offset = 0;
            for env in &mut self.envs {
                let m = env.num_envs();
                env.step(&actions[offset..offset + m])?;
                offset += m;
            }
            stats.env_s += t1.elapsed().as_secs_f64();

            // Rewards; truncation is not termination: bootstrap from the final observation.
            let mut rewards = Vec::with_capacity(n);
            let mut dones = Vec::with_capacity(n);
            let mut truncated = Vec::new();
            for env in &self.envs {
                let b = env.buffers();
                for i in 0..env.num_envs() {
                    let row = rewards.len();
                    rewards.push(b.reward[i]);
                    let done = b.terminated[i] || b.truncated[i];
                    dones.push(done as u8 as f32);
                    if b.truncated[i] {
                        truncated.push(row);
                    }
                    if done {
                        let fi = b.final_info[i];
                        self.learner.record(Finished {
                            ret: fi.episode_return,
                            delivered: fi.outcome == Outcome::Delivered,
                            latency_ms: fi.latency_ms,
                            hops: fi.path_length,
                        });
                    }
                }
            }
            if let Some(transform) = &self.reward_transform {
                transform(&mut rewards);
            }
            if !truncated.is_empty() {
                let (fobs, fmask) = self.observe(true);
                let k = self.learner.spec().num_actions;
                let rows: Vec<f32> =
                    truncated.iter().flat_map(|&i| fobs[i * d..(i + 1) * d].iter().copied()).collect();
                let masks: Vec<i8> =
                    truncated.iter().flat_map(|&i| fmask[i * k..(i + 1) * k].iter().copied()).collect();
                let t2 = Instant::now();
                let (_, vf) = self.learner.infer_unchecked(&rows, &masks);
                stats.inference_s += t2.elapsed().as_secs_f64();
                for (j, &i) in truncated.iter().enumerate() {
                    rewards[i] += gamma * vf[j];
                }
            }
            r.obs.extend_from_slice(&obs);
            r.masks.extend_from_slice(&mask);
            r.actions.extend_from_slice(&actions);
            r.logps.extend_from_slice(&logps);
            r.values.extend_from_slice(&values);
            r.rewards.extend_from_slice(&rewards);
            r.dones.extend_from_slice(&dones);
            self.learner.advance(n as u64);
        }
        let (obs, mask) = self.observe(false);
        let (_, last_values) = self.learner.infer_unchecked(&obs, &mask);
        Ok((r, last_values))
    }
}
