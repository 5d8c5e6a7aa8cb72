//! Learning tier (`cargo test --test learning -- --ignored`, run by scripts/test): seeded
//! federations on the 20-node mesh that must cross thresholds.

use std::path::Path;

use meshrl_federation::{evaluate_policies, train_central, Federation, FederationConfig};

fn mesh20(edit: impl FnOnce(&mut FederationConfig)) -> FederationConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/federate/mesh20.toml");
    let mut cfg = FederationConfig::load(path).unwrap();
    cfg.federation.eval_every = 0;
    edit(&mut cfg);
    cfg
}

fn delivery(summaries: &meshrl_federation::PolicyComparison, name: &str) -> f64 {
    summaries.summaries.iter().find(|s| s.policy == name).unwrap().delivery_ratio
}

/// Non-IID workers (each learns from its own node's packets) reach at least 90 % of the
/// delivery of a policy trained centrally on the same number of samples, and beat random
/// routing by a wide margin.
#[test]
#[ignore]
fn federated_policy_matches_central_training_on_the_same_samples() {
    let cfg = mesh20(|_| {});
    let mut fed = Federation::new(cfg.clone()).unwrap();
    fed.run(cfg.federation.rounds, |_| true).unwrap();
    let central = train_central(&cfg, fed.total_samples()).unwrap();
    let policies = vec![
        ("federated".to_string(), fed.global_learner().unwrap().policy()),
        ("central".to_string(), central.policy()),
    ];
    let c = evaluate_policies(&cfg.env, &policies, &["etx", "random"], 2000, 99).unwrap();
    let (f, ce, etx, random) =
        (delivery(&c, "federated"), delivery(&c, "central"), delivery(&c, "baseline:etx"), delivery(&c, "baseline:random"));
    eprintln!("federated {f:.3}, central {ce:.3}, ETX {etx:.3}, random {random:.3} ({} samples)", fed.total_samples());
    assert!(f >= 0.9 * ce, "federated {f:.3} < 90 % of central {ce:.3}");
    assert!(f >= random + 0.15, "federated {f:.3} does not beat random {random:.3} by 0.15");
}

/// 20 % sign-flipping workers: FedAvg collapses, multi-Krum keeps ≥ 95 % of the clean
/// federation's delivery.
#[test]
#[ignore]
fn a_robust_rule_survives_sign_flippers_that_break_fedavg() {
    let run = |rule: &str, attack: bool| {
        let cfg = mesh20(|c| {
            c.federation.rounds = 20;
            c.federation.rule = rule.to_string();
            c.federation.assumed_byzantine = 2;
            if attack {
                c.attack.kind = "sign_flip".into();
                c.attack.fraction = 0.2;
                c.attack.scale = 4.0;
            }
        });
        let mut fed = Federation::new(cfg.clone()).unwrap();
        fed.run(cfg.federation.rounds, |_| true).unwrap();
        let policy = fed.global_learner().unwrap().policy();
        let c = evaluate_policies(&cfg.env, &[("p".into(), policy)], &[], 2000, 99).unwrap();
        delivery(&c, "p")
    };
    let clean = run("fedavg", false);
    let fedavg = run("fedavg", true);
    let krum = run("multi_krum", true);
    eprintln!("clean {clean:.3}, FedAvg under attack {fedavg:.3}, multi-Krum under attack {krum:.3}");
    assert!(krum >= 0.95 * clean, "multi-Krum {krum:.3} < 95 % of clean {clean:.3}");
    assert!(fedavg < 0.8 * clean, "FedAvg {fedavg:.3} did not fail (clean {clean:.3})");
}
