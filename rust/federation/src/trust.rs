//! `[trust]` in a federation, from `meshrl-trust`: every worker signs its update (a forged
//! or replayed one is excluded), 3f + 1 validators (mesh nodes) agree with PBFT on each
//! round's (round, model hash, certificate), the coordinator appends the `MODEL_UPDATE` and
//! its `CONSENSUS_PROOF` to the ledger, and the global model the next round distributes is read
//! back from the ledger, which serves only proven models. A round without a proof is not
//! accepted: the global model is kept, as when a round misses its quorum.
//!
//! Keys are derived from the federation's seed ([`Identity::from_seed`]): this is a
//! simulation; a deployment gives each node its own key (see `docs/trust.md`).

use std::path::PathBuf;

use meshrl_trust::ledger::decode_f32;
use meshrl_trust::pbft::{Behavior, NetConfig};
use meshrl_trust::{
    agree_with, weights_hash, Genesis, Identity, Ledger, ModelUpdate, ReplayGuard, SetAside, SignedUpdate,
    SpiffeId, TrustBundle, TrustError,
};
use serde::{Deserialize, Serialize};

use crate::worker::mix_seed;
use crate::FederationError;

/// Byzantine validator behaviours (`trust.byzantine_behavior`).
pub const VALIDATOR_BEHAVIORS: [&str; 3] = ["silent", "twins", "forger"];

/// `[trust]`: signed updates, PBFT among validators, the model ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSection {
    /// Validators, chosen among the workers by seed: 3f + 1 tolerates f Byzantine ones.
    pub validators: usize,
    /// Validators that misbehave as `byzantine_behavior` (beyond f, PBFT guarantees nothing:
    /// rounds then fail for want of a proof and the global model is kept).
    pub byzantine_validators: usize,
    /// `silent`, `twins` (equivocates: proposes a forged model hash to half of the others) or
    /// `forger` (replayed, forged, conflicting and garbage messages).
    pub byzantine_behavior: String,
    /// The SPIFFE trust domain: nodes are `spiffe://<domain>/mesh/node/<first node of the site>`.
    pub trust_domain: String,
    /// The ledger file (the CLI puts it in the run folder when unset). An existing ledger of the
    /// same federation is continued; its blocks must match what this run computes.
    pub ledger: Option<PathBuf>,
    /// PBFT messages between validators take 1..=`pbft_delay_ms` ms of virtual time.
    pub pbft_delay_ms: u64,
    /// Before `pbft_gst_ms` (global stabilization time) messages are also lost with
    /// probability `pbft_drop`.
    pub pbft_drop: f64,
    pub pbft_gst_ms: u64,
    /// Virtual time the validators get to decide a round, ms; past it the round fails.
    pub pbft_budget_ms: u64,
}

impl Default for TrustSection {
    fn default() -> Self {
        TrustSection {
            validators: 4,
            byzantine_validators: 0,
            byzantine_behavior: "silent".into(),
            trust_domain: "mesh.meshrl".into(),
            ledger: None,
            pbft_delay_ms: 20,
            pbft_drop: 0.0,
            pbft_gst_ms: 0,
            pbft_budget_ms: 60_000,
        }
    }
}

impl TrustSection {
    /// Checks the section; the error names the field.
    pub fn validate(&self) -> Result<(), FederationError> {
        let bad = |field: &str, reason: String| Err(FederationError::config(field, reason));
        if !(1..=64).contains(&self.validators) {
            return bad("trust.validators", format!("must be in 1..=64, got {}", self.validators));
        }
        if self.byzantine_validators > self.validators {
            return bad(
                "trust.byzantine_validators",
                format!("is {}, there are only {} validators", self.byzantine_validators, self.validators),
            );
        }
        if !VALIDATOR_BEHAVIORS.contains(&self.byzantine_behavior.as_str()) {
            return bad(
                "trust.byzantine_behavior",
                format!("unknown `{}`; one of {}", self.byzantine_behavior, VALIDATOR_BEHAVIORS.join(", ")),
            );
        }
        if let Err(e) = SpiffeId::node(&self.trust_domain, "0") {
            return bad("trust.trust_domain", e.to_string());
        }
        if !(1..=60_000).contains(&self.pbft_delay_ms) {
            return bad("trust.pbft_delay_ms", format!("must be in 1..=60000, got {}", self.pbft_delay_ms));
        }
        if !(0.0..1.0).contains(&self.pbft_drop) {
            return bad("trust.pbft_drop", format!("must be in [0, 1), got {}", self.pbft_drop));
        }
        if !(1..=86_400_000).contains(&self.pbft_budget_ms) {
            return bad("trust.pbft_budget_ms", format!("must be in 1..=86400000, got {}", self.pbft_budget_ms));
        }
        if self.pbft_gst_ms >= self.pbft_budget_ms {
            return bad(
                "trust.pbft_gst_ms",
                format!("is {}, at or past the budget of {} ms: nothing could be decided", self.pbft_gst_ms, self.pbft_budget_ms),
            );
        }
        Ok(())
    }

    fn net(&self) -> NetConfig {
        NetConfig {
            gst_ms: self.pbft_gst_ms,
            delta_ms: self.pbft_delay_ms,
            max_delay_ms: self.pbft_delay_ms,
            drop: self.pbft_drop,
            budget_ms: self.pbft_budget_ms,
            ..NetConfig::synchronous()
        }
    }
}

/// How a round's model was certified.
pub(crate) struct Certified {
    /// The model as read back from the ledger.
    pub weights: Vec<f32>,
    pub view: u64,
    pub decided_ms: u64,
    pub messages: u64,
    pub blocks: u64,
}

/// The identities, the validators and the open ledger of a federation with `[trust]`.
pub(crate) struct Trust {
    section: TrustSection,
    seed: u64,
    coordinator: Identity,
    workers: Vec<Identity>,
    /// Worker index of each validator, in replica order.
    validators: Vec<usize>,
    behaviors: Vec<Behavior>,
    ledger: Ledger,
    guard: ReplayGuard,
    bundle: TrustBundle,
}

fn trust_err(e: TrustError) -> FederationError {
    match e {
        TrustError::Mismatch { path, reason } => FederationError::Mismatch {
            path,
            reason: format!("{reason}; give `trust.ledger` a new path"),
        },
        e => FederationError::Trust(e),
    }
}

impl Trust {
    /// Keys for the coordinator and every worker, the validators chosen by `choose`, and the
    /// ledger: created, or continued if it exists and has this federation's genesis.
    pub fn open(
        section: &TrustSection,
        seed: u64,
        sites: &[Vec<u32>],
        validators: Vec<usize>,
        byzantine: Vec<bool>,
    ) -> Result<Trust, FederationError> {
        let path = section.ledger.clone().ok_or_else(|| {
            FederationError::config("trust.ledger", "needs a path (the CLI puts it in the run folder)")
        })?;
        let key_seed = mix_seed(&[seed, 0x1de7]);
        let id = |node: &str| SpiffeId::node(&section.trust_domain, node).map_err(trust_err);
        let coordinator = Identity::from_seed(id("coordinator")?, key_seed);
        let workers = sites
            .iter()
            .map(|s| Ok(Identity::from_seed(id(&s[0].to_string())?, key_seed)))
            .collect::<Result<Vec<_>, FederationError>>()?;
        let bundle = TrustBundle::from_keys(workers.iter().chain([&coordinator]).map(|i| i.node_key())).map_err(trust_err)?;
        let genesis = Genesis {
            bundle: bundle.clone(),
            validators: validators.iter().map(|&i| workers[i].id().clone()).collect(),
        };
        let ledger = Ledger::open_or_create(&path, &coordinator, genesis).map_err(trust_err)?;
        let behavior = match section.byzantine_behavior.as_str() {
            "twins" => Behavior::Twins,
            "forger" => Behavior::Forger,
            _ => Behavior::Silent,
        };
        let behaviors = byzantine.iter().map(|&b| if b { behavior } else { Behavior::Honest }).collect();
        Ok(Trust {
            section: section.clone(),
            seed,
            coordinator,
            workers,
            validators,
            behaviors,
            ledger,
            guard: ReplayGuard::new(),
            bundle,
        })
    }

    /// Worker `signer` signs `row` as its update of `round` (sequence: the attempt), claiming
    /// to be worker `claimed` (an impersonator's claim differs from its key).
    pub fn sign(&self, signer: usize, claimed: usize, round: u64, attempt: u32, row: &[f32]) -> Result<SignedUpdate, FederationError> {
        let hash = weights_hash(row).map_err(trust_err)?;
        let mut u = SignedUpdate::sign(&self.workers[signer], round, attempt as u64, hash);
        u.node = self.workers[claimed].id().clone();
        Ok(u)
    }

    /// The coordinator's check of a signed update: the signature against the claimed node's
    /// key, and (round, sequence) newer than that node's last.
    pub fn accept(&mut self, update: &SignedUpdate) -> Result<(), String> {
        self.guard.accept(update, &self.bundle).map_err(|e| e.to_string())
    }

    /// Checks that the ledger proves `weights` (the checkpoint's global model after `round`
    /// rounds); round 0's model is the seeded initial one, which no block names.
    pub fn check_proven(&self, round: u64, weights: &[f32]) -> Result<(), FederationError> {
        if round == 0 {
            return Ok(());
        }
        let hash = weights_hash(weights).map_err(trust_err)?;
        if self.ledger.is_proven(&hash) {
            Ok(())
        } else {
            Err(FederationError::Mismatch {
                path: self.ledger.path().to_path_buf(),
                reason: format!("does not prove the checkpoint's global model after round {round} ({hash})"),
            })
        }
    }

    /// The validators agree on `update` (PBFT in virtual time); the coordinator appends it
    /// and its proof to the ledger (or finds them there, when a resumed run repeats a round the
    /// ledger already holds) and reads the model back as a node would. `Err` is a failed
    /// attempt: no proof, nothing appended.
    pub fn certify(&mut self, update: ModelUpdate, weights: &[f32], attempt: u32) -> Result<Certified, FederationError> {
        let round = update.round;
        let value = update.value();
        let members: Vec<Identity> = self.validators.iter().map(|&i| self.workers[i].clone()).collect();
        let net = self.section.net();
        let agreement = agree_with(&members, &self.behaviors, value, &net, mix_seed(&[self.seed, round, attempt as u64, 0xbf7]))
            .map_err(trust_err)?;
        let model_hash = self.ledger.put_weights(weights).map_err(trust_err)?;
        if model_hash != update.model_hash {
            return Err(FederationError::input("model", "its hash changed while it was certified"));
        }
        let proven = self.ledger.record_proven(&self.coordinator, update, agreement.proof.clone()).map_err(trust_err)?;
        Ok(Certified {
            weights: decode_f32(&proven).map_err(trust_err)?,
            view: agreement.proof.view,
            decided_ms: agreement.decided_ms,
            messages: agreement.messages,
            blocks: self.ledger.blocks().len() as u64,
        })
    }

    /// The ID of worker `i`.
    pub fn id(&self, i: usize) -> &SpiffeId {
        self.workers[i].id()
    }

    /// A `MODEL_UPDATE` for `round`'s `weights`.
    #[allow(clippy::too_many_arguments)]
    pub fn model_update(
        &self,
        round: u64,
        weights: &[f32],
        rule: String,
        participants: &[usize],
        set_aside: Vec<(usize, String)>,
        epsilon: Option<f64>,
        updates: Vec<SignedUpdate>,
    ) -> Result<ModelUpdate, FederationError> {
        Ok(ModelUpdate {
            round,
            model_hash: weights_hash(weights).map_err(trust_err)?,
            rule,
            participants: participants.iter().map(|&i| self.id(i).clone()).collect(),
            set_aside: set_aside.into_iter().map(|(i, reason)| SetAside { node: self.id(i).clone(), reason }).collect(),
            epsilon,
            updates,
        })
    }
}
