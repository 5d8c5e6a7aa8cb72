//! Packet-routing environments over the meshrl digital twin.
//!
//! An episode routes one packet from a sampled source to a sampled destination; each step the
//! agent picks the next hop among the current node's neighbour-table slots (see [`obs`] for the
//! observation layout and [`RewardConfig`] for the reward). [`VecEnv`] steps B environments at
//! once into contiguous buffers, in parallel with rayon, with Gymnasium's autoreset semantics.

pub mod advert;
mod config;
mod error;
pub mod obs;
pub mod paths;
mod vec_env;

pub use config::{
    AutoresetMode, EnvConfig, FeatureSet, InvalidAction, RewardConfig, RewardKind, RoutingConfig,
};
pub use error::EnvError;
pub use meshrl_twin as twin;
pub use vec_env::{episode_seed, Outcome, StepBuffers, StepInfo, VecEnv};
