//! A small simulated federation written to a ledger: for demos, documentation and tests of
//! the tools that read ledgers (`meshrl ledger`, `meshrl.ledger`).

use std::path::Path;

use crate::error::{invalid, TrustError};
use crate::hash::Hash32;
use crate::identity::{Identity, SpiffeId, TrustBundle};
use crate::pbft::agree;
use crate::pbft::sim::{NetConfig, Rng};
use crate::update::SignedUpdate;

use super::{Genesis, Ledger, ModelUpdate, SetAside};

/// Creates a ledger at `path` with `rounds` proven rounds of a federation of `validators`
/// validators (3f + 1 is best), a coordinator and three workers, all in trust domain
/// `demo.meshrl` with keys derived from `seed`. Each round's proof comes from a real PBFT run
/// ([`agree`]) on a network that drops and delays messages until 200 ms.
pub fn write_demo(
    path: &Path,
    rounds: u64,
    validators: usize,
    seed: u64,
) -> Result<Ledger, TrustError> {
    if validators == 0 || validators > 64 {
        return Err(invalid("validators", "must be in 1..=64"));
    }
    let id = |name: String| SpiffeId::node("demo.meshrl", &name);
    let vals = (0..validators)
        .map(|i| Ok(Identity::from_seed(id(format!("validator-{i}"))?, seed)))
        .collect::<Result<Vec<_>, TrustError>>()?;
    let coordinator = Identity::from_seed(id("coordinator".into())?, seed);
    let workers = (0..3)
        .map(|i| Ok(Identity::from_seed(id(format!("worker-{i}"))?, seed)))
        .collect::<Result<Vec<_>, TrustError>>()?;
    let bundle = TrustBundle::from_keys(
        vals.iter()
            .chain(&workers)
            .chain([&coordinator])
            .map(|i| i.node_key()),
    )?;
    let genesis = Genesis {
        bundle,
        validators: vals.iter().map(|v| v.id().clone()).collect(),
    };
    let mut ledger = Ledger::create(path, &coordinator, genesis)?;
    let mut rng = Rng::new(seed);
    let net = NetConfig {
        gst_ms: 200,
        drop: 0.1,
        max_delay_ms: 40,
        ..NetConfig::synchronous()
    };
    for round in 1..=rounds {
        let weights: Vec<f32> = (0..16)
            .map(|_| (rng.below(2_000) as f32 - 1_000.0) / 1_000.0)
            .collect();
        let model_hash = ledger.put_weights(&weights)?;
        let updates = workers
            .iter()
            .map(|w| SignedUpdate::sign(w, round, 0, Hash32::of(&rng.next_u64().to_le_bytes())))
            .collect();
        let update = ModelUpdate {
            round,
            model_hash,
            rule: "trimmed_mean(beta=0.2)".into(),
            participants: workers[..2].iter().map(|w| w.id().clone()).collect(),
            set_aside: vec![SetAside {
                node: workers[2].id().clone(),
                reason: "trimmed: outside the 20% band".into(),
            }],
            epsilon: Some(0.25 * round as f64),
            updates,
        };
        let value = update.value();
        ledger.append_model_update(&coordinator, update)?;
        let proof = agree(&vals, value, &net, seed.wrapping_add(round))?;
        ledger.append_consensus_proof(&coordinator, proof)?;
    }
    Ok(ledger)
}
