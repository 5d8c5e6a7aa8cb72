//! Shortest paths over a twin's neighbour tables with arbitrary link costs (Dijkstra towards a
//! destination over the reversed tables).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use meshrl_twin::{Twin, NO_NEIGHBOR};

#[derive(PartialEq)]
struct Entry(f64, u32);

impl Eq for Entry {}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A snapshot of the tables with one cost per table slot (`f64::INFINITY` = unusable).
#[derive(Clone, Debug, Default)]
pub struct CostGraph {
    n: usize,
    k: usize,
    neighbors: Vec<u32>,
    costs: Vec<f64>,
    /// Reverse adjacency: for each v, the (u, slot) whose slot points at v.
    reverse: Vec<Vec<(u32, u32)>>,
}

impl CostGraph {
    /// Snapshots `twin`'s tables with `cost(u, slot)` per occupied slot.
    pub fn new(twin: &Twin, mut cost: impl FnMut(usize, usize) -> f64) -> CostGraph {
        let (n, k) = (twin.num_nodes(), twin.max_neighbors());
        let mut neighbors = Vec::with_capacity(n * k);
        let mut costs = Vec::with_capacity(n * k);
        let mut reverse = vec![Vec::new(); n];
        for u in 0..n {
            for (s, &v) in twin.neighbors(u).iter().enumerate() {
                neighbors.push(v);
                if v == NO_NEIGHBOR {
                    costs.push(f64::INFINITY);
                } else {
                    costs.push(cost(u, s));
                    reverse[v as usize].push((u as u32, s as u32));
                }
            }
        }
        CostGraph {
            n,
            k,
            neighbors,
            costs,
            reverse,
        }
    }

    /// Cost of `u`'s slot `s` in the snapshot.
    pub fn cost(&self, u: usize, s: usize) -> f64 {
        self.costs[u * self.k + s]
    }

    /// Neighbour in `u`'s slot `s` in the snapshot.
    pub fn neighbor(&self, u: usize, s: usize) -> u32 {
        self.neighbors[u * self.k + s]
    }

    /// Least total cost from every node to `dest`; `extra(v)` is added when a path passes
    /// through relay `v` (not for `dest` itself).
    pub fn distances_to(&self, dest: usize, extra: impl Fn(usize) -> f64) -> Vec<f64> {
        let mut dist = vec![f64::INFINITY; self.n];
        dist[dest] = 0.0;
        let mut heap = BinaryHeap::new();
        heap.push(Entry(0.0, dest as u32));
        while let Some(Entry(d, v)) = heap.pop() {
            if d > dist[v as usize] {
                continue;
            }
            let through = if v as usize == dest {
                0.0
            } else {
                extra(v as usize)
            };
            for &(u, s) in &self.reverse[v as usize] {
                let nd = d + self.costs[u as usize * self.k + s as usize] + through;
                if nd < dist[u as usize] {
                    dist[u as usize] = nd;
                    heap.push(Entry(nd, u));
                }
            }
        }
        dist
    }
}
