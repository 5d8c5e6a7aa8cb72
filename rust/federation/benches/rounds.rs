//! Federation round time and worker memory against mesh size (20, 50, 100, 200 nodes, one
//! worker per node, 10 sampled per round), on the configs/federate/mesh20.toml settings with the
//! area grown to keep the density. Prints a table for BENCHMARKS.md:
//!
//!     cargo test --release --workspace --exclude meshrl-python \
//!       --features meshrl-ppo/wgpu,meshrl-cli/wgpu --bench rounds
//!
//! (the test build's profile and feature set, so burn does not compile again; `cargo bench`
//! would build burn once more in the bench profile).

use std::path::Path;
use std::time::Instant;

use meshrl_federation::{Federation, FederationConfig};

/// Resident memory of this process, bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/federate/mesh20.toml");
    let base = FederationConfig::load(path).expect("mesh20 config");
    let sizes: Vec<usize> = std::env::var("MESHRL_BENCH_NODES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![20, 50, 100, 200]);
    let rounds = 3u64;
    println!("| nodes | workers | sampled/round | wall s/round (mean of {rounds}) | of which evaluation s | memory per worker (MiB) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let mut cfg = base.clone();
        cfg.env.topology.num_nodes = n;
        cfg.env.topology.area_m = 420.0 * (n as f64 / 20.0).sqrt();
        cfg.federation.eval_every = 0;
        cfg.federation.rounds = 1_000;
        let mut fed = Federation::new(cfg).expect("federation");
        // Memory: build every worker once (a Learner and its environments each).
        let before = rss();
        let workers: Vec<_> = (0..fed.num_workers()).map(|i| fed.make_worker(i).expect("worker")).collect();
        let per_worker = (rss().saturating_sub(before)) as f64 / workers.len() as f64 / (1 << 20) as f64;
        drop(workers);
        fed.run_round().expect("warm-up round");
        let t = Instant::now();
        fed.run(rounds, |_| true).expect("rounds");
        let per_round = t.elapsed().as_secs_f64() / rounds as f64;
        let t = Instant::now();
        fed.evaluate_global().expect("evaluation");
        let eval = t.elapsed().as_secs_f64();
        println!(
            "| {n} | {} | {} | {per_round:.2} | {eval:.2} | {per_worker:.2} |",
            fed.num_workers(),
            fed.config().federation.clients_per_round
        );
    }
}
