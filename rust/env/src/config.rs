//! The environment's configuration: the twin's sections plus `[env]` and `[reward]`, one serde
//! struct loadable from TOML (`configs/env/*.toml`) or JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

use meshrl_twin::{
    DynamicsConfig, RadioConfig, TopologyConfig, TopologyKind, TrafficConfig, TrustConfig,
    TwinConfig,
};

use crate::EnvError;
pub use meshrl_format::FeatureSet;

/// `FeatureSet` by its name in configs (`"spec"`, `"routing"`).
mod feature_set_name {
    use meshrl_format::FeatureSet;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &FeatureSet, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(f.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FeatureSet, D::Error> {
        let name = String::deserialize(d)?;
        FeatureSet::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = FeatureSet::ALL.iter().map(|f| f.name()).collect();
            D::Error::custom(format!("unknown feature set `{name}`, expected one of {names:?}"))
        })
    }
}

/// What happens when an agent picks an empty (masked) neighbour slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidAction {
    /// The packet is lost (`invalid_action` cause, reward `reward.lost`).
    #[default]
    Lose,
    /// `step` fails with an error naming the environment and action; nothing is stepped.
    Error,
}

/// Gymnasium's autoreset modes (`gymnasium.vector.AutoresetMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoresetMode {
    /// A finished environment returns its final observation; the *next* step ignores its
    /// action, resets it and returns the first observation with reward 0.
    #[default]
    NextStep,
    /// A finished environment resets in the same step; the final observation goes to
    /// `final_obs`.
    SameStep,
}

/// Episode and batching settings (`[env]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Hops after which an undelivered packet is truncated.
    pub ttl: u32,
    /// Environments that share one twin (their packets cross the same queues). Sub-environment
    /// `i` lives on twin `i / envs_per_twin`; twins step in parallel.
    pub envs_per_twin: usize,
    /// Minimum hop distance between a packet's source and destination.
    pub min_hops: u16,
    pub invalid_action: InvalidAction,
    pub autoreset_mode: AutoresetMode,
    /// The observation: `spec` (the SPEC's six features per neighbour) or `routing` (plus the
    /// routing protocol's advertisements and the packet's visited set; see `meshrl-format`).
    #[serde(with = "feature_set_name")]
    pub features: FeatureSet,
    /// Ticks between the routing protocol's advertisements (ETX and latency distances,
    /// queues): the staleness of what the `routing` features and the potential shaping see,
    /// and the refresh period of the `etx` baseline.
    pub advert_period_ticks: u64,
    /// Nodes where packets start (empty: every node). A federated worker's own traffic: the
    /// packets its node (or site) originates. Inactive sources are skipped; when none is
    /// active a packet starts at any active node.
    pub sources: Vec<u32>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            ttl: 32,
            envs_per_twin: 64,
            min_hops: 1,
            invalid_action: InvalidAction::Lose,
            autoreset_mode: AutoresetMode::NextStep,
            features: FeatureSet::Spec,
            advert_period_ticks: 10,
            sources: Vec::new(),
        }
    }
}

/// Which reward the environment pays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// The SPEC's (the prototype's) reward, with its bonuses and per-hop terms.
    #[default]
    Spec,
    /// What we judge routers by: 1 for a delivered packet, 0 for a lost one, and per hop
    /// `-delivery_latency_weight × hop latency / latency_budget_ms - hop_cost`. More return
    /// means more delivery, then lower latency.
    Delivery,
}

/// Reward constants (`[reward]`), the prototype's values by default. With `kind = "spec"`:
///
/// - delivered: `delivered + hop_bonus + latency_bonus + trust_bonus`, where
///   `hop_bonus = hop_bonus_max * shortest_hops / hops_taken` (full on a shortest path),
///   `latency_bonus = latency_bonus_max * max(0, 1 - latency_ms / latency_budget_ms)` over the
///   end-to-end latency, and `trust_bonus = trust_bonus_max * mean trust of the relays`
///   (full when there were none);
/// - lost: `lost`;
/// - each hop that neither delivers nor loses the packet:
///   `-latency_weight * latency_ms / 100 - loss_weight * packet_loss + trust_weight * trust
///   - hop_cost` with the hop's latency, the link's frame loss and the next hop's trust score.
///
/// `hop_cost` is 0 by default (the SPEC's reward exactly). With it at 0 a hop over a clean,
/// trusted link earns up to +0.2, and since a TTL cut is a truncation (bootstrapped, not
/// punished) a learner can prefer circling good links forever (worth ≈ 0.2 / (1 − γ) = 20 at
/// γ = 0.99) to delivering (≈ 12). Training configs set `hop_cost` to make every hop cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    pub kind: RewardKind,
    /// Potential-based shaping (Ng, Harada & Russell 1999) on the advertised ETX distance:
    /// `Φ(s) = -shaping × min(etx(node → destination), 32)`, 0 at the end of an episode; each
    /// step adds `shaping_gamma × Φ(s') − Φ(s)`. With `shaping_gamma` equal to the learner's
    /// discount this leaves the optimal policy unchanged (the shaped return of any episode is
    /// the unshaped one minus `Φ(s₀)`), while telling the learner at every hop whether it moved
    /// towards the destination. 0 turns it off.
    pub shaping: f32,
    /// Discount of the shaping term; set it to the learner's `gamma` (the trainer does).
    pub shaping_gamma: f32,
    /// Weight of the latency term of the `delivery` reward.
    pub delivery_latency_weight: f32,
    pub delivered: f32,
    pub lost: f32,
    pub hop_bonus_max: f32,
    pub latency_bonus_max: f32,
    pub latency_budget_ms: f32,
    pub trust_bonus_max: f32,
    pub latency_weight: f32,
    pub loss_weight: f32,
    pub trust_weight: f32,
    /// Subtracted from every intermediate hop's reward (0 = the SPEC's reward).
    pub hop_cost: f32,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            kind: RewardKind::Spec,
            shaping: 0.0,
            shaping_gamma: 0.99,
            delivery_latency_weight: 0.5,
            delivered: 10.0,
            lost: -5.0,
            hop_bonus_max: 2.0,
            latency_bonus_max: 2.0,
            latency_budget_ms: 200.0,
            trust_bonus_max: 1.0,
            latency_weight: 0.1,
            loss_weight: 0.5,
            trust_weight: 0.2,
            hop_cost: 0.0,
        }
    }
}

/// The whole environment: twin sections, `[env]` and `[reward]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvConfig {
    /// Seed used when `reset` is given none.
    pub seed: u64,
    pub topology: TopologyConfig,
    pub radio: RadioConfig,
    pub traffic: TrafficConfig,
    pub trust: TrustConfig,
    pub dynamics: DynamicsConfig,
    pub env: RoutingConfig,
    pub reward: RewardConfig,
}

impl EnvConfig {
    /// Parses TOML; `origin` names the source in errors and anchors a relative
    /// `topology.path` (relative to the directory of the file it came from).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<EnvConfig, EnvError> {
        let mut cfg: EnvConfig = toml::from_str(text).map_err(|e| EnvError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        if let (Some(p), Some(dir)) = (&cfg.topology.path, Path::new(origin).parent()) {
            if Path::new(p).is_relative() {
                cfg.topology.path = Some(dir.join(p).to_string_lossy().into_owned());
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and validates a TOML config file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<EnvConfig, EnvError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Io {
            path: name.clone(),
            source,
        })?;
        Self::from_toml_str(&text, &name)
    }

    /// Parses and validates a JSON config (the bindings pass Python keyword arguments so).
    pub fn from_json_str(text: &str) -> Result<EnvConfig, EnvError> {
        let cfg: EnvConfig = serde_json::from_str(text).map_err(|e| EnvError::Parse {
            path: "<arguments>".into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The twin's part of the config.
    pub fn twin_config(&self) -> TwinConfig {
        TwinConfig {
            topology: self.topology.clone(),
            radio: self.radio.clone(),
            traffic: self.traffic.clone(),
            trust: self.trust.clone(),
            dynamics: self.dynamics.clone(),
        }
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), EnvError> {
        self.twin_config().validate()?;
        if self.dynamics.mobility && self.topology.kind == TopologyKind::File {
            return Err(EnvError::invalid(
                "dynamics.mobility",
                "mobility needs a generated topology (random_geometric or grid), not a file",
            ));
        }
        let e = &self.env;
        if !(1..=10_000).contains(&e.ttl) {
            return Err(EnvError::invalid(
                "env.ttl",
                format!("must be in 1..=10000, got {}", e.ttl),
            ));
        }
        if e.envs_per_twin == 0 {
            return Err(EnvError::invalid("env.envs_per_twin", "must be at least 1"));
        }
        if e.min_hops == 0 {
            return Err(EnvError::invalid("env.min_hops", "must be at least 1"));
        }
        let r = &self.reward;
        for (name, v) in [
            ("reward.delivered", r.delivered),
            ("reward.lost", r.lost),
            ("reward.hop_bonus_max", r.hop_bonus_max),
            ("reward.latency_bonus_max", r.latency_bonus_max),
            ("reward.trust_bonus_max", r.trust_bonus_max),
            ("reward.latency_weight", r.latency_weight),
            ("reward.loss_weight", r.loss_weight),
            ("reward.trust_weight", r.trust_weight),
            ("reward.hop_cost", r.hop_cost),
            ("reward.shaping", r.shaping),
            ("reward.delivery_latency_weight", r.delivery_latency_weight),
        ] {
            if !v.is_finite() {
                return Err(EnvError::invalid(name, format!("must be finite, got {v}")));
            }
        }
        if !(0.0..=1.0).contains(&r.shaping_gamma) {
            return Err(EnvError::invalid(
                "reward.shaping_gamma",
                format!("must be in [0, 1], got {}", r.shaping_gamma),
            ));
        }
        if !(1..=1_000_000).contains(&e.advert_period_ticks) {
            return Err(EnvError::invalid(
                "env.advert_period_ticks",
                format!("must be in 1..=1000000, got {}", e.advert_period_ticks),
            ));
        }
        if !(r.latency_budget_ms.is_finite() && r.latency_budget_ms > 0.0) {
            return Err(EnvError::invalid(
                "reward.latency_budget_ms",
                "must be a finite number > 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_field_names_in_errors() {
        let cfg =
            EnvConfig::from_toml_str("[topology]\nnum_nodes = 32\n[env]\nttl = 8\n", "x.toml")
                .unwrap();
        assert_eq!(cfg.topology.num_nodes, 32);
        assert_eq!(cfg.env.ttl, 8);
        let e = EnvConfig::from_toml_str("[env]\nttl = 0\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("env.ttl"), "{e}");
        let e = EnvConfig::from_toml_str("[env]\nttll = 3\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ttll") && e.contains("x.toml"), "{e}");
        let e = EnvConfig::from_toml_str("[trust]\nuntrusted_fraction = 2.0\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trust.untrusted_fraction"), "{e}");
    }

    #[test]
    fn relative_topology_path_is_anchored_at_the_config() {
        let cfg = EnvConfig::from_toml_str(
            "[topology]\nkind = \"file\"\npath = \"../t.json\"\n",
            "/a/b/c.toml",
        )
        .unwrap();
        assert_eq!(cfg.topology.path.as_deref(), Some("/a/b/../t.json"));
    }
}
