//! A trained policy for acting only: no optimizer, no gradients. Loaded from a weights file
//! or taken from a learner.

use std::path::Path;

use burn::tensor::Device;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::config::{Activation, Architecture};
use crate::policy::{check_batch, infer, init, sample, ActorCritic, PolicySpec};
use crate::PpoError;

/// An actor-critic ready to act on the CPU.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) model: ActorCritic,
}

impl Policy {
    /// Loads a weights file written by `Learner::save` (or a run folder holding
    /// `policy.weights`).
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PpoError> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("policy.weights");
        }
        let (h, values) = crate::weights::read(&path)?;
        let model = init(&h.spec, None, &Device::flex());
        let model = crate::weights::assign(model, &values).map_err(|e| PpoError::corrupt(&path, e.to_string()))?;
        Ok(Policy { model })
    }

    /// The network's shape.
    pub fn spec(&self) -> &PolicySpec {
        &self.model.spec
    }

    /// Observation length the policy expects.
    pub fn obs_dim(&self) -> usize {
        self.model.spec.obs_dim
    }

    /// Hidden layer widths.
    pub fn hidden(&self) -> &[usize] {
        &self.model.spec.hidden
    }

    /// The hidden layers' nonlinearity.
    pub fn activation(&self) -> Activation {
        self.model.spec.activation
    }

    pub fn architecture(&self) -> Architecture {
        self.model.spec.architecture
    }

    /// Neighbour slots (actions) the policy chooses among.
    pub fn max_neighbors(&self) -> usize {
        self.model.spec.num_actions
    }

    /// The network.
    pub fn model(&self) -> &ActorCritic {
        &self.model
    }

    /// Actor logits `[n × K]` (unmasked) for observations `obs` (`n × obs_dim`).
    pub fn logits(&self, obs: &[f32]) -> Result<Vec<f32>, PpoError> {
        let (d, k) = (self.obs_dim(), self.max_neighbors());
        let mask = vec![1i8; obs.len() / d.max(1) * k];
        check_batch(d, k, obs, &mask)?;
        Ok(infer(&self.model, obs, &mask).0)
    }

    /// Actions for observations `obs` (`n × obs_dim`) and masks: argmax over valid slots when
    /// `deterministic`, else sampled with an RNG seeded by `seed`. Masked slots are never
    /// chosen; NaN observations and rows without a valid slot are errors.
    pub fn act(&self, obs: &[f32], mask: &[i8], deterministic: bool, seed: u64) -> Result<Vec<i64>, PpoError> {
        check_batch(self.obs_dim(), self.max_neighbors(), obs, mask)?;
        Ok(self.act_unchecked(obs, mask, deterministic, seed))
    }

    /// [`Policy::act`] on a batch the caller checked (the evaluation harness's own buffers).
    pub(crate) fn act_unchecked(&self, obs: &[f32], mask: &[i8], deterministic: bool, seed: u64) -> Vec<i64> {
        let (logits, _) = infer(&self.model, obs, mask);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        sample(&logits, mask, self.max_neighbors(), &mut rng, deterministic).0
    }
}
