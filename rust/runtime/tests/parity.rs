//! The runtime acts exactly like the trained burn policy it was exported from, for both
//! architectures and both feature sets; version 1 files still load.

mod common;

use meshrl_env::FeatureSet;
use meshrl_ppo::Architecture;
use meshrl_runtime::Policy;

fn runtime_matches_burn(arch: Architecture, features: FeatureSet) {
    let name = common::variant_name(arch, features);
    let (policy, path) = common::trained_export(arch, features, "parity", false);
    let runtime = Policy::from_bytes(&std::fs::read(&path).unwrap()).expect("load export");
    assert_eq!(runtime.obs_dim(), policy.obs_dim());
    assert_eq!(runtime.num_actions(), policy.max_neighbors());
    assert_eq!(runtime.hidden(), policy.hidden());
    assert_eq!(runtime.feature_set(), features);
    assert_eq!(runtime.architecture().name(), if arch == Architecture::Slots { "slots" } else { "mlp" });
    assert_eq!(runtime.format_version(), meshrl_runtime::EXPORT_VERSION);
    assert_eq!(runtime.obs_spec().obs_dim(), features.obs_dim(runtime.num_actions()));

    let n = 10_000;
    let (obs, mask, d, k) = common::env_observations(n, 11, features);
    assert_eq!(d, runtime.obs_dim());
    let burn_logits = policy.logits(&obs).expect("burn logits");
    let burn_actions = policy.act(&obs, &mask, true, 0).expect("burn act");
    let mut scratch = runtime.scratch();
    let mut worst = 0.0f32;
    let mut spread = 0.0f32;
    let mut ties = 0usize;
    let mut probs = vec![0.0f32; k];
    for i in 0..n {
        let o = &obs[i * d..(i + 1) * d];
        let m: Vec<bool> = mask[i * k..(i + 1) * k].iter().map(|&v| v != 0).collect();
        let want = &burn_logits[i * k..(i + 1) * k];
        let got = runtime.logits(o, &mut scratch).unwrap().to_vec();
        for (g, w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs());
        }
        let (hi, lo) = want.iter().fold((f32::MIN, f32::MAX), |(hi, lo), &w| (hi.max(w), lo.min(w)));
        spread = spread.max(hi - lo);
        let a = runtime.act(o, &m, &mut scratch).unwrap();
        let b = burn_actions[i] as usize;
        if a != b {
            // Only a tie may go either way: two slots whose logits are equal to rounding (the
            // `slots` actor scores identical neighbours identically).
            assert!(
                (want[a] - want[b]).abs() <= 1e-5 && (got[a] - got[b]).abs() <= 1e-5,
                "{name}, observation {i}: next hop {a}, burn's {b}; logits {got:?}, burn's {want:?}"
            );
            ties += 1;
        }
        runtime.probs(o, &m, &mut scratch, &mut probs).unwrap();
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for s in 0..k {
            assert!(m[s] || probs[s] == 0.0, "{name}: masked slot {s} has probability");
        }
        assert_eq!(
            (0..k).max_by(|&x, &y| probs[x].total_cmp(&probs[y]).then(y.cmp(&x))).unwrap(),
            a,
            "{name}: probs and act disagree on observation {i}"
        );
    }
    let mut histogram = vec![0usize; k];
    burn_actions.iter().for_each(|&a| histogram[a as usize] += 1);
    eprintln!(
        "{name}: largest logit difference {worst:e}; {ties} ties broken otherwise; next hops per \
         slot {histogram:?}"
    );
    assert!(worst <= 1e-5, "{name}: largest logit difference {worst}");
    assert!(ties <= n / 1000, "{name}: {ties} of {n} next hops differ (near-ties)");
    assert!(
        histogram.iter().filter(|&&c| c > 0).count() >= 3,
        "{name}: the policy always picks the same few slots: {histogram:?}"
    );
    // The policy was trained: its logits are not all alike (a test of nothing otherwise).
    assert!(spread > 0.1, "{name}: logits barely vary ({spread}); was the policy trained?");
}

#[test]
fn mlp_on_spec_features_matches_burn() {
    runtime_matches_burn(Architecture::Mlp, FeatureSet::Spec);
}

#[test]
fn mlp_on_routing_features_matches_burn() {
    runtime_matches_burn(Architecture::Mlp, FeatureSet::Routing);
}

#[test]
fn slots_on_spec_features_matches_burn() {
    runtime_matches_burn(Architecture::Slots, FeatureSet::Spec);
}

#[test]
fn slots_on_routing_features_matches_burn() {
    runtime_matches_burn(Architecture::Slots, FeatureSet::Routing);
}

#[test]
fn export_with_critic_loads_and_keeps_the_model_card() {
    for (arch, features) in [
        (Architecture::Mlp, FeatureSet::Spec),
        (Architecture::Slots, FeatureSet::Routing),
    ] {
        let path = common::export(&common::untrained(arch, features), "critic", true);
        let bytes = std::fs::read(&path).unwrap();
        let runtime = Policy::from_bytes(&bytes).expect("load export with critic");
        let (header, _) = common::split(&bytes);
        assert!(header.get("critic.0.weight").is_some());
        assert_eq!(header.get("critic_head.0.weight").is_some(), arch == Architecture::Slots);
        let meta = &header["__metadata__"];
        assert_eq!(meta["includes_critic"], "true");
        assert_eq!(meta["checksum"], format!("fnv1a64:{:016x}", runtime.checksum()));
        let card: serde_json::Value =
            serde_json::from_str(meta["model_card"].as_str().unwrap()).unwrap();
        assert_eq!(card["architecture"]["hidden"], serde_json::json!([64, 64]));
        assert_eq!(card["training_config"]["test"], "critic");
        assert_eq!(card["observation"]["constants"]["hops_scale"], 32.0);
        assert_eq!(card["observation"]["feature_set"], features.name());
    }
}

/// A version 1 file (what meshrl wrote before `feature_set` and `slots`): spec features, an
/// MLP, the checksum over the actor tensors only.
fn as_version_1(bytes: &[u8]) -> Vec<u8> {
    let (mut header, data) = common::split(bytes);
    let actor = common::actor_bytes(&header, &data);
    let meta = header["__metadata__"].as_object_mut().unwrap();
    for key in [
        "architecture",
        "feature_set",
        "per_slot",
        "context",
        "obs.etx_half",
        "obs.etx_excess_scale",
        "obs.path_latency_half_ms",
        "obs.slot_features",
        "obs.context_features",
    ] {
        meta.remove(key);
    }
    meta.insert("format_version".into(), "1".into());
    let c = meshrl_runtime::fnv1a64(meshrl_runtime::FNV_OFFSET, &actor);
    meta.insert("checksum".into(), format!("fnv1a64:{c:016x}").into());
    common::join(&header, &data)
}

#[test]
fn version_1_files_still_load_and_act_the_same() {
    let path = common::export(&common::untrained(Architecture::Mlp, FeatureSet::Spec), "v1", false);
    let v2 = std::fs::read(&path).unwrap();
    let new = Policy::from_bytes(&v2).unwrap();
    let v1 = as_version_1(&v2);
    let old = Policy::from_bytes(&v1).expect("a version 1 file loads");
    assert_eq!(old.format_version(), 1);
    assert_eq!((old.feature_set(), old.architecture().name()), (FeatureSet::Spec, "mlp"));
    assert_eq!(old.obs_dim(), new.obs_dim());
    let (obs, _, d, _) = common::env_observations(50, 2, FeatureSet::Spec);
    let (mut s1, mut s2) = (old.scratch(), new.scratch());
    for o in obs.chunks(d) {
        assert_eq!(old.logits(o, &mut s1).unwrap(), new.logits(o, &mut s2).unwrap());
    }
    // Its checksum covers the weights only: metadata edits there are caught by validation.
    let (mut header, mut data) = common::split(&v1);
    header["__metadata__"]["model_card"] = "{}".into();
    Policy::from_bytes(&common::join(&header, &data)).expect("v1: the card is not checksummed");
    let start = header["actor.0.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    data[start + 2] ^= 1;
    let e = Policy::from_bytes(&common::join(&header, &data)).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
}

#[test]
fn observation_layout_is_the_environments() {
    // One contract, re-exported: the runtime's names are the environment's.
    assert_eq!(meshrl_runtime::FeatureSet::Spec.slot_names(), &meshrl_env::obs::FEATURE_NAMES[..]);
    assert_eq!(
        meshrl_runtime::FeatureSet::Spec.per_slot(),
        meshrl_env::obs::FEATURES_PER_NEIGHBOR
    );
    assert_eq!(meshrl_runtime::EXPORT_FORMAT, meshrl_ppo::EXPORT_FORMAT);
}
