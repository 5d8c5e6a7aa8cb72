//! The observation layout and its normalization constants.
//!
//! An observation is `max_neighbors` slots of [`FEATURES_PER_NEIGHBOR`] features, then the
//! local queue depth: `obs_dim = max_neighbors * 6 + 1`. Per slot, in order:
//!
//! | index | feature | raw unit | normalized |
//! |---|---|---|---|
//! | 0 | RSSI | dBm, -100..0 | `(rssi + 50) / 50`, in [-1, 1] |
//! | 1 | latency | ms, ≥ 0 | `latency / (latency + 50)`, in [0, 1) (0.5 at 50 ms) |
//! | 2 | packet loss | probability | as is, in [0, 1] |
//! | 3 | hops from the neighbour to the destination | hops | `min(hops, 32) / 32`; 1 if unreachable; 0 means the neighbour *is* the destination |
//! | 4 | bandwidth | Mbps | `bandwidth / 65`, in [0, 1] |
//! | 5 | trust of the neighbour | score | as is, in [0, 1] |
//!
//! Empty slots are all zero and masked out. The last entry is the queue occupancy of the node
//! holding the packet, in [0, 1].

use meshrl_twin::{Twin, NO_NEIGHBOR, UNREACHABLE};

/// Features per neighbour slot.
pub const FEATURES_PER_NEIGHBOR: usize = 6;
/// RSSI is normalized as `(rssi_dbm - RSSI_CENTER_DBM) / RSSI_SCALE_DB`.
pub const RSSI_CENTER_DBM: f32 = -50.0;
pub const RSSI_SCALE_DB: f32 = 50.0;
/// Latency is normalized as `latency_ms / (latency_ms + LATENCY_HALF_MS)`.
pub const LATENCY_HALF_MS: f32 = 50.0;
/// Hop counts are normalized as `min(hops, HOPS_SCALE) / HOPS_SCALE`.
pub const HOPS_SCALE: f32 = 32.0;
/// Bandwidth is normalized as `bandwidth_mbps / BANDWIDTH_SCALE_MBPS` (the top MCS rate).
pub const BANDWIDTH_SCALE_MBPS: f32 = 65.0;

/// Observation length for a neighbour table of `max_neighbors` slots.
pub const fn obs_dim(max_neighbors: usize) -> usize {
    max_neighbors * FEATURES_PER_NEIGHBOR + 1
}

/// Names of the per-slot features, in order.
pub const FEATURE_NAMES: [&str; FEATURES_PER_NEIGHBOR] = [
    "rssi",
    "latency",
    "packet_loss",
    "hop_count_to_destination",
    "bandwidth",
    "trust",
];

/// Normalized hop count as in the observation.
#[inline]
pub fn normalize_hops(hops: u16) -> f32 {
    if hops == UNREACHABLE {
        1.0
    } else {
        (hops as f32).min(HOPS_SCALE) / HOPS_SCALE
    }
}

/// Writes the observation and action mask of a packet at `node` headed for `dest`. The twin's
/// hop distances to `dest` must be current (`refresh_hop_distances`).
#[inline]
pub fn write_observation(twin: &Twin, node: usize, dest: usize, obs: &mut [f32], mask: &mut [i8]) {
    let k = twin.max_neighbors();
    debug_assert_eq!(obs.len(), obs_dim(k));
    let neighbors = twin.neighbors(node);
    let metrics = twin.link_metrics(node);
    let hops = twin.cached_hop_distances(dest);
    for s in 0..k {
        let o = &mut obs[s * FEATURES_PER_NEIGHBOR..(s + 1) * FEATURES_PER_NEIGHBOR];
        let v = neighbors[s];
        if v == NO_NEIGHBOR {
            o.fill(0.0);
            mask[s] = 0;
            continue;
        }
        let m = metrics[s];
        o[0] = (m.rssi_dbm - RSSI_CENTER_DBM) / RSSI_SCALE_DB;
        o[1] = m.latency_ms / (m.latency_ms + LATENCY_HALF_MS);
        o[2] = m.packet_loss;
        o[3] = normalize_hops(hops[v as usize]);
        o[4] = m.bandwidth_mbps / BANDWIDTH_SCALE_MBPS;
        o[5] = twin.trust(v as usize);
        mask[s] = 1;
    }
    obs[k * FEATURES_PER_NEIGHBOR] = twin.queue(node);
}
