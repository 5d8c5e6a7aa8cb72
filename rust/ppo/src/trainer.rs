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
struct Finished {
    ret: f32,
    delivered: bool,
    latency_ms: f32,
    hops: u32,
}

/// Trains an [`ActorCritic`] on the routing environment.
pub struct Trainer {
    pub cfg: PpoConfig,
    env: VecEnv,
    device: Device,
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
    /// truncation needs) with `cfg.num_envs` environments, on the CPU (`flex`).
    pub fn new(env_cfg: EnvConfig, cfg: PpoConfig) -> Result<Trainer, PpoError> {
        cfg.validate()?;
        let mut env_cfg = env_cfg;
        env_cfg.env.autoreset_mode = AutoresetMode::SameStep;
        let mut env = VecEnv::new(env_cfg, cfg.num_envs)?;
        env.reset(Some(cfg.seed))?;
        let device = Device::flex().autodiff();
        let (obs_dim, k) = (env.obs_dim(), env.max_neighbors());
        let model = {
            let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            device.seed(cfg.seed);
            let model = ActorCritic::new(obs_dim, k, &cfg.hidden, &device);
            model.visit(&mut Materialize);
            model
        };
        let optim = AdamConfig::new().with_epsilon(1e-5).init();
        let rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x5050);
        Ok(Trainer {
            cfg,
            env,
            device,
            model,
            optim,
            rng,
            global_step: 0,
            recent: VecDeque::new(),
            obs_dim,
            k,
        })
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

    /// Actor logits and critic values for `obs` (`n × obs_dim`), without gradients.
    fn infer(&self, policy: &ActorCritic, obs: &[f32]) -> (Vec<f32>, Vec<f32>) {
        crate::inference::infer(policy, self.cfg.activation, obs, self.obs_dim)
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

    /// Runs `total_steps` environment steps of training; `callback` sees each update's stats
    /// and may stop training by returning `false`.
    pub fn train(
        &mut self,
        total_steps: u64,
        mut callback: impl FnMut(&UpdateStats) -> bool,
    ) -> Result<UpdateStats, PpoError> {
        let batch = self.cfg.batch_size() as u64;
        let num_updates = total_steps.div_ceil(batch).max(1);
        let mut last = UpdateStats::default();
        for update in 0..num_updates {
            let frac = 1.0 - update as f64 / num_updates as f64;
            let lr = if self.cfg.anneal_lr {
                self.cfg.learning_rate * frac
            } else {
                self.cfg.learning_rate
            };
            last = self.update(lr)?;
            if !callback(&last) {
                break;
            }
        }
        Ok(last)
    }

    /// One rollout and one PPO update at learning rate `lr`.
    pub fn update(&mut self, lr: f64) -> Result<UpdateStats, PpoError> {
        let (n, t_max, d, k) = (self.cfg.num_envs, self.cfg.num_steps, self.obs_dim, self.k);
        let (gamma, lambda) = (self.cfg.gamma, self.cfg.gae_lambda);
        let start = Instant::now();
        let mut stats = UpdateStats {
            learning_rate: lr,
            ..Default::default()
        };
        let policy = self.model.valid();

        // 1. Rollout.
        let mut obs = Vec::with_capacity(t_max * n * d);
        let mut masks = Vec::with_capacity(t_max * n * k);
        let mut actions = Vec::with_capacity(t_max * n);
        let mut logps = Vec::with_capacity(t_max * n);
        let mut values = Vec::with_capacity(t_max * n);
        let mut rewards = Vec::with_capacity(t_max * n);
        let mut dones = Vec::with_capacity(t_max * n);
        for _ in 0..t_max {
            let b = self.env.buffers();
            obs.extend_from_slice(&b.obs);
            masks.extend_from_slice(&b.mask);
            let t0 = Instant::now();
            let (logits, v) = self.infer(&policy, &b.obs);
            let (a, lp) = sample(&logits, &b.mask, k, &mut self.rng, false);
            stats.inference_s += t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            self.env.step(&a)?;
            stats.env_s += t1.elapsed().as_secs_f64();
            let b = self.env.buffers();
            let mut r = b.reward.clone();
            // Truncation is not termination: bootstrap from the final observation's value.
            let truncated: Vec<usize> = (0..n).filter(|&i| b.truncated[i]).collect();
            if !truncated.is_empty() {
                let rows: Vec<f32> = truncated
                    .iter()
                    .flat_map(|&i| b.final_obs[i * d..(i + 1) * d].iter().copied())
                    .collect();
                let t2 = Instant::now();
                let (_, vf) = self.infer(&policy, &rows);
                stats.inference_s += t2.elapsed().as_secs_f64();
                for (j, &i) in truncated.iter().enumerate() {
                    r[i] += gamma * vf[j];
                }
            }
            for i in 0..n {
                let done = b.terminated[i] || b.truncated[i];
                dones.push(done as u8 as f32);
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
            rewards.extend_from_slice(&r);
            actions.extend_from_slice(&a);
            logps.extend_from_slice(&lp);
            values.extend_from_slice(&v);
            self.global_step += n as u64;
        }
        let (_, last_values) = self.infer(&policy, &self.env.buffers().obs.clone());

        // 2. GAE.
        let total = t_max * n;
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
        let returns: Vec<f32> = adv.iter().zip(&values).map(|(a, v)| a + v).collect();

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
        let mean_ret = returns.iter().sum::<f32>() / total as f32;
        let var_y = returns.iter().map(|r| (r - mean_ret).powi(2)).sum::<f32>();
        let var_res = returns
            .iter()
            .zip(&values)
            .map(|(r, v)| (r - v - (mean_ret - mean_ret)).powi(2))
            .sum::<f32>();
        stats.explained_variance = if var_y > 0.0 {
            1.0 - var_res / var_y
        } else {
            f32::NAN
        };
        stats.global_step = self.global_step;
        stats.sps = (t_max * n) as f64 / start.elapsed().as_secs_f64();
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
