//! Backends chosen by `device`: `cpu` is flex; `wgpu` and `cuda` give the same PPO update as
//! flex. The wgpu tests need the `wgpu` feature (scripts/test turns it on) and a Vulkan driver
//! (CI installs Mesa's software one; on a GPU machine they run on the GPU); the cuda test needs
//! the `cuda` feature and an NVIDIA GPU (scripts/bench-gpu runs it).

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
    assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda);
    let e = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
    assert!(e.contains("ppo.device") && e.contains("`tpu`") && e.contains("`cuda`"), "{e}");
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

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    let e = Trainer::new(env(), cfg(DeviceChoice::Cuda)).err().unwrap().to_string();
    assert!(e.contains("no CUDA backend") && e.contains("--features cuda"), "{e}");
}

#[cfg(feature = "wgpu")]
#[test]
fn one_update_gives_the_same_weights_on_flex_and_wgpu() {
    same_update_as_flex(DeviceChoice::Wgpu, "wgpu");
}

#[cfg(feature = "cuda")]
#[test]
fn one_update_gives_the_same_weights_on_flex_and_cuda() {
    same_update_as_flex(DeviceChoice::Cuda, "cuda");
}

/// One rollout, collected once, then learned from by two trainers with identical weights and
/// RNG state (minibatch shuffles): one on flex, one on `device`.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn same_update_as_flex(device: DeviceChoice, name: &str) {
    let mut collector = Trainer::new(env(), cfg(DeviceChoice::Cpu)).unwrap();
    let mut stats = meshrl_ppo::UpdateStats::default();
    let (rollout, last_values) = collector.collect(&mut stats).unwrap();
    let mut flex = Trainer::new(env(), cfg(DeviceChoice::Cpu)).unwrap();
    let mut gpu = Trainer::new(env(), cfg(device)).unwrap();
    assert_eq!(gpu.learner.device_name(), name);
    let w0 = flex.learner.get_weights();
    gpu.learner.set_weights(&w0).unwrap();
    // Inference agrees before the update.
    let obs = &rollout.obs[..64 * flex.policy().obs_dim()];
    let (lf, lg) = (flex.policy().logits(obs).unwrap(), gpu.policy().logits(obs).unwrap());
    let worst = lf.iter().zip(&lg).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "logits differ by {worst}");

    let (mut sf, mut sw) = (meshrl_ppo::UpdateStats::default(), meshrl_ppo::UpdateStats::default());
    flex.learner.learn(&rollout, &last_values, 1e-3, &mut sf).unwrap();
    gpu.learner.learn(&rollout, &last_values, 1e-3, &mut sw).unwrap();
    let (wf, ww) = (flex.learner.get_weights(), gpu.learner.get_weights());
    let moved = wf.iter().zip(&w0).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let worst = wf.iter().zip(&ww).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("update moved weights by up to {moved:e}; flex vs {name} differ by up to {worst:e}");
    assert!(moved > 1e-3, "the update barely changed the weights ({moved})");
    assert!(worst <= 1e-4, "flex and {name} weights differ by {worst}");
    assert!((sf.policy_loss - sw.policy_loss).abs() < 1e-3);
}
