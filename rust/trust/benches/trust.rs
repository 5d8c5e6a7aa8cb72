//! Committed rounds per second of simulated PBFT (4, 7, 10 honest validators, a synchronous
//! network, 20 rounds per run: signing, verifying and the state machines, not network time),
//! and ledger appends per second with fsync.
//!
//! cargo bench -p meshrl-trust --bench trust

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meshrl_trust::pbft::sim::{Behavior, NetConfig, Simulator};
use meshrl_trust::pbft::Config;
use meshrl_trust::{Genesis, Hash32, Identity, Ledger, ModelUpdate, SpiffeId, TrustBundle, Value};

const ROUNDS: u64 = 20;

fn identities(n: usize) -> Vec<Identity> {
    (0..n)
        .map(|i| Identity::from_seed(SpiffeId::node("bench", &format!("v{i}")).unwrap(), 0))
        .collect()
}

fn rounds(ids: &[Identity], seed: u64) -> usize {
    let n = ids.len();
    let mut s = Simulator::new(
        ids.to_vec(),
        vec![Behavior::Honest; n],
        Config {
            watermark_window: 32,
            ..Config::default()
        },
        NetConfig::synchronous(),
        0,
        seed,
    )
    .unwrap();
    for r in 1..=ROUNDS {
        let v = Value {
            round: r,
            model_hash: Hash32::of(&r.to_le_bytes()),
            certificate: Hash32::default(),
        };
        for node in 0..n {
            s.submit_at(0, node, v);
        }
    }
    s.run_until(|s| {
        s.decisions().values().all(|d| d.len() as u64 == ROUNDS) && s.decisions().len() == n
    });
    assert!(s.violations().is_empty());
    s.decisions().values().map(|d| d.len()).min().unwrap_or(0)
}

fn pbft(c: &mut Criterion) {
    let mut g = c.benchmark_group("pbft_committed_rounds");
    g.sample_size(10).throughput(Throughput::Elements(ROUNDS));
    for n in [4usize, 7, 10] {
        let ids = identities(n);
        assert_eq!(rounds(&ids, 0), ROUNDS as usize);
        let mut seed = 0;
        g.bench_function(format!("validators_{n}"), |b| {
            b.iter(|| {
                seed += 1;
                rounds(&ids, seed)
            })
        });
    }
    g.finish();
}

fn ledger(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("meshrl-trust-bench-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let author = Identity::from_seed(SpiffeId::node("bench", "coordinator").unwrap(), 0);
    let genesis = Genesis {
        bundle: TrustBundle::from_keys([author.node_key()]).unwrap(),
        validators: vec![author.id().clone()],
    };
    let mut l = Ledger::create(&dir.join("ledger.bin"), &author, genesis).unwrap();
    let mut round = 0;
    let mut g = c.benchmark_group("ledger");
    g.sample_size(20).throughput(Throughput::Elements(1));
    g.bench_function("append_model_update_fsync", |b| {
        b.iter(|| {
            round += 1;
            let u = ModelUpdate {
                round,
                model_hash: Hash32::of(&round.to_le_bytes()),
                rule: "fedavg".into(),
                participants: vec![author.id().clone()],
                set_aside: vec![],
                epsilon: Some(1.0),
                updates: vec![],
            };
            l.append_model_update(&author, u).unwrap().index
        })
    });
    g.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, pbft, ledger);
criterion_main!(benches);
