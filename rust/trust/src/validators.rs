//! The validator set: the 3f+1 nodes that run PBFT, in replica order, with a memo of verified
//! signatures (a simulator's replicas share one set, so each message is verified once).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, TrustError};
use crate::hash::{Enc, Hash32, Signature};
use crate::identity::{NodeKey, PublicKey, SpiffeId, TrustBundle};

/// Entries kept in the verification memo before it is cleared.
const MEMO_LIMIT: usize = 1 << 16;

/// The validators in replica order (replica `i` is `members[i]`); tolerates
/// `f = (n - 1) / 3` Byzantine members.
#[derive(Debug, Serialize, Deserialize)]
pub struct ValidatorSet {
    members: Vec<NodeKey>,
    #[serde(skip)]
    memo: Mutex<HashMap<Hash32, bool>>,
}

impl Clone for ValidatorSet {
    fn clone(&self) -> Self {
        ValidatorSet {
            members: self.members.clone(),
            memo: Mutex::default(),
        }
    }
}

impl PartialEq for ValidatorSet {
    fn eq(&self, other: &Self) -> bool {
        self.members == other.members
    }
}

impl ValidatorSet {
    /// The set of these nodes, in this order; IDs must be distinct and non-empty.
    pub fn new(members: Vec<NodeKey>) -> Result<Self, TrustError> {
        if members.is_empty() {
            return Err(invalid("validators", "empty"));
        }
        let mut ids: Vec<&SpiffeId> = members.iter().map(|m| &m.id).collect();
        ids.sort();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("validators", "an ID appears twice"));
        }
        Ok(ValidatorSet {
            members,
            memo: Mutex::default(),
        })
    }

    /// The validators named by `ids`, with their keys from `bundle`.
    pub fn from_bundle(bundle: &TrustBundle, ids: &[SpiffeId]) -> Result<Self, TrustError> {
        let members = ids
            .iter()
            .map(|id| {
                bundle
                    .key(id)
                    .map(|k| NodeKey {
                        id: id.clone(),
                        public_key: *k,
                    })
                    .ok_or_else(|| TrustError::UnknownNode(id.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(members)
    }

    /// The number of validators, n.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a set has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The number of Byzantine validators tolerated, f = (n - 1) / 3.
    pub fn f(&self) -> usize {
        (self.members.len() - 1) / 3
    }

    /// The quorum of votes that decides, 2f + 1.
    pub fn quorum(&self) -> usize {
        2 * self.f() + 1
    }

    /// The members in replica order.
    pub fn members(&self) -> &[NodeKey] {
        &self.members
    }

    /// The member of replica `i`.
    pub fn member(&self, i: u32) -> Option<&NodeKey> {
        self.members.get(i as usize)
    }

    /// The replica index of `id`.
    pub fn index_of(&self, id: &SpiffeId) -> Option<u32> {
        self.members
            .iter()
            .position(|m| &m.id == id)
            .map(|i| i as u32)
    }

    /// SHA-256 over the ordered members: inside every signed PBFT message, so a vote for one
    /// validator set can never count for another.
    pub fn id(&self) -> Hash32 {
        let mut e = Enc::new(b"meshrl-validator-set-v1");
        for m in &self.members {
            e.str(m.id.as_str()).bytes(&m.public_key.to_bytes());
        }
        e.digest()
    }

    /// Whether replica `i` signed `payload` under `domain`. Results are memoized by the hash of
    /// key, signature and payload, so repeated checks of one message cost one verification.
    pub fn verify(&self, i: u32, domain: &[u8], payload: &[u8], signature: &Signature) -> bool {
        let Some(member) = self.member(i) else {
            return false;
        };
        let mut e = Enc::new(b"memo");
        e.bytes(&member.public_key.to_bytes())
            .bytes(&signature.0)
            .bytes(domain)
            .bytes(payload);
        let key = e.digest();
        let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&ok) = memo.get(&key) {
            return ok;
        }
        drop(memo);
        let ok = member.public_key.verify(domain, payload, signature);
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= MEMO_LIMIT {
            memo.clear();
        }
        memo.insert(key, ok);
        ok
    }

    /// The public key of replica `i`.
    pub fn key(&self, i: u32) -> Option<&PublicKey> {
        self.member(i).map(|m| &m.public_key)
    }
}
