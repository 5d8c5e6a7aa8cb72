//! Shared by the runtime's tests: a briefly trained policy exported to a file, and real
//! observations from the environment.
#![allow(dead_code)]

use std::path::PathBuf;

use meshrl_env::{EnvConfig, VecEnv};
use std::sync::OnceLock;

use meshrl_ppo::{ExportOptions, TrainConfig, Trainer};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

pub fn env_config() -> EnvConfig {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/env/small.toml");
    EnvConfig::from_toml_file(path).expect("small.toml")
}

/// A policy trained with the small training config for 60k steps (once per test binary, so
/// its weights are far from the initial ones), and the path of its export (with the critic
/// when `critic`).
pub fn trained_export(name: &str, critic: bool) -> (meshrl_ppo::Policy, PathBuf) {
    static TRAINED: OnceLock<meshrl_ppo::Policy> = OnceLock::new();
    let policy = TRAINED
        .get_or_init(|| {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/train/small.toml");
            let (cfg, env) = TrainConfig::load(path).expect("small training config");
            let mut trainer = Trainer::new(env, cfg.ppo).expect("trainer");
            trainer.train(60_000, |_| true).expect("train");
            trainer.policy()
        })
        .clone();
    let dir = std::env::temp_dir().join(format!("meshrl-runtime-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.safetensors");
    let opts = ExportOptions {
        include_critic: critic,
        training_config: Some(serde_json::json!({"test": name})),
    };
    policy.export(&path, &opts).expect("export");
    (policy, path)
}

/// `n` observations and masks seen by a random policy on the small mesh (every one valid:
/// at least one neighbour).
pub fn env_observations(n: usize, seed: u64) -> (Vec<f32>, Vec<i8>, usize, usize) {
    let mut cfg = env_config();
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
