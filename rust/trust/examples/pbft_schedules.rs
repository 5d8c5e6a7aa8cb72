//! Runs seeded PBFT schedules and prints the counts for RESULTS.md.
//!
//! cargo run --release -p meshrl-trust --example pbft_schedules -- [SCHEDULES] [FIRST_SEED] [F]
//! cargo run --release -p meshrl-trust --example pbft_schedules -- show F SEED

use std::time::Instant;

use meshrl_trust::pbft::sim::Schedule;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("show") {
        let f: usize = args[1].parse().expect("F");
        let seed: u64 = args[2].parse().expect("SEED");
        let s = Schedule::random(f, seed, None);
        println!("{s:#?}");
        let (sim, o) = s.simulate().expect("schedule runs");
        println!("{o:#?}\nended at {} ms", sim.now());
        for i in sim.honest() {
            println!("{}", sim.replica(i).expect("honest").summary());
        }
        return;
    }
    let count: u64 = args
        .first()
        .map_or(10_000, |a| a.parse().expect("SCHEDULES"));
    let first: u64 = args.get(1).map_or(0, |a| a.parse().expect("FIRST_SEED"));
    let fs: Vec<usize> = match args.get(2) {
        Some(f) => vec![f.parse().expect("F")],
        None => vec![1, 2],
    };
    for f in fs {
        let t = Instant::now();
        let (mut unsafe_runs, mut stuck, mut worst, mut byzantine) = (0u64, 0u64, 0u64, 0u64);
        let mut views = std::collections::BTreeMap::<u64, u64>::new();
        for seed in first..first + count {
            let s = Schedule::random(f, seed, None);
            byzantine += s
                .behaviors
                .iter()
                .filter(|b| **b != meshrl_trust::pbft::sim::Behavior::Honest)
                .count() as u64;
            let one = Instant::now();
            let o = s.run().expect("schedule runs");
            if one.elapsed().as_secs_f64() > 2.0 {
                println!(
                    "f={f} seed={seed}: slow, {:.1} s, {} messages delivered",
                    one.elapsed().as_secs_f64(),
                    o.delivered
                );
            }
            if !o.violations.is_empty() {
                unsafe_runs += 1;
                println!("f={f} seed={seed}: {:?}", o.violations);
            }
            if !o.all_decided {
                stuck += 1;
                println!("f={f} seed={seed}: not every round decided");
            }
            worst = worst.max(o.views_after_gst);
            *views.entry(o.views_after_gst).or_default() += 1;
        }
        println!(
            "f={f} n={} schedules={count} byzantine_replicas={byzantine} safety_violations={unsafe_runs} \
             undecided={stuck} worst_views_after_gst={worst} views_after_gst_histogram={views:?} \
             seconds={:.1}",
            3 * f + 1,
            t.elapsed().as_secs_f64()
        );
    }
}
