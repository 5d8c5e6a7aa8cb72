//! The forger: a Byzantine replica that replays captured messages, forges others' (their
//! signatures then fail), casts conflicting votes, equivocates when it is primary, asks for
//! bogus view changes and sends decisions with forged commits. It signs only with its own key.

use std::sync::Arc;

use crate::hash::{Hash32, Signature};
use crate::identity::Identity;
use crate::validators::ValidatorSet;

use super::message::{Message, PreparedProof, ReplicaId, SignedMessage, Value, ViewChange};
use super::sim::Rng;
use super::ConsensusProof;

/// Captured messages kept for replays.
const CAPTURED: usize = 64;

pub(super) struct Forger {
    identity: Identity,
    id: ReplicaId,
    validators: Arc<ValidatorSet>,
    captured: Vec<SignedMessage>,
    values: Vec<Value>,
    /// The highest view seen in any message.
    view: u64,
}

impl Forger {
    pub fn new(identity: Identity, id: ReplicaId, validators: Arc<ValidatorSet>) -> Self {
        Forger {
            identity,
            id,
            validators,
            captured: Vec::new(),
            values: Vec::new(),
            view: 0,
        }
    }

    /// A valid candidate value (to equivocate with).
    pub fn learn(&mut self, value: Value) {
        if !self.values.contains(&value) {
            self.values.push(value);
        }
    }

    fn sign(&self, m: Message) -> SignedMessage {
        SignedMessage::sign(&self.identity, &self.validators, self.id, m)
    }

    fn some_value(&mut self, seq: u64, rng: &mut Rng) -> Value {
        let valid: Vec<Value> = self
            .values
            .iter()
            .filter(|v| v.round == seq)
            .copied()
            .collect();
        if !valid.is_empty() && rng.chance(0.8) {
            return valid[rng.below(valid.len() as u64) as usize];
        }
        Value {
            round: seq,
            model_hash: Hash32::of(&rng.next_u64().to_le_bytes()),
            certificate: Hash32::of(b"garbage"),
        }
    }

    /// Reacts to a delivered message: returns (destination, message) pairs.
    pub fn on_message(
        &mut self,
        msg: SignedMessage,
        n: usize,
        rng: &mut Rng,
    ) -> Vec<(usize, SignedMessage)> {
        let view_seq = match &msg.message {
            Message::PrePrepare { view, seq, .. }
            | Message::Prepare { view, seq, .. }
            | Message::Commit { view, seq, .. } => Some((*view, *seq)),
            Message::ViewChange(vc) => Some((vc.new_view, vc.stable + 1)),
            Message::NewView(nv) => Some((nv.view, 1)),
            _ => None,
        };
        if let Some((v, _)) = view_seq {
            self.view = self.view.max(v);
        }
        if self.captured.len() >= CAPTURED {
            self.captured.remove(rng.below(CAPTURED as u64) as usize);
        }
        self.captured.push(msg);
        if !rng.chance(0.15) {
            return Vec::new();
        }
        let to = |rng: &mut Rng| rng.below(n as u64) as usize;
        let (view, seq) = view_seq.unwrap_or((self.view, 1));
        let seq = seq.max(1);
        match rng.below(7) {
            // Replay an old message, unchanged (its signature is valid).
            0 => {
                let m = self.captured[rng.below(self.captured.len() as u64) as usize].clone();
                vec![(to(rng), m)]
            }
            // Forge: change a captured message's content, keep its signature.
            1 => {
                let mut m = self.captured[rng.below(self.captured.len() as u64) as usize].clone();
                match &mut m.message {
                    Message::PrePrepare { value, .. } => value.model_hash = Hash32::of(b"forged"),
                    Message::Prepare { digest, .. } | Message::Commit { digest, .. } => {
                        *digest = Hash32::of(b"forged")
                    }
                    Message::Checkpoint { state, .. } => *state = Hash32::of(b"forged"),
                    _ => m.signature = Signature([7; 64]),
                }
                vec![(to(rng), m)]
            }
            // Conflicting votes: two digests, each to a random half of the replicas.
            2 => {
                let votes: Vec<SignedMessage> = (0..2)
                    .map(|_| {
                        let digest = self.some_value(seq, rng).digest();
                        self.sign(if rng.chance(0.5) {
                            Message::Prepare { view, seq, digest }
                        } else {
                            Message::Commit { view, seq, digest }
                        })
                    })
                    .collect();
                (0..n)
                    .map(|j| (j, votes[rng.below(2) as usize].clone()))
                    .collect()
            }
            // Equivocate as primary of the current view (ignored by others when not primary).
            3 => {
                let view = if (view % n as u64) as ReplicaId == self.id {
                    view
                } else {
                    self.view
                };
                let proposals: Vec<SignedMessage> = (0..2)
                    .map(|_| {
                        let value = self.some_value(seq, rng);
                        self.sign(Message::PrePrepare { view, seq, value })
                    })
                    .collect();
                (0..n)
                    .map(|j| (j, proposals[rng.below(2) as usize].clone()))
                    .collect()
            }
            // A view change with a made-up prepared certificate.
            4 => {
                let value = self.some_value(seq, rng);
                let pre_prepare = self.sign(Message::PrePrepare { view, seq, value });
                let prepares = (0..n as ReplicaId)
                    .map(|from| SignedMessage {
                        from,
                        message: Message::Prepare {
                            view,
                            seq,
                            digest: value.digest(),
                        },
                        signature: Signature([9; 64]),
                    })
                    .collect();
                let vc = ViewChange {
                    new_view: self.view + 1 + rng.below(3),
                    stable: 0,
                    checkpoint_proof: Vec::new(),
                    prepared: if rng.chance(0.5) {
                        vec![PreparedProof {
                            pre_prepare,
                            prepares,
                        }]
                    } else {
                        Vec::new()
                    },
                    last_executed: 0,
                };
                let m = self.sign(Message::ViewChange(vc));
                (0..n).map(|j| (j, m.clone())).collect()
            }
            // A decision whose commits are forged.
            5 => {
                let value = self.some_value(seq, rng);
                let commits = (0..n as ReplicaId)
                    .map(|from| SignedMessage {
                        from,
                        message: Message::Commit {
                            view,
                            seq,
                            digest: value.digest(),
                        },
                        signature: Signature([3; 64]),
                    })
                    .collect();
                let proof = ConsensusProof {
                    validator_set: self.validators.id(),
                    view,
                    seq,
                    value,
                    commits,
                };
                vec![(to(rng), self.sign(Message::Decision(Box::new(proof))))]
            }
            // A checkpoint of a state nobody has.
            _ => {
                let seq = 4 * (1 + rng.below(3));
                let m = self.sign(Message::Checkpoint {
                    seq,
                    state: Hash32::of(b"lie"),
                });
                (0..n).map(|j| (j, m.clone())).collect()
            }
        }
    }
}
