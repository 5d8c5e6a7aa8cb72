//! What the mesh's routing protocol advertises. Every `period` ticks each node floods its link
//! measurements (ETX and latency) and its queue occupancy, as OLSR-ETX and BATMAN do with their
//! periodic messages, and every node computes path metrics to each destination over that
//! snapshot. Between floods the numbers are stale, by exactly the refresh period the `etx`
//! baseline gets, never fresher.

use std::collections::HashMap;

use meshrl_format::link_etx;
use meshrl_twin::Twin;

use crate::paths::CostGraph;

/// Path metrics to one destination over a snapshot, per node (`f32::INFINITY`: no route).
#[derive(Clone, Debug)]
pub struct PathMetrics {
    /// Least expected transmissions to the destination.
    pub etx: Vec<f32>,
    /// Least latency to the destination, ms.
    pub latency_ms: Vec<f32>,
}

/// One twin's advertised routing state.
#[derive(Clone, Debug)]
pub struct Adverts {
    period: u64,
    tick: Option<u64>,
    etx: CostGraph,
    latency: CostGraph,
    queue: Vec<f32>,
    to_dest: HashMap<u32, PathMetrics>,
}

impl Adverts {
    /// Advertisements refreshed every `period` ticks (at least 1).
    pub fn new(period: u64) -> Adverts {
        Adverts {
            period: period.max(1),
            tick: None,
            etx: CostGraph::default(),
            latency: CostGraph::default(),
            queue: Vec::new(),
            to_dest: HashMap::new(),
        }
    }

    /// Takes a new snapshot of `twin` if the last one is `period` ticks old (or there is none).
    pub fn refresh(&mut self, twin: &Twin) {
        let now = twin.ticks();
        if self.tick.is_some_and(|t| now < t + self.period) {
            return;
        }
        self.tick = Some(now);
        self.etx = CostGraph::new(twin, |u, s| {
            link_etx(twin.link_metrics(u)[s].packet_loss) as f64
        });
        self.latency = CostGraph::new(twin, |u, s| twin.link_metrics(u)[s].latency_ms as f64);
        self.queue.clear();
        self.queue
            .extend((0..twin.num_nodes()).map(|u| twin.queue(u)));
        self.to_dest.clear();
    }

    /// Tick of the current snapshot.
    pub fn snapshot_tick(&self) -> Option<u64> {
        self.tick
    }

    /// Path metrics from every node to `dest` over the current snapshot (computed on first
    /// use after each refresh).
    pub fn to_destination(&mut self, dest: usize) -> &PathMetrics {
        self.compute(dest);
        &self.to_dest[&(dest as u32)]
    }

    /// Computes the path metrics to `dest` if this snapshot has none yet.
    pub fn compute(&mut self, dest: usize) {
        let (etx, latency) = (&self.etx, &self.latency);
        self.to_dest.entry(dest as u32).or_insert_with(|| {
            let f = |d: Vec<f64>| d.into_iter().map(|x| x as f32).collect();
            PathMetrics {
                etx: f(etx.distances_to(dest, |_| 0.0)),
                latency_ms: f(latency.distances_to(dest, |_| 0.0)),
            }
        });
    }

    /// Path metrics to `dest` if [`Adverts::compute`] ran for it since the last refresh.
    pub fn computed(&self, dest: usize) -> Option<&PathMetrics> {
        self.to_dest.get(&(dest as u32))
    }

    /// Queue occupancy node `u` advertised in the current snapshot.
    pub fn queue(&self, u: usize) -> f32 {
        self.queue.get(u).copied().unwrap_or(0.0)
    }
}
