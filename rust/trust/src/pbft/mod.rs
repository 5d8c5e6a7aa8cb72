//! PBFT among 3f + 1 validators agreeing per round on (round, global model hash, the
//! aggregation's certificate): a deterministic state machine ([`Replica`]), the proof it
//! produces ([`ConsensusProof`]), a seeded network simulator with Byzantine replicas
//! ([`sim`]) and [`agree`], which runs one instance in process.

mod byzantine;
mod checkpoint;
mod config;
mod message;
mod proof;
mod replica;
mod schedule;
pub mod sim;
mod view_change;

pub use message::{Message, NewView, PreparedProof, ReplicaId, SignedMessage, Value, ViewChange};
pub use proof::ConsensusProof;
pub use replica::{Acceptance, Config, Output, Replica, ReplicaStats, Status};

use crate::error::{invalid, TrustError};
use crate::identity::Identity;

/// Runs one PBFT instance among `validators` (replica `i` is `validators[i]`; f =
/// (n - 1) / 3) over the simulated network `net`, every replica submitting `value`, and
/// returns the 2f + 1 signed commits that decide it. Deterministic under `seed`. Fails with
/// [`TrustError::NoAgreement`] if nothing is decided within `net.budget_ms` of simulated time.
pub fn agree(
    validators: &[Identity],
    value: Value,
    net: &sim::NetConfig,
    seed: u64,
) -> Result<ConsensusProof, TrustError> {
    if value.round == 0 {
        return Err(invalid("value.round", "rounds start at 1"));
    }
    let mut s = sim::Simulator::new(
        validators.to_vec(),
        vec![sim::Behavior::Honest; validators.len()],
        Config::default(),
        net.clone(),
        value.round - 1,
        seed,
    )?;
    for node in 0..validators.len() {
        s.submit_at(0, node, value);
    }
    s.run_until(|s| s.decisions().values().any(|d| d.contains_key(&value.round)));
    s.decisions()
        .values()
        .find_map(|d| d.get(&value.round).cloned())
        .ok_or_else(|| {
            TrustError::NoAgreement(format!(
                "round {} not decided within {} ms of simulated time",
                value.round, net.budget_ms
            ))
        })
}
