//! The federated detector's model history in the trust ledger (`[detector] ledger`).
//!
//! Every training node signs the hash of its update; 3f + 1 validators among the nodes agree
//! with PBFT on each round's (round, model hash, certificate); the round's `MODEL_UPDATE` and
//! its `CONSENSUS_PROOF` go to the ledger ([`meshrl_trust::Ledger`], the federation's format),
//! and the global model of the next round is read back from it, which serves only proven
//! models. Calibration is one more round: each node signs the hash of its score histograms,
//! and the calibrated model the loop runs is the last proven one. `meshrl ledger verify`
//! checks the file.
//!
//! Keys are derived from the training seed ([`Identity::from_seed`]): a simulation, as in the
//! federation; a deployment gives each node its own key (`docs/trust.md`).

use std::path::Path;

use meshrl_trust::ledger::decode_f32;
use meshrl_trust::pbft::{Behavior, NetConfig};
use meshrl_trust::{
    agree_with, weights_hash, Genesis, Hash32, Identity, Ledger, ModelUpdate, SetAside,
    SignedUpdate, SpiffeId, TrustBundle, TrustError,
};

use crate::MapekError;

/// The trust domain of the detector's nodes.
pub const TRUST_DOMAIN: &str = "mapek.meshrl";

/// An open detector ledger: the nodes' keys, the validators, the file.
pub struct DetectorLedger {
    ledger: Ledger,
    coordinator: Identity,
    clients: Vec<Identity>,
    validators: Vec<Identity>,
    seed: u64,
}

fn trust_err(e: TrustError) -> MapekError {
    match e {
        TrustError::Mismatch { path, reason } => MapekError::Trust(TrustError::Mismatch {
            path,
            reason: format!("{reason}; give `detector.ledger` a new path"),
        }),
        e => MapekError::Trust(e),
    }
}

/// What a round recorded.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The global model as the ledger serves it.
    pub weights: Vec<f32>,
    /// SHA-256 of its weights file.
    pub model_hash: Hash32,
}

impl DetectorLedger {
    /// Opens (a resumed run: its genesis must match) or creates the ledger at `path` for
    /// clients named by `names` (e.g. `t0-n3`: training mesh 0, node 3). `validators` (≥ 4,
    /// at most the clients) are the first clients in a seeded order.
    pub fn open(path: &Path, names: &[String], validators: usize, seed: u64) -> Result<Self, MapekError> {
        if validators < 4 || validators > names.len() {
            return Err(MapekError::config(
                "<train>",
                "detector.validators",
                format!(
                    "must be in 4..={} (3f + 1 with f >= 1, at most the {} training nodes), got {validators}",
                    names.len(),
                    names.len()
                ),
            ));
        }
        let key_seed = meshrl_env::twin::splitmix64(seed ^ 0x1ed6_e7de_7ec7);
        let id = |n: &str| SpiffeId::node(TRUST_DOMAIN, n).map_err(trust_err);
        let coordinator = Identity::from_seed(id("coordinator")?, key_seed);
        let clients = names
            .iter()
            .map(|n| Ok(Identity::from_seed(id(n)?, key_seed)))
            .collect::<Result<Vec<_>, MapekError>>()?;
        // Validators: a seeded permutation's first `validators` clients.
        let mut order: Vec<(u64, usize)> = (0..clients.len())
            .map(|i| (meshrl_env::twin::splitmix64(key_seed ^ i as u64), i))
            .collect();
        order.sort_unstable();
        let validators: Vec<Identity> = order[..validators].iter().map(|&(_, i)| clients[i].clone()).collect();
        let bundle = TrustBundle::from_keys(clients.iter().chain([&coordinator]).map(|i| i.node_key()))
            .map_err(trust_err)?;
        let genesis = Genesis {
            bundle,
            validators: validators.iter().map(|v| v.id().clone()).collect(),
        };
        let ledger = Ledger::open_or_create(path, &coordinator, genesis).map_err(trust_err)?;
        Ok(DetectorLedger {
            ledger,
            coordinator,
            clients,
            validators,
            seed,
        })
    }

    /// Records round `round` (≥ 1): client `c` signs `hashes[c]` (the hash of what it sent),
    /// `accepted` were aggregated by `rule` into `global`, `rejected` set aside with reasons.
    /// Returns the global model as the ledger serves it.
    pub fn record(
        &mut self,
        round: u64,
        rule: &str,
        hashes: &[Hash32],
        accepted: &[usize],
        rejected: &[(usize, String)],
        global: &[f32],
    ) -> Result<Recorded, MapekError> {
        let updates = hashes
            .iter()
            .enumerate()
            .map(|(c, h)| SignedUpdate::sign(&self.clients[c], round, 0, *h))
            .collect();
        let update = ModelUpdate {
            round,
            model_hash: weights_hash(global).map_err(trust_err)?,
            rule: rule.to_string(),
            participants: accepted.iter().map(|&c| self.clients[c].id().clone()).collect(),
            set_aside: rejected
                .iter()
                .map(|(c, reason)| SetAside {
                    node: self.clients[*c].id().clone(),
                    reason: reason.clone(),
                })
                .collect(),
            epsilon: None,
            updates,
        };
        let honest = vec![Behavior::Honest; self.validators.len()];
        let seed = meshrl_env::twin::splitmix64(self.seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xbf7);
        let agreement = agree_with(&self.validators, &honest, update.value(), &NetConfig::synchronous(), seed)
            .map_err(trust_err)?;
        let model_hash = self.ledger.put_weights(global).map_err(trust_err)?;
        let proven = self
            .ledger
            .record_proven(&self.coordinator, update, agreement.proof)
            .map_err(trust_err)?;
        Ok(Recorded {
            weights: decode_f32(&proven).map_err(trust_err)?,
            model_hash,
        })
    }

    /// Blocks in the ledger, genesis included.
    pub fn blocks(&self) -> usize {
        self.ledger.blocks().len()
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        self.ledger.path()
    }
}
