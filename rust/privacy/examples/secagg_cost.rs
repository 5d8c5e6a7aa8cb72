//! Wall and CPU time of each secure aggregation phase at n = 100, d = 10,000, all parties in
//! process (clients in parallel, as `secure_sum` runs them). CPU time is read from
//! /proc/self/stat (Linux), so it stays meaningful on a shared, loaded machine: on 2 idle
//! cores the wall time is about CPU / 2.
//!
//! CARGO_TARGET_DIR=/root/.cache/meshrl/target-light cargo run --profile bench -p meshrl-privacy --example secagg_cost

use std::sync::Arc;
use std::time::Instant;

use chacha20::ChaCha20Rng;
use ed25519_dalek::SigningKey;
use meshrl_privacy::secagg::{
    Client, Ed25519Directory, EncryptedShare, Graph, Identity, IdentityDirectory, Server,
};
use meshrl_privacy::SecAggConfig;
use rand::{Rng, RngExt, SeedableRng};
use rayon::prelude::*;

const N: usize = 100;
const D: usize = 10_000;
const REPEAT: usize = 5;

/// CPU seconds (user + system) of this process, all threads.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // utime, stime in USER_HZ = 100
}

struct Timer {
    wall: Instant,
    cpu: f64,
}

impl Timer {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
    fn stop(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), cpu_seconds() - self.cpu)
    }
}

fn parties(cfg: &SecAggConfig, seed: u64) -> (Vec<Client>, Server) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
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
    let dir = cfg
        .sign_messages
        .then_some(directory as Arc<dyn IdentityDirectory>);
    (clients, Server::new(cfg, dir).unwrap())
}

fn main() {
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
    println!(
        "n = {N}, d = {D}, {} rayon threads; mean of {REPEAT} sessions",
        rayon::current_num_threads()
    );
    println!("| graph | dropped | setup wall | setup CPU | round wall | round CPU |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, cfg) in [
        ("complete, signed", &complete),
        ("complete, unsigned", &unsigned),
        ("Harary k = 14, signed", &harary),
    ] {
        for dropped in [0usize, 10] {
            let (mut sw, mut sc, mut rw, mut rc) = (0.0, 0.0, 0.0, 0.0);
            for r in 0..REPEAT {
                let (mut clients, mut server) = parties(cfg, r as u64);
                let t = Timer::start();
                let adverts = clients
                    .par_iter_mut()
                    .map(|c| c.advertise_keys().unwrap())
                    .collect();
                let roster = server.receive_adverts(adverts).unwrap();
                let shares = clients
                    .par_iter_mut()
                    .map(|c| c.share_keys(&roster).unwrap())
                    .collect();
                let inboxes: Vec<Vec<EncryptedShare>> = server.receive_shares(shares).unwrap();
                let (w, c) = t.stop();
                sw += w;
                sc += c;
                // Spread the dropouts so every SecAgg+ neighbourhood keeps its threshold.
                clients.retain(|c| dropped == 0 || c.id() % (N / dropped) != 0);
                let t = Timer::start();
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
                let (w, c) = t.stop();
                rw += w;
                rc += c;
                assert_eq!(out.included.len(), N - dropped);
            }
            let k = REPEAT as f64;
            println!(
                "| {name} | {dropped} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |",
                sw / k,
                sc / k,
                rw / k,
                rc / k
            );
        }
    }
}
