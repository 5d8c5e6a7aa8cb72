//! Seeded PBFT schedules: 3f + 1 validators, up to f Byzantine (silent, twins, forgers), a
//! network that delays, drops, duplicates, reorders and partitions until GST. Safety: no two
//! honest replicas decide different values at one sequence number. Liveness: every round is
//! decided, within at most `VIEW_BOUND(f)` views after GST.
//!
//! The 10,000-schedule run: `cargo run --release -p meshrl-trust --example pbft_schedules`.

use meshrl_trust::pbft::sim::{Behavior, Schedule};

/// Views after GST within which every round is decided (see docs/trust.md).
fn view_bound(f: usize) -> u64 {
    f as u64 + 2
}

fn run(f: usize, seeds: std::ops::Range<u64>) {
    let mut worst = 0;
    for seed in seeds {
        let s = Schedule::random(f, seed, None);
        let o = s.run().unwrap();
        assert!(
            o.violations.is_empty(),
            "f={f} seed={seed}: {:?}\n{s:?}",
            o.violations
        );
        assert!(
            o.all_decided,
            "f={f} seed={seed}: not every round decided\n{s:?}\n{o:?}"
        );
        assert!(
            o.views_after_gst <= view_bound(f),
            "f={f} seed={seed}: {} views after GST\n{s:?}\n{o:?}",
            o.views_after_gst
        );
        worst = worst.max(o.views_after_gst);
    }
    eprintln!("f={f}: worst views after GST {worst}");
}

#[test]
fn f1_500_schedules_are_safe_and_live() {
    run(1, 0..500);
}

#[test]
fn f2_500_schedules_are_safe_and_live() {
    run(2, 0..500);
}

#[test]
fn the_checker_finds_violations_beyond_f() {
    // With f + 1 equivocating twins among 3f + 1 the quorums no longer intersect in an honest
    // replica; some schedule must show two honest replicas deciding differently.
    let mut found = 0;
    for seed in 0..300 {
        let mut s = Schedule::random(1, seed, Some(0));
        s.behaviors = vec![
            Behavior::Twins,
            Behavior::Twins,
            Behavior::Honest,
            Behavior::Honest,
        ];
        s.net.drop = 0.0;
        s.net.partition = 0.0;
        if !s.run().unwrap().violations.is_empty() {
            found += 1;
        }
    }
    assert!(
        found > 0,
        "no violation found with 2 Byzantine replicas among 4"
    );
}
