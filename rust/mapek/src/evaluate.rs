//! The proof: each incident run without the loop and with it (once per detector) on the same
//! packets, against the same mesh without the incident.
//!
//! Delivery is measured over packets by the tick they started, in three windows: before the
//! incident, its first `recovery_ticks` ("during") and after that ("after"). The incident's
//! cost in a window is `healthy − without loop`; the share the loop recovers is
//! `(with loop − without loop) / cost`. The target: at least 50 % recovered in the "after"
//! window, i.e. by `recovery_ticks` after the start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use meshrl_env::twin::{LocalTraffic, Twin};
use meshrl_env::EnvConfig;
use serde::Serialize;

use crate::detector::{Detector, ThresholdRule, LINK, NODE};
use crate::incident::{Incident, IncidentFile, IncidentRun, Target};
use crate::knowledge::{Action, ActionKind, ModelRecord};
use crate::ledger::DetectorLedger;
use crate::plan::{LoopConfig, MapeLoop};
use crate::run::{simulate, PacketRecord, Simulation};
use crate::training::{self, HeadScores, TrainConfig};
use crate::MapekError;

/// The three detectors, trained on the same data.
#[derive(Clone, Debug, Serialize)]
pub struct Detectors {
    #[serde(skip)]
    pub federated: Arc<Detector>,
    #[serde(skip)]
    pub local: Arc<Detector>,
    #[serde(skip)]
    pub threshold: Arc<Detector>,
    /// The node whose data trained `local`.
    pub local_node: usize,
    /// Both models' training rounds.
    pub history: Vec<ModelRecord>,
    /// Training data: samples, positives of each head, clients.
    pub training: HashMap<&'static str, usize>,
    /// Each learned detector's calibrated thresholds `[misbehaviour, link failure]`, as
    /// probabilities of the model before calibration (0.5: none found or asked for).
    pub thresholds: Vec<(String, [f32; 2])>,
    /// Scores on held-out meshes (other seeds, same incident mix), per detector.
    pub held_out: Vec<DetectorScores>,
    /// The federated detector's ledger, when `[detector] ledger` is set.
    pub ledger: Option<LedgerSummary>,
}

/// Where the federated detector's rounds were recorded.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerSummary {
    pub path: PathBuf,
    /// Blocks, genesis included (two per round: the update and its proof).
    pub blocks: usize,
    pub validators: usize,
    /// SHA-256 of the weights file of the model the loop runs (the calibrated one, proven).
    pub served: String,
}

/// One detector on held-out data.
#[derive(Clone, Debug, Serialize)]
pub struct DetectorScores {
    pub detector: String,
    pub misbehaviour: HeadScores,
    pub link_failure: HeadScores,
}

impl Detectors {
    /// The detectors in report order: federated, local, threshold.
    pub fn all(&self) -> [&Arc<Detector>; 3] {
        [&self.federated, &self.local, &self.threshold]
    }
}

/// Trains the federated and the local-only detector on training meshes of `scenario` and
/// scores all three on held-out meshes.
pub fn train_detectors(
    scenario: &EnvConfig,
    loop_cfg: &LoopConfig,
    cfg: &TrainConfig,
    router: &str,
) -> Result<Detectors, MapekError> {
    let data = training::collect(scenario, loop_cfg.window_ticks, cfg, router, 0)?;
    let mut ledger = match &cfg.ledger {
        Some(path) => Some(DetectorLedger::open(path, &training::client_names(&data), cfg.validators, cfg.seed)?),
        None => None,
    };
    let (fed, mut history, fed_thresholds) = training::train_federated(&data, cfg, ledger.as_mut())?;
    let ledger = ledger.map(|l| LedgerSummary {
        path: l.path().to_path_buf(),
        blocks: l.blocks(),
        validators: cfg.validators,
        served: meshrl_trust::weights_hash(&fed.weights).map(|h| h.to_hex()).unwrap_or_default(),
    });
    let local_node = cfg
        .local_node
        .unwrap_or_else(|| training::default_local_node(&data));
    let (local, local_history, local_thresholds) = training::train_local(&data, local_node, cfg)?;
    history.extend(local_history);
    let federated = Arc::new(Detector::Model {
        name: "federated".into(),
        mlp: fed,
    });
    let local = Arc::new(Detector::Model {
        name: "local".into(),
        mlp: local,
    });
    let threshold = Arc::new(Detector::Threshold(ThresholdRule::default()));
    let test = training::collect(scenario, loop_cfg.window_ticks, cfg, router, 1)?;
    let held_out = [&federated, &local, &threshold]
        .iter()
        .map(|d| DetectorScores {
            detector: d.name().to_string(),
            misbehaviour: training::score_head(&test, NODE, &|x| d.predict(x)),
            link_failure: training::score_head(&test, LINK, &|x| d.predict(x)),
        })
        .collect();
    Ok(Detectors {
        federated,
        local,
        threshold,
        local_node,
        history,
        training: training::sample_counts(&data),
        thresholds: vec![
            ("federated".into(), fed_thresholds),
            ("local".into(), local_thresholds),
        ],
        held_out,
        ledger,
    })
}

/// Delivery ratio in each window, and the packets behind it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Windows {
    pub before: f64,
    pub during: f64,
    pub after: f64,
    pub packets: [usize; 3],
}

/// The loop with one detector on one incident.
#[derive(Clone, Debug, Serialize)]
pub struct LoopResult {
    pub detector: String,
    pub delivery: Windows,
    /// Share of the incident's delivery cost recovered (`None` when the incident cost less
    /// than 0.5 percentage points in that window).
    pub recovered_during: Option<f64>,
    pub recovered_after: Option<f64>,
    /// Paired difference with − without the loop in the "after" window, same packets, and
    /// its 95 % interval (normal approximation).
    pub paired_after: f64,
    pub paired_after_ci: (f64, f64),
    /// Twins where the loop acted on what the incident struck, and how many ticks after the
    /// start it first did (mean, worst).
    pub detected: usize,
    pub twins: usize,
    pub time_to_detect_mean: Option<f64>,
    pub time_to_detect_max: Option<u64>,
    /// Quarantines and link avoidances that hit what the incident struck / all of them.
    pub precision: Option<f64>,
    /// Twins detected / twins (`None` for `healthy`).
    pub recall: Option<f64>,
    pub quarantines: usize,
    /// Quarantines of nodes that do not misbehave.
    pub false_quarantines: usize,
    pub false_quarantines_per_hour: f64,
    /// Healthy nodes quarantined at least once / healthy nodes (all twins).
    pub healthy_quarantined_fraction: f64,
    pub readmissions: usize,
    pub link_avoidances: usize,
    pub tunes: usize,
    /// Nodes given a transit reserve (all twins).
    pub transit_reserves: usize,
    /// The nodes' own background traffic over the run (what a transit reserve holds back).
    pub own_traffic: LocalTraffic,
    /// Every action of every twin: (twin, action).
    pub actions: Vec<(usize, Action)>,
}

/// One incident's evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentReport {
    pub incident: String,
    pub kind: String,
    pub start_tick: Option<u64>,
    pub recovery_ticks: u64,
    pub ticks: u64,
    pub twins: usize,
    pub router: String,
    /// Simulated time of one run over all twins, hours.
    pub simulated_hours: f64,
    pub targets: Vec<Option<Target>>,
    pub healthy: Windows,
    pub without_loop: Windows,
    /// The nodes' own background traffic over the run without the loop.
    pub without_loop_own_traffic: LocalTraffic,
    pub with_loop: Vec<LoopResult>,
}

impl IncidentReport {
    /// The run with the loop driven by `detector` (`federated`, `local`, `threshold`).
    pub fn with_detector(&self, detector: &str) -> Option<&LoopResult> {
        self.with_loop.iter().find(|l| l.detector == detector)
    }
}

/// Each twin's own-traffic totals, as of the last tick observed.
struct OwnTraffic(Vec<LocalTraffic>);

impl OwnTraffic {
    fn new(twins: usize) -> Self {
        OwnTraffic(vec![LocalTraffic::default(); twins])
    }

    fn observer(&mut self) -> impl FnMut(usize, &mut Twin) + '_ {
        |g, twin| {
            let mut t = LocalTraffic::default();
            for u in 0..twin.num_nodes() {
                let l = twin.local_traffic(u);
                t.offered += l.offered;
                t.admitted += l.admitted;
            }
            self.0[g] = t;
        }
    }

    fn total(&self) -> LocalTraffic {
        self.0
            .iter()
            .fold(LocalTraffic::default(), |a, t| LocalTraffic {
                offered: a.offered + t.offered,
                admitted: a.admitted + t.admitted,
            })
    }
}

fn windows(packets: &[PacketRecord], start: u64, recovery: u64) -> Windows {
    let mut d = [0usize; 3];
    let mut c = [0usize; 3];
    for p in packets {
        let w = window_of(p.start_tick, start, recovery);
        c[w] += 1;
        d[w] += p.delivered as usize;
    }
    let r = |i: usize| {
        if c[i] == 0 {
            f64::NAN
        } else {
            d[i] as f64 / c[i] as f64
        }
    };
    Windows {
        before: r(0),
        during: r(1),
        after: r(2),
        packets: c,
    }
}

fn window_of(tick: u64, start: u64, recovery: u64) -> usize {
    if tick < start {
        0
    } else if tick < start + recovery {
        1
    } else {
        2
    }
}

fn recovered(healthy: f64, without: f64, with: f64) -> Option<f64> {
    let cost = healthy - without;
    (cost >= 0.005).then(|| (with - without) / cost)
}

/// Paired with − without over packets present in both that started in the "after" window.
fn paired_after(
    with: &[PacketRecord],
    without: &[PacketRecord],
    start: u64,
    recovery: u64,
) -> (f64, (f64, f64)) {
    let by_key: HashMap<(u32, u64), &PacketRecord> =
        without.iter().map(|p| ((p.env, p.episode), p)).collect();
    let diffs: Vec<f64> = with
        .iter()
        .filter_map(|p| {
            let q = by_key.get(&(p.env, p.episode))?;
            (window_of(q.start_tick, start, recovery) == 2)
                .then_some(p.delivered as u8 as f64 - q.delivered as u8 as f64)
        })
        .collect();
    let m = diffs.len().max(1) as f64;
    let mean = diffs.iter().sum::<f64>() / m;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
    let half = 1.96 * (var / m).sqrt();
    (mean, (mean - half, mean + half))
}

/// Whether `a` is the loop acting on what the incident struck.
fn hits(incident: &Incident, target: Option<&Target>, a: &Action) -> bool {
    let Some(t) = target else { return false };
    match (incident, &a.kind) {
        (Incident::NodeTurnsMalicious { .. }, ActionKind::Quarantine { node }) => {
            t.nodes.contains(node)
        }
        (Incident::LinkDegrades { .. }, ActionKind::AvoidLink { a, b }) => t
            .link
            .is_some_and(|(x, y)| (x.min(y), x.max(y)) == (*a, *b)),
        (Incident::HubFails { .. }, ActionKind::AvoidLink { a, b }) => {
            t.nodes.contains(a) || t.nodes.contains(b)
        }
        (Incident::HubFails { .. }, ActionKind::Quarantine { node }) => t.nodes.contains(node),
        (Incident::FlashCrowd { .. }, ActionKind::Tune { value, .. }) => *value > 0.0,
        (Incident::FlashCrowd { .. }, ActionKind::ReserveTransit { node, share }) => {
            *share < 1.0 && t.nodes.contains(node)
        }
        _ => false,
    }
}

/// Whether `a` is the kind of action that answers `incident` (what precision counts):
/// quarantines for a malicious node, avoided links for a degrading link, both for a failing
/// hub, tunes and transit reserves for a flash crowd.
fn is_intervention(incident: &Incident, a: &Action) -> bool {
    match (incident, &a.kind) {
        (Incident::NodeTurnsMalicious { .. }, ActionKind::Quarantine { .. }) => true,
        (Incident::LinkDegrades { .. }, ActionKind::AvoidLink { .. }) => true,
        (
            Incident::HubFails { .. },
            ActionKind::AvoidLink { .. } | ActionKind::Quarantine { .. },
        ) => true,
        (Incident::FlashCrowd { .. }, ActionKind::Tune { value, .. }) => *value > 0.0,
        (Incident::FlashCrowd { .. }, ActionKind::ReserveTransit { share, .. }) => *share < 1.0,
        _ => false,
    }
}

fn simulation(file: &IncidentFile) -> Simulation {
    Simulation {
        cfg: file.scenario.clone(),
        twins: file.run.twins,
        ticks: file.run.ticks,
        seed: file.run.seed,
        router: file.run.router.clone(),
    }
}

/// Runs `file`'s incident without and with the loop (each detector), and the same mesh
/// without the incident, all on the same packets.
pub fn evaluate_incident(
    file: &IncidentFile,
    detectors: &Detectors,
) -> Result<IncidentReport, MapekError> {
    let sim = simulation(file);
    let twins = file.run.twins;
    let start = file.incident.start_tick().unwrap_or(file.run.ticks / 3);
    let recovery = file.run.recovery_ticks;
    let runs = |incident: &Incident| -> Vec<Vec<IncidentRun>> {
        (0..twins)
            .map(|_| vec![IncidentRun::new(incident.clone())])
            .collect()
    };
    let mut none = |_: usize, _: &mut Twin| {};
    let healthy = simulate(&sim, &mut runs(&Incident::Healthy {}), None, &mut none)?;
    let mut incident_runs = runs(&file.incident);
    let mut own_without = OwnTraffic::new(twins);
    let without = simulate(&sim, &mut incident_runs, None, &mut own_without.observer())?;
    let targets: Vec<Option<Target>> = incident_runs.iter().map(|r| r[0].target.clone()).collect();
    let healthy_w = windows(&healthy, start, recovery);
    let without_w = windows(&without, start, recovery);
    let tick_ms = file.scenario.traffic.tick_ms;
    let hours = twins as f64 * file.run.ticks as f64 * tick_ms / 3.6e6;
    let n = file.scenario.topology.num_nodes;
    let mut with_loop = Vec::new();
    for detector in detectors.all() {
        let mut loops: Vec<MapeLoop> = (0..twins)
            .map(|_| {
                let mut l = MapeLoop::new(file.mapek.clone(), Arc::clone(detector));
                l.knowledge.models = detectors
                    .history
                    .iter()
                    .filter(|r| r.detector == detector.name())
                    .cloned()
                    .collect();
                l
            })
            .collect();
        let mut own = OwnTraffic::new(twins);
        let with = simulate(
            &sim,
            &mut runs(&file.incident),
            Some(&mut loops),
            &mut own.observer(),
        )?;
        let w = windows(&with, start, recovery);
        let (paired, ci) = paired_after(&with, &without, start, recovery);
        let mut detect_times = Vec::new();
        let (mut interventions, mut hit) = (0usize, 0usize);
        let (mut quarantines, mut false_q, mut readmissions, mut avoid, mut tunes) =
            (0, 0, 0, 0, 0);
        let mut reserves = 0;
        let mut healthy_quarantined = 0usize;
        let mut healthy_nodes = 0usize;
        let mut actions = Vec::new();
        for (g, l) in loops.iter().enumerate() {
            let target = targets[g].as_ref();
            let malicious: Vec<usize> = match (&file.incident, target) {
                (Incident::NodeTurnsMalicious { .. }, Some(t)) => t.nodes.clone(),
                _ => Vec::new(),
            };
            healthy_nodes += n - malicious.len();
            let mut ever = vec![false; n];
            let mut first = None;
            for a in &l.knowledge.actions {
                actions.push((g, a.clone()));
                if is_intervention(&file.incident, a) {
                    interventions += 1;
                    if hits(&file.incident, target, a) && a.tick >= start {
                        hit += 1;
                        first.get_or_insert(a.tick - start);
                    }
                }
                match &a.kind {
                    ActionKind::Quarantine { node } => {
                        quarantines += 1;
                        let bad = malicious.contains(node) && a.tick >= start;
                        if !bad {
                            false_q += 1;
                            if !malicious.contains(node) {
                                ever[*node] = true;
                            }
                        }
                    }
                    ActionKind::Readmit { .. } => readmissions += 1,
                    ActionKind::AvoidLink { .. } => avoid += 1,
                    ActionKind::Tune { value, .. } if *value > 0.0 => tunes += 1,
                    ActionKind::ReserveTransit { share, .. } if *share < 1.0 => reserves += 1,
                    _ => {}
                }
            }
            healthy_quarantined += ever.iter().filter(|e| **e).count();
            if let Some(t) = first {
                detect_times.push(t);
            }
        }
        let has_target = !matches!(file.incident, Incident::Healthy {});
        with_loop.push(LoopResult {
            detector: detector.name().to_string(),
            recovered_during: recovered(healthy_w.during, without_w.during, w.during),
            recovered_after: recovered(healthy_w.after, without_w.after, w.after),
            delivery: w,
            paired_after: paired,
            paired_after_ci: ci,
            detected: detect_times.len(),
            twins,
            time_to_detect_mean: (!detect_times.is_empty())
                .then(|| detect_times.iter().sum::<u64>() as f64 / detect_times.len() as f64),
            time_to_detect_max: detect_times.iter().max().copied(),
            precision: (has_target && interventions > 0).then(|| hit as f64 / interventions as f64),
            recall: has_target.then(|| detect_times.len() as f64 / twins as f64),
            quarantines,
            false_quarantines: false_q,
            false_quarantines_per_hour: false_q as f64 / hours,
            healthy_quarantined_fraction: healthy_quarantined as f64 / healthy_nodes.max(1) as f64,
            readmissions,
            link_avoidances: avoid,
            tunes,
            transit_reserves: reserves,
            own_traffic: own.total(),
            actions,
        });
    }
    Ok(IncidentReport {
        incident: file.name.clone(),
        kind: file.incident.kind().to_string(),
        start_tick: file.incident.start_tick(),
        recovery_ticks: recovery,
        ticks: file.run.ticks,
        twins,
        router: file.run.router.clone(),
        simulated_hours: hours,
        targets,
        healthy: healthy_w,
        without_loop: without_w,
        without_loop_own_traffic: own_without.total(),
        with_loop,
    })
}
