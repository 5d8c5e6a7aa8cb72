//! DP-FedAvg's cost: clipping and noising n = 100 updates of d = 10,000, and the accountant.
//!
//! CARGO_TARGET_DIR=/root/.cache/meshrl/target-light cargo bench -p meshrl-privacy --bench dp

use chacha20::ChaCha20Rng;
use criterion::{criterion_group, criterion_main, Criterion};
use meshrl_privacy::dp::{add_gaussian_noise, AdaptiveClipping};
use meshrl_privacy::{
    clip_l2, noise_multiplier_for, Clipping, DpConfig, DpFedAvg, NoisePlacement, RdpAccountant,
};
use rand::{RngExt, SeedableRng};

fn bench(c: &mut Criterion) {
    let (n, d) = (100usize, 10_000usize);
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let data: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let rows: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
    let mut g = c.benchmark_group("dp_n100_d10k");
    g.sample_size(20);
    g.bench_function("clip_l2_one_update", |b| {
        let mut v = data[0].clone();
        b.iter(|| {
            v.copy_from_slice(&data[0]);
            clip_l2(&mut v, 1.0).unwrap()
        })
    });
    g.bench_function("gaussian_noise_one_update", |b| {
        let mut v = vec![0f32; d];
        b.iter(|| add_gaussian_noise(&mut v, 1.0, &mut rng).unwrap())
    });
    for (name, clipping, noise) in [
        (
            "round_fixed_server_noise",
            Clipping::Fixed { clip_norm: 1.0 },
            NoisePlacement::Server,
        ),
        (
            "round_adaptive_server_noise",
            Clipping::Adaptive(AdaptiveClipping::default()),
            NoisePlacement::Server,
        ),
        (
            "round_fixed_local_noise",
            Clipping::Fixed { clip_norm: 1.0 },
            NoisePlacement::Local,
        ),
    ] {
        let mut dp = DpFedAvg::new(
            DpConfig {
                noise_multiplier: 1.0,
                clipping,
                noise,
            },
            1,
        )
        .unwrap();
        g.bench_function(name, |b| b.iter(|| dp.aggregate(&rows).unwrap()));
    }
    g.bench_function("accountant_step_and_epsilon", |b| {
        b.iter(|| {
            let mut acc = RdpAccountant::new();
            acc.step(1.1, 0.1, 100).unwrap();
            acc.get_epsilon(1e-5).unwrap()
        })
    });
    g.bench_function("noise_multiplier_for", |b| {
        b.iter(|| noise_multiplier_for(4.0, 1e-5, 0.1, 100).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
