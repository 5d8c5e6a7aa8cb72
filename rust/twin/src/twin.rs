//! The twin: a mesh's state as it evolves tick by tick, and packet forwarding over it.

use rand::{Rng, RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::radio;
use crate::topology::{self, splitmix64, Layout, LinkSpec};
use crate::{TopologyKind, TwinConfig, TwinError};

/// Marks an empty neighbour-table slot.
pub const NO_NEIGHBOR: u32 = u32::MAX;
/// Hop distance of a node that cannot reach the destination.
pub const UNREACHABLE: u16 = u16::MAX;

/// Why a packet was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LossCause {
    /// Every MAC attempt over the link failed.
    LinkLoss = 1,
    /// An untrusted relay dropped it.
    UntrustedDrop = 2,
    /// The next hop's queue was full.
    Congestion = 3,
    /// The node holding it left the mesh.
    NodeDown = 4,
    /// The node holding it has no neighbour to forward to.
    NoRoute = 5,
    /// The agent chose an empty (masked) neighbour slot.
    InvalidAction = 6,
}

impl LossCause {
    pub const ALL: [LossCause; 6] = [
        LossCause::LinkLoss,
        LossCause::UntrustedDrop,
        LossCause::Congestion,
        LossCause::NodeDown,
        LossCause::NoRoute,
        LossCause::InvalidAction,
    ];

    /// The cause's name in reports and Python (`link_loss`, `untrusted_drop`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LossCause::LinkLoss => "link_loss",
            LossCause::UntrustedDrop => "untrusted_drop",
            LossCause::Congestion => "congestion",
            LossCause::NodeDown => "node_down",
            LossCause::NoRoute => "no_route",
            LossCause::InvalidAction => "invalid_action",
        }
    }
}

/// What a node can measure about the link in one of its neighbour-table slots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkMetrics {
    /// Received signal strength, dBm (-100..0).
    pub rssi_dbm: f32,
    /// Expected one-way delay of a packet sent now: propagation + transmissions (ETX × airtime)
    /// + queueing at the neighbour, ms.
    pub latency_ms: f32,
    /// Probability one frame is lost (0..1).
    pub packet_loss: f32,
    /// PHY rate left over by the sender's own queue, Mbps.
    pub bandwidth_mbps: f32,
}

/// The result of forwarding a packet over one hop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hop {
    /// The neighbour the packet was sent to.
    pub next: u32,
    /// Delay the packet accumulated on this hop, ms.
    pub latency_ms: f32,
    /// `Some` if the packet did not survive the hop.
    pub lost: Option<LossCause>,
}

/// What a node's neighbours overhear of its forwarding (a watchdog), counted since the twin
/// was built. A full queue's drop looks like any other drop to a watchdog; a delay counts only
/// when the relay holds a packet longer than its advertised queue explains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overheard {
    /// Packets the node was seen to forward.
    pub forwarded: u64,
    /// Packets it was seen to take and not forward (untrusted drops and full-queue drops).
    pub dropped: u64,
    /// Forwarded packets it held back on purpose (an untrusted node's delay).
    pub delayed: u64,
}

/// A node's own (background) traffic so far, in packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LocalTraffic {
    /// Packets it generated.
    pub offered: f64,
    /// Packets its queue took: the rest met a full queue, or the limit a loop set.
    pub admitted: f64,
}

/// Trust a quarantined node advertises, whatever its record: the floor of `etx_trust`.
pub const QUARANTINED_TRUST: f32 = 0.05;

#[derive(Clone, Debug)]
struct Link {
    spec: LinkSpec,
    degraded: bool,
    /// Attenuation an incident adds on top of the link's own (and degradation's), dB.
    extra_loss_db: f64,
    /// A control loop asks routes to avoid this link.
    avoided: bool,
    /// Current (possibly degraded) RSSI, dBm, and what follows from it.
    rssi_dbm: f32,
    loss: f32,
    rate_mbps: f32,
    /// Airtime of one attempt, ms.
    airtime_ms: f32,
    propagation_ms: f32,
}

/// A mesh network in simulation. One RNG drives everything, so a seed fixes the run bit for bit.
#[derive(Clone, Debug)]
pub struct Twin {
    cfg: TwinConfig,
    seed: u64,
    rng: Xoshiro256PlusPlus,
    ticks: u64,
    k: usize,
    positions: Vec<[f64; 2]>,
    waypoints: Vec<[f64; 2]>,
    speeds_mps: Vec<f64>,
    extent_m: f64,
    links: Vec<Link>,
    /// Every candidate link of each node: (neighbour, link index).
    adjacency: Vec<Vec<(u32, u32)>>,
    active: Vec<bool>,
    untrusted: Vec<bool>,
    queue: Vec<f32>,
    trust_forwarded: Vec<f32>,
    trust_dropped: Vec<f32>,
    trust: Vec<f32>,
    overheard: Vec<Overheard>,
    /// Routing directives of a control loop: nodes that routes avoid (and whose advertised
    /// trust falls to [`QUARANTINED_TRUST`]). The twin's physics ignores them.
    quarantined: Vec<bool>,
    /// Quarantined nodes plus avoided links (0: the mask and routers skip every check).
    directive_count: usize,
    /// Bumped whenever a directive changes, so routers re-plan at once.
    directives_version: u64,
    /// Background packets per tick each node gets on top of `traffic.background_packets_per_tick`
    /// (a flash crowd), 0 by default.
    extra_traffic: Vec<f64>,
    /// Share of each node's queue its own (background) traffic may fill, 1 by default; the
    /// rest is kept for transit (a control loop's directive, see [`Twin::set_local_queue_limit`]).
    local_limit: Vec<f32>,
    /// Each node's own traffic so far: packets offered and packets its queue admitted.
    local_traffic: Vec<LocalTraffic>,
    /// Neighbour tables, `k` slots per node, `NO_NEIGHBOR` where empty; sorted by node id.
    table: Vec<u32>,
    table_link: Vec<u32>,
    metrics: Vec<LinkMetrics>,
    /// Queue-independent part of each slot's latency (propagation + ETX × airtime), ms.
    base_latency_ms: Vec<f32>,
    /// PHY rate of each slot's link, Mbps.
    slot_rate_mbps: Vec<f32>,
    /// Nodes whose table may have changed since the last rebuild.
    dirty_nodes: Vec<bool>,
    /// Reverse of the tables (who lists `v`), for BFS towards a destination.
    reverse_start: Vec<u32>,
    reverse: Vec<u32>,
    /// Bumped whenever the tables change; hop distances older than it are recomputed.
    version: u64,
    /// Hop distances to each destination, allocated on first use (a mesh of n nodes holds
    /// rows only for the destinations its packets head for, not n²).
    dist: Vec<Vec<u16>>,
    dist_version: Vec<u64>,
    bfs_queue: Vec<u32>,
    topology_dirty: bool,
}

impl Twin {
    /// Builds and validates a twin. Generated topologies, shadowing and every later event
    /// derive from `seed`.
    pub fn new(cfg: &TwinConfig, seed: u64) -> Result<Twin, TwinError> {
        cfg.validate()?;
        if cfg.dynamics.mobility && cfg.topology.kind == TopologyKind::File {
            return Err(TwinError::invalid(
                "dynamics.mobility",
                "mobility needs a generated topology (random_geometric or grid), not a file",
            ));
        }
        let layout =
            topology::build_layout(&cfg.topology, &cfg.radio, cfg.topology.seed.unwrap_or(seed))?;
        Ok(Twin::from_layout(cfg, layout, seed))
    }

    /// Builds a twin over a given layout (hand-built topologies in tests and baselines).
    pub fn from_layout(cfg: &TwinConfig, layout: Layout, seed: u64) -> Twin {
        let n = layout.num_nodes();
        let k = cfg.topology.max_neighbors;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix64(seed ^ 0x7477_696e));
        let extent_m = layout
            .positions
            .iter()
            .flat_map(|p| [p[0], p[1]])
            .fold(cfg.topology.area_m.max(1.0), f64::max);

        let mut untrusted = vec![false; n];
        let bad = (cfg.trust.untrusted_fraction * n as f64).round() as usize;
        let mut order: Vec<usize> = (0..n).collect();
        for i in 0..bad.min(n) {
            let j = rng.random_range(i..n);
            order.swap(i, j);
            untrusted[order[i]] = true;
        }

        let speeds_mps = (0..n)
            .map(|_| rng.random_range(cfg.dynamics.speed_min_mps..=cfg.dynamics.speed_max_mps))
            .collect();
        let waypoints = (0..n)
            .map(|_| {
                [
                    rng.random::<f64>() * extent_m,
                    rng.random::<f64>() * extent_m,
                ]
            })
            .collect();

        let mut twin = Twin {
            cfg: cfg.clone(),
            seed,
            rng,
            ticks: 0,
            k,
            positions: layout.positions,
            waypoints,
            speeds_mps,
            extent_m,
            links: Vec::new(),
            adjacency: Vec::new(),
            active: vec![true; n],
            untrusted,
            queue: vec![0.0; n],
            trust_forwarded: vec![0.0; n],
            trust_dropped: vec![0.0; n],
            trust: vec![0.5; n],
            overheard: vec![Overheard::default(); n],
            quarantined: vec![false; n],
            directive_count: 0,
            directives_version: 0,
            extra_traffic: vec![0.0; n],
            local_limit: vec![1.0; n],
            local_traffic: vec![LocalTraffic::default(); n],
            table: vec![NO_NEIGHBOR; n * k],
            table_link: vec![0; n * k],
            metrics: vec![LinkMetrics::default(); n * k],
            base_latency_ms: vec![0.0; n * k],
            slot_rate_mbps: vec![0.0; n * k],
            dirty_nodes: vec![true; n],
            reverse_start: vec![0; n + 1],
            reverse: Vec::new(),
            version: 0,
            dist: vec![Vec::new(); n],
            dist_version: vec![u64::MAX; n],
            bfs_queue: Vec::with_capacity(n),
            topology_dirty: true,
        };
        twin.set_links(&layout.links);
        for _ in 0..cfg.trust.warmup_observations {
            for v in 0..n {
                twin.observe_forwarding(v);
            }
        }
        twin.rebuild_tables();
        twin.refresh_metrics();
        twin
    }

    /// Number of nodes (active or not).
    pub fn num_nodes(&self) -> usize {
        self.active.len()
    }

    /// Slots in each node's neighbour table.
    pub fn max_neighbors(&self) -> usize {
        self.k
    }

    /// The config this twin was built from.
    pub fn config(&self) -> &TwinConfig {
        &self.cfg
    }

    /// Ticks elapsed since construction.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Simulated time since construction, ms.
    pub fn time_ms(&self) -> f64 {
        self.ticks as f64 * self.cfg.traffic.tick_ms
    }

    /// Changes whenever any neighbour table changes.
    pub fn topology_version(&self) -> u64 {
        self.version
    }

    /// Node positions, metres.
    pub fn positions(&self) -> &[[f64; 2]] {
        &self.positions
    }

    /// Whether node `u` is part of the mesh now.
    pub fn is_active(&self, u: usize) -> bool {
        self.active[u]
    }

    /// Takes node `u` down (a failure) or brings it back, as churn does at random; its
    /// neighbours' tables follow at the next tick.
    pub fn set_active(&mut self, u: usize, active: bool) {
        if self.active[u] != active {
            self.active[u] = active;
            if !active {
                self.queue[u] = 0.0;
            }
            self.mark_with_neighbors(u);
        }
    }

    /// Hidden truth: whether node `u` misbehaves. Agents must not see this; the oracle may.
    pub fn is_untrusted(&self, u: usize) -> bool {
        self.untrusted[u]
    }

    /// Trust score of node `u` as advertised (0..1): the estimate its neighbours make from its
    /// forwarding record, or [`QUARANTINED_TRUST`] at most while it is quarantined.
    pub fn trust(&self, u: usize) -> f32 {
        if self.directive_count != 0 && self.quarantined[u] {
            return self.trust[u].min(QUARANTINED_TRUST);
        }
        self.trust[u]
    }

    /// What node `u`'s neighbours overheard of its forwarding since the twin was built.
    pub fn overheard(&self, u: usize) -> Overheard {
        self.overheard[u]
    }

    /// Makes node `u` misbehave from now on (drop with `trust.drop_probability`, delay with
    /// `trust.delay_probability`), or behave again: a node that turns malicious.
    pub fn set_untrusted(&mut self, u: usize, untrusted: bool) {
        self.untrusted[u] = untrusted;
    }

    /// Adds `extra_db` of attenuation (≥ 0, replacing any earlier extra) to the link between
    /// `a` and `b`: a link that degrades. Returns false if there is no such link.
    pub fn set_link_extra_loss_db(&mut self, a: usize, b: usize, extra_db: f64) -> bool {
        let Some(l) = self.link_index(a, b) else {
            return false;
        };
        if self.links[l].extra_loss_db != extra_db {
            self.links[l].extra_loss_db = extra_db.max(0.0);
            self.update_link(l);
            self.dirty_nodes[a] = true;
            self.dirty_nodes[b] = true;
            self.topology_dirty = true;
        }
        true
    }

    /// Gives node `u` `packets_per_tick` (≥ 0) of background traffic on top of
    /// `traffic.background_packets_per_tick`: a flash crowd at `u`.
    pub fn set_extra_traffic(&mut self, u: usize, packets_per_tick: f64) {
        self.extra_traffic[u] = packets_per_tick.max(0.0);
    }

    /// Background packets per tick node `u` generates itself (`traffic.background_packets_per_tick`
    /// plus any extra): what a node knows of its own offered load.
    pub fn offered_load(&self, u: usize) -> f64 {
        self.cfg.traffic.background_packets_per_tick + self.extra_traffic[u]
    }

    /// Lets node `u`'s own traffic fill at most `share` (0..=1) of its queue and keeps the
    /// rest for the packets it forwards (transit priority, a directive of a control loop): its
    /// own packets beyond that are held back at the source, counted in
    /// [`Twin::local_traffic`]. 1 (the default) lifts the limit.
    pub fn set_local_queue_limit(&mut self, u: usize, share: f32) {
        self.local_limit[u] = if share.is_nan() {
            1.0
        } else {
            share.clamp(0.0, 1.0)
        };
    }

    /// Share of node `u`'s queue its own traffic may fill (1 unless a loop limited it).
    pub fn local_queue_limit(&self, u: usize) -> f32 {
        self.local_limit[u]
    }

    /// Node `u`'s own background traffic so far: offered and admitted to its queue.
    pub fn local_traffic(&self, u: usize) -> LocalTraffic {
        self.local_traffic[u]
    }

    /// Quarantines node `u` (routes avoid it unless it is the destination, its advertised
    /// trust falls to [`QUARANTINED_TRUST`]) or readmits it. A routing directive: the node
    /// still sends, receives and forwards what reaches it.
    pub fn set_quarantined(&mut self, u: usize, quarantined: bool) {
        if self.quarantined[u] != quarantined {
            self.quarantined[u] = quarantined;
            if quarantined {
                self.directive_count += 1;
            } else {
                self.directive_count -= 1;
            }
            self.directives_version += 1;
        }
    }

    /// Whether node `u` is quarantined.
    pub fn is_quarantined(&self, u: usize) -> bool {
        self.directive_count != 0 && self.quarantined[u]
    }

    /// Asks routes to avoid the link between `a` and `b` (one predicted to fail), or lifts
    /// that. Returns false if there is no such link.
    pub fn set_link_avoided(&mut self, a: usize, b: usize, avoided: bool) -> bool {
        let Some(l) = self.link_index(a, b) else {
            return false;
        };
        if self.links[l].avoided != avoided {
            self.links[l].avoided = avoided;
            if avoided {
                self.directive_count += 1;
            } else {
                self.directive_count -= 1;
            }
            self.directives_version += 1;
        }
        true
    }

    /// Whether routes should avoid `u`'s slot `slot`: its link is avoided, or its neighbour is
    /// quarantined and is not `dest`.
    #[inline]
    pub fn avoids(&self, u: usize, slot: usize, dest: usize) -> bool {
        if self.directive_count == 0 {
            return false;
        }
        let i = u * self.k + slot;
        let v = self.table[i];
        v != NO_NEIGHBOR
            && ((self.quarantined[v as usize] && v as usize != dest)
                || self.links[self.table_link[i] as usize].avoided)
    }

    /// Whether the link in `u`'s slot `slot` is avoided.
    pub fn is_slot_link_avoided(&self, u: usize, slot: usize) -> bool {
        let i = u * self.k + slot;
        self.directive_count != 0
            && self.table[i] != NO_NEIGHBOR
            && self.links[self.table_link[i] as usize].avoided
    }

    /// Whether any node is quarantined or any link avoided.
    pub fn has_directives(&self) -> bool {
        self.directive_count != 0
    }

    /// Changes whenever a quarantine or an avoided link is set or lifted.
    pub fn directives_version(&self) -> u64 {
        self.directives_version
    }

    fn link_index(&self, a: usize, b: usize) -> Option<usize> {
        let key = (a.min(b) as u32, a.max(b) as u32);
        self.links
            .binary_search_by_key(&key, |l| (l.spec.a, l.spec.b))
            .ok()
    }

    /// Queue occupancy of node `u` (0..1).
    pub fn queue(&self, u: usize) -> f32 {
        self.queue[u]
    }

    /// Probability that an untrusted node drops a packet it should forward (0 for good nodes).
    pub fn drop_probability(&self, u: usize) -> f64 {
        if self.untrusted[u] {
            self.cfg.trust.drop_probability
        } else {
            0.0
        }
    }

    /// The `k` neighbour-table slots of node `u` (`NO_NEIGHBOR` where empty).
    pub fn neighbors(&self, u: usize) -> &[u32] {
        &self.table[u * self.k..(u + 1) * self.k]
    }

    /// Measured metrics of the links in node `u`'s table, slot by slot (zero where empty).
    pub fn link_metrics(&self, u: usize) -> &[LinkMetrics] {
        &self.metrics[u * self.k..(u + 1) * self.k]
    }

    /// Probability that a packet sent from `u` through `slot` is lost on the link itself after
    /// all MAC attempts (hidden truth for the oracle; agents see `packet_loss` per attempt).
    pub fn hop_loss_probability(&self, u: usize, slot: usize) -> f64 {
        let i = u * self.k + slot;
        if self.table[i] == NO_NEIGHBOR {
            return 1.0;
        }
        let loss = self.links[self.table_link[i] as usize].loss as f64;
        loss.powi(1 + self.cfg.radio.mac_retries as i32)
    }

    /// Hop counts from every node to `dest` over the current neighbour tables (BFS), as a
    /// distance-vector protocol would advertise them; `UNREACHABLE` where no path exists.
    /// Computed on first use after each topology change.
    pub fn hop_distances(&mut self, dest: usize) -> &[u16] {
        self.refresh_hop_distances(dest);
        self.cached_hop_distances(dest)
    }

    /// Recomputes the hop distances to `dest` if the topology changed since they were last
    /// computed; pair with [`Twin::cached_hop_distances`] to read them through `&self`.
    pub fn refresh_hop_distances(&mut self, dest: usize) {
        let n = self.num_nodes();
        if self.dist_version[dest] == self.version {
            return;
        }
        if n <= 64 {
            // Packets head for most destinations of a small mesh: all of them at once costs
            // about what two single BFS runs do.
            self.refresh_all_hop_distances();
            return;
        }
        self.bfs_hop_distances(dest);
    }

    /// Hop distances to `dest` by a BFS over the reversed tables.
    fn bfs_hop_distances(&mut self, dest: usize) {
        let n = self.num_nodes();
        let dist = &mut self.dist[dest];
        dist.clear();
        dist.resize(n, UNREACHABLE);
        if self.active[dest] {
            dist[dest] = 0;
            self.bfs_queue.clear();
            self.bfs_queue.push(dest as u32);
            let mut head = 0;
            while head < self.bfs_queue.len() {
                let v = self.bfs_queue[head] as usize;
                head += 1;
                let next = dist[v] + 1;
                let (s, e) = (
                    self.reverse_start[v] as usize,
                    self.reverse_start[v + 1] as usize,
                );
                for &u in &self.reverse[s..e] {
                    if dist[u as usize] == UNREACHABLE {
                        dist[u as usize] = next;
                        self.bfs_queue.push(u);
                    }
                }
            }
        }
        self.dist_version[dest] = self.version;
    }

    /// Hop distances to every destination whose distances are stale, for meshes of at most
    /// 64 nodes, bit-parallel over destinations: `reach[u]` holds bit `t` once `t` is within
    /// `h` hops of `u`; each round ORs into it the sets of `u`'s table neighbours, and a bit
    /// that first appears in round `h` is a distance of `h`. A round is `n·k` ORs of `u64`,
    /// and there are as many rounds as the tables' diameter, where a BFS per destination
    /// walks every table edge once per destination. Same distances as the BFS.
    fn refresh_all_hop_distances(&mut self) {
        let (n, k) = (self.num_nodes(), self.k);
        debug_assert!(n <= 64);
        let mut stale = 0u64;
        let mut reach = [0u64; 64];
        for t in 0..n {
            if self.dist_version[t] == self.version {
                continue;
            }
            stale |= 1 << t;
            let dist = &mut self.dist[t];
            dist.clear();
            dist.resize(n, UNREACHABLE);
            if self.active[t] {
                dist[t] = 0;
            }
            self.dist_version[t] = self.version;
        }
        for (u, r) in reach.iter_mut().enumerate().take(n) {
            if self.active[u] {
                *r = 1 << u;
            }
        }
        let mut next = reach;
        let mut h = 0u16;
        loop {
            h += 1;
            let mut grew = false;
            for u in 0..n {
                let mut r = reach[u];
                for &v in &self.table[u * k..(u + 1) * k] {
                    if v != NO_NEIGHBOR {
                        r |= reach[v as usize];
                    }
                }
                next[u] = r;
                let new = r & !reach[u];
                grew |= new != 0;
                let mut write = new & stale;
                while write != 0 {
                    let t = write.trailing_zeros() as usize;
                    write &= write - 1;
                    self.dist[t][u] = h;
                }
            }
            if !grew {
                break;
            }
            reach[..n].copy_from_slice(&next[..n]);
        }
    }

    /// Hop distances to `dest` as last computed by [`Twin::refresh_hop_distances`].
    pub fn cached_hop_distances(&self, dest: usize) -> &[u16] {
        debug_assert_eq!(self.dist_version[dest], self.version, "stale hop distances");
        &self.dist[dest]
    }

    /// Number of nodes that are part of the mesh now.
    pub fn active_count(&self) -> usize {
        self.active.iter().filter(|a| **a).count()
    }

    /// Sends a packet from `u` through neighbour-table `slot` towards `dest`: MAC attempts,
    /// queueing and the relay's behaviour. The packet joins the neighbour's queue.
    ///
    /// The hop's randomness (frame losses, the relay's drop or delay) comes from `rng`, the
    /// packet's own stream, never from the twin's: the mesh evolves the same way whatever
    /// route a policy picks, which is what makes policy comparisons paired (common random
    /// numbers).
    pub fn transmit<R: Rng + ?Sized>(
        &mut self,
        u: usize,
        slot: usize,
        dest: usize,
        rng: &mut R,
    ) -> Hop {
        let i = u * self.k + slot;
        let v = self.table[i];
        if slot >= self.k || v == NO_NEIGHBOR {
            return Hop {
                next: u as u32,
                latency_ms: 0.0,
                lost: Some(LossCause::InvalidAction),
            };
        }
        let link = &self.links[self.table_link[i] as usize];
        let (loss, airtime, prop) = (link.loss as f64, link.airtime_ms, link.propagation_ms);
        let vi = v as usize;
        let one_packet = 1.0 / self.cfg.traffic.queue_capacity_packets as f32;
        let mut attempts = 0;
        let mut delivered = false;
        for _ in 0..=self.cfg.radio.mac_retries {
            attempts += 1;
            if rng.random::<f64>() >= loss {
                delivered = true;
                break;
            }
        }
        let mut latency = prop + attempts as f32 * airtime;
        if !delivered {
            return Hop {
                next: v,
                latency_ms: latency,
                lost: Some(LossCause::LinkLoss),
            };
        }
        if vi != dest && self.queue[vi] + one_packet > 1.0 + 1e-6 {
            self.overheard[vi].dropped += 1;
            return Hop {
                next: v,
                latency_ms: latency,
                lost: Some(LossCause::Congestion),
            };
        }
        latency += self.queue[vi] * self.full_queue_delay_ms();
        if vi != dest {
            self.queue[vi] = (self.queue[vi] + one_packet).min(1.0);
            let dropped =
                self.untrusted[vi] && rng.random::<f64>() < self.cfg.trust.drop_probability;
            self.record_forwarding(vi, dropped);
            if dropped {
                return Hop {
                    next: v,
                    latency_ms: latency,
                    lost: Some(LossCause::UntrustedDrop),
                };
            }
            if self.untrusted[vi] && rng.random::<f64>() < self.cfg.trust.delay_probability {
                latency += self.cfg.trust.delay_ms as f32;
                self.overheard[vi].delayed += 1;
            }
        }
        Hop {
            next: v,
            latency_ms: latency,
            lost: None,
        }
    }

    /// Advances the mesh by one tick: churn, link degradation, mobility, queues, trust
    /// observations, then neighbour tables and link metrics.
    pub fn tick(&mut self) {
        self.ticks += 1;
        let n = self.num_nodes();
        let dynamics = self.cfg.dynamics.clone();
        if dynamics.churn {
            let mut active = self.active_count();
            for u in 0..n {
                let r = self.rng.random::<f64>();
                if self.active[u] {
                    if r < dynamics.leave_probability && active > 2 {
                        self.active[u] = false;
                        self.queue[u] = 0.0;
                        active -= 1;
                        self.mark_with_neighbors(u);
                    }
                } else if r < dynamics.join_probability {
                    self.active[u] = true;
                    active += 1;
                    self.mark_with_neighbors(u);
                }
            }
        }
        if dynamics.link_degradation {
            for l in 0..self.links.len() {
                let p = if self.links[l].degraded {
                    dynamics.recover_probability
                } else {
                    dynamics.degrade_probability
                };
                if self.rng.random::<f64>() < p {
                    self.links[l].degraded = !self.links[l].degraded;
                    self.update_link(l);
                    // Metrics of both ends change; the tables only where a node has more
                    // candidates than slots (the strongest-k choice may change).
                    let LinkSpec { a, b, .. } = self.links[l].spec;
                    self.dirty_nodes[a as usize] = true;
                    self.dirty_nodes[b as usize] = true;
                    self.topology_dirty = true;
                }
            }
        }
        if dynamics.mobility {
            self.move_nodes();
            if self.ticks % dynamics.mobility_update_ticks as u64 == 0 {
                let specs = topology::links_in_range(
                    &self.positions,
                    self.cfg.topology.radio_range_m,
                    &self.cfg.radio,
                    self.seed,
                );
                self.set_links(&specs);
                self.dirty_nodes.fill(true);
                self.topology_dirty = true;
            }
        }

        let traffic = &self.cfg.traffic;
        let cap = traffic.queue_capacity_packets as f32;
        let drain = traffic.service_packets_per_tick as f32 / cap;
        let bg = traffic.background_packets_per_tick;
        for u in 0..n {
            let bg = bg + self.extra_traffic[u];
            let mut arrivals = bg.floor();
            if self.rng.random::<f64>() < bg - arrivals {
                arrivals += 1.0;
            }
            let after = (self.queue[u] - drain).max(0.0);
            let limit = self.local_limit[u];
            self.queue[u] = if limit >= 1.0 {
                (after + arrivals as f32 / cap).min(1.0)
            } else {
                after + (arrivals as f32 / cap).min((limit - after).max(0.0))
            };
            let t = &mut self.local_traffic[u];
            t.offered += arrivals;
            t.admitted += ((self.queue[u] - after) * cap) as f64;
        }
        let p_obs = self.cfg.trust.observations_per_tick;
        for v in 0..n {
            if self.rng.random::<f64>() < p_obs {
                self.observe_forwarding(v);
            }
        }
        if self.topology_dirty {
            self.rebuild_tables();
        }
        self.refresh_metrics();
    }

    /// Marks `u` and every candidate neighbour of `u` for a table rebuild.
    fn mark_with_neighbors(&mut self, u: usize) {
        self.dirty_nodes[u] = true;
        for &(v, _) in &self.adjacency[u] {
            self.dirty_nodes[v as usize] = true;
        }
        self.topology_dirty = true;
    }

    /// Time to drain a full queue, ms.
    fn full_queue_delay_ms(&self) -> f32 {
        let t = &self.cfg.traffic;
        if t.service_packets_per_tick == 0.0 {
            return (t.queue_capacity_packets * t.tick_ms) as f32;
        }
        (t.queue_capacity_packets / t.service_packets_per_tick * t.tick_ms) as f32
    }

    /// Node `v` makes one (background) forwarding decision that its neighbours overhear.
    fn observe_forwarding(&mut self, v: usize) {
        let dropped =
            self.untrusted[v] && self.rng.random::<f64>() < self.cfg.trust.drop_probability;
        self.record_forwarding(v, dropped);
    }

    /// Updates `v`'s Beta-reputation trust score `(f + 1) / (f + d + 2)` with one overheard
    /// forwarding decision, older ones decayed by `trust.forgetting`.
    fn record_forwarding(&mut self, v: usize, dropped: bool) {
        let lambda = self.cfg.trust.forgetting as f32;
        if dropped {
            self.overheard[v].dropped += 1;
        } else {
            self.overheard[v].forwarded += 1;
        }
        self.trust_forwarded[v] = self.trust_forwarded[v] * lambda + (!dropped) as u8 as f32;
        self.trust_dropped[v] = self.trust_dropped[v] * lambda + dropped as u8 as f32;
        self.trust[v] = (self.trust_forwarded[v] + 1.0)
            / (self.trust_forwarded[v] + self.trust_dropped[v] + 2.0);
    }

    fn move_nodes(&mut self) {
        let dt_s = self.cfg.traffic.tick_ms / 1000.0;
        let d = &self.cfg.dynamics;
        for u in 0..self.num_nodes() {
            let (p, w) = (self.positions[u], self.waypoints[u]);
            let (dx, dy) = (w[0] - p[0], w[1] - p[1]);
            let dist = (dx * dx + dy * dy).sqrt();
            let step = self.speeds_mps[u] * dt_s;
            if dist <= step {
                self.positions[u] = w;
                self.waypoints[u] = [
                    self.rng.random::<f64>() * self.extent_m,
                    self.rng.random::<f64>() * self.extent_m,
                ];
                self.speeds_mps[u] = self.rng.random_range(d.speed_min_mps..=d.speed_max_mps);
            } else {
                self.positions[u] = [p[0] + dx / dist * step, p[1] + dy / dist * step];
            }
        }
    }

    /// Replaces the candidate links, keeping the degradation state of links that persist.
    fn set_links(&mut self, specs: &[LinkSpec]) {
        let old = std::mem::take(&mut self.links);
        let n = self.num_nodes();
        self.links = specs
            .iter()
            .map(|&spec| {
                let kept = old
                    .binary_search_by_key(&(spec.a, spec.b), |l| (l.spec.a, l.spec.b))
                    .map(|i| (old[i].degraded, old[i].extra_loss_db, old[i].avoided))
                    .unwrap_or((false, 0.0, false));
                let (degraded, extra_loss_db, avoided) = kept;
                Link {
                    spec,
                    degraded,
                    extra_loss_db,
                    avoided,
                    rssi_dbm: 0.0,
                    loss: 0.0,
                    rate_mbps: 0.0,
                    airtime_ms: 0.0,
                    propagation_ms: 0.0,
                }
            })
            .collect();
        self.links.sort_by_key(|l| (l.spec.a, l.spec.b));
        self.adjacency = vec![Vec::new(); n];
        for l in 0..self.links.len() {
            self.update_link(l);
            let LinkSpec { a, b, .. } = self.links[l].spec;
            self.adjacency[a as usize].push((b, l as u32));
            self.adjacency[b as usize].push((a, l as u32));
        }
        // Avoided links that went out of range took their directive with them.
        self.directive_count = self.quarantined.iter().filter(|q| **q).count()
            + self.links.iter().filter(|l| l.avoided).count();
    }

    fn update_link(&mut self, l: usize) {
        let radio = &self.cfg.radio;
        let link = &mut self.links[l];
        let penalty = link.extra_loss_db
            + if link.degraded {
                self.cfg.dynamics.degraded_penalty_db
            } else {
                0.0
            };
        let rssi = (link.spec.rssi_dbm - penalty).max(radio::RSSI_MIN_DBM);
        let rate = radio::phy_rate_mbps(rssi);
        link.rssi_dbm = rssi as f32;
        link.loss = radio::frame_loss(radio, rssi) as f32;
        link.rate_mbps = rate as f32;
        link.airtime_ms = radio::transmission_ms(radio, rate) as f32;
        link.propagation_ms = radio::propagation_ms(link.spec.distance_m) as f32;
    }

    /// Rebuilds each node's table: its active neighbours, the `k` strongest by RSSI if it has
    /// more, listed by node id so slots stay stable while the set does. Hop distances are
    /// invalidated only if some table really changed (a degraded link that stays in its
    /// tables changes metrics, not routes).
    fn rebuild_tables(&mut self) {
        let (n, k) = (self.num_nodes(), self.k);
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        let mut changed = self.version == 0;
        let radio = &self.cfg.radio;
        for u in 0..n {
            if !std::mem::take(&mut self.dirty_nodes[u]) {
                continue;
            }
            candidates.clear();
            if self.active[u] {
                candidates.extend(
                    self.adjacency[u]
                        .iter()
                        .filter(|(v, _)| self.active[*v as usize]),
                );
            }
            if candidates.len() > k {
                let links = &self.links;
                candidates.sort_by(|x, y| {
                    links[y.1 as usize]
                        .rssi_dbm
                        .total_cmp(&links[x.1 as usize].rssi_dbm)
                        .then(x.0.cmp(&y.0))
                });
                candidates.truncate(k);
            }
            candidates.sort_unstable();
            for s in 0..k {
                let (v, l) = candidates.get(s).copied().unwrap_or((NO_NEIGHBOR, 0));
                let i = u * k + s;
                changed |= self.table[i] != v;
                self.table[i] = v;
                self.table_link[i] = l;
                if v == NO_NEIGHBOR {
                    self.base_latency_ms[i] = 0.0;
                    self.slot_rate_mbps[i] = 0.0;
                    self.metrics[i] = LinkMetrics::default();
                } else {
                    let link = &self.links[l as usize];
                    let etx = radio::expected_attempts(radio, link.loss as f64) as f32;
                    self.base_latency_ms[i] = link.propagation_ms + etx * link.airtime_ms;
                    self.slot_rate_mbps[i] = link.rate_mbps;
                    self.metrics[i].rssi_dbm = link.rssi_dbm;
                    self.metrics[i].packet_loss = link.loss;
                }
            }
        }
        self.topology_dirty = false;
        if !changed {
            return;
        }
        // Reverse adjacency in CSR form: reverse[reverse_start[v]..reverse_start[v+1]] lists u.
        let mut in_degree = vec![0u32; n];
        for &v in &self.table {
            if v != NO_NEIGHBOR {
                in_degree[v as usize] += 1;
            }
        }
        let mut start = 0u32;
        for v in 0..n {
            self.reverse_start[v] = start;
            start += in_degree[v];
        }
        self.reverse_start[n] = start;
        self.reverse.resize(start as usize, 0);
        let mut fill: Vec<u32> = self.reverse_start[..n].to_vec();
        for u in 0..n {
            for &v in &self.table[u * k..(u + 1) * k] {
                if v != NO_NEIGHBOR {
                    self.reverse[fill[v as usize] as usize] = u as u32;
                    fill[v as usize] += 1;
                }
            }
        }
        self.version += 1;
    }

    /// Updates the queue-dependent metrics of every slot: latency (queueing at the neighbour)
    /// and bandwidth (left over by the sender's queue).
    fn refresh_metrics(&mut self) {
        let k = self.k;
        let full_delay = self.full_queue_delay_ms();
        for u in 0..self.num_nodes() {
            let free = 1.0 - self.queue[u];
            for i in u * k..(u + 1) * k {
                let v = self.table[i];
                if v == NO_NEIGHBOR {
                    continue;
                }
                let m = &mut self.metrics[i];
                m.latency_ms = self.base_latency_ms[i] + self.queue[v as usize] * full_delay;
                m.bandwidth_mbps = self.slot_rate_mbps[i] * free;
            }
        }
    }
}

#[cfg(test)]
mod hop_distance_tests {
    use super::*;

    /// The bit-parallel all-destination distances equal a BFS per destination, on meshes of
    /// up to 64 nodes under churn and link degradation.
    #[test]
    fn bitset_distances_match_bfs() {
        for (n, seed) in [(4, 1), (9, 2), (32, 3), (33, 4), (64, 5)] {
            let mut cfg = TwinConfig::default();
            cfg.topology.num_nodes = n;
            cfg.topology.area_m = 70.0 * (n as f64).sqrt();
            cfg.dynamics.churn = true;
            cfg.dynamics.leave_probability = 0.05;
            cfg.dynamics.join_probability = 0.2;
            cfg.dynamics.link_degradation = true;
            cfg.dynamics.degrade_probability = 0.05;
            let mut twin = Twin::new(&cfg, seed).unwrap();
            for tick in 0..60 {
                // Some destinations fresh before the all-destination pass, some stale.
                twin.refresh_hop_distances(tick % n);
                for t in 0..n {
                    twin.refresh_hop_distances(t);
                }
                let fast: Vec<Vec<u16>> = (0..n)
                    .map(|t| twin.cached_hop_distances(t).to_vec())
                    .collect();
                for (t, fast_t) in fast.iter().enumerate() {
                    twin.bfs_hop_distances(t);
                    let mut bfs = twin.cached_hop_distances(t).to_vec();
                    // A node that joins or leaves without a table changing keeps the tables'
                    // version, so its own entry (0 or unreachable) is as of whenever its row
                    // was computed, in either method; nothing reads it (no table lists it).
                    bfs[t] = fast_t[t];
                    assert_eq!(fast_t, &bfs, "n {n} tick {tick} dest {t}");
                }
                twin.tick();
            }
        }
    }
}

#[cfg(test)]
mod local_traffic_tests {
    use super::*;

    fn crowded(limit: Option<f32>) -> (Twin, usize) {
        let mut cfg = TwinConfig::default();
        cfg.topology.num_nodes = 16;
        let mut twin = Twin::new(&cfg, 3).unwrap();
        let u = 5;
        twin.set_extra_traffic(u, 6.0); // above the 4 packets per tick it serves
        if let Some(l) = limit {
            twin.set_local_queue_limit(u, l);
        }
        for _ in 0..100 {
            twin.tick();
        }
        (twin, u)
    }

    #[test]
    fn own_traffic_fills_the_queue_unless_limited_and_is_counted() {
        let (free, u) = crowded(None);
        assert_eq!(free.queue(u), 1.0);
        let t = free.local_traffic(u);
        assert_eq!(t.offered, 600.0);
        // A queue takes what it serves (4 a tick, from the second tick) plus what it holds.
        let cap = free.config().traffic.queue_capacity_packets;
        assert!((t.admitted - (396.0 + cap)).abs() < 0.01, "{t:?}");
        // Limited to 80 %: the queue stops there, the rest of the crowd waits at the source.
        let (limited, u) = crowded(Some(0.8));
        assert!(
            (limited.queue(u) - 0.8).abs() < 1e-5,
            "{}",
            limited.queue(u)
        );
        let l = limited.local_traffic(u);
        assert_eq!(l.offered, 600.0);
        assert!((l.admitted - (396.0 + 0.8 * cap)).abs() < 0.01, "{l:?}");
        assert_eq!(limited.offered_load(u), 6.0);
        // Other nodes offer nothing here.
        assert_eq!(limited.local_traffic(0), LocalTraffic::default());
    }

    #[test]
    fn a_limited_queue_still_takes_transit() {
        let (mut twin, u) = crowded(Some(0.8));
        let v = (0..twin.num_nodes())
            .find(|&v| v != u && twin.neighbors(v).contains(&(u as u32)))
            .expect("someone lists node 5");
        let slot = twin
            .neighbors(v)
            .iter()
            .position(|&x| x == u as u32)
            .unwrap();
        let dest = (0..twin.num_nodes()).find(|&d| d != u && d != v).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        // 20 % of 50 packets: room for 10 forwarded packets (8 here) before the next tick.
        let mut congested = 0;
        for _ in 0..8 {
            let hop = twin.transmit(v, slot, dest, &mut rng);
            congested += (hop.lost == Some(LossCause::Congestion)) as u32;
        }
        assert_eq!(congested, 0, "room kept for transit");
        // Without the limit, the same transit meets a full queue.
        let (mut full, _) = crowded(None);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let lost = (0..8)
            .filter(|_| full.transmit(v, slot, dest, &mut rng).lost == Some(LossCause::Congestion))
            .count();
        assert!(lost > 0);
        // Bad shares are clamped; NaN lifts the limit.
        twin.set_local_queue_limit(u, 7.0);
        assert_eq!(twin.local_queue_limit(u), 1.0);
        twin.set_local_queue_limit(u, f32::NAN);
        assert_eq!(twin.local_queue_limit(u), 1.0);
        twin.set_local_queue_limit(u, -1.0);
        assert_eq!(twin.local_queue_limit(u), 0.0);
    }
}
