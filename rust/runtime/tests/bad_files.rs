//! Every kind of bad policy file is a clear error, never a panic.

mod common;

use meshrl_runtime::{Error, Policy};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;

fn good() -> Vec<u8> {
    let (_, path) = common::trained_export("bad-files", false);
    std::fs::read(path).unwrap()
}

/// The header as JSON and the tensor bytes.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(data);
    out
}

fn edit(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (mut h, data) = split(bytes);
    f(&mut h);
    join(&h, &data)
}

fn error_of(bytes: &[u8]) -> String {
    match Policy::from_bytes(bytes) {
        Ok(_) => panic!("a bad file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_good_file_loads() {
    let bytes = good();
    let p = Policy::from_bytes(&bytes).expect("good file");
    // Re-serializing the header without changes keeps it loadable (the editing is sound).
    Policy::from_bytes(&edit(&bytes, |_| {})).expect("re-joined file");
    assert_eq!(p.num_actions() * 6 + 1, p.obs_dim());
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
    let bytes = good();
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
fn inconsistent_metadata_is_an_error() {
    let bytes = good();
    let cases: [(&str, Option<&str>, &str); 14] = [
        ("obs_dim", Some("44"), "metadata `obs_dim`"),
        ("obs_dim", Some("many"), "not a non-negative integer"),
        ("num_actions", Some("0"), "metadata `num_actions`"),
        ("hidden", Some("64"), "actor.1.weight"),
        ("hidden", Some("64,64,64"), "actor.2.weight"),
        ("hidden", Some("64,0"), "width 0"),
        ("activation", Some("gelu"), "expected `tanh` or `relu`"),
        ("format", Some("pytorch"), "metadata `format`"),
        ("format_version", Some("2"), "reads version 1"),
        ("checksum", Some("fnv1a64:0000000000000000"), "checksum mismatch"),
        ("checksum", Some("crc32:1234"), "metadata `checksum`"),
        ("obs.hops_scale", Some("-1"), "must be positive"),
        ("obs.rssi_center_dbm", Some("NaN"), "not a finite number"),
        ("obs.latency_half_ms", None, "`obs.latency_half_ms`: missing"),
    ];
    for (key, value, expect) in cases {
        let e = error_of(&edit(&bytes, |h| {
            let m = h["__metadata__"].as_object_mut().unwrap();
            match value {
                Some(v) => m.insert(key.into(), v.into()),
                None => m.remove(key),
            };
        }));
        assert!(e.contains(expect), "{key}={value:?}: {e}");
    }
    let e = error_of(&edit(&bytes, |h| {
        h.as_object_mut().unwrap().remove("__metadata__");
    }));
    assert!(e.contains("metadata `format`: missing"), "{e}");
}

#[test]
fn corrupt_or_non_finite_weights_are_errors() {
    let bytes = good();
    let (h, mut data) = split(&bytes);
    let start = h["actor.1.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    data[start + 5] ^= 0x10;
    let e = error_of(&join(&h, &data));
    assert!(e.contains("checksum mismatch"), "{e}");
    let (h, mut data) = split(&bytes);
    data[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let e = error_of(&join(&h, &data));
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
                // Only harmless edits load (header whitespace, metadata not read): it still acts.
                let mut s = p.scratch();
                let obs = vec![0.1f32; p.obs_dim()];
                let mask = vec![true; p.num_actions()];
                p.act(&obs, &mask, &mut s).unwrap();
                loaded += 1;
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 2000, "only {refused} of 3000 mutated files refused ({loaded} loaded)");
}

#[test]
fn bad_calls_are_errors() {
    let p = Policy::from_bytes(&good()).unwrap();
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
