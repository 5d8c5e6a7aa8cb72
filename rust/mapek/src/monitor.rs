//! Monitor: what every node measures each tick, and the window of features the detectors read.
//!
//! Each tick the monitor snapshots, per node, its neighbours' forwarding as overheard
//! (cumulative counts, see [`Overheard`]), its queue occupancy and whether it is up, and per
//! neighbour-table slot the neighbour, the link's frame loss and RSSI. A node's features about
//! one neighbour compare the newest snapshot with the one `window` ticks older (and, for the
//! long forwarding ratio, `4 × window` older).

use std::collections::VecDeque;

use meshrl_env::twin::{Overheard, Twin, NO_NEIGHBOR};

/// Features per (node, neighbour) pair.
pub const FEATURES: usize = 12;

/// What each feature is, in order (all roughly in 0..1).
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "forwarding_ratio",    // (forwarded + 1) / (forwarded + dropped + 2) in the window
    "forwarding_evidence", // ln(1 + overheard decisions in the window) / ln(65), at most 1
    "delayed_fraction",    // held-back forwards / (forwarded + 1) in the window
    "forwarding_ratio_long", // the ratio over 4 windows
    "neighbor_queue",      // the neighbour's queue occupancy now
    "neighbor_queue_mean", // its mean over the window
    "link_loss",           // frame loss of the link now
    "link_loss_trend",     // loss now minus loss a window ago
    "rssi",                // (RSSI + 95 dBm) / 60 dB
    "rssi_trend",          // (RSSI now - RSSI a window ago) / 20 dB
    "neighbor_churn",      // slot changes in the node's table over the window / slots
    "neighbor_age",        // ticks the neighbour has been in the table / window, at most 1
];

#[derive(Clone, Debug)]
struct Snapshot {
    tick: u64,
    overheard: Vec<Overheard>,
    queue: Vec<f32>,
    active: Vec<bool>,
    neighbors: Vec<u32>,
    loss: Vec<f32>,
    rssi: Vec<f32>,
    /// Slots of each node's table that changed since the previous snapshot.
    changes: Vec<u8>,
}

/// One node's features about one neighbour, at the monitor's newest tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub observer: u32,
    pub slot: u32,
    pub neighbor: u32,
    pub features: [f32; FEATURES],
}

/// The per-node streams of one twin over the last `4 × window + 1` ticks.
#[derive(Clone, Debug)]
pub struct Monitor {
    window: usize,
    n: usize,
    k: usize,
    history: VecDeque<Snapshot>,
}

impl Monitor {
    /// A monitor with a feature window of `window` ticks (at least 1).
    pub fn new(window: usize) -> Self {
        Monitor {
            window: window.max(1),
            n: 0,
            k: 0,
            history: VecDeque::new(),
        }
    }

    /// Feature window, ticks.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Tick of the newest snapshot.
    pub fn tick(&self) -> Option<u64> {
        self.history.back().map(|s| s.tick)
    }

    /// Records the twin's state now.
    pub fn record(&mut self, twin: &Twin) {
        let (n, k) = (twin.num_nodes(), twin.max_neighbors());
        if (n, k) != (self.n, self.k) {
            self.history.clear();
            (self.n, self.k) = (n, k);
        }
        let mut snap = match self.history.len() > 4 * self.window {
            true => self.history.pop_front().expect("non-empty"),
            false => Snapshot {
                tick: 0,
                overheard: Vec::with_capacity(n),
                queue: Vec::with_capacity(n),
                active: Vec::with_capacity(n),
                neighbors: Vec::with_capacity(n * k),
                loss: Vec::with_capacity(n * k),
                rssi: Vec::with_capacity(n * k),
                changes: Vec::with_capacity(n),
            },
        };
        snap.tick = twin.ticks();
        snap.overheard.clear();
        snap.queue.clear();
        snap.active.clear();
        snap.neighbors.clear();
        snap.loss.clear();
        snap.rssi.clear();
        snap.changes.clear();
        for u in 0..n {
            snap.overheard.push(twin.overheard(u));
            snap.queue.push(twin.queue(u));
            snap.active.push(twin.is_active(u));
            snap.neighbors.extend_from_slice(twin.neighbors(u));
            for m in twin.link_metrics(u) {
                snap.loss.push(m.packet_loss);
                snap.rssi.push(m.rssi_dbm);
            }
        }
        let prev = self.history.back();
        for u in 0..n {
            let changed = prev.map_or(0, |p| {
                (u * k..(u + 1) * k)
                    .filter(|&i| p.neighbors[i] != snap.neighbors[i])
                    .count()
            });
            snap.changes.push(changed as u8);
        }
        self.history.push_back(snap);
    }

    /// The snapshot `ago` ticks before the newest (the oldest kept if there are fewer).
    fn back(&self, ago: usize) -> &Snapshot {
        let last = self.history.len() - 1;
        &self.history[last.saturating_sub(ago)]
    }

    /// Features of every active node about every neighbour in its table, at the newest tick.
    pub fn observe(&self) -> Vec<Observation> {
        let mut out = Vec::new();
        if self.history.is_empty() {
            return out;
        }
        let now = self.back(0);
        for u in 0..self.n {
            if !now.active[u] {
                continue;
            }
            for s in 0..self.k {
                if let Some(x) = self.features(u, s) {
                    out.push(Observation {
                        observer: u as u32,
                        slot: s as u32,
                        neighbor: now.neighbors[u * self.k + s],
                        features: x,
                    });
                }
            }
        }
        out
    }

    /// Node `u`'s features about the neighbour in its slot `slot` at the newest tick (`None`
    /// for an empty slot or before the first record).
    pub fn features(&self, u: usize, slot: usize) -> Option<[f32; FEATURES]> {
        let now = self.history.back()?;
        let (k, w) = (self.k, self.window);
        let i = u * k + slot;
        let v = now.neighbors[i];
        if v == NO_NEIGHBOR {
            return None;
        }
        let v = v as usize;
        let old = self.back(w);
        let older = self.back(4 * w);
        let ratio = |a: &Overheard, b: &Overheard| {
            let f = (a.forwarded - b.forwarded) as f32;
            let d = (a.dropped - b.dropped) as f32;
            (
                (f + 1.0) / (f + d + 2.0),
                f,
                d,
                (a.delayed - b.delayed) as f32,
            )
        };
        let (r, f, d, delayed) = ratio(&now.overheard[v], &old.overheard[v]);
        let (r_long, ..) = ratio(&now.overheard[v], &older.overheard[v]);
        let span = self.history.len().min(w + 1);
        let queue_mean = (0..span).map(|a| self.back(a).queue[v]).sum::<f32>() / span as f32;
        // The same neighbour a window ago, wherever its slot was.
        let then = (u * k..(u + 1) * k).find(|&j| old.neighbors[j] == v as u32);
        let (loss, rssi) = (now.loss[i], now.rssi[i]);
        let (loss_then, rssi_then) = then.map_or((loss, rssi), |j| (old.loss[j], old.rssi[j]));
        let churn: u32 = (0..span).map(|a| self.back(a).changes[u] as u32).sum();
        let age = (0..span)
            .take_while(|&a| self.back(a).neighbors[u * k..(u + 1) * k].contains(&(v as u32)))
            .count();
        Some([
            r,
            ((1.0 + f + d).ln() / 65f32.ln()).min(1.0),
            (delayed / (f + 1.0)).min(1.0),
            r_long,
            now.queue[v],
            queue_mean,
            loss,
            loss - loss_then,
            ((rssi + 95.0) / 60.0).clamp(0.0, 1.5),
            ((rssi - rssi_then) / 20.0).clamp(-1.0, 1.0),
            (churn as f32 / k as f32).min(1.0),
            (age.saturating_sub(1) as f32 / w as f32).min(1.0),
        ])
    }
}
