//! DP-FedAvg: clipping bounds, the noise's measured spread, and adaptive clipping's direction
//! and convergence.

use chacha20::ChaCha20Rng;
use meshrl_privacy::dp::{l2_norm, AdaptiveClipping};
use meshrl_privacy::{clip_l2, Clipping, DpConfig, DpFedAvg, NoisePlacement};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

fn std_of(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// A vector of length `d` with L2 norm `norm` in a random direction.
fn with_norm(rng: &mut ChaCha20Rng, d: usize, norm: f64) -> Vec<f32> {
    let v: Vec<f64> = (0..d)
        .map(|_| rng.sample::<f64, _>(StandardNormal))
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| (x / n * norm) as f32).collect()
}

proptest! {
    #[test]
    fn every_clipped_update_is_within_the_clip_norm(
        v in proptest::collection::vec(-1e6f32..1e6, 1..300),
        scale_exp in -30i32..30,
        clip in 1e-6f64..1e6,
    ) {
        let scale = 2f32.powi(scale_exp);
        let mut u: Vec<f32> = v.iter().map(|x| x * scale).collect();
        let before = l2_norm(&u);
        let reported = clip_l2(&mut u, clip).unwrap();
        prop_assert_eq!(reported, before);
        let after = l2_norm(&u);
        prop_assert!(after <= clip, "{} > {}", after, clip);
        if before > clip {
            prop_assert!(after >= clip * (1.0 - 1e-5), "over-clipped: {} for {}", after, clip);
        } else {
            prop_assert!(after == before);
        }
    }

    #[test]
    fn every_contribution_to_a_round_is_within_the_clip_norm(seed in any::<u64>(), clip in 0.01f64..10.0) {
        let cfg = DpConfig { noise_multiplier: 0.0, clipping: Clipping::Fixed { clip_norm: clip }, noise: NoisePlacement::Server };
        let dp = DpFedAvg::new(cfg, seed).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for _ in 0..10 {
            let norm = rng.random_range(0.0..10.0 * clip);
            let u = with_norm(&mut rng, 50, norm);
            let c = dp.client_contribution(&u, 10, &mut rng).unwrap();
            prop_assert!(l2_norm(&c) <= clip);
        }
    }
}

#[test]
fn server_noise_std_is_z_times_c_within_2_percent() {
    let (z, c, d) = (1.1, 0.5, 200_000);
    let cfg = DpConfig {
        noise_multiplier: z,
        clipping: Clipping::Fixed { clip_norm: c },
        noise: NoisePlacement::Server,
    };
    let mut dp = DpFedAvg::new(cfg, 7).unwrap();
    let zeros = vec![0f32; d];
    let r = dp.aggregate(&[&zeros, &zeros, &zeros]).unwrap();
    assert_eq!(r.noise_stddev, z * c);
    let s = std_of(&r.sum);
    assert!(
        (s / (z * c) - 1.0).abs() < 0.02,
        "measured {s}, expected {}",
        z * c
    );
    // The mean is the sum over m = 3.
    assert!((r.mean[0] - r.sum[0] / 3.0).abs() < 1e-6);
}

#[test]
fn distributed_noise_adds_up_to_z_times_c_and_local_noise_is_per_client() {
    let (z, c, d, m) = (1.0, 2.0, 100_000, 16);
    let zeros = vec![0f32; d];
    let rows: Vec<&[f32]> = (0..m).map(|_| zeros.as_slice()).collect();
    for (placement, per_sum) in [
        (NoisePlacement::Distributed, z * c),
        (NoisePlacement::Local, z * c * (m as f64).sqrt()),
    ] {
        let cfg = DpConfig {
            noise_multiplier: z,
            clipping: Clipping::Fixed { clip_norm: c },
            noise: placement,
        };
        let mut dp = DpFedAvg::new(cfg, 3).unwrap();
        let r = dp.aggregate(&rows).unwrap();
        let s = std_of(&r.sum);
        assert!(
            (s / per_sum - 1.0).abs() < 0.02,
            "{placement:?}: measured {s}, expected {per_sum}"
        );
        assert!((r.noise_stddev / per_sum - 1.0).abs() < 1e-12);
    }
    // One local contribution carries z·C on its own.
    let cfg = DpConfig {
        noise_multiplier: z,
        clipping: Clipping::Fixed { clip_norm: c },
        noise: NoisePlacement::Local,
    };
    let dp = DpFedAvg::new(cfg, 3).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let one = dp.client_contribution(&zeros, m, &mut rng).unwrap();
    assert!((std_of(&one) / (z * c) - 1.0).abs() < 0.02);
}

#[test]
fn rounds_are_reproducible_under_a_seed() {
    let cfg = DpConfig {
        noise_multiplier: 1.0,
        clipping: Clipping::Fixed { clip_norm: 1.0 },
        noise: NoisePlacement::Server,
    };
    let x = vec![0.5f32; 100];
    let run = |seed| {
        DpFedAvg::new(cfg.clone(), seed)
            .unwrap()
            .aggregate(&[&x, &x])
            .unwrap()
            .sum
    };
    assert_eq!(run(4), run(4));
    assert_ne!(run(4), run(5));
}

fn adaptive(initial: f64, target: f64, z: f64) -> DpFedAvg {
    let cfg = DpConfig {
        noise_multiplier: z,
        clipping: Clipping::Adaptive(AdaptiveClipping {
            initial_clip_norm: initial,
            target_unclipped_quantile: target,
            learning_rate: 0.2,
            clipped_count_stddev: None,
        }),
        noise: NoisePlacement::Server,
    };
    DpFedAvg::new(cfg, 11).unwrap()
}

/// Runs `rounds` rounds of 100 clients whose update norms are uniform on [0, 4]; returns the
/// clip norms used.
fn run_adaptive(dp: &mut DpFedAvg, rounds: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..rounds)
        .map(|_| {
            let updates: Vec<Vec<f32>> = (0..100)
                .map(|_| {
                    let n = rng.random_range(0.0..4.0);
                    with_norm(&mut rng, 8, n)
                })
                .collect();
            let rows: Vec<&[f32]> = updates.iter().map(|u| u.as_slice()).collect();
            dp.aggregate(&rows).unwrap().clip_norm
        })
        .collect()
}

#[test]
fn clip_norm_grows_when_too_many_updates_are_clipped() {
    // Every norm is above C = 0.01: almost nothing fits, so b̃ < γ and C must grow (Flower's
    // adaptive wrappers move it the other way).
    let mut dp = adaptive(0.01, 0.5, 1.0);
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let updates: Vec<Vec<f32>> = (0..100).map(|_| with_norm(&mut rng, 8, 1.0)).collect();
    let rows: Vec<&[f32]> = updates.iter().map(|u| u.as_slice()).collect();
    let r = dp.aggregate(&rows).unwrap();
    assert!(r.noisy_unclipped_fraction.unwrap() < 0.5);
    assert!(
        r.next_clip_norm > r.clip_norm,
        "{} -> {}",
        r.clip_norm,
        r.next_clip_norm
    );
    // And shrink when nearly everything fits.
    let mut dp = adaptive(100.0, 0.5, 1.0);
    let r = dp.aggregate(&rows).unwrap();
    assert!(r.next_clip_norm < r.clip_norm);
}

#[test]
fn adaptive_clip_norm_converges_to_the_target_quantile_from_both_sides() {
    // Norms uniform on [0, 4]: the γ-quantile is 4γ.
    for target in [0.5, 0.8] {
        let quantile = 4.0 * target;
        for initial in [0.01, 100.0] {
            let mut dp = adaptive(initial, target, 1.0);
            let cs = run_adaptive(&mut dp, 300, 1);
            let tail = &cs[200..];
            let mean = tail.iter().sum::<f64>() / tail.len() as f64;
            assert!(
                (mean / quantile - 1.0).abs() < 0.05,
                "γ={target}, from {initial}: settled at {mean}, quantile {quantile}"
            );
            // Monotone approach in the first rounds, from below or above.
            if initial < quantile {
                assert!(cs[1] > cs[0] && cs[5] > cs[1]);
            } else {
                assert!(cs[1] < cs[0] && cs[5] < cs[1]);
            }
        }
    }
}
