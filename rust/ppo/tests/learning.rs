//! PPO learns to route: seeded runs that must cross thresholds (a slow tier: run with
//! `cargo test --release -p meshrl-ppo -- --include-ignored`).

use meshrl_env::EnvConfig;
use meshrl_eval::{baseline, evaluate, stats, EvalOptions};
use meshrl_ppo::{PolicyRouter, PpoConfig, Trainer};

/// The named config with 4 environments per twin: 64 environments train on 16 different
/// meshes, so the policy must generalize rather than memorize one topology.
fn env(name: &str) -> EnvConfig {
    let mut cfg = EnvConfig::from_toml_file(format!(
        "{}/../../configs/env/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    cfg.env.envs_per_twin = 4;
    cfg.reward.hop_cost = 0.5;
    cfg
}

fn fast_config(seed: u64) -> PpoConfig {
    PpoConfig {
        num_envs: 64,
        num_steps: 64,
        epochs: 4,
        minibatch_size: 1024,
        learning_rate: 1e-3,
        clip_value_loss: false,
        seed,
        // The seeded numbers below hold on the CPU backend (flex is deterministic; a GPU is not).
        device: meshrl_ppo::DeviceChoice::Cpu,
        ..PpoConfig::default()
    }
}

/// Delivery ratio of a policy vs shortest path on the same packets.
fn delivery(cfg: &EnvConfig, router: &mut dyn meshrl_eval::Router, seed: u64) -> f64 {
    let eps = evaluate(
        cfg,
        router,
        &EvalOptions {
            episodes: 2048,
            num_envs: 64,
            seed,
        },
    )
    .unwrap();
    stats::summarize("p", "s", &eps, 0).delivery_ratio
}

/// Delivery ratio of the trained policy, greedy or sampled.
fn policy_delivery(cfg: &EnvConfig, trainer: &Trainer, deterministic: bool, seed: u64) -> f64 {
    let mut router = PolicyRouter {
        policy: trainer.policy(),
        name: "ppo".into(),
        deterministic,
        seed: 0,
    };
    delivery(cfg, &mut router, seed)
}

#[test]
#[ignore = "slow: learning tier"]
fn ppo_matches_shortest_path_on_the_small_mesh() {
    let cfg = env("small");
    let mut trainer = Trainer::new(cfg.clone(), fast_config(1)).unwrap();
    let t = std::time::Instant::now();
    trainer
        .train(600_000, |s| {
            eprintln!(
                "step {:>7} return {:6.2} delivery {:.3} hops {:.2} pg {:+.4} v {:.3} ent {:.3} kl {:.4} clip {:.3} ev {:.2} sps {:.0} (env {:.2}s inf {:.2}s upd {:.2}s)",
                s.global_step, s.episodic_return, s.delivery_ratio, s.hops, s.policy_loss, s.value_loss, s.entropy,
                s.approx_kl, s.clipfrac, s.explained_variance, s.sps, s.env_s, s.inference_s, s.update_s
            );
            true
        })
        .unwrap();
    eprintln!("trained in {:.1} s", t.elapsed().as_secs_f64());
    let greedy = policy_delivery(&cfg, &trainer, true, 7);
    let learned = policy_delivery(&cfg, &trainer, false, 7);
    eprintln!("greedy {greedy:.3}");
    let sp = delivery(&cfg, baseline("shortest_path", 0).unwrap().as_mut(), 7);
    let random = delivery(&cfg, baseline("random", 0).unwrap().as_mut(), 7);
    eprintln!("delivery: ppo {learned:.3}, shortest path {sp:.3}, random {random:.3}");
    assert!(
        learned >= 0.95 * sp,
        "ppo {learned} < 95% of shortest path {sp}"
    );
}

#[test]
#[ignore = "slow: learning tier"]
fn ppo_beats_random_by_a_wide_margin_on_the_dynamic_mesh() {
    let cfg = env("dynamic");
    let mut trainer = Trainer::new(cfg.clone(), fast_config(2)).unwrap();
    trainer.train(1_000_000, |_| true).unwrap();
    let learned = policy_delivery(&cfg, &trainer, false, 11);
    let random = delivery(&cfg, baseline("random", 0).unwrap().as_mut(), 11);
    let sp = delivery(&cfg, baseline("shortest_path", 0).unwrap().as_mut(), 11);
    eprintln!("dynamic: ppo {learned:.3}, shortest path {sp:.3}, random {random:.3}");
    assert!(
        learned > 2.0 * random && learned > random + 0.2,
        "ppo {learned} vs random {random}"
    );
}

/// The result the project is judged on, in small: a seeded run with the routing features,
/// per-neighbour scoring and the delivery reward beats ETX routing on the dynamic scenario,
/// under the scenario's own load, on packets and meshes it never trained on, with a
/// significant paired difference (greedy, as nodes forward).
#[test]
#[ignore = "slow: learning tier"]
fn ppo_beats_etx_on_the_dynamic_scenario() {
    let (mut trainer, total_steps) = shipped_trainer("dynamic-routing.toml");
    let t = std::time::Instant::now();
    trainer
        .train(total_steps, |s| {
            eprintln!("step {:>8} delivery {:.3} hops {:.2} kl {:.4} sps {:.0}", s.global_step, s.delivery_ratio, s.hops, s.approx_kl, s.sps);
            true
        })
        .unwrap();
    eprintln!("trained in {:.1} s", t.elapsed().as_secs_f64());
    let c = compare_on_the_dynamic_scenario(&trainer);
    for s in &c.summaries {
        eprintln!("{:<24} {:.3} latency {:.1} ms hops {:.2}", s.policy, s.delivery_ratio, s.latency_mean_ms, s.hops_mean);
    }
    assert_greedy_beats_etx(&c, "");
}

/// The sample-efficient variant (`dynamic-routing-4x1024.toml`: 4 epochs of 1,024 instead of 2
/// of 4,096) routes better than ETX after 131,072 steps (16 updates, ~20 s on 2 cores; the
/// learning-rate schedule of its full 1 M steps), paired and significant, on packets and meshes
/// it never trained on: the config behind the time-to-ETX race in BENCHMARKS.md.
#[test]
#[ignore = "slow: learning tier"]
fn the_sample_efficient_config_beats_etx_within_131k_steps() {
    let (mut trainer, total_steps) = shipped_trainer("dynamic-routing-4x1024.toml");
    train_run_until(&mut trainer, total_steps, 131_072, std::time::Instant::now());
    let c = compare_on_the_dynamic_scenario(&trainer);
    assert_greedy_beats_etx(&c, " after 131,072 steps");
}

/// The fast config (`dynamic-routing-fast.toml`: slots [16, 16] ReLU, 64 environments × 8
/// steps, 2 epochs of 128, learning rate 0.004) beats ETX after 8,192 steps (16 updates, ~0.2 s
/// on 2 cores), and by at least 0.04 at the end of its 163,840 steps (~4 s), paired and significant,
/// on packets and meshes it never trained on: the config behind the time-to-ETX race in
/// BENCHMARKS.md.
#[test]
#[ignore = "slow: learning tier"]
fn the_fast_config_beats_etx_within_8k_steps_and_clearly_at_its_end() {
    let (mut trainer, total) = shipped_trainer("dynamic-routing-fast.toml");
    let t = std::time::Instant::now();
    train_run_until(&mut trainer, total, 8_192, t);
    let c = compare_on_the_dynamic_scenario(&trainer);
    assert_greedy_beats_etx(&c, " after 8,192 steps");
    train_run_until(&mut trainer, total, total, t); // the time includes one evaluation
    let c = compare_on_the_dynamic_scenario(&trainer);
    assert_greedy_beats_etx(&c, " at the end");
    assert!(c.paired[1].delivery_diff >= 0.04, "ppo (greedy) − etx at the end: {:+.3} < 0.04", c.paired[1].delivery_diff);
}

/// Trains along the learning-rate schedule of a `total`-step run, from where `trainer` stands,
/// until `until` steps; checks it stopped there and prints the time since `t`.
fn train_run_until(trainer: &mut Trainer, total: u64, until: u64, t: std::time::Instant) {
    trainer.train_run(total, 0, None, |s| s.global_step < until).unwrap();
    assert_eq!(trainer.learner.global_step(), until);
    eprintln!("{until} steps in {:.2} s", t.elapsed().as_secs_f64());
}

/// A trainer on the CPU for `configs/train/<name>` (as `meshrl train` builds it), and the
/// config's total steps.
fn shipped_trainer(name: &str) -> (Trainer, u64) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let loaded = meshrl_ppo::TrainConfig::load(format!("{dir}/../../configs/train/{name}")).unwrap();
    let mut ppo = loaded.cfg.ppo.clone();
    ppo.device = meshrl_ppo::DeviceChoice::Cpu;
    let trainer = Trainer::with_mix(loaded.mix.clone(), ppo, loaded.cfg.reseed_every).unwrap();
    (trainer, loaded.cfg.total_steps)
}

/// The trained policy against every baseline on 4,096 unseen packets of the dynamic scenario
/// (routing features) under its own load.
fn compare_on_the_dynamic_scenario(trainer: &Trainer) -> meshrl_ppo::Comparison {
    let dir = env!("CARGO_MANIFEST_DIR");
    let mut scenario = EnvConfig::from_toml_file(format!("{dir}/../../configs/env/dynamic.toml")).unwrap();
    scenario.env.features = meshrl_env::FeatureSet::Routing;
    meshrl_ppo::compare(&trainer.policy(), "dynamic", &scenario, 4096, 11).unwrap()
}

/// The greedy policy's paired delivery difference with ETX (`c.paired[1]`) is positive and
/// significant; `when` goes into the message.
fn assert_greedy_beats_etx(c: &meshrl_ppo::Comparison, when: &str) {
    let d = &c.paired[1];
    assert_eq!((d.a.as_str(), d.b.as_str()), ("ppo (greedy)", "baseline:etx"));
    let (diff, low, high) = (d.delivery_diff, d.delivery_diff_ci.low, d.delivery_diff_ci.high);
    eprintln!("ppo (greedy) − etx{when}: {diff:+.3} [{low:+.3}, {high:+.3}]");
    assert!(
        d.delivery_significant && diff > 0.0,
        "ppo (greedy) does not beat ETX{when}: {diff:+.3} [{low:+.3}, {high:+.3}]"
    );
}
