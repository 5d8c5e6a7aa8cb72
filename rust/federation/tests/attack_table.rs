//! The attack × rule table of RESULTS.md (not part of CI; ~15 min on 2 cores):
//!
//!     cargo test --release --workspace --exclude meshrl-python \
//!       --features meshrl-ppo/wgpu,meshrl-cli/wgpu --test attack_table -- --ignored --nocapture
//!
//! 20 workers on configs/federate/mesh20.toml, 20 % Byzantine, the same seed for every cell;
//! each cell is the global model's greedy delivery on 2,000 packets of the whole mesh.

use std::path::Path;

use meshrl_federation::{evaluate_policies, Federation, FederationConfig};

#[test]
#[ignore]
fn attack_by_rule_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/federate/mesh20.toml");
    let base = FederationConfig::load(path).unwrap();
    let rounds: u64 = std::env::var("MESHRL_TABLE_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let attacks = ["none", "sign_flip", "ipm", "alie", "reward_poison"];
    let rules = ["fedavg", "multi_krum", "median", "trimmed_mean"];
    let etx = evaluate_policies(&base.env, &[], &["etx", "random"], 2000, 99).unwrap();
    println!(
        "ETX {:.3}, random {:.3} on the same packets; {rounds} rounds",
        etx.summaries[0].delivery_ratio, etx.summaries[1].delivery_ratio
    );
    println!("| attack \\ rule | {} |", rules.join(" | "));
    println!("|---|{}|", rules.iter().map(|_| "---:").collect::<Vec<_>>().join("|"));
    for attack in attacks {
        let mut row = Vec::new();
        for rule in rules {
            let mut cfg = base.clone();
            cfg.federation.rounds = rounds;
            cfg.federation.eval_every = 0;
            cfg.federation.rule = rule.into();
            cfg.federation.assumed_byzantine = 2;
            cfg.federation.trim_beta = 0.2;
            if attack != "none" {
                cfg.attack.kind = attack.into();
                cfg.attack.fraction = 0.2;
                cfg.attack.scale = if attack == "alie" { 1.5 } else { 4.0 };
            }
            let mut fed = Federation::new(cfg.clone()).unwrap();
            fed.run(rounds, |_| true).unwrap();
            let set_aside: usize = fed
                .history()
                .iter()
                .map(|r| r.set_aside.iter().filter(|&&w| fed.byzantine()[w]).count())
                .sum();
            let byz: usize = fed.history().iter().map(|r| r.byzantine_participants).sum();
            let policy = fed.global_learner().unwrap().policy();
            let c = evaluate_policies(&cfg.env, &[("p".into(), policy)], &[], 2000, 99).unwrap();
            row.push(format!("{:.3} ({set_aside}/{byz})", c.summaries[0].delivery_ratio));
        }
        println!("| {attack} | {} |", row.join(" | "));
    }
}
