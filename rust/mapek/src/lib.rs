//! A self-healing mesh: a MAPE-K loop over the twin whose Analyze phase is a detector trained
//! federatedly across the mesh's nodes.
//!
//! - **Monitor** ([`monitor`]): per-node streams from the twin, each tick: link loss and RSSI
//!   of every neighbour-table slot, queue occupancy, each neighbour's forwarding as overheard
//!   (forwarded, dropped, held back; see [`meshrl_env::twin::Overheard`]) and neighbour
//!   churn, turned into a window of [`FEATURES`] features per (node, neighbour).
//! - **Analyze** ([`detector`]): a small MLP over those features with two heads, "this
//!   neighbour drops or delays what it carries" and "this link fails within the horizon",
//!   trained federatedly ([`training`]: local SGD at each node on its own monitored data, the
//!   weights aggregated with a `meshrl-fl` rule each round, seeded), against the same model
//!   trained on one node's data and a fixed threshold rule.
//! - **Plan / Execute** ([`plan`]): quarantine a flagged node (routes avoid it, its advertised
//!   trust falls), route around a link predicted to fail, tune the routers' parameters under
//!   congestion; every action logged with its reason, rate-limited and reversible.
//! - **Knowledge** ([`knowledge`]): the metrics history, the action log and the model
//!   history (one record per federated round; with `[detector] ledger`, the hash-chained,
//!   PBFT-proven ledger of [`ledger`]).
//! - **Incidents** ([`incident`]): `configs/eval/incidents/*.toml`, a node turning malicious,
//!   a link degrading, a hub failing, a flash crowd; [`evaluate`] runs each with and without
//!   the loop on the same packets.
//!
//! # Where this crate sits, and why not on `meshrl-federation`
//!
//! The architecture sketch has `mapek → federation`. The federation crate federates PPO
//! routers and pulls in burn; the detector here is a two-layer MLP of a few hundred weights,
//! written out in plain `f32`, whose federated rounds need only `meshrl-fl`'s aggregation
//! rules. Depending on twin, env, eval, fl and trust keeps this crate (and its tests) free of
//! burn, and keeps the loop deployable where a node could not run a learner. The detector's
//! rounds are recorded in [`knowledge::ModelRecord`]s and, with `[detector] ledger`, in the
//! federation's model ledger ([`ledger`]: signed updates, PBFT, the model served from it).

pub mod detector;
mod error;
pub mod evaluate;
pub mod incident;
pub mod knowledge;
pub mod ledger;
pub mod monitor;
pub mod plan;
pub mod report;
pub mod run;
pub mod training;

pub use detector::{Detector, Mlp, ThresholdRule};
pub use error::MapekError;
pub use evaluate::{evaluate_incident, train_detectors, Detectors, IncidentReport};
pub use incident::{Incident, IncidentFile, RunConfig};
pub use knowledge::{Action, ActionKind, Knowledge, ModelRecord};
pub use monitor::{Monitor, FEATURES, FEATURE_NAMES};
pub use plan::{LoopConfig, MapeLoop};
pub use training::{Calibration, Sample, TrainConfig};
