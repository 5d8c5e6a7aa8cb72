//! The learner: the actor-critic, its optimizer and RNG. It samples actions for a batch of
//! observations and learns from a [`Rollout`] with clipped-surrogate PPO (GAE, shuffled
//! minibatch epochs, clipped value loss, entropy bonus, global gradient-norm clipping,
//! invalid-action masking). It knows no environment: [`crate::Trainer`] pairs it with the
//! routing environment, federated workers hold one each, and Python drives one on any
//! Gymnasium environment.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::adam::{Adam, HostGrads};
use crate::config::{Architecture, PpoConfig};
use crate::policy::{
    check_batch, infer, init, log_probs, sample, valid_tensor, ActorCritic, PolicySpec, MASKED_LOGIT,
};
use crate::rollout::{explained_variance, gae, Episodes, Finished, Rollout};
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
    /// `time/env_s`, `time/inference_s`, `time/update_s`: seconds stepping the environment,
    /// in policy inference, and in the update.
    pub env_s: f64,
    pub inference_s: f64,
    pub update_s: f64,
}

impl UpdateStats {
    /// Every metric by its logged name (`losses/…`, `charts/…`, `routing/…`, `time/…`), in
    /// one order: the names the CLI, TensorBoard and Python all use.
    pub fn metrics(&self) -> [(&'static str, f64); 16] {
        [
            ("global_step", self.global_step as f64),
            ("charts/episodic_return", self.episodic_return as f64),
            ("charts/SPS", self.sps),
            ("charts/learning_rate", self.learning_rate),
            ("losses/policy_loss", self.policy_loss as f64),
            ("losses/value_loss", self.value_loss as f64),
            ("losses/entropy", self.entropy as f64),
            ("losses/approx_kl", self.approx_kl as f64),
            ("losses/clipfrac", self.clipfrac as f64),
            ("losses/explained_variance", self.explained_variance as f64),
            ("routing/delivery_ratio", self.delivery_ratio as f64),
            ("routing/latency_ms", self.latency_ms as f64),
            ("routing/hops", self.hops as f64),
            ("time/env_s", self.env_s),
            ("time/inference_s", self.inference_s),
            ("time/update_s", self.update_s),
        ]
    }
}

/// Where the update's time goes, summed over minibatch steps since the last
/// [`Learner::take_update_phases`]: building the minibatch tensors, the forward pass and loss
/// (with the NaN check and the KL / clip-fraction metrics), `backward`, the global-norm clip
/// (with reading the gradients to the host), and Adam's step. `flex` runs eagerly, so each phase is timed where it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpdatePhases {
    pub minibatches: u64,
    pub gather_s: f64,
    pub forward_s: f64,
    pub backward_s: f64,
    pub clip_s: f64,
    pub adam_s: f64,
}

/// The actor-critic with its optimizer and RNG.
pub struct Learner {
    cfg: PpoConfig,
    device: Device,
    device_name: &'static str,
    /// `None` only inside an optimizer step, which takes the network by value.
    model: Option<ActorCritic>,
    /// Adam as CleanRL's PPO sets it up (ε = 1e-5), on the host (`adam.rs`).
    adam: Adam,
    rng: Xoshiro256PlusPlus,
    global_step: u64,
    episodes: Episodes,
    /// Transitions stored with [`Learner::store_transition`] since the last update.
    buffer: Rollout,
    phases: UpdatePhases,
}

impl Learner {
    /// A learner for networks of `spec` (seeded from `cfg.seed`, on the device `cfg.device`
    /// picks). `spec.hidden`, `activation` and `architecture` are taken from `cfg`.
    pub fn new(mut spec: PolicySpec, cfg: PpoConfig) -> Result<Learner, PpoError> {
        cfg.validate()?;
        spec.hidden = cfg.hidden.clone();
        spec.activation = cfg.activation;
        spec.architecture = cfg.architecture;
        spec.validate()?;
        let (device, device_name) = crate::device::select(cfg.device)?;
        let device = device.autodiff();
        let model = init(&spec, Some(cfg.seed), &device);
        Ok(Learner {
            adam: Adam::default(),
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed ^ 0x5050),
            buffer: Rollout::new(cfg.num_envs),
            cfg,
            device,
            device_name,
            model: Some(model),
            global_step: 0,
            episodes: Episodes::default(),
            phases: UpdatePhases::default(),
        })
    }

    /// A learner for an environment outside meshrl (a Gymnasium `VectorEnv`, say) with
    /// `obs_dim` observations and `num_actions` discrete actions (`mlp` architecture).
    pub fn for_spaces(obs_dim: usize, num_actions: usize, cfg: PpoConfig) -> Result<Learner, PpoError> {
        if cfg.architecture == Architecture::Slots {
            return Err(PpoError::config(
                "ppo.architecture",
                "`slots` needs observations made of neighbour slots (the routing environment); \
                 use `mlp` for other environments",
            ));
        }
        let spec = PolicySpec {
            obs_dim,
            num_actions,
            hidden: cfg.hidden.clone(),
            activation: cfg.activation,
            architecture: cfg.architecture,
            per_slot: 0,
            context: 0,
            feature_set: None,
        };
        Learner::new(spec, cfg)
    }

    pub fn config(&self) -> &PpoConfig {
        &self.cfg
    }

    /// The network's shape.
    pub fn spec(&self) -> &PolicySpec {
        &self.model().spec
    }

    /// The backend learning runs on: `flex` (CPU) or `wgpu`.
    pub fn device_name(&self) -> &'static str {
        self.device_name
    }

    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// The update's time by phase since the last call (see [`UpdatePhases`]), then zeroed.
    pub fn take_update_phases(&mut self) -> UpdatePhases {
        std::mem::take(&mut self.phases)
    }

    pub fn model(&self) -> &ActorCritic {
        self.model.as_ref().expect("the network is only taken inside an optimizer step")
    }

    /// The current policy, for acting only.
    pub fn policy(&self) -> crate::Policy {
        crate::Policy {
            model: self.model().valid(),
        }
    }

    /// Finished episodes seen so far (the metrics' window).
    pub fn episodes(&self) -> &Episodes {
        &self.episodes
    }

    pub(crate) fn record(&mut self, f: Finished) {
        self.episodes.push(f);
    }

    pub(crate) fn advance(&mut self, steps: u64) {
        self.global_step += steps;
    }

    /// Logits and values of a batch the caller already checked (inference, no gradients).
    pub(crate) fn infer_unchecked(&self, obs: &[f32], mask: &[i8]) -> (Vec<f32>, Vec<f32>) {
        infer(&self.model().valid(), obs, mask)
    }

    /// Samples actions for a checked batch with the learner's RNG.
    pub(crate) fn sample_unchecked(&mut self, logits: &[f32], mask: &[i8]) -> (Vec<i64>, Vec<f32>) {
        sample(logits, mask, self.spec().num_actions, &mut self.rng, false)
    }

    /// Checks a batch of observations (`n × obs_dim`, finite) and masks (`n × K` of 0/1 with a
    /// valid slot in every row); returns `n`.
    pub fn check_batch(&self, obs: &[f32], mask: &[i8]) -> Result<usize, PpoError> {
        let (d, k) = (self.spec().obs_dim, self.spec().num_actions);
        check_batch(d, k, obs, mask)
    }

    /// Samples actions for a batch; returns (actions, log-probabilities, values): what
    /// [`Learner::store_transition`] takes.
    pub fn sample(&mut self, obs: &[f32], mask: &[i8]) -> Result<(Vec<i64>, Vec<f32>, Vec<f32>), PpoError> {
        self.check_batch(obs, mask)?;
        let (logits, values) = self.infer_unchecked(obs, mask);
        let (a, lp) = self.sample_unchecked(&logits, mask);
        Ok((a, lp, values))
    }

    /// Critic values of a batch (`mask`: the valid slots, all valid when `None`).
    pub fn values(&self, obs: &[f32], mask: Option<&[i8]>) -> Result<Vec<f32>, PpoError> {
        let (d, k) = (self.spec().obs_dim, self.spec().num_actions);
        let ones;
        let mask = match mask {
            Some(m) => m,
            None => {
                ones = vec![1i8; obs.len() / d.max(1) * k];
                &ones
            }
        };
        self.check_batch(obs, mask)?;
        Ok(self.infer_unchecked(obs, mask).1)
    }

    /// Actions for a batch: argmax over valid slots when `deterministic`, else sampled with an
    /// RNG seeded by `seed`.
    pub fn act(&self, obs: &[f32], mask: &[i8], deterministic: bool, seed: u64) -> Result<Vec<i64>, PpoError> {
        self.policy().act(obs, mask, deterministic, seed)
    }

    /// One PPO update on `rollout` (checked first), whose observations after the last step
    /// have values `last_values`, at learning rate `lr`. Losses go to `stats`.
    pub fn learn(
        &mut self,
        rollout: &Rollout,
        last_values: &[f32],
        lr: f64,
        stats: &mut UpdateStats,
    ) -> Result<(), PpoError> {
        let (d, k) = (self.spec().obs_dim, self.spec().num_actions);
        rollout.check(d, k, last_values)?;
        let total = rollout.actions.len();

        // 1. Advantages.
        let (adv, returns) = gae(rollout, last_values, self.cfg.gamma, self.cfg.gae_lambda);

        // 2. Shuffled minibatch epochs.
        let t0 = Instant::now();
        let mb = self.cfg.minibatch_size;
        let mut order: Vec<usize> = (0..total).collect();
        let mut sums = [0f32; 5];
        let mut count = 0f32;
        'epochs: for _ in 0..self.cfg.epochs {
            for i in (1..total).rev() {
                let j = self.rng.random_range(0..=i);
                order.swap(i, j);
            }
            for chunk in order.chunks(mb) {
                if chunk.len() < mb {
                    continue;
                }
                let m = self.minibatch_step(rollout, &adv, &returns, chunk, lr)?;
                for (s, v) in sums.iter_mut().zip(m) {
                    *s += v;
                }
                count += 1.0;
                if self.cfg.target_kl.is_some_and(|t| m[3] > t) {
                    break 'epochs;
                }
            }
        }

        // 3. Metrics.
        stats.update_s += t0.elapsed().as_secs_f64();
        let c = count.max(1.0);
        [stats.policy_loss, stats.value_loss, stats.entropy, stats.approx_kl, stats.clipfrac] =
            sums.map(|s| s / c);
        stats.explained_variance = explained_variance(&returns, &rollout.values);
        Ok(())
    }

    /// One gradient step on the transitions `idx`; returns (policy loss, value loss, entropy,
    /// approx KL, clip fraction).
    fn minibatch_step(
        &mut self,
        r: &Rollout,
        adv: &[f32],
        returns: &[f32],
        idx: &[usize],
        lr: f64,
    ) -> Result<[f32; 5], PpoError> {
        let (d, k) = (self.spec().obs_dim, self.spec().num_actions);
        let m = idx.len();
        let dev = self.device.clone();
        let mut clock = Instant::now();
        let mut lap = || {
            let now = Instant::now();
            let s = (now - clock).as_secs_f64();
            clock = now;
            s
        };
        let gather = |src: &[f32], w: usize| gather_rows(src, w, idx);
        let x = Tensor::<2>::from_data(TensorData::new(gather(&r.obs, d), [m, d]), &dev);
        let mask: Vec<i8> = gather_rows(&r.masks, k, idx);
        let valid = valid_tensor(&mask, m, k, &dev);
        // Invalid slots pushed to MASKED_LOGIT by one add (their probability is 0 either way,
        // and so is their gradient: the same log-probabilities as `mask_fill`, in fewer ops).
        let mask_bias: Vec<f32> = mask.iter().map(|&v| if v != 0 { 0.0 } else { MASKED_LOGIT }).collect();
        let mask_bias = Tensor::<2>::from_data(TensorData::new(mask_bias, [m, k]), &dev);
        let act = Tensor::<2, Int>::from_data(
            TensorData::new(idx.iter().map(|&i| r.actions[i]).collect::<Vec<i64>>(), [m, 1]),
            &dev,
        );
        let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [m]), &dev);
        let old_logp = vec1(gather(&r.logps, 1));
        let mut a = gather(adv, 1);
        if self.cfg.normalize_advantages && m > 1 {
            let mean = a.iter().sum::<f32>() / m as f32;
            let std = (a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / (m - 1) as f32).sqrt();
            a.iter_mut().for_each(|x| *x = (*x - mean) / (std + 1e-8));
        }
        // The surrogate is written with −A (a loss to minimize), negated here on the host.
        let neg_a = vec1(a.iter().map(|x| -x).collect());
        let ret = vec1(gather(returns, 1));
        let old_v = vec1(gather(&r.values, 1));
        let gather_s = lap();

        let model = self.model();
        let (logits, v) = model.logits_and_value(x, valid);
        let logp_all = log_probs(logits + mask_bias);
        let new_logp = logp_all.clone().gather(1, act).reshape([m]);
        // Mean entropy: −Σ p·log p over the minibatch, / m.
        let ent = logp_all.clone().exp().mul(logp_all).sum().mul_scalar(-1.0 / m as f64);
        let log_ratio = new_logp - old_logp;
        let ratio = log_ratio.clone().exp();
        let c = self.cfg.clip_epsilon;
        let pg1 = neg_a.clone().mul(ratio.clone());
        let pg2 = neg_a.mul(ratio.clone().clamp(1.0 - c, 1.0 + c));
        let pg_loss = pg1.max_pair(pg2).mean();
        let v_loss = if self.cfg.clip_value_loss {
            let unclipped = (v.clone() - ret.clone()).powi_scalar(2);
            let clipped = (old_v.clone() + (v - old_v).clamp(-c, c) - ret).powi_scalar(2);
            unclipped.max_pair(clipped).mean().mul_scalar(0.5)
        } else {
            (v - ret).powi_scalar(2).mean().mul_scalar(0.5)
        };
        let loss = pg_loss.clone() - ent.clone().mul_scalar(self.cfg.entropy_coef)
            + v_loss.clone().mul_scalar(self.cfg.value_coef);
        let losses = Tensor::cat(vec![pg_loss.detach(), v_loss.detach(), ent.detach(), loss.clone().detach()], 0)
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 losses");
        if !losses[3].is_finite() {
            return Err(PpoError::NonFinite("loss".into()));
        }
        // The KL estimate and the clip fraction on the host: metrics, outside the graph.
        let log_ratio = log_ratio.detach().into_data().try_into_vec::<f32>().expect("f32 log-ratios");
        let (mut kl, mut clipped) = (0f32, 0f32);
        for &lg in &log_ratio {
            let r = lg.exp();
            kl += (r - 1.0) - lg;
            clipped += ((r - 1.0).abs() > c) as u8 as f32;
        }
        let (approx_kl, clipfrac) = (kl / m as f32, clipped / m as f32);
        let forward_s = lap();

        let mut grads = GradientsParams::from_grads(loss.backward(), model);
        let backward_s = lap();
        let mut grads = HostGrads::take(model, &mut grads);
        let gnorm = grads.norm() as f32;
        if !gnorm.is_finite() {
            return Err(PpoError::NonFinite("gradient".into()));
        }
        if gnorm > self.cfg.max_grad_norm {
            grads.scale(self.cfg.max_grad_norm / (gnorm + 1e-6));
        }
        let clip_s = lap();
        let model = self.model.take().expect("present outside a step");
        self.model = Some(self.adam.apply(model, grads, lr));
        let adam_s = lap();
        let p = &mut self.phases;
        p.minibatches += 1;
        p.gather_s += gather_s;
        p.forward_s += forward_s;
        p.backward_s += backward_s;
        p.clip_s += clip_s;
        p.adam_s += adam_s;
        Ok([losses[0], losses[1], losses[2], approx_kl, clipfrac])
    }

    /// Appends one step of all `num_envs` environments to the learner's buffer. `rewards`
    /// should already include `γ·V(final obs)` for truncated episodes; `dones` marks episode
    /// ends.
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
            return Err(PpoError::input(
                "obs",
                format!("{n} rows, the learner has num_envs = {}", self.cfg.num_envs),
            ));
        }
        for (name, len) in [
            ("actions", actions.len()),
            ("logps", logps.len()),
            ("values", values.len()),
            ("rewards", rewards.len()),
            ("dones", dones.len()),
        ] {
            if len != n {
                return Err(PpoError::input(name, format!("{len} values for {n} environments")));
            }
        }
        for (name, v) in [("rewards", rewards), ("logps", logps), ("values", values)] {
            if let Some(i) = v.iter().position(|r| !r.is_finite()) {
                return Err(PpoError::input(name, format!("entry {i} is {}", v[i])));
            }
        }
        let k = self.spec().num_actions;
        if let Some(i) = actions.iter().position(|&a| a < 0 || a as usize >= k) {
            return Err(PpoError::input("actions", format!("action {} is outside 0..{k}", actions[i])));
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

    /// Records a finished episode's return for `charts/episodic_return` (environments outside
    /// meshrl report them here).
    pub fn record_episode(&mut self, episodic_return: f32) {
        self.episodes.push(Finished {
            ret: episodic_return,
            delivered: false,
            latency_ms: 0.0,
            hops: 0,
        });
    }

    /// One PPO update on the stored transitions at learning rate `lr`; `last_obs` are the
    /// observations after the last stored step (for bootstrapping). Empties the buffer.
    pub fn update_from_buffer(&mut self, last_obs: &[f32], lr: f64) -> Result<UpdateStats, PpoError> {
        let start = Instant::now();
        let last_values = self.values(last_obs, None)?;
        let rollout = std::mem::replace(&mut self.buffer, Rollout::new(self.cfg.num_envs));
        let mut stats = UpdateStats {
            learning_rate: lr,
            ..Default::default()
        };
        self.learn(&rollout, &last_values, lr, &mut stats)?;
        stats.global_step = self.global_step;
        stats.sps = rollout.actions.len() as f64 / start.elapsed().as_secs_f64();
        self.episodes.summarize(&mut stats);
        Ok(stats)
    }

    /// The parameters as one flat vector (actor, then critic), for federated learning.
    pub fn get_weights(&self) -> Vec<f32> {
        crate::weights::flatten(self.model())
    }

    /// Replaces the parameters from [`Learner::get_weights`]'s layout; a wrong length or
    /// non-finite values are an error and leave the policy unchanged.
    pub fn set_weights(&mut self, values: &[f32]) -> Result<(), PpoError> {
        crate::weights::check(values, crate::weights::count(self.model()))?;
        let model = self.model.take().expect("present outside a step");
        self.model = Some(crate::weights::assign(model, values)?);
        Ok(())
    }

    /// Starts a federated round: the global model's `weights`, a fresh optimizer and the
    /// random stream `seed`, so what a worker computes depends only on what it receives.
    pub fn restart(&mut self, weights: &[f32], seed: u64) -> Result<(), PpoError> {
        self.set_weights(weights)?;
        self.adam = Adam::default();
        self.rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5050);
        self.buffer = Rollout::new(self.cfg.num_envs);
        Ok(())
    }

    /// Saves the weights to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PpoError> {
        crate::weights::write(path.as_ref(), self.spec(), &self.get_weights())
    }

    /// Loads weights saved for the same network shape.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<(), PpoError> {
        let path = path.as_ref();
        let (h, values) = crate::weights::read(path)?;
        if !same_network(&h.spec, self.spec()) {
            return Err(PpoError::Mismatch {
                path: path.to_path_buf(),
                reason: format!(
                    "the weights are for {:?}; this learner has {:?}",
                    h.spec,
                    self.spec()
                ),
            });
        }
        self.set_weights(&values)
    }

    pub(crate) fn adam(&self) -> &Adam {
        &self.adam
    }

    pub(crate) fn rng_state(&self) -> &Xoshiro256PlusPlus {
        &self.rng
    }

    /// Puts back a checkpoint's state (see `checkpoint.rs`).
    pub(crate) fn restore(
        &mut self,
        weights: &[f32],
        adam: Adam,
        rng: Xoshiro256PlusPlus,
        global_step: u64,
        episodes: Episodes,
    ) -> Result<(), PpoError> {
        self.set_weights(weights)?;
        self.adam = adam;
        self.rng = rng;
        self.global_step = global_step;
        self.episodes = episodes;
        Ok(())
    }
}

/// Whether two specs describe networks with the same parameters (the feature set's name is a
/// label, not a shape).
fn same_network(a: &PolicySpec, b: &PolicySpec) -> bool {
    (a.obs_dim, a.num_actions, &a.hidden, a.activation, a.architecture, a.per_slot, a.context)
        == (b.obs_dim, b.num_actions, &b.hidden, b.activation, b.architecture, b.per_slot, b.context)
}

/// Rows `idx` of a row-major `[_, w]` buffer, one copy per row.
fn gather_rows<T: Copy>(src: &[T], w: usize, idx: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(idx.len() * w);
    for &i in idx {
        out.extend_from_slice(&src[i * w..(i + 1) * w]);
    }
    out
}
