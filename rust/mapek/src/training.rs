//! Training the detector: data from the twin, federated rounds across nodes, one node alone.
//!
//! **Data.** Training meshes (seeds disjoint from the evaluation's) run the base scenario
//! with a random mix of incidents: relays turning malicious with random drop probabilities,
//! links fading, flash crowds, hubs failing. Every `sample_every` ticks each node records its
//! features about each neighbour ([`Monitor::observe`]), labelled with whether the
//! neighbour misbehaves (the twin's ground truth, as a lab replays known incidents) and
//! whether the link fails (frame loss ≥ `link_failure_loss` or the neighbour gone) within
//! `horizon_ticks`, which the node itself sees happen: a self-supervised label. Links
//! already failed carry no link label. A node's samples never leave it.
//!
//! **Federated.** Each round every node takes `local_steps` SGD steps on its own samples from
//! the global weights; the weights are aggregated with `rule` (`meshrl-fl`; FedAvg weighted
//! by sample count by default). **Local-only.** The same steps, all on one node's samples.

use std::collections::HashMap;
use std::path::PathBuf;

use meshrl_env::twin::Twin;
use meshrl_env::EnvConfig;
use meshrl_fl::{OnInvalid, Rule};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::detector::{Mlp, LINK, NODE};
use crate::incident::{Incident, IncidentRun};
use crate::knowledge::{checksum, ModelRecord};
use crate::ledger::DetectorLedger;
use crate::monitor::{Monitor, FEATURES};
use crate::run::{simulate, Simulation};
use crate::MapekError;

/// How the detectors are trained (`[detector]` in an incident file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Training meshes (each its own topology and incident mix).
    pub training_meshes: usize,
    /// Ticks each training mesh runs.
    pub ticks: u64,
    /// Seed of the training meshes and of SGD (the evaluation uses `run.seed`).
    pub seed: u64,
    pub sample_every: u64,
    /// A link "fails" if within this many ticks its frame loss reaches `link_failure_loss`
    /// or the neighbour leaves the table.
    pub horizon_ticks: u64,
    pub link_failure_loss: f32,
    pub hidden: usize,
    pub rounds: usize,
    pub local_steps: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    /// Weight of a positive sample of each head in the loss (the classes are imbalanced).
    pub node_positive_weight: f32,
    pub link_positive_weight: f32,
    /// `fedavg`, `trimmed_mean` (β = 0.1) or `median`.
    pub rule: String,
    /// After training, where each head's decision boundary moves (federated: every node
    /// sends histograms of its scores per class, counts only; summed, they pick it).
    pub calibration: Calibration,
    /// The node whose data trains the local-only detector (training mesh 0); default: the
    /// one with the most misbehaviour examples, the most favourable choice for it.
    pub local_node: Option<usize>,
    /// Record the federated detector's rounds (and its calibration) in a model ledger here:
    /// signed updates, PBFT among `validators` training nodes, the model read back from the
    /// ledger each round ([`crate::ledger`]). An existing ledger of the same training is
    /// continued (its rounds must match); `meshrl ledger verify` checks it.
    pub ledger: Option<PathBuf>,
    /// Validators for the ledger (3f + 1; at least 4).
    pub validators: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            training_meshes: 8,
            ticks: 800,
            seed: 7,
            sample_every: 4,
            horizon_ticks: 30,
            link_failure_loss: 0.5,
            hidden: 16,
            rounds: 300,
            local_steps: 10,
            batch_size: 32,
            learning_rate: 0.3,
            node_positive_weight: 4.0,
            link_positive_weight: 20.0,
            rule: "fedavg".into(),
            calibration: Calibration::F1,
            local_node: None,
            ledger: None,
            validators: 4,
        }
    }
}

impl TrainConfig {
    /// Checks every value; the error names the field (`detector.…`).
    pub fn validate(&self, origin: &str) -> Result<(), MapekError> {
        let bad = |f: &str, r: String| Err(MapekError::config(origin, &format!("detector.{f}"), r));
        for (f, v) in [
            ("training_meshes", self.training_meshes as u64),
            ("ticks", self.ticks),
            ("sample_every", self.sample_every),
            ("horizon_ticks", self.horizon_ticks),
            ("hidden", self.hidden as u64),
            ("rounds", self.rounds as u64),
            ("local_steps", self.local_steps as u64),
            ("batch_size", self.batch_size as u64),
        ] {
            if v == 0 {
                return bad(f, "must be at least 1".into());
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(
                "learning_rate",
                format!("must be a finite number > 0, got {}", self.learning_rate),
            );
        }
        for (f, v) in [
            ("node_positive_weight", self.node_positive_weight),
            ("link_positive_weight", self.link_positive_weight),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(f, format!("must be a finite number > 0, got {v}"));
            }
        }
        if let Calibration::Precision(p) = self.calibration {
            if !(p > 0.0 && p < 1.0) {
                return bad(
                    "calibration",
                    format!("precision must be in (0, 1), got {p}"),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.link_failure_loss) {
            return bad(
                "link_failure_loss",
                format!("must be in [0, 1], got {}", self.link_failure_loss),
            );
        }
        if self.ledger.is_some() && self.validators < 4 {
            return bad(
                "validators",
                format!("must be at least 4 (3f + 1 with f >= 1), got {}", self.validators),
            );
        }
        self.aggregation_rule()
            .map_err(|r| MapekError::config(origin, "detector.rule", r))?;
        Ok(())
    }

    /// The rule as the ledger names it.
    fn rule_name(&self) -> &'static str {
        match self.rule.as_str() {
            "fedavg" => "fedavg(weights=samples)",
            "trimmed_mean" => "trimmed_mean(beta=0.1)",
            _ => "median",
        }
    }

    fn aggregation_rule(&self) -> Result<Rule, String> {
        match self.rule.as_str() {
            "fedavg" => Ok(Rule::FedAvg),
            "trimmed_mean" => Ok(Rule::TrimmedMean { beta: 0.1 }),
            "median" => Ok(Rule::Median),
            other => Err(format!(
                "unknown rule `{other}`; known: fedavg, trimmed_mean, median"
            )),
        }
    }
}

/// Where a trained head decides (`[detector] calibration` in an incident file).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// At 0.5, as trained (with its class weights).
    None,
    /// At the score that maximizes F1 on the training data (`"f1"`, the default).
    F1,
    /// At the lowest score at which the training data's precision is still at least this
    /// (`{ precision = 0.9 }`).
    Precision(f32),
}

impl Calibration {
    /// As the config spells it: `none`, `f1`, `precision=0.9`.
    pub fn name(&self) -> String {
        match self {
            Calibration::None => "none".into(),
            Calibration::F1 => "f1".into(),
            Calibration::Precision(p) => format!("precision={p}"),
        }
    }
}

/// The federated clients' names in [`train_federated`]'s order: `t<mesh>-n<node>` for every
/// node with samples.
pub fn client_names(data: &NodeData) -> Vec<String> {
    data.iter()
        .enumerate()
        .flat_map(|(m, nodes)| {
            nodes
                .iter()
                .enumerate()
                .filter(|(_, d)| !d.is_empty())
                .map(move |(n, _)| format!("t{m}-n{n}"))
        })
        .collect()
}

/// One labelled observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub features: [f32; FEATURES],
    /// The neighbour misbehaves.
    pub misbehaving: bool,
    /// The link fails within the horizon (`None`: it has already failed, no label).
    pub link_fails: Option<bool>,
}

/// Samples of each node of each mesh: `data[mesh][node]`.
pub type NodeData = Vec<Vec<Vec<Sample>>>;

/// A random mix of incidents for training mesh `mesh` (seeded).
fn training_incidents(
    cfg: &EnvConfig,
    ticks: u64,
    seed: u64,
    mesh: usize,
) -> (f64, Vec<IncidentRun>) {
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(meshrl_env::twin::splitmix64(seed ^ (mesh as u64) << 20));
    let n = cfg.topology.num_nodes;
    let mid = (ticks / 2).max(2);
    let mut out = Vec::new();
    let drop = 0.2 + 0.6 * rng.random::<f64>();
    for _ in 0..2 {
        out.push(IncidentRun::new_random(
            Incident::NodeTurnsMalicious {
                start_tick: rng.random_range(1..mid),
                node: Some(rng.random_range(0..n)),
                drop_probability: drop,
                delay_probability: None,
            },
            rng.random(),
        ));
    }
    for _ in 0..8 {
        out.push(IncidentRun::new_random(
            Incident::LinkDegrades {
                start_tick: rng.random_range(1..mid),
                link: None,
                extra_loss_db: 10.0 + 20.0 * rng.random::<f64>(),
                ramp_ticks: rng.random_range(10..80),
            },
            rng.random(),
        ));
    }
    if mesh % 2 == 1 {
        out.push(IncidentRun::new_random(
            Incident::FlashCrowd {
                start_tick: rng.random_range(1..mid),
                duration_ticks: rng.random_range(100..300),
                hotspot_nodes: (n / 4).max(1),
                packets_per_tick: 2.0 + 4.0 * rng.random::<f64>(),
            },
            rng.random(),
        ));
    }
    if mesh % 3 == 2 {
        out.push(IncidentRun::new_random(
            Incident::HubFails {
                start_tick: rng.random_range(mid..mid + mid / 2),
                node: None,
                warning_ticks: rng.random_range(10..60),
                warning_loss_db: 10.0 + 15.0 * rng.random::<f64>(),
            },
            rng.random(),
        ));
    }
    (drop, out)
}

/// Per tick: each table slot's neighbour and frame loss, and who is up.
struct LinkLog {
    k: usize,
    neighbors: Vec<Vec<u32>>,
    loss: Vec<Vec<f32>>,
    active: Vec<Vec<bool>>,
}

impl LinkLog {
    fn record(&mut self, twin: &Twin) {
        let n = twin.num_nodes();
        self.neighbors
            .push((0..n).flat_map(|u| twin.neighbors(u).to_vec()).collect());
        self.loss.push(
            (0..n)
                .flat_map(|u| {
                    twin.link_metrics(u)
                        .iter()
                        .map(|m| m.packet_loss)
                        .collect::<Vec<_>>()
                })
                .collect(),
        );
        self.active
            .push((0..n).map(|u| twin.is_active(u)).collect());
    }

    /// Whether `u → v` is failed at log index `t`.
    fn failed(&self, t: usize, u: usize, v: u32, fail_loss: f32) -> bool {
        if !self.active[t][v as usize] {
            return true;
        }
        let row = &self.neighbors[t][u * self.k..(u + 1) * self.k];
        match row.iter().position(|&x| x == v) {
            Some(s) => self.loss[t][u * self.k + s] >= fail_loss,
            None => true,
        }
    }
}

/// Runs the training meshes (or, with `seed_offset`, held-out ones) and returns each node's
/// labelled samples: `data[mesh][node]`.
pub fn collect(
    scenario: &EnvConfig,
    window_ticks: usize,
    cfg: &TrainConfig,
    router: &str,
    seed_offset: u64,
) -> Result<NodeData, MapekError> {
    let mut data = Vec::new();
    for mesh in 0..cfg.training_meshes {
        let seed = cfg
            .seed
            .wrapping_add(seed_offset)
            .wrapping_mul(1_000_003)
            .wrapping_add(mesh as u64 * 7919);
        let (drop, incidents) = training_incidents(scenario, cfg.ticks, seed, mesh);
        let mut env_cfg = scenario.clone();
        env_cfg.trust.drop_probability = drop;
        let sim = Simulation {
            cfg: env_cfg,
            twins: 1,
            ticks: cfg.ticks,
            seed,
            router: router.to_string(),
        };
        let n = scenario.topology.num_nodes;
        let mut monitor = Monitor::new(window_ticks);
        let mut log = LinkLog {
            k: scenario.topology.max_neighbors,
            neighbors: Vec::new(),
            loss: Vec::new(),
            active: Vec::new(),
        };
        // (log index, observer, neighbour, features, misbehaving, failed now)
        let mut pending: Vec<(usize, usize, u32, [f32; FEATURES], bool, bool)> = Vec::new();
        let mut observer = |_: usize, twin: &mut Twin| {
            let twin = &*twin;
            monitor.record(twin);
            log.record(twin);
            let t = twin.ticks();
            if t < window_ticks as u64 || t % cfg.sample_every != 0 {
                return;
            }
            let idx = log.neighbors.len() - 1;
            for o in monitor.observe() {
                let (u, v) = (o.observer as usize, o.neighbor);
                let failed = log.failed(idx, u, v, cfg.link_failure_loss);
                pending.push((idx, u, v, o.features, twin.is_untrusted(v as usize), failed));
            }
        };
        simulate(&sim, &mut [incidents], None, &mut observer)?;
        let mut nodes: Vec<Vec<Sample>> = vec![Vec::new(); n];
        let horizon = cfg.horizon_ticks as usize;
        let last = log.neighbors.len();
        for (idx, u, v, x, bad, failed_now) in pending {
            let link_fails = if failed_now || idx + horizon >= last {
                None
            } else {
                Some((idx + 1..=idx + horizon).any(|t| log.failed(t, u, v, cfg.link_failure_loss)))
            };
            nodes[u].push(Sample {
                features: x,
                misbehaving: bad,
                link_fails,
            });
        }
        data.push(nodes);
    }
    Ok(data)
}

fn local_sgd(
    mlp: &mut Mlp,
    data: &[Sample],
    cfg: &TrainConfig,
    steps: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> f32 {
    let mut loss = 0.0;
    let b = cfg.batch_size.min(data.len());
    let (mut x, mut t, mut w) = (
        Vec::with_capacity(b),
        Vec::with_capacity(b),
        Vec::with_capacity(b),
    );
    for _ in 0..steps {
        x.clear();
        t.clear();
        w.clear();
        for _ in 0..b {
            let s = &data[rng.random_range(0..data.len())];
            x.push(s.features);
            let node = s.misbehaving as u8 as f32;
            let link = s.link_fails.unwrap_or(false) as u8 as f32;
            t.push([node, link]);
            let wn = if s.misbehaving {
                cfg.node_positive_weight
            } else {
                1.0
            };
            let wl = match s.link_fails {
                None => 0.0,
                Some(true) => cfg.link_positive_weight,
                Some(false) => 1.0,
            };
            w.push([wn, wl]);
        }
        let g = mlp.gradient(&x, &t, &w);
        for (p, d) in mlp.weights.iter_mut().zip(&g.grad) {
            *p -= cfg.learning_rate * d;
        }
        loss += g.loss;
    }
    loss / steps.max(1) as f32
}

fn client_rng(seed: u64, round: usize, client: usize) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(meshrl_env::twin::splitmix64(
        seed ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (client as u64).rotate_left(40),
    ))
}

/// A trained detector model, its training rounds, and each head's calibrated threshold (a
/// probability of the uncalibrated model; the model returned already decides at 0.5).
pub type Trained = (Mlp, Vec<ModelRecord>, [f32; 2]);

/// Federated training: every node with samples is a client; `rounds` rounds of local SGD
/// and aggregation, then federated calibration (`calibration`). Returns the global
/// model and one record per round. With `ledger`, each round and the calibration are
/// agreed and recorded there, and the model of each next round is the one the ledger serves.
pub fn train_federated(
    data: &NodeData,
    cfg: &TrainConfig,
    mut ledger: Option<&mut DetectorLedger>,
) -> Result<Trained, MapekError> {
    let rule = cfg
        .aggregation_rule()
        .map_err(|r| MapekError::config("<train>", "detector.rule", r))?;
    let clients: Vec<&Vec<Sample>> = data.iter().flatten().filter(|d| !d.is_empty()).collect();
    let mut global = Mlp::new(cfg.hidden, cfg.seed);
    let dim = global.weights.len();
    let mut history = Vec::new();
    for round in 0..cfg.rounds {
        // Clients train in parallel, each from its own seeded stream: the same result on
        // any number of threads.
        let (rows, client_losses): (Vec<Vec<f32>>, Vec<f32>) = clients
            .par_iter()
            .enumerate()
            .map(|(c, d)| {
                let mut local = global.clone();
                let mut rng = client_rng(cfg.seed, round, c);
                let loss = local_sgd(&mut local, d, cfg, cfg.local_steps, &mut rng);
                (local.weights, loss)
            })
            .unzip();
        let losses: f32 = client_losses.iter().sum();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let weights: Vec<f32> = clients.iter().map(|d| d.len() as f32).collect();
        let (agg, report) =
            meshrl_fl::aggregate(&rule, &refs, Some(&weights), dim, OnInvalid::Drop)?;
        global.weights = agg;
        let mut model_hash = None;
        if let Some(l) = ledger.as_deref_mut() {
            let hashes = rows
                .par_iter()
                .map(|r| meshrl_trust::weights_hash(r))
                .collect::<Result<Vec<_>, _>>()?;
            let rejected: Vec<(usize, String)> =
                report.rejected.iter().map(|(c, r)| (*c, r.to_string())).collect();
            let rec = l.record(round as u64 + 1, cfg.rule_name(), &hashes, &report.accepted, &rejected, &global.weights)?;
            global.weights = rec.weights;
            model_hash = Some(rec.model_hash.to_hex());
        }
        history.push(ModelRecord {
            detector: "federated".into(),
            round,
            clients: report.accepted.len(),
            loss: losses / clients.len().max(1) as f32,
            checksum: checksum(&global.weights),
            model_hash,
        });
    }
    let hists: Vec<ScoreHistogram> = clients.par_iter().map(|d| ScoreHistogram::of(&global, d)).collect();
    let mut hist = ScoreHistogram::default();
    for h in &hists {
        hist.add(h);
    }
    let thresholds = calibrate(&mut global, &hist, cfg.calibration);
    if let Some(l) = ledger {
        // One more round: each node signs the histograms it sent; the model the loop runs
        // is the calibrated one the ledger serves.
        let hashes: Vec<_> = hists.iter().map(|h| meshrl_trust::Hash32::of(&h.to_bytes())).collect();
        let all: Vec<usize> = (0..clients.len()).collect();
        let rule = format!("calibration({})", cfg.calibration.name());
        global.weights = l.record(cfg.rounds as u64 + 1, &rule, &hashes, &all, &[], &global.weights)?.weights;
    }
    Ok((global, history, thresholds))
}

/// Bins of a calibration histogram, evenly over the logit in `[-CAL_RANGE, CAL_RANGE]`.
const CAL_BINS: usize = 480;
const CAL_RANGE: f32 = 12.0;

/// Counts of a model's logits on some samples, per head and class: what a node sends for
/// calibration (no features, no labels of single samples).
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreHistogram {
    /// `counts[head][positive as usize][bin]`.
    pub counts: [[Vec<u64>; 2]; 2],
}

impl Default for ScoreHistogram {
    fn default() -> Self {
        let zero = || [vec![0u64; CAL_BINS], vec![0u64; CAL_BINS]];
        ScoreHistogram {
            counts: [zero(), zero()],
        }
    }
}

impl ScoreHistogram {
    fn bin(z: f32) -> usize {
        let f = (z + CAL_RANGE) / (2.0 * CAL_RANGE) * CAL_BINS as f32;
        (f.max(0.0) as usize).min(CAL_BINS - 1)
    }

    /// Lower edge of bin `b`, as a logit.
    fn edge(b: usize) -> f32 {
        -CAL_RANGE + 2.0 * CAL_RANGE * b as f32 / CAL_BINS as f32
    }

    /// `mlp`'s scores on one node's samples.
    pub fn of(mlp: &Mlp, data: &[Sample]) -> Self {
        let mut h = ScoreHistogram::default();
        for s in data {
            let z = mlp.logits(&s.features);
            h.counts[NODE][s.misbehaving as usize][Self::bin(z[NODE])] += 1;
            if let Some(y) = s.link_fails {
                h.counts[LINK][y as usize][Self::bin(z[LINK])] += 1;
            }
        }
        h
    }

    /// The counts as little-endian bytes, head by head, class by class: what a node signs.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.counts
            .iter()
            .flatten()
            .flatten()
            .flat_map(|c| c.to_le_bytes())
            .collect()
    }

    /// Adds another node's counts.
    pub fn add(&mut self, other: &ScoreHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
            }
        }
    }

    /// The bin edge where head `head` should decide, as a logit: the lowest edge of an
    /// occupied bin at which the samples scoring at least it have precision ≥ the target, or
    /// the one with the best F1 (ties: the higher); always with at least 5 true positives.
    /// `None` if there is none.
    pub fn threshold(&self, head: usize, how: Calibration) -> Option<f32> {
        let [neg, pos] = &self.counts[head];
        let positives: u64 = pos.iter().sum();
        let (mut tp, mut fp) = (0u64, 0u64);
        let (mut best, mut best_f1) = (None, 0.0f64);
        for b in (0..CAL_BINS).rev() {
            tp += pos[b];
            fp += neg[b];
            if tp < 5 || pos[b] + neg[b] == 0 {
                continue; // an empty bin's edge separates nothing more than the one above
            }
            match how {
                Calibration::None => return None,
                Calibration::Precision(p) => {
                    if tp as f64 >= p as f64 * (tp + fp) as f64 {
                        best = Some(Self::edge(b));
                    }
                }
                Calibration::F1 => {
                    let f1 = 2.0 * tp as f64 / (2 * tp + fp + (positives - tp)) as f64;
                    if f1 > best_f1 {
                        (best, best_f1) = (Some(Self::edge(b)), f1);
                    }
                }
            }
        }
        best
    }
}

/// Moves each head's boundary to the threshold `hist` gives and returns the thresholds as
/// probabilities of the model before the move (0.5 where none was found or asked for).
fn calibrate(mlp: &mut Mlp, hist: &ScoreHistogram, how: Calibration) -> [f32; 2] {
    let mut out = [0.5; 2];
    for head in [NODE, LINK] {
        if let Some(z) = hist.threshold(head, how) {
            mlp.shift_boundary(head, z);
            out[head] = 1.0 / (1.0 + (-z).exp());
        }
    }
    out
}

/// The node of mesh 0 with the most misbehaviour examples (ties: the most samples).
pub fn default_local_node(data: &NodeData) -> usize {
    let nodes = &data[0];
    (0..nodes.len())
        .max_by_key(|&u| {
            let pos = nodes[u].iter().filter(|s| s.misbehaving).count();
            (pos, nodes[u].len(), std::cmp::Reverse(u))
        })
        .unwrap_or(0)
}

/// Local-only training on node `node` of mesh 0: as many SGD steps as one federated client
/// takes over all rounds, then calibration on the node's own samples.
pub fn train_local(data: &NodeData, node: usize, cfg: &TrainConfig) -> Result<Trained, MapekError> {
    let d = data
        .first()
        .and_then(|m| m.get(node))
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            MapekError::config(
                "<train>",
                "detector.local_node",
                format!("node {node} has no samples in training mesh 0"),
            )
        })?;
    let mut mlp = Mlp::new(cfg.hidden, cfg.seed);
    let mut history = Vec::new();
    for round in 0..cfg.rounds {
        let mut rng = client_rng(cfg.seed, round, usize::MAX);
        let loss = local_sgd(&mut mlp, d, cfg, cfg.local_steps, &mut rng);
        history.push(ModelRecord {
            detector: "local".into(),
            round,
            clients: 1,
            loss,
            checksum: checksum(&mlp.weights),
            model_hash: None,
        });
    }
    let hist = ScoreHistogram::of(&mlp, d);
    let thresholds = calibrate(&mut mlp, &hist, cfg.calibration);
    Ok((mlp, history, thresholds))
}

/// Precision, recall, F1 (at 0.5) and ROC AUC of one head on labelled samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HeadScores {
    pub samples: usize,
    pub positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Area under the ROC curve (ties count half).
    pub auc: f64,
}

/// Scores `predict` on every sample of `data`, for the head `head` (`NODE` or `LINK`).
pub fn score_head(
    data: &NodeData,
    head: usize,
    predict: &dyn Fn(&[f32; FEATURES]) -> [f32; 2],
) -> HeadScores {
    let mut scored: Vec<(f32, bool)> = Vec::new();
    for s in data.iter().flatten().flatten() {
        let label = match head {
            NODE => Some(s.misbehaving),
            LINK => s.link_fails,
            _ => None,
        };
        if let Some(y) = label {
            scored.push((predict(&s.features)[head], y));
        }
    }
    let pos = scored.iter().filter(|s| s.1).count();
    let tp = scored.iter().filter(|s| s.1 && s.0 >= 0.5).count() as f64;
    let fp = scored.iter().filter(|s| !s.1 && s.0 >= 0.5).count() as f64;
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if pos > 0 { tp / pos as f64 } else { 0.0 };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    // AUC by ranks (Mann-Whitney), ties averaged.
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < scored.len() {
        let mut j = i;
        while j < scored.len() && scored[j].0 == scored[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0;
        rank_sum += avg * scored[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let neg = scored.len() - pos;
    let auc = if pos > 0 && neg > 0 {
        (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64
    } else {
        f64::NAN
    };
    HeadScores {
        samples: scored.len(),
        positives: pos,
        precision,
        recall,
        f1,
        auc,
    }
}

/// Counts of samples per node, for reports.
pub fn sample_counts(data: &NodeData) -> HashMap<&'static str, usize> {
    let all = data.iter().flatten().flatten();
    let mut m = HashMap::new();
    let (mut n, mut bad, mut fail) = (0, 0, 0);
    for s in all {
        n += 1;
        bad += s.misbehaving as usize;
        fail += (s.link_fails == Some(true)) as usize;
    }
    m.insert("samples", n);
    m.insert("misbehaving", bad);
    m.insert("link_fails", fail);
    m.insert(
        "clients",
        data.iter().flatten().filter(|d| !d.is_empty()).count(),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pos: &[(usize, u64)], neg: &[(usize, u64)]) -> ScoreHistogram {
        let mut h = ScoreHistogram::default();
        for &(b, c) in pos {
            h.counts[NODE][1][b] = c;
        }
        for &(b, c) in neg {
            h.counts[NODE][0][b] = c;
        }
        h
    }

    #[test]
    fn calibration_picks_the_threshold_it_is_asked_for() {
        // Positives at bins 400 (10) and 300 (10); negatives at 350 (2) and 200 (100).
        let h = hist(&[(400, 10), (300, 10)], &[(350, 2), (200, 100)]);
        let edge = ScoreHistogram::edge;
        // Precision ≥ 0.9: the lowest edge still at 20 / 22 is bin 300's.
        assert_eq!(
            h.threshold(NODE, Calibration::Precision(0.9)),
            Some(edge(300))
        );
        // Precision ≥ 0.95: only bin 400 (10 / 10).
        assert_eq!(
            h.threshold(NODE, Calibration::Precision(0.95)),
            Some(edge(400))
        );
        // Best F1: 2·20 / (40 + 2) at bin 300.
        assert_eq!(h.threshold(NODE, Calibration::F1), Some(edge(300)));
        assert_eq!(h.threshold(NODE, Calibration::None), None);
        // Fewer than 5 true positives anywhere: no threshold.
        let few = hist(&[(400, 4)], &[(10, 1)]);
        assert_eq!(few.threshold(NODE, Calibration::F1), None);
    }

    #[test]
    fn summed_node_histograms_equal_the_pooled_one_and_move_the_boundary() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let sample = |rng: &mut Xoshiro256PlusPlus| {
            let bad = rng.random::<f32>() < 0.2;
            let mut x = [0.0f32; FEATURES];
            x.iter_mut().for_each(|v| *v = rng.random::<f32>());
            x[0] = if bad { 0.2 * x[0] } else { 0.5 + 0.5 * x[0] };
            Sample {
                features: x,
                misbehaving: bad,
                link_fails: Some(x[6] > 0.9),
            }
        };
        let nodes: Vec<Vec<Sample>> = (0..4)
            .map(|_| (0..200).map(|_| sample(&mut rng)).collect())
            .collect();
        let mut mlp = Mlp::new(8, 1);
        let cfg = TrainConfig::default();
        let all: Vec<Sample> = nodes.iter().flatten().copied().collect();
        local_sgd(&mut mlp, &all, &cfg, 300, &mut rng);
        let mut summed = ScoreHistogram::default();
        for d in &nodes {
            summed.add(&ScoreHistogram::of(&mlp, d));
        }
        assert_eq!(summed, ScoreHistogram::of(&mlp, &all));
        let z = summed.threshold(NODE, Calibration::F1).unwrap();
        let p_before: Vec<f32> = all.iter().map(|s| mlp.predict(&s.features)[NODE]).collect();
        let t = calibrate(&mut mlp, &summed, Calibration::F1);
        assert!((t[NODE] - 1.0 / (1.0 + (-z).exp())).abs() < 1e-6);
        // After the move, a sample decides "misbehaving" at 0.5 exactly when it scored at
        // least the threshold before.
        for (s, p) in all.iter().zip(p_before) {
            let now = mlp.predict(&s.features)[NODE];
            if (p - t[NODE]).abs() > 1e-4 {
                assert_eq!(now >= 0.5, p >= t[NODE], "{p} vs {}", t[NODE]);
            }
        }
    }
}
