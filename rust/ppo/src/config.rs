//! PPO hyper-parameters: one struct, the prototype's defaults in plain sight.

use serde::{Deserialize, Serialize};

/// Hidden-layer activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// tanh, computed as `1 − 2 / (exp(2x) + 1)` in the fused layer op (`fused.rs`): within
    /// 2.5e-7 of tanh, one vectorized pass on `flex` (burn's `tanh` is a scalar `tanhf` loop
    /// there; see BENCHMARKS.md).
    #[default]
    Tanh,
    Relu,
}

/// How the policy network reads an observation (see `policy.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// One MLP over the whole observation for the actor, another for the critic.
    #[default]
    Mlp,
    /// Per-neighbour scoring with shared weights (permutation-equivariant over slots); the
    /// critic pools over slots. Needs observations made of neighbour slots.
    Slots,
}

/// Most parameters a policy may have (f32; Adam keeps two more copies): 50 M, 600 MB in all.
pub const MAX_PARAMETERS: usize = 50_000_000;

/// Checks hidden layer sizes: at least one layer, all > 0.
pub(crate) fn check_hidden(hidden: &[usize]) -> Result<(), crate::PpoError> {
    if hidden.is_empty() || hidden.contains(&0) {
        return Err(crate::PpoError::InvalidConfig {
            field: "ppo.hidden".into(),
            reason: format!("needs at least one layer, all > 0, got {hidden:?}"),
        });
    }
    Ok(())
}

/// Every PPO setting (`[ppo]` in a training config). Defaults are the prototype's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Hidden layer sizes of the actor and of the critic.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// `mlp` or `slots` (per-neighbour scoring; the routing environment only).
    pub architecture: Architecture,
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over the run.
    pub anneal_lr: bool,
    pub gamma: f32,
    pub gae_lambda: f32,
    /// Environments stepped together.
    pub num_envs: usize,
    /// Steps per environment per rollout.
    pub num_steps: usize,
    /// Passes over each rollout.
    pub epochs: usize,
    /// Samples per gradient step.
    pub minibatch_size: usize,
    pub clip_epsilon: f32,
    /// Clip the value loss around the old values as well.
    pub clip_value_loss: bool,
    pub value_coef: f32,
    pub entropy_coef: f32,
    /// Clip the global gradient norm (all parameters together) to this.
    pub max_grad_norm: f32,
    /// Normalize advantages per minibatch.
    pub normalize_advantages: bool,
    /// Stop an update's epochs early once the approximate KL exceeds this.
    pub target_kl: Option<f32>,
    pub seed: u64,
    /// `auto` (a GPU through wgpu when built with it and present, else the CPU), `cpu`
    /// (`flex`) or `wgpu`.
    pub device: crate::DeviceChoice,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            hidden: vec![64, 64],
            activation: Activation::Tanh,
            architecture: Architecture::Mlp,
            learning_rate: 3e-4,
            anneal_lr: true,
            gamma: 0.99,
            gae_lambda: 0.95,
            num_envs: 8,
            num_steps: 128,
            epochs: 10,
            minibatch_size: 64,
            clip_epsilon: 0.2,
            clip_value_loss: true,
            value_coef: 0.5,
            entropy_coef: 0.01,
            max_grad_norm: 0.5,
            normalize_advantages: true,
            target_kl: None,
            seed: 0,
            device: crate::DeviceChoice::Auto,
        }
    }
}

impl PpoConfig {
    /// Samples per rollout (`num_envs × num_steps`).
    pub fn batch_size(&self) -> usize {
        self.num_envs * self.num_steps
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), crate::PpoError> {
        let bad = |field: &str, reason: String| {
            Err(crate::PpoError::InvalidConfig {
                field: format!("ppo.{field}"),
                reason,
            })
        };
        check_hidden(&self.hidden)?;
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(
                "learning_rate",
                format!("must be > 0, got {}", self.learning_rate),
            );
        }
        for (name, v) in [("gamma", self.gamma), ("gae_lambda", self.gae_lambda)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(name, format!("must be in [0, 1], got {v}"));
            }
        }
        for (name, v, max) in [
            ("num_envs", self.num_envs, 10_000_000),
            ("num_steps", self.num_steps, 1_000_000),
            ("epochs", self.epochs, 10_000),
        ] {
            if !(1..=max).contains(&v) {
                return bad(name, format!("must be in 1..={max}, got {v}"));
            }
        }
        if self.num_envs.saturating_mul(self.num_steps) > 100_000_000 {
            return bad(
                "num_steps",
                format!(
                    "num_envs × num_steps = {} × {} exceeds 100,000,000 samples per rollout",
                    self.num_envs, self.num_steps
                ),
            );
        }
        if self.minibatch_size == 0 || self.minibatch_size > self.batch_size() {
            return bad(
                "minibatch_size",
                format!(
                    "must be in 1..={} (num_envs × num_steps), got {}",
                    self.batch_size(),
                    self.minibatch_size
                ),
            );
        }
        for (name, v) in [
            ("clip_epsilon", self.clip_epsilon),
            ("value_coef", self.value_coef),
            ("entropy_coef", self.entropy_coef),
            ("max_grad_norm", self.max_grad_norm),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(name, format!("must be >= 0, got {v}"));
            }
        }
        Ok(())
    }
}
