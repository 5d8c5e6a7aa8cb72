//! Loading meshnet-lab JSON topologies (the Freifunk snapshots and other communities' maps).
//!
//! Files in the wild differ from the Freifunk ones: ids may be strings (`"77"`, `"ic-0"`),
//! links may name nodes the node list leaves out (VPN interconnects, gateways of another
//! community), and exports repeat links or carry broken entries. The loader accepts what it
//! can, records every liberty it took in a [`LoadReport`] carried by the [`Layout`], and
//! refuses only files it cannot make sense of, naming the problem.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::radio;
use crate::topology::{Layout, LinkSpec};
use crate::{RadioConfig, TopologyConfig, TwinError};

/// What loading a topology file added, guessed or left out. Empty for generated layouts and
/// for files used exactly as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Ids that links name but the node list does not, added as nodes after the listed ones
    /// in order of first mention. They have no position (see `unpositioned`).
    pub added_nodes: Vec<String>,
    /// Ids of the nodes (listed or added) that have no position in the file: each is placed at
    /// the mean position of its positioned neighbours, or at the centroid of the positioned
    /// nodes if it has none, and its links get `topology.default_link_distance_m`.
    pub unpositioned: Vec<String>,
    /// Link entries left out, in file order.
    pub skipped_links: Vec<SkippedLink>,
}

/// A link entry the loader left out.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedLink {
    /// Position of the entry in the file's `links` array.
    pub index: usize,
    pub reason: SkipReason,
}

/// Why a link entry was left out.
#[derive(Clone, Debug, PartialEq)]
pub enum SkipReason {
    /// Not an object with `source` and `target` ids (string or integer) and numeric fields;
    /// the text says what was wrong.
    Malformed(String),
    /// `source` and `target` are the same node.
    SelfLoop { node: String },
    /// The pair was already linked by an earlier entry (the same link listed from both ends,
    /// or twice); the first entry is kept.
    Duplicate { a: String, b: String },
}

impl fmt::Display for SkippedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            SkipReason::Malformed(why) => {
                write!(f, "link {} skipped, malformed: {why}", self.index)
            }
            SkipReason::SelfLoop { node } => {
                write!(
                    f,
                    "link {} skipped: joins node {node} to itself",
                    self.index
                )
            }
            SkipReason::Duplicate { a, b } => write!(
                f,
                "link {} skipped: duplicates an earlier link {a} - {b}",
                self.index
            ),
        }
    }
}

impl LoadReport {
    /// Whether the file was used exactly as written (every node positioned, every link kept).
    pub fn is_empty(&self) -> bool {
        self.added_nodes.is_empty() && self.unpositioned.is_empty() && self.skipped_links.is_empty()
    }

    /// One line per liberty taken, for logs.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.added_nodes.is_empty() {
            out.push(format!(
                "{} nodes named only in links were added: {}",
                self.added_nodes.len(),
                self.added_nodes.join(", ")
            ));
        }
        if !self.unpositioned.is_empty() {
            out.push(format!(
                "{} nodes have no position and were placed among their neighbours: {}",
                self.unpositioned.len(),
                self.unpositioned.join(", ")
            ));
        }
        out.extend(self.skipped_links.iter().map(ToString::to_string));
        out
    }
}

/// A node id as files write it. Integers and strings share one namespace (`77` and `"77"` are
/// the same node), since exports of one map are not always consistent about quoting.
#[derive(Deserialize)]
#[serde(untagged)]
enum NodeId {
    Int(i64),
    Text(String),
}

impl NodeId {
    fn key(self) -> String {
        match self {
            NodeId::Int(i) => i.to_string(),
            NodeId::Text(s) => s,
        }
    }
}

#[derive(Deserialize)]
struct FileTopology {
    nodes: Vec<Value>,
    links: Vec<Value>,
}

#[derive(Deserialize)]
struct FileNode {
    id: NodeId,
    /// Display name; a string, or anything else written as JSON.
    #[serde(default)]
    name: Value,
    /// Latitude, degrees.
    #[serde(default)]
    x: Option<f64>,
    /// Longitude, degrees.
    #[serde(default)]
    y: Option<f64>,
}

#[derive(Deserialize)]
struct FileLink {
    source: NodeId,
    target: NodeId,
    #[serde(default)]
    source_tq: Option<f64>,
    #[serde(default)]
    target_tq: Option<f64>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

/// Loads a meshnet-lab JSON topology: `{"nodes": [{"id", "name", "x": lat, "y": lon}],
/// "links": [{"source", "target", "source_tq", "target_tq", "type"}]}`, ids strings or
/// integers.
///
/// Positions are projected to metres around their centroid; a node without one sits at the
/// mean of its positioned neighbours. A link's RSSI is the one whose frame loss equals
/// `1 - mean(tq)`, so the measured quality drives every derived metric. Links naming nodes
/// the list leaves out add those nodes; malformed, self-looping and repeated link entries are
/// skipped; the layout's [`LoadReport`] lists all of it.
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
///
/// Errors: not JSON or no `nodes`/`links` arrays, a node entry without a usable `id` or with
/// non-numeric coordinates, an id listed twice, a `tq` outside [0, 1] (another scale, such as
/// batman-adv's raw 0..255, would make every quality wrong), fewer than 2 nodes, or no usable
/// link of the configured types.
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
    let mut report = LoadReport::default();

    let mut ids: Vec<String> = Vec::with_capacity(file.nodes.len());
    let mut names: Vec<String> = Vec::with_capacity(file.nodes.len());
    let mut geo: Vec<Option<(f64, f64)>> = Vec::with_capacity(file.nodes.len());
    let mut index: HashMap<String, u32> = HashMap::with_capacity(file.nodes.len());
    for (i, value) in file.nodes.into_iter().enumerate() {
        let node: FileNode = serde_json::from_value(value)
            .map_err(|e| bad(format!("node {i} is malformed: {e}")))?;
        let id = node.id.key();
        if index.insert(id.clone(), i as u32).is_some() {
            return Err(bad(format!("node id {id} appears twice")));
        }
        names.push(match node.name {
            Value::String(s) => s,
            Value::Null => id.clone(),
            other => other.to_string(),
        });
        geo.push(match (node.x, node.y) {
            (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
            _ => None,
        });
        ids.push(id);
    }

    let mut links = Vec::with_capacity(file.links.len());
    let mut seen = HashSet::new();
    for (i, value) in file.links.into_iter().enumerate() {
        let skip = |reason| SkippedLink { index: i, reason };
        let l: FileLink = match serde_json::from_value(value) {
            Ok(l) => l,
            Err(e) => {
                report
                    .skipped_links
                    .push(skip(SkipReason::Malformed(e.to_string())));
                continue;
            }
        };
        let kind = l.kind.as_deref().unwrap_or("other");
        if !topo.link_types.iter().any(|t| t == kind) {
            continue;
        }
        let (source, target) = (l.source.key(), l.target.key());
        if source == target {
            report
                .skipped_links
                .push(skip(SkipReason::SelfLoop { node: source }));
            continue;
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
        let mut node_of = |id: String| -> u32 {
            *index.entry(id).or_insert_with_key(|id| {
                report.added_nodes.push(id.clone());
                ids.push(id.clone());
                names.push(id.clone());
                geo.push(None);
                (ids.len() - 1) as u32
            })
        };
        let (a, b) = (node_of(source), node_of(target));
        let (a, b) = (a.min(b), a.max(b));
        if !seen.insert((a, b)) {
            let (a, b) = (ids[a as usize].clone(), ids[b as usize].clone());
            report
                .skipped_links
                .push(skip(SkipReason::Duplicate { a, b }));
            continue;
        }
        links.push((a, b, quality, kind == "wifi"));
    }
    if ids.len() < 2 {
        return Err(bad(format!("needs at least 2 nodes, has {}", ids.len())));
    }
    if links.is_empty() {
        let skipped = if report.skipped_links.is_empty() {
            String::new()
        } else {
            format!(
                " ({} link entries skipped, first: {})",
                report.skipped_links.len(),
                report.skipped_links[0]
            )
        };
        return Err(bad(format!(
            "no links of types {:?}{skipped}",
            topo.link_types
        )));
    }

    let positions = place(&geo, &links);
    report.unpositioned = (0..ids.len())
        .filter(|&i| geo[i].is_none())
        .map(|i| ids[i].clone())
        .collect();
    let links = links
        .into_iter()
        .map(|(a, b, quality, wireless)| {
            let (pa, pb) = (positions[a as usize], positions[b as usize]);
            let measured = geo[a as usize].is_some() && geo[b as usize].is_some() && wireless;
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
    Ok(Layout {
        positions,
        links,
        names,
        report,
    })
}

/// Positions in metres: geographic ones projected around their centroid; each node without
/// one, in index order, at the mean of its already placed neighbours, else at the centroid
/// (the origin).
fn place(geo: &[Option<(f64, f64)>], links: &[(u32, u32, f64, bool)]) -> Vec<[f64; 2]> {
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
    for i in 0..positions.len() {
        if positions[i].is_some() {
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
    positions
        .into_iter()
        .map(|p| p.unwrap_or([0.0, 0.0]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(l.names, ["5", "9", "2"]);
        assert_eq!(l.report.unpositioned, ["2"]);
        assert!(l.report.added_nodes.is_empty() && l.report.skipped_links.is_empty());

        for (text, needle) in [
            ("not json", "not meshnet-lab JSON"),
            (r#"{"nodes":[{"id":1},{"id":2}]}"#, "missing field `links`"),
            (
                r#"{"nodes":[{"id":1},{"id":1}],"links":[]}"#,
                "appears twice",
            ),
            (
                r#"{"nodes":[{"id":1},{"id":"1"}],"links":[]}"#,
                "appears twice",
            ),
            (
                r#"{"nodes":[{"id":1},{"name":"x"}],"links":[]}"#,
                "node 1 is malformed",
            ),
            (
                r#"{"nodes":[{"id":1},{"id":[2]}],"links":[]}"#,
                "node 1 is malformed",
            ),
            (
                r#"{"nodes":[{"id":1},{"id":2}],"links":[{"source":1,"target":2,"source_tq":2}]}"#,
                "outside [0, 1]",
            ),
            (r#"{"nodes":[{"id":1},{"id":2}],"links":[]}"#, "no links"),
            (
                r#"{"nodes":[{"id":1},{"id":2}],"links":[{"source":1,"target":1}]}"#,
                "itself",
            ),
            (
                r#"{"nodes":[{"id":1}],"links":[{"source":1,"target":1}]}"#,
                "at least 2 nodes",
            ),
        ] {
            let e = parse_meshnet_lab(text, "bad.json", &topo, &r)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("bad.json"), "{e}");
        }
    }
}
