//! Knowledge: what the loop remembers. The metrics history (one row per tick), every action
//! with its reason, and the history of the detector it runs (one record per training round).

use serde::{Deserialize, Serialize};

/// What the loop did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    /// Routes avoid the node; its advertised trust falls.
    Quarantine { node: usize },
    /// A quarantined node behaved long enough to be let back.
    Readmit { node: usize },
    /// Routes avoid a link predicted to fail.
    AvoidLink { a: usize, b: usize },
    /// An avoided link looks healthy again.
    RestoreLink { a: usize, b: usize },
    /// A router parameter changed (see `Router::set_parameter`).
    Tune { parameter: String, value: f64 },
    /// The node's own traffic may fill only `share` of its queue, the rest is kept for
    /// transit (`share` = 1 lifts the limit).
    ReserveTransit { node: usize, share: f32 },
}

/// One logged action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub tick: u64,
    #[serde(flatten)]
    pub kind: ActionKind,
    /// The detector's score behind it (probability), or the congestion measure for a tune.
    pub score: f32,
    pub reason: String,
}

/// The mesh as the loop saw it at one tick.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TickMetrics {
    pub tick: u64,
    /// Mean queue occupancy of the active nodes (0..1).
    pub mean_queue: f32,
    /// Fraction of active nodes whose queue is at least the loop's `congestion_queue`.
    pub congested_fraction: f32,
    /// Mean frame loss over the links in the tables.
    pub mean_link_loss: f32,
    pub active_nodes: u32,
    pub quarantined: u32,
    pub avoided_links: u32,
}

/// One round of a detector's training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// `federated` or `local`.
    pub detector: String,
    pub round: usize,
    /// Clients (nodes) whose updates were aggregated.
    pub clients: usize,
    /// Mean training loss over the clients' local steps (weighted BCE).
    pub loss: f32,
    /// FNV-1a 64 of the weights' little-endian bytes, hex.
    pub checksum: String,
    /// SHA-256 of the round's weights file in the detector ledger, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_hash: Option<String>,
}

/// One loop's memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Knowledge {
    pub metrics: Vec<TickMetrics>,
    pub actions: Vec<Action>,
    pub models: Vec<ModelRecord>,
}

/// FNV-1a 64 of `weights` as little-endian bytes, hex.
pub fn checksum(weights: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in weights {
        for b in w.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
