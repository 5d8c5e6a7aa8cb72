//! Signed federated updates: a worker signs (round, sequence, hash of its update) so the
//! coordinator and every validator can check who sent what, and a [`ReplayGuard`] refuses an
//! update whose (round, sequence) is not newer than the last one seen from that node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::TrustError;
use crate::hash::{Enc, Hash32, Signature};
use crate::identity::{Identity, SpiffeId, TrustBundle};

const UPDATE_DOMAIN: &[u8] = b"meshrl-fl-update-v1";

/// A worker's signature over its model update of one round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedUpdate {
    /// The worker.
    pub node: SpiffeId,
    /// The federated round the update belongs to.
    pub round: u64,
    /// The worker's own counter within the round (0 for the first send; a resend increments).
    pub sequence: u64,
    /// SHA-256 of the update's bytes (e.g. [`crate::weights_hash`] of its `f32`s).
    pub update_hash: Hash32,
    /// ed25519 over all of the above.
    pub signature: Signature,
}

fn payload(node: &SpiffeId, round: u64, sequence: u64, update_hash: &Hash32) -> Vec<u8> {
    let mut e = Enc::new(UPDATE_DOMAIN);
    e.str(node.as_str())
        .u64(round)
        .u64(sequence)
        .hash(update_hash);
    e.0
}

impl SignedUpdate {
    /// `identity` signs its update of `round`.
    pub fn sign(identity: &Identity, round: u64, sequence: u64, update_hash: Hash32) -> Self {
        let p = payload(identity.id(), round, sequence, &update_hash);
        SignedUpdate {
            node: identity.id().clone(),
            round,
            sequence,
            update_hash,
            signature: identity.sign(UPDATE_DOMAIN, &p),
        }
    }

    /// Checks the signature against the node's key in `bundle`.
    pub fn verify(&self, bundle: &TrustBundle) -> Result<(), TrustError> {
        let p = payload(&self.node, self.round, self.sequence, &self.update_hash);
        bundle
            .verify(&self.node, UPDATE_DOMAIN, &p, &self.signature)
            .map_err(|e| match e {
                TrustError::BadSignature { .. } => TrustError::BadSignature {
                    what: format!("the round {} update of {}", self.round, self.node),
                },
                e => e,
            })
    }
}

/// Remembers the newest (round, sequence) accepted from each node.
#[derive(Clone, Debug, Default)]
pub struct ReplayGuard {
    last: BTreeMap<SpiffeId, (u64, u64)>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `update` and accepts it only if its (round, sequence) is newer than the last
    /// accepted from its node.
    pub fn accept(
        &mut self,
        update: &SignedUpdate,
        bundle: &TrustBundle,
    ) -> Result<(), TrustError> {
        update.verify(bundle)?;
        let now = (update.round, update.sequence);
        if let Some(&last) = self.last.get(&update.node) {
            if now <= last {
                return Err(TrustError::Replay {
                    what: format!(
                        "update of {} (round {}, sequence {}; last accepted {:?})",
                        update.node, update.round, update.sequence, last
                    ),
                });
            }
        }
        self.last.insert(update.node.clone(), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_signed_and_replays_refused() {
        let a = Identity::from_seed(SpiffeId::node("t", "a").unwrap(), 0);
        let bundle = TrustBundle::from_keys([a.node_key()]).unwrap();
        let u = SignedUpdate::sign(&a, 3, 0, Hash32::of(b"w"));
        let mut guard = ReplayGuard::new();
        guard.accept(&u, &bundle).unwrap();
        assert!(matches!(
            guard.accept(&u, &bundle),
            Err(TrustError::Replay { .. })
        ));
        let mut forged = SignedUpdate::sign(&a, 4, 0, Hash32::of(b"w"));
        forged.update_hash = Hash32::of(b"other");
        assert!(matches!(
            guard.accept(&forged, &bundle),
            Err(TrustError::BadSignature { .. })
        ));
        // The round is inside the signature: relabelling an old update as new fails.
        let mut relabelled = u.clone();
        relabelled.round = 9;
        assert!(relabelled.verify(&bundle).is_err());
        guard
            .accept(&SignedUpdate::sign(&a, 3, 1, Hash32::of(b"w2")), &bundle)
            .unwrap();
    }
}
