//! The federation's own messages over the twin's mesh: each crosses the ETX-shortest path
//! between the coordinator and a worker's node, frame by frame, with the links' loss, rate and
//! latency, so stragglers and lost updates come from the network the routers run on.

use meshrl_env::paths::CostGraph;
use meshrl_env::twin::{Twin, NO_NEIGHBOR};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Normal};

use crate::config::NetworkConfig;

/// One link of a route, as the twin reports it when the round starts.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Link {
    /// Probability one frame is lost.
    loss: f64,
    /// Rate, Mbps.
    mbps: f64,
    /// Propagation and queueing delay, ms.
    latency_ms: f64,
}

/// A path of links; empty for the coordinator's own node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    links: Vec<Link>,
}

impl Route {
    /// Hops on the route.
    pub fn hops(&self) -> usize {
        self.links.len()
    }
}

/// Routes between the coordinator and every node, snapshotted at the start of a round.
#[derive(Clone, Debug)]
pub struct Network {
    /// Node → coordinator (`None`: unreachable).
    up: Vec<Option<Route>>,
    /// Coordinator → node.
    down: Vec<Option<Route>>,
    mtu: usize,
    retries: u32,
    jitter: f64,
}

/// Which way a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToCoordinator,
    FromCoordinator,
}

/// The route from `from` to `to` following least ETX (`dist` = distances to `to`).
fn walk(graph: &CostGraph, twin: &Twin, dist: &[f64], from: usize, to: usize) -> Option<Route> {
    if !dist[from].is_finite() {
        return None;
    }
    let mut links = Vec::new();
    let mut u = from;
    while u != to {
        let k = twin.max_neighbors();
        let (s, _) = (0..k)
            .filter(|&s| graph.neighbor(u, s) != NO_NEIGHBOR)
            .map(|s| (s, graph.cost(u, s) + dist[graph.neighbor(u, s) as usize]))
            .filter(|(_, c)| c.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        let m = &twin.link_metrics(u)[s];
        links.push(Link {
            loss: (m.packet_loss as f64).clamp(0.0, 0.99),
            mbps: (m.bandwidth_mbps as f64).max(0.1),
            latency_ms: m.latency_ms.max(0.0) as f64,
        });
        u = graph.neighbor(u, s) as usize;
        if links.len() > twin.num_nodes() {
            return None;
        }
    }
    Some(Route { links })
}

impl Network {
    /// Snapshots the routes between `coordinator` and every node of `twin`. Links to or from
    /// a node that is down are unusable.
    pub fn snapshot(twin: &Twin, coordinator: usize, cfg: &NetworkConfig) -> Network {
        let n = twin.num_nodes();
        let graph = CostGraph::new(twin, |u, s| {
            let v = twin.neighbors(u)[s] as usize;
            if twin.is_active(u) && twin.is_active(v) {
                meshrl_format::link_etx(twin.link_metrics(u)[s].packet_loss) as f64
            } else {
                f64::INFINITY
            }
        });
        let up_dist = graph.distances_to(coordinator, |_| 0.0);
        let coordinator_up = twin.is_active(coordinator);
        let mut up = Vec::with_capacity(n);
        let mut down = Vec::with_capacity(n);
        for v in 0..n {
            if !coordinator_up || !twin.is_active(v) {
                up.push(None);
                down.push(None);
                continue;
            }
            up.push(walk(&graph, twin, &up_dist, v, coordinator));
            let dist = graph.distances_to(v, |_| 0.0);
            down.push(walk(&graph, twin, &dist, coordinator, v));
        }
        Network {
            up,
            down,
            mtu: cfg.mtu_bytes,
            retries: cfg.mac_retries,
            jitter: cfg.jitter,
        }
    }

    /// The route a message between `node` and the coordinator takes, if any.
    pub fn route(&self, node: usize, dir: Direction) -> Option<&Route> {
        match dir {
            Direction::ToCoordinator => self.up[node].as_ref(),
            Direction::FromCoordinator => self.down[node].as_ref(),
        }
    }

    /// Sends `bytes` between `node` and the coordinator: every frame is retransmitted on each
    /// hop until it gets through or its link-layer retries run out (the message is then lost:
    /// `None`). Returns the delivery delay, seconds.
    pub fn send<R: Rng>(&self, node: usize, dir: Direction, bytes: usize, rng: &mut R) -> Option<f64> {
        let route = self.route(node, dir)?;
        let frames = bytes.div_ceil(self.mtu).max(1);
        let mut ms = 0.0;
        for link in &route.links {
            let airtime_ms = (self.mtu * 8) as f64 / (link.mbps * 1000.0);
            let mut attempts = 0u64;
            for _ in 0..frames {
                let mut sent = false;
                for _ in 0..=self.retries {
                    attempts += 1;
                    if rng.random::<f64>() >= link.loss {
                        sent = true;
                        break;
                    }
                }
                if !sent {
                    return None;
                }
            }
            ms += link.latency_ms + attempts as f64 * airtime_ms;
        }
        if self.jitter > 0.0 {
            let z: f64 = Normal::new(0.0, self.jitter).expect("jitter validated").sample(rng);
            ms *= z.exp();
        }
        Some(ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshrl_env::EnvConfig;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn twin() -> Twin {
        let mut cfg = EnvConfig::default();
        cfg.topology.num_nodes = 20;
        Twin::new(&cfg.twin_config(), 3).unwrap()
    }

    #[test]
    fn routes_reach_the_coordinator_and_bigger_messages_take_longer() {
        let t = twin();
        let net = Network::snapshot(&t, 0, &NetworkConfig { jitter: 0.0, ..Default::default() });
        assert_eq!(net.route(0, Direction::ToCoordinator).unwrap().hops(), 0);
        let far = (1..20).max_by_key(|&v| net.route(v, Direction::ToCoordinator).map_or(0, Route::hops)).unwrap();
        assert!(net.route(far, Direction::ToCoordinator).unwrap().hops() >= 2);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let (mut small, mut big) = (0.0, 0.0);
        for _ in 0..200 {
            small += net.send(far, Direction::FromCoordinator, 100, &mut rng).unwrap_or(0.0);
            big += net.send(far, Direction::FromCoordinator, 100_000, &mut rng).unwrap_or(0.0);
        }
        assert!(big > 10.0 * small, "100 kB took {big} s, 100 B {small} s");
    }

    #[test]
    fn a_node_that_is_down_is_unreachable() {
        let mut t = twin();
        let net = Network::snapshot(&t, 0, &NetworkConfig::default());
        assert!(net.route(5, Direction::ToCoordinator).is_some());
        t.set_active(5, false);
        let net = Network::snapshot(&t, 0, &NetworkConfig::default());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        assert!(net.send(5, Direction::ToCoordinator, 10, &mut rng).is_none());
        assert!(net.send(5, Direction::FromCoordinator, 10, &mut rng).is_none());
    }
}
