//! Where a PPO update's time goes, phase by phase, on the config users train the router with
//! (`configs/train/dynamic-routing.toml`: `slots` [32, 32], 256 envs × 32 steps, 2 epochs of
//! 4,096) and on a sample-efficient variant (4 epochs of 1,024, as SB3's settings in
//! `python/benchmarks/time_to_etx.py`), and on the fast config (`dynamic-routing-fast.toml`:
//! `slots` [16, 16] ReLU, 64 envs × 8 steps, 2 epochs of 128), also with tanh and with [32, 32]
//! to separate the activation and the network's width from the batch shape, and on the
//! prototype's settings (`bench_sb3.py`'s SPS race: `mlp` [64, 64] tanh, 10 epochs of 64).
//! Prints one Markdown row per setting: SPS, the share of wall time in env stepping, inference
//! and the update, and the update split into building the minibatch tensors, forward + loss,
//! backward, the global-norm clip and Adam
//! ([`meshrl_ppo::UpdatePhases`]; `flex` is eager, so each phase is timed where it runs).
//!
//! cargo bench -p meshrl-ppo --bench update_profile   # (scripts/test's features: burn once)
//!
//! Each row times the samples of `MESHRL_BENCH_UPDATES` (default 8) updates of 8,192 steps,
//! after one warm-up update. `MESHRL_BENCH_ROWS=prototype` runs only the rows whose label
//! contains that text; `MESHRL_BENCH_DEVICE` (`cpu`, `wgpu`, `cuda`, `auto`) overrides the
//! configs' `device` (default `auto`).

use meshrl_ppo::{TrainConfig, Trainer};

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/train");
    let updates: u32 = std::env::var("MESHRL_BENCH_UPDATES")
        .ok()
        .map(|v| v.parse().expect("MESHRL_BENCH_UPDATES: a count"))
        .unwrap_or(8);
    println!("| setting | SPS | env | inference | update | gather | forward + loss | backward | clip | Adam | minibatches |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    type Edit = fn(&mut meshrl_ppo::PpoConfig);
    let settings: [(&str, &str, Edit); 6] = [
        ("dynamic-routing.toml (2 epochs × 4,096)", "dynamic-routing.toml", |_| {}),
        ("4 epochs × 1,024", "dynamic-routing.toml", |p| {
            p.epochs = 4;
            p.minibatch_size = 1024;
        }),
        ("dynamic-routing-fast.toml ([16, 16] ReLU, 64 × 8, 2 epochs × 128)", "dynamic-routing-fast.toml", |_| {}),
        ("the same with tanh", "dynamic-routing-fast.toml", |p| {
            p.activation = meshrl_ppo::Activation::Tanh
        }),
        ("the same with [32, 32]", "dynamic-routing-fast.toml", |p| p.hidden = vec![32, 32]),
        // bench_sb3.py's SPS race: small.toml's mesh, the prototype's defaults (`mlp` [64, 64],
        // 8 envs × 128 steps, 10 epochs of 64), the value loss unclipped as in SB3's PPO.
        ("prototype (small.toml, `mlp` [64, 64], 8 × 128, 10 epochs × 64)", "small.toml", |p| {
            *p = meshrl_ppo::PpoConfig {
                seed: p.seed,
                device: p.device,
                clip_value_loss: false,
                ..Default::default()
            }
        }),
    ];
    let only = std::env::var("MESHRL_BENCH_ROWS").unwrap_or_default();
    for (label, file, edit) in settings {
        if !label.contains(only.as_str()) {
            continue;
        }
        let loaded = TrainConfig::load(format!("{dir}/{file}")).unwrap();
        let mut ppo = loaded.cfg.ppo.clone();
        edit(&mut ppo);
        if let Ok(name) = std::env::var("MESHRL_BENCH_DEVICE") {
            ppo.device = name.parse().expect("MESHRL_BENCH_DEVICE: cpu, wgpu, cuda or auto");
        }
        let updates = updates * (8192 / (ppo.num_envs * ppo.num_steps)).max(1) as u32;
        let lr = ppo.learning_rate;
        let mut mix = loaded.mix;
        if mix.len() == 1 {
            mix[0].num_envs = ppo.num_envs; // the prototype's 8 envs on small.toml's mesh
        }
        let mut t = Trainer::with_mix(mix, ppo.clone(), loaded.cfg.reseed_every).unwrap();
        t.update(lr).unwrap(); // warm-up
        t.learner.take_update_phases();
        let (mut env_s, mut inf_s, mut upd_s) = (0f64, 0f64, 0f64);
        let start = std::time::Instant::now();
        for _ in 0..updates {
            let s = t.update(lr).unwrap();
            env_s += s.env_s;
            inf_s += s.inference_s;
            upd_s += s.update_s;
        }
        let wall = start.elapsed().as_secs_f64();
        let p = t.learner.take_update_phases();
        let steps = updates as f64 * (ppo.num_envs * ppo.num_steps) as f64;
        let pct = |x: f64| format!("{:.0} %", 100.0 * x / wall);
        let of_update = |x: f64| format!("{:.0} %", 100.0 * x / upd_s);
        println!(
            "| {label} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            steps / wall,
            pct(env_s),
            pct(inf_s),
            pct(upd_s),
            of_update(p.gather_s),
            of_update(p.forward_s),
            of_update(p.backward_s),
            of_update(p.clip_s),
            of_update(p.adam_s),
            p.minibatches
        );
    }
}
