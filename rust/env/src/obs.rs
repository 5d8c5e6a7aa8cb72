//! Observations of a packet at a node: the layouts and normalization of `meshrl-format`
//! ([`FeatureSet`]), filled from the twin, the routing protocol's advertisements and the
//! packet's header.

pub use meshrl_format::{
    FeatureSet, NodeContext, SlotMeasurement, BANDWIDTH_SCALE_MBPS, HOPS_SCALE, LATENCY_HALF_MS,
    RSSI_CENTER_DBM, RSSI_SCALE_DB, SPEC_SLOT_FEATURES as FEATURE_NAMES,
};
use meshrl_twin::{Twin, NO_NEIGHBOR, UNREACHABLE};

use crate::advert::Adverts;

/// Features per neighbour slot of the `spec` set.
pub const FEATURES_PER_NEIGHBOR: usize = FeatureSet::Spec.per_slot();

/// Observation length of the `spec` set for a neighbour table of `max_neighbors` slots.
pub const fn obs_dim(max_neighbors: usize) -> usize {
    FeatureSet::Spec.obs_dim(max_neighbors)
}

/// Normalized hop count as in the observation.
#[inline]
pub fn normalize_hops(hops: u16) -> f32 {
    if hops == UNREACHABLE {
        1.0
    } else {
        (hops as f32).min(HOPS_SCALE) / HOPS_SCALE
    }
}

/// What the packet's header tells the node holding it.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub node: usize,
    pub dest: usize,
    pub hops_taken: u32,
    pub ttl: u32,
    /// Nodes the packet passed through (the most recent ones; the header keeps a few).
    pub visited: &'a [u32],
}

/// Writes the observation and action mask of the packet `h` in `set`'s layout. The twin's
/// hop distances to the destination must be current (`refresh_hop_distances`) and `adverts`
/// refreshed for this tick (`routing` set only).
pub fn write_observation(
    set: FeatureSet,
    twin: &Twin,
    adverts: &mut Adverts,
    h: &Header<'_>,
    obs: &mut [f32],
    mask: &mut [i8],
) {
    let k = twin.max_neighbors();
    let f = set.per_slot();
    debug_assert_eq!(obs.len(), set.obs_dim(k));
    let neighbors = twin.neighbors(h.node);
    let metrics = twin.link_metrics(h.node);
    let hops = twin.cached_hop_distances(h.dest);
    let routing = set == FeatureSet::Routing;
    if routing {
        adverts.compute(h.dest);
    }
    let adverts = &*adverts;
    let paths = if routing { adverts.computed(h.dest) } else { None };
    for s in 0..k {
        let v = neighbors[s];
        mask[s] = (v != NO_NEIGHBOR) as i8;
        if v == NO_NEIGHBOR {
            continue;
        }
        let (m, v) = (metrics[s], v as usize);
        let mut slot = SlotMeasurement {
            rssi_dbm: m.rssi_dbm,
            latency_ms: m.latency_ms,
            packet_loss: m.packet_loss,
            hops_to_destination: (hops[v] != UNREACHABLE).then_some(hops[v] as u32),
            bandwidth_mbps: m.bandwidth_mbps,
            trust: twin.trust(v),
            ..Default::default()
        };
        if let Some(p) = paths {
            slot.etx_to_destination = p.etx[v];
            slot.latency_to_destination_ms = p.latency_ms[v];
            slot.queue = adverts.queue(v);
            slot.visited = h.visited.contains(&(v as u32));
        }
        meshrl_format::write_slot(set, &slot, &mut obs[s * f..(s + 1) * f]);
    }
    let ctx = NodeContext {
        queue: twin.queue(h.node),
        hops_taken: h.hops_taken,
        ttl: h.ttl,
    };
    meshrl_format::write_context(set, &ctx, &mut obs[k * f..]);
    meshrl_format::finish_observation(set, &mut obs[..k * f], mask);
}
