//! A consensus proof: 2f + 1 signed commits for one value at one sequence number.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::TrustError;
use crate::hash::Hash32;
use crate::validators::ValidatorSet;

use super::message::{Message, SignedMessage, Value};

/// Proof that the validators committed `value` at sequence number `seq` (= `value.round`):
/// 2f + 1 commits for its digest in one view, each signed by a distinct validator. At least
/// f + 1 of them are honest, so no other value can be committed at `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsensusProof {
    /// The ID of the validator set that voted ([`ValidatorSet::id`]).
    pub validator_set: Hash32,
    /// The view the commits were cast in.
    pub view: u64,
    /// The sequence number (equal to `value.round`).
    pub seq: u64,
    /// The committed value.
    pub value: Value,
    /// 2f + 1 signed commits, in replica order.
    pub commits: Vec<SignedMessage>,
}

impl ConsensusProof {
    /// Checks the proof against `validators`: the set's ID, the value's round, and 2f + 1
    /// valid commit signatures from distinct validators for this view, sequence number and
    /// the value's digest.
    pub fn verify(&self, validators: &ValidatorSet) -> Result<(), TrustError> {
        let bad = |why: String| Err(TrustError::InvalidProof(why));
        let set = validators.id();
        if self.validator_set != set {
            return bad(format!(
                "signed by validator set {}, expected {}",
                self.validator_set.short(),
                set.short()
            ));
        }
        if self.value.round != self.seq {
            return bad(format!(
                "round {} agreed at sequence number {}",
                self.value.round, self.seq
            ));
        }
        let digest = self.value.digest();
        let mut signers = BTreeSet::new();
        for c in &self.commits {
            let Message::Commit {
                view,
                seq,
                digest: d,
            } = &c.message
            else {
                return bad(format!("replica {}'s entry is not a commit", c.from));
            };
            if (*view, *seq, *d) != (self.view, self.seq, digest) {
                return bad(format!(
                    "replica {}'s commit is for view {view}, sequence {seq}, digest {}",
                    c.from,
                    d.short()
                ));
            }
            if !c.verify(validators, &set) {
                return Err(TrustError::BadSignature {
                    what: format!("the commit of replica {} in a consensus proof", c.from),
                });
            }
            signers.insert(c.from);
        }
        if signers.len() < validators.quorum() {
            return bad(format!(
                "{} distinct signers, need 2f + 1 = {}",
                signers.len(),
                validators.quorum()
            ));
        }
        Ok(())
    }

    /// The validators' SPIFFE IDs that signed, in replica order.
    pub fn signers<'a>(&self, validators: &'a ValidatorSet) -> Vec<&'a crate::SpiffeId> {
        self.commits
            .iter()
            .filter_map(|c| validators.member(c.from).map(|m| &m.id))
            .collect()
    }
}
