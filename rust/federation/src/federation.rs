//! The coordinator and its workers in one seeded, virtual-time simulation. A round reads top
//! to bottom: hear heartbeats → sample K alive workers → send the global model over the mesh →
//! workers train and answer (or drop, straggle, crash, send garbage) → screen, aggregate with
//! the robust rule → server step → (with `[trust]`: validators agree, the ledger records it,
//! the model is read back from the ledger) → evaluate → name the model by its hash.

use std::time::Instant;

use meshrl_env::twin::Twin;
use meshrl_fl::Rule;
use meshrl_ppo::Trainer;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::FederationConfig;
use crate::network::{Direction, Network};
use crate::trust::Trust;
use crate::worker::{mix_seed, LocalUpdate, Worker};
use crate::FederationError;

/// A worker's standing with the coordinator, from the last heartbeat it heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Never heard.
    Unregistered,
    /// Heard within `suspect_after_s`: may be sampled.
    Alive,
    /// Unheard for longer: not sampled.
    Suspect,
    /// Unheard for more than `dead_after_s`.
    Dead,
}

/// What happened in one round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoundReport {
    pub round: u64,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// Whether an aggregate was applied (false: every attempt missed its quorum; the global
    /// model is unchanged).
    pub completed: bool,
    /// Why the last failed attempt failed.
    pub failure: Option<String>,
    /// Workers sampled in the attempt that counted (or the last one).
    pub sampled: Vec<usize>,
    /// Workers whose update was aggregated (after screening).
    pub participants: Vec<usize>,
    /// Updates rejected by screening (NaN/Inf, wrong length), with the reason.
    pub excluded: Vec<(usize, String)>,
    /// Participants the robust rule set aside (see `meshrl_fl::set_aside`).
    pub set_aside: Vec<usize>,
    /// Sampled workers whose update arrived after the deadline.
    pub stragglers: Vec<usize>,
    /// Sampled workers that never answered (message lost, dropped out, crashed).
    pub lost: Vec<usize>,
    /// Duplicate deliveries of an update, counted once.
    pub duplicates_ignored: usize,
    /// Byzantine workers among the participants.
    pub byzantine_participants: usize,
    /// Environment steps behind the aggregated updates.
    pub samples: u64,
    pub alive: usize,
    pub suspect: usize,
    pub dead: usize,
    /// SHA-256 of the global model after the round.
    pub model_hash: String,
    /// Delivery ratio of the global model (greedy) on the whole mesh's traffic.
    pub global_delivery: Option<f64>,
    /// Mean delivery ratio the participants saw while training on their own traffic.
    pub local_delivery: f64,
    /// L2 norm of the step applied to the global model.
    pub step_norm: f64,
    /// ε of the (ε, δ) guarantee so far (`[privacy]` only; RDP accountant, sample rate K/W).
    pub epsilon: Option<f64>,
    /// The clip norm C used this round (`[privacy]` only).
    pub clip_norm: Option<f64>,
    /// The PBFT view that decided the round's model (`[trust]` only; 0: the first primary).
    pub consensus_view: Option<u64>,
    /// Virtual time the validators took to decide, ms (`[trust]` only; added to the round).
    pub consensus_ms: Option<f64>,
    /// PBFT messages sent to decide (`[trust]` only).
    pub consensus_messages: Option<u64>,
    /// Blocks in the ledger after the round (`[trust]` only).
    pub ledger_blocks: Option<u64>,
    /// Virtual time at the end of the round, seconds.
    pub virtual_time_s: f64,
    /// Wall time of the round, seconds.
    pub wall_s: f64,
}

impl RoundReport {
    /// The round's metrics under their logged names (CSV columns, TensorBoard tags).
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("fl/round", self.round as f64),
            ("fl/completed", self.completed as u8 as f64),
            ("fl/attempts", self.attempts as f64),
            ("fl/sampled", self.sampled.len() as f64),
            ("fl/participants", self.participants.len() as f64),
            ("fl/excluded", self.excluded.len() as f64),
            ("fl/set_aside", self.set_aside.len() as f64),
            ("fl/stragglers", self.stragglers.len() as f64),
            ("fl/lost", self.lost.len() as f64),
            ("fl/duplicates_ignored", self.duplicates_ignored as f64),
            ("fl/byzantine_participants", self.byzantine_participants as f64),
            ("fl/samples", self.samples as f64),
            ("fl/alive", self.alive as f64),
            ("fl/suspect", self.suspect as f64),
            ("fl/dead", self.dead as f64),
            ("fl/global_delivery", self.global_delivery.unwrap_or(f64::NAN)),
            ("fl/local_delivery", self.local_delivery),
            ("fl/step_norm", self.step_norm),
            ("privacy/epsilon", self.epsilon.unwrap_or(f64::NAN)),
            ("privacy/clip_norm", self.clip_norm.unwrap_or(f64::NAN)),
            ("trust/consensus_view", self.consensus_view.map_or(f64::NAN, |v| v as f64)),
            ("trust/consensus_ms", self.consensus_ms.unwrap_or(f64::NAN)),
            ("trust/consensus_messages", self.consensus_messages.map_or(f64::NAN, |v| v as f64)),
            ("trust/ledger_blocks", self.ledger_blocks.map_or(f64::NAN, |v| v as f64)),
            ("time/virtual_s", self.virtual_time_s),
            ("time/round_s", self.wall_s),
        ]
    }
}

/// The name of a global model: SHA-256 of its weights as a safetensors file (one F32 tensor
/// `weights`, no metadata), hex; the name the model ledger stores it under.
pub fn model_hash(weights: &[f32]) -> String {
    meshrl_trust::weights_hash(weights)
        .expect("a flat f32 vector always encodes as one 1-D tensor")
        .to_hex()
}

/// Splits the mesh into `k` sites around spread-out centres (farthest-point from node 0),
/// each node joining its nearest centre; one worker per site.
fn partition(twin: &Twin, k: usize) -> Vec<Vec<u32>> {
    let n = twin.num_nodes();
    if k == 0 || k >= n {
        return (0..n as u32).map(|u| vec![u]).collect();
    }
    let pos = twin.positions();
    let d2 = |a: usize, b: usize| (pos[a][0] - pos[b][0]).powi(2) + (pos[a][1] - pos[b][1]).powi(2);
    let mut centres = vec![0usize];
    let mut nearest: Vec<f64> = (0..n).map(|u| d2(u, 0)).collect();
    while centres.len() < k {
        let far = (0..n).max_by(|&a, &b| nearest[a].total_cmp(&nearest[b]).then(b.cmp(&a))).unwrap_or(0);
        centres.push(far);
        for u in 0..n {
            nearest[u] = nearest[u].min(d2(u, far));
        }
    }
    let mut sites = vec![Vec::new(); k];
    for u in 0..n {
        let c = (0..k).min_by(|&a, &b| d2(u, centres[a]).total_cmp(&d2(u, centres[b]))).unwrap_or(0);
        sites[c].push(u as u32);
    }
    sites.retain(|s| !s.is_empty());
    sites
}

/// Picks `count` of `candidates` at random (seeded), sorted.
fn choose(candidates: &[usize], count: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<usize> {
    let mut pool = candidates.to_vec();
    let count = count.min(pool.len());
    for i in 0..count {
        let j = rng.random_range(i..pool.len());
        pool.swap(i, j);
    }
    let mut out = pool[..count].to_vec();
    out.sort_unstable();
    out
}

/// Per-round state a checkpoint keeps (everything else is derived from the config).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub round: u64,
    pub clock_s: f64,
    pub heard_until_s: f64,
    pub last_seen: Vec<Option<f64>>,
    pub twin_ticks: u64,
    pub total_samples: u64,
    pub history: Vec<RoundReport>,
    /// The clip norm of the next round (`[privacy]`; adaptive clipping moves it).
    pub clip_norm: Option<f64>,
    /// Rounds whose aggregate was released under `[privacy]` (the accountant's steps).
    pub private_rounds: u64,
}

/// A federation: the coordinator's state, its workers and the mesh their messages cross.
pub struct Federation {
    cfg: FederationConfig,
    /// The nodes of each worker's site; a worker's messages leave from its first node.
    sites: Vec<Vec<u32>>,
    workers: Vec<Option<Worker>>,
    byzantine: Vec<bool>,
    crash_round: Vec<Option<u64>>,
    speed: Vec<f64>,
    heartbeat_phase: Vec<f64>,
    global: Vec<f32>,
    momentum: Vec<f32>,
    twin: Twin,
    /// Holds the global model for evaluation and export.
    holder: Trainer,
    /// Identities, validators and the ledger (`[trust]`; opened by the first round run).
    trust: Option<Trust>,
    pub(crate) progress: Progress,
}

/// Why a round attempt produced no model.
enum AttemptError {
    /// The attempt failed (the round is retried, then given up; the global model is kept).
    Failed(String),
    /// Retrying cannot help (the ledger is unwritable or belongs to another run).
    Fatal(FederationError),
}

impl From<String> for AttemptError {
    fn from(why: String) -> Self {
        AttemptError::Failed(why)
    }
}

/// One sampled worker's fate in a round attempt.
struct Answer {
    worker: usize,
    arrival_s: f64,
    nan: bool,
    duplicated: bool,
}

impl Federation {
    /// Sets up the coordinator, the workers (built on first use) and the mesh.
    pub fn new(cfg: FederationConfig) -> Result<Federation, FederationError> {
        cfg.validate()?;
        let f = &cfg.federation;
        let twin = Twin::new(&cfg.env.twin_config(), mix_seed(&[f.seed, 0x7477])).map_err(meshrl_env::EnvError::from)?;
        let n = twin.num_nodes();
        if f.coordinator_node as usize >= n {
            return Err(FederationError::config(
                "federation.coordinator_node",
                format!("is {}, the mesh has nodes 0..{n}", f.coordinator_node),
            ));
        }
        if f.sites > n {
            return Err(FederationError::config(
                "federation.sites",
                format!("is {}, the mesh has only {n} nodes", f.sites),
            ));
        }
        let sites = partition(&twin, f.sites);
        let w = sites.len();
        if f.clients_per_round > w {
            return Err(FederationError::config(
                "federation.clients_per_round",
                format!("is {}, the federation has {w} workers", f.clients_per_round),
            ));
        }
        if let Some(t) = cfg.trust.as_ref().filter(|t| t.validators > w) {
            return Err(FederationError::config(
                "trust.validators",
                format!("is {}, the federation has only {w} workers", t.validators),
            ));
        }
        let coordinator_site = sites.iter().position(|s| s.contains(&f.coordinator_node)).unwrap_or(0);
        let others: Vec<usize> = (0..w).filter(|&i| i != coordinator_site).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix_seed(&[f.seed, 0xb12a]));
        let count = |fraction: f64| ((fraction * w as f64).round() as usize).min(others.len());
        let mut byzantine = vec![false; w];
        if cfg.attack.kind != "none" {
            for i in choose(&others, count(cfg.attack.fraction), &mut rng) {
                byzantine[i] = true;
            }
        }
        let mut crash_round = vec![None; w];
        for i in choose(&others, count(cfg.faults.crash), &mut rng) {
            crash_round[i] = Some(rng.random_range(1..=f.rounds));
        }
        let spread = Normal::new(0.0, cfg.network.speed_spread.max(1e-12)).expect("validated");
        let speed = (0..w).map(|_| spread.sample(&mut rng).exp()).collect();
        let heartbeat_phase = (0..w).map(|_| rng.random::<f64>() * cfg.network.heartbeat_s).collect();

        let mut eval_env = cfg.env.clone();
        eval_env.env.envs_per_twin = cfg.ppo.num_envs;
        let holder_cfg = meshrl_ppo::PpoConfig {
            seed: mix_seed(&[f.seed, 0x910b]),
            ..cfg.ppo.clone()
        };
        let holder = Trainer::new(eval_env, holder_cfg)?;
        let global = holder.learner.get_weights();
        let momentum = vec![0.0; global.len()];
        let mut fed = Federation {
            sites,
            workers: (0..w).map(|_| None).collect(),
            byzantine,
            crash_round,
            speed,
            heartbeat_phase,
            momentum,
            global,
            twin,
            holder,
            trust: None,
            progress: Progress {
                last_seen: vec![None; w],
                clip_norm: cfg.privacy.as_ref().map(|p| p.clip_norm),
                ..Default::default()
            },
            cfg,
        };
        // Workers register with their first heartbeats before round 1.
        fed.progress.clock_s = 2.0 * fed.cfg.network.heartbeat_s;
        Ok(fed)
    }

    pub fn config(&self) -> &FederationConfig {
        &self.cfg
    }

    /// Workers (mesh nodes or sites).
    pub fn num_workers(&self) -> usize {
        self.sites.len()
    }

    /// The nodes of worker `i`'s site.
    pub fn site(&self, i: usize) -> &[u32] {
        &self.sites[i]
    }

    /// Which workers are Byzantine (the attack's, chosen by seed).
    pub fn byzantine(&self) -> &[bool] {
        &self.byzantine
    }

    /// Rounds completed or given up so far.
    pub fn round(&self) -> u64 {
        self.progress.round
    }

    /// The global model's weights.
    pub fn global_weights(&self) -> &[f32] {
        &self.global
    }

    /// The global model's name.
    pub fn model_hash(&self) -> String {
        model_hash(&self.global)
    }

    /// Environment steps behind every aggregated update so far.
    pub fn total_samples(&self) -> u64 {
        self.progress.total_samples
    }

    /// Every round's report so far.
    pub fn history(&self) -> &[RoundReport] {
        &self.progress.history
    }

    /// A learner holding the global model (for saving, export and evaluation).
    pub fn global_learner(&mut self) -> Result<&meshrl_ppo::Learner, FederationError> {
        self.holder.learner.set_weights(&self.global)?;
        Ok(&self.holder.learner)
    }

    /// Replaces the global model (same length, finite), e.g. to start from a trained policy.
    pub fn set_global_weights(&mut self, weights: &[f32]) -> Result<(), FederationError> {
        self.holder.learner.set_weights(weights)?;
        self.global = weights.to_vec();
        Ok(())
    }

    /// A standalone worker for site `i`, as the federation would build it (a Flower client
    /// runs one): Byzantine reward poisoners train on negated rewards.
    pub fn make_worker(&self, i: usize) -> Result<Worker, FederationError> {
        if i >= self.num_workers() {
            return Err(FederationError::input(
                "worker",
                format!("{i} does not exist; the federation has workers 0..{}", self.num_workers()),
            ));
        }
        let poisoned = self.byzantine[i] && self.cfg.attack.kind == "reward_poison";
        Worker::new(&self.cfg, i, self.sites[i].clone(), poisoned)
    }

    /// The model ledger (`[trust]` only).
    pub fn ledger_path(&self) -> Option<&std::path::Path> {
        self.cfg.trust.as_ref().and_then(|t| t.ledger.as_deref())
    }

    /// The validators (worker indices, in replica order) and which of them are Byzantine
    /// (`[trust]` only): chosen by seed among all workers.
    pub fn validators(&self) -> Option<(Vec<usize>, Vec<bool>)> {
        let t = self.cfg.trust.as_ref()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix_seed(&[self.cfg.federation.seed, 0x7a11]));
        let validators = choose(&(0..self.num_workers()).collect::<Vec<_>>(), t.validators, &mut rng);
        let bad = choose(&(0..validators.len()).collect::<Vec<_>>(), t.byzantine_validators, &mut rng);
        let byzantine = (0..validators.len()).map(|r| bad.contains(&r)).collect();
        Some((validators, byzantine))
    }

    /// Opens the ledger on the first round run (`[trust]`), checking that it proves the
    /// current global model (a resumed run's).
    fn open_trust(&mut self) -> Result<(), FederationError> {
        let (Some(section), None) = (self.cfg.trust.clone(), self.trust.as_ref()) else {
            return Ok(());
        };
        let (validators, byzantine) = self.validators().expect("[trust] is set");
        let trust = Trust::open(&section, self.cfg.federation.seed, &self.sites, validators, byzantine)?;
        trust.check_proven(self.progress.round, &self.global)?;
        self.trust = Some(trust);
        Ok(())
    }

    /// The server momentum buffer (zeros without momentum).
    pub fn momentum(&self) -> &[f32] {
        &self.momentum
    }

    pub(crate) fn set_momentum(&mut self, m: &[f32]) {
        self.momentum = m.to_vec();
    }

    /// Each worker's state at virtual time `now_s`.
    pub fn node_states(&self, now_s: f64) -> Vec<NodeState> {
        let net = &self.cfg.network;
        self.progress
            .last_seen
            .iter()
            .map(|seen| match seen {
                None => NodeState::Unregistered,
                Some(t) if now_s - t <= net.suspect_after_s => NodeState::Alive,
                Some(t) if now_s - t <= net.dead_after_s => NodeState::Suspect,
                Some(_) => NodeState::Dead,
            })
            .collect()
    }

    /// Whether worker `i` has crashed by round `round`.
    fn crashed(&self, i: usize, round: u64) -> bool {
        self.crash_round[i].is_some_and(|r| r <= round)
    }

    /// Heartbeats from every running worker up to `until_s`, over the mesh.
    fn hear(&mut self, until_s: f64, net: &Network, round: u64, rng: &mut Xoshiro256PlusPlus) {
        let h = self.cfg.network.heartbeat_s;
        let from = self.progress.heard_until_s;
        for i in 0..self.num_workers() {
            if self.crashed(i, round) {
                continue;
            }
            let phase = self.heartbeat_phase[i];
            let mut k = ((from - phase) / h).ceil().max(0.0) as u64;
            loop {
                let t = phase + k as f64 * h;
                if t >= until_s {
                    break;
                }
                if let Some(delay) = net.send(self.sites[i][0] as usize, Direction::ToCoordinator, 64, rng) {
                    let seen = &mut self.progress.last_seen[i];
                    *seen = Some(seen.map_or(t + delay, |s| s.max(t + delay)));
                }
                k += 1;
            }
        }
        self.progress.heard_until_s = until_s;
    }

    /// Runs `rounds` more rounds (fewer if `callback` returns false after one).
    pub fn run(
        &mut self,
        rounds: u64,
        mut callback: impl FnMut(&RoundReport) -> bool,
    ) -> Result<(), FederationError> {
        for _ in 0..rounds {
            let report = self.run_round()?;
            if !callback(&report) {
                break;
            }
        }
        Ok(())
    }

    /// One round: attempts until one reaches its quorum or the retries run out.
    pub fn run_round(&mut self) -> Result<RoundReport, FederationError> {
        self.open_trust()?;
        let start = Instant::now();
        let round = self.progress.round + 1;
        let f = self.cfg.federation.clone();
        let coordinator = f.coordinator_node as usize;
        let net = Network::snapshot(&self.twin, coordinator, &self.cfg.network);
        let round_start_s = self.progress.clock_s;
        let mut report = RoundReport {
            round,
            ..Default::default()
        };
        for attempt in 0..=f.max_retries {
            report.attempts = attempt + 1;
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix_seed(&[f.seed, round, attempt as u64]));
            let t0 = self.progress.clock_s;
            self.hear(t0, &net, round, &mut rng);
            let states = self.node_states(t0);
            let alive: Vec<usize> = (0..states.len()).filter(|&i| states[i] == NodeState::Alive).collect();
            report.alive = alive.len();
            report.suspect = states.iter().filter(|s| **s == NodeState::Suspect).count();
            report.dead = states.iter().filter(|s| **s == NodeState::Dead).count();
            let k = f.clients_per_round.min(alive.len());
            let need = f.min_participants.max((f.quorum * f.clients_per_round as f64).ceil() as usize);
            report.sampled = choose(&alive, k, &mut rng);
            let (answers, stragglers, lost) = self.exchange(&report.sampled, &net, round, t0, &mut rng);
            report.stragglers = stragglers;
            report.lost = lost;
            let deadline = t0 + f.round_deadline_s;
            if answers.len() < need {
                report.failure = Some(format!(
                    "{} of {} sampled updates arrived by the deadline, the quorum is {need} ({} alive)",
                    answers.len(),
                    report.sampled.len(),
                    alive.len()
                ));
                self.progress.clock_s = deadline;
                continue;
            }
            match self.aggregate(&answers, round, attempt, &mut report) {
                Ok(()) => {
                    report.completed = true;
                    report.failure = None;
                    let everyone = report.stragglers.is_empty() && report.lost.is_empty();
                    self.progress.clock_s = if everyone {
                        answers.iter().map(|a| a.arrival_s).fold(t0, f64::max)
                    } else {
                        deadline
                    };
                    self.progress.clock_s += report.consensus_ms.unwrap_or(0.0) / 1000.0;
                    break;
                }
                Err(AttemptError::Failed(why)) => {
                    report.failure = Some(why);
                    self.progress.clock_s = deadline;
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
            }
        }
        self.evolve_mesh(self.progress.clock_s - round_start_s);
        let every = f.eval_every;
        if (every > 0 && round % every == 0) || round == f.rounds {
            report.global_delivery = Some(self.evaluate_global()?);
        }
        report.model_hash = model_hash(&self.global);
        report.virtual_time_s = self.progress.clock_s;
        report.wall_s = start.elapsed().as_secs_f64();
        self.progress.round = round;
        self.progress.history.push(report.clone());
        Ok(report)
    }

    /// Sends the model to each sampled worker and draws its fate: crash, lost message,
    /// dropout, straggling, NaN, duplicate delivery. Returns the answers that arrive by the
    /// deadline, the stragglers and the workers never heard from.
    fn exchange(
        &self,
        sampled: &[usize],
        net: &Network,
        round: u64,
        t0: f64,
        rng: &mut Xoshiro256PlusPlus,
    ) -> (Vec<Answer>, Vec<usize>, Vec<usize>) {
        let (faults, netcfg) = (&self.cfg.faults, &self.cfg.network);
        let bytes = self.global.len() * 4 + 64;
        let compute_s = self.cfg.samples_per_round() as f64 * netcfg.compute_ms_per_step / 1000.0;
        let deadline = t0 + self.cfg.federation.round_deadline_s;
        let (mut answers, mut stragglers, mut lost) = (Vec::new(), Vec::new(), Vec::new());
        for &i in sampled {
            // Every draw is made whatever the branch, so one worker's fate never shifts another's.
            let draws: [f64; 4] = std::array::from_fn(|_| rng.random::<f64>());
            let node = self.sites[i][0] as usize;
            let down = net.send(node, Direction::FromCoordinator, bytes, rng);
            let up = net.send(node, Direction::ToCoordinator, bytes, rng);
            let (Some(down), Some(up)) = (down, up) else {
                lost.push(i);
                continue;
            };
            if self.crashed(i, round) || draws[0] < faults.dropout {
                lost.push(i);
                continue;
            }
            let slow = if draws[1] < faults.straggle { faults.straggle_factor } else { 1.0 };
            let arrival_s = t0 + down + compute_s * slow / self.speed[i] + up;
            if arrival_s > deadline {
                stragglers.push(i);
                continue;
            }
            answers.push(Answer {
                worker: i,
                arrival_s,
                nan: draws[2] < faults.nan,
                duplicated: draws[3] < netcfg.duplicate,
            });
        }
        (answers, stragglers, lost)
    }

    /// Local training of the answering workers, the Byzantine updates, screening, the robust
    /// rule, the server step and (`[trust]`) the validators' agreement. An `Err` is a failed
    /// attempt (the global model unchanged).
    fn aggregate(
        &mut self,
        answers: &[Answer],
        round: u64,
        attempt: u32,
        report: &mut RoundReport,
    ) -> Result<(), AttemptError> {
        let attack = self.cfg.attack.kind.clone();
        let model_attack = self.cfg.attack.kind != "none" && attack != "reward_poison";
        let flips = attack == "sign_flip" || attack == "impersonate";
        // 1. Workers that train: the honest ones, reward poisoners, sign flippers, impersonators.
        let trains = |i: usize| !self.byzantine[i] || attack == "reward_poison" || flips;
        let mut train_set = vec![false; self.num_workers()];
        for a in answers.iter().filter(|a| trains(a.worker)) {
            train_set[a.worker] = true;
        }
        for i in (0..self.num_workers()).filter(|&i| train_set[i]) {
            if self.workers[i].is_none() {
                self.workers[i] = Some(self.make_worker(i).map_err(|e| e.to_string())?);
            }
        }
        let global = &self.global;
        let updates: Vec<(usize, LocalUpdate)> = self
            .workers
            .par_iter_mut()
            .enumerate()
            .filter(|(i, _)| train_set[*i])
            .map(|(i, w)| w.as_mut().expect("built above").fit(global, round).map(|u| (i, u)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("local training failed: {e}"))?;
        let trained = |i: usize| updates.iter().find(|(j, _)| *j == i).map(|(_, u)| u);

        // 2. The rows in answer order: honest deltas, attacks, NaN faults; duplicates once.
        let honest: Vec<&[f32]> = updates
            .iter()
            .filter(|(i, _)| !self.byzantine[*i])
            .map(|(_, u)| u.delta.as_slice())
            .collect();
        let scale = self.cfg.attack.scale;
        let byz_count = answers.iter().filter(|a| self.byzantine[a.worker]).count();
        let crafted: Option<Vec<f32>> = match attack.as_str() {
            _ if !model_attack || byz_count == 0 || honest.is_empty() => None,
            "ipm" => meshrl_fl::attacks::inner_product_manipulation(&honest, 1, scale).ok(),
            "alie" => meshrl_fl::attacks::a_little_is_enough(&honest, 1, scale).ok(),
            "gaussian" => meshrl_fl::attacks::gaussian(&honest, 1, scale, mix_seed(&[round, 0x6a])).ok(),
            _ => None,
        };
        let d = self.global.len();
        let mut rows: Vec<Vec<f32>> = Vec::new();
        let mut weights: Vec<f32> = Vec::new();
        let mut who: Vec<usize> = Vec::new();
        let mut signers: Vec<usize> = Vec::new();
        let mut local_delivery = Vec::new();
        let samples = self.cfg.samples_per_round();
        // An impersonator claims an honest worker that did not answer.
        let silent_honest: Vec<usize> = (0..self.num_workers())
            .filter(|&j| !self.byzantine[j] && answers.iter().all(|a| a.worker != j))
            .collect();
        for a in answers {
            let i = a.worker;
            let claimed = if self.byzantine[i] && attack == "impersonate" && !silent_honest.is_empty() {
                silent_honest[(round as usize + i) % silent_honest.len()]
            } else {
                i
            };
            if who.contains(&claimed) {
                continue;
            }
            let row = if a.nan {
                vec![f32::NAN; d]
            } else if self.byzantine[i] && flips {
                trained(i).map(|u| u.delta.iter().map(|x| -scale * x).collect()).unwrap_or_else(|| vec![0.0; d])
            } else if self.byzantine[i] && model_attack {
                crafted.clone().unwrap_or_else(|| vec![0.0; d])
            } else {
                let u = trained(i).expect("trained above");
                local_delivery.push(u.delivery_ratio);
                u.delta.clone()
            };
            rows.push(row);
            weights.push(samples as f32);
            who.push(claimed);
            signers.push(i);
            report.duplicates_ignored += a.duplicated as usize;
        }

        // 2b. `[trust]`: each update signed by its sender; the coordinator checks the signature
        // against the claimed worker's key and refuses replays.
        let mut signed = Vec::new();
        if let Some(trust) = self.trust.as_mut() {
            let mut keep = Vec::with_capacity(rows.len());
            for j in 0..rows.len() {
                let u = trust.sign(signers[j], who[j], round, attempt, &rows[j]).map_err(AttemptError::Fatal)?;
                match trust.accept(&u) {
                    Ok(()) => {
                        signed.push(u);
                        keep.push(j);
                    }
                    Err(why) => report.excluded.push((who[j], why)),
                }
            }
            let pick = |v: &[usize]| keep.iter().map(|&j| v[j]).collect::<Vec<_>>();
            rows = keep.iter().map(|&j| std::mem::take(&mut rows[j])).collect();
            weights = keep.iter().map(|&j| weights[j]).collect();
            (who, signers) = (pick(&who), pick(&signers));
        }

        // 3. Screening, (NNM), the rule, what it set aside.
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let screened = meshrl_fl::screen(&refs, Some(weights.as_slice()), d);
        report.excluded.extend(screened.rejected.iter().map(|(j, why)| (who[*j], why.to_string())));
        let kept: Vec<&[f32]> = screened.accepted.iter().map(|&j| refs[j]).collect();
        let kept_weights: Vec<f32> = screened.accepted.iter().map(|&j| weights[j]).collect();
        let kept_who: Vec<usize> = screened.accepted.iter().map(|&j| who[j]).collect();
        let kept_signers: Vec<usize> = screened.accepted.iter().map(|&j| signers[j]).collect();
        if kept.is_empty() {
            return Err(format!("every update was rejected ({screened})").into());
        }
        let rule: Rule = self.cfg.rule(kept.len());
        let mixed;
        let inputs: Vec<&[f32]> = if self.cfg.federation.nnm {
            mixed = meshrl_fl::nnm(&kept, self.cfg.federation.assumed_byzantine).map_err(|e| e.to_string())?;
            mixed.chunks(d).collect()
        } else {
            kept.clone()
        };
        let fcfg = &self.cfg.federation;
        let private = self.cfg.privacy.is_some() || self.cfg.secagg.is_some();
        let (aggregate, next_clip) = if private {
            let clip = self.progress.clip_norm.unwrap_or(1.0);
            let out = crate::privacy::aggregate(
                self.cfg.privacy.as_ref(),
                self.cfg.secagg.as_ref(),
                &rule,
                &fcfg.rule,
                fcfg.assumed_byzantine,
                fcfg.trim_beta,
                &inputs,
                clip,
                mix_seed(&[fcfg.seed, round, 0x9417]),
                round,
            )?;
            (out.aggregate, Some(out.next_clip_norm))
        } else {
            (rule.apply(&inputs, Some(kept_weights.as_slice())).map_err(|e| format!("aggregation failed: {e}"))?, None)
        };
        if aggregate.iter().any(|x| !x.is_finite()) {
            return Err(String::from("the aggregate is not finite; the global model was kept").into());
        }
        report.set_aside = meshrl_fl::set_aside(&rule, &inputs, &aggregate).into_iter().map(|j| kept_who[j]).collect();

        // 4. Server step (FedAvgM): m ← βm + Δ, w ← w + η m.
        let (lr, beta) = (self.cfg.federation.server_lr, self.cfg.federation.server_momentum);
        let mut step_sq = 0.0f64;
        let mut next = self.global.clone();
        let mut momentum = self.momentum.clone();
        for ((w, m), g) in next.iter_mut().zip(momentum.iter_mut()).zip(&aggregate) {
            *m = (beta * *m as f64 + *g as f64) as f32;
            let step = (lr * *m as f64) as f32;
            *w += step;
            step_sq += (step as f64).powi(2);
        }
        if next.iter().any(|x| !x.is_finite()) {
            return Err(String::from("the server step made the model non-finite; the global model was kept").into());
        }

        // 5. The privacy this release would spend (`[privacy]`).
        let sample_rate = (self.cfg.federation.clients_per_round as f64 / self.num_workers() as f64).min(1.0);
        let epsilon = match &self.cfg.privacy {
            Some(p) => Some(crate::privacy::epsilon(p, sample_rate, self.progress.private_rounds + 1)?),
            None => None,
        };

        // 6. `[trust]`: the validators agree on (round, model hash, certificate), the ledger
        // records both blocks, and the model is read back from the ledger as a node loads it.
        if let Some(trust) = self.trust.as_mut() {
            let set_aside = report
                .excluded
                .iter()
                .cloned()
                .chain(report.set_aside.iter().map(|&i| (i, format!("set aside by {}", fcfg.rule))))
                .collect();
            let update = trust
                .model_update(round, &next, format!("{rule:?}"), &kept_who, set_aside, epsilon, signed)
                .map_err(AttemptError::Fatal)?;
            let certified = trust.certify(update, &next, attempt).map_err(|e| match e {
                FederationError::Trust(meshrl_trust::TrustError::NoAgreement(why)) => {
                    AttemptError::Failed(format!("no consensus proof, the model was not accepted: {why}"))
                }
                e => AttemptError::Fatal(e),
            })?;
            if certified.weights != next {
                return Err(AttemptError::Fatal(FederationError::input(
                    "ledger",
                    "the model read back from the ledger differs from the one certified",
                )));
            }
            next = certified.weights;
            report.consensus_view = Some(certified.view);
            report.consensus_ms = Some(certified.decided_ms as f64);
            report.consensus_messages = Some(certified.messages);
            report.ledger_blocks = Some(certified.blocks);
        }

        // 7. Commit.
        self.global = next;
        self.momentum = momentum;
        report.participants = kept_who.clone();
        report.byzantine_participants = kept_signers.iter().filter(|&&i| self.byzantine[i]).count();
        report.samples = samples * kept_who.len() as u64;
        report.local_delivery = if local_delivery.is_empty() {
            0.0
        } else {
            local_delivery.iter().sum::<f64>() / local_delivery.len() as f64
        };
        report.step_norm = step_sq.sqrt();
        self.progress.total_samples += report.samples;
        if self.cfg.privacy.is_some() {
            report.clip_norm = self.progress.clip_norm;
            self.progress.clip_norm = next_clip;
            self.progress.private_rounds += 1;
            report.epsilon = epsilon;
        }
        Ok(())
    }

    /// Lets the mesh evolve for `elapsed_s` of virtual time (at most
    /// `network.max_ticks_per_round` ticks).
    fn evolve_mesh(&mut self, elapsed_s: f64) {
        let ticks = ((elapsed_s * 1000.0 / self.cfg.env.traffic.tick_ms).floor().max(0.0) as u64)
            .min(self.cfg.network.max_ticks_per_round);
        for _ in 0..ticks {
            self.twin.tick();
        }
        self.progress.twin_ticks += ticks;
    }

    /// Replays `ticks` ticks of the mesh (resuming from a checkpoint).
    pub(crate) fn replay_mesh(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.twin.tick();
        }
    }

    /// Delivery ratio of the global model (greedy) on `eval_packets` packets of the whole
    /// mesh's traffic, the same packets every time.
    pub fn evaluate_global(&mut self) -> Result<f64, FederationError> {
        let policy = self.global_learner()?.policy();
        let f = &self.cfg.federation;
        let summaries = crate::compare::evaluate_policies(
            &self.cfg.env,
            &[("federated".into(), policy)],
            &[],
            f.eval_packets,
            mix_seed(&[f.seed, 0xe7a1]),
        )?;
        Ok(summaries.summaries[0].delivery_ratio)
    }
}
