//! Batched PPO on burn for the meshrl routing environment.
//!
//! A [`Learner`] holds the actor-critic, its optimizer and RNG: it samples actions and learns
//! from a [`Rollout`] (GAE, clipped surrogate, clipped value loss, entropy bonus, global
//! gradient-norm clipping, invalid-action masking). A [`Trainer`] pairs a learner with the
//! native [`meshrl_env::VecEnv`] (one config or a mixture) and runs the training loop;
//! [`Trainer::train_run`] checkpoints and [`Trainer::resume`] continues bit for bit. The
//! backend lives in the device: `flex` on the CPU, `wgpu` with the `wgpu` feature
//! ([`DeviceChoice`]). [`export`] writes a policy for the `meshrl-runtime` crate.

mod adam;
mod checkpoint;
mod compare;
mod config;
mod device;
mod error;
mod export;
mod file;
mod fused;
mod inference;
mod learner;
mod policy;
mod rollout;
mod router;
mod train_config;
mod trainer;
pub mod weights;

pub use checkpoint::CheckpointInfo;
pub use compare::{compare, own_load_envs, Comparison, COMPARE_BASELINES};
pub use config::{Activation, Architecture, PpoConfig, MAX_PARAMETERS};
pub use device::{select as select_device, DeviceChoice, HAS_CUDA, HAS_WGPU};
pub use error::PpoError;
pub use export::{export, ExportOptions};
pub use file::{atomic_write, f32_bytes, f32s, read_framed, write_framed};
pub use inference::Policy;
pub use learner::{Learner, UpdatePhases, UpdateStats};
pub use meshrl_format::EXPORT_FORMAT;
pub use policy::{log_probs, ActorCritic, Mlp, PolicySpec, MASKED_LOGIT};
pub use rollout::{Episodes, Finished, Rollout};
pub use router::PolicyRouter;
pub use train_config::{load_env_config, LoadedTrainConfig, MixEntry, TrainConfig};
pub use trainer::{EnvShare, RewardTransform, Trainer};
