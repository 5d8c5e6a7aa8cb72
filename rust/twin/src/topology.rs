//! Node positions and candidate links: generated (random geometric, grid) or loaded from a
//! meshnet-lab JSON file (the Freifunk snapshots; the loader lives in `topology_file.rs`).

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::radio;
use crate::{RadioConfig, TopologyConfig, TopologyKind, TwinError};

pub use crate::topology_file::{
    load_meshnet_lab, parse_meshnet_lab, LoadReport, SkipReason, SkippedLink,
};

/// A link two nodes could use, with its static radio properties.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkSpec {
    /// Endpoints, `a < b`.
    pub a: u32,
    pub b: u32,
    /// Length of the link, metres.
    pub distance_m: f64,
    /// RSSI of the link when not degraded, dBm.
    pub rssi_dbm: f64,
}

/// Positions (metres, in a local plane) and the candidate links between them.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub positions: Vec<[f64; 2]>,
    pub links: Vec<LinkSpec>,
    /// Human-readable node names (from a file), empty for generated layouts.
    pub names: Vec<String>,
    /// What loading the file added, guessed or skipped; empty for generated layouts.
    pub report: LoadReport,
}

impl Layout {
    pub fn num_nodes(&self) -> usize {
        self.positions.len()
    }

    /// Whether every node can reach every other over the candidate links.
    pub fn is_connected(&self) -> bool {
        let n = self.num_nodes();
        if n == 0 {
            return true;
        }
        let mut parent: Vec<u32> = (0..n as u32).collect();
        fn find(p: &mut [u32], mut x: u32) -> u32 {
            while p[x as usize] != x {
                p[x as usize] = p[p[x as usize] as usize];
                x = p[x as usize];
            }
            x
        }
        let mut components = n;
        for l in &self.links {
            let (ra, rb) = (find(&mut parent, l.a), find(&mut parent, l.b));
            if ra != rb {
                parent[ra as usize] = rb;
                components -= 1;
            }
        }
        components == 1
    }
}

/// SplitMix64's finalizer: a stateless mix used to derive independent seeds and per-pair
/// values from a seed.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Shadowing of the pair (a, b), dB: a standard normal drawn from a hash of the seed and the
/// pair (Box–Muller), times `sigma`. Stateless, so a link that disappears and comes back (under
/// mobility) keeps its shadowing.
pub fn pair_shadowing_db(seed: u64, a: u32, b: u32, sigma: f64) -> f64 {
    if sigma == 0.0 {
        return 0.0;
    }
    let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
    let h1 = splitmix64(seed ^ splitmix64((lo << 32) | hi));
    let h2 = splitmix64(h1);
    let u1 = ((h1 >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (h2 >> 11) as f64 / (1u64 << 53) as f64;
    sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Links between every pair within `range_m`, found through a grid of `range_m` cells so the
/// cost grows with the number of links, not the square of the nodes.
pub fn links_in_range(
    positions: &[[f64; 2]],
    range_m: f64,
    radio: &RadioConfig,
    seed: u64,
) -> Vec<LinkSpec> {
    let cell = |p: &[f64; 2]| {
        (
            (p[0] / range_m).floor() as i64,
            (p[1] / range_m).floor() as i64,
        )
    };
    let mut grid: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
    for (i, p) in positions.iter().enumerate() {
        grid.entry(cell(p)).or_default().push(i as u32);
    }
    let mut links = Vec::new();
    for (a, pa) in positions.iter().enumerate() {
        let (cx, cy) = cell(pa);
        for dx in -1..=1 {
            for dy in -1..=1 {
                let Some(bucket) = grid.get(&(cx + dx, cy + dy)) else {
                    continue;
                };
                for &b in bucket {
                    if b as usize <= a {
                        continue;
                    }
                    let pb = positions[b as usize];
                    let d = ((pa[0] - pb[0]).powi(2) + (pa[1] - pb[1]).powi(2)).sqrt();
                    if d <= range_m {
                        let shadow = pair_shadowing_db(seed, a as u32, b, radio.shadowing_sigma_db);
                        links.push(LinkSpec {
                            a: a as u32,
                            b,
                            distance_m: d,
                            rssi_dbm: radio::rssi_dbm(radio, d, shadow),
                        });
                    }
                }
            }
        }
    }
    links.sort_by_key(|l| (l.a, l.b));
    links
}

/// Builds the layout a topology config describes. Generated layouts are seeded by `seed`.
pub fn build_layout(
    topo: &TopologyConfig,
    radio: &RadioConfig,
    seed: u64,
) -> Result<Layout, TwinError> {
    match topo.kind {
        TopologyKind::RandomGeometric => random_geometric(topo, radio, seed),
        TopologyKind::Grid => Ok(grid(topo, radio, seed)),
        TopologyKind::File => {
            let path = topo.path.as_deref().ok_or_else(|| {
                TwinError::invalid("topology.path", "is required when topology.kind = \"file\"")
            })?;
            load_meshnet_lab(path, topo, radio)
        }
    }
}

fn random_geometric(
    topo: &TopologyConfig,
    radio: &RadioConfig,
    seed: u64,
) -> Result<Layout, TwinError> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(splitmix64(seed ^ 0x7070_1091));
    let tries = if topo.connected { 1000 } else { 1 };
    for _ in 0..tries {
        let positions: Vec<[f64; 2]> = (0..topo.num_nodes)
            .map(|_| {
                [
                    rng.random::<f64>() * topo.area_m,
                    rng.random::<f64>() * topo.area_m,
                ]
            })
            .collect();
        let links = links_in_range(&positions, topo.radio_range_m, radio, seed);
        let layout = Layout {
            positions,
            links,
            ..Layout::default()
        };
        if !topo.connected || layout.is_connected() {
            return Ok(layout);
        }
    }
    Err(TwinError::Disconnected(format!(
        "{} nodes in a {} m square with topology.radio_range_m = {} m stayed disconnected after \
         1000 tries; raise radio_range_m or lower area_m",
        topo.num_nodes, topo.area_m, topo.radio_range_m
    )))
}

fn grid(topo: &TopologyConfig, radio: &RadioConfig, seed: u64) -> Layout {
    let cols = (topo.num_nodes as f64).sqrt().ceil() as usize;
    let positions: Vec<[f64; 2]> = (0..topo.num_nodes)
        .map(|i| {
            [
                (i % cols) as f64 * topo.grid_spacing_m,
                (i / cols) as f64 * topo.grid_spacing_m,
            ]
        })
        .collect();
    let links = links_in_range(&positions, topo.radio_range_m, radio, seed);
    Layout {
        positions,
        links,
        ..Layout::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_links_are_four_neighbour() {
        let topo = TopologyConfig {
            kind: TopologyKind::Grid,
            num_nodes: 16,
            grid_spacing_m: 80.0,
            radio_range_m: 100.0,
            ..Default::default()
        };
        let l = build_layout(&topo, &RadioConfig::default(), 0).unwrap();
        assert_eq!(l.links.len(), 2 * 4 * 3);
        assert!(l.is_connected());
    }

    #[test]
    fn random_geometric_is_connected_and_seeded() {
        let topo = TopologyConfig {
            num_nodes: 64,
            area_m: 500.0,
            ..Default::default()
        };
        let r = RadioConfig::default();
        let a = build_layout(&topo, &r, 7).unwrap();
        let b = build_layout(&topo, &r, 7).unwrap();
        let c = build_layout(&topo, &r, 8).unwrap();
        assert!(a.is_connected());
        assert_eq!(a.links, b.links);
        assert_ne!(a.links, c.links);
        for l in &a.links {
            assert!(l.distance_m <= topo.radio_range_m && l.a < l.b);
        }
    }

    #[test]
    fn cell_grid_finds_the_same_links_as_all_pairs() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let pos: Vec<[f64; 2]> = (0..300)
            .map(|_| [rng.random::<f64>() * 1000.0, rng.random::<f64>() * 1000.0])
            .collect();
        let r = RadioConfig::default();
        let fast = links_in_range(&pos, 120.0, &r, 1);
        let mut slow = 0;
        for a in 0..pos.len() {
            for b in a + 1..pos.len() {
                let d = ((pos[a][0] - pos[b][0]).powi(2) + (pos[a][1] - pos[b][1]).powi(2)).sqrt();
                slow += (d <= 120.0) as usize;
            }
        }
        assert_eq!(fast.len(), slow);
    }

    #[test]
    fn impossible_connectivity_is_a_clear_error() {
        let topo = TopologyConfig {
            num_nodes: 50,
            area_m: 100_000.0,
            ..Default::default()
        };
        let e = build_layout(&topo, &RadioConfig::default(), 0).unwrap_err();
        assert!(e.to_string().contains("radio_range_m"), "{e}");
    }
}
