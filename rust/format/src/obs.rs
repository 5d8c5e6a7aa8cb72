//! Observation layouts and their normalization.
//!
//! Per slot, in order (the `routing` set is the `spec` set plus five):
//!
//! | index | name | raw unit | normalized |
//! |---|---|---|---|
//! | 0 | `rssi` | dBm, -100..0 | `(rssi + 50) / 50`, in [-1, 1] |
//! | 1 | `latency` | ms, ≥ 0 | `latency / (latency + 50)` (0.5 at 50 ms) |
//! | 2 | `packet_loss` | probability | as is |
//! | 3 | `hop_count_to_destination` | hops | `min(hops, 32) / 32`; 1 if unreachable; 0: the neighbour is the destination |
//! | 4 | `bandwidth` | Mbps | `bandwidth / 65` |
//! | 5 | `trust` | score | as is, in [0, 1] |
//! | 6 | `etx_to_destination` | expected transmissions | `etx / (etx + 4)`; 1 if no route advertised |
//! | 7 | `etx_excess` | expected transmissions | `min(c − c_min, 4) / 4` where `c` = this link's ETX now + the neighbour's advertised ETX distance and `c_min` its least value over the valid slots (0: the ETX route); 1 if no route |
//! | 8 | `latency_to_destination` | ms | `latency / (latency + 100)`; 1 if no route advertised |
//! | 9 | `queue` | occupancy | the neighbour's advertised queue, as is |
//! | 10 | `visited` | flag | 1 if the packet already passed through the neighbour |
//!
//! Context, after the slots: `spec`: the node's queue occupancy; `routing`: the node's queue,
//! the fraction of the TTL left, and `min(hops taken, 32) / 32`.

/// Which observation a policy sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FeatureSet {
    /// The SPEC's six per-slot features and the local queue.
    #[default]
    Spec,
    /// The six plus the routing protocol's advertisements and the packet's visited set; TTL
    /// and hops in the context.
    Routing,
}

/// RSSI is normalized as `(rssi_dbm - RSSI_CENTER_DBM) / RSSI_SCALE_DB`.
pub const RSSI_CENTER_DBM: f32 = -50.0;
pub const RSSI_SCALE_DB: f32 = 50.0;
/// Link latency is normalized as `latency_ms / (latency_ms + LATENCY_HALF_MS)`.
pub const LATENCY_HALF_MS: f32 = 50.0;
/// Hop counts are normalized as `min(hops, HOPS_SCALE) / HOPS_SCALE`.
pub const HOPS_SCALE: f32 = 32.0;
/// Bandwidth is normalized as `bandwidth_mbps / BANDWIDTH_SCALE_MBPS` (the top MCS rate).
pub const BANDWIDTH_SCALE_MBPS: f32 = 65.0;
/// Advertised ETX distances are normalized as `etx / (etx + ETX_HALF)`.
pub const ETX_HALF: f32 = 4.0;
/// The ETX excess over the best slot is clipped at this many transmissions.
pub const ETX_EXCESS_SCALE: f32 = 4.0;
/// Advertised path latencies are normalized as `ms / (ms + PATH_LATENCY_HALF_MS)`.
pub const PATH_LATENCY_HALF_MS: f32 = 100.0;

/// Per-slot feature names of the `spec` set.
pub const SPEC_SLOT_FEATURES: [&str; 6] = [
    "rssi",
    "latency",
    "packet_loss",
    "hop_count_to_destination",
    "bandwidth",
    "trust",
];
/// Per-slot feature names of the `routing` set.
pub const ROUTING_SLOT_FEATURES: [&str; 11] = [
    "rssi",
    "latency",
    "packet_loss",
    "hop_count_to_destination",
    "bandwidth",
    "trust",
    "etx_to_destination",
    "etx_excess",
    "latency_to_destination",
    "queue",
    "visited",
];
const SPEC_CONTEXT: [&str; 1] = ["queue"];
const ROUTING_CONTEXT: [&str; 3] = ["queue", "ttl_left", "hops_taken"];

impl FeatureSet {
    /// Every set, for parsing and listing.
    pub const ALL: [FeatureSet; 2] = [FeatureSet::Spec, FeatureSet::Routing];

    /// Name in configs and file metadata.
    pub const fn name(self) -> &'static str {
        match self {
            FeatureSet::Spec => "spec",
            FeatureSet::Routing => "routing",
        }
    }

    /// The set called `name`.
    pub fn from_name(name: &str) -> Option<FeatureSet> {
        FeatureSet::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Features per neighbour slot.
    pub const fn per_slot(self) -> usize {
        self.slot_names().len()
    }

    /// Features after the slots.
    pub const fn context(self) -> usize {
        self.context_names().len()
    }

    /// Observation length for `num_slots` neighbour slots.
    pub const fn obs_dim(self, num_slots: usize) -> usize {
        num_slots * self.per_slot() + self.context()
    }

    /// Names of the per-slot features, in order.
    pub const fn slot_names(self) -> &'static [&'static str] {
        match self {
            FeatureSet::Spec => &SPEC_SLOT_FEATURES,
            FeatureSet::Routing => &ROUTING_SLOT_FEATURES,
        }
    }

    /// Names of the context features, in order.
    pub const fn context_names(self) -> &'static [&'static str] {
        match self {
            FeatureSet::Spec => &SPEC_CONTEXT,
            FeatureSet::Routing => &ROUTING_CONTEXT,
        }
    }

    /// The number of slots in an observation of length `obs_dim`, if the length fits.
    pub fn num_slots(self, obs_dim: usize) -> Option<usize> {
        let rest = obs_dim.checked_sub(self.context())?;
        (rest % self.per_slot() == 0).then_some(rest / self.per_slot())
    }
}

/// What a node knows about one neighbour, in raw units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlotMeasurement {
    /// Received signal strength, dBm.
    pub rssi_dbm: f32,
    /// Link latency estimate, ms.
    pub latency_ms: f32,
    /// Frame loss probability, 0..=1.
    pub packet_loss: f32,
    /// Hops from the neighbour to the destination (0: it is the destination); `None` when the
    /// routing table has no route.
    pub hops_to_destination: Option<u32>,
    /// Link rate, Mbps.
    pub bandwidth_mbps: f32,
    /// Trust in the neighbour (forwarding reputation), 0..=1.
    pub trust: f32,
    /// The neighbour's advertised ETX distance to the destination (expected transmissions;
    /// infinite or NaN: no route advertised). `routing` set only.
    pub etx_to_destination: f32,
    /// The neighbour's advertised latency to the destination, ms (infinite: no route).
    pub latency_to_destination_ms: f32,
    /// The neighbour's advertised queue occupancy, 0..=1.
    pub queue: f32,
    /// The packet already passed through the neighbour.
    pub visited: bool,
}

/// What the node knows about itself and the packet, in raw units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeContext {
    /// The node's queue occupancy, 0..=1.
    pub queue: f32,
    /// Hops the packet has taken so far.
    pub hops_taken: u32,
    /// The packet's hop limit (TTL at the source); `hops_taken ≤ ttl`.
    pub ttl: u32,
}

/// Expected transmissions of a link whose frames are lost with probability `loss`.
pub fn link_etx(loss: f32) -> f32 {
    1.0 / (1.0 - loss.clamp(0.0, 0.999))
}

fn saturating(x: f32, half: f32) -> f32 {
    if x.is_finite() {
        let x = x.max(0.0);
        x / (x + half)
    } else {
        1.0
    }
}

/// Writes one slot's normalized features into `out` (`set.per_slot()` values). For the
/// `routing` set the `etx_excess` entry holds the raw path cost until
/// [`finish_observation`] turns it into the excess over the best slot.
pub fn write_slot(set: FeatureSet, m: &SlotMeasurement, out: &mut [f32]) {
    out[0] = (m.rssi_dbm - RSSI_CENTER_DBM) / RSSI_SCALE_DB;
    out[1] = saturating(m.latency_ms, LATENCY_HALF_MS);
    out[2] = m.packet_loss;
    out[3] = match m.hops_to_destination {
        Some(h) => (h as f32).min(HOPS_SCALE) / HOPS_SCALE,
        None => 1.0,
    };
    out[4] = m.bandwidth_mbps / BANDWIDTH_SCALE_MBPS;
    out[5] = m.trust;
    if set == FeatureSet::Routing {
        out[6] = saturating(m.etx_to_destination, ETX_HALF);
        out[7] = link_etx(m.packet_loss) + m.etx_to_destination;
        out[8] = saturating(m.latency_to_destination_ms, PATH_LATENCY_HALF_MS);
        out[9] = m.queue;
        out[10] = m.visited as u8 as f32;
    }
}

/// Writes the context features (after the slots) into `out` (`set.context()` values).
pub fn write_context(set: FeatureSet, c: &NodeContext, out: &mut [f32]) {
    out[0] = c.queue;
    if set == FeatureSet::Routing {
        let ttl = c.ttl.max(1) as f32;
        out[1] = (1.0 - c.hops_taken as f32 / ttl).clamp(0.0, 1.0);
        out[2] = (c.hops_taken as f32).min(HOPS_SCALE) / HOPS_SCALE;
    }
}

/// Completes an observation whose slots were written by [`write_slot`]: the cross-slot
/// features (`etx_excess`). `mask[s] != 0` marks the valid slots; invalid slots are zeroed.
pub fn finish_observation(set: FeatureSet, obs: &mut [f32], mask: &[i8]) {
    let f = set.per_slot();
    for (s, &m) in mask.iter().enumerate() {
        if m == 0 {
            obs[s * f..(s + 1) * f].fill(0.0);
        }
    }
    if set != FeatureSet::Routing {
        return;
    }
    let best = mask
        .iter()
        .enumerate()
        .filter(|(_, &m)| m != 0)
        .map(|(s, _)| obs[s * f + 7])
        .filter(|c| c.is_finite())
        .fold(f32::INFINITY, f32::min);
    for (s, &m) in mask.iter().enumerate() {
        if m != 0 {
            let c = obs[s * f + 7];
            obs[s * f + 7] = if c.is_finite() && best.is_finite() {
                (c - best).min(ETX_EXCESS_SCALE) / ETX_EXCESS_SCALE
            } else {
                1.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(loss: f32, etx: f32) -> SlotMeasurement {
        SlotMeasurement {
            rssi_dbm: -60.0,
            latency_ms: 5.0,
            packet_loss: loss,
            hops_to_destination: Some(2),
            bandwidth_mbps: 26.0,
            trust: 1.0,
            etx_to_destination: etx,
            latency_to_destination_ms: 20.0,
            queue: 0.25,
            visited: true,
        }
    }

    #[test]
    fn layouts_have_the_documented_sizes() {
        assert_eq!(FeatureSet::Spec.obs_dim(8), 49);
        assert_eq!(FeatureSet::Routing.obs_dim(8), 8 * 11 + 3);
        assert_eq!(FeatureSet::Routing.num_slots(91), Some(8));
        assert_eq!(FeatureSet::Routing.num_slots(90), None);
        assert_eq!(FeatureSet::Spec.num_slots(0), None);
        for f in FeatureSet::ALL {
            assert_eq!(FeatureSet::from_name(f.name()), Some(f));
        }
        assert_eq!(FeatureSet::from_name("nope"), None);
    }

    #[test]
    fn etx_excess_is_zero_on_the_etx_route_and_one_without_a_route() {
        let set = FeatureSet::Routing;
        let f = set.per_slot();
        let mut obs = [0f32; 4 * 11];
        let slots = [
            slot(0.5, 1.0),            // 2 + 1 = 3
            slot(0.0, 1.5),            // 1 + 1.5 = 2.5: the ETX route
            slot(0.0, f32::INFINITY),  // no route
            slot(0.0, 100.0),          // clipped
        ];
        for (s, m) in slots.iter().enumerate() {
            write_slot(set, m, &mut obs[s * f..(s + 1) * f]);
        }
        finish_observation(set, &mut obs, &[1, 1, 1, 1]);
        assert!((obs[7] - 0.5 / 4.0).abs() < 1e-6);
        assert_eq!(obs[f + 7], 0.0);
        assert_eq!(obs[2 * f + 7], 1.0);
        assert_eq!(obs[2 * f + 6], 1.0);
        assert_eq!(obs[3 * f + 7], 1.0);
        assert_eq!(obs[10], 1.0);
        // A masked slot is zeroed and does not count as the best.
        let mut obs2 = obs;
        for (s, m) in slots.iter().enumerate() {
            write_slot(set, m, &mut obs2[s * f..(s + 1) * f]);
        }
        finish_observation(set, &mut obs2, &[1, 0, 1, 1]);
        assert!(obs2[f..2 * f].iter().all(|&x| x == 0.0));
        assert_eq!(obs2[7], 0.0);
    }

    #[test]
    fn context_fractions() {
        let mut out = [0f32; 3];
        let c = NodeContext { queue: 0.5, hops_taken: 8, ttl: 32 };
        write_context(FeatureSet::Routing, &c, &mut out);
        assert_eq!(out, [0.5, 0.75, 0.25]);
        let mut one = [9f32; 1];
        write_context(FeatureSet::Spec, &c, &mut one);
        assert_eq!(one, [0.5]);
    }
}
