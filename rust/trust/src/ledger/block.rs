//! Blocks: `GENESIS` (the trust bundle and the validators), `MODEL_UPDATE` (a round's global
//! model and how it was aggregated) and `CONSENSUS_PROOF` (2f + 1 signed commits of it). A
//! block is hash-chained to the previous one and signed by its author; its body is JSON,
//! hashed as stored, and the signature covers index, previous hash, kind, author and the body's
//! hash.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, TrustError};
use crate::hash::{Enc, Hash32, Signature};
use crate::identity::{Identity, SpiffeId, TrustBundle};
use crate::pbft::{ConsensusProof, Value};
use crate::update::SignedUpdate;

const BLOCK_DOMAIN: &[u8] = b"meshrl-ledger-block-v1";
const BLOCK_VERSION: u8 = 1;

/// The first block: who may write and who validates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Genesis {
    /// Every node's key (authors of blocks, workers whose updates are signed, validators).
    pub bundle: TrustBundle,
    /// The validators, in replica order (3f + 1 of them).
    pub validators: Vec<SpiffeId>,
}

/// An update the aggregation set aside (a robust rule's rejection, a bad vector).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetAside {
    /// The worker.
    pub node: SpiffeId,
    /// Why, in words (e.g. "krum: not selected", "NaN").
    pub reason: String,
}

/// A round's global model: its hash and what justifies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelUpdate {
    /// The federated round (≥ 1).
    pub round: u64,
    /// SHA-256 of the model's weights file (see [`crate::Ledger::put_weights`]).
    pub model_hash: Hash32,
    /// The aggregation rule and its parameters, e.g. `"trimmed_mean(beta=0.1)"`.
    pub rule: String,
    /// The workers whose updates were aggregated.
    pub participants: Vec<SpiffeId>,
    /// The updates set aside, with reasons.
    pub set_aside: Vec<SetAside>,
    /// The privacy budget ε spent so far, when differential privacy is on.
    pub epsilon: Option<f64>,
    /// The workers' signatures over their updates of this round.
    pub updates: Vec<SignedUpdate>,
}

impl ModelUpdate {
    /// SHA-256 over every field (the canonical encoding): the "certificate" the validators
    /// agree on together with the model hash.
    pub fn certificate(&self) -> Hash32 {
        let mut e = Enc::new(b"meshrl-model-update-v1");
        e.u64(self.round).hash(&self.model_hash).str(&self.rule);
        e.u64(self.participants.len() as u64);
        for p in &self.participants {
            e.str(p.as_str());
        }
        e.u64(self.set_aside.len() as u64);
        for s in &self.set_aside {
            e.str(s.node.as_str()).str(&s.reason);
        }
        match self.epsilon {
            Some(eps) => e.u8(1).u64(eps.to_bits()),
            None => e.u8(0),
        };
        e.u64(self.updates.len() as u64);
        for u in &self.updates {
            e.str(u.node.as_str())
                .u64(u.round)
                .u64(u.sequence)
                .hash(&u.update_hash);
            e.0.extend_from_slice(&u.signature.0);
        }
        e.digest()
    }

    /// The value the validators agree on: (round, model hash, certificate).
    pub fn value(&self) -> Value {
        Value {
            round: self.round,
            model_hash: self.model_hash,
            certificate: self.certificate(),
        }
    }

    /// Checks the fields and each worker's signature against `bundle`.
    pub fn check(&self, bundle: &TrustBundle) -> Result<(), TrustError> {
        if self.round == 0 {
            return Err(invalid("round", "rounds start at 1"));
        }
        if self.epsilon.is_some_and(|e| !e.is_finite() || e < 0.0) {
            return Err(invalid("epsilon", "must be finite and non-negative"));
        }
        for u in &self.updates {
            if u.round != self.round {
                return Err(invalid(
                    "updates",
                    format!(
                        "{}'s update is of round {}, not {}",
                        u.node, u.round, self.round
                    ),
                ));
            }
            if !self.participants.contains(&u.node)
                && !self.set_aside.iter().any(|s| s.node == u.node)
            {
                return Err(invalid(
                    "updates",
                    format!("{} is neither a participant nor set aside", u.node),
                ));
            }
            u.verify(bundle)?;
        }
        Ok(())
    }
}

/// What a block holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BlockBody {
    /// Block 0.
    Genesis(Genesis),
    /// A round's global model.
    ModelUpdate(ModelUpdate),
    /// The validators' agreement on a `MODEL_UPDATE`.
    ConsensusProof(ConsensusProof),
}

impl BlockBody {
    /// `GENESIS`, `MODEL_UPDATE` or `CONSENSUS_PROOF`.
    pub fn kind(&self) -> &'static str {
        match self {
            BlockBody::Genesis(_) => "GENESIS",
            BlockBody::ModelUpdate(_) => "MODEL_UPDATE",
            BlockBody::ConsensusProof(_) => "CONSENSUS_PROOF",
        }
    }
    fn tag(&self) -> u8 {
        match self {
            BlockBody::Genesis(_) => 0,
            BlockBody::ModelUpdate(_) => 1,
            BlockBody::ConsensusProof(_) => 2,
        }
    }
    /// The round a model update or proof is about.
    pub fn round(&self) -> Option<u64> {
        match self {
            BlockBody::Genesis(_) => None,
            BlockBody::ModelUpdate(u) => Some(u.round),
            BlockBody::ConsensusProof(p) => Some(p.value.round),
        }
    }
}

/// A block as stored: position, chain link, author, signature, body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// Position in the ledger (0 for genesis).
    pub index: u64,
    /// The previous block's hash (zero for genesis).
    pub prev: Hash32,
    /// This block's hash (over everything, the signature included).
    pub hash: Hash32,
    /// Who appended it.
    pub author: SpiffeId,
    /// The author's signature.
    pub signature: Signature,
    /// The content.
    pub body: BlockBody,
}

fn preimage(index: u64, prev: &Hash32, tag: u8, author: &SpiffeId, body: &[u8]) -> Vec<u8> {
    let mut e = Enc::new(BLOCK_DOMAIN);
    e.u64(index)
        .hash(prev)
        .u8(tag)
        .str(author.as_str())
        .hash(&Hash32::of(body));
    e.0
}

fn block_hash(pre: &[u8], sig: &Signature) -> Hash32 {
    let mut b = pre.to_vec();
    b.extend_from_slice(&sig.0);
    Hash32::of(&b)
}

impl Block {
    /// Builds and signs a block; returns it with its stored bytes.
    pub(crate) fn seal(
        index: u64,
        prev: Hash32,
        author: &Identity,
        body: BlockBody,
    ) -> Result<(Block, Vec<u8>), TrustError> {
        let json = serde_json::to_vec(&body).map_err(|e| invalid("block", e.to_string()))?;
        let pre = preimage(index, &prev, body.tag(), author.id(), &json);
        let signature = author.sign(BLOCK_DOMAIN, &pre);
        let mut bytes = vec![BLOCK_VERSION];
        bytes.extend_from_slice(&index.to_le_bytes());
        bytes.extend_from_slice(&prev.0);
        bytes.push(body.tag());
        let a = author.id().as_str().as_bytes();
        bytes.extend_from_slice(&(a.len() as u32).to_le_bytes());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&json);
        bytes.extend_from_slice(&signature.0);
        let block = Block {
            index,
            prev,
            hash: block_hash(&pre, &signature),
            author: author.id().clone(),
            signature,
            body,
        };
        Ok((block, bytes))
    }

    /// Parses stored bytes and checks the author's signature against `bundle` (for the genesis
    /// block, against the bundle inside it). Returns a reason on failure.
    pub(crate) fn open(bytes: &[u8], bundle: Option<&TrustBundle>) -> Result<Block, String> {
        let mut r = Reader(bytes);
        if r.take(1)? != [BLOCK_VERSION] {
            return Err("unknown block version".into());
        }
        let index = u64::from_le_bytes(r.take(8)?.try_into().expect("8"));
        let prev = Hash32(r.take(32)?.try_into().expect("32"));
        let tag = r.take(1)?[0];
        let alen = u32::from_le_bytes(r.take(4)?.try_into().expect("4")) as usize;
        let author = std::str::from_utf8(r.take(alen)?).map_err(|_| "author is not UTF-8")?;
        let author = SpiffeId::parse(author).map_err(|e| e.to_string())?;
        let blen = u32::from_le_bytes(r.take(4)?.try_into().expect("4")) as usize;
        let json = r.take(blen)?;
        let signature = Signature(r.take(64)?.try_into().expect("64"));
        if !r.0.is_empty() {
            return Err("trailing bytes after the signature".into());
        }
        let body: BlockBody = serde_json::from_slice(json).map_err(|e| format!("bad body: {e}"))?;
        if body.tag() != tag {
            return Err(format!(
                "kind byte {tag} does not match the body's {}",
                body.kind()
            ));
        }
        let bundle = match (&body, bundle) {
            (BlockBody::Genesis(g), None) => &g.bundle,
            (_, Some(b)) => b,
            (_, None) => return Err("the first block is not GENESIS".into()),
        };
        let pre = preimage(index, &prev, tag, &author, json);
        bundle
            .verify(&author, BLOCK_DOMAIN, &pre, &signature)
            .map_err(|e| format!("author signature: {e}"))?;
        Ok(Block {
            index,
            prev,
            hash: block_hash(&pre, &signature),
            author,
            signature,
            body,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("block is truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
}
