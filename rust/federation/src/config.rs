//! A federation's config file.
//!
//! ```toml
//! env = "../env/small.toml"      # the mesh the routers run on (or an inline [env] table)
//! [overrides.env]                # as in training configs
//! features = "routing"
//! [federation]
//! rounds = 30
//! clients_per_round = 10         # K workers sampled among the alive ones
//! local_updates = 2              # E local PPO updates per round
//! rule = "trimmed_mean"          # any meshrl.fl rule
//! [network]                      # heartbeats, timeouts, the links' frame model
//! [faults]                       # dropouts, crashes, stragglers, NaN updates
//! [attack]                       # Byzantine workers
//! [privacy] / [secagg]           # DP-FedAvg with an accountant / secure aggregation
//! [trust]                        # signed updates, PBFT on each model, the model ledger
//! [ppo]                          # each worker's learner (num_envs: its packets in flight)
//! ```

use std::path::{Path, PathBuf};

use meshrl_env::EnvConfig;
use meshrl_fl::Rule;
use meshrl_ppo::PpoConfig;
use serde::{Deserialize, Serialize};

use crate::privacy::{PrivacyConfig, SecAggSection};
use crate::trust::TrustSection;
use crate::FederationError;

/// Rounds, sampling, aggregation and the server optimizer (`[federation]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSettings {
    /// Training rounds.
    pub rounds: u64,
    /// Workers sampled per round among the alive ones (K).
    pub clients_per_round: usize,
    /// Local PPO updates per round (E), each on `ppo.num_envs × ppo.num_steps` steps.
    pub local_updates: usize,
    /// Aggregation rule: fedavg, krum, multi_krum, median, trimmed_mean, bulyan,
    /// geometric_median, centered_clipping.
    pub rule: String,
    /// Byzantine workers the rule assumes among a round's participants (f of Krum, Bulyan, NNM).
    pub assumed_byzantine: usize,
    /// Fraction trimmed at each end per coordinate by `trimmed_mean`.
    pub trim_beta: f64,
    /// Updates multi-Krum averages (0: participants − assumed_byzantine).
    pub multi_krum_selected: usize,
    /// Clipping radius of `centered_clipping` (L2, in update units).
    pub clip_tau: f64,
    /// Nearest-neighbour mixing (Allouah et al. 2023) before the rule.
    pub nnm: bool,
    /// Server learning rate: the global model moves by `server_lr` × the (momentum) aggregate.
    pub server_lr: f64,
    /// Server momentum β (FedAvgM, Hsu et al. 2019); 0 is plain FedAvg.
    pub server_momentum: f64,
    /// A round counts when at least `max(min_participants, ceil(quorum × K))` updates arrive
    /// by the deadline; otherwise it is retried with a new sample.
    pub quorum: f64,
    pub min_participants: usize,
    /// Seconds of virtual time a round attempt waits for updates.
    pub round_deadline_s: f64,
    /// Attempts after the first before a round is given up (the global model is kept).
    pub max_retries: u32,
    /// The node the coordinator runs on (its messages travel the mesh from there).
    pub coordinator_node: u32,
    /// The mesh: generated topologies are drawn from this seed (`topology.seed`).
    pub mesh_seed: u64,
    /// Workers: 0 puts one on every node; otherwise the mesh is split into this many sites
    /// (nearest of `sites` spread-out centres), one worker each.
    pub sites: usize,
    /// Packets of the global model's evaluation (the whole mesh's traffic), every
    /// `eval_every` rounds (0: only at the end).
    pub eval_packets: usize,
    pub eval_every: u64,
    pub seed: u64,
}

impl Default for FederationSettings {
    fn default() -> Self {
        FederationSettings {
            rounds: 30,
            clients_per_round: 10,
            local_updates: 2,
            rule: "fedavg".into(),
            assumed_byzantine: 0,
            trim_beta: 0.2,
            multi_krum_selected: 0,
            clip_tau: 1.0,
            nnm: false,
            server_lr: 1.0,
            server_momentum: 0.0,
            quorum: 0.5,
            min_participants: 2,
            round_deadline_s: 30.0,
            max_retries: 2,
            coordinator_node: 0,
            mesh_seed: 1,
            sites: 0,
            eval_packets: 1000,
            eval_every: 1,
            seed: 0,
        }
    }
}

/// How the federation's own messages cross the mesh (`[network]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Seconds between a worker's heartbeats.
    pub heartbeat_s: f64,
    /// A worker unheard for this long is suspect (not sampled), for `dead_after_s` dead.
    pub suspect_after_s: f64,
    pub dead_after_s: f64,
    /// Bytes per frame; a message of B bytes is ceil(B / mtu) frames.
    pub mtu_bytes: usize,
    /// Link-layer retransmissions of a frame before the message is lost.
    pub mac_retries: u32,
    /// Virtual time a worker spends per environment step of local training, ms (a mesh
    /// router's CPU), divided by the node's speed.
    pub compute_ms_per_step: f64,
    /// Spread of node speeds: speed = exp(N(0, speed_spread²)).
    pub speed_spread: f64,
    /// Multiplicative jitter of message delays: exp(N(0, jitter²)).
    pub jitter: f64,
    /// Probability the network delivers an update twice (the coordinator counts it once).
    pub duplicate: f64,
    /// Most twin ticks the mesh evolves per round (its dynamics: churn, degradation).
    pub max_ticks_per_round: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            heartbeat_s: 2.0,
            suspect_after_s: 7.0,
            dead_after_s: 30.0,
            mtu_bytes: 1500,
            mac_retries: 7,
            compute_ms_per_step: 2.0,
            speed_spread: 0.3,
            jitter: 0.1,
            duplicate: 0.0,
            max_ticks_per_round: 1000,
        }
    }
}

/// Faulty workers (`[faults]`); probabilities per sampled worker and round unless noted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Leaves mid-round: receives the model, never answers.
    pub dropout: f64,
    /// Fraction of workers that crash for good, each at a random round (no more heartbeats).
    pub crash: f64,
    /// Computes `straggle_factor` times slower this round.
    pub straggle: f64,
    pub straggle_factor: f64,
    /// Sends an update full of NaN.
    pub nan: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            dropout: 0.0,
            crash: 0.0,
            straggle: 0.0,
            straggle_factor: 10.0,
            nan: 0.0,
        }
    }
}

/// Byzantine workers (`[attack]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttackConfig {
    /// none, sign_flip (−scale × its own update), ipm (−scale × the honest mean), alie (mean +
    /// scale × std of the honest updates), gaussian (honest mean + N(0, scale²)),
    /// reward_poison (trains on negated rewards, sends that update), impersonate (sends its
    /// sign-flipped update under the name of an honest worker that was not sampled; with
    /// `[trust]` the signature gives it away).
    pub kind: String,
    /// Fraction of workers that are Byzantine (chosen by seed; never the coordinator's node).
    pub fraction: f64,
    pub scale: f32,
}

impl Default for AttackConfig {
    fn default() -> Self {
        AttackConfig {
            kind: "none".into(),
            fraction: 0.0,
            scale: 4.0,
        }
    }
}

/// The attacks [`AttackConfig::kind`] accepts.
pub const ATTACKS: [&str; 7] = ["none", "sign_flip", "ipm", "alie", "gaussian", "reward_poison", "impersonate"];

/// The rules [`FederationSettings::rule`] accepts.
pub const RULES: [&str; 8] = [
    "fedavg",
    "krum",
    "multi_krum",
    "median",
    "trimmed_mean",
    "bulyan",
    "geometric_median",
    "centered_clipping",
];

/// The environment: a config file (relative to the federation config) or an inline table
/// (any subset of an environment config's sections).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvSource {
    Path(String),
    Inline(serde_json::Value),
}

/// The file as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FederationFile {
    env: EnvSource,
    #[serde(default)]
    overrides: Option<toml::Table>,
    #[serde(default)]
    federation: FederationSettings,
    #[serde(default)]
    network: NetworkConfig,
    #[serde(default)]
    faults: FaultConfig,
    #[serde(default)]
    attack: AttackConfig,
    #[serde(default)]
    privacy: Option<PrivacyConfig>,
    #[serde(default)]
    secagg: Option<SecAggSection>,
    #[serde(default)]
    trust: Option<TrustSection>,
    #[serde(default)]
    ppo: PpoConfig,
}

/// A federation, resolved: the environment loaded (overrides applied, `topology.seed` set to
/// the federation's mesh) and every section validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FederationConfig {
    pub env: EnvConfig,
    pub federation: FederationSettings,
    pub network: NetworkConfig,
    pub faults: FaultConfig,
    pub attack: AttackConfig,
    /// Differential privacy (`[privacy]`); none without the section.
    #[serde(default)]
    pub privacy: Option<PrivacyConfig>,
    /// Secure aggregation (`[secagg]`; FedAvg only); none without the section.
    #[serde(default)]
    pub secagg: Option<SecAggSection>,
    /// Signed updates, PBFT on each round's model and the model ledger (`[trust]`); none
    /// without the section.
    #[serde(default)]
    pub trust: Option<TrustSection>,
    pub ppo: PpoConfig,
}

fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl FederationConfig {
    /// Reads a federation config (TOML) and the environment it names.
    pub fn load(path: impl AsRef<Path>) -> Result<FederationConfig, FederationError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FederationError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        FederationConfig::from_toml_str(&text, &dir, &path.display().to_string())
    }

    /// Parses a federation config; relative environment paths are taken from `dir`.
    pub fn from_toml_str(text: &str, dir: &Path, origin: &str) -> Result<FederationConfig, FederationError> {
        let file: FederationFile =
            toml::from_str(text).map_err(|e| FederationError::config(origin, e.to_string()))?;
        FederationConfig::resolve(file, dir)
    }

    /// Parses a federation config given as JSON (the same fields as the TOML; what Python
    /// passes), relative paths taken from `dir`.
    pub fn from_json_str(text: &str, dir: &Path) -> Result<FederationConfig, FederationError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: FederationFile = serde_path_to_error::deserialize(de)
            .map_err(|e| FederationError::config(&e.path().to_string(), e.inner().to_string()))?;
        FederationConfig::resolve(file, dir)
    }

    fn resolve(file: FederationFile, dir: &Path) -> Result<FederationConfig, FederationError> {
        let mut env = match &file.env {
            EnvSource::Path(p) => meshrl_ppo::load_env_config(&dir.join(p), file.overrides.as_ref())?,
            EnvSource::Inline(value) => {
                let mut value = value.clone();
                if let Some(over) = &file.overrides {
                    let over = serde_json::to_value(over).map_err(|e| FederationError::config("overrides", e.to_string()))?;
                    merge(&mut value, &over);
                }
                EnvConfig::from_json_str(&value.to_string())?
            }
        };
        env.topology.seed = Some(file.federation.mesh_seed);
        env.env.sources.clear();
        let mut trust = file.trust;
        if let Some(ledger) = trust.as_mut().and_then(|t| t.ledger.as_mut()) {
            if ledger.is_relative() {
                *ledger = dir.join(&*ledger);
            }
        }
        let cfg = FederationConfig {
            env,
            federation: file.federation,
            network: file.network,
            faults: file.faults,
            attack: file.attack,
            privacy: file.privacy,
            secagg: file.secagg,
            trust,
            ppo: file.ppo,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every section; the error names the field.
    pub fn validate(&self) -> Result<(), FederationError> {
        self.env.validate()?;
        self.ppo.validate()?;
        let f = &self.federation;
        let bad = |field: &str, reason: String| Err(FederationError::config(field, reason));
        if !(1..=1_000_000).contains(&f.rounds) {
            return bad("federation.rounds", format!("must be in 1..=1000000, got {}", f.rounds));
        }
        if !(1..=100_000).contains(&f.clients_per_round) {
            return bad(
                "federation.clients_per_round",
                format!("must be in 1..=100000, got {}", f.clients_per_round),
            );
        }
        if !(1..=1000).contains(&f.local_updates) {
            return bad("federation.local_updates", format!("must be in 1..=1000, got {}", f.local_updates));
        }
        if !RULES.contains(&f.rule.as_str()) {
            return bad("federation.rule", format!("unknown rule `{}`; one of {}", f.rule, RULES.join(", ")));
        }
        if !(0.0..0.5).contains(&f.trim_beta) {
            return bad("federation.trim_beta", format!("must be in [0, 0.5), got {}", f.trim_beta));
        }
        if !(f.clip_tau > 0.0 && f.clip_tau.is_finite()) {
            return bad("federation.clip_tau", format!("must be > 0, got {}", f.clip_tau));
        }
        if !(f.server_lr > 0.0 && f.server_lr.is_finite()) {
            return bad("federation.server_lr", format!("must be > 0, got {}", f.server_lr));
        }
        if !(0.0..1.0).contains(&f.server_momentum) {
            return bad("federation.server_momentum", format!("must be in [0, 1), got {}", f.server_momentum));
        }
        if !(f.quorum > 0.0 && f.quorum <= 1.0) {
            return bad("federation.quorum", format!("must be in (0, 1], got {}", f.quorum));
        }
        if f.min_participants == 0 {
            return bad("federation.min_participants", "must be at least 1".into());
        }
        if !(f.round_deadline_s > 0.0 && f.round_deadline_s <= 86_400.0) {
            return bad("federation.round_deadline_s", format!("must be in (0, 86400], got {}", f.round_deadline_s));
        }
        if f.max_retries > 100 {
            return bad("federation.max_retries", format!("must be at most 100, got {}", f.max_retries));
        }
        if !(1..=meshrl_eval::MAX_EPISODES).contains(&f.eval_packets) {
            return bad(
                "federation.eval_packets",
                format!("must be in 1..={}, got {}", meshrl_eval::MAX_EPISODES, f.eval_packets),
            );
        }
        let n = &self.network;
        for (field, v) in [
            ("network.heartbeat_s", n.heartbeat_s),
            ("network.suspect_after_s", n.suspect_after_s),
            ("network.dead_after_s", n.dead_after_s),
        ] {
            if !(v > 0.0 && v <= 86_400.0) {
                return bad(field, format!("must be in (0, 86400], got {v}"));
            }
        }
        if n.suspect_after_s < n.heartbeat_s || n.dead_after_s < n.suspect_after_s {
            return bad(
                "network.suspect_after_s",
                format!(
                    "need heartbeat_s ({}) <= suspect_after_s ({}) <= dead_after_s ({})",
                    n.heartbeat_s, n.suspect_after_s, n.dead_after_s
                ),
            );
        }
        if !(64..=65_536).contains(&n.mtu_bytes) {
            return bad("network.mtu_bytes", format!("must be in 64..=65536, got {}", n.mtu_bytes));
        }
        if n.mac_retries > 64 {
            return bad("network.mac_retries", format!("must be at most 64, got {}", n.mac_retries));
        }
        for (field, v) in [
            ("network.compute_ms_per_step", n.compute_ms_per_step),
            ("network.speed_spread", n.speed_spread),
            ("network.jitter", n.jitter),
        ] {
            if !(v >= 0.0 && v <= 1000.0) {
                return bad(field, format!("must be in [0, 1000], got {v}"));
            }
        }
        let x = &self.faults;
        for (field, v) in [
            ("network.duplicate", n.duplicate),
            ("faults.dropout", x.dropout),
            ("faults.crash", x.crash),
            ("faults.straggle", x.straggle),
            ("faults.nan", x.nan),
            ("attack.fraction", self.attack.fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("must be a probability in [0, 1], got {v}"));
            }
        }
        if !(x.straggle_factor >= 1.0 && x.straggle_factor <= 1e6) {
            return bad("faults.straggle_factor", format!("must be in [1, 1e6], got {}", x.straggle_factor));
        }
        if !ATTACKS.contains(&self.attack.kind.as_str()) {
            return bad(
                "attack.kind",
                format!("unknown attack `{}`; one of {}", self.attack.kind, ATTACKS.join(", ")),
            );
        }
        if !self.attack.scale.is_finite() {
            return bad("attack.scale", format!("must be finite, got {}", self.attack.scale));
        }
        if let Some(t) = &self.trust {
            t.validate()?;
        }
        crate::privacy::validate(self.privacy.as_ref(), self.secagg.as_ref(), &f.rule, f.nnm)
    }

    /// The aggregation rule for a round with `participants` updates.
    pub fn rule(&self, participants: usize) -> Rule {
        let f = &self.federation;
        let byz = f.assumed_byzantine;
        match f.rule.as_str() {
            "krum" => Rule::Krum { num_byzantine: byz, num_selected: 1 },
            "multi_krum" => Rule::Krum {
                num_byzantine: byz,
                num_selected: if f.multi_krum_selected == 0 {
                    participants.saturating_sub(byz).max(1)
                } else {
                    f.multi_krum_selected
                },
            },
            "median" => Rule::Median,
            "trimmed_mean" => Rule::TrimmedMean { beta: f.trim_beta },
            "bulyan" => Rule::Bulyan { num_byzantine: byz },
            "geometric_median" => Rule::GeometricMedian { nu: 1e-6, max_iter: 100, eps: 1e-6 },
            "centered_clipping" => Rule::CenteredClipping { center: None, tau: f.clip_tau, iterations: 3 },
            _ => Rule::FedAvg,
        }
    }

    /// Environment steps one worker trains on per round.
    pub fn samples_per_round(&self) -> u64 {
        (self.federation.local_updates * self.ppo.num_envs * self.ppo.num_steps) as u64
    }
}
