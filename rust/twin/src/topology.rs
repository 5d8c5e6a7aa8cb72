//! Node positions and candidate links: generated (random geometric, grid) or loaded from a
//! meshnet-lab JSON file (the Freifunk snapshots).

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Deserialize;

use crate::radio;
use crate::{RadioConfig, TopologyConfig, TopologyKind, TwinError};

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
            names: Vec::new(),
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
        names: Vec::new(),
    }
}

#[derive(Deserialize)]
struct FileTopology {
    nodes: Vec<FileNode>,
    links: Vec<FileLink>,
}

#[derive(Deserialize)]
struct FileNode {
    id: i64,
    #[serde(default)]
    name: Option<String>,
    /// Latitude, degrees.
    #[serde(default)]
    x: Option<f64>,
    /// Longitude, degrees.
    #[serde(default)]
    y: Option<f64>,
}

#[derive(Deserialize)]
struct FileLink {
    source: i64,
    target: i64,
    #[serde(default)]
    source_tq: Option<f64>,
    #[serde(default)]
    target_tq: Option<f64>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// Loads a meshnet-lab JSON topology: `{"nodes": [{"id", "name", "x": lat, "y": lon}],
/// "links": [{"source", "target", "source_tq", "target_tq", "type"}]}`.
///
/// Positions are projected to metres around their centroid; a node without one sits at the
/// mean of its positioned neighbours. A link's RSSI is the one whose frame loss equals
/// `1 - mean(tq)`, so the measured quality drives every derived metric.
pub fn load_meshnet_lab(
    path: &str,
    topo: &TopologyConfig,
    radio: &RadioConfig,
) -> Result<Layout, TwinError> {
    let text = std::fs::read_to_string(path).map_err(|source| TwinError::Io {
        path: path.to_string(),
        source,
    })?;
    parse_meshnet_lab(&text, path, topo, radio)
}

/// Parses the text of a meshnet-lab JSON topology; `path` only names it in errors.
pub fn parse_meshnet_lab(
    text: &str,
    path: &str,
    topo: &TopologyConfig,
    radio: &RadioConfig,
) -> Result<Layout, TwinError> {
    let bad = |reason: String| TwinError::BadTopology {
        path: path.to_string(),
        reason,
    };
    let file: FileTopology =
        serde_json::from_str(text).map_err(|e| bad(format!("not meshnet-lab JSON: {e}")))?;
    if file.nodes.len() < 2 {
        return Err(bad(format!(
            "needs at least 2 nodes, has {}",
            file.nodes.len()
        )));
    }
    let mut index: HashMap<i64, u32> = HashMap::with_capacity(file.nodes.len());
    for (i, node) in file.nodes.iter().enumerate() {
        if index.insert(node.id, i as u32).is_some() {
            return Err(bad(format!("node id {} appears twice", node.id)));
        }
    }
    let geo: Vec<Option<(f64, f64)>> = file
        .nodes
        .iter()
        .map(|n| match (n.x, n.y) {
            (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
            _ => None,
        })
        .collect();
    let placed: Vec<(f64, f64)> = geo.iter().flatten().copied().collect();
    let (lat0, lon0) = if placed.is_empty() {
        (0.0, 0.0)
    } else {
        let k = placed.len() as f64;
        (
            placed.iter().map(|p| p.0).sum::<f64>() / k,
            placed.iter().map(|p| p.1).sum::<f64>() / k,
        )
    };
    let metres_per_deg_lat = 110_540.0;
    let metres_per_deg_lon = 111_320.0 * lat0.to_radians().cos();
    let mut positions: Vec<Option<[f64; 2]>> = geo
        .iter()
        .map(|g| {
            g.map(|(lat, lon)| {
                [
                    (lon - lon0) * metres_per_deg_lon,
                    (lat - lat0) * metres_per_deg_lat,
                ]
            })
        })
        .collect();

    let mut links = Vec::with_capacity(file.links.len());
    let mut seen = std::collections::HashSet::new();
    for (i, l) in file.links.iter().enumerate() {
        let kind = l.kind.as_deref().unwrap_or("other");
        if !topo.link_types.iter().any(|t| t == kind) {
            continue;
        }
        let a = *index
            .get(&l.source)
            .ok_or_else(|| bad(format!("link {i} names unknown source node {}", l.source)))?;
        let b = *index
            .get(&l.target)
            .ok_or_else(|| bad(format!("link {i} names unknown target node {}", l.target)))?;
        if a == b {
            return Err(bad(format!("link {i} joins node {} to itself", l.source)));
        }
        let mut tq = Vec::with_capacity(2);
        for q in [l.source_tq, l.target_tq].into_iter().flatten() {
            if !(0.0..=1.0).contains(&q) {
                return Err(bad(format!("link {i} has tq {q} outside [0, 1]")));
            }
            tq.push(q);
        }
        let quality = if tq.is_empty() {
            1.0
        } else {
            tq.iter().sum::<f64>() / tq.len() as f64
        };
        let (a, b) = (a.min(b), a.max(b));
        if !seen.insert((a, b)) {
            continue; // the same link listed from both ends
        }
        let wireless = kind == "wifi";
        links.push((a, b, quality, wireless));
    }
    if links.is_empty() {
        return Err(bad(format!("no links of types {:?}", topo.link_types)));
    }

    // Nodes without a position: mean of positioned neighbours, else the centroid.
    for (i, pos) in positions.clone().iter().enumerate() {
        if pos.is_some() {
            continue;
        }
        let nbrs: Vec<[f64; 2]> = links
            .iter()
            .filter_map(|&(a, b, _, _)| {
                let other = if a as usize == i {
                    b
                } else if b as usize == i {
                    a
                } else {
                    return None;
                };
                positions[other as usize]
            })
            .collect();
        positions[i] = Some(if nbrs.is_empty() {
            [0.0, 0.0]
        } else {
            let k = nbrs.len() as f64;
            [
                nbrs.iter().map(|p| p[0]).sum::<f64>() / k,
                nbrs.iter().map(|p| p[1]).sum::<f64>() / k,
            ]
        });
    }
    let had_position: Vec<bool> = geo.iter().map(Option::is_some).collect();
    let positions: Vec<[f64; 2]> = positions
        .into_iter()
        .map(|p| p.unwrap_or([0.0, 0.0]))
        .collect();
    let links = links
        .into_iter()
        .map(|(a, b, quality, wireless)| {
            let (pa, pb) = (positions[a as usize], positions[b as usize]);
            let measured = had_position[a as usize] && had_position[b as usize] && wireless;
            let distance_m = if measured {
                ((pa[0] - pb[0]).powi(2) + (pa[1] - pb[1]).powi(2)).sqrt()
            } else {
                topo.default_link_distance_m
            };
            LinkSpec {
                a,
                b,
                distance_m,
                rssi_dbm: radio::rssi_for_loss(radio, 1.0 - quality),
            }
        })
        .collect();
    let names = file
        .nodes
        .iter()
        .map(|n| n.name.clone().unwrap_or_else(|| n.id.to_string()))
        .collect();
    Ok(Layout {
        positions,
        links,
        names,
    })
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

    #[test]
    fn parses_meshnet_lab_and_rejects_bad_files() {
        let topo = TopologyConfig::default();
        let r = RadioConfig::default();
        let ok = r#"{"nodes":[{"id":5,"x":52.0,"y":8.0},{"id":9,"x":52.001,"y":8.0},{"id":2}],
                    "links":[{"source":5,"target":9,"source_tq":0.9,"target_tq":0.7,"type":"wifi"},
                             {"source":9,"target":2,"source_tq":1.0,"target_tq":1.0,"type":"vpn"}]}"#;
        let l = parse_meshnet_lab(ok, "t.json", &topo, &r).unwrap();
        assert_eq!(l.num_nodes(), 3);
        assert_eq!(l.links.len(), 2);
        // ~111 m apart (0.001 degree of latitude)
        assert!(
            (l.links[0].distance_m - 110.54).abs() < 0.5,
            "{}",
            l.links[0].distance_m
        );
        assert!((radio::frame_loss(&r, l.links[0].rssi_dbm) - 0.2).abs() < 1e-6);
        assert_eq!(l.links[1].distance_m, topo.default_link_distance_m);

        for (text, needle) in [
            ("not json", "not meshnet-lab JSON"),
            (
                r#"{"nodes":[{"id":1},{"id":1}],"links":[]}"#,
                "appears twice",
            ),
            (
                r#"{"nodes":[{"id":1},{"id":2}],"links":[{"source":1,"target":3}]}"#,
                "unknown target",
            ),
            (
                r#"{"nodes":[{"id":1},{"id":2}],"links":[{"source":1,"target":2,"source_tq":2}]}"#,
                "outside [0, 1]",
            ),
            (r#"{"nodes":[{"id":1},{"id":2}],"links":[]}"#, "no links"),
        ] {
            let e = parse_meshnet_lab(text, "bad.json", &topo, &r)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("bad.json"), "{e}");
        }
    }
}
