//! A node's observation, built by the runtime from raw measurements, is the environment's
//! observation: the raw values are read from the twin and the routing adverts as
//! `meshrl_env::obs::write_observation` reads them, for both feature sets, on a mesh with
//! churn, queues and untrusted nodes.

mod common;

use meshrl_env::advert::Adverts;
use meshrl_env::obs::{write_observation, Header};
use meshrl_env::twin::{Twin, NO_NEIGHBOR, UNREACHABLE};
use meshrl_env::{EnvConfig, FeatureSet};
use meshrl_ppo::Architecture;
use meshrl_runtime::{Error, NodeContext, Policy, SlotMeasurement};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn runtime_policy(arch: Architecture, features: FeatureSet) -> Policy {
    let path = common::export(
        &common::untrained(arch, features),
        &format!("obs-{}", common::variant_name(arch, features)),
        false,
    );
    Policy::from_bytes(&std::fs::read(path).unwrap()).unwrap()
}

/// The neighbour table of `node` for a packet to `dest` in raw units, as the node's routing
/// daemon would report it.
fn raw_table(
    twin: &Twin,
    adverts: &mut Adverts,
    node: usize,
    dest: usize,
    visited: &[u32],
) -> Vec<Option<SlotMeasurement>> {
    let paths = adverts.to_destination(dest).clone();
    let hops = twin.cached_hop_distances(dest);
    twin.neighbors(node)
        .iter()
        .zip(twin.link_metrics(node))
        .map(|(&v, m)| {
            (v != NO_NEIGHBOR).then(|| {
                let v = v as usize;
                SlotMeasurement {
                    rssi_dbm: m.rssi_dbm,
                    latency_ms: m.latency_ms,
                    packet_loss: m.packet_loss,
                    hops_to_destination: (hops[v] != UNREACHABLE).then_some(hops[v] as u32),
                    bandwidth_mbps: m.bandwidth_mbps,
                    trust: twin.trust(v),
                    etx_to_destination: paths.etx[v],
                    latency_to_destination_ms: paths.latency_ms[v],
                    queue: adverts.queue(v),
                    visited: visited.contains(&(v as u32)),
                }
            })
        })
        .collect()
}

fn builder_matches_environment(cfg: &EnvConfig, features: FeatureSet) {
    let policy = runtime_policy(Architecture::Slots, features);
    let spec = *policy.obs_spec();
    let mut scratch = policy.scratch();
    let (d, k) = (policy.obs_dim(), policy.num_actions());
    let mut twin = Twin::new(&cfg.twin_config(), 7).expect("twin");
    assert_eq!(twin.max_neighbors(), k);
    let mut adverts = Adverts::new(cfg.env.advert_period_ticks);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let n = twin.num_nodes();
    let (mut env_obs, mut env_mask) = (vec![0.0f32; d], vec![0i8; k]);
    let (mut obs, mut mask) = (vec![0.0f32; d], vec![false; k]);
    let (mut compared, mut no_route, mut visited_seen) = (0, 0, 0);
    for _tick in 0..120 {
        twin.tick();
        adverts.refresh(&twin);
        for _ in 0..8 {
            let (node, dest) = (rng.random_range(0..n), rng.random_range(0..n));
            twin.refresh_hop_distances(dest);
            let ttl = cfg.env.ttl;
            let hops_taken = rng.random_range(0..=ttl);
            let visited: Vec<u32> = (0..rng.random_range(0..6)).map(|_| rng.random_range(0..n as u32)).collect();
            let header = Header { node, dest, hops_taken, ttl, visited: &visited };
            write_observation(features, &twin, &mut adverts, &header, &mut env_obs, &mut env_mask);
            let table = raw_table(&twin, &mut adverts, node, dest, &visited);
            let context = NodeContext { queue: twin.queue(node), hops_taken, ttl };
            spec.build(&table, &context, &mut obs, &mut mask, &mut scratch)
                .unwrap_or_else(|e| panic!("{table:?} {context:?}: {e}"));
            assert_eq!(obs, env_obs, "node {node} to {dest}: observations differ");
            assert_eq!(mask, env_mask.iter().map(|&m| m != 0).collect::<Vec<_>>());
            compared += 1;
            no_route += table.iter().flatten().filter(|m| !m.etx_to_destination.is_finite()).count();
            visited_seen += table.iter().flatten().filter(|m| m.visited).count();
            // The policy acts on it.
            if mask.iter().any(|&m| m) {
                policy.act(&obs, &mask, &mut scratch).unwrap();
            }
        }
    }
    eprintln!("{}: {compared} observations, {no_route} slots without a route, {visited_seen} visited", features.name());
    if features == FeatureSet::Routing {
        assert!(visited_seen > 0, "no visited neighbour was ever tested");
    }
}

#[test]
fn spec_observations_from_raw_measurements_are_the_environments() {
    builder_matches_environment(&common::env_config(FeatureSet::Spec), FeatureSet::Spec);
}

#[test]
fn routing_observations_from_raw_measurements_are_the_environments() {
    builder_matches_environment(&common::env_config(FeatureSet::Routing), FeatureSet::Routing);
    // A dynamic mesh: churn (unreachable destinations), queues, untrusted nodes.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/env/dynamic.toml");
    let mut cfg = EnvConfig::from_toml_file(path).expect("dynamic.toml");
    cfg.env.features = FeatureSet::Routing;
    builder_matches_environment(&cfg, FeatureSet::Routing);
}

fn slot() -> SlotMeasurement {
    SlotMeasurement {
        rssi_dbm: -60.0,
        latency_ms: 50.0,
        packet_loss: 0.1,
        hops_to_destination: Some(40),
        bandwidth_mbps: 32.5,
        trust: 0.8,
        etx_to_destination: 4.0,
        latency_to_destination_ms: 100.0,
        queue: 0.25,
        visited: true,
    }
}

#[test]
fn built_observations_use_the_documented_normalization() {
    let policy = runtime_policy(Architecture::Mlp, FeatureSet::Routing);
    let (d, k) = (policy.obs_dim(), policy.num_actions());
    let mut scratch = policy.scratch();
    let (mut obs, mut mask) = (vec![9.0f32; d], vec![true; k]);
    let mut table = vec![None; k];
    table[1] = Some(slot());
    // Slot 3: a perfect link one advertised transmission from the destination: the ETX route.
    table[3] = Some(SlotMeasurement { packet_loss: 0.0, etx_to_destination: 1.0, visited: false, ..slot() });
    table[5] = Some(SlotMeasurement { etx_to_destination: f32::INFINITY, latency_to_destination_ms: f32::INFINITY, ..slot() });
    let context = NodeContext { queue: 0.5, hops_taken: 8, ttl: 32 };
    policy.obs_spec().build(&table, &context, &mut obs, &mut mask, &mut scratch).unwrap();
    let f = 11;
    let want = [-0.2, 0.5, 0.1, 1.0, 0.5, 0.8, 0.5, 0.0, 0.5, 0.25, 1.0];
    let excess = (1.0 / 0.9 + 4.0 - 2.0) / 4.0;
    for (j, (&got, &want)) in obs[f..2 * f].iter().zip(&want).enumerate() {
        let want = if j == 7 { excess } else { want };
        assert!((got - want).abs() < 1e-6, "feature {j}: {got} != {want}");
    }
    assert_eq!(obs[3 * f + 7], 0.0, "the ETX route has no excess");
    assert_eq!(obs[3 * f + 10], 0.0);
    assert_eq!((obs[5 * f + 6], obs[5 * f + 7], obs[5 * f + 8]), (1.0, 1.0, 1.0), "no route");
    assert!(obs[..f].iter().chain(&obs[2 * f..3 * f]).all(|&x| x == 0.0), "empty slots are zero");
    assert_eq!(&obs[k * f..], &[0.5, 0.75, 0.25]);
    assert_eq!(mask, [false, true, false, true, false, true, false, false]);

    // The spec set reads the first six fields and the queue only.
    let spec = runtime_policy(Architecture::Slots, FeatureSet::Spec);
    let mut scratch = spec.scratch();
    let (mut obs, mut mask) = (vec![0.0f32; spec.obs_dim()], vec![false; k]);
    let spec_context = NodeContext { queue: 0.25, ..Default::default() };
    spec.obs_spec().build(&table, &spec_context, &mut obs, &mut mask, &mut scratch).unwrap();
    for (got, want) in obs[6..12].iter().zip(&want[..6]) {
        assert!((got - want).abs() < 1e-6, "{got} != {want}");
    }
    assert_eq!(obs[8 * 6], 0.25);
}

#[test]
fn bad_measurements_are_errors_naming_the_field() {
    let policy = runtime_policy(Architecture::Slots, FeatureSet::Routing);
    let k = policy.num_actions();
    let mut scratch = policy.scratch();
    let (mut obs, mut mask) = (vec![0.0f32; policy.obs_dim()], vec![false; k]);
    let context = NodeContext { queue: 0.5, hops_taken: 1, ttl: 32 };
    let mut build = |m: SlotMeasurement, c: NodeContext| {
        let mut table = vec![None; k];
        table[2] = Some(m);
        policy.obs_spec().build(&table, &c, &mut obs, &mut mask, &mut scratch).map_err(|e| e.to_string())
    };
    build(slot(), context).unwrap();
    let cases: [(SlotMeasurement, &str); 9] = [
        (SlotMeasurement { latency_ms: -1.0, ..slot() }, "slot 2: latency_ms is -1"),
        (SlotMeasurement { rssi_dbm: f32::NAN, ..slot() }, "rssi_dbm is NaN"),
        (SlotMeasurement { packet_loss: 1.5, ..slot() }, "packet_loss"),
        (SlotMeasurement { packet_loss: f32::NAN, ..slot() }, "packet_loss"),
        (SlotMeasurement { trust: -0.1, ..slot() }, "trust"),
        (SlotMeasurement { bandwidth_mbps: f32::INFINITY, ..slot() }, "bandwidth_mbps"),
        (SlotMeasurement { etx_to_destination: -2.0, ..slot() }, "etx_to_destination"),
        (SlotMeasurement { latency_to_destination_ms: -2.0, ..slot() }, "latency_to_destination_ms"),
        (SlotMeasurement { queue: 2.0, ..slot() }, "queue"),
    ];
    for (m, expect) in cases {
        let e = build(m, context).unwrap_err();
        assert!(e.starts_with("bad `slots`") && e.contains(expect), "{m:?}: {e}");
    }
    // No route is not an error.
    build(SlotMeasurement { etx_to_destination: f32::NAN, latency_to_destination_ms: f32::INFINITY, ..slot() }, context)
        .unwrap();
    for (c, expect) in [
        (NodeContext { queue: f32::NAN, ..context }, "queue is NaN"),
        (NodeContext { queue: -0.5, ..context }, "queue is -0.5"),
        (NodeContext { hops_taken: 33, ..context }, "hops_taken 33"),
        (NodeContext { ttl: 0, hops_taken: 0, ..context }, "ttl 0"),
    ] {
        let e = build(slot(), c).unwrap_err();
        assert!(e.starts_with("bad `context`") && e.contains(expect), "{c:?}: {e}");
    }
    // Buffers and tables of the wrong size.
    let e = policy
        .obs_spec()
        .build(&[None], &context, &mut obs, &mut mask, &mut scratch)
        .unwrap_err();
    assert!(matches!(e, Error::Input { what: "slots", .. }), "{e}");
    let mut short = vec![0.0f32; 3];
    let e = policy
        .obs_spec()
        .build(&vec![None; k], &context, &mut short, &mut mask, &mut scratch)
        .unwrap_err();
    assert!(matches!(e, Error::Input { what: "obs", .. }), "{e}");
}
