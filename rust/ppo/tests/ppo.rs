//! Fast checks of the PPO pieces (the learning runs are in tests/learning.rs).

use meshrl_env::EnvConfig;
use meshrl_ppo::{PpoConfig, TrainConfig, Trainer};

fn env() -> EnvConfig {
    let mut cfg = EnvConfig::from_toml_file(format!(
        "{}/../../configs/env/small.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    cfg.topology.max_neighbors = 16; // many empty (masked) slots
    cfg
}

fn tiny(seed: u64) -> PpoConfig {
    PpoConfig {
        num_envs: 8,
        num_steps: 16,
        epochs: 2,
        minibatch_size: 32,
        seed,
        ..PpoConfig::default()
    }
}

#[test]
fn config_errors_name_the_field() {
    for (cfg, field) in [
        (
            PpoConfig {
                hidden: vec![],
                ..tiny(0)
            },
            "ppo.hidden",
        ),
        (
            PpoConfig {
                learning_rate: -1.0,
                ..tiny(0)
            },
            "ppo.learning_rate",
        ),
        (
            PpoConfig {
                gamma: 1.5,
                ..tiny(0)
            },
            "ppo.gamma",
        ),
        (
            PpoConfig {
                minibatch_size: 1000,
                ..tiny(0)
            },
            "ppo.minibatch_size",
        ),
        (
            PpoConfig {
                max_grad_norm: f32::NAN,
                ..tiny(0)
            },
            "ppo.max_grad_norm",
        ),
    ] {
        let e = Trainer::new(env(), cfg)
            .err()
            .expect("invalid config accepted")
            .to_string();
        assert!(e.contains(field), "{e}");
    }
    let e = TrainConfig::load("/nonexistent/train.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/train.toml"), "{e}");
}

#[test]
fn shipped_training_configs_load() {
    for name in ["small", "dynamic"] {
        let (cfg, env) = TrainConfig::load(format!(
            "{}/../../configs/train/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert!(cfg.total_steps > 0);
        assert_eq!(env.reward.hop_cost, 0.5);
        assert_eq!(env.env.envs_per_twin, 4);
    }
}

#[test]
fn masked_slots_are_never_chosen() {
    let trainer = Trainer::new(env(), tiny(0)).unwrap();
    let k = 16;
    let obs = vec![0.3f32; 200 * (k * 6 + 1)];
    let mask: Vec<i8> = (0..200 * k).map(|i| ((i % k) % 3 == 1) as i8).collect();
    for deterministic in [true, false] {
        for (row, &a) in trainer
            .act(&obs, &mask, deterministic, 5)
            .iter()
            .enumerate()
        {
            assert_eq!(
                mask[row * k + a as usize],
                1,
                "row {row} picked masked slot {a}"
            );
        }
    }
}

/// Bit-for-bit on one thread. On several, flex sums tensors of more than 64K elements as
/// `par_chunks(64K).sum()`, and rayon combines the partial sums in a scheduling-dependent order.
#[test]
fn same_seed_same_training_on_the_cpu() {
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let run = |seed| {
        one_thread.install(|| {
            let mut t = Trainer::new(env(), tiny(seed)).unwrap();
            let s = t.train(8 * 16 * 3, |_| true).unwrap();
            let obs = vec![0.1f32; 4 * (16 * 6 + 1)];
            let mask = vec![1i8; 4 * 16];
            (
                s.policy_loss.to_bits(),
                s.value_loss.to_bits(),
                t.act(&obs, &mask, false, 3),
            )
        })
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3).0, run(4).0);
}

#[test]
fn an_update_reports_finite_metrics_and_counts_steps() {
    let mut t = Trainer::new(env(), tiny(1)).unwrap();
    let mut seen = 0;
    let last = t
        .train(8 * 16 * 2, |s| {
            seen += 1;
            assert!(s.policy_loss.is_finite() && s.value_loss.is_finite() && s.entropy > 0.0);
            assert!(s.approx_kl.is_finite() && (0.0..=1.0).contains(&s.clipfrac));
            true
        })
        .unwrap();
    assert_eq!(seen, 2);
    assert_eq!(last.global_step, 8 * 16 * 2);
    assert_eq!(t.global_step(), 8 * 16 * 2);
}
