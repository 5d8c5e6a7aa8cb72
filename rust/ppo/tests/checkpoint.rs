//! A run resumed from a checkpoint ends exactly where the uninterrupted run ends.

use meshrl_env::EnvConfig;
use meshrl_ppo::{DeviceChoice, PpoConfig, Trainer};

fn setup() -> (EnvConfig, PpoConfig, u64) {
    let mut env = EnvConfig::from_toml_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/env/small.toml"
    ))
    .unwrap();
    env.env.envs_per_twin = 4;
    env.reward.hop_cost = 0.5;
    let cfg = PpoConfig {
        num_envs: 32,
        num_steps: 32,
        epochs: 2,
        minibatch_size: 256,
        learning_rate: 1e-3,
        seed: 5,
        device: DeviceChoice::Cpu,
        ..PpoConfig::default()
    };
    let total = 7 * 32 * 32; // 7 updates: checkpoints after 2, 4 and 6
    (env, cfg, total)
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("meshrl-ckpt-{}-{name}", std::process::id()))
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let (env, cfg, total) = setup();
    let mut straight = Trainer::new(env.clone(), cfg.clone()).unwrap();
    let end = straight.train_run(total, 2, None, |_| true).unwrap();
    assert_eq!(straight.updates_done(), 7);

    // Interrupted after update 5 (the last checkpoint was after update 4).
    let path = tmp("resume");
    let mut first = Trainer::new(env, cfg).unwrap();
    first
        .train_run(total, 2, Some(&path), |s| s.global_step < 5 * 1024)
        .unwrap();
    assert_eq!(first.updates_done(), 5);
    drop(first);
    let (mut resumed, info) = Trainer::resume(&path).unwrap();
    assert_eq!((info.updates_done, info.global_step, info.total_steps), (4, 4 * 1024, total));
    let end2 = resumed
        .train_run(info.total_steps, info.checkpoint_every, Some(&path), |_| true)
        .unwrap();
    assert_eq!(resumed.learner.global_step(), straight.learner.global_step());
    assert_eq!(resumed.learner.get_weights(), straight.learner.get_weights(), "weights differ after resume");
    assert_eq!(end.policy_loss.to_bits(), end2.policy_loss.to_bits());
    assert_eq!(end.episodic_return.to_bits(), end2.episodic_return.to_bits());
    std::fs::remove_file(path).ok();
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let (env, cfg, total) = setup();
    let path = tmp("bad");
    let mut t = Trainer::new(env, cfg).unwrap();
    t.train_run(total, 2, Some(&path), |s| s.global_step < 2 * 1024).unwrap();
    let good = std::fs::read(&path).unwrap();
    let err = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        Trainer::resume(&path).err().expect("bad checkpoint loaded").to_string()
    };
    let mut flipped = good.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 1;
    assert!(err(&flipped).contains("checksum mismatch"));
    assert!(err(&good[..good.len() - 3]).contains("checksum mismatch"));
    // The header is covered too: an edited counter is caught.
    let text = String::from_utf8_lossy(&good).into_owned();
    let at = text.find("\"updates_done\":2").expect("header field");
    let mut edited = good.clone();
    edited[at + "\"updates_done\":".len()] = b'3';
    assert!(err(&edited).contains("checksum mismatch"));
    assert!(err(&good[..30]).contains("truncated"));
    // A checkpoint of the format before (burn's optimizer record) names the version.
    let mut v2 = good.clone();
    let digit = "meshrl-ppo-checkpoint ".len();
    assert_eq!(v2[digit], b'3');
    v2[digit] = b'2';
    let e = err(&v2);
    assert!(e.contains("`meshrl-ppo-checkpoint 2` is another version of the format"), "{e}");
    // Adam's state that does not fit the network, in a file with a valid checksum: named.
    std::fs::write(&path, &good).unwrap();
    let magic = "meshrl-ppo-checkpoint 3";
    let (mut header, payload): (serde_json::Value, _) =
        meshrl_ppo::read_framed(&path, magic, "PPO checkpoint").unwrap();
    let steps = header["adam_steps"].as_array_mut().expect("adam_steps");
    // 2 updates × 2 epochs × 4 minibatches: every parameter tensor has taken 16 steps.
    assert!(!steps.is_empty() && steps.iter().all(|t| t.as_u64() == Some(16)), "{steps:?}");
    steps.push(serde_json::json!(1));
    meshrl_ppo::write_framed(&path, magic, &header, &payload).unwrap();
    let e = Trainer::resume(&path).err().expect("misfit loaded").to_string();
    assert!(e.contains("Adam's state") && e.contains("parameter tensors"), "{e}");
    assert!(err(b"hello\n").contains("not a meshrl PPO checkpoint"));
    std::fs::remove_file(&path).ok();
    let e = Trainer::resume(&path).err().unwrap().to_string();
    assert!(e.contains("No such file"), "{e}");
}
