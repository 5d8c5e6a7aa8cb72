//! Latency of one `act` (a node choosing a next hop) and batch throughput of the no_std runtime,
//! each next to the same policy in burn (`flex`) in the same process, for both architectures
//! (on the `routing` features).
//!
//! cargo bench -p meshrl-runtime --bench act

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use meshrl_env::{EnvConfig, FeatureSet, VecEnv};
use meshrl_ppo::{Architecture, ExportOptions, PpoConfig, Trainer};

struct Setup {
    burn: meshrl_ppo::Policy,
    runtime: meshrl_runtime::Policy,
    obs: Vec<f32>,
    mask: Vec<i8>,
    d: usize,
    k: usize,
}

fn setup(architecture: Architecture) -> Setup {
    let mut env = EnvConfig::from_toml_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/env/small.toml"
    ))
    .unwrap();
    env.env.features = FeatureSet::Routing;
    // Initial weights suffice for timing: the work per call does not depend on their values.
    let ppo = PpoConfig { architecture, ..PpoConfig::default() };
    let trainer = Trainer::new(env.clone(), ppo).unwrap();
    let burn = trainer.policy();
    let path = std::env::temp_dir().join(format!("meshrl-bench-{}.safetensors", std::process::id()));
    burn.export(&path, &ExportOptions::default()).unwrap();
    let runtime = meshrl_runtime::Policy::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(path).ok();
    let n = 4096;
    let mut venv = VecEnv::new(env, n).unwrap();
    venv.reset(Some(1)).unwrap();
    let (d, k) = (venv.obs_dim(), venv.max_neighbors());
    let mut mask = venv.buffers().mask.clone();
    // Rows with no neighbour get one valid slot so every call is a valid one.
    for row in mask.chunks_mut(k) {
        if row.iter().all(|&m| m == 0) {
            row[0] = 1;
        }
    }
    Setup { burn, runtime, obs: venv.buffers().obs.clone(), mask, d, k }
}

fn bench(c: &mut Criterion) {
    for architecture in [Architecture::Mlp, Architecture::Slots] {
        let Setup { burn, runtime, obs, mask, d, k } = setup(architecture);
        let name = runtime.architecture().name();
        let masks: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        let mut scratch = runtime.scratch();

        let mut g = c.benchmark_group(format!("act_single/{name}"));
        g.bench_function("runtime", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % 4096;
                black_box(runtime.act(&obs[i * d..(i + 1) * d], &masks[i * k..(i + 1) * k], &mut scratch).unwrap())
            })
        });
        g.bench_function("burn_flex", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % 4096;
                black_box(burn.act(&obs[i * d..(i + 1) * d], &mask[i * k..(i + 1) * k], true, 0).unwrap())
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("act_batch/{name}"));
        for n in [256usize, 4096] {
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new("runtime", n), &n, |b, &n| {
                b.iter(|| {
                    let mut total = 0usize;
                    for i in 0..n {
                        total += runtime
                            .act(&obs[i * d..(i + 1) * d], &masks[i * k..(i + 1) * k], &mut scratch)
                            .unwrap();
                    }
                    black_box(total)
                })
            });
            g.bench_with_input(BenchmarkId::new("burn_flex", n), &n, |b, &n| {
                b.iter(|| black_box(burn.act(&obs[..n * d], &mask[..n * k], true, 0).unwrap()))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
