//! Secure aggregation of n = 100 clients' d = 10,000-value vectors (a routing policy's size):
//! setup (rounds 0–1: keys, Shamir shares, sealed channels) and one round (rounds 2–4: masked
//! inputs, consistency check, unmasking), all parties in process with the clients in parallel as `secure_sum`
//! runs them; the complete graph (SecAgg) and a Harary graph of degree 14 (SecAgg+).
//!
//! CARGO_TARGET_DIR=/root/.cache/meshrl/target-light cargo bench -p meshrl-privacy --bench secagg

use std::sync::Arc;

use chacha20::ChaCha20Rng;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::SigningKey;
use meshrl_privacy::secagg::{
    Client, Ed25519Directory, EncryptedShare, Graph, Identity, IdentityDirectory, Server,
};
use meshrl_privacy::{secure_sum, Dropouts, SecAggConfig, Stage};
use rand::{Rng, RngExt, SeedableRng};
use rayon::prelude::*;

const N: usize = 100;
const D: usize = 10_000;

fn parties(cfg: &SecAggConfig) -> (Vec<Client>, Server) {
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let mut draw = || {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        b
    };
    let keys: Vec<SigningKey> = (0..N).map(|_| SigningKey::from_bytes(&draw())).collect();
    let directory = Arc::new(Ed25519Directory(
        keys.iter().map(|k| k.verifying_key()).collect(),
    ));
    let clients = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let identity = cfg
                .sign_messages
                .then(|| Identity::ed25519(k, directory.clone()));
            Client::new(cfg, i, draw(), identity).unwrap()
        })
        .collect();
    let server = Server::new(
        cfg,
        cfg.sign_messages
            .then_some(directory as Arc<dyn IdentityDirectory>),
    )
    .unwrap();
    (clients, server)
}

/// Rounds 0 and 1.
fn setup(clients: &mut [Client], server: &mut Server) -> Vec<Vec<EncryptedShare>> {
    let adverts = clients
        .par_iter_mut()
        .map(|c| c.advertise_keys().unwrap())
        .collect();
    let roster = server.receive_adverts(adverts).unwrap();
    let shares = clients
        .par_iter_mut()
        .map(|c| c.share_keys(&roster).unwrap())
        .collect();
    server.receive_shares(shares).unwrap()
}

/// Rounds 2 to 4, with `dropped` clients sending no masked input.
fn round(
    mut clients: Vec<Client>,
    server: &mut Server,
    inboxes: &[Vec<EncryptedShare>],
    inputs: &[Vec<f32>],
    dropped: usize,
) {
    clients.truncate(N - dropped);
    let masked = clients
        .par_iter_mut()
        .map(|c| c.masked_input(&inboxes[c.id()], &inputs[c.id()]).unwrap())
        .collect();
    let announced = server.receive_masked_inputs(masked).unwrap();
    let signatures = clients
        .par_iter_mut()
        .map(|c| c.check_consistency(&announced).unwrap())
        .collect();
    let request = server.receive_consistency_signatures(signatures).unwrap();
    let responses = clients
        .par_iter_mut()
        .map(|c| c.unmask(&request).unwrap())
        .collect();
    let out = server.receive_unmask_responses(responses).unwrap();
    assert_eq!(out.included.len(), N - dropped);
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let inputs: Vec<Vec<f32>> = (0..N)
        .map(|_| (0..D).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let complete = SecAggConfig::new(N, 51, D);
    let mut unsigned = complete.clone();
    unsigned.sign_messages = false;
    let mut harary = complete.clone();
    harary.graph = Graph::Harary {
        degree: 14,
        seed: 0,
    };
    harary.threshold = 8;

    let mut g = c.benchmark_group("secagg_n100_d10k");
    g.sample_size(10);
    for (name, cfg) in [
        ("complete", &complete),
        ("complete_unsigned", &unsigned),
        ("harary_k14", &harary),
    ] {
        g.bench_function(format!("{name}/setup"), |b| {
            b.iter_batched(
                || parties(cfg),
                |(mut cl, mut sv)| setup(&mut cl, &mut sv),
                BatchSize::PerIteration,
            )
        });
        for dropped in [0usize, 10] {
            g.bench_function(format!("{name}/round_{dropped}_dropped"), |b| {
                b.iter_batched(
                    || {
                        let (mut cl, mut sv) = parties(cfg);
                        let inboxes = setup(&mut cl, &mut sv);
                        (cl, sv, inboxes)
                    },
                    |(cl, mut sv, inboxes)| round(cl, &mut sv, &inboxes, &inputs, dropped),
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
