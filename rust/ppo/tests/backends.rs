//! Backends chosen by `device`: `cpu` is flex; `wgpu` gives the same PPO update as flex.
//! The wgpu tests need the `wgpu` feature (scripts/test turns it on) and a Vulkan driver
//! (CI installs Mesa's software one; on a GPU machine they run on the GPU).

use meshrl_env::EnvConfig;
use meshrl_ppo::{DeviceChoice, PpoConfig, Trainer};

fn env() -> EnvConfig {
    let mut env = EnvConfig::from_toml_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/env/small.toml"
    ))
    .unwrap();
    env.env.envs_per_twin = 4;
    env
}

fn cfg(device: DeviceChoice) -> PpoConfig {
    PpoConfig {
        num_envs: 32,
        num_steps: 32,
        epochs: 2,
        minibatch_size: 256,
        learning_rate: 1e-3,
        seed: 3,
        device,
        ..PpoConfig::default()
    }
}

#[test]
fn cpu_is_flex_and_device_names_parse() {
    let t = Trainer::new(env(), cfg(DeviceChoice::Cpu)).unwrap();
    assert_eq!(t.learner.device_name(), "flex");
    assert_eq!("wgpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Wgpu);
    let e = "cuda".parse::<DeviceChoice>().unwrap_err().to_string();
    assert!(e.contains("ppo.device") && e.contains("`cuda`"), "{e}");
    // `auto` picks a real GPU or the CPU, never a software driver.
    let auto = Trainer::new(env(), cfg(DeviceChoice::Auto)).unwrap();
    assert!(["flex", "wgpu"].contains(&auto.learner.device_name()));
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_without_the_feature_is_a_clear_error() {
    let e = Trainer::new(env(), cfg(DeviceChoice::Wgpu)).err().unwrap().to_string();
    assert!(e.contains("no wgpu backend") && e.contains("--features wgpu"), "{e}");
}

#[cfg(feature = "wgpu")]
#[test]
fn one_update_gives_the_same_weights_on_flex_and_wgpu() {
    // One rollout, collected once, then learned from by two trainers with identical weights
    // and RNG state (minibatch shuffles), one per backend.
    let mut collector = Trainer::new(env(), cfg(DeviceChoice::Cpu)).unwrap();
    let mut stats = meshrl_ppo::UpdateStats::default();
    let (rollout, last_values) = collector.collect(&mut stats).unwrap();
    let mut flex = Trainer::new(env(), cfg(DeviceChoice::Cpu)).unwrap();
    let mut wgpu = Trainer::new(env(), cfg(DeviceChoice::Wgpu)).unwrap();
    assert_eq!(wgpu.learner.device_name(), "wgpu");
    let w0 = flex.learner.get_weights();
    wgpu.learner.set_weights(&w0).unwrap();
    // Inference agrees before the update.
    let obs = &rollout.obs[..64 * flex.policy().obs_dim()];
    let (lf, lw) = (flex.policy().logits(obs).unwrap(), wgpu.policy().logits(obs).unwrap());
    let worst = lf.iter().zip(&lw).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "logits differ by {worst}");

    let (mut sf, mut sw) = (meshrl_ppo::UpdateStats::default(), meshrl_ppo::UpdateStats::default());
    flex.learner.learn(&rollout, &last_values, 1e-3, &mut sf).unwrap();
    wgpu.learner.learn(&rollout, &last_values, 1e-3, &mut sw).unwrap();
    let (wf, ww) = (flex.learner.get_weights(), wgpu.learner.get_weights());
    let moved = wf.iter().zip(&w0).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let worst = wf.iter().zip(&ww).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("update moved weights by up to {moved:e}; flex vs wgpu differ by up to {worst:e}");
    assert!(moved > 1e-3, "the update barely changed the weights ({moved})");
    assert!(worst <= 1e-4, "flex and wgpu weights differ by {worst}");
    assert!((sf.policy_loss - sw.policy_loss).abs() < 1e-3);
}
