//! End-to-end training throughput on the CPU (`flex`): env-steps/s of full PPO updates
//! (rollout + GAE + minibatch epochs) at num_envs ∈ {8, 256, 4096}, split into environment,
//! policy inference and update time. Two settings: a throughput config (4 epochs, 4 minibatches
//! per epoch) and the prototype's (10 epochs, minibatches of 64).
//!
//! cargo bench -p meshrl-ppo --bench train_sps

use meshrl_env::EnvConfig;
use meshrl_ppo::{PpoConfig, Trainer};

fn main() {
    let mut env = EnvConfig::from_toml_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/env/small.toml"
    ))
    .unwrap();
    env.env.envs_per_twin = 4;
    env.reward.hop_cost = 0.5;
    println!("| setting | num_envs | batch | SPS | env | inference | update |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, prototype) in [
        ("throughput (4 epochs × 4 minibatches)", false),
        ("prototype (10 epochs, minibatch 64)", true),
    ] {
        for num_envs in [8usize, 256, 4096] {
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
                "| {label} | {num_envs} | {batch} | {:.0} | {:.0} % | {:.0} % | {:.0} % |",
                steps as f64 / wall,
                100.0 * env_s / wall,
                100.0 * inf_s / wall,
                100.0 * upd_s / wall
            );
        }
    }
}
