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

#[test]
fn weights_round_trip_and_reject_bad_input() {
    let mut a = Trainer::new(env(), tiny(1)).unwrap();
    a.train(8 * 16, |_| true).unwrap();
    let w = a.get_weights();
    // 97→64→64→16 actor + 97→64→64→1 critic.
    assert_eq!(
        w.len(),
        (97 * 64 + 64 + 64 * 64 + 64 + 64 * 16 + 16) + (97 * 64 + 64 + 64 * 64 + 64 + 64 + 1)
    );
    let mut b = Trainer::new(env(), tiny(2)).unwrap();
    assert_ne!(b.get_weights(), w);
    b.set_weights(&w).unwrap();
    assert_eq!(b.get_weights(), w);
    let obs = vec![0.2f32; 3 * 97];
    let mask = vec![1i8; 3 * 16];
    assert_eq!(a.act(&obs, &mask, false, 9), b.act(&obs, &mask, false, 9));
    // b still trains after its weights were replaced.
    b.train(8 * 16, |_| true).unwrap();

    assert!(b
        .set_weights(&w[1..])
        .unwrap_err()
        .to_string()
        .contains("expected"));
    let mut nan = w.clone();
    nan[5] = f32::NAN;
    assert!(b
        .set_weights(&nan)
        .unwrap_err()
        .to_string()
        .contains("finite"));

    let dir = std::env::temp_dir().join(format!("meshrl-ppo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.weights");
    a.save(&path).unwrap();
    let mut c = Trainer::new(env(), tiny(3)).unwrap();
    c.load(&path).unwrap();
    assert_eq!(c.get_weights(), w);
    // A policy loaded for inference acts exactly as the trainer that saved it.
    let policy = meshrl_ppo::Policy::load(&dir).unwrap();
    assert_eq!((policy.obs_dim(), policy.max_neighbors()), (97, 16));
    assert_eq!(
        policy.act(&obs, &mask, false, 9),
        a.act(&obs, &mask, false, 9)
    );
    assert!(meshrl_ppo::Policy::load(dir.join("missing.weights")).is_err());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "temporary file left behind"
    );

    let bytes = std::fs::read(&path).unwrap();
    for (name, data, needle) in [
        (
            "truncated",
            bytes[..bytes.len() - 7].to_vec(),
            "header says",
        ),
        (
            "flipped",
            {
                let mut b = bytes.clone();
                let n = b.len();
                b[n - 3] ^= 0x40;
                b
            },
            "checksum",
        ),
        ("random", vec![7u8; 300], "bad magic"),
        ("empty", vec![], "bad magic"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        let e = c.load(&p).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains(name), "{name}: {e}");
    }
    let other = PpoConfig {
        hidden: vec![32],
        ..tiny(0)
    };
    let mut d = Trainer::new(env(), other).unwrap();
    assert!(d.load(&path).unwrap_err().to_string().contains("hidden"));
    std::fs::remove_dir_all(dir).ok();
}
