use meshrl_twin::topology::{load_meshnet_lab, SkipReason};
use meshrl_twin::{
    radio, Layout, LinkSpec, LossCause, RadioConfig, TopologyConfig, TopologyKind, Twin,
    TwinConfig, NO_NEIGHBOR, UNREACHABLE,
};
use proptest::prelude::*;
use rand::SeedableRng;

fn stream() -> rand_xoshiro::Xoshiro256PlusPlus {
    rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(99)
}

fn topologies_dir() -> std::path::PathBuf {
    std::env::var_os("MESHRL_TOPOLOGIES")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/topologies")
        })
}

fn cfg(n: usize) -> TwinConfig {
    let mut c = TwinConfig::default();
    c.topology.num_nodes = n;
    c.topology.area_m = 60.0 * (n as f64).sqrt();
    c
}

/// Every table entry is an active candidate neighbour, each at most once, in id order.
fn check_tables(t: &Twin) {
    for u in 0..t.num_nodes() {
        let row = t.neighbors(u);
        let real: Vec<u32> = row.iter().copied().filter(|&v| v != NO_NEIGHBOR).collect();
        if !t.is_active(u) {
            assert!(real.is_empty());
        }
        for w in real.windows(2) {
            assert!(w[0] < w[1], "slots of node {u} not sorted/unique: {row:?}");
        }
        for (s, &v) in row.iter().enumerate() {
            let m = t.link_metrics(u)[s];
            if v == NO_NEIGHBOR {
                assert_eq!(m, Default::default());
            } else {
                assert!(t.is_active(v as usize) && v as usize != u);
                assert!((-100.0..=0.0).contains(&m.rssi_dbm));
                assert!((0.0..=1.0).contains(&m.packet_loss));
                assert!(m.latency_ms.is_finite() && m.latency_ms > 0.0);
                assert!(m.bandwidth_mbps >= 0.0 && m.bandwidth_mbps <= 65.0);
            }
        }
    }
}

/// Hop distances satisfy Bellman's equation over the tables.
fn check_hops(t: &mut Twin, dest: usize) {
    let d = t.hop_distances(dest).to_vec();
    for u in 0..t.num_nodes() {
        if u == dest {
            assert_eq!(d[u], if t.is_active(dest) { 0 } else { UNREACHABLE });
            continue;
        }
        let best = t
            .neighbors(u)
            .iter()
            .filter(|&&v| v != NO_NEIGHBOR && d[v as usize] != UNREACHABLE)
            .map(|&v| d[v as usize] + 1)
            .min()
            .unwrap_or(UNREACHABLE);
        assert_eq!(d[u], best, "node {u} to {dest}");
    }
}

#[test]
fn same_seed_same_run_bit_for_bit() {
    let mut c = cfg(40);
    c.dynamics.churn = true;
    c.dynamics.link_degradation = true;
    c.dynamics.mobility = true;
    c.trust.untrusted_fraction = 0.2;
    c.traffic.background_packets_per_tick = 0.7;
    let run = |seed| {
        let mut t = Twin::new(&c, seed).unwrap();
        let mut rng = stream();
        let mut trace = Vec::new();
        for step in 0..300 {
            let u = step % t.num_nodes();
            if let Some(s) = t.neighbors(u).iter().position(|&v| v != NO_NEIGHBOR) {
                let hop = t.transmit(u, s, (u + 1) % t.num_nodes(), &mut rng);
                trace.push((
                    hop.next,
                    hop.latency_ms.to_bits(),
                    hop.lost.map(|c| c as u8),
                ));
            }
            t.tick();
        }
        let state: Vec<u32> = (0..t.num_nodes())
            .flat_map(|u| {
                t.link_metrics(u)
                    .iter()
                    .map(|m| m.latency_ms.to_bits())
                    .collect::<Vec<_>>()
            })
            .collect();
        (trace, state, t.positions().to_vec())
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5).0, run(6).0);
}

#[test]
fn dynamics_keep_tables_and_hops_consistent() {
    let mut c = cfg(30);
    c.dynamics.churn = true;
    c.dynamics.leave_probability = 0.05;
    c.dynamics.join_probability = 0.1;
    c.dynamics.link_degradation = true;
    c.dynamics.mobility = true;
    c.dynamics.speed_max_mps = 30.0;
    let mut t = Twin::new(&c, 1).unwrap();
    let mut versions = std::collections::HashSet::new();
    for tick in 0..200 {
        t.tick();
        versions.insert(t.topology_version());
        if tick % 10 == 0 {
            check_tables(&t);
            for dest in [0, 7, 29] {
                check_hops(&mut t, dest);
            }
        }
    }
    assert!(
        versions.len() > 20,
        "topology barely changed: {} versions",
        versions.len()
    );
}

#[test]
fn neighbour_tables_are_capped_to_the_strongest() {
    let mut c = TwinConfig::default();
    c.topology.max_neighbors = 3;
    c.radio.shadowing_sigma_db = 0.0;
    // Node 0 in the middle of 6 nodes at distances 10..60 m.
    let positions: Vec<[f64; 2]> = std::iter::once([0.0, 0.0])
        .chain((1..=6).map(|i| [10.0 * i as f64, 0.0]))
        .collect();
    let links = (1..=6u32)
        .map(|b| LinkSpec {
            a: 0,
            b,
            distance_m: 10.0 * b as f64,
            rssi_dbm: radio::rssi_dbm(&c.radio, 10.0 * b as f64, 0.0),
        })
        .collect();
    let t = Twin::from_layout(
        &c,
        Layout {
            positions,
            links,
            ..Layout::default()
        },
        0,
    );
    assert_eq!(t.neighbors(0), &[1, 2, 3]);
}

#[test]
fn untrusted_nodes_earn_low_trust_and_drop_packets() {
    let mut c = cfg(50);
    c.trust.untrusted_fraction = 0.2;
    c.trust.drop_probability = 0.8;
    let mut t = Twin::new(&c, 3).unwrap();
    for _ in 0..500 {
        t.tick();
    }
    let (mut bad, mut good) = (vec![], vec![]);
    for u in 0..50 {
        if t.is_untrusted(u) {
            bad.push(t.trust(u))
        } else {
            good.push(t.trust(u))
        }
    }
    assert_eq!(bad.len(), 10);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(
        mean(&bad) < 0.45 && mean(&good) > 0.85,
        "bad {} good {}",
        mean(&bad),
        mean(&good)
    );

    // Forwarding into an untrusted relay drops about drop_probability of the packets.
    let v = (0..50).find(|&v| t.is_untrusted(v)).unwrap();
    let (u, s) = (0..50)
        .find_map(|u| {
            t.neighbors(u)
                .iter()
                .position(|&x| x as usize == v)
                .map(|s| (u, s))
        })
        .unwrap();
    let dest = (0..50).find(|&d| d != u && d != v).unwrap();
    let mut drops = 0;
    let mut rng = stream();
    for _ in 0..2000 {
        if t.transmit(u, s, dest, &mut rng).lost == Some(LossCause::UntrustedDrop) {
            drops += 1;
        }
        t.tick();
    }
    assert!((1300..1900).contains(&drops), "{drops} drops of 2000");
}

#[test]
fn queues_fill_with_traffic_and_drain() {
    let mut c = cfg(16);
    c.traffic.service_packets_per_tick = 1.0;
    c.traffic.queue_capacity_packets = 10.0;
    c.radio.mac_retries = 15;
    let mut t = Twin::new(&c, 0).unwrap();
    let (u, s) = (
        0,
        t.neighbors(0)
            .iter()
            .position(|&v| v != NO_NEIGHBOR)
            .unwrap(),
    );
    let v = t.neighbors(u)[s] as usize;
    let dest = (0..16).find(|&d| d != u && d != v).unwrap();
    let before = t.link_metrics(u)[s].latency_ms;
    let mut congested = false;
    let mut rng = stream();
    for _ in 0..30 {
        congested |= t.transmit(u, s, dest, &mut rng).lost == Some(LossCause::Congestion);
    }
    assert!(congested, "a 10-packet queue took 30 packets in one tick");
    assert!((t.queue(v) - 1.0).abs() < 1e-6);
    t.tick();
    assert!(
        t.link_metrics(u)[s].latency_ms > before + 50.0,
        "queueing delay not observed"
    );
    for _ in 0..10 {
        t.tick();
    }
    assert!(t.queue(v) < 1e-6, "queue did not drain: {}", t.queue(v));
}

#[test]
fn link_degradation_raises_loss() {
    let mut c = cfg(40);
    c.dynamics.link_degradation = true;
    c.dynamics.degrade_probability = 0.5;
    c.dynamics.recover_probability = 0.0;
    c.dynamics.degraded_penalty_db = 10.0;
    let t0 = Twin::new(&c, 2).unwrap();
    let mut t = t0.clone();
    for _ in 0..20 {
        t.tick();
    }
    let mean_rssi = |t: &Twin| {
        let all: Vec<f32> = (0..40)
            .flat_map(|u| {
                t.neighbors(u)
                    .iter()
                    .zip(t.link_metrics(u))
                    .filter(|(v, _)| **v != NO_NEIGHBOR)
                    .map(|(_, m)| m.rssi_dbm)
                    .collect::<Vec<_>>()
            })
            .collect();
        all.iter().sum::<f32>() / all.len() as f32
    };
    assert!(mean_rssi(&t) < mean_rssi(&t0) - 5.0);
}

#[test]
fn freifunk_topologies_load_with_their_measured_quality() {
    let dir = topologies_dir();
    for name in [
        "freifunk-ulm",
        "freifunk-bielefeld",
        "freifunk-leipzig",
        "freifunk-cologne-bonn-area",
    ] {
        let path = dir.join(format!("{name}.json"));
        assert!(
            path.exists(),
            "missing {} (set MESHRL_TOPOLOGIES)",
            path.display()
        );
        let mut c = TwinConfig::default();
        c.topology.kind = TopologyKind::File;
        c.topology.path = Some(path.to_string_lossy().into_owned());
        let mut t = Twin::new(&c, 0).unwrap();
        assert!(t.num_nodes() > 200, "{name}: {} nodes", t.num_nodes());
        check_tables(&t);
        check_hops(&mut t, 0);
        let reachable = t
            .hop_distances(0)
            .iter()
            .filter(|&&h| h != UNREACHABLE)
            .count();
        assert!(
            reachable > t.num_nodes() / 2,
            "{name}: {reachable} reach node 0"
        );
    }
    // The Freifunk files are used as written: every node listed, every link kept.
    for (name, nodes, links) in [
        ("freifunk-ulm", 217, 447),
        ("freifunk-bielefeld", 246, 483),
        ("freifunk-leipzig", 210, 413),
        ("freifunk-cologne-bonn-area", 279, 775),
    ] {
        let path = dir.join(format!("{name}.json"));
        let l = load_meshnet_lab(
            path.to_str().unwrap(),
            &TopologyConfig::default(),
            &RadioConfig::default(),
        )
        .unwrap();
        assert_eq!((l.num_nodes(), l.links.len()), (nodes, links), "{name}");
        assert!(l.report.added_nodes.is_empty(), "{name}");
        assert!(l.report.skipped_links.is_empty(), "{name}");
        assert!(l.report.unpositioned.len() < nodes / 4, "{name}");
    }
    // Only wifi links: the mesh falls apart into islands, which is the real picture.
    let mut c = TwinConfig::default();
    c.topology.kind = TopologyKind::File;
    c.topology.path = Some(dir.join("freifunk-ulm.json").to_string_lossy().into_owned());
    c.topology.link_types = vec!["wifi".into()];
    assert!(Twin::new(&c, 0).is_ok());
}

#[test]
fn missing_file_is_a_clear_error() {
    let mut c = TwinConfig::default();
    c.topology.kind = TopologyKind::File;
    c.topology.path = Some("/nonexistent/x.json".into());
    let e = Twin::new(&c, 0).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/x.json"), "{e}");
}

/// Writes `text` to a file of its own in the temp dir and returns its path.
fn temp_topology(tag: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("meshrl-twin-{}-{tag}.json", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A community map as exports write them: string and integer ids mixed, a VPN interconnect
/// (`ic-0`) that only links name, a positionless gateway, and broken link entries.
const COMMUNITY_MAP: &str = r#"{
  "nodes": [
    {"id": "a1", "name": "alpha", "x": 52.0, "y": 8.0},
    {"id": "77", "x": 52.001, "y": 8.0},
    {"id": 78, "x": 52.0, "y": 8.0015},
    {"id": "gw"}
  ],
  "links": [
    {"source": "a1", "target": "77", "source_tq": 0.9, "target_tq": 0.9, "type": "wifi"},
    {"source": 77, "target": "78", "source_tq": 0.8, "target_tq": 0.8, "type": "wifi"},
    {"source": "78", "target": "ic-0", "type": "vpn"},
    {"source": "ic-0", "target": "gw", "source_tq": 1.0, "target_tq": 1.0, "type": "vpn"},
    {"source": "77", "target": "a1", "source_tq": 0.5, "target_tq": 0.5, "type": "wifi"},
    {"source": "gw", "target": "gw", "type": "vpn"},
    {"source": "a1", "type": "wifi"},
    {"source": "a1", "target": 1.5, "type": "wifi"},
    "garbage",
    {"source": "a1", "target": "ic-9", "type": "other"}
  ]
}"#;

#[test]
fn community_maps_with_string_ids_and_unlisted_nodes_load_with_a_report() {
    let path = temp_topology("community", COMMUNITY_MAP);
    let (topo, r) = (TopologyConfig::default(), RadioConfig::default());
    let l = load_meshnet_lab(&path, &topo, &r).unwrap();
    assert_eq!(l.names, ["alpha", "77", "78", "gw", "ic-0", "ic-9"]);
    assert_eq!(l.report.added_nodes, ["ic-0", "ic-9"]);
    assert_eq!(l.report.unpositioned, ["gw", "ic-0", "ic-9"]);
    let pairs: Vec<(u32, u32)> = l.links.iter().map(|k| (k.a, k.b)).collect();
    assert_eq!(pairs, [(0, 1), (1, 2), (2, 4), (3, 4), (0, 5)]);
    // The first listing of a link wins: tq 0.9, not the duplicate's 0.5.
    assert!((radio::frame_loss(&r, l.links[0].rssi_dbm) - 0.1).abs() < 1e-6);
    assert!((l.links[0].distance_m - 110.54).abs() < 0.5);
    // Links touching a positionless node get the configured length.
    assert_eq!(l.links[2].distance_m, topo.default_link_distance_m);
    // Placed in index order: gw has no placed neighbour yet (centroid, the origin), ic-0
    // then sits between 78 and gw, ic-9 on a1.
    assert_eq!(l.positions[3], [0.0, 0.0]);
    let (p78, pic) = (l.positions[2], l.positions[4]);
    assert!((pic[0] - p78[0] / 2.0).abs() < 1e-9 && (pic[1] - p78[1] / 2.0).abs() < 1e-9);
    assert_eq!(l.positions[5], l.positions[0]);

    let skipped: Vec<(usize, &SkipReason)> = l
        .report
        .skipped_links
        .iter()
        .map(|s| (s.index, &s.reason))
        .collect();
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    assert!(matches!(skipped[0], (4, SkipReason::Duplicate { a, b }) if a == "a1" && b == "77"));
    assert!(matches!(skipped[1], (5, SkipReason::SelfLoop { node }) if node == "gw"));
    for (k, index) in [(2, 6), (3, 7), (4, 8)] {
        assert!(
            matches!(skipped[k], (i, SkipReason::Malformed(_)) if i == index),
            "{skipped:?}"
        );
    }
    let warnings = l.report.warnings().join("\n");
    for needle in [
        "ic-0",
        "link 4",
        "itself",
        "malformed: missing field `target`",
    ] {
        assert!(warnings.contains(needle), "{needle} not in {warnings}");
    }

    // A node named only by a link of an excluded type is not added.
    let wifi_vpn = TopologyConfig {
        link_types: vec!["wifi".into(), "vpn".into()],
        ..TopologyConfig::default()
    };
    let l = load_meshnet_lab(&path, &wifi_vpn, &r).unwrap();
    assert_eq!(l.report.added_nodes, ["ic-0"]);
    assert_eq!(l.num_nodes(), 5);

    // And a twin runs on it.
    let mut c = TwinConfig::default();
    c.topology.kind = TopologyKind::File;
    c.topology.path = Some(path.clone());
    let mut t = Twin::new(&c, 0).unwrap();
    check_tables(&t);
    check_hops(&mut t, 4);
    assert_eq!(t.hop_distances(4)[0], 3, "a1 - 77 - 78 - ic-0");
    std::fs::remove_file(path).ok();
}

#[test]
fn unusable_topology_files_are_clear_errors() {
    let r = RadioConfig::default();
    for (tag, text, needle) in [
        (
            "nodes-object",
            r#"{"nodes": {}, "links": []}"#,
            "not meshnet-lab JSON",
        ),
        (
            "float-id",
            r#"{"nodes": [{"id": 1.5}, {"id": 2}], "links": []}"#,
            "node 0 is malformed",
        ),
        (
            "raw-tq",
            r#"{"nodes": [{"id": "a"}, {"id": "b"}],
                "links": [{"source": "a", "target": "b", "source_tq": 255, "type": "wifi"}]}"#,
            "tq 255 outside [0, 1]",
        ),
        (
            "all-broken",
            r#"{"nodes": [{"id": "a"}, {"id": "b"}],
                "links": [{"source": "a"}, {"source": "b", "target": "b"}]}"#,
            "2 link entries skipped, first: link 0 skipped, malformed",
        ),
    ] {
        let path = temp_topology(tag, text);
        let e = load_meshnet_lab(&path, &TopologyConfig::default(), &r)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && e.contains(&path), "{tag}: {e}");
        std::fs::remove_file(path).ok();
    }
}

#[test]
fn scales_to_a_thousand_nodes() {
    let mut c = TwinConfig::default();
    c.topology = TopologyConfig {
        num_nodes: 1000,
        area_m: 1800.0,
        ..Default::default()
    };
    let mut t = Twin::new(&c, 0).unwrap();
    t.tick();
    check_hops(&mut t, 500);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_grid_is_consistent(n in 4usize..80, seed in 0u64..1000, k in 1usize..9) {
        let mut c = TwinConfig::default();
        c.topology.kind = TopologyKind::Grid;
        c.topology.num_nodes = n;
        c.topology.max_neighbors = k;
        c.dynamics.link_degradation = true;
        let mut t = Twin::new(&c, seed).unwrap();
        for _ in 0..5 { t.tick(); }
        check_tables(&t);
        check_hops(&mut t, seed as usize % n);
        let _ = RadioConfig::default();
    }
}

/// Sizes whose links would not fit in memory are refused up front, naming the field; large
/// sparse meshes are fine (memory grows with the links, not with n²).
#[test]
fn huge_meshes_are_bounded_by_their_links() {
    let mut cfg = meshrl_twin::TwinConfig::default();
    cfg.topology.num_nodes = 100_000;
    let e = meshrl_twin::Twin::new(&cfg, 0).unwrap_err().to_string();
    assert!(e.contains("topology.num_nodes") && e.contains("candidate links"), "{e}");
    cfg.topology.num_nodes = 20_000;
    cfg.topology.area_m = 8_000.0; // ~9.5 links per node
    cfg.topology.connected = false;
    let mut twin = meshrl_twin::Twin::new(&cfg, 0).unwrap();
    assert_eq!(twin.num_nodes(), 20_000);
    let d = twin.hop_distances(7).to_vec();
    assert_eq!(d[7], 0);
}
