//! End-to-end training throughput on the CPU (`flex`): env-steps/s of full PPO updates
//! (rollout + GAE + minibatch epochs) at num_envs ∈ {8, 256, 4096}, split into environment,
//! policy inference and update time. Two settings: a throughput config (4 epochs, 4 minibatches
//! per epoch) and the prototype's (10 epochs, minibatches of 64).
//!
//! cargo bench -p meshrl-ppo --bench train_sps
//!
//! For other machines (`scripts/bench-gpu`): `MESHRL_BENCH_DEVICE` (`cpu`, `wgpu`, `cuda`, `auto`;
//! default `auto`) picks the backend and `MESHRL_BENCH_NUM_ENVS` (comma-separated, e.g.
//! `4096,16384,65536`) the sizes; the prototype setting runs only where its batch fits 4,096.

use meshrl_env::EnvConfig;
use meshrl_ppo::{DeviceChoice, PpoConfig, Trainer};

/// Sizes from `MESHRL_BENCH_NUM_ENVS`, else 8, 256 and 4,096.
fn sizes() -> Vec<usize> {
    match std::env::var("MESHRL_BENCH_NUM_ENVS") {
        Ok(list) => list
            .split(',')
            .map(|x| {
                x.trim()
                    .parse::<usize>()
                    .expect("MESHRL_BENCH_NUM_ENVS: comma-separated counts")
            })
            .collect(),
        Err(_) => vec![8, 256, 4096],
    }
}

/// Backend from `MESHRL_BENCH_DEVICE`, else `auto`.
fn device() -> DeviceChoice {
    match std::env::var("MESHRL_BENCH_DEVICE") {
        Ok(name) => name
            .parse::<DeviceChoice>()
            .expect("MESHRL_BENCH_DEVICE: cpu, wgpu, cuda or auto"),
        Err(_) => DeviceChoice::Auto,
    }
}

fn main() {
    let mut env = EnvConfig::from_toml_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/env/small.toml"
    ))
    .unwrap();
    env.env.envs_per_twin = 4;
    env.reward.hop_cost = 0.5;
    let device = device();
    println!("| setting | device | num_envs | batch | SPS | env | inference | update |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (label, prototype) in [
        ("throughput (4 epochs × 4 minibatches)", false),
        ("prototype (10 epochs, minibatch 64)", true),
    ] {
        for num_envs in sizes() {
            let num_steps = if num_envs >= 4096 {
                16
            } else if num_envs >= 256 {
                32
            } else {
                128
            };
            let batch = num_envs * num_steps;
            if prototype && batch > 4096 {
                continue; // 10 epochs of minibatch 64 over 65k samples: minutes per update
            }
            let cfg = PpoConfig {
                num_envs,
                num_steps,
                epochs: if prototype { 10 } else { 4 },
                minibatch_size: if prototype { 64 } else { batch / 4 },
                device,
                ..PpoConfig::default()
            };
            let mut t = Trainer::new(env.clone(), cfg).unwrap();
            t.update(3e-4).unwrap(); // warm-up
            let (mut steps, mut wall, mut env_s, mut inf_s, mut upd_s) =
                (0u64, 0f64, 0f64, 0f64, 0f64);
            let start = std::time::Instant::now();
            while wall < 3.0 || steps < 3 * batch as u64 {
                let s = t.update(3e-4).unwrap();
                steps += batch as u64;
                env_s += s.env_s;
                inf_s += s.inference_s;
                upd_s += s.update_s;
                wall = start.elapsed().as_secs_f64();
            }
            println!(
                "| {label} | {} | {num_envs} | {batch} | {:.0} | {:.0} % | {:.0} % | {:.0} % |",
                t.learner.device_name(),
                steps as f64 / wall,
                100.0 * env_s / wall,
                100.0 * inf_s / wall,
                100.0 * upd_s / wall
            );
        }
    }
}
