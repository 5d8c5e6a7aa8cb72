//! Building observations on a node from its own neighbour measurements, with the constants the
//! policy was trained with (read from the exported file, not compiled in).

use alloc::format;

use crate::{parse_f32, Error};

/// Features per neighbour slot.
pub const FEATURES_PER_NEIGHBOR: usize = 6;

/// Names of the per-slot features, in order.
pub const FEATURE_NAMES: [&str; FEATURES_PER_NEIGHBOR] = [
    "rssi",
    "latency",
    "packet_loss",
    "hop_count_to_destination",
    "bandwidth",
    "trust",
];

/// What a node knows about one neighbour, in raw units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NeighborMeasurement {
    /// Received signal strength, dBm.
    pub rssi_dbm: f32,
    /// Link latency estimate, ms.
    pub latency_ms: f32,
    /// Frame loss probability, 0..=1.
    pub packet_loss: f32,
    /// Hops from the neighbour to the packet's destination (0: it is the destination); `None`
    /// when the routing table has no route.
    pub hops_to_destination: Option<u32>,
    /// Link rate, Mbps.
    pub bandwidth_mbps: f32,
    /// Trust in the neighbour (forwarding reputation), 0..=1.
    pub trust: f32,
}

/// The observation layout: `num_slots` slots of [`FEATURES_PER_NEIGHBOR`] normalized features,
/// then the local queue occupancy. Per slot:
///
/// | index | feature | normalized |
/// |---|---|---|
/// | 0 | RSSI | `(rssi_dbm − rssi_center_dbm) / rssi_scale_db` |
/// | 1 | latency | `latency_ms / (latency_ms + latency_half_ms)` |
/// | 2 | packet loss | as is |
/// | 3 | hops to destination | `min(hops, hops_scale) / hops_scale`, 1 if unknown |
/// | 4 | bandwidth | `bandwidth_mbps / bandwidth_scale_mbps` |
/// | 5 | trust | as is |
///
/// Empty slots are all zero and masked out. Slots hold a node's neighbours (its `num_slots`
/// strongest by RSSI when it has more) in ascending node-id order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObsSpec {
    pub num_slots: usize,
    pub rssi_center_dbm: f32,
    pub rssi_scale_db: f32,
    pub latency_half_ms: f32,
    pub hops_scale: f32,
    pub bandwidth_scale_mbps: f32,
}

impl ObsSpec {
    pub(crate) fn from_metadata<'a>(
        num_slots: usize,
        get: impl Fn(&'static str) -> Result<&'a str, Error>,
    ) -> Result<ObsSpec, Error> {
        let positive = |key: &'static str| -> Result<f32, Error> {
            let v = parse_f32(get(key)?, key)?;
            if v <= 0.0 {
                return Err(Error::Metadata {
                    key,
                    reason: format!("{v} must be positive"),
                });
            }
            Ok(v)
        };
        Ok(ObsSpec {
            num_slots,
            rssi_center_dbm: parse_f32(get("obs.rssi_center_dbm")?, "obs.rssi_center_dbm")?,
            rssi_scale_db: positive("obs.rssi_scale_db")?,
            latency_half_ms: positive("obs.latency_half_ms")?,
            hops_scale: positive("obs.hops_scale")?,
            bandwidth_scale_mbps: positive("obs.bandwidth_scale_mbps")?,
        })
    }

    /// Observation length: `num_slots * 6 + 1`.
    pub fn obs_dim(&self) -> usize {
        self.num_slots * FEATURES_PER_NEIGHBOR + 1
    }

    /// The six normalized features of one neighbour.
    pub fn features(&self, m: &NeighborMeasurement) -> [f32; FEATURES_PER_NEIGHBOR] {
        let hops = match m.hops_to_destination {
            Some(h) => (h as f32).min(self.hops_scale) / self.hops_scale,
            None => 1.0,
        };
        [
            (m.rssi_dbm - self.rssi_center_dbm) / self.rssi_scale_db,
            m.latency_ms / (m.latency_ms + self.latency_half_ms),
            m.packet_loss,
            hops,
            m.bandwidth_mbps / self.bandwidth_scale_mbps,
            m.trust,
        ]
    }

    /// Fills `obs` and `mask` from the neighbour table (`None`: empty slot) and the local
    /// queue occupancy (0..=1). No allocation.
    pub fn build(
        &self,
        neighbors: &[Option<NeighborMeasurement>],
        queue: f32,
        obs: &mut [f32],
        mask: &mut [bool],
    ) -> Result<(), Error> {
        if neighbors.len() != self.num_slots {
            return Err(Error::Input {
                what: "neighbors",
                reason: format!("{} slots, the policy has {}", neighbors.len(), self.num_slots),
            });
        }
        if obs.len() != self.obs_dim() || mask.len() != self.num_slots {
            return Err(Error::Input {
                what: "obs",
                reason: format!(
                    "buffers of length {} and {}, expected {} and {}",
                    obs.len(),
                    mask.len(),
                    self.obs_dim(),
                    self.num_slots
                ),
            });
        }
        for (s, n) in neighbors.iter().enumerate() {
            let o = &mut obs[s * FEATURES_PER_NEIGHBOR..(s + 1) * FEATURES_PER_NEIGHBOR];
            match n {
                Some(m) => {
                    o.copy_from_slice(&self.features(m));
                    mask[s] = true;
                }
                None => {
                    o.fill(0.0);
                    mask[s] = false;
                }
            }
        }
        obs[self.num_slots * FEATURES_PER_NEIGHBOR] = queue;
        Ok(())
    }
}
