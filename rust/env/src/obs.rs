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
    if twin.has_directives() {
        // A control loop's directives (MAPE-K): mask quarantined relays and avoided links,
        // unless that leaves nothing (a packet is never stranded by a directive).
        let avoided = |s: usize| twin.avoids(h.node, s, h.dest);
        if (0..k).any(|s| mask[s] != 0 && !avoided(s)) {
            for (s, m) in mask.iter_mut().enumerate() {
                if *m != 0 && avoided(s) {
                    *m = 0;
                }
            }
        }
    }
    let ctx = NodeContext {
        queue: twin.queue(h.node),
        hops_taken: h.hops_taken,
        ttl: h.ttl,
    };
    meshrl_format::write_context(set, &ctx, &mut obs[k * f..]);
    meshrl_format::finish_observation(set, &mut obs[..k * f], mask);
}

/// Observations of the `spec` set at each node of one twin, less the one feature that depends
/// on the packet (each slot's hop count to its destination): every packet at a node shares
/// the rest, so a node's row is normalized once per tick and copied for each packet there.
/// Rows are built on first use after [`NodeRows::invalidate`], which must follow any change
/// of the twin (a tick, an incident).
#[derive(Clone, Debug, Default)]
pub struct NodeRows {
    obs: Vec<f32>,
    mask: Vec<i8>,
    ready: Vec<bool>,
}

impl NodeRows {
    /// Forgets every row (the twin changed).
    pub fn invalidate(&mut self) {
        self.ready.fill(false);
    }

    /// Whether [`write_spec_observation`] serves `set` on `twin` (else use
    /// [`write_observation`]): the `spec` set, with no control-loop directive masking slots.
    pub fn serves(set: FeatureSet, twin: &Twin) -> bool {
        set == FeatureSet::Spec && !twin.has_directives()
    }

    fn row(&mut self, twin: &Twin, u: usize) -> (&[f32], &[i8]) {
        let (n, k) = (twin.num_nodes(), twin.max_neighbors());
        let d = obs_dim(k);
        if self.ready.len() != n {
            self.obs = vec![0.0; n * d];
            self.mask = vec![0; n * k];
            self.ready = vec![false; n];
        }
        let (obs, mask) = (
            &mut self.obs[u * d..(u + 1) * d],
            &mut self.mask[u * k..(u + 1) * k],
        );
        if !self.ready[u] {
            write_node_row(twin, u, obs, mask);
            self.ready[u] = true;
        }
        (obs, mask)
    }
}

/// The `spec` observation at node `u` with every hop count left unknown (1.0).
fn write_node_row(twin: &Twin, u: usize, obs: &mut [f32], mask: &mut [i8]) {
    let set = FeatureSet::Spec;
    let (k, f) = (twin.max_neighbors(), set.per_slot());
    let neighbors = twin.neighbors(u);
    let metrics = twin.link_metrics(u);
    for s in 0..k {
        let v = neighbors[s];
        mask[s] = (v != NO_NEIGHBOR) as i8;
        if v == NO_NEIGHBOR {
            continue;
        }
        let m = metrics[s];
        let slot = SlotMeasurement {
            rssi_dbm: m.rssi_dbm,
            latency_ms: m.latency_ms,
            packet_loss: m.packet_loss,
            hops_to_destination: None,
            bandwidth_mbps: m.bandwidth_mbps,
            trust: twin.trust(v as usize),
            ..Default::default()
        };
        meshrl_format::write_slot(set, &slot, &mut obs[s * f..(s + 1) * f]);
    }
    let ctx = NodeContext {
        queue: twin.queue(u),
        hops_taken: 0,
        ttl: 0,
    };
    meshrl_format::write_context(set, &ctx, &mut obs[k * f..]);
    meshrl_format::finish_observation(set, &mut obs[..k * f], mask);
}

/// [`write_observation`] for the `spec` set (see [`NodeRows::serves`]): the node's shared
/// row, then the hop counts to this packet's destination. Same values, bit for bit.
pub fn write_spec_observation(
    rows: &mut NodeRows,
    twin: &Twin,
    h: &Header<'_>,
    obs: &mut [f32],
    mask: &mut [i8],
) {
    debug_assert!(NodeRows::serves(FeatureSet::Spec, twin));
    let f = FEATURES_PER_NEIGHBOR;
    let hops = twin.cached_hop_distances(h.dest);
    let neighbors = twin.neighbors(h.node);
    let (row, row_mask) = rows.row(twin, h.node);
    obs.copy_from_slice(row);
    mask.copy_from_slice(row_mask);
    for (s, &v) in neighbors.iter().enumerate() {
        if v != NO_NEIGHBOR {
            obs[s * f + 3] = normalize_hops(hops[v as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advert::Adverts;
    use meshrl_twin::TwinConfig;

    /// The shared-row path writes exactly what the per-slot path writes, on a changing mesh.
    #[test]
    fn spec_rows_match_write_observation() {
        let mut cfg = TwinConfig::default();
        cfg.topology.num_nodes = 24;
        cfg.topology.area_m = 300.0;
        cfg.dynamics.churn = true;
        cfg.dynamics.leave_probability = 0.02;
        cfg.dynamics.link_degradation = true;
        cfg.dynamics.degrade_probability = 0.05;
        cfg.trust.untrusted_fraction = 0.2;
        let mut twin = Twin::new(&cfg, 7).unwrap();
        let (n, k) = (twin.num_nodes(), twin.max_neighbors());
        let d = obs_dim(k);
        let mut adverts = Adverts::new(1);
        let mut rows = NodeRows::default();
        let visited = [3u32, 5];
        for tick in 0..40 {
            rows.invalidate();
            for node in 0..n {
                for dest in (tick % 3..n).step_by(3) {
                    twin.refresh_hop_distances(dest);
                    let h = Header {
                        node,
                        dest,
                        hops_taken: 4,
                        ttl: 48,
                        visited: &visited,
                    };
                    let (mut a, mut am) = (vec![9.0f32; d], vec![9i8; k]);
                    let (mut b, mut bm) = (vec![7.0f32; d], vec![7i8; k]);
                    write_observation(FeatureSet::Spec, &twin, &mut adverts, &h, &mut a, &mut am);
                    write_spec_observation(&mut rows, &twin, &h, &mut b, &mut bm);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a), bits(&b), "tick {tick} node {node} dest {dest}");
                    assert_eq!(am, bm);
                }
            }
            twin.tick();
        }
    }
}
