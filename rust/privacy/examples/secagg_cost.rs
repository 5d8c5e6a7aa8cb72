//! Wall and CPU time of each secure aggregation phase at n = 100, d = 10,000, all parties in
//! process (clients in parallel, as `secure_sum` runs them). CPU time is read from
//! /proc/self/stat (Linux), so it stays meaningful on a shared, loaded machine: on 2 idle
//! cores the wall time is about CPU / 2.
//!
//! CARGO_TARGET_DIR=/root/.cache/meshrl/target-light cargo run --profile bench -p meshrl-privacy --example secagg_cost

#[path = "../benches/parties/mod.rs"]
mod parties;

use std::time::Instant;

use parties::{inputs, parties, round, sessions, setup, N, D};

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

fn main() {
    let inputs = inputs();
    let [complete, unsigned, harary] = sessions();
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
                let inboxes = setup(&mut clients, &mut server);
                let (w, c) = t.stop();
                sw += w;
                sc += c;
                // Spread the dropouts so every SecAgg+ neighbourhood keeps its threshold.
                clients.retain(|c| dropped == 0 || c.id() % (N / dropped) != 0);
                let t = Timer::start();
                let included = round(&mut clients, &mut server, &inboxes, &inputs);
                let (w, c) = t.stop();
                rw += w;
                rc += c;
                assert_eq!(included, N - dropped);
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
