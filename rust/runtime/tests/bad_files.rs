//! Every kind of bad policy file is a clear error, never a panic; an edited metadata value is
//! corruption like a flipped weight.

mod common;

use std::sync::OnceLock;

use meshrl_env::FeatureSet;
use meshrl_ppo::Architecture;
use meshrl_runtime::{Error, Policy};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;

/// A good export of the variant (initial weights: their values do not matter here).
fn good_of(arch: Architecture, features: FeatureSet) -> Vec<u8> {
    static FILES: [OnceLock<Vec<u8>>; 4] = [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = common::VARIANTS.iter().position(|&v| v == (arch, features)).unwrap();
    FILES[i]
        .get_or_init(|| {
            let name = format!("bad-files-{}", common::variant_name(arch, features));
            std::fs::read(common::export(&common::untrained(arch, features), &name, false)).unwrap()
        })
        .clone()
}

fn good() -> Vec<u8> {
    good_of(Architecture::Slots, FeatureSet::Routing)
}

fn edit(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (mut h, data) = common::split(bytes);
    f(&mut h);
    common::join(&h, &data)
}

/// Edits the header and fixes the checksum up, so the edit itself is what gets judged.
fn edit_and_resign(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (mut h, data) = common::split(bytes);
    f(&mut h);
    common::resign(&mut h, &data);
    common::join(&h, &data)
}

fn set_meta(key: &str, value: Option<&str>) -> impl FnOnce(&mut Value) {
    let (key, value) = (key.to_string(), value.map(str::to_string));
    move |h: &mut Value| {
        let m = h["__metadata__"].as_object_mut().unwrap();
        match value {
            Some(v) => m.insert(key, v.into()),
            None => m.remove(&key),
        };
    }
}

fn error_of(bytes: &[u8]) -> String {
    match Policy::from_bytes(bytes) {
        Ok(_) => panic!("a bad file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_good_files_load() {
    for (arch, features) in common::VARIANTS {
        let bytes = good_of(arch, features);
        let p = Policy::from_bytes(&bytes).expect("good file");
        // Re-serializing the header without changes keeps it loadable (the editing is sound),
        // and so does re-signing an unchanged file.
        Policy::from_bytes(&edit(&bytes, |_| {})).expect("re-joined file");
        Policy::from_bytes(&edit_and_resign(&bytes, |_| {})).expect("re-signed file");
        assert_eq!(p.num_actions() * features.per_slot() + features.context(), p.obs_dim());
    }
}

#[test]
fn edited_metadata_fails_the_checksum() {
    let bytes = good();
    let edits: [(&str, Option<&str>); 9] = [
        ("activation", Some("relu")),
        ("architecture", Some("mlp")),
        ("feature_set", Some("spec")),
        ("obs.etx_half", Some("4.5")),
        ("obs.rssi_center_dbm", Some("-51")),
        ("hidden", Some("64")),
        ("model_card", Some("{}")),
        ("meshrl_version", None),
        ("an_extra_key", Some("x")),
    ];
    for (key, value) in edits {
        let e = error_of(&edit(&bytes, set_meta(key, value)));
        assert!(e.contains("checksum mismatch"), "{key}={value:?}: {e}");
    }
    // The same for an `mlp` file.
    let mlp = good_of(Architecture::Mlp, FeatureSet::Spec);
    let e = error_of(&edit(&mlp, set_meta("activation", Some("relu"))));
    assert!(e.contains("checksum mismatch"), "{e}");
}

#[test]
fn truncated_files_are_errors() {
    let bytes = good();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut lengths: Vec<usize> = (0..8 + n + 16).collect();
    lengths.extend((8 + n + 16..bytes.len()).step_by(97));
    lengths.push(bytes.len() - 1);
    for len in lengths {
        let e = error_of(&bytes[..len]);
        assert!(e.starts_with("bad policy file"), "truncated to {len}: {e}");
    }
}

#[test]
fn wrong_dtypes_are_errors() {
    let bytes = good();
    let e = error_of(&edit(&bytes, |h| h["actor.0.weight"]["dtype"] = "I32".into()));
    assert!(e.contains("actor.0.weight") && e.contains("dtype is I32"), "{e}");
    // F16 has half the bytes per value: the container itself is inconsistent.
    let e = error_of(&edit(&bytes, |h| h["actor.1.bias"]["dtype"] = "F16".into()));
    assert!(e.contains("not a safetensors file"), "{e}");
}

#[test]
fn wrong_shapes_are_errors() {
    let bytes = good_of(Architecture::Mlp, FeatureSet::Spec);
    let e = error_of(&edit(&bytes, |h| {
        let s = h["actor.0.weight"]["shape"].as_array().unwrap().clone();
        h["actor.0.weight"]["shape"] = Value::Array(vec![s[1].clone(), s[0].clone()]);
    }));
    assert!(e.contains("actor.0.weight") && e.contains("shape"), "{e}");
    let e = error_of(&edit(&bytes, |h| {
        let m = h.as_object_mut().unwrap();
        let v = m.remove("actor.2.bias").unwrap();
        m.insert("actor.2.b".into(), v);
    }));
    assert!(e.contains("actor.2.bias") && e.contains("missing"), "{e}");
}

#[test]
fn inconsistent_metadata_is_an_error_naming_the_key() {
    // Re-signed edits: the checksum holds, the validation must catch them.
    let routing_slots: &[(&str, Option<&str>, &str)] = &[
        ("obs_dim", Some("44"), "metadata `obs_dim`: 44"),
        ("obs_dim", Some("many"), "not a non-negative integer"),
        ("num_actions", Some("0"), "metadata `num_actions`"),
        ("num_actions", Some("7"), "metadata `obs_dim`: 91, but 7 neighbour slots"),
        ("per_slot", Some("6"), "metadata `per_slot`: 6, but the `routing` feature set has 11"),
        ("context", Some("1"), "metadata `context`: 1"),
        ("context", None, "metadata `context`: missing"),
        ("feature_set", Some("spec"), "metadata `per_slot`: 11, but the `spec` feature set has 6"),
        ("feature_set", Some("fancy"), "metadata `feature_set`: `fancy`"),
        ("architecture", Some("mlp"), "tensor `actor.0.weight`: shape is [64, 14]"),
        ("architecture", Some("transformer"), "metadata `architecture`: `transformer`"),
        ("architecture", None, "metadata `architecture`: missing"),
        ("hidden", Some("64"), "actor.1.weight"),
        ("hidden", Some("64,64,64"), "actor.2.weight"),
        ("hidden", Some("64,0"), "width 0"),
        ("activation", Some("gelu"), "expected `tanh` or `relu`"),
        ("obs.hops_scale", Some("-1"), "metadata `obs.hops_scale`: -1, but this runtime normalizes with 32"),
        ("obs.etx_half", Some("5"), "metadata `obs.etx_half`"),
        ("obs.rssi_center_dbm", Some("NaN"), "not a finite number"),
        ("obs.latency_half_ms", None, "`obs.latency_half_ms`: missing"),
        ("obs.path_latency_half_ms", None, "`obs.path_latency_half_ms`: missing"),
        ("obs.slot_features", Some("rssi,latency"), "metadata `obs.slot_features`"),
        ("obs.context_features", Some("queue"), "metadata `obs.context_features`"),
        ("format", Some("pytorch"), "metadata `format`"),
        ("format_version", Some("3"), "metadata `format_version`: `3`; this runtime reads versions 1 to 2"),
        ("format_version", Some("0"), "metadata `format_version`: `0`"),
    ];
    let spec_mlp: &[(&str, Option<&str>, &str)] = &[
        ("obs_dim", Some("91"), "metadata `obs_dim`: 91, but 8 neighbour slots of 6 features"),
        ("feature_set", Some("routing"), "metadata `per_slot`: 6, but the `routing` feature set has 11"),
        ("architecture", Some("slots"), "tensor `actor.0.weight`: shape is [64, 49]"),
        ("per_slot", Some("11"), "metadata `per_slot`: 11"),
    ];
    for (variant, cases) in [
        ((Architecture::Slots, FeatureSet::Routing), routing_slots),
        ((Architecture::Mlp, FeatureSet::Spec), spec_mlp),
    ] {
        let bytes = good_of(variant.0, variant.1);
        for &(key, value, expect) in cases {
            let e = error_of(&edit_and_resign(&bytes, set_meta(key, value)));
            assert!(e.contains(expect), "{variant:?} {key}={value:?}: {e}");
        }
    }
    let bytes = good();
    let e = error_of(&edit(&bytes, set_meta("checksum", Some("fnv1a64:0000000000000000"))));
    assert!(e.contains("checksum mismatch"), "{e}");
    let e = error_of(&edit(&bytes, set_meta("checksum", Some("crc32:1234"))));
    assert!(e.contains("metadata `checksum`"), "{e}");
    let e = error_of(&edit(&bytes, |h| {
        h.as_object_mut().unwrap().remove("__metadata__");
    }));
    assert!(e.contains("metadata `format`: missing"), "{e}");
}

#[test]
fn corrupt_or_non_finite_weights_are_errors() {
    let bytes = good();
    let (h, mut data) = common::split(&bytes);
    let start = h["actor.1.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    data[start + 5] ^= 0x10;
    let e = error_of(&common::join(&h, &data));
    assert!(e.contains("checksum mismatch"), "{e}");
    let (mut h, mut data) = common::split(&bytes);
    data[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    common::resign(&mut h, &data);
    let e = error_of(&common::join(&h, &data));
    assert!(e.contains("actor.1.weight") && e.contains("finite"), "{e}");
}

#[test]
fn random_bytes_and_mutations_never_panic() {
    let bytes = good();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    for _ in 0..5000 {
        let len = rng.random_range(0..512usize);
        let junk: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
        assert!(matches!(Policy::from_bytes(&junk), Err(Error::Format(_))));
        // A plausible header length followed by junk.
        let mut framed = (len as u64).to_le_bytes().to_vec();
        framed.extend(&junk);
        assert!(Policy::from_bytes(&framed).is_err());
    }
    let (mut loaded, mut refused) = (0, 0);
    for _ in 0..3000 {
        let mut m = bytes.clone();
        for _ in 0..rng.random_range(1..4usize) {
            let i = rng.random_range(0..m.len());
            m[i] = rng.random::<u8>();
        }
        match Policy::from_bytes(&m) {
            Ok(p) => {
                // Only harmless edits load (header whitespace, a critic tensor): it still acts.
                let mut s = p.scratch();
                let obs = vec![0.1f32; p.obs_dim()];
                let mask = vec![true; p.num_actions()];
                p.act(&obs, &mask, &mut s).unwrap();
                loaded += 1;
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 2500, "only {refused} of 3000 mutated files refused ({loaded} loaded)");
}

#[test]
fn bad_calls_are_errors() {
    for (arch, features) in common::VARIANTS {
        let p = Policy::from_bytes(&good_of(arch, features)).unwrap();
        let mut s = p.scratch();
        let (d, k) = (p.obs_dim(), p.num_actions());
        let e = p.act(&vec![0.0; d - 1], &vec![true; k], &mut s).unwrap_err();
        assert!(e.to_string().contains("length"), "{e}");
        let mut bad = vec![0.0; d];
        bad[3] = f32::NAN;
        let e = p.act(&bad, &vec![true; k], &mut s).unwrap_err();
        assert!(e.to_string().contains("entry 3 is NaN"), "{e}");
        let e = p.act(&vec![0.0; d], &vec![false; k], &mut s).unwrap_err();
        assert!(e.to_string().contains("no valid neighbour"), "{e}");
        let e = p.act(&vec![0.0; d], &vec![true; k + 1], &mut s).unwrap_err();
        assert!(e.to_string().contains("mask"), "{e}");
        let mut out = vec![0.0; k - 1];
        let e = p.probs(&vec![0.0; d], &vec![true; k], &mut s, &mut out).unwrap_err();
        assert!(e.to_string().contains("`out`"), "{e}");
    }
    // A scratch made for a smaller policy.
    let small = Policy::from_bytes(&good_of(Architecture::Slots, FeatureSet::Spec)).unwrap();
    let big = Policy::from_bytes(&good_of(Architecture::Mlp, FeatureSet::Routing)).unwrap();
    let mut s = small.scratch();
    let e = big.logits(&vec![0.0; big.obs_dim()], &mut s).unwrap_err();
    assert!(e.to_string().contains("scratch"), "{e}");
}
