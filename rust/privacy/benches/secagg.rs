//! Secure aggregation of n = 100 clients' d = 10,000-value vectors (a routing policy's size):
//! setup (rounds 0–1: keys, Shamir shares, sealed channels) and one round (rounds 2–4: masked
//! inputs, consistency check, unmasking), all parties in process with the clients in parallel as `secure_sum`
//! runs them; the complete graph (SecAgg) and a Harary graph of degree 14 (SecAgg+).
//!
//! CARGO_TARGET_DIR=/root/.cache/meshrl/target-light cargo bench -p meshrl-privacy --bench secagg

mod parties;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use meshrl_privacy::{secure_sum, Dropouts, Stage};
use parties::{inputs, parties, round, sessions, setup, N};

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    let [complete, unsigned, harary] = sessions();

    let mut g = c.benchmark_group("secagg_n100_d10k");
    g.sample_size(10);
    for (name, cfg) in [
        ("complete", &complete),
        ("complete_unsigned", &unsigned),
        ("harary_k14", &harary),
    ] {
        g.bench_function(format!("{name}/setup"), |b| {
            b.iter_batched(
                || parties(cfg, 0),
                |(mut cl, mut sv)| setup(&mut cl, &mut sv),
                BatchSize::PerIteration,
            )
        });
        for dropped in [0usize, 10] {
            g.bench_function(format!("{name}/round_{dropped}_dropped"), |b| {
                b.iter_batched(
                    || {
                        let (mut cl, mut sv) = parties(cfg, 0);
                        let inboxes = setup(&mut cl, &mut sv);
                        (cl, sv, inboxes)
                    },
                    |(mut cl, mut sv, inboxes)| {
                        cl.truncate(N - dropped);
                        assert_eq!(round(&mut cl, &mut sv, &inboxes, &inputs), N - dropped);
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    let opt: Vec<Option<&[f32]>> = inputs.iter().map(|x| Some(x.as_slice())).collect();
    g.bench_function("complete/secure_sum_end_to_end", |b| {
        b.iter(|| {
            secure_sum(
                &opt,
                &complete,
                &Dropouts::at(Stage::MaskedInput, 90..100),
                7,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
