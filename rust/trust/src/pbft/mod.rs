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
pub use sim::{Behavior, NetConfig};

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
    let honest = vec![sim::Behavior::Honest; validators.len()];
    Ok(agree_with(validators, &honest, value, net, seed)?.proof)
}

/// How one agreement went ([`agree_with`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// The 2f + 1 signed commits of the value.
    pub proof: ConsensusProof,
    /// Simulated time until the first honest replica decided, ms.
    pub decided_ms: u64,
    /// Messages handed to the network until then.
    pub messages: u64,
}

/// [`agree`] with some validators Byzantine (`behaviors[i]` for replica `i`): honest replicas
/// submit `value` (and accept only it); twins submit it on one side and a forged model hash
/// on the other; forgers and silent replicas do what [`sim::Behavior`] says. The decided value
/// is checked to be `value`.
pub fn agree_with(
    validators: &[Identity],
    behaviors: &[sim::Behavior],
    value: Value,
    net: &sim::NetConfig,
    seed: u64,
) -> Result<Agreement, TrustError> {
    if value.round == 0 {
        return Err(invalid("value.round", "rounds start at 1"));
    }
    let mut s = sim::Simulator::new(
        validators.to_vec(),
        behaviors.to_vec(),
        Config::default(),
        net.clone(),
        value.round - 1,
        seed,
    )?;
    let mut forged = value;
    forged.model_hash.0[0] ^= 0xff;
    for (node, b) in behaviors.iter().enumerate() {
        match b {
            sim::Behavior::Twins => {
                s.submit_half_at(0, node, 0, value);
                s.submit_half_at(0, node, 1, forged);
            }
            _ => s.submit_at(0, node, value),
        }
    }
    s.run_until(|s| s.decisions().values().any(|d| d.contains_key(&value.round)));
    let proof = s
        .decisions()
        .values()
        .find_map(|d| d.get(&value.round).cloned())
        .ok_or_else(|| {
            TrustError::NoAgreement(format!(
                "round {} not decided within {} ms of simulated time",
                value.round, net.budget_ms
            ))
        })?;
    if proof.value != value {
        return Err(TrustError::NoAgreement(format!(
            "round {}: the validators decided a value other than the one submitted",
            value.round
        )));
    }
    Ok(Agreement {
        proof,
        decided_ms: s.now(),
        messages: s.sent,
    })
}
