//! Batched PPO on burn for the meshrl routing environment.
//!
//! [`Trainer`] collects rollouts from the native [`meshrl_env::VecEnv`] (no Python in the
//! loop), computes GAE with bootstrapping on truncation, and runs clipped-surrogate PPO with a
//! clipped value loss, entropy bonus, global gradient-norm clipping and invalid-action masking.
//! The backend lives in the device: `flex` on the CPU, `wgpu` with the `wgpu` feature
//! ([`DeviceChoice`]). [`Trainer::train_run`] checkpoints and [`Trainer::resume`] continues bit
//! for bit; [`Trainer::for_spaces`] + [`Trainer::store_transition`] train on environments
//! outside this crate; [`export`] writes a policy for the `meshrl-runtime` crate.

mod checkpoint;
mod config;
mod device;
mod export;
mod inference;
mod policy;
mod router;
mod train_config;
mod trainer;
pub mod weights;

pub use config::{Activation, PpoConfig};
pub use device::{select as select_device, DeviceChoice, HAS_WGPU};
pub use export::{export, ExportOptions, EXPORT_FORMAT};
pub use inference::Policy;
pub use policy::{log_probs, ActorCritic, Mlp, MASKED_LOGIT};
pub use router::PolicyRouter;
pub use train_config::TrainConfig;
pub use checkpoint::CheckpointInfo;
pub use trainer::{Rollout, Trainer, UpdateStats};

/// Every way configuring or training can fail.
#[derive(Debug, thiserror::Error)]
pub enum PpoError {
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error(transparent)]
    Env(#[from] meshrl_env::EnvError),
    /// A loss or gradient became NaN or infinite; the update was not applied.
    #[error("non-finite {0} during the PPO update (lower the learning rate or check rewards)")]
    NonFinite(String),
    /// Weights of the wrong size or value, or a bad weights file.
    #[error("weights: {0}")]
    Weights(String),
}
