//! The twin's routing directives as the routers and the environment honour them, and the
//! incident hooks.

use meshrl_env::twin::{Twin, NO_NEIGHBOR, QUARANTINED_TRUST};
use meshrl_env::{EnvConfig, VecEnv};
use meshrl_eval::{baseline, Decision};

fn scenario() -> EnvConfig {
    EnvConfig::from_toml_str(
        "seed = 3\n[topology]\nnum_nodes = 24\narea_m = 380.0\n[env]\nenvs_per_twin = 16\n",
        "t.toml",
    )
    .unwrap()
}

/// ETX's next hop for a packet at `node` towards `dest`, with a mask of every occupied slot.
fn etx_hop(router: &mut dyn meshrl_eval::Router, twin: &Twin, node: usize, dest: usize) -> u32 {
    let mask: Vec<i8> = twin
        .neighbors(node)
        .iter()
        .map(|&v| (v != NO_NEIGHBOR) as i8)
        .collect();
    let d = Decision {
        env: 0,
        obs: &[],
        mask: &mask,
        node,
        dest,
        episode: 0,
        hops: 0,
    };
    twin.neighbors(node)[router.next_hop(0, twin, &d)]
}

#[test]
fn etx_routes_around_a_quarantined_node_unless_it_is_the_destination() {
    let mut twin = Twin::new(&scenario().twin_config(), 1).unwrap();
    let mut router = baseline("etx", 0).unwrap();
    let n = twin.num_nodes();
    // A relay ETX uses: the first hop of some packet that is not its destination.
    let (src, dest, relay) = (0..n)
        .flat_map(|s| (0..n).map(move |t| (s, t)))
        .filter(|(s, t)| s != t)
        .find_map(|(s, t)| {
            let v = etx_hop(router.as_mut(), &twin, s, t) as usize;
            (v != t
                && twin
                    .neighbors(s)
                    .iter()
                    .filter(|&&x| x != NO_NEIGHBOR)
                    .count()
                    > 1)
            .then_some((s, t, v))
        })
        .unwrap();
    twin.set_quarantined(relay, true);
    assert!(twin.is_quarantined(relay));
    assert!(twin.trust(relay) <= QUARANTINED_TRUST);
    assert_ne!(etx_hop(router.as_mut(), &twin, src, dest) as usize, relay);
    // Towards the quarantined node itself, it is still the way.
    if twin.neighbors(src).contains(&(relay as u32)) {
        assert_eq!(etx_hop(router.as_mut(), &twin, src, relay) as usize, relay);
    }
    twin.set_quarantined(relay, false);
    assert!(!twin.has_directives());
    assert_eq!(etx_hop(router.as_mut(), &twin, src, dest) as usize, relay);
}

#[test]
fn the_action_mask_hides_quarantined_relays_but_never_strands_a_packet() {
    let mut env = VecEnv::new(scenario(), 16).unwrap();
    env.reset(Some(5)).unwrap();
    let k = env.max_neighbors();
    // Quarantine every node: a packet keeps a next hop anyway.
    let n = env.twins()[0].num_nodes();
    for u in 0..n {
        env.twins_mut()[0].set_quarantined(u, true);
    }
    env.step(&[0; 16]).unwrap();
    env.step(&[0; 16]).unwrap();
    let b = env.buffers();
    for i in 0..16 {
        let twin = env.twin_of(i);
        let node = b.info[i].node as usize;
        let occupied = twin
            .neighbors(node)
            .iter()
            .filter(|&&v| v != NO_NEIGHBOR)
            .count();
        let valid = b.mask[i * k..(i + 1) * k]
            .iter()
            .filter(|&&m| m != 0)
            .count();
        assert!(occupied == 0 || valid >= 1, "env {i} stranded");
    }
    // Quarantine one node only: no mask offers it unless it is the destination.
    for u in 0..n {
        env.twins_mut()[0].set_quarantined(u, u == 3);
    }
    for _ in 0..20 {
        env.step(&[0; 16]).unwrap();
        let b = env.buffers();
        for i in 0..16 {
            let twin = env.twin_of(i);
            let (node, dest) = (b.info[i].node as usize, b.info[i].destination as usize);
            let alternatives = twin
                .neighbors(node)
                .iter()
                .filter(|&&v| v != NO_NEIGHBOR && v != 3)
                .count();
            for (s, &v) in twin.neighbors(node).iter().enumerate() {
                if v == 3 && dest != 3 && alternatives > 0 {
                    assert_eq!(
                        b.mask[i * k + s],
                        0,
                        "env {i} may send to the quarantined node"
                    );
                }
            }
        }
    }
}

#[test]
fn incident_hooks_change_the_mesh_and_watchdogs_see_it() {
    let cfg = scenario();
    let mut twin = Twin::new(&cfg.twin_config(), 2).unwrap();
    let (a, b) = (0..twin.num_nodes())
        .find_map(|u| {
            twin.neighbors(u)
                .iter()
                .find(|&&v| v != NO_NEIGHBOR)
                .map(|&v| (u, v as usize))
        })
        .unwrap();
    let slot = twin
        .neighbors(a)
        .iter()
        .position(|&v| v as usize == b)
        .unwrap();
    let before = twin.link_metrics(a)[slot].packet_loss;
    assert!(twin.set_link_extra_loss_db(a, b, 40.0));
    twin.tick();
    let after = twin
        .neighbors(a)
        .iter()
        .position(|&v| v as usize == b)
        .map(|s| twin.link_metrics(a)[s].packet_loss);
    assert!(after.is_none_or(|l| l > before), "{before} -> {after:?}");
    assert!(
        !twin.set_link_extra_loss_db(a, a, 1.0),
        "no link from a node to itself"
    );
    // A node that turns malicious is overheard dropping.
    twin.set_untrusted(b, true);
    let seen = twin.overheard(b);
    for _ in 0..400 {
        twin.tick();
    }
    let now = twin.overheard(b);
    assert!(
        now.dropped > seen.dropped && now.forwarded > seen.forwarded,
        "{seen:?} -> {now:?}"
    );
}
