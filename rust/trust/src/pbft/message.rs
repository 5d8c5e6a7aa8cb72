//! PBFT's messages and their signatures. Every message is signed by its sender over the
//! validator set's ID, the sender's index and the message with its view and sequence number,
//! so a vote cannot be replayed into another view, sequence number or validator set.

use serde::{Deserialize, Serialize};

use crate::hash::{Enc, Hash32, Signature};
use crate::identity::Identity;
use crate::validators::ValidatorSet;

use super::ConsensusProof;

/// A replica's index in the validator set.
pub type ReplicaId = u32;

const MESSAGE_DOMAIN: &[u8] = b"meshrl-pbft-message-v1";

/// What the validators agree on for one round: the round, the global model's hash and the
/// hash of the aggregation's certificate (e.g. [`crate::ModelUpdate::certificate`]). The
/// round is the PBFT sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Value {
    /// The federated round (≥ 1); also the sequence number it is agreed at.
    pub round: u64,
    /// SHA-256 of the global model's weights file.
    pub model_hash: Hash32,
    /// SHA-256 of what justifies the model (rule, participants, set-aside updates, ε).
    pub certificate: Hash32,
}

impl Value {
    /// The digest that prepares and commits vote for.
    pub fn digest(&self) -> Hash32 {
        let mut e = Enc::new(b"meshrl-pbft-value-v1");
        e.u64(self.round)
            .hash(&self.model_hash)
            .hash(&self.certificate);
        e.digest()
    }
}

/// A prepared certificate: a pre-prepare and 2f matching prepares from other replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreparedProof {
    /// The primary's pre-prepare.
    pub pre_prepare: SignedMessage,
    /// 2f prepares for the same view, sequence number and digest, from distinct backups.
    pub prepares: Vec<SignedMessage>,
}

/// A replica's request to move to `new_view`, with what it has prepared since its last
/// stable checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewChange {
    /// The view asked for.
    pub new_view: u64,
    /// The sender's last stable checkpoint (sequence number).
    pub stable: u64,
    /// 2f + 1 checkpoint messages proving `stable` (empty at the instance's start).
    pub checkpoint_proof: Vec<SignedMessage>,
    /// A prepared certificate for each sequence number above `stable` it prepared.
    pub prepared: Vec<PreparedProof>,
    /// The sender's last executed sequence number (others send it the decisions it lacks).
    pub last_executed: u64,
}

/// The new primary's announcement of `view`: 2f + 1 view changes and the pre-prepares they
/// imply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewView {
    /// The view that starts.
    pub view: u64,
    /// 2f + 1 signed view changes for `view`.
    pub view_changes: Vec<SignedMessage>,
    /// Pre-prepares in `view` for every sequence number prepared in some view change.
    pub pre_prepares: Vec<SignedMessage>,
}

/// PBFT's messages, plus `Fetch`/`Decision` for a replica that fell behind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// The primary proposes `value` at `seq` in `view`.
    PrePrepare { view: u64, seq: u64, value: Value },
    /// A backup accepted the pre-prepare of (`view`, `seq`, `digest`).
    Prepare { view: u64, seq: u64, digest: Hash32 },
    /// The sender has a prepared certificate for (`view`, `seq`, `digest`).
    Commit { view: u64, seq: u64, digest: Hash32 },
    /// The sender's state after executing `seq` has digest `state`.
    Checkpoint { seq: u64, state: Hash32 },
    /// See [`ViewChange`].
    ViewChange(ViewChange),
    /// See [`NewView`].
    NewView(NewView),
    /// Asks for the decisions after sequence number `after`.
    Fetch { after: u64 },
    /// A decision with its proof (self-certifying).
    Decision(Box<ConsensusProof>),
}

/// A message with its sender and the sender's signature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The sender's replica index.
    pub from: ReplicaId,
    /// The message.
    pub message: Message,
    /// ed25519 of the sender over [`SignedMessage::payload`].
    pub signature: Signature,
}

impl SignedMessage {
    /// Signs `message` as replica `from` of `validators`.
    pub fn sign(
        identity: &Identity,
        validators: &ValidatorSet,
        from: ReplicaId,
        message: Message,
    ) -> Self {
        let payload = Self::payload(&validators.id(), from, &message);
        SignedMessage {
            from,
            signature: identity.sign(MESSAGE_DOMAIN, &payload),
            message,
        }
    }

    /// The signed bytes: validator set ID, sender, message.
    pub fn payload(set: &Hash32, from: ReplicaId, message: &Message) -> Vec<u8> {
        let mut e = Enc::new(b"pbft");
        e.hash(set).u64(from as u64);
        encode(&mut e, message);
        e.0
    }

    /// Whether the signature is the sender's (only the outer one; nested messages are checked
    /// where they are used).
    pub fn verify(&self, validators: &ValidatorSet, set_id: &Hash32) -> bool {
        let payload = Self::payload(set_id, self.from, &self.message);
        validators.verify(self.from, MESSAGE_DOMAIN, &payload, &self.signature)
    }
}

fn encode_signed(e: &mut Enc, m: &SignedMessage) {
    e.u64(m.from as u64);
    encode(e, &m.message);
    e.0.extend_from_slice(&m.signature.0);
}

fn encode_all(e: &mut Enc, ms: &[SignedMessage]) {
    e.u64(ms.len() as u64);
    for m in ms {
        encode_signed(e, m);
    }
}

fn encode_value(e: &mut Enc, v: &Value) {
    e.u64(v.round).hash(&v.model_hash).hash(&v.certificate);
}

/// The canonical encoding of a message (nested signed messages included with their
/// signatures).
fn encode(e: &mut Enc, m: &Message) {
    match m {
        Message::PrePrepare { view, seq, value } => {
            e.u8(1).u64(*view).u64(*seq);
            encode_value(e, value);
        }
        Message::Prepare { view, seq, digest } => {
            e.u8(2).u64(*view).u64(*seq).hash(digest);
        }
        Message::Commit { view, seq, digest } => {
            e.u8(3).u64(*view).u64(*seq).hash(digest);
        }
        Message::Checkpoint { seq, state } => {
            e.u8(4).u64(*seq).hash(state);
        }
        Message::ViewChange(vc) => {
            e.u8(5)
                .u64(vc.new_view)
                .u64(vc.stable)
                .u64(vc.last_executed);
            encode_all(e, &vc.checkpoint_proof);
            e.u64(vc.prepared.len() as u64);
            for p in &vc.prepared {
                encode_signed(e, &p.pre_prepare);
                encode_all(e, &p.prepares);
            }
        }
        Message::NewView(nv) => {
            e.u8(6).u64(nv.view);
            encode_all(e, &nv.view_changes);
            encode_all(e, &nv.pre_prepares);
        }
        Message::Fetch { after } => {
            e.u8(7).u64(*after);
        }
        Message::Decision(p) => {
            e.u8(8).hash(&p.validator_set).u64(p.view).u64(p.seq);
            encode_value(e, &p.value);
            encode_all(e, &p.commits);
        }
    }
}
