//! Federated routers: every mesh node (or site) runs a learning worker; a coordinator hears
//! their heartbeats, samples alive workers each round, sends them the global model over the
//! twin's own mesh, aggregates their updates with a Byzantine-robust rule from `meshrl-fl`,
//! and names each global model by its SHA-256.
//!
//! Everything runs in one process on a seeded virtual clock ([`Federation`]): message delays
//! and losses come from the mesh's links ([`network`]), faults and attacks from the config.
//! The same seed gives the same global model hash. With `[trust]`, workers sign their updates,
//! validators agree on each round's model with PBFT and the model ledger records it
//! ([`TrustSection`]). For federations across real machines,
//! `meshrl.flower` runs the same workers under Flower.

mod checkpoint;
mod compare;
mod config;
mod error;
mod federation;
pub mod network;
mod privacy;
mod trust;
mod worker;

pub use compare::{evaluate_policies, train_central, PolicyComparison};
pub use config::{
    AttackConfig, EnvSource, FaultConfig, FederationConfig, FederationSettings, NetworkConfig, ATTACKS, RULES,
};
pub use error::FederationError;
pub use federation::{model_hash, Federation, NodeState, RoundReport};
pub use privacy::{PrivacyConfig, SecAggSection};
pub use trust::{TrustSection, VALIDATOR_BEHAVIORS};
pub use worker::{mix_seed, LocalUpdate, Worker};
