//! A trained policy for acting only: no optimizer, no gradients. Loaded from a weights file
//! or taken from a trainer.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::config::Activation;
use crate::policy::ActorCritic;
use crate::trainer::{sample, Materialize, INIT_LOCK};
use crate::PpoError;

/// Actor logits `[n × K]` and critic values `[n]` for `obs` (`n × obs_dim`).
pub(crate) fn infer(
    model: &ActorCritic,
    act: Activation,
    obs: &[f32],
    obs_dim: usize,
) -> (Vec<f32>, Vec<f32>) {
    let n = obs.len() / obs_dim;
    // The model's own device (flex or wgpu).
    let device = model.devices().into_iter().next().unwrap_or_else(Device::flex);
    let x = Tensor::<2>::from_data(TensorData::new(obs.to_vec(), [n, obs_dim]), &device);
    let logits = model
        .actor
        .forward(x.clone(), act)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 logits");
    let values = model
        .value(x, act)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 values");
    (logits, values)
}

/// An actor-critic ready to act on the CPU.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) model: ActorCritic,
    pub(crate) activation: Activation,
    pub(crate) obs_dim: usize,
    pub(crate) k: usize,
    pub(crate) hidden: Vec<usize>,
}

impl Policy {
    /// Loads a weights file written by `Trainer::save` (or a run folder holding
    /// `policy.weights`).
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PpoError> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("policy.weights");
        }
        let (h, values) = crate::weights::read(&path)?;
        let device = Device::flex();
        let model = {
            let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            let model = ActorCritic::new(h.obs_dim, h.max_neighbors, &h.hidden, &device);
            model.visit(&mut Materialize);
            model
        };
        let model = crate::weights::assign(model, &values)
            .map_err(|e| PpoError::Weights(format!("{}: {e}", path.display())))?;
        Ok(Policy {
            model,
            activation: h.activation,
            obs_dim: h.obs_dim,
            k: h.max_neighbors,
            hidden: h.hidden,
        })
    }

    /// Observation length the policy expects.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Hidden layer widths.
    pub fn hidden(&self) -> &[usize] {
        &self.hidden
    }

    /// The hidden layers' nonlinearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Actor logits `[n × K]` (unmasked) for observations `obs` (`n × obs_dim`).
    pub fn logits(&self, obs: &[f32]) -> Vec<f32> {
        infer(&self.model, self.activation, obs, self.obs_dim).0
    }

    /// Neighbour slots (actions) the policy chooses among.
    pub fn max_neighbors(&self) -> usize {
        self.k
    }

    /// Actions for observations `obs` (`n × obs_dim`) and masks: argmax over valid slots when
    /// `deterministic`, else sampled with an RNG seeded by `seed`. Masked slots are never chosen.
    pub fn act(&self, obs: &[f32], mask: &[i8], deterministic: bool, seed: u64) -> Vec<i64> {
        let (logits, _) = infer(&self.model, self.activation, obs, self.obs_dim);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        sample(&logits, mask, self.k, &mut rng, deterministic).0
    }
}
