//! A small federation for ledger tests: 4 validators, a coordinator, 3 workers.
#![allow(dead_code)]

use meshrl_trust::pbft::{Message, SignedMessage};
use meshrl_trust::{
    ConsensusProof, Genesis, Identity, Ledger, ModelUpdate, SetAside, SignedUpdate, SpiffeId,
    TrustBundle, ValidatorSet, Value,
};

pub struct Fed {
    pub validators: Vec<Identity>,
    pub coordinator: Identity,
    pub workers: Vec<Identity>,
    pub set: ValidatorSet,
    pub genesis: Genesis,
}

fn id(name: &str) -> SpiffeId {
    SpiffeId::node("test.mesh", name).unwrap()
}

pub fn fed() -> Fed {
    let validators: Vec<Identity> = (0..4)
        .map(|i| Identity::from_seed(id(&format!("v{i}")), 11))
        .collect();
    let coordinator = Identity::from_seed(id("coordinator"), 11);
    let workers: Vec<Identity> = (0..3)
        .map(|i| Identity::from_seed(id(&format!("w{i}")), 11))
        .collect();
    let bundle = TrustBundle::from_keys(
        validators
            .iter()
            .chain(workers.iter())
            .chain([&coordinator])
            .map(|i| i.node_key()),
    )
    .unwrap();
    let set = ValidatorSet::new(validators.iter().map(|v| v.node_key()).collect()).unwrap();
    let genesis = Genesis {
        bundle,
        validators: validators.iter().map(|v| v.id().clone()).collect(),
    };
    Fed {
        validators,
        coordinator,
        workers,
        set,
        genesis,
    }
}

impl Fed {
    /// A round's model update over `weights`, stored in `ledger`.
    pub fn update(&self, ledger: &Ledger, round: u64, weights: &[f32]) -> ModelUpdate {
        let model_hash = ledger.put_weights(weights).unwrap();
        let updates = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                SignedUpdate::sign(
                    w,
                    round,
                    0,
                    meshrl_trust::Hash32::of(&[i as u8, round as u8]),
                )
            })
            .collect();
        ModelUpdate {
            round,
            model_hash,
            rule: "trimmed_mean(beta=0.1)".into(),
            participants: self.workers[..2].iter().map(|w| w.id().clone()).collect(),
            set_aside: vec![SetAside {
                node: self.workers[2].id().clone(),
                reason: "krum: not selected".into(),
            }],
            epsilon: Some(0.5 * round as f64),
            updates,
        }
    }

    /// 2f + 1 commits signed directly (what PBFT produces, without running it).
    pub fn proof(&self, value: Value) -> ConsensusProof {
        let commits = (0..3u32)
            .map(|i| {
                SignedMessage::sign(
                    &self.validators[i as usize],
                    &self.set,
                    i,
                    Message::Commit {
                        view: 0,
                        seq: value.round,
                        digest: value.digest(),
                    },
                )
            })
            .collect();
        ConsensusProof {
            validator_set: self.set.id(),
            view: 0,
            seq: value.round,
            value,
            commits,
        }
    }

    /// Appends rounds `from..=to` (update, then proof).
    pub fn rounds(&self, ledger: &mut Ledger, from: u64, to: u64) {
        for r in from..=to {
            let u = self.update(ledger, r, &[r as f32, 1.0, 2.0]);
            let v = u.value();
            ledger.append_model_update(&self.coordinator, u).unwrap();
            ledger
                .append_consensus_proof(&self.coordinator, self.proof(v))
                .unwrap();
        }
    }
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("meshrl-trust-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}
