//! The PPO trainer, read top to bottom like CleanRL's `ppo.py`: rollout on the native vector
//! environment → GAE → shuffled minibatch epochs → metrics.

use std::collections::VecDeque;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use meshrl_env::{AutoresetMode, EnvConfig, Outcome, VecEnv};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::config::PpoConfig;
use crate::policy::{log_probs, ActorCritic};
use crate::PpoError;

/// Metrics of one update, named as CleanRL logs them.
#[derive(Clone, Debug, Default)]
pub struct UpdateStats {
    pub global_step: u64,
    /// `charts/learning_rate`
    pub learning_rate: f64,
    /// `losses/policy_loss`, `losses/value_loss`, `losses/entropy`
    pub policy_loss: f32,
    pub value_loss: f32,
    pub entropy: f32,
    /// `losses/approx_kl` (the `(r − 1) − log r` estimator), `losses/clipfrac`
    pub approx_kl: f32,
    pub clipfrac: f32,
    /// `losses/explained_variance`
    pub explained_variance: f32,
    /// `charts/SPS`
    pub sps: f64,
    /// `charts/episodic_return` over the last 100 finished episodes
    pub episodic_return: f32,
    /// `routing/delivery_ratio`, `routing/latency_ms` (delivered), `routing/hops` (delivered)
    pub delivery_ratio: f32,
    pub latency_ms: f32,
    pub hops: f32,
    /// Seconds spent stepping the environment, in policy inference, and in the update.
    pub env_s: f64,
    pub inference_s: f64,
    pub update_s: f64,
}

#[derive(Clone, Copy)]
pub(crate) struct Finished {
    pub(crate) ret: f32,
    pub(crate) delivered: bool,
    pub(crate) latency_ms: f32,
    pub(crate) hops: u32,
}

/// Transitions of one rollout, time-major (`steps × num_envs`): what a PPO update learns from.
/// Filled by the trainer's own rollouts on the Rust environment, or step by step with
/// [`Trainer::store_transition`] from any other environment.
#[derive(Clone, Debug, Default)]
pub struct Rollout {
    pub num_envs: usize,
    /// `[steps × num_envs × obs_dim]`
    pub obs: Vec<f32>,
    /// `[steps × num_envs × num_actions]`, 1 = valid
    pub masks: Vec<i8>,
    pub actions: Vec<i64>,
    /// Log-probabilities of `actions` under the policy that chose them.
    pub logps: Vec<f32>,
    /// Critic values of `obs`.
    pub values: Vec<f32>,
    /// Rewards, with `γ·V(final obs)` already added where an episode was truncated.
    pub rewards: Vec<f32>,
    /// 1 where the episode ended (terminated or truncated) at this step.
    pub dones: Vec<f32>,
}

impl Rollout {
    /// Time steps stored.
    pub fn steps(&self) -> usize {
        if self.num_envs == 0 {
            0
        } else {
            self.actions.len() / self.num_envs
        }
    }

    fn clear(&mut self) {
        let n = self.num_envs;
        *self = Rollout {
            num_envs: n,
            ..Default::default()
        };
    }
}

/// Trains an [`ActorCritic`] on the routing environment.
pub struct Trainer {
    pub cfg: PpoConfig,
    env: Option<VecEnv>,
    env_cfg: Option<EnvConfig>,
    buffer: Rollout,
    updates_done: u64,
    device: Device,
    device_name: &'static str,
    model: ActorCritic,
    optim: ModuleOptimizer,
    rng: Xoshiro256PlusPlus,
    global_step: u64,
    recent: VecDeque<Finished>,
    obs_dim: usize,
    k: usize,
}

/// Squared global gradient norm over every parameter.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    sq: f64,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sq += g.powi_scalar(2).sum().into_scalar::<f32>() as f64;
        }
    }
}

/// Scales every gradient by one factor.
struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    scale: f32,
}

impl ModuleVisitor for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.scale));
        }
    }
}

/// Forces every parameter's lazy initialization now.
pub(crate) struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// burn's device seed may be process-wide and parameters initialize lazily, so two trainers
/// built at once could interleave their draws. Seeding and initialization happen under this lock.
pub(crate) static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The environment seed of a run's checkpoint boundary `update`.
fn meshrl_twin_seed(seed: u64, update: u64) -> u64 {
    let mut z = seed ^ update.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xc0ff_ee00_5eed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Samples from masked logits on the CPU; returns (actions, log-probabilities).
pub(crate) fn sample(
    logits: &[f32],
    mask: &[i8],
    k: usize,
    rng: &mut Xoshiro256PlusPlus,
    deterministic: bool,
) -> (Vec<i64>, Vec<f32>) {
    let n = mask.len() / k;
    let mut actions = Vec::with_capacity(n);
    let mut logps = Vec::with_capacity(n);
    for i in 0..n {
        let (row, m) = (&logits[i * k..(i + 1) * k], &mask[i * k..(i + 1) * k]);
        let max = (0..k)
            .filter(|&s| m[s] != 0)
            .map(|s| row[s])
            .fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            // No valid slot (the environment resets this one anyway).
            actions.push(0);
            logps.push(0.0);
            continue;
        }
        let total: f32 = (0..k)
            .filter(|&s| m[s] != 0)
            .map(|s| (row[s] - max).exp())
            .sum();
        let a = if deterministic {
            (0..k)
                .filter(|&s| m[s] != 0)
                .fold(None, |best: Option<usize>, s| match best {
                    Some(b) if row[b] >= row[s] => Some(b),
                    _ => Some(s),
                })
                .unwrap_or(0)
        } else {
            let mut u = rng.random::<f32>() * total;
            let mut pick = (0..k).rev().find(|&s| m[s] != 0).unwrap_or(0);
            for s in (0..k).filter(|&s| m[s] != 0) {
                u -= (row[s] - max).exp();
                if u <= 0.0 {
                    pick = s;
                    break;
                }
            }
            pick
        };
        actions.push(a as i64);
        logps.push(row[a] - max - total.ln());
    }
    (actions, logps)
}

impl Trainer {
    /// A trainer on `env_cfg` (its autoreset mode is set to SAME_STEP, which bootstrapping on
    /// truncation needs) with `cfg.num_envs` environments, on the device `cfg.device` picks.
    pub fn new(env_cfg: EnvConfig, cfg: PpoConfig) -> Result<Trainer, PpoError> {
        cfg.validate()?;
        let mut env_cfg = env_cfg;
        env_cfg.env.autoreset_mode = AutoresetMode::SameStep;
        let mut env = VecEnv::new(env_cfg.clone(), cfg.num_envs)?;
        env.reset(Some(cfg.seed))?;
        let (obs_dim, k) = (env.obs_dim(), env.max_neighbors());
        Trainer::build(obs_dim, k, cfg, Some((env, env_cfg)))
    }

    /// The model (seeded, materialized under [`INIT_LOCK`]), optimizer and RNG for a validated
    /// config, with or without a Rust environment.
    fn build(
        obs_dim: usize,
        k: usize,
        cfg: PpoConfig,
        env: Option<(VecEnv, EnvConfig)>,
    ) -> Result<Trainer, PpoError> {
        let (device, device_name) = crate::device::select(cfg.device)?;
        let device = device.autodiff();
        let model = {
            let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            device.seed(cfg.seed);
            let model = ActorCritic::new(obs_dim, k, &cfg.hidden, &device);
            model.visit(&mut Materialize);
            model
        };
        let (env, env_cfg) = env.unzip();
        Ok(Trainer {
            buffer: Rollout {
                num_envs: cfg.num_envs,
                ..Default::default()
            },
            optim: AdamConfig::new().with_epsilon(1e-5).init(),
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x5050),
            cfg,
            env,
            env_cfg,
            updates_done: 0,
            device,
            device_name,
            model,
            global_step: 0,
            recent: VecDeque::new(),
            obs_dim,
            k,
        })
    }

    /// The backend training runs on: `flex` (CPU) or `wgpu`.
    pub fn device_name(&self) -> &'static str {
        self.device_name
    }

    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    pub fn model(&self) -> &ActorCritic {
        &self.model
    }

    fn tensor2(&self, data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(data, [rows, cols]), device)
    }

    /// The current policy, for acting only.
    pub fn policy(&self) -> crate::Policy {
        crate::Policy {
            model: self.model.valid(),
            activation: self.cfg.activation,
            obs_dim: self.obs_dim,
            k: self.k,
            hidden: self.cfg.hidden.clone(),
        }
    }

    /// Runs `total_steps` environment steps of training (the learning rate annealed over them);
    /// `callback` sees each update's stats and may stop training by returning `false`.
    pub fn train(
        &mut self,
        total_steps: u64,
        callback: impl FnMut(&UpdateStats) -> bool,
    ) -> Result<UpdateStats, PpoError> {
        self.updates_done = 0;
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
        let batch = self.cfg.batch_size() as u64;
        let num_updates = total_steps.div_ceil(batch).max(1);
        let mut last = UpdateStats::default();
        while self.updates_done < num_updates {
            let frac = 1.0 - self.updates_done as f64 / num_updates as f64;
            let lr = if self.cfg.anneal_lr {
                self.cfg.learning_rate * frac
            } else {
                self.cfg.learning_rate
            };
            last = self.update(lr)?;
            self.updates_done += 1;
            if checkpoint_every > 0
                && self.updates_done % checkpoint_every == 0
                && self.updates_done < num_updates
            {
                if let Some(path) = checkpoint {
                    self.save_checkpoint(path, total_steps, checkpoint_every)?;
                }
                self.reseed_env(self.updates_done)?;
            }
            if !callback(&last) {
                break;
            }
        }
        Ok(last)
    }

    /// Updates done in the current run.
    pub fn updates_done(&self) -> u64 {
        self.updates_done
    }

    /// Resets the environments with a seed derived from the run's seed and `update`.
    pub(crate) fn reseed_env(&mut self, update: u64) -> Result<(), PpoError> {
        let seed = meshrl_twin_seed(self.cfg.seed, update);
        if let Some(env) = self.env.as_mut() {
            env.reset(Some(seed))?;
        }
        Ok(())
    }

    /// The environment config this trainer runs (with SAME_STEP autoreset), if it has one.
    pub fn env_config(&self) -> Option<&EnvConfig> {
        self.env_cfg.as_ref()
    }

    pub(crate) fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    pub(crate) fn rng_state(&self) -> &Xoshiro256PlusPlus {
        &self.rng
    }

    pub(crate) fn recent_episodes(&self) -> impl Iterator<Item = &Finished> {
        self.recent.iter()
    }

    /// Puts back a checkpoint's state (see `checkpoint.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        &mut self,
        weights: &[f32],
        param_ids: &[u64],
        optimizer: burn::optim::OptimizerRecord,
        rng: Xoshiro256PlusPlus,
        updates_done: u64,
        global_step: u64,
        recent: VecDeque<Finished>,
    ) -> Result<(), PpoError> {
        self.set_weights(weights)?;
        let model = std::mem::replace(
            &mut self.model,
            ActorCritic::new(1, 1, &[1], &Device::flex()),
        );
        self.model = crate::weights::set_param_ids(model, param_ids)?;
        let optim = std::mem::replace(&mut self.optim, AdamConfig::new().init());
        self.optim = optim.load_record(optimizer);
        self.rng = rng;
        self.updates_done = updates_done;
        self.global_step = global_step;
        self.recent = recent;
        Ok(())
    }

    /// One rollout on the Rust environment and one PPO update at learning rate `lr`.
    pub fn update(&mut self, lr: f64) -> Result<UpdateStats, PpoError> {
        let start = Instant::now();
        let mut stats = UpdateStats {
            learning_rate: lr,
            ..Default::default()
        };
        let (rollout, last_values) = self.collect(&mut stats)?;
        self.learn(&rollout, &last_values, lr, &mut stats)?;
        stats.global_step = self.global_step;
        stats.sps = rollout.actions.len() as f64 / start.elapsed().as_secs_f64();
        self.episode_stats(&mut stats);
        Ok(stats)
    }

    /// `num_steps` steps of every environment with the current policy (sampled actions).
    /// Returns the rollout and the values of the observations after its last step.
    pub fn collect(&mut self, stats: &mut UpdateStats) -> Result<(Rollout, Vec<f32>), PpoError> {
        let (n, t_max, d, k) = (self.cfg.num_envs, self.cfg.num_steps, self.obs_dim, self.k);
        let (gamma, act) = (self.cfg.gamma, self.cfg.activation);
        let policy = self.model.valid();
        let env = self.env.as_mut().ok_or_else(|| PpoError::InvalidConfig {
            field: "env".into(),
            reason: "this trainer has no Rust environment: use store_transition/update_from_buffer"
                .into(),
        })?;
        let mut r = Rollout {
            num_envs: n,
            ..Default::default()
        };
        for _ in 0..t_max {
            let b = env.buffers();
            r.obs.extend_from_slice(&b.obs);
            r.masks.extend_from_slice(&b.mask);
            let t0 = Instant::now();
            let (logits, v) = crate::inference::infer(&policy, act, &b.obs, d);
            let (a, lp) = sample(&logits, &b.mask, k, &mut self.rng, false);
            stats.inference_s += t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            env.step(&a)?;
            stats.env_s += t1.elapsed().as_secs_f64();
            let b = env.buffers();
            let mut rew = b.reward.clone();
            // Truncation is not termination: bootstrap from the final observation's value.
            let truncated: Vec<usize> = (0..n).filter(|&i| b.truncated[i]).collect();
            if !truncated.is_empty() {
                let rows: Vec<f32> = truncated
                    .iter()
                    .flat_map(|&i| b.final_obs[i * d..(i + 1) * d].iter().copied())
                    .collect();
                let t2 = Instant::now();
                let (_, vf) = crate::inference::infer(&policy, act, &rows, d);
                stats.inference_s += t2.elapsed().as_secs_f64();
                for (j, &i) in truncated.iter().enumerate() {
                    rew[i] += gamma * vf[j];
                }
            }
            for i in 0..n {
                let done = b.terminated[i] || b.truncated[i];
                r.dones.push(done as u8 as f32);
                if done {
                    let fi = b.final_info[i];
                    self.recent.push_back(Finished {
                        ret: fi.episode_return,
                        delivered: fi.outcome == Outcome::Delivered,
                        latency_ms: fi.latency_ms,
                        hops: fi.path_length,
                    });
                    if self.recent.len() > 1000 {
                        self.recent.pop_front();
                    }
                }
            }
            r.rewards.extend_from_slice(&rew);
            r.actions.extend_from_slice(&a);
            r.logps.extend_from_slice(&lp);
            r.values.extend_from_slice(&v);
            self.global_step += n as u64;
        }
        let (_, last_values) = crate::inference::infer(&policy, act, &env.buffers().obs, d);
        Ok((r, last_values))
    }

    /// One PPO update (GAE, then shuffled minibatch epochs) on `rollout`, whose observations
    /// after the last step have values `last_values`. Losses go to `stats`.
    pub fn learn(
        &mut self,
        rollout: &Rollout,
        last_values: &[f32],
        lr: f64,
        stats: &mut UpdateStats,
    ) -> Result<(), PpoError> {
        let (n, d, k) = (rollout.num_envs, self.obs_dim, self.k);
        let t_max = rollout.steps();
        let total = t_max * n;
        if n == 0
            || t_max == 0
            || rollout.obs.len() != total * d
            || rollout.masks.len() != total * k
            || [rollout.logps.len(), rollout.values.len(), rollout.rewards.len(), rollout.dones.len()]
                .iter()
                .any(|&l| l != total)
            || last_values.len() != n
        {
            return Err(PpoError::InvalidConfig {
                field: "rollout".into(),
                reason: format!(
                    "inconsistent lengths: {t_max} steps × {n} envs need obs {} (got {}), masks {} \
                     (got {}), {total} actions/logps/values/rewards/dones and {n} last values \
                     (got {})",
                    total * d,
                    rollout.obs.len(),
                    total * k,
                    rollout.masks.len(),
                    last_values.len()
                ),
            });
        }
        if let Some(&a) = rollout.actions.iter().find(|&&a| a < 0 || a as usize >= k) {
            return Err(PpoError::InvalidConfig {
                field: "rollout.actions".into(),
                reason: format!("action {a} is outside 0..{k}"),
            });
        }
        let (gamma, lambda) = (self.cfg.gamma, self.cfg.gae_lambda);
        let (obs, masks, actions, logps, values, rewards, dones) = (
            &rollout.obs,
            &rollout.masks,
            &rollout.actions,
            &rollout.logps,
            &rollout.values,
            &rollout.rewards,
            &rollout.dones,
        );

        // GAE.
        let mut adv = vec![0f32; total];
        let mut next_adv = vec![0f32; n];
        for t in (0..t_max).rev() {
            for i in 0..n {
                let idx = t * n + i;
                let nonterminal = 1.0 - dones[idx];
                let next_value = if t + 1 == t_max {
                    last_values[i]
                } else {
                    values[idx + n]
                };
                let delta = rewards[idx] + gamma * next_value * nonterminal - values[idx];
                next_adv[i] = delta + gamma * lambda * nonterminal * next_adv[i];
                adv[idx] = next_adv[i];
            }
        }
        let returns: Vec<f32> = adv.iter().zip(values).map(|(a, v)| a + v).collect();

        // 3. Minibatch epochs.
        let t3 = Instant::now();
        let mb = self.cfg.minibatch_size;
        let mut order: Vec<usize> = (0..total).collect();
        let (mut pg_sum, mut v_sum, mut ent_sum, mut kl_sum, mut clip_sum, mut count) =
            (0f32, 0f32, 0f32, 0f32, 0f32, 0f32);
        'epochs: for _ in 0..self.cfg.epochs {
            for i in (1..total).rev() {
                let j = self.rng.random_range(0..=i);
                order.swap(i, j);
            }
            for chunk in order.chunks(mb) {
                if chunk.len() < mb {
                    continue;
                }
                let m = chunk.len();
                let dev = self.device.clone();
                let x = self.tensor2(
                    chunk
                        .iter()
                        .flat_map(|&i| obs[i * d..(i + 1) * d].iter().copied())
                        .collect(),
                    m,
                    d,
                    &dev,
                );
                let valid = self
                    .tensor2(
                        chunk
                            .iter()
                            .flat_map(|&i| masks[i * k..(i + 1) * k].iter().map(|&v| v as f32))
                            .collect(),
                        m,
                        k,
                        &dev,
                    )
                    .greater_elem(0.5);
                let act = Tensor::<2, Int>::from_data(
                    TensorData::new(
                        chunk.iter().map(|&i| actions[i]).collect::<Vec<i64>>(),
                        [m, 1],
                    ),
                    &dev,
                );
                let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [m]), &dev);
                let old_logp = vec1(chunk.iter().map(|&i| logps[i]).collect());
                let mut a: Vec<f32> = chunk.iter().map(|&i| adv[i]).collect();
                if self.cfg.normalize_advantages && m > 1 {
                    let mean = a.iter().sum::<f32>() / m as f32;
                    let std =
                        (a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / (m - 1) as f32).sqrt();
                    a.iter_mut().for_each(|x| *x = (*x - mean) / (std + 1e-8));
                }
                let a = vec1(a);
                let ret = vec1(chunk.iter().map(|&i| returns[i]).collect());
                let old_v = vec1(chunk.iter().map(|&i| values[i]).collect());

                let logp_all = log_probs(self.model.masked_logits(
                    x.clone(),
                    valid,
                    self.cfg.activation,
                ));
                let new_logp = logp_all.clone().gather(1, act).reshape([m]);
                let entropy = logp_all
                    .clone()
                    .exp()
                    .mul(logp_all)
                    .sum_dim(1)
                    .reshape([m])
                    .neg();
                let log_ratio = new_logp - old_logp;
                let ratio = log_ratio.clone().exp();
                let c = self.cfg.clip_epsilon;
                let pg1 = a.clone().neg().mul(ratio.clone());
                let pg2 = a.neg().mul(ratio.clone().clamp(1.0 - c, 1.0 + c));
                let pg_loss = pg1.max_pair(pg2).mean();
                let v = self.model.value(x, self.cfg.activation);
                let v_loss = if self.cfg.clip_value_loss {
                    let unclipped = (v.clone() - ret.clone()).powi_scalar(2);
                    let clipped = (old_v.clone() + (v - old_v).clamp(-c, c) - ret).powi_scalar(2);
                    unclipped.max_pair(clipped).mean().mul_scalar(0.5)
                } else {
                    (v - ret).powi_scalar(2).mean().mul_scalar(0.5)
                };
                let ent = entropy.mean();
                let loss = pg_loss.clone() - ent.clone().mul_scalar(self.cfg.entropy_coef)
                    + v_loss.clone().mul_scalar(self.cfg.value_coef);
                if !loss.clone().into_scalar::<f32>().is_finite() {
                    return Err(PpoError::NonFinite("loss".into()));
                }
                let approx_kl = ((ratio.clone() - 1.0) - log_ratio)
                    .mean()
                    .into_scalar::<f32>();
                let clipfrac = (ratio - 1.0)
                    .abs()
                    .greater_elem(c)
                    .float()
                    .mean()
                    .into_scalar::<f32>();

                let mut grads = GradientsParams::from_grads(loss.backward(), &self.model);
                let mut norm = GradNorm {
                    grads: &grads,
                    sq: 0.0,
                };
                self.model.visit(&mut norm);
                let gnorm = norm.sq.sqrt() as f32;
                if !gnorm.is_finite() {
                    return Err(PpoError::NonFinite("gradient".into()));
                }
                if gnorm > self.cfg.max_grad_norm {
                    let mut scale = GradScale {
                        grads: &mut grads,
                        scale: self.cfg.max_grad_norm / (gnorm + 1e-6),
                    };
                    self.model.visit(&mut scale);
                }
                let model = std::mem::replace(
                    &mut self.model,
                    ActorCritic::new(1, 1, &[1], &Device::flex()),
                );
                self.model = self.optim.step(lr, model, grads);

                pg_sum += pg_loss.into_scalar::<f32>();
                v_sum += v_loss.into_scalar::<f32>();
                ent_sum += ent.into_scalar::<f32>();
                kl_sum += approx_kl;
                clip_sum += clipfrac;
                count += 1.0;
                if let Some(target) = self.cfg.target_kl {
                    if approx_kl > target {
                        break 'epochs;
                    }
                }
            }
        }
        stats.update_s = t3.elapsed().as_secs_f64();
        let c = count.max(1.0);
        stats.policy_loss = pg_sum / c;
        stats.value_loss = v_sum / c;
        stats.entropy = ent_sum / c;
        stats.approx_kl = kl_sum / c;
        stats.clipfrac = clip_sum / c;
        // Explained variance 1 − Var(returns − values) / Var(returns), as CleanRL logs it.
        let mean = |x: &mut dyn Iterator<Item = f32>| {
            let (s, c) = x.fold((0f64, 0usize), |(s, c), v| (s + v as f64, c + 1));
            s / c.max(1) as f64
        };
        let mean_ret = mean(&mut returns.iter().copied());
        let mean_res = mean(&mut returns.iter().zip(values).map(|(r, v)| r - v));
        let var_y: f64 = returns.iter().map(|&r| (r as f64 - mean_ret).powi(2)).sum();
        let var_res: f64 = returns
            .iter()
            .zip(values)
            .map(|(r, v)| ((r - v) as f64 - mean_res).powi(2))
            .sum();
        stats.explained_variance = if var_y > 0.0 {
            (1.0 - var_res / var_y) as f32
        } else {
            f32::NAN
        };
        Ok(())
    }

    /// Episode metrics over the recent finished episodes (return over the last 100).
    fn episode_stats(&self, stats: &mut UpdateStats) {
        let last100: Vec<&Finished> = self.recent.iter().rev().take(100).collect();
        if !last100.is_empty() {
            let l = last100.len() as f32;
            stats.episodic_return = last100.iter().map(|f| f.ret).sum::<f32>() / l;
        }
        let window: Vec<&Finished> = self.recent.iter().collect();
        if !window.is_empty() {
            let delivered: Vec<&&Finished> = window.iter().filter(|f| f.delivered).collect();
            stats.delivery_ratio = delivered.len() as f32 / window.len() as f32;
            if !delivered.is_empty() {
                stats.latency_ms =
                    delivered.iter().map(|f| f.latency_ms).sum::<f32>() / delivered.len() as f32;
                stats.hops =
                    delivered.iter().map(|f| f.hops as f32).sum::<f32>() / delivered.len() as f32;
            }
        }
    }

    /// A trainer for an environment outside this crate (a Python `gymnasium.vector.VectorEnv`,
    /// say) with `obs_dim` observations and `num_actions` discrete actions, `cfg.num_envs`
    /// environments. Drive it with [`Trainer::sample`], [`Trainer::store_transition`] and
    /// [`Trainer::update_from_buffer`].
    pub fn for_spaces(obs_dim: usize, num_actions: usize, cfg: PpoConfig) -> Result<Trainer, PpoError> {
        cfg.validate()?;
        for (field, v) in [("obs_dim", obs_dim), ("num_actions", num_actions)] {
            if v == 0 {
                return Err(PpoError::InvalidConfig {
                    field: field.into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        Trainer::build(obs_dim, num_actions, cfg, None)
    }

    fn check_batch(&self, obs: &[f32], mask: &[i8]) -> Result<usize, PpoError> {
        let (d, k) = (self.obs_dim, self.k);
        if obs.is_empty() || obs.len() % d != 0 || mask.len() != obs.len() / d * k {
            return Err(PpoError::InvalidConfig {
                field: "obs".into(),
                reason: format!(
                    "obs must hold n × {d} values and mask n × {k}; got {} and {}",
                    obs.len(),
                    mask.len()
                ),
            });
        }
        if let Some(i) = obs.iter().position(|v| !v.is_finite()) {
            return Err(PpoError::InvalidConfig {
                field: "obs".into(),
                reason: format!("entry {i} is {}", obs[i]),
            });
        }
        Ok(obs.len() / d)
    }

    /// Samples actions for a batch with the trainer's RNG; returns (actions, log-probabilities,
    /// values): what [`Trainer::store_transition`] takes.
    pub fn sample(
        &mut self,
        obs: &[f32],
        mask: &[i8],
    ) -> Result<(Vec<i64>, Vec<f32>, Vec<f32>), PpoError> {
        self.check_batch(obs, mask)?;
        let (logits, values) =
            crate::inference::infer(&self.model.valid(), self.cfg.activation, obs, self.obs_dim);
        let (a, lp) = sample(&logits, mask, self.k, &mut self.rng, false);
        Ok((a, lp, values))
    }

    /// Critic values of a batch of observations.
    pub fn values(&self, obs: &[f32]) -> Result<Vec<f32>, PpoError> {
        let mask = vec![1i8; obs.len() / self.obs_dim.max(1) * self.k];
        self.check_batch(obs, &mask)?;
        Ok(crate::inference::infer(&self.model.valid(), self.cfg.activation, obs, self.obs_dim).1)
    }

    /// Appends one step of all `num_envs` environments to the rollout buffer. `rewards` should
    /// already include `γ·V(final obs)` for truncated episodes; `dones` marks episode ends.
    #[allow(clippy::too_many_arguments)]
    pub fn store_transition(
        &mut self,
        obs: &[f32],
        mask: &[i8],
        actions: &[i64],
        logps: &[f32],
        values: &[f32],
        rewards: &[f32],
        dones: &[bool],
    ) -> Result<(), PpoError> {
        let n = self.check_batch(obs, mask)?;
        if n != self.cfg.num_envs {
            return Err(PpoError::InvalidConfig {
                field: "obs".into(),
                reason: format!("{n} rows, the trainer has num_envs = {}", self.cfg.num_envs),
            });
        }
        for (name, len) in [
            ("actions", actions.len()),
            ("logps", logps.len()),
            ("values", values.len()),
            ("rewards", rewards.len()),
            ("dones", dones.len()),
        ] {
            if len != n {
                return Err(PpoError::InvalidConfig {
                    field: name.into(),
                    reason: format!("{len} values for {n} environments"),
                });
            }
        }
        if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
            return Err(PpoError::InvalidConfig {
                field: "rewards".into(),
                reason: format!("entry {i} is {}", rewards[i]),
            });
        }
        if let Some(&a) = actions.iter().find(|&&a| a < 0 || a as usize >= self.k) {
            return Err(PpoError::InvalidConfig {
                field: "actions".into(),
                reason: format!("action {a} is outside 0..{}", self.k),
            });
        }
        let b = &mut self.buffer;
        b.obs.extend_from_slice(obs);
        b.masks.extend_from_slice(mask);
        b.actions.extend_from_slice(actions);
        b.logps.extend_from_slice(logps);
        b.values.extend_from_slice(values);
        b.rewards.extend_from_slice(rewards);
        b.dones.extend(dones.iter().map(|&d| d as u8 as f32));
        self.global_step += n as u64;
        Ok(())
    }

    /// Transitions stored since the last update.
    pub fn buffered_steps(&self) -> usize {
        self.buffer.steps()
    }

    /// Records finished episodes' returns for `charts/episodic_return` (environments outside
    /// this crate report them here).
    pub fn record_episode(&mut self, episodic_return: f32) {
        self.recent.push_back(Finished {
            ret: episodic_return,
            delivered: false,
            latency_ms: 0.0,
            hops: 0,
        });
        if self.recent.len() > 1000 {
            self.recent.pop_front();
        }
    }

    /// One PPO update on the stored transitions at learning rate `lr`; `last_obs` are the
    /// observations after the last stored step (for bootstrapping). Empties the buffer.
    pub fn update_from_buffer(&mut self, last_obs: &[f32], lr: f64) -> Result<UpdateStats, PpoError> {
        let start = Instant::now();
        let last_values = self.values(last_obs)?;
        let rollout = std::mem::take(&mut self.buffer);
        let transitions = rollout.actions.len();
        let mut stats = UpdateStats {
            learning_rate: lr,
            ..Default::default()
        };
        let result = self.learn(&rollout, &last_values, lr, &mut stats);
        self.buffer = rollout;
        self.buffer.clear();
        result?;
        stats.global_step = self.global_step;
        stats.sps = transitions as f64 / start.elapsed().as_secs_f64();
        self.episode_stats(&mut stats);
        Ok(stats)
    }

    /// The policy's parameters as one flat vector (actor then critic), for federated learning.
    pub fn get_weights(&self) -> Vec<f32> {
        crate::weights::flatten(&self.model)
    }

    /// Replaces the parameters from [`Trainer::get_weights`]'s layout; wrong length or
    /// non-finite values are an error and leave the policy unchanged.
    pub fn set_weights(&mut self, values: &[f32]) -> Result<(), PpoError> {
        crate::weights::check(values, crate::weights::count(&self.model))?;
        let model = std::mem::replace(
            &mut self.model,
            ActorCritic::new(1, 1, &[1], &Device::flex()),
        );
        self.model = crate::weights::assign(model, values)?;
        Ok(())
    }

    /// Saves the policy's weights to `path` atomically.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), PpoError> {
        let header = crate::weights::WeightsHeader {
            num_parameters: 0,
            obs_dim: self.obs_dim,
            max_neighbors: self.k,
            hidden: self.cfg.hidden.clone(),
            activation: self.cfg.activation,
            fnv1a64: String::new(),
        };
        crate::weights::write(path.as_ref(), header, &self.get_weights())
    }

    /// Loads weights saved by [`Trainer::save`] for the same architecture.
    pub fn load(&mut self, path: impl AsRef<std::path::Path>) -> Result<(), PpoError> {
        let (h, values) = crate::weights::read(path.as_ref())?;
        if (h.obs_dim, h.max_neighbors, &h.hidden, h.activation)
            != (self.obs_dim, self.k, &self.cfg.hidden, self.cfg.activation)
        {
            return Err(PpoError::Weights(format!(
                "{} is for obs_dim {}, {} neighbours, hidden {:?}, {:?}; this trainer has {}, {}, {:?}, {:?}",
                path.as_ref().display(), h.obs_dim, h.max_neighbors, h.hidden, h.activation,
                self.obs_dim, self.k, self.cfg.hidden, self.cfg.activation
            )));
        }
        self.set_weights(&values)
    }

    /// Actions for observations `obs` (`n × obs_dim`) and masks: argmax over valid slots when
    /// `deterministic`, else sampled with an RNG seeded by `seed`.
    pub fn act(&self, obs: &[f32], mask: &[i8], deterministic: bool, seed: u64) -> Vec<i64> {
        self.policy().act(obs, mask, deterministic, seed)
    }
}
