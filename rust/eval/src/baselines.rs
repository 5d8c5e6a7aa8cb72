//! Routing baselines behind one interface with trained agents: observation + mask + the twin
//! (what a routing protocol on the node could know) → next-hop slot.
//!
//! | name | rule |
//! |---|---|
//! | `random` | a uniformly random valid next hop |
//! | `shortest_path` | fewest hops to the destination (distance vector) |
//! | `etx` | least expected transmissions, `Σ 1 / (1 − loss)`, from link measurements refreshed every `refresh_ticks` (stale in between, as OLSR-ETX / BATMAN probes) |
//! | `etx_trust` | ETX with each relay's estimated forwarding probability (its trust score) folded into its outgoing link: `Σ 1 / ((1 − loss) · trust(relay))`, same refresh |
//! | `latency` | least measured latency, same refresh |
//! | `greedy_rssi` | the neighbour with the strongest signal |
//! | `greedy_hops` | fewest hops, ties by strongest signal |
//! | `backpressure` | backpressure (Tassiulas & Ephremides 1992) with a shortest-path bias: the neighbour maximising `(Q(u) − Q(v) + bias · (hops(u) − hops(v))) · rate` |
//! | `q_routing` | Q-routing (Boyan & Littman 1993), learning delivery-time estimates online |
//! | `oracle` | most reliable path over the *true* current state, untrusted drops and full queues included: an upper bound, not a protocol |

use std::collections::HashMap;

use meshrl_env::twin::{Twin, NO_NEIGHBOR, UNREACHABLE};
use meshrl_env::StepInfo;

use crate::paths::CostGraph;

/// What a router sees for one decision.
pub struct Decision<'a> {
    /// Environment index in the batch.
    pub env: usize,
    /// The environment's observation and valid-action mask.
    pub obs: &'a [f32],
    pub mask: &'a [i8],
    /// Node holding the packet and its destination.
    pub node: usize,
    pub dest: usize,
    /// Episode index and hops taken so far (a seed for randomized routers).
    pub episode: u64,
    pub hops: u32,
}

impl<'a> Decision<'a> {
    /// Environment `i`'s decision in a step's buffers.
    pub fn of(b: &'a meshrl_env::StepBuffers, i: usize, obs_dim: usize, num_actions: usize) -> Self {
        let info = &b.info[i];
        Decision {
            env: i,
            obs: &b.obs[i * obs_dim..(i + 1) * obs_dim],
            mask: &b.mask[i * num_actions..(i + 1) * num_actions],
            node: info.node as usize,
            dest: info.destination as usize,
            episode: info.episode,
            hops: info.path_length,
        }
    }
}

/// A routing policy. Twins are addressed by index (environment `i` lives on twin
/// `i / envs_per_twin`), so routers keep per-twin protocol state.
pub trait Router: Send {
    /// Name in reports (`baseline:etx`, ...).
    fn name(&self) -> String;
    /// Forgets all per-twin state (called when evaluation starts on new twins).
    fn reset(&mut self) {}
    /// Picks the neighbour slot for one packet; must be a slot whose mask is 1.
    fn next_hop(&mut self, twin_index: usize, twin: &Twin, d: &Decision<'_>) -> usize;
    /// Feedback after the packet moved from `from` through `slot`: the step's info and the hop's
    /// latency (ms). Learning routers update here.
    fn feedback(
        &mut self,
        _twin_index: usize,
        _twin: &Twin,
        _from: usize,
        _slot: usize,
        _dest: usize,
        _info: &StepInfo,
        _hop_ms: f32,
    ) {
    }
    /// Sets a tunable parameter by name (a control loop's "tune the routers" directive);
    /// false if the router has none of that name or the value is out of range.
    fn set_parameter(&mut self, _name: &str, _value: f64) -> bool {
        false
    }
}

/// The valid slot with the lowest `score`, ties to the lowest slot.
fn best_slot(mask: &[i8], mut score: impl FnMut(usize) -> f64) -> usize {
    let mut best = (f64::INFINITY, usize::MAX);
    for (s, &m) in mask.iter().enumerate() {
        if m != 0 {
            let v = score(s);
            if best.1 == usize::MAX || v < best.0 {
                best = (v, s);
            }
        }
    }
    if best.1 == usize::MAX {
        0
    } else {
        best.1
    }
}

/// A uniformly random valid next hop, drawn from a hash of (seed, env, episode, hop) so runs
/// repeat exactly.
pub struct RandomRouter {
    pub seed: u64,
}

impl Router for RandomRouter {
    fn name(&self) -> String {
        "baseline:random".into()
    }
    fn next_hop(&mut self, _t: usize, _twin: &Twin, d: &Decision<'_>) -> usize {
        let valid: Vec<usize> = (0..d.mask.len()).filter(|&s| d.mask[s] != 0).collect();
        if valid.is_empty() {
            return 0;
        }
        let h = meshrl_env::episode_seed(
            self.seed ^ (d.env as u64).rotate_left(32),
            d.episode.wrapping_mul(1 << 20) + d.hops as u64,
        );
        valid[(h % valid.len() as u64) as usize]
    }
}

/// Fewest hops to the destination over the current tables (a distance-vector protocol).
pub struct ShortestPathRouter;

impl Router for ShortestPathRouter {
    fn name(&self) -> String {
        "baseline:shortest_path".into()
    }
    fn next_hop(&mut self, _t: usize, twin: &Twin, d: &Decision<'_>) -> usize {
        let hops = twin.cached_hop_distances(d.dest);
        let nbrs = twin.neighbors(d.node);
        best_slot(d.mask, |s| hops[nbrs[s] as usize] as f64)
    }
}

/// Greedy on local measurements only.
pub struct GreedyRouter {
    /// Fewest hops first, then strongest RSSI; otherwise strongest RSSI alone.
    pub hops_first: bool,
}

impl Router for GreedyRouter {
    fn name(&self) -> String {
        if self.hops_first {
            "baseline:greedy_hops".into()
        } else {
            "baseline:greedy_rssi".into()
        }
    }
    fn next_hop(&mut self, _t: usize, twin: &Twin, d: &Decision<'_>) -> usize {
        let nbrs = twin.neighbors(d.node);
        let metrics = twin.link_metrics(d.node);
        if self.hops_first {
            let hops = twin.cached_hop_distances(d.dest);
            best_slot(d.mask, |s| {
                hops[nbrs[s] as usize] as f64 * 1000.0 - metrics[s].rssi_dbm as f64
            })
        } else {
            best_slot(d.mask, |s| {
                if nbrs[s] as usize == d.dest {
                    f64::NEG_INFINITY
                } else {
                    -(metrics[s].rssi_dbm as f64)
                }
            })
        }
    }
}

/// Link-state routing on measured link costs, refreshed every `refresh_ticks` ticks (the
/// protocol's probe/advertisement interval), so decisions use stale estimates in between.
///
/// A control loop's directives on the twin are flooded at once (a triggered update): when
/// they change the router takes a new snapshot, in which a quarantined relay and an avoided
/// link cost [`LinkStateRouter::AVOID_COST`] more (a last resort, never a dead end).
/// Tunable ([`Router::set_parameter`]): `refresh_ticks` and `queue_weight`, the cost added
/// per relay for its advertised queue occupancy (0..1), 0 by default (queue-blind, as
/// OLSR-ETX).
pub struct LinkStateRouter {
    metric: LinkMetric,
    pub refresh_ticks: u64,
    pub queue_weight: f64,
    state: HashMap<usize, LinkState>,
}

/// What a [`LinkStateRouter`] minimises along a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMetric {
    /// Expected transmissions, `1 / (1 − frame loss)`.
    Etx,
    /// Expected transmissions with the sender's estimated forwarding probability folded into
    /// the link's delivery ratio, `1 / ((1 − frame loss) · max(trust(sender), MIN_TRUST))`:
    /// a relay that drops half of what it should forward doubles the cost of the hop after it.
    /// The node holding the packet already has it, so its own first hop is plain ETX, and the
    /// destination never sends, so it is never penalised.
    EtxTrust,
    /// Measured one-way latency, ms.
    Latency,
}

impl LinkMetric {
    /// Floor on the trust score in [`LinkMetric::EtxTrust`]: a relay believed to drop
    /// everything costs at most 20× its link's ETX, so it stays usable as a last resort.
    pub const MIN_TRUST: f64 = 0.05;

    /// Cost of `u`'s slot `s` as measured now, without the sender factor.
    fn link_cost(self, twin: &Twin, u: usize, s: usize) -> f64 {
        let m = twin.link_metrics(u)[s];
        match self {
            LinkMetric::Etx | LinkMetric::EtxTrust => etx(m.packet_loss as f64),
            LinkMetric::Latency => m.latency_ms as f64,
        }
    }

    /// Factor on every link `u` sends over when `u` relays (1 unless the metric uses trust).
    fn sender_factor(self, twin: &Twin, u: usize) -> f64 {
        match self {
            LinkMetric::EtxTrust => 1.0 / (twin.trust(u) as f64).max(Self::MIN_TRUST),
            LinkMetric::Etx | LinkMetric::Latency => 1.0,
        }
    }
}

struct LinkState {
    snapshot_tick: u64,
    /// Link costs as advertised, the sender factor included (what relays' paths cost).
    graph: CostGraph,
    /// Each node's sender factor in the snapshot, to take it off the holder's own first hop.
    sender_factor: Vec<f64>,
    /// Cost of passing through each node as a relay: directives and queue weight.
    relay_cost: Vec<f64>,
    directives_version: u64,
    to_dest: HashMap<usize, Vec<f64>>,
}

impl LinkStateRouter {
    /// Extra cost of a quarantined relay or an avoided link, in the metric's units.
    pub const AVOID_COST: f64 = 1e4;

    pub fn new(metric: LinkMetric, refresh_ticks: u64) -> Self {
        LinkStateRouter {
            metric,
            refresh_ticks: refresh_ticks.max(1),
            queue_weight: 0.0,
            state: HashMap::new(),
        }
    }
}

impl Router for LinkStateRouter {
    fn reset(&mut self) {
        self.state.clear();
    }
    fn set_parameter(&mut self, name: &str, value: f64) -> bool {
        match name {
            "refresh_ticks" if value >= 1.0 && value.is_finite() => {
                self.refresh_ticks = value as u64;
                true
            }
            "queue_weight" if value >= 0.0 && value.is_finite() => {
                self.queue_weight = value;
                // Re-plan at the next decision with the new weight.
                self.state.clear();
                true
            }
            _ => false,
        }
    }
    fn name(&self) -> String {
        match self.metric {
            LinkMetric::Etx => "baseline:etx".into(),
            LinkMetric::EtxTrust => "baseline:etx_trust".into(),
            LinkMetric::Latency => "baseline:latency".into(),
        }
    }
    fn next_hop(&mut self, t: usize, twin: &Twin, d: &Decision<'_>) -> usize {
        let metric = self.metric;
        let stale = |st: &LinkState| {
            twin.ticks() >= st.snapshot_tick + self.refresh_ticks
                || st.directives_version != twin.directives_version()
        };
        let refresh = self.state.get(&t).is_none_or(stale);
        if refresh {
            let sender_factor: Vec<f64> = (0..twin.num_nodes())
                .map(|u| metric.sender_factor(twin, u))
                .collect();
            let directives = twin.has_directives();
            let graph = CostGraph::new(twin, |u, s| {
                let avoid = if directives && twin.is_slot_link_avoided(u, s) {
                    Self::AVOID_COST
                } else {
                    0.0
                };
                metric.link_cost(twin, u, s) * sender_factor[u] + avoid
            });
            let relay_cost = (0..twin.num_nodes())
                .map(|v| {
                    let q = if self.queue_weight != 0.0 {
                        self.queue_weight * twin.queue(v) as f64
                    } else {
                        0.0
                    };
                    q + if twin.is_quarantined(v) {
                        Self::AVOID_COST
                    } else {
                        0.0
                    }
                })
                .collect();
            self.state.insert(
                t,
                LinkState {
                    snapshot_tick: twin.ticks(),
                    graph,
                    sender_factor,
                    relay_cost,
                    directives_version: twin.directives_version(),
                    to_dest: HashMap::new(),
                },
            );
        }
        let st = self.state.get_mut(&t).expect("state inserted above");
        let relay_cost = &st.relay_cost;
        let dist = st
            .to_dest
            .entry(d.dest)
            .or_insert_with(|| st.graph.distances_to(d.dest, |v| relay_cost[v]));
        let nbrs = twin.neighbors(d.node);
        best_slot(d.mask, |s| {
            let v = nbrs[s] as usize;
            // The link as advertised in the snapshot if it was there, else as measured now.
            let cost = (0..twin.max_neighbors())
                .find(|&x| st.graph.neighbor(d.node, x) as usize == v)
                .map(|x| st.graph.cost(d.node, x) / st.sender_factor[d.node])
                .unwrap_or_else(|| metric.link_cost(twin, d.node, s));
            let relay = if v == d.dest { 0.0 } else { relay_cost[v] };
            cost + dist[v] + relay
        })
    }
}

/// Backpressure routing (Tassiulas & Ephremides 1992) with a shortest-path bias (Neely's
/// "enhanced backpressure"): at node `u` the packet goes to the neighbour `v` maximising
///
/// `w(v) = (Q(u) − Q(v) + hop_bias · (h(u) − h(v))) · rate(u, v)`
///
/// with `Q` the queue occupancy (0..1; the destination absorbs, so `Q(d) = 0`), `h` hops to
/// the destination as the distance-vector tables advertise them, and `rate` the link's
/// goodput, `bandwidth · (1 − frame loss)` in Mbps. Pure backpressure wanders and loops at
/// low load (all queues near empty, nothing pulls the packet towards the destination); the
/// hop term makes the empty network route on shortest paths, ties to the fastest link, and
/// lets queues divert traffic once they differ by more than `hop_bias` per hop saved.
/// The environment has no "hold" action, so when no weight is positive (classic
/// backpressure would wait) the packet still goes to the neighbour with the largest
/// differential, ties to the faster link.
pub struct BackpressureRouter {
    /// Queue occupancy one hop closer to the destination is worth (0..1 = empty..full queue).
    pub hop_bias: f64,
}

impl Default for BackpressureRouter {
    /// `hop_bias = 1`: one hop closer is worth a full queue of difference. Swept over
    /// 0.1–2 on `configs/eval/` static, congestion, lossy and churn (3072 packets, 96 in
    /// flight): at 0.1 packets wander (TTL losses; 0.45 delivered on congestion), at 2 queues
    /// matter less (0.67); 0.5 and 1 both deliver 0.69 on congestion (ETX: 0.63, shortest
    /// path: 0.54), 1 with a lower latency and fewer TTL losses on lossy links. With all 128
    /// packets in flight the three settings are within 0.01 (0.58, ETX 0.56).
    fn default() -> Self {
        BackpressureRouter { hop_bias: 1.0 }
    }
}

impl BackpressureRouter {
    /// Hops standing in for "unreachable": one more than any real distance.
    fn hops(h: u16, n: usize) -> f64 {
        if h == UNREACHABLE {
            n as f64
        } else {
            h as f64
        }
    }
}

impl Router for BackpressureRouter {
    fn name(&self) -> String {
        "baseline:backpressure".into()
    }
    fn next_hop(&mut self, _t: usize, twin: &Twin, d: &Decision<'_>) -> usize {
        let n = twin.num_nodes();
        let hops = twin.cached_hop_distances(d.dest);
        let nbrs = twin.neighbors(d.node);
        let metrics = twin.link_metrics(d.node);
        let queue = |x: usize| {
            if x == d.dest {
                0.0
            } else {
                twin.queue(x) as f64
            }
        };
        let (q_u, h_u) = (queue(d.node), Self::hops(hops[d.node], n));
        let differential = |s: usize| {
            let v = nbrs[s] as usize;
            q_u - queue(v) + self.hop_bias * (h_u - Self::hops(hops[v], n))
        };
        let rate = |s: usize| {
            let m = metrics[s];
            m.bandwidth_mbps as f64 * (1.0 - m.packet_loss as f64)
        };
        let best = (0..d.mask.len())
            .filter(|&s| d.mask[s] != 0)
            .map(differential)
            .fold(f64::NEG_INFINITY, f64::max);
        if best > 0.0 {
            best_slot(d.mask, |s| -(differential(s).max(0.0) * rate(s)))
        } else {
            // Nothing worth sending: the largest differential anyway, ties to the faster link.
            let ties: Vec<i8> = (0..d.mask.len())
                .map(|s| (d.mask[s] != 0 && differential(s) >= best - 1e-9) as i8)
                .collect();
            best_slot(&ties, |s| -rate(s))
        }
    }
}

/// Q-routing (Boyan & Littman 1993): each node `x` keeps `Q_x(d, y)`, its estimate of the time
/// to deliver to `d` through neighbour `y`, sends greedily on it, and after each hop moves the
/// estimate towards `hop_latency + min_z Q_y(d, z)` with rate `learning_rate`. A loss counts as
/// `loss_penalty_ms`. Estimates start at `(hops(y, d) + 1) × init_hop_ms`.
pub struct QRoutingRouter {
    pub learning_rate: f64,
    pub loss_penalty_ms: f64,
    pub init_hop_ms: f64,
    tables: HashMap<usize, QTable>,
}

struct QTable {
    n: usize,
    k: usize,
    /// `q[(x * n + d) * k + slot]`; NaN = not yet initialized for the slot's current neighbour.
    q: Vec<f32>,
    /// Neighbour each slot's estimates belong to.
    owner: Vec<u32>,
}

impl Default for QRoutingRouter {
    fn default() -> Self {
        QRoutingRouter {
            learning_rate: 0.5,
            loss_penalty_ms: 500.0,
            init_hop_ms: 10.0,
            tables: HashMap::new(),
        }
    }
}

impl QRoutingRouter {
    fn table<'a>(tables: &'a mut HashMap<usize, QTable>, t: usize, twin: &Twin) -> &'a mut QTable {
        let (n, k) = (twin.num_nodes(), twin.max_neighbors());
        tables.entry(t).or_insert_with(|| QTable {
            n,
            k,
            q: vec![f32::NAN; n * n * k],
            owner: vec![NO_NEIGHBOR; n * k],
        })
    }

    fn estimate(&self, qt: &mut QTable, twin: &Twin, x: usize, d: usize, s: usize) -> f64 {
        let v = twin.neighbors(x)[s];
        let (n, k) = (qt.n, qt.k);
        if qt.owner[x * k + s] != v {
            // A new neighbour in this slot: forget what the slot learned.
            qt.owner[x * k + s] = v;
            for dd in 0..n {
                qt.q[(x * n + dd) * k + s] = f32::NAN;
            }
        }
        let i = (x * n + d) * k + s;
        if qt.q[i].is_nan() {
            let hops = twin.cached_hop_distances(d)[v as usize];
            let h = if hops == UNREACHABLE {
                64.0
            } else {
                hops as f64
            };
            qt.q[i] = ((h + 1.0) * self.init_hop_ms) as f32;
        }
        qt.q[i] as f64
    }
}

impl Router for QRoutingRouter {
    fn reset(&mut self) {
        self.tables.clear();
    }
    fn name(&self) -> String {
        "baseline:q_routing".into()
    }
    fn next_hop(&mut self, t: usize, twin: &Twin, d: &Decision<'_>) -> usize {
        let mut tables = std::mem::take(&mut self.tables);
        let qt = Self::table(&mut tables, t, twin);
        let s = best_slot(d.mask, |s| self.estimate(qt, twin, d.node, d.dest, s));
        self.tables = tables;
        s
    }
    fn feedback(
        &mut self,
        t: usize,
        twin: &Twin,
        from: usize,
        slot: usize,
        dest: usize,
        info: &StepInfo,
        hop_ms: f32,
    ) {
        if info.reset || twin.neighbors(from)[slot] == NO_NEIGHBOR {
            return;
        }
        let mut tables = std::mem::take(&mut self.tables);
        let qt = Self::table(&mut tables, t, twin);
        let y = twin.neighbors(from)[slot] as usize;
        let target = if info.outcome == meshrl_env::Outcome::Lost {
            self.loss_penalty_ms
        } else if y == dest {
            hop_ms as f64
        } else {
            let rest = (0..qt.k)
                .filter(|&z| twin.neighbors(y)[z] != NO_NEIGHBOR)
                .map(|z| self.estimate(qt, twin, y, dest, z))
                .fold(f64::INFINITY, f64::min);
            hop_ms as f64
                + if rest.is_finite() {
                    rest
                } else {
                    self.loss_penalty_ms
                }
        };
        let old = self.estimate(qt, twin, from, dest, slot);
        qt.q[(from * qt.n + dest) * qt.k + slot] =
            (old + self.learning_rate * (target - old)) as f32;
        self.tables = tables;
    }
}

/// The most reliable path over the true current state: per hop the probability of surviving
/// every MAC attempt and the relay's hidden drop probability, plus `HOP_COST` per hop so that
/// among equally reliable paths it takes the shortest. An upper bound on what routing can
/// achieve on delivery, labelled as such in reports; no real node knows this. Queues are left
/// out on purpose: chasing their tick-by-tick state makes routes flap and loop.
#[derive(Default)]
pub struct OracleRouter {
    cache: HashMap<(usize, usize), (u64, u64, Vec<f64>)>,
}

impl OracleRouter {
    /// Cost of one hop, the −log of a 0.1 % delivery chance: ties go to fewer hops.
    const HOP_COST: f64 = 1e-3;

    fn link_cost(twin: &Twin, u: usize, s: usize) -> f64 {
        let p = 1.0 - twin.hop_loss_probability(u, s);
        Self::HOP_COST + if p <= 0.0 { 1e6 } else { -p.ln() }
    }
    fn relay_cost(twin: &Twin, v: usize) -> f64 {
        let keep = 1.0 - twin.drop_probability(v);
        if keep <= 0.0 {
            1e6
        } else {
            -keep.ln()
        }
    }
}

impl Router for OracleRouter {
    fn reset(&mut self) {
        self.cache.clear();
    }
    fn name(&self) -> String {
        "oracle (upper bound)".into()
    }
    fn next_hop(&mut self, t: usize, twin: &Twin, d: &Decision<'_>) -> usize {
        let key = (t, d.dest);
        let now = (twin.ticks(), twin.topology_version());
        let fresh = matches!(self.cache.get(&key), Some((tick, ver, _)) if (*tick, *ver) == now);
        if !fresh {
            let graph = CostGraph::new(twin, |u, s| Self::link_cost(twin, u, s));
            let dist = graph.distances_to(d.dest, |v| Self::relay_cost(twin, v));
            self.cache.insert(key, (now.0, now.1, dist));
        }
        let dist = &self.cache[&key].2;
        let nbrs = twin.neighbors(d.node);
        best_slot(d.mask, |s| {
            let v = nbrs[s] as usize;
            let relay = if v == d.dest {
                0.0
            } else {
                Self::relay_cost(twin, v)
            };
            Self::link_cost(twin, d.node, s) + relay + dist[v]
        })
    }
}

/// Expected transmissions of a link with frame loss `loss`, for reports and tests.
pub fn etx(loss: f64) -> f64 {
    1.0 / (1.0 - loss.min(0.999))
}

/// Builds a baseline from its name (`random`, `shortest_path`, `etx`, `etx_trust`, `latency`,
/// `greedy_rssi`, `greedy_hops`, `backpressure`, `q_routing`, `oracle`).
pub fn baseline(name: &str, seed: u64) -> Option<Box<dyn Router>> {
    Some(match name {
        "random" => Box::new(RandomRouter { seed }),
        "shortest_path" | "hop_count" => Box::new(ShortestPathRouter),
        "etx" => Box::new(LinkStateRouter::new(LinkMetric::Etx, 10)),
        "etx_trust" => Box::new(LinkStateRouter::new(LinkMetric::EtxTrust, 10)),
        "latency" => Box::new(LinkStateRouter::new(LinkMetric::Latency, 10)),
        "greedy_rssi" => Box::new(GreedyRouter { hops_first: false }),
        "greedy_hops" => Box::new(GreedyRouter { hops_first: true }),
        "backpressure" => Box::new(BackpressureRouter::default()),
        "q_routing" => Box::new(QRoutingRouter::default()),
        "oracle" => Box::new(OracleRouter::default()),
        _ => return None,
    })
}

/// Names `baseline` accepts.
pub const BASELINES: [&str; 10] = [
    "random",
    "shortest_path",
    "etx",
    "etx_trust",
    "latency",
    "greedy_rssi",
    "greedy_hops",
    "backpressure",
    "q_routing",
    "oracle",
];
