//! `[trust]` in the federation: signed updates, PBFT on every round's model, the ledger, and
//! only proven models distributed.

mod common;

use std::path::{Path, PathBuf};

use common::{config, run};
use meshrl_federation::{Federation, FederationConfig, FederationError};

/// A fresh folder for one test's ledger.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshrl-fed-trust-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn trusted(ledger: &Path, federation: &str, trust: &str, extra: &str) -> FederationConfig {
    let trust = format!("[trust]\nledger = \"{}\"\n{trust}\n{extra}", ledger.display());
    config(federation, &trust)
}

#[test]
fn every_round_is_agreed_recorded_and_served_from_the_ledger() {
    let dir = scratch("proven");
    let ledger = dir.join("ledger.mlg");
    let fed = run(trusted(&ledger, "", "validators = 4", ""), 3);
    // Trust adds no noise: the model is the one an untrusted federation computes.
    assert_eq!(fed.model_hash(), run(config("", ""), 3).model_hash());
    let report = meshrl_trust::verify_file(&ledger).unwrap();
    assert_eq!((report.model_updates, report.consensus_proofs), (3, 3));
    let latest = report.latest_proven.unwrap();
    assert_eq!(latest.round, 3);
    assert_eq!(latest.model_hash.to_hex(), fed.model_hash());
    for (r, round) in fed.history().iter().zip(1u64..) {
        assert!(r.completed, "{r:?}");
        assert_eq!(r.consensus_view, Some(0), "an honest primary decides in view 0");
        assert!(r.consensus_ms.unwrap() > 0.0 && r.consensus_messages.unwrap() > 0);
        assert_eq!(r.ledger_blocks, Some(1 + 2 * round));
        // What a node loads for this round's hash is this round's model.
        let hash = meshrl_trust::Hash32::from_hex(&r.model_hash).unwrap();
        let bytes = meshrl_trust::read_proven(&ledger, &hash).unwrap();
        assert_eq!(meshrl_trust::ledger::decode_f32(&bytes).unwrap().len(), fed.global_weights().len());
    }
    let (vals, byz) = fed.validators().unwrap();
    assert_eq!(vals.len(), 4);
    assert!(byz.iter().all(|b| !b));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn byzantine_validators_within_f_neither_stop_rounds_nor_change_the_model() {
    let clean = run(config("", ""), 2).model_hash();
    for behavior in ["silent", "twins", "forger"] {
        let dir = scratch(behavior);
        let ledger = dir.join("ledger.mlg");
        let trust = format!("validators = 7\nbyzantine_validators = 2\nbyzantine_behavior = \"{behavior}\"");
        let fed = run(trusted(&ledger, "", &trust, ""), 2);
        assert!(fed.history().iter().all(|r| r.completed), "{behavior}: {:?}", fed.history());
        assert_eq!(fed.model_hash(), clean, "{behavior}");
        let report = meshrl_trust::verify_file(&ledger).unwrap();
        assert_eq!(report.consensus_proofs, 2, "{behavior}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn without_a_consensus_proof_a_round_is_not_accepted() {
    let dir = scratch("noproof");
    let ledger = dir.join("ledger.mlg");
    // 2 silent validators of 4 exceed f = 1: no quorum of commits can form.
    let cfg = trusted(&ledger, "max_retries = 1", "validators = 4\nbyzantine_validators = 2\npbft_budget_ms = 3000", "");
    let mut fed = Federation::new(cfg).unwrap();
    let initial = fed.model_hash();
    fed.run(2, |_| true).unwrap();
    for r in fed.history() {
        assert!(!r.completed);
        assert_eq!(r.attempts, 2);
        let why = r.failure.as_deref().unwrap();
        assert!(why.contains("no consensus proof"), "{why}");
    }
    assert_eq!(fed.model_hash(), initial, "an unproven model was adopted");
    let report = meshrl_trust::verify_file(&ledger).unwrap();
    assert_eq!((report.model_updates, report.consensus_proofs), (0, 0));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn signatures_catch_impersonators_that_the_coordinator_alone_cannot_tell() {
    let attack = "[attack]\nkind = \"impersonate\"\nfraction = 0.2\nscale = 4.0";
    // Without trust the impersonated updates are aggregated under honest names.
    let plain = run(config("", attack), 3);
    let sneaked: usize = plain.history().iter().map(|r| r.byzantine_participants).sum();
    assert!(sneaked > 0, "the attack never took part: {:?}", plain.history());
    let dir = scratch("impersonate");
    let fed = run(trusted(&dir.join("ledger.mlg"), "", "validators = 4", attack), 3);
    let mut caught = 0;
    for r in fed.history() {
        assert_eq!(r.byzantine_participants, 0, "{r:?}");
        caught += r.excluded.iter().filter(|(_, why)| why.contains("bad signature")).count();
    }
    assert!(caught >= sneaked, "{caught} impersonations refused, {sneaked} got through without trust");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_resumed_trusted_federation_continues_its_ledger_even_after_a_crash_between_ledger_and_checkpoint() {
    let dir = scratch("resume");
    let (ledger, ckpt) = (dir.join("ledger.mlg"), dir.join("federation.ckpt"));
    let cfg = trusted(&ledger, "", "validators = 4", "");
    let mut a = Federation::new(cfg.clone()).unwrap();
    a.run(2, |_| true).unwrap();
    a.save_checkpoint(&ckpt).unwrap();
    // Round 3 reaches the ledger, then the process "dies" before the next checkpoint.
    a.run(1, |_| true).unwrap();
    drop(a);
    let mut b = Federation::resume(&ckpt).unwrap();
    b.run(2, |_| true).unwrap();
    let report = meshrl_trust::verify_file(&ledger).unwrap();
    assert_eq!((report.model_updates, report.consensus_proofs), (4, 4));
    assert_eq!(report.latest_proven.unwrap().model_hash.to_hex(), b.model_hash());
    assert_eq!(b.model_hash(), run(config("", ""), 4).model_hash());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_ledger_that_does_not_match_the_run_is_refused() {
    let dir = scratch("mismatch");
    let ledger = dir.join("ledger.mlg");
    run(trusted(&ledger, "", "validators = 4", ""), 1);
    // Another seed: other keys and validators, so another genesis.
    let mut other = trusted(&ledger, "", "validators = 4", "");
    other.federation.seed = 11;
    let err = Federation::new(other).unwrap().run_round().err().unwrap();
    assert!(matches!(err, FederationError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("another run"), "{err}");
    // Same keys, another rule: round 1 differs from the one recorded.
    let err = Federation::new(trusted(&ledger, "rule = \"median\"", "validators = 4", ""))
        .unwrap()
        .run_round()
        .err()
        .unwrap();
    assert!(err.to_string().contains("different round-1 model"), "{err}");
    // A resumed run whose model the ledger does not prove: its checkpoint is after round 2,
    // the ledger (put back from a copy) proves round 1 only.
    let (l2, ckpt) = (dir.join("two.mlg"), dir.join("federation.ckpt"));
    let mut fed = Federation::new(trusted(&l2, "", "validators = 4", "")).unwrap();
    fed.run(2, |_| true).unwrap();
    fed.save_checkpoint(&ckpt).unwrap();
    drop(fed);
    for suffix in ["", ".head"] {
        let from = format!("{}{suffix}", ledger.display());
        std::fs::copy(&from, format!("{}{suffix}", l2.display())).unwrap();
    }
    let err = Federation::resume(&ckpt).unwrap().run_round().err().unwrap();
    assert!(err.to_string().contains("does not prove"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_trust_sections_name_the_field() {
    let dir = scratch("bad");
    let ledger = dir.join("l.mlg");
    for (trust, field) in [
        ("validators = 0", "trust.validators"),
        ("validators = 21", "trust.validators"),
        ("byzantine_validators = 5", "trust.byzantine_validators"),
        ("byzantine_behavior = \"sneaky\"", "trust.byzantine_behavior"),
        ("trust_domain = \"bad domain/x\"", "trust.trust_domain"),
        ("pbft_drop = 1.0", "trust.pbft_drop"),
        ("pbft_delay_ms = 0", "trust.pbft_delay_ms"),
    ] {
        let text = format!(
            "env = \"../env/mesh20.toml\"\n[federation]\nclients_per_round = 4\n[trust]\nledger = \"{}\"\n{trust}\n[ppo]\nnum_envs = 8\nnum_steps = 16\nminibatch_size = 64\n",
            ledger.display()
        );
        let err = FederationConfig::from_toml_str(&text, &common::configs(), "t.toml")
            .and_then(Federation::new)
            .err()
            .unwrap_or_else(|| panic!("{trust} was accepted"));
        assert!(err.to_string().contains(field), "{trust}: {err}");
    }
    // No ledger path: the first round says so.
    let mut cfg = trusted(&ledger, "", "", "");
    cfg.trust.as_mut().unwrap().ledger = None;
    let err = Federation::new(cfg).unwrap().run_round().err().unwrap();
    assert!(err.to_string().contains("trust.ledger"), "{err}");
    assert!(!ledger.exists());
    std::fs::remove_dir_all(&dir).ok();
}
