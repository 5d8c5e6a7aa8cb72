//! Vectorized env-steps/s on the 32-node dynamic config, for B in {1, 256, 4096, 65536}, on one
//! thread and on rayon's full pool. Only `VecEnv::step` is timed; random valid actions are drawn
//! outside the timed region.
//!
//! cargo bench -p meshrl-env --bench vec_env

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use meshrl_env::{EnvConfig, VecEnv};

fn config() -> EnvConfig {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/env/dynamic.toml"
    );
    EnvConfig::from_toml_file(path).expect("configs/env/dynamic.toml")
}

/// Random valid actions from the current masks (a cheap xorshift so it stays off the profile).
fn random_valid_actions(env: &VecEnv, state: &mut u64, out: &mut [i64]) {
    let k = env.max_neighbors();
    let mask = &env.buffers().mask;
    for (i, a) in out.iter_mut().enumerate() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let row = &mask[i * k..(i + 1) * k];
        let valid = row.iter().filter(|&&m| m != 0).count().max(1);
        let mut pick = (*state % valid as u64) as usize;
        *a = 0;
        for (s, &m) in row.iter().enumerate() {
            if m != 0 {
                if pick == 0 {
                    *a = s as i64;
                    break;
                }
                pick -= 1;
            }
        }
    }
}

fn bench_steps(c: &mut Criterion) {
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let all = rayon::ThreadPoolBuilder::new().build().unwrap();
    let mut group = c.benchmark_group("vec_env_step_dynamic32");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &b in &[1usize, 256, 4096, 65536] {
        group.throughput(Throughput::Elements(b as u64));
        for (label, pool) in [("1thread", &single), ("rayon", &all)] {
            group.bench_with_input(BenchmarkId::new(label, b), &b, |bench, &b| {
                let mut env = VecEnv::new(config(), b).unwrap();
                pool.install(|| env.reset(Some(0))).unwrap();
                let mut actions = vec![0i64; b];
                let mut rng = 0x9E37_79B9_7F4A_7C15u64;
                bench.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        random_valid_actions(&env, &mut rng, &mut actions);
                        let t = Instant::now();
                        pool.install(|| env.step(&actions)).unwrap();
                        spent += t.elapsed();
                    }
                    spent
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_steps);
criterion_main!(benches);
