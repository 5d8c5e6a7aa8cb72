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
        let loaded = TrainConfig::load(format!(
            "{}/../../configs/train/{name}.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert!(loaded.cfg.total_steps > 0);
        assert_eq!(loaded.mix.len(), 1);
        assert_eq!(loaded.mix[0].env.reward.hop_cost, 0.5);
        assert_eq!(loaded.mix[0].env.env.envs_per_twin, 4);
    }
    let mesh = TrainConfig::load(format!(
        "{}/../../configs/train/mesh.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(mesh.mix.len() >= 6);
    assert_eq!(mesh.cfg.ppo.num_envs, mesh.mix.iter().map(|m| m.num_envs).sum::<usize>());
    for m in &mesh.mix {
        assert_eq!(m.env.env.features, meshrl_env::FeatureSet::Routing, "overrides apply to every member");
    }
    assert!(mesh.eval.iter().any(|p| p.ends_with("freifunk-ulm.toml")));
}

#[test]
fn masked_slots_are_never_chosen() {
    let trainer = Trainer::new(env(), tiny(0)).unwrap();
    let k = 16;
    let obs = vec![0.3f32; 200 * (k * 6 + 1)];
    let mask: Vec<i8> = (0..200 * k).map(|i| ((i % k) % 3 == 1) as i8).collect();
    for deterministic in [true, false] {
        for (row, &a) in trainer
            .learner
            .act(&obs, &mask, deterministic, 5)
            .unwrap()
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
                t.learner.act(&obs, &mask, false, 3).unwrap(),
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
    assert_eq!(t.learner.global_step(), 8 * 16 * 2);
}

#[test]
fn weights_round_trip_and_reject_bad_input() {
    let mut a = Trainer::new(env(), tiny(1)).unwrap();
    a.train(8 * 16, |_| true).unwrap();
    let w = a.learner.get_weights();
    // 97→64→64→16 actor + 97→64→64→1 critic.
    assert_eq!(
        w.len(),
        (97 * 64 + 64 + 64 * 64 + 64 + 64 * 16 + 16) + (97 * 64 + 64 + 64 * 64 + 64 + 64 + 1)
    );
    let mut b = Trainer::new(env(), tiny(2)).unwrap();
    assert_ne!(b.learner.get_weights(), w);
    b.learner.set_weights(&w).unwrap();
    assert_eq!(b.learner.get_weights(), w);
    let obs = vec![0.2f32; 3 * 97];
    let mask = vec![1i8; 3 * 16];
    assert_eq!(
        a.learner.act(&obs, &mask, false, 9).unwrap(),
        b.learner.act(&obs, &mask, false, 9).unwrap()
    );
    // b still trains after its weights were replaced.
    b.train(8 * 16, |_| true).unwrap();

    assert!(b
        .learner
        .set_weights(&w[1..])
        .unwrap_err()
        .to_string()
        .contains("expected"));
    let mut nan = w.clone();
    nan[5] = f32::NAN;
    assert!(b
        .learner
        .set_weights(&nan)
        .unwrap_err()
        .to_string()
        .contains("finite"));

    let dir = std::env::temp_dir().join(format!("meshrl-ppo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.weights");
    a.learner.save(&path).unwrap();
    let mut c = Trainer::new(env(), tiny(3)).unwrap();
    c.learner.load(&path).unwrap();
    assert_eq!(c.learner.get_weights(), w);
    // A policy loaded for inference acts exactly as the trainer that saved it.
    let policy = meshrl_ppo::Policy::load(&dir).unwrap();
    assert_eq!((policy.obs_dim(), policy.max_neighbors()), (97, 16));
    assert_eq!(
        policy.act(&obs, &mask, false, 9).unwrap(),
        a.learner.act(&obs, &mask, false, 9).unwrap()
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
            "checksum",
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
        let e = c.learner.load(&p).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains(name), "{name}: {e}");
    }
    let other = PpoConfig {
        hidden: vec![32],
        ..tiny(0)
    };
    let mut d = Trainer::new(env(), other).unwrap();
    assert!(d.learner.load(&path).unwrap_err().to_string().contains("hidden"));
    std::fs::remove_dir_all(dir).ok();
}

fn routing_env() -> EnvConfig {
    let mut cfg = env();
    cfg.topology.max_neighbors = 8;
    cfg.env.features = meshrl_env::FeatureSet::Routing;
    cfg
}

fn slots(seed: u64) -> PpoConfig {
    PpoConfig {
        architecture: meshrl_ppo::Architecture::Slots,
        ..tiny(seed)
    }
}

/// Per-neighbour scoring: permuting the slots (features and mask together) permutes the
/// logits the same way and leaves the value unchanged; the neighbour count does not matter.
#[test]
fn slot_policy_is_permutation_equivariant() {
    let t = Trainer::new(routing_env(), slots(4)).unwrap();
    let (k, f, g) = (8, 11, 3);
    let d = k * f + g;
    assert_eq!(t.learner.spec().obs_dim, d);
    let obs: Vec<f32> = (0..d).map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.3).collect();
    let mask: Vec<i8> = (0..k).map(|s| (s != 2 && s != 5) as i8).collect();
    let perm = [3usize, 0, 7, 1, 6, 2, 4, 5]; // new slot s holds old slot perm[s]
    let mut pobs = vec![0f32; d];
    let mut pmask = vec![0i8; k];
    for s in 0..k {
        pobs[s * f..(s + 1) * f].copy_from_slice(&obs[perm[s] * f..(perm[s] + 1) * f]);
        pmask[s] = mask[perm[s]];
    }
    pobs[k * f..].copy_from_slice(&obs[k * f..]);
    let policy = t.policy();
    let (l, pl) = (policy.logits(&obs).unwrap(), policy.logits(&pobs).unwrap());
    for s in 0..k {
        assert!((pl[s] - l[perm[s]]).abs() < 1e-5, "slot {s}: {} vs {}", pl[s], l[perm[s]]);
    }
    let (v, pv) = (
        t.learner.values(&obs, Some(&mask)).unwrap()[0],
        t.learner.values(&pobs, Some(&pmask)).unwrap()[0],
    );
    assert!((v - pv).abs() < 1e-5, "value {v} vs {pv}");
    // The greedy choice follows the neighbour, not the slot.
    let a = policy.act(&obs, &mask, true, 0).unwrap()[0] as usize;
    let pa = policy.act(&pobs, &pmask, true, 0).unwrap()[0] as usize;
    assert_eq!(perm[pa], a);
}

#[test]
fn slot_policy_trains_saves_and_loads() {
    let mut t = Trainer::new(routing_env(), slots(5)).unwrap();
    let s = t.train(8 * 16 * 2, |_| true).unwrap();
    assert!(s.policy_loss.is_finite() && s.value_loss.is_finite());
    let dir = std::env::temp_dir().join(format!("meshrl-slots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    t.learner.save(dir.join("policy.weights")).unwrap();
    let p = meshrl_ppo::Policy::load(&dir).unwrap();
    assert_eq!(p.architecture(), meshrl_ppo::Architecture::Slots);
    assert_eq!(p.spec().feature_set.as_deref(), Some("routing"));
    let obs = vec![0.25f32; 2 * p.obs_dim()];
    let mask = vec![1i8; 2 * 8];
    assert_eq!(p.act(&obs, &mask, false, 1).unwrap(), t.learner.act(&obs, &mask, false, 1).unwrap());
    // An MLP learner cannot load slot weights.
    let mut mlp = Trainer::new(routing_env(), tiny(5)).unwrap();
    let e = mlp.learner.load(dir.join("policy.weights")).unwrap_err();
    assert!(matches!(e, meshrl_ppo::PpoError::Mismatch { .. }), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_is_a_clear_error() {
    let t = Trainer::new(env(), tiny(0)).unwrap();
    let (d, k) = (16 * 6 + 1, 16);
    let mut obs = vec![0.1f32; 2 * d];
    let mask = vec![1i8; 2 * k];
    obs[d + 3] = f32::NAN;
    let e = t.learner.act(&obs, &mask, true, 0).unwrap_err().to_string();
    assert!(e.contains("obs") && e.contains("row 1") && e.contains("NaN"), "{e}");
    let obs = vec![0.1f32; 2 * d];
    let mut none = mask.clone();
    none[k..].fill(0);
    let e = t.learner.act(&obs, &none, false, 0).unwrap_err().to_string();
    assert!(e.contains("mask") && e.contains("row 1") && e.contains("no valid action"), "{e}");
    let mut two = mask.clone();
    two[3] = 2;
    assert!(t.learner.act(&obs, &two, false, 0).unwrap_err().to_string().contains("0 or 1"));
    assert!(t.learner.act(&obs[1..], &mask, false, 0).is_err());
    // Sizes that cannot fit are refused before anything is allocated.
    let huge = PpoConfig {
        hidden: vec![1_000_000, 1_000_000],
        ..tiny(0)
    };
    let e = Trainer::new(env(), huge).err().unwrap().to_string();
    assert!(e.contains("ppo.hidden") && e.contains("parameters"), "{e}");
    let e = meshrl_ppo::Learner::for_spaces(4, 2, slots(0)).err().unwrap().to_string();
    assert!(e.contains("ppo.architecture"), "{e}");
    let e = Trainer::new(env(), PpoConfig { num_steps: usize::MAX, ..tiny(0) }).err().unwrap().to_string();
    assert!(e.contains("ppo.num_steps"), "{e}");
}

/// `logits_and_value` (what the update and inference use: the `slots` inputs built once for
/// actor and critic) gives the logits and values of `logits` and `value`, for several depths
/// and widths, both activations, and rows with empty slots.
#[test]
fn one_pass_for_actor_and_critic_gives_their_separate_numbers() {
    use burn::tensor::{Device, Tensor, TensorData};
    use meshrl_ppo::{Activation, ActorCritic, Architecture, PolicySpec};
    let device = Device::flex();
    let (k, per_slot, context, n) = (8, 5, 3, 37);
    for (hidden, activation) in [
        (vec![16, 16], Activation::Tanh),
        (vec![8], Activation::Tanh),
        (vec![32, 16, 8], Activation::Relu),
        (vec![12, 20], Activation::Tanh),
    ] {
        let spec = PolicySpec {
            obs_dim: k * per_slot + context,
            num_actions: k,
            hidden: hidden.clone(),
            activation,
            architecture: Architecture::Slots,
            per_slot,
            context,
            feature_set: None,
        };
        // Seeded under meshrl's lock: a lazily initialized network here drew from burn's
        // process-wide generator while `same_seed_same_training_on_the_cpu` seeded it.
        let model = ActorCritic::seeded(&spec, 7, &device);
        let obs: Vec<f32> = (0..n * spec.obs_dim).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
        let valid: Vec<f32> = (0..n * k).map(|i| if (i * 31) % 5 == 0 || i % k == 0 { 1.0 } else { 0.0 }).collect();
        let x = Tensor::<2>::from_data(TensorData::new(obs, [n, spec.obs_dim]), &device);
        let mask = Tensor::<2>::from_data(TensorData::new(valid, [n, k]), &device).greater_elem(0.5);
        let (fused_logits, fused_values) = model.logits_and_value(x.clone(), mask.clone());
        let logits = model.logits(x.clone());
        let values = model.value(x, mask);
        let worst = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>();
        let dl = worst(fused_logits, logits);
        let dv = worst(fused_values.reshape([n, 1]), values.clone().reshape([n, 1]));
        let scale = values.abs().max().into_scalar::<f32>().max(1.0);
        assert!(dl < 1e-5 && dv < 1e-5 * scale, "{hidden:?}: logits differ by {dl}, values by {dv}");
    }
}
