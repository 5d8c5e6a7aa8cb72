//! The runtime acts exactly like the trained burn policy it was exported from.

mod common;

use meshrl_runtime::Policy;

#[test]
fn runtime_matches_burn_policy_on_10k_observations() {
    let (policy, path) = common::trained_export("parity", false);
    let runtime = Policy::from_bytes(&std::fs::read(&path).unwrap()).expect("load export");
    assert_eq!(runtime.obs_dim(), policy.obs_dim());
    assert_eq!(runtime.num_actions(), policy.max_neighbors());
    assert_eq!(runtime.hidden(), policy.hidden());

    let n = 10_000;
    let (obs, mask, d, k) = common::env_observations(n, 11);
    let burn_logits = policy.logits(&obs);
    let burn_actions = policy.act(&obs, &mask, true, 0);
    let mut scratch = runtime.scratch();
    let mut worst = 0.0f32;
    let mut spread = 0.0f32;
    let mut probs = vec![0.0f32; k];
    for i in 0..n {
        let o = &obs[i * d..(i + 1) * d];
        let m: Vec<bool> = mask[i * k..(i + 1) * k].iter().map(|&v| v != 0).collect();
        let want = &burn_logits[i * k..(i + 1) * k];
        let got = runtime.logits(o, &mut scratch).unwrap().to_vec();
        for (g, w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs());
        }
        spread = spread.max(want.iter().cloned().fold(f32::MIN, f32::max) - want.iter().cloned().fold(f32::MAX, f32::min));
        let a = runtime.act(o, &m, &mut scratch).unwrap();
        assert_eq!(a as i64, burn_actions[i], "observation {i}: next hop differs");
        runtime.probs(o, &m, &mut scratch, &mut probs).unwrap();
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for s in 0..k {
            assert!(m[s] || probs[s] == 0.0, "masked slot {s} has probability");
        }
        assert_eq!(
            (0..k).max_by(|&x, &y| probs[x].total_cmp(&probs[y]).then(y.cmp(&x))).unwrap(),
            a,
            "probs and act disagree on observation {i}"
        );
    }
    let mut histogram = vec![0usize; k];
    burn_actions.iter().for_each(|&a| histogram[a as usize] += 1);
    eprintln!("largest logit difference {worst:e}; next hops per slot {histogram:?}");
    assert!(worst <= 1e-5, "largest logit difference {worst}");
    assert!(
        histogram.iter().filter(|&&c| c > 0).count() >= 3,
        "the policy always picks the same few slots: {histogram:?}"
    );
    // The policy was trained: its logits are not all alike (a test of nothing otherwise).
    assert!(spread > 0.1, "logits barely vary ({spread}); was the policy trained?");
}

#[test]
fn export_with_critic_loads_and_keeps_the_model_card() {
    let (_, path) = common::trained_export("critic", true);
    let bytes = std::fs::read(&path).unwrap();
    let runtime = Policy::from_bytes(&bytes).expect("load export with critic");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert!(header.get("critic.0.weight").is_some());
    let meta = &header["__metadata__"];
    assert_eq!(meta["includes_critic"], "true");
    assert_eq!(meta["checksum"], format!("fnv1a64:{:016x}", runtime.checksum()));
    let card: serde_json::Value = serde_json::from_str(meta["model_card"].as_str().unwrap()).unwrap();
    assert_eq!(card["architecture"]["hidden"], serde_json::json!([64, 64]));
    assert_eq!(card["training_config"]["test"], "critic");
    assert_eq!(card["observation"]["constants"]["hops_scale"], 32.0);
}

#[test]
fn observation_layout_matches_the_environment() {
    // The runtime keeps its own copy (it cannot depend on the environment crate).
    assert_eq!(meshrl_runtime::FEATURE_NAMES, meshrl_env::obs::FEATURE_NAMES);
    assert_eq!(meshrl_runtime::FEATURES_PER_NEIGHBOR, meshrl_env::obs::FEATURES_PER_NEIGHBOR);
}
