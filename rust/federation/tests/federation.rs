//! The federation's contracts: determinism, faults, Byzantine workers, checkpoints, errors.

mod common;

use common::{config, configs, run};
use meshrl_federation::{Federation, FederationConfig, FederationError, NodeState};

#[test]
fn same_seed_same_global_model_and_another_seed_another() {
    let a = run(config("", ""), 2);
    let b = run(config("", ""), 2);
    assert_eq!(a.model_hash(), b.model_hash());
    let timeless = |f: &Federation| {
        f.history().iter().map(|r| meshrl_federation::RoundReport { wall_s: 0.0, ..r.clone() }).collect::<Vec<_>>()
    };
    assert_eq!(timeless(&a), timeless(&b));
    let mut cfg = config("", "");
    cfg.federation.seed = 4;
    assert_ne!(run(cfg, 2).model_hash(), a.model_hash());
}

#[test]
fn every_round_completes_or_is_retried_under_faults_and_nan_never_reaches_the_model() {
    let cfg = config(
        "max_retries = 3\nquorum = 0.4",
        "[faults]\ndropout = 0.3\ncrash = 0.1\nstraggle = 0.2\nnan = 0.2\n[network]\nduplicate = 0.3",
    );
    let mut fed = Federation::new(cfg).unwrap();
    fed.run(6, |_| true).unwrap();
    let (mut excluded, mut lost, mut duplicates) = (0, 0, 0);
    for r in fed.history() {
        assert!(r.completed || r.attempts == 4, "round {} gave up after {} attempts", r.round, r.attempts);
        if !r.completed {
            assert!(r.failure.is_some());
        }
        let mut seen = r.participants.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), r.participants.len(), "an update counted twice in round {}", r.round);
        assert_eq!(r.samples, r.participants.len() as u64 * 128);
        for (w, why) in &r.excluded {
            assert!(!r.participants.contains(w));
            assert!(why.contains("non-finite"), "{why}");
        }
        for w in r.lost.iter().chain(&r.stragglers) {
            assert!(!r.participants.contains(w));
        }
        excluded += r.excluded.len();
        lost += r.lost.len();
        duplicates += r.duplicates_ignored;
    }
    assert!(excluded > 0 && lost > 0 && duplicates > 0, "faults were drawn: {excluded} {lost} {duplicates}");
    assert!(fed.global_weights().iter().all(|w| w.is_finite()));
    assert_eq!(fed.total_samples(), fed.history().iter().map(|r| r.samples).sum::<u64>());
}

#[test]
fn crashed_workers_turn_suspect_then_dead_and_are_not_sampled() {
    let cfg = config("max_retries = 3\nquorum = 0.3", "[faults]\ncrash = 0.5");
    let mut fed = Federation::new(cfg).unwrap();
    fed.run(6, |_| true).unwrap();
    let last = fed.history().last().unwrap();
    let t = last.virtual_time_s;
    let states = fed.node_states(t);
    assert!(states.iter().any(|s| *s == NodeState::Dead || *s == NodeState::Suspect), "{states:?}");
    assert!(last.alive < fed.num_workers());
    assert!(states.iter().filter(|s| **s == NodeState::Alive).count() >= 1);
}

#[test]
fn a_robust_rule_sets_the_sign_flippers_aside() {
    let cfg = config(
        "rule = \"multi_krum\"\nassumed_byzantine = 2",
        "[attack]\nkind = \"sign_flip\"\nfraction = 0.2\nscale = 4.0",
    );
    let byz: usize = Federation::new(cfg.clone()).unwrap().byzantine().iter().filter(|b| **b).count();
    assert_eq!(byz, 4);
    let fed = run(cfg, 3);
    let (mut in_round, mut caught) = (0, 0);
    for r in fed.history() {
        let flippers: Vec<usize> =
            r.participants.iter().copied().filter(|&w| fed.byzantine()[w]).collect();
        in_round += flippers.len();
        caught += flippers.iter().filter(|w| r.set_aside.contains(w)).count();
    }
    assert!(in_round > 0);
    assert_eq!(caught, in_round, "multi-Krum kept a sign flipper");
}

#[test]
fn a_resumed_federation_ends_with_the_same_model() {
    let dir = std::env::temp_dir().join(format!("meshrl-fed-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("federation.ckpt");
    let cfg = config("server_momentum = 0.5", "[faults]\ndropout = 0.2");
    let mut a = Federation::new(cfg.clone()).unwrap();
    a.run(2, |_| true).unwrap();
    a.save_checkpoint(&path).unwrap();
    a.run(2, |_| true).unwrap();
    let mut b = Federation::resume(&path).unwrap();
    assert_eq!(b.round(), 2);
    b.run(2, |_| true).unwrap();
    assert_eq!(a.model_hash(), b.model_hash());

    // A flipped byte is a clear error.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = Federation::resume(&path).err().unwrap().to_string();
    assert!(err.contains("checksum"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_configs_name_the_field() {
    let cases = [
        ("clients_per_round = 50", "federation.clients_per_round"),
        ("rule = \"krum2\"", "federation.rule"),
        ("coordinator_node = 99", "federation.coordinator_node"),
        ("quorum = 0.0", "federation.quorum"),
        ("server_momentum = 1.0", "federation.server_momentum"),
        ("round_deadline_s = nan", "federation.round_deadline_s"),
    ];
    for (line, field) in cases {
        let text = format!(
            "env = \"../env/mesh20.toml\"\n[federation]\n{line}\n[ppo]\nnum_envs = 8\nnum_steps = 16\nminibatch_size = 64\n"
        );
        let err = FederationConfig::from_toml_str(&text, &configs(), "t.toml")
            .and_then(Federation::new)
            .err()
            .unwrap_or_else(|| panic!("{line} was accepted"));
        assert!(err.to_string().contains(field), "{line}: {err}");
    }
    let err = FederationConfig::from_toml_str("env = \"../env/mesh20.toml\"\n[faults]\ndropout = 1.5\n", &configs(), "t.toml")
        .err()
        .unwrap();
    assert!(matches!(err, FederationError::InvalidConfig { ref field, .. } if field == "faults.dropout"), "{err}");
}

#[test]
fn sites_split_a_larger_mesh_into_workers() {
    let mut cfg = config("", "");
    cfg.federation.sites = 5;
    cfg.federation.clients_per_round = 4;
    let fed = Federation::new(cfg).unwrap();
    assert_eq!(fed.num_workers(), 5);
    let mut all: Vec<u32> = (0..5).flat_map(|i| fed.site(i).to_vec()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<u32>>());
}

#[test]
fn secure_aggregation_gives_the_unmasked_model_within_quantization_error() {
    let plain = run(config("", ""), 2);
    let secure = run(config("", "[secagg]\nclip_range = 1.0\nmodulus_bits = 32"), 2);
    let worst = plain
        .global_weights()
        .iter()
        .zip(secure.global_weights())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // 8 clients, 32-bit words over [-1, 1]: a step of 2 / 2^32 × 8 per round, plus f32 rounding.
    assert!(worst < 1e-5, "secure and plain global models differ by {worst}");
    assert!(plain.model_hash() != "");

    let err = FederationConfig::from_toml_str(
        "env = \"../env/mesh20.toml\"\n[federation]\nrule = \"median\"\n[secagg]\n",
        &configs(),
        "t.toml",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("secagg") && err.contains("only the sum"), "{err}");
}

#[test]
fn differential_privacy_reports_a_growing_epsilon() {
    let fed = run(config("", "[privacy]\nnoise_multiplier = 1.0\nclip_norm = 0.05"), 3);
    let eps: Vec<f64> = fed.history().iter().filter_map(|r| r.epsilon).collect();
    assert_eq!(eps.len(), 3);
    assert!(eps.windows(2).all(|w| w[1] > w[0]) && eps[0] > 0.0, "{eps:?}");
    assert!(fed.history().iter().all(|r| r.clip_norm == Some(0.05)));
    assert!(fed.global_weights().iter().all(|w| w.is_finite()));
    // A robust rule with DP: noise scaled to the rule's sensitivity, still finite.
    let fed = run(config("rule = \"trimmed_mean\"", "[privacy]\nnoise_multiplier = 1.0\nclip_norm = 0.05"), 1);
    assert!(fed.history()[0].completed && fed.history()[0].epsilon.is_some());
}

#[test]
fn adaptive_clipping_runs_with_few_clients_and_moves_the_clip_norm() {
    let fed = run(config("", "[privacy]\nnoise_multiplier = 1.0\nclip_norm = 0.001\nadaptive = true"), 3);
    assert!(fed.history().iter().all(|r| r.completed), "{:?}", fed.history()[0].failure);
    let c: Vec<f64> = fed.history().iter().filter_map(|r| r.clip_norm).collect();
    // Every update is far above C = 0.001, so C must grow.
    assert!(c[2] > c[0], "{c:?}");
}
