//! Trust for a federated mesh where some nodes are untrusted: no single coordinator decides
//! which model every node runs.
//!
//! - **Identity** ([`Identity`], [`SpiffeId`], [`TrustBundle`]): an ed25519 key per node named
//!   `spiffe://<trust-domain>/mesh/node/<id>`; every update ([`SignedUpdate`]), vote and block
//!   is signed, with round, view and sequence number inside the signed bytes.
//! - **PBFT** ([`pbft`]): 3f + 1 validators agree per round on (round, model hash, the
//!   aggregation's certificate). [`pbft::Replica`] is a deterministic state machine without
//!   I/O; [`pbft::sim`] drives it over a seeded faulty network with Byzantine replicas;
//!   [`pbft::agree`] runs one instance in process and returns the [`ConsensusProof`].
//! - **Ledger** ([`Ledger`]): an append-only, hash-chained, fsynced file of `MODEL_UPDATE` and
//!   `CONSENSUS_PROOF` blocks, weights stored by content hash; a node loads only what the
//!   ledger proves ([`Ledger::load_proven`]).
//!
//! Deterministic under a seed; the operating system's randomness is used only by
//! [`Identity::generate`]. No ML dependency. See `docs/trust.md`.

mod error;
mod hash;
mod identity;
pub mod ledger;
pub mod pbft;
mod update;
mod validators;

pub use error::TrustError;
pub use hash::{Hash32, Signature};
pub use identity::{Identity, NodeKey, PublicKey, SpiffeId, TrustBundle};
pub use ledger::{
    inspect, read_proven, verify_file, weights_hash, write_demo, Block, BlockBody, Genesis, Ledger,
    LedgerReport, ModelUpdate, ProvenModel, SetAside,
};
pub use pbft::{agree, agree_with, Agreement, ConsensusProof, Value};
pub use update::{ReplayGuard, SignedUpdate};
pub use validators::ValidatorSet;
