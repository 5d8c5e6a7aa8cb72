//! The federated detector's rounds in the model ledger: every round and the calibration
//! proven by PBFT, the model served from the ledger equal to the one trained without it, a
//! resumed run continuing the file, another run's ledger refused, tampering caught.

use std::path::{Path, PathBuf};

use meshrl_mapek::ledger::DetectorLedger;
use meshrl_mapek::training::{client_names, collect, train_federated, NodeData};
use meshrl_mapek::{IncidentFile, TrainConfig};
use meshrl_trust::{inspect, verify_file, weights_hash, BlockBody};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshrl-mapek-ledger-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small() -> (TrainConfig, NodeData) {
    let f = IncidentFile::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval/incidents/node_turns_malicious.toml"),
    )
    .unwrap();
    let cfg = TrainConfig {
        training_meshes: 2,
        ticks: 300,
        rounds: 6,
        ..TrainConfig::default()
    };
    let data = collect(&f.scenario, f.mapek.window_ticks, &cfg, "etx", 0).unwrap();
    (cfg, data)
}

#[test]
fn every_round_is_proven_and_the_loop_runs_the_model_the_ledger_serves() {
    let (cfg, data) = small();
    let names = client_names(&data);
    assert!(names.len() >= 4, "{names:?}");
    let (plain, _, plain_thresholds) = train_federated(&data, &cfg, None).unwrap();

    let dir = scratch("proven");
    let path = dir.join("detector.mlg");
    let mut ledger = DetectorLedger::open(&path, &names, 4, cfg.seed).unwrap();
    let (model, history, thresholds) = train_federated(&data, &cfg, Some(&mut ledger)).unwrap();
    // The ledger serves exactly what was aggregated and calibrated.
    assert_eq!(model.weights, plain.weights);
    assert_eq!(thresholds, plain_thresholds);
    // Genesis, then an update and its proof for each round and for the calibration.
    let rounds = cfg.rounds as u64 + 1;
    assert_eq!(ledger.blocks() as u64, 1 + 2 * rounds);
    let report = verify_file(&path).unwrap();
    assert_eq!(report.consensus_proofs, rounds);
    let latest = report.latest_proven.unwrap();
    assert_eq!(latest.round, rounds);
    assert_eq!(latest.model_hash, weights_hash(&model.weights).unwrap());

    let (blocks, _) = inspect(&path).unwrap();
    let updates: Vec<_> = blocks
        .iter()
        .filter_map(|b| match &b.body {
            BlockBody::ModelUpdate(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(updates.len() as u64, rounds);
    for (rec, u) in history.iter().zip(&updates) {
        // Each round's record names the model the ledger proves for it.
        assert_eq!(rec.model_hash.as_deref(), Some(u.model_hash.to_hex().as_str()));
        assert_eq!(u.rule, "fedavg(weights=samples)");
        // Every training node signed its update; all were aggregated.
        assert_eq!(u.updates.len(), names.len());
        assert_eq!(u.participants.len(), rec.clients);
        assert!(u.participants[0].as_str().starts_with("spiffe://mapek.meshrl/mesh/node/t0-n"));
    }
    assert_eq!(updates.last().unwrap().rule, "calibration(f1)");

    // A resumed run continues the file: nothing appended, the same model served.
    drop(ledger);
    let mut again = DetectorLedger::open(&path, &names, 4, cfg.seed).unwrap();
    let (resumed, _, _) = train_federated(&data, &cfg, Some(&mut again)).unwrap();
    assert_eq!(resumed.weights, model.weights);
    assert_eq!(again.blocks() as u64, 1 + 2 * rounds);

    // The same nodes computing another model: refused at round 1, naming the field to change.
    let median = TrainConfig {
        rule: "median".into(),
        ..cfg.clone()
    };
    let err = train_federated(&data, &median, Some(&mut again)).err().unwrap().to_string();
    assert!(err.contains("different round-1 model") && err.contains("detector.ledger"), "{err}");
    assert_eq!(verify_file(&path).unwrap().blocks, 1 + 2 * rounds);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn another_trainings_ledger_bad_validators_and_tampering_are_clear_errors() {
    let (cfg, data) = small();
    let names = client_names(&data);
    let dir = scratch("refused");
    let path = dir.join("detector.mlg");
    let mut ledger = DetectorLedger::open(&path, &names, 4, cfg.seed).unwrap();
    let short = TrainConfig { rounds: 2, ..cfg.clone() };
    train_federated(&data, &short, Some(&mut ledger)).unwrap();
    drop(ledger);

    // Another seed: other keys and validators, another genesis.
    let err = DetectorLedger::open(&path, &names, 4, cfg.seed + 1).err().unwrap().to_string();
    assert!(err.contains("another run") && err.contains("detector.ledger"), "{err}");
    // 3f + 1 validators with f ≥ 1, among the training nodes.
    for v in [3, names.len() + 1] {
        let err = DetectorLedger::open(&dir.join("v.mlg"), &names, v, cfg.seed).err().unwrap().to_string();
        assert!(err.contains("detector.validators"), "{err}");
    }
    let err = TrainConfig { validators: 2, ledger: Some(path.clone()), ..cfg.clone() }
        .validate("test")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("detector.validators"), "{err}");

    // A flipped byte inside an acknowledged block: opening fails and names the file.
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let err = DetectorLedger::open(&path, &names, 4, cfg.seed).err().unwrap().to_string();
    assert!(err.contains("detector.mlg"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
