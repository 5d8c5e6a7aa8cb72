//! Configuration of a twin: one serde struct per concern, loadable from TOML or JSON.
//!
//! Every struct denies unknown fields, so a typo names itself, and `validate` names the field
//! whose value is out of range (`topology.num_nodes`, `radio.path_loss_exponent`, ...).

use serde::{Deserialize, Serialize};

use crate::TwinError;

/// Everything that defines a twin except its seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwinConfig {
    pub topology: TopologyConfig,
    pub radio: RadioConfig,
    pub traffic: TrafficConfig,
    pub trust: TrustConfig,
    pub dynamics: DynamicsConfig,
}

/// How node positions and links are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologyKind {
    /// `num_nodes` placed uniformly in an `area_m` × `area_m` square; a link wherever two nodes
    /// are within `radio_range_m`.
    RandomGeometric,
    /// `num_nodes` on a square lattice `grid_spacing_m` apart; links by `radio_range_m`.
    Grid,
    /// Loaded from a meshnet-lab JSON file (`path`): positions (lat/lon) and measured link
    /// quality (batman-adv TQ), as in the Freifunk snapshots.
    File,
}

/// Topology of the mesh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    pub kind: TopologyKind,
    /// Number of nodes for generated topologies (4 ..= 100,000).
    pub num_nodes: usize,
    /// Side of the square area for `random_geometric`, metres.
    pub area_m: f64,
    /// Two nodes closer than this share a link, metres.
    pub radio_range_m: f64,
    /// Lattice spacing for `grid`, metres.
    pub grid_spacing_m: f64,
    /// Resample `random_geometric` positions until the graph is connected (up to 1,000 tries).
    pub connected: bool,
    /// Topology file for `kind = "file"` (meshnet-lab JSON).
    pub path: Option<String>,
    /// Link types kept from a file (`wifi`, `vpn`, `other`).
    pub link_types: Vec<String>,
    /// Length assumed for a file link whose ends have no position, metres.
    pub default_link_distance_m: f64,
    /// Size of each node's neighbour table, the action space of the routing agent. A node with
    /// more links keeps the `max_neighbors` best by RSSI, as a routing daemon caps its table.
    pub max_neighbors: usize,
    /// Draws a generated topology from this seed instead of the twin's, so every environment
    /// (and every federated worker) runs on the same mesh, one deployment's own network.
    /// Radio shadowing and every later event still derive from the twin's seed.
    pub seed: Option<u64>,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            kind: TopologyKind::RandomGeometric,
            num_nodes: 16,
            area_m: 300.0,
            radio_range_m: 110.0,
            grid_spacing_m: 80.0,
            connected: true,
            path: None,
            link_types: vec!["wifi".into(), "vpn".into(), "other".into()],
            default_link_distance_m: 100.0,
            max_neighbors: 8,
            seed: None,
        }
    }
}

/// The radio model: log-distance path loss with shadowing, a logistic frame-loss curve over
/// SNR, an 802.11n MCS rate table and MAC retransmissions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadioConfig {
    /// Transmit power, dBm.
    pub tx_power_dbm: f64,
    /// Path loss at the 1 m reference distance, dB (≈40 dB at 2.4 GHz).
    pub reference_loss_db: f64,
    /// Path-loss exponent (2 free space, 2.7–3.5 urban).
    pub path_loss_exponent: f64,
    /// Standard deviation of log-normal shadowing, dB; fixed per node pair.
    pub shadowing_sigma_db: f64,
    /// Receiver noise floor, dBm.
    pub noise_floor_dbm: f64,
    /// SNR at which half the frames are lost, dB.
    pub snr_half_loss_db: f64,
    /// Width of the loss curve around `snr_half_loss_db`, dB (smaller is steeper).
    pub snr_slope_db: f64,
    /// Retransmissions after a lost frame before the MAC gives up.
    pub mac_retries: u32,
    /// Size of a data packet, bytes.
    pub packet_bytes: f64,
}

impl Default for RadioConfig {
    fn default() -> Self {
        RadioConfig {
            tx_power_dbm: 20.0,
            reference_loss_db: 40.0,
            path_loss_exponent: 3.3,
            shadowing_sigma_db: 4.0,
            noise_floor_dbm: -95.0,
            snr_half_loss_db: 6.0,
            snr_slope_db: 1.5,
            mac_retries: 1,
            packet_bytes: 1500.0,
        }
    }
}

/// Queues and background traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficConfig {
    /// Simulated time per twin tick (one step of every environment on it), ms.
    pub tick_ms: f64,
    /// Packets a node's forwarding queue holds; a full queue drops what arrives.
    pub queue_capacity_packets: f64,
    /// Packets a node forwards (drains from its queue) per tick.
    pub service_packets_per_tick: f64,
    /// Mean packets of cross traffic arriving at each node per tick.
    pub background_packets_per_tick: f64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            tick_ms: 10.0,
            queue_capacity_packets: 50.0,
            service_packets_per_tick: 4.0,
            background_packets_per_tick: 0.0,
        }
    }
}

/// Untrusted nodes and the observers' trust estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// Fraction of nodes that misbehave (0..1).
    pub untrusted_fraction: f64,
    /// Probability an untrusted node drops a packet it should forward.
    pub drop_probability: f64,
    /// Probability an untrusted node delays a packet it forwards.
    pub delay_probability: f64,
    /// Extra delay when an untrusted node delays a packet, ms.
    pub delay_ms: f64,
    /// Probability per tick that neighbours overhear one forwarding decision of a node
    /// (watchdog observation feeding its trust score).
    pub observations_per_tick: f64,
    /// Observations per node made before the first tick, so scores start informed.
    pub warmup_observations: u32,
    /// Decay of past observations per new one (1 = never forget).
    pub forgetting: f64,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            untrusted_fraction: 0.0,
            drop_probability: 0.5,
            delay_probability: 0.3,
            delay_ms: 50.0,
            observations_per_tick: 0.1,
            warmup_observations: 20,
            forgetting: 0.98,
        }
    }
}

/// Network dynamics; each mechanism can be switched on and tuned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicsConfig {
    /// Nodes leave and join.
    pub churn: bool,
    /// Probability per tick that an active node leaves.
    pub leave_probability: f64,
    /// Probability per tick that an absent node joins again.
    pub join_probability: f64,
    /// Links degrade and recover (a two-state Markov chain per link).
    pub link_degradation: bool,
    /// Probability per tick that a good link degrades.
    pub degrade_probability: f64,
    /// Probability per tick that a degraded link recovers.
    pub recover_probability: f64,
    /// Extra attenuation on a degraded link, dB.
    pub degraded_penalty_db: f64,
    /// Random-waypoint mobility.
    pub mobility: bool,
    /// Node speed range, m/s.
    pub speed_min_mps: f64,
    pub speed_max_mps: f64,
    /// Links are recomputed from positions every this many ticks.
    pub mobility_update_ticks: u32,
}

impl Default for DynamicsConfig {
    fn default() -> Self {
        DynamicsConfig {
            churn: false,
            leave_probability: 0.002,
            join_probability: 0.02,
            link_degradation: false,
            degrade_probability: 0.005,
            recover_probability: 0.05,
            degraded_penalty_db: 12.0,
            mobility: false,
            speed_min_mps: 0.5,
            speed_max_mps: 2.0,
            mobility_update_ticks: 10,
        }
    }
}

fn check(ok: bool, field: &str, reason: &str) -> Result<(), TwinError> {
    if ok {
        Ok(())
    } else {
        Err(TwinError::invalid(field, reason))
    }
}

fn probability(v: f64, field: &str) -> Result<(), TwinError> {
    check(
        (0.0..=1.0).contains(&v),
        field,
        &format!("must be a probability in [0, 1], got {v}"),
    )
}

fn positive(v: f64, field: &str) -> Result<(), TwinError> {
    check(
        v.is_finite() && v > 0.0,
        field,
        &format!("must be a finite number > 0, got {v}"),
    )
}

fn non_negative(v: f64, field: &str) -> Result<(), TwinError> {
    check(
        v.is_finite() && v >= 0.0,
        field,
        &format!("must be a finite number >= 0, got {v}"),
    )
}

/// Most candidate links a generated topology may have (each costs ~100 bytes with its state).
pub const MAX_LINKS: usize = 20_000_000;

impl TwinConfig {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), TwinError> {
        let t = &self.topology;
        if t.kind != TopologyKind::File {
            check(
                (4..=100_000).contains(&t.num_nodes),
                "topology.num_nodes",
                &format!("must be in 4..=100000, got {}", t.num_nodes),
            )?;
        } else {
            check(
                t.path.is_some(),
                "topology.path",
                "is required when topology.kind = \"file\"",
            )?;
        }
        positive(t.area_m, "topology.area_m")?;
        positive(t.radio_range_m, "topology.radio_range_m")?;
        positive(t.grid_spacing_m, "topology.grid_spacing_m")?;
        positive(
            t.default_link_distance_m,
            "topology.default_link_distance_m",
        )?;
        check(
            (1..=64).contains(&t.max_neighbors),
            "topology.max_neighbors",
            &format!("must be in 1..=64, got {}", t.max_neighbors),
        )?;
        if t.kind != TopologyKind::File {
            // Candidate links grow with n² × density: bound them by the memory they need.
            let n = t.num_nodes as f64;
            let per_node = match t.kind {
                TopologyKind::Grid => std::f64::consts::PI * t.radio_range_m.powi(2) / t.grid_spacing_m.powi(2),
                _ => (n - 1.0) * (std::f64::consts::PI * t.radio_range_m.powi(2) / t.area_m.powi(2)).min(1.0),
            };
            let links = n * per_node.min(n - 1.0) / 2.0;
            check(
                links <= MAX_LINKS as f64,
                "topology.num_nodes",
                &format!(
                    "{} nodes with radio_range_m {} in this area make ~{:.0} candidate links; at most \
                     {MAX_LINKS} fit in memory (use fewer nodes, a larger area_m or grid_spacing_m, \
                     or a shorter radio_range_m)",
                    t.num_nodes, t.radio_range_m, links
                ),
            )?;
        }
        for ty in &t.link_types {
            check(
                matches!(ty.as_str(), "wifi" | "vpn" | "other"),
                "topology.link_types",
                &format!("unknown link type `{ty}` (expected wifi, vpn or other)"),
            )?;
        }

        let r = &self.radio;
        check(
            r.tx_power_dbm.is_finite(),
            "radio.tx_power_dbm",
            "must be finite",
        )?;
        non_negative(r.reference_loss_db, "radio.reference_loss_db")?;
        positive(r.path_loss_exponent, "radio.path_loss_exponent")?;
        non_negative(r.shadowing_sigma_db, "radio.shadowing_sigma_db")?;
        check(
            r.noise_floor_dbm.is_finite(),
            "radio.noise_floor_dbm",
            "must be finite",
        )?;
        check(
            r.snr_half_loss_db.is_finite(),
            "radio.snr_half_loss_db",
            "must be finite",
        )?;
        positive(r.snr_slope_db, "radio.snr_slope_db")?;
        check(
            r.mac_retries <= 15,
            "radio.mac_retries",
            "must be at most 15",
        )?;
        positive(r.packet_bytes, "radio.packet_bytes")?;

        let q = &self.traffic;
        positive(q.tick_ms, "traffic.tick_ms")?;
        check(
            q.queue_capacity_packets.is_finite() && q.queue_capacity_packets >= 1.0,
            "traffic.queue_capacity_packets",
            "must be at least 1",
        )?;
        non_negative(
            q.service_packets_per_tick,
            "traffic.service_packets_per_tick",
        )?;
        non_negative(
            q.background_packets_per_tick,
            "traffic.background_packets_per_tick",
        )?;

        let s = &self.trust;
        probability(s.untrusted_fraction, "trust.untrusted_fraction")?;
        probability(s.drop_probability, "trust.drop_probability")?;
        probability(s.delay_probability, "trust.delay_probability")?;
        non_negative(s.delay_ms, "trust.delay_ms")?;
        probability(s.observations_per_tick, "trust.observations_per_tick")?;
        check(
            s.forgetting > 0.0 && s.forgetting <= 1.0,
            "trust.forgetting",
            "must be in (0, 1]",
        )?;

        let d = &self.dynamics;
        probability(d.leave_probability, "dynamics.leave_probability")?;
        probability(d.join_probability, "dynamics.join_probability")?;
        probability(d.degrade_probability, "dynamics.degrade_probability")?;
        probability(d.recover_probability, "dynamics.recover_probability")?;
        non_negative(d.degraded_penalty_db, "dynamics.degraded_penalty_db")?;
        non_negative(d.speed_min_mps, "dynamics.speed_min_mps")?;
        check(
            d.speed_max_mps.is_finite() && d.speed_max_mps >= d.speed_min_mps,
            "dynamics.speed_max_mps",
            "must be finite and >= dynamics.speed_min_mps",
        )?;
        check(
            d.mobility_update_ticks >= 1,
            "dynamics.mobility_update_ticks",
            "must be at least 1",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TwinConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = TwinConfig::default();
        c.trust.untrusted_fraction = 1.5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("trust.untrusted_fraction"), "{e}");
        let mut c = TwinConfig::default();
        c.topology.num_nodes = 2;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("topology.num_nodes"));
        let mut c = TwinConfig::default();
        c.topology.kind = TopologyKind::File;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("topology.path"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_str::<TwinConfig>(r#"{"radio": {"tx_power": 3}}"#).unwrap_err();
        assert!(e.to_string().contains("tx_power"), "{e}");
    }
}
