//! Each rule on n = 100 clients of d = 100,000 against FedAvg as the baseline, and FedAvg
//! against a memory copy of the same bytes. `rule.apply` takes screened rows; `aggregate_*`
//! and `screen` show what screening for NaN/Inf adds (the path the Python API takes).
//!
//! cargo bench -p meshrl-fl --bench aggregators

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meshrl_fl::{aggregate, rules, screen, OnInvalid, Rule};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn bench(c: &mut Criterion) {
    let (n, d) = (100usize, 100_000usize);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let data: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>()).collect();
    let rows: Vec<&[f32]> = data.chunks(d).collect();
    let mut g = c.benchmark_group("aggregate_n100_d100k");
    g.sample_size(10)
        .throughput(Throughput::Bytes((n * d * 4) as u64));
    g.bench_function("memcpy", |b| {
        let mut out = vec![0f32; n * d];
        b.iter(|| out.copy_from_slice(&data))
    });
    for (name, rule) in [
        ("fedavg", Rule::FedAvg),
        ("median", Rule::Median),
        ("trimmed_mean_0.1", Rule::TrimmedMean { beta: 0.1 }),
        (
            "krum_f10",
            Rule::Krum {
                num_byzantine: 10,
                num_selected: 1,
            },
        ),
        ("bulyan_f10", Rule::Bulyan { num_byzantine: 10 }),
        (
            "geometric_median",
            Rule::GeometricMedian {
                nu: 1e-6,
                max_iter: 100,
                eps: 1e-6,
            },
        ),
        (
            "centered_clipping",
            Rule::CenteredClipping {
                center: None,
                tau: 1.0,
                iterations: 3,
            },
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| rule.apply(&rows, None).unwrap()));
    }
    g.bench_function("screen", |b| b.iter(|| screen(&rows, None, d)));
    for (name, rule) in [
        ("aggregate_fedavg", Rule::FedAvg),
        ("aggregate_median", Rule::Median),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| aggregate(&rule, &rows, None, d, OnInvalid::Error).unwrap())
        });
    }
    g.bench_function("nnm_f10", |b| b.iter(|| rules::nnm(&rows, 10).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
