//! Shared by the runtime's tests: briefly trained policies of every architecture and feature
//! set exported to files, and real observations from the environment.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use meshrl_env::{EnvConfig, FeatureSet, VecEnv};
use meshrl_ppo::{Architecture, ExportOptions, PpoConfig, TrainConfig, Trainer};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Every (architecture, feature set) the exporter writes.
pub const VARIANTS: [(Architecture, FeatureSet); 4] = [
    (Architecture::Mlp, FeatureSet::Spec),
    (Architecture::Mlp, FeatureSet::Routing),
    (Architecture::Slots, FeatureSet::Spec),
    (Architecture::Slots, FeatureSet::Routing),
];

fn variant_index(arch: Architecture, features: FeatureSet) -> usize {
    VARIANTS
        .iter()
        .position(|&v| v == (arch, features))
        .expect("a known variant")
}

/// A short name for file names and messages.
pub fn variant_name(arch: Architecture, features: FeatureSet) -> String {
    format!("{arch:?}-{}", features.name()).to_lowercase()
}

pub fn env_config(features: FeatureSet) -> EnvConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/env/small.toml");
    let mut cfg = EnvConfig::from_toml_file(path).expect("small.toml");
    cfg.env.features = features;
    cfg
}

/// The small training config's environment and PPO settings, for `arch` on `features`.
pub fn trainer(arch: Architecture, features: FeatureSet) -> Trainer {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/train/small.toml");
    let loaded = TrainConfig::load(path).expect("small training config");
    let mut env = loaded.mix[0].env.clone();
    env.env.features = features;
    let ppo = PpoConfig {
        architecture: arch,
        ..loaded.cfg.ppo
    };
    Trainer::new(env, ppo).expect("trainer")
}

/// A policy trained with the small training config for 60k steps (once per test binary and
/// variant, so its weights are far from the initial ones).
pub fn trained(arch: Architecture, features: FeatureSet) -> meshrl_ppo::Policy {
    static TRAINED: [OnceLock<meshrl_ppo::Policy>; 4] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    TRAINED[variant_index(arch, features)]
        .get_or_init(|| {
            let mut trainer = trainer(arch, features);
            trainer.train(60_000, |_| true).expect("train");
            trainer.policy()
        })
        .clone()
}

/// An initialized, untrained policy (enough where the weights' values do not matter).
pub fn untrained(arch: Architecture, features: FeatureSet) -> meshrl_ppo::Policy {
    trainer(arch, features).policy()
}

/// Exports `policy` to a fresh file named after `name` (with the critic when `critic`).
pub fn export(policy: &meshrl_ppo::Policy, name: &str, critic: bool) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshrl-runtime-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.safetensors");
    let opts = ExportOptions {
        include_critic: critic,
        training_config: Some(serde_json::json!({"test": name})),
    };
    policy.export(&path, &opts).expect("export");
    path
}

/// A trained policy of the variant and the path of its export.
pub fn trained_export(
    arch: Architecture,
    features: FeatureSet,
    name: &str,
    critic: bool,
) -> (meshrl_ppo::Policy, PathBuf) {
    let policy = trained(arch, features);
    let path = export(&policy, &format!("{name}-{}", variant_name(arch, features)), critic);
    (policy, path)
}

/// `n` observations and masks of `features` seen by a random policy on the small mesh
/// (every one valid: at least one neighbour).
pub fn env_observations(
    n: usize,
    seed: u64,
    features: FeatureSet,
) -> (Vec<f32>, Vec<i8>, usize, usize) {
    let mut cfg = env_config(features);
    cfg.env.envs_per_twin = 8;
    let b = 256;
    let mut env = VecEnv::new(cfg, b).expect("env");
    env.reset(Some(seed)).expect("reset");
    let (d, k) = (env.obs_dim(), env.max_neighbors());
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (mut obs, mut mask) = (Vec::new(), Vec::new());
    while obs.len() < n * d {
        let actions: Vec<i64> = (0..b)
            .map(|i| {
                let m = &env.buffers().mask[i * k..(i + 1) * k];
                let valid: Vec<usize> = (0..k).filter(|&s| m[s] != 0).collect();
                if valid.is_empty() {
                    0
                } else {
                    valid[rng.random_range(0..valid.len())] as i64
                }
            })
            .collect();
        for i in 0..b {
            let m = &env.buffers().mask[i * k..(i + 1) * k];
            if m.iter().any(|&v| v != 0) && obs.len() < n * d {
                obs.extend_from_slice(&env.buffers().obs[i * d..(i + 1) * d]);
                mask.extend_from_slice(m);
            }
        }
        env.step(&actions).expect("step");
    }
    (obs, mask, d, k)
}

/// The header of a safetensors file as JSON and its tensor bytes.
pub fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

pub fn join(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(data);
    out
}

/// The actor tensors' bytes as stored, layer by layer, weight then bias.
pub fn actor_bytes(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0.. {
        let Some(w) = header.get(format!("actor.{i}.weight")) else {
            break;
        };
        for t in [w, &header[format!("actor.{i}.bias")]] {
            let o = &t["data_offsets"];
            out.extend_from_slice(&data[o[0].as_u64().unwrap() as usize..o[1].as_u64().unwrap() as usize]);
        }
    }
    out
}

/// Rewrites the metadata `checksum` so that it holds for the file as it is now (version 2):
/// what a careless tool that "fixes" the checksum after an edit would do.
pub fn resign(header: &mut serde_json::Value, data: &[u8]) {
    let actor = actor_bytes(header, data);
    let meta = header["__metadata__"].as_object().unwrap();
    let c = meshrl_runtime::metadata_checksum(
        &actor,
        meta.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())),
    );
    header["__metadata__"]["checksum"] = format!("fnv1a64:{c:016x}").into();
}
