//! kill -9 during appends: a child process appends to a ledger and prints each acknowledged
//! block; the parent kills it with SIGKILL at a random moment, reopens the ledger and checks
//! that it is a valid prefix holding every acknowledged block. (SIGKILL loses no written page,
//! so this tests the torn-tail and anchor logic, not the disk's fsync.)
//!
//! The 1,000-kill run: `cargo test --release -p meshrl-trust --test ledger_crash -- --ignored
//! kill_9_a_thousand_times --nocapture`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fed, temp_dir};
use meshrl_trust::pbft::sim::Rng;
use meshrl_trust::{verify_file, BlockBody, Ledger};

const CHILD: &str = "MESHRL_TRUST_CRASH_CHILD";

/// The child: appends rounds forever, printing `ack INDEX HASH` after each append returns.
#[test]
#[ignore = "the child process of the kill -9 tests"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    let f = fed();
    let mut l = Ledger::open(std::path::Path::new(&path)).expect("the child opens the ledger");
    let mut round = l
        .blocks()
        .iter()
        .filter_map(|b| b.body.round())
        .max()
        .unwrap_or(0);
    let pending_proof = matches!(
        l.blocks().last().map(|b| &b.body),
        Some(BlockBody::ModelUpdate(_))
    );
    if pending_proof {
        let BlockBody::ModelUpdate(u) = &l.blocks().last().unwrap().body else {
            unreachable!()
        };
        let proof = f.proof(u.value());
        let b = l.append_consensus_proof(&f.coordinator, proof).unwrap();
        println!("ack {} {}", b.index, b.hash);
    }
    loop {
        round += 1;
        let u = f.update(&l, round, &[round as f32; 64]);
        let v = u.value();
        let b = l.append_model_update(&f.coordinator, u).unwrap();
        println!("ack {} {}", b.index, b.hash);
        let b = l
            .append_consensus_proof(&f.coordinator, f.proof(v))
            .unwrap();
        println!("ack {} {}", b.index, b.hash);
    }
}

/// Kills the child `kills` times, on a fresh ledger every 50 kills (so reopening, which checks
/// every block, stays fast); returns (blocks appended, kills that left a torn tail).
fn kill_cycles(kills: usize, seed: u64) -> (usize, usize) {
    let dir = temp_dir(&format!("crash-{seed}"));
    let f = fed();
    let mut rng = Rng::new(seed);
    let (mut blocks, mut torn, mut acked_total) = (0, 0, 0);
    for segment in 0..kills.div_ceil(50) {
        let path = dir.join(format!("ledger-{segment}.bin"));
        drop(Ledger::create(&path, &f.coordinator, f.genesis.clone()).unwrap());
        let mut acked: Vec<(u64, String)> = Vec::new();
        for cycle in segment * 50..kills.min((segment + 1) * 50) {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "crash_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let mut w = line.split(' ');
                    if w.next() == Some("ack") {
                        if let (Some(Ok(i)), Some(h)) = (w.next().map(str::parse::<u64>), w.next())
                        {
                            let _ = tx.send((i, h.to_string()));
                        }
                    }
                }
            });
            // Kill at a random moment once appends are under way.
            let first = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the child appends");
            acked.push(first);
            std::thread::sleep(Duration::from_micros(rng.below(15_000)));
            child.kill().unwrap();
            child.wait().unwrap();
            reader.join().unwrap();
            acked.extend(rx.try_iter());
            if verify_file(&path).is_ok_and(|r| r.torn_tail.is_some()) {
                torn += 1;
            }
            let l =
                Ledger::open(&path).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
            for (i, h) in &acked {
                let b = l.blocks().get(*i as usize).unwrap_or_else(|| {
                    panic!(
                        "cycle {cycle}: acknowledged block {i} lost ({} blocks)",
                        l.blocks().len()
                    )
                });
                assert_eq!(&b.hash.to_hex(), h, "cycle {cycle}: block {i} changed");
            }
            l.verify().unwrap();
        }
        blocks += Ledger::open(&path).unwrap().blocks().len() - 1;
        acked_total += acked.len();
    }
    assert!(
        acked_total > kills / 2,
        "the child appended too little to test anything"
    );
    std::fs::remove_dir_all(&dir).ok();
    (blocks, torn)
}

#[test]
fn kill_9_fifty_times() {
    let (blocks, torn) = kill_cycles(50, 1);
    eprintln!("50 kills: {blocks} blocks, {torn} torn tails cut");
}

#[test]
#[ignore = "1,000 kills (minutes); result in RESULTS.md"]
fn kill_9_a_thousand_times() {
    let (blocks, torn) = kill_cycles(1_000, 2);
    println!("1000 kills: {blocks} blocks, {torn} torn tails cut, every acknowledged block kept");
}
