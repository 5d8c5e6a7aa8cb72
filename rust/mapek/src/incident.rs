//! Incident scenarios (`configs/eval/incidents/*.toml`): a base scenario, what goes wrong and
//! when, how long to run, and optionally the loop's and the detector's settings.
//!
//! ```toml
//! scenario = "../static.toml"      # relative to this file
//! [incident]
//! kind = "node_turns_malicious"    # | link_degrades | hub_fails | flash_crowd | healthy
//! start_tick = 300
//! drop_probability = 0.6
//! [run]                            # optional
//! ticks = 1000
//! twins = 8
//! ```
//!
//! Which node or link an incident strikes is chosen on each twin when it starts, from the
//! neighbour tables alone (the most central node or link by shortest-path betweenness that
//! is not a cut vertex or bridge: what a cut vertex carries no routing can save), so runs
//! with and without the loop strike the same one. `node` / `link` pick one by hand.

use std::collections::VecDeque;
use std::path::Path;

use meshrl_env::twin::{splitmix64, Twin, NO_NEIGHBOR};
use meshrl_env::EnvConfig;
use serde::{Deserialize, Serialize};

use crate::plan::LoopConfig;
use crate::training::TrainConfig;
use crate::MapekError;

/// What goes wrong, from `start_tick` on (ticks of the twin, 10 ms each by default). In a
/// file the variant is the `kind` field of `[incident]`; in JSON it is the one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Incident {
    /// Nothing: the run that counts false alarms.
    Healthy {},
    /// A relay starts dropping `drop_probability` of what it should forward and delaying
    /// `delay_probability` of the rest by `trust.delay_ms`.
    NodeTurnsMalicious {
        start_tick: u64,
        /// The node (default: the most central one).
        node: Option<usize>,
        drop_probability: f64,
        /// Default: the scenario's `trust.delay_probability`.
        delay_probability: Option<f64>,
    },
    /// A link's attenuation grows by `extra_loss_db`, linearly over `ramp_ticks`.
    LinkDegrades {
        start_tick: u64,
        /// Its two ends (default: the most central link).
        link: Option<[usize; 2]>,
        extra_loss_db: f64,
        ramp_ticks: u64,
    },
    /// A hub's links fade by up to `warning_loss_db` over `warning_ticks` (a failing radio),
    /// then the hub goes down for good.
    HubFails {
        start_tick: u64,
        /// The hub (default: the most central node).
        node: Option<usize>,
        warning_ticks: u64,
        warning_loss_db: f64,
    },
    /// `hotspot_nodes` nodes around the most central one (it included) get
    /// `packets_per_tick` of extra background traffic each for `duration_ticks`.
    FlashCrowd {
        start_tick: u64,
        duration_ticks: u64,
        hotspot_nodes: usize,
        packets_per_tick: f64,
    },
}

impl Incident {
    /// Name as in the config (`node_turns_malicious`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Incident::Healthy {} => "healthy",
            Incident::NodeTurnsMalicious { .. } => "node_turns_malicious",
            Incident::LinkDegrades { .. } => "link_degrades",
            Incident::HubFails { .. } => "hub_fails",
            Incident::FlashCrowd { .. } => "flash_crowd",
        }
    }

    /// Tick the incident starts (`None` for `healthy`).
    pub fn start_tick(&self) -> Option<u64> {
        match *self {
            Incident::Healthy {} => None,
            Incident::NodeTurnsMalicious { start_tick, .. }
            | Incident::LinkDegrades { start_tick, .. }
            | Incident::HubFails { start_tick, .. }
            | Incident::FlashCrowd { start_tick, .. } => Some(start_tick),
        }
    }
}

/// How an incident is evaluated (`[run]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Ticks each run lasts.
    pub ticks: u64,
    /// Independent meshes (twins) per run, each with its own loop; twin `g` is seeded
    /// `seed + g × envs_per_twin`, so each has its own topology unless the scenario fixes
    /// `topology.seed`.
    pub twins: usize,
    /// Seed of the evaluation runs (the detectors train on other seeds).
    pub seed: u64,
    /// The router the mesh runs (a baseline name; `etx` is the strongest).
    pub router: String,
    /// The recovery target's horizon: delivery is compared from `start_tick + recovery_ticks`.
    pub recovery_ticks: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            ticks: 1000,
            twins: 8,
            seed: 1000,
            router: "etx".into(),
            recovery_ticks: 100,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    scenario: String,
    /// `kind` plus the variant's fields; see [`parse_incident`].
    incident: toml::Table,
    #[serde(default)]
    run: RunConfig,
    #[serde(default)]
    mapek: LoopConfig,
    #[serde(default)]
    detector: TrainConfig,
}

/// An incident file, its base scenario loaded.
#[derive(Clone, Debug, Serialize)]
pub struct IncidentFile {
    /// The file's name without extension (`node_turns_malicious`).
    pub name: String,
    /// The base scenario, with the incident's drop and delay probabilities folded in.
    pub scenario: EnvConfig,
    pub incident: Incident,
    pub run: RunConfig,
    pub mapek: LoopConfig,
    pub detector: TrainConfig,
}

impl IncidentFile {
    /// Reads an incident file; its `scenario` is taken relative to the file's folder.
    pub fn load(path: impl AsRef<Path>) -> Result<IncidentFile, MapekError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| MapekError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "incident".into());
        Self::from_toml_str(&text, dir, &path.display().to_string(), &name)
    }

    /// Parses an incident file's text; `dir` anchors `scenario`, `origin` names it in errors.
    pub fn from_toml_str(
        text: &str,
        dir: &Path,
        origin: &str,
        name: &str,
    ) -> Result<IncidentFile, MapekError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| MapekError::config(origin, "<toml>", e.message().to_string()))?;
        let file: FileSchema = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            MapekError::config(origin, &field, e.inner().message().to_string())
        })?;
        let incident = parse_incident(file.incident, origin)?;
        let mut scenario = EnvConfig::from_toml_file(dir.join(&file.scenario))?;
        if let Incident::NodeTurnsMalicious {
            drop_probability,
            delay_probability,
            ..
        } = &incident
        {
            scenario.trust.drop_probability = *drop_probability;
            if let Some(p) = delay_probability {
                scenario.trust.delay_probability = *p;
            }
        }
        let mut detector = file.detector;
        // Like `scenario`, a relative ledger path is taken from the file's folder.
        detector.ledger = detector.ledger.map(|l| dir.join(l));
        let out = IncidentFile {
            name: name.to_string(),
            scenario,
            incident,
            run: file.run,
            mapek: file.mapek,
            detector,
        };
        out.validate(origin)?;
        Ok(out)
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self, origin: &str) -> Result<(), MapekError> {
        let bad = |field: &str, reason: String| Err(MapekError::config(origin, field, reason));
        let n = self.scenario.topology.num_nodes;
        let r = &self.run;
        if !(10..=1_000_000).contains(&r.ticks) {
            return bad(
                "run.ticks",
                format!("must be in 10..=1000000, got {}", r.ticks),
            );
        }
        if !(1..=256).contains(&r.twins) {
            return bad("run.twins", format!("must be in 1..=256, got {}", r.twins));
        }
        if meshrl_eval::baseline(&r.router, 0).is_none() {
            return bad(
                "run.router",
                format!(
                    "unknown baseline `{}`; known: {}",
                    r.router,
                    meshrl_eval::BASELINES.join(", ")
                ),
            );
        }
        let probability = |field: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                bad(field, format!("must be a probability in [0, 1], got {p}"))
            }
        };
        let node_in_mesh = |field: &str, u: usize| {
            if u < n {
                Ok(())
            } else {
                bad(field, format!("names node {u}, the mesh has nodes 0..{n}"))
            }
        };
        let db = |field: &str, x: f64| {
            if x.is_finite() && x >= 0.0 {
                Ok(())
            } else {
                bad(
                    field,
                    format!("must be a finite number of dB >= 0, got {x}"),
                )
            }
        };
        let at_least_one = |field: &str, x: u64| {
            if x >= 1 {
                Ok(())
            } else {
                bad(field, "must be at least 1".into())
            }
        };
        if let Some(start) = self.incident.start_tick() {
            if start + r.recovery_ticks >= r.ticks {
                return bad(
                    "incident.start_tick",
                    format!(
                        "{start} + run.recovery_ticks ({}) must be before run.ticks ({})",
                        r.recovery_ticks, r.ticks
                    ),
                );
            }
        }
        match &self.incident {
            Incident::Healthy {} => {}
            Incident::NodeTurnsMalicious {
                node,
                drop_probability,
                delay_probability,
                ..
            } => {
                probability("incident.drop_probability", *drop_probability)?;
                if let Some(p) = delay_probability {
                    probability("incident.delay_probability", *p)?;
                }
                if let Some(u) = node {
                    node_in_mesh("incident.node", *u)?;
                }
            }
            Incident::LinkDegrades {
                link,
                extra_loss_db,
                ramp_ticks,
                ..
            } => {
                db("incident.extra_loss_db", *extra_loss_db)?;
                at_least_one("incident.ramp_ticks", *ramp_ticks)?;
                if let Some([a, b]) = link {
                    node_in_mesh("incident.link", *a)?;
                    node_in_mesh("incident.link", *b)?;
                    if a == b {
                        return bad(
                            "incident.link",
                            format!("a link joins two nodes, got [{a}, {b}]"),
                        );
                    }
                }
            }
            Incident::HubFails {
                node,
                warning_ticks,
                warning_loss_db,
                ..
            } => {
                db("incident.warning_loss_db", *warning_loss_db)?;
                if let Some(u) = node {
                    node_in_mesh("incident.node", *u)?;
                }
                let _ = warning_ticks; // 0: the hub fails without warning
            }
            Incident::FlashCrowd {
                duration_ticks,
                hotspot_nodes,
                packets_per_tick,
                ..
            } => {
                at_least_one("incident.duration_ticks", *duration_ticks)?;
                if !(1..=n).contains(hotspot_nodes) {
                    return bad(
                        "incident.hotspot_nodes",
                        format!("must be in 1..={n} (the mesh's nodes), got {hotspot_nodes}"),
                    );
                }
                if !(packets_per_tick.is_finite() && *packets_per_tick >= 0.0) {
                    return bad(
                        "incident.packets_per_tick",
                        format!("must be a finite number >= 0, got {packets_per_tick}"),
                    );
                }
            }
        }
        self.mapek.validate(origin)?;
        self.detector.validate(origin)?;
        Ok(())
    }
}

/// `[incident]` → [`Incident`], errors naming `incident.<field>` (serde cannot see inside an
/// internally tagged enum, so the `kind` is taken out first and the rest read as its
/// variant).
fn parse_incident(mut table: toml::Table, origin: &str) -> Result<Incident, MapekError> {
    let kinds = "healthy, node_turns_malicious, link_degrades, hub_fails, flash_crowd";
    let kind = match table.remove("kind") {
        Some(toml::Value::String(k)) => k,
        Some(other) => {
            return Err(MapekError::config(
                origin,
                "incident.kind",
                format!("must be a string ({kinds}), got {other}"),
            ))
        }
        None => {
            return Err(MapekError::config(
                origin,
                "incident.kind",
                format!("missing; one of {kinds}"),
            ))
        }
    };
    let mut wrapper = toml::Table::new();
    wrapper.insert(kind.clone(), toml::Value::Table(table));
    serde_path_to_error::deserialize(toml::Value::Table(wrapper)).map_err(|e| {
        let path = e.path().to_string();
        let field = match path.split_once('.') {
            Some((_, rest)) => format!("incident.{rest}"),
            None if path == kind => "incident".to_string(),
            None => "incident.kind".to_string(),
        };
        MapekError::config(origin, &field, e.into_inner().to_string())
    })
}

/// What an incident struck on one twin (ground truth for detection metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Target {
    /// The malicious node, the hub, or the flash crowd's hotspot.
    pub nodes: Vec<usize>,
    /// The degrading link.
    pub link: Option<(usize, usize)>,
}

/// An incident playing out on one twin.
#[derive(Clone, Debug)]
pub struct IncidentRun {
    pub incident: Incident,
    pub target: Option<Target>,
    /// Strike a random node or link (drawn from this seed) instead of the most central.
    random_target: Option<u64>,
}

impl IncidentRun {
    pub fn new(incident: Incident) -> Self {
        IncidentRun {
            incident,
            target: None,
            random_target: None,
        }
    }

    /// Like `new`, but a node or link the incident leaves open is drawn at random from
    /// `seed` (training meshes see incidents everywhere, not only at the centre).
    pub fn new_random(incident: Incident, seed: u64) -> Self {
        IncidentRun {
            incident,
            target: None,
            random_target: Some(seed),
        }
    }

    fn pick_node(&self, twin: &Twin) -> usize {
        match self.random_target {
            None => most_central_node(twin),
            Some(seed) => {
                let active: Vec<usize> = (0..twin.num_nodes())
                    .filter(|&u| twin.is_active(u))
                    .collect();
                active[(splitmix64(seed) % active.len() as u64) as usize]
            }
        }
    }

    fn pick_link(&self, twin: &Twin) -> (usize, usize) {
        match self.random_target {
            None => most_central_link(twin),
            Some(seed) => {
                let mut links = Vec::new();
                for u in 0..twin.num_nodes() {
                    for &v in twin.neighbors(u) {
                        if v != NO_NEIGHBOR && u < v as usize {
                            links.push((u, v as usize));
                        }
                    }
                }
                if links.is_empty() {
                    return (0, 1);
                }
                links[(splitmix64(seed) % links.len() as u64) as usize]
            }
        }
    }

    /// Applies what the incident does at the twin's current tick (call once per tick, after
    /// the twin ticked).
    pub fn apply(&mut self, twin: &mut Twin) {
        let t = twin.ticks();
        match self.incident.clone() {
            Incident::Healthy {} => {}
            Incident::NodeTurnsMalicious {
                start_tick, node, ..
            } => {
                if t == start_tick {
                    let v = node.unwrap_or_else(|| self.pick_node(twin));
                    twin.set_untrusted(v, true);
                    self.target = Some(Target {
                        nodes: vec![v],
                        link: None,
                    });
                }
            }
            Incident::LinkDegrades {
                start_tick,
                link,
                extra_loss_db,
                ramp_ticks,
            } => {
                if t == start_tick {
                    let (a, b) = match link {
                        Some([a, b]) => (a, b),
                        None => self.pick_link(twin),
                    };
                    self.target = Some(Target {
                        nodes: Vec::new(),
                        link: Some((a, b)),
                    });
                }
                if t >= start_tick && t <= start_tick + ramp_ticks {
                    if let Some((a, b)) = self.target.as_ref().and_then(|x| x.link) {
                        let frac = ((t - start_tick + 1) as f64 / ramp_ticks as f64).min(1.0);
                        twin.set_link_extra_loss_db(a, b, extra_loss_db * frac);
                    }
                }
            }
            Incident::HubFails {
                start_tick,
                node,
                warning_ticks,
                warning_loss_db,
            } => {
                if t == start_tick {
                    let hub = node.unwrap_or_else(|| self.pick_node(twin));
                    self.target = Some(Target {
                        nodes: vec![hub],
                        link: None,
                    });
                }
                let Some(hub) = self.target.as_ref().map(|x| x.nodes[0]) else {
                    return;
                };
                if t >= start_tick && t < start_tick + warning_ticks {
                    let frac = (t - start_tick + 1) as f64 / warning_ticks as f64;
                    let nbrs: Vec<u32> = twin.neighbors(hub).to_vec();
                    for v in nbrs.into_iter().filter(|&v| v != NO_NEIGHBOR) {
                        twin.set_link_extra_loss_db(hub, v as usize, warning_loss_db * frac);
                    }
                } else if t == start_tick + warning_ticks {
                    twin.set_active(hub, false);
                }
            }
            Incident::FlashCrowd {
                start_tick,
                duration_ticks,
                hotspot_nodes,
                packets_per_tick,
            } => {
                if t == start_tick {
                    let hub = self.pick_node(twin);
                    let nodes = nearest_nodes(twin, hub, hotspot_nodes);
                    for &u in &nodes {
                        twin.set_extra_traffic(u, packets_per_tick);
                    }
                    self.target = Some(Target { nodes, link: None });
                } else if t == start_tick + duration_ticks {
                    if let Some(target) = &self.target {
                        for &u in &target.nodes {
                            twin.set_extra_traffic(u, 0.0);
                        }
                    }
                }
            }
        }
    }
}

/// Shortest-path betweenness over the neighbour tables (Brandes 2001, unweighted, directed),
/// of every node and of every table entry `u * k + slot`.
pub fn betweenness(twin: &Twin) -> (Vec<f64>, Vec<f64>) {
    let (n, k) = (twin.num_nodes(), twin.max_neighbors());
    let mut node_bc = vec![0.0; n];
    let mut edge_bc = vec![0.0; n * k];
    let mut sigma = vec![0f64; n];
    let mut dist = vec![-1i64; n];
    let mut delta = vec![0f64; n];
    let mut order = Vec::with_capacity(n);
    for s in (0..n).filter(|&s| twin.is_active(s)) {
        sigma.fill(0.0);
        dist.fill(-1);
        delta.fill(0.0);
        order.clear();
        sigma[s] = 1.0;
        dist[s] = 0;
        let mut queue = VecDeque::from([s]);
        while let Some(u) = queue.pop_front() {
            order.push(u);
            for &v in twin.neighbors(u).iter().filter(|&&v| v != NO_NEIGHBOR) {
                let v = v as usize;
                if dist[v] < 0 {
                    dist[v] = dist[u] + 1;
                    queue.push_back(v);
                }
                if dist[v] == dist[u] + 1 {
                    sigma[v] += sigma[u];
                }
            }
        }
        for &w in order.iter().rev() {
            for (slot, &v) in twin.neighbors(w).iter().enumerate() {
                if v == NO_NEIGHBOR || dist[v as usize] != dist[w] + 1 {
                    continue;
                }
                let v = v as usize;
                let c = sigma[w] / sigma[v] * (1.0 + delta[v]);
                edge_bc[w * k + slot] += c;
                delta[w] += c;
            }
            if w != s {
                node_bc[w] += delta[w];
            }
        }
    }
    (node_bc, edge_bc)
}

/// Whether the active mesh stays connected (links as in either end's table) without node
/// `skip_node` and without the link `skip_link`.
fn connected_without(
    twin: &Twin,
    skip_node: Option<usize>,
    skip_link: Option<(usize, usize)>,
) -> bool {
    let n = twin.num_nodes();
    let up = |u: usize| twin.is_active(u) && Some(u) != skip_node;
    let mut adj = vec![Vec::new(); n];
    for u in (0..n).filter(|&u| up(u)) {
        for &v in twin.neighbors(u) {
            let v = v as usize;
            if v == NO_NEIGHBOR as usize || !up(v) {
                continue;
            }
            if skip_link.is_some_and(|(a, b)| (a, b) == (u.min(v), u.max(v))) {
                continue;
            }
            adj[u].push(v);
            adj[v].push(u);
        }
    }
    let Some(first) = (0..n).find(|&u| up(u)) else {
        return true;
    };
    let mut seen = vec![false; n];
    seen[first] = true;
    let mut queue = VecDeque::from([first]);
    let mut count = 1;
    while let Some(u) = queue.pop_front() {
        for &v in &adj[u] {
            if !seen[v] {
                seen[v] = true;
                count += 1;
                queue.push_back(v);
            }
        }
    }
    count == (0..n).filter(|&u| up(u)).count()
}

/// The active node on the most shortest paths that the mesh can route around (not a cut
/// vertex: with one, no routing recovers what it carries), ties to the lowest id; any node
/// if all are cut vertices.
pub fn most_central_node(twin: &Twin) -> usize {
    let (bc, _) = betweenness(twin);
    let mut order: Vec<usize> = (0..twin.num_nodes())
        .filter(|&u| twin.is_active(u))
        .collect();
    order.sort_by(|&a, &b| bc[b].total_cmp(&bc[a]).then(a.cmp(&b)));
    order
        .iter()
        .copied()
        .find(|&u| connected_without(twin, Some(u), None))
        .or(order.first().copied())
        .unwrap_or(0)
}

/// The link on the most shortest paths (both directions counted) that is not a bridge, ties
/// to the lowest ids; any link if all are bridges.
pub fn most_central_link(twin: &Twin) -> (usize, usize) {
    let (_, ebc) = betweenness(twin);
    let k = twin.max_neighbors();
    let mut scored: Vec<((usize, usize), f64)> = Vec::new();
    for u in 0..twin.num_nodes() {
        for (s, &v) in twin.neighbors(u).iter().enumerate() {
            if v == NO_NEIGHBOR || (v as usize) < u {
                continue;
            }
            let v = v as usize;
            let back = twin
                .neighbors(v)
                .iter()
                .position(|&x| x as usize == u)
                .map_or(0.0, |s2| ebc[v * k + s2]);
            scored.push(((u, v), ebc[u * k + s] + back));
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
        .iter()
        .map(|x| x.0)
        .find(|&l| connected_without(twin, None, Some(l)))
        .or(scored.first().map(|x| x.0))
        .unwrap_or((0, 1))
}

/// `count` nodes nearest `center` in hops (BFS over the tables, ties by id), `center` first.
pub fn nearest_nodes(twin: &Twin, center: usize, count: usize) -> Vec<usize> {
    let mut seen = vec![false; twin.num_nodes()];
    let mut out = Vec::new();
    let mut queue = VecDeque::from([center]);
    seen[center] = true;
    while let Some(u) = queue.pop_front() {
        out.push(u);
        if out.len() == count {
            break;
        }
        for &v in twin.neighbors(u) {
            if v != NO_NEIGHBOR && !seen[v as usize] {
                seen[v as usize] = true;
                queue.push_back(v as usize);
            }
        }
    }
    out
}
