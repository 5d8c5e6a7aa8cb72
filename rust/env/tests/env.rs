use meshrl_env::obs::{obs_dim, FEATURES_PER_NEIGHBOR};
use meshrl_env::twin::{LossCause, NO_NEIGHBOR};
use meshrl_env::{AutoresetMode, EnvConfig, EnvError, InvalidAction, Outcome, VecEnv};
use proptest::prelude::*;

fn config(name: &str) -> EnvConfig {
    let path = format!(
        "{}/../../configs/env/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    EnvConfig::from_toml_file(path).unwrap()
}

/// Picks the valid slot whose neighbour is fewest hops from the destination (shortest path,
/// read off the observation), ties to the lowest slot.
fn shortest_path_actions(env: &VecEnv) -> Vec<i64> {
    let (k, d) = (env.max_neighbors(), env.obs_dim());
    let b = env.buffers();
    (0..env.num_envs())
        .map(|i| {
            let obs = &b.obs[i * d..(i + 1) * d];
            (0..k)
                .filter(|&s| b.mask[i * k + s] != 0)
                .min_by(|&x, &y| {
                    obs[x * FEATURES_PER_NEIGHBOR + 3]
                        .total_cmp(&obs[y * FEATURES_PER_NEIGHBOR + 3])
                })
                .unwrap_or(0) as i64
        })
        .collect()
}

/// Random valid actions from a simple LCG.
fn random_actions(env: &VecEnv, state: &mut u64) -> Vec<i64> {
    let k = env.max_neighbors();
    let b = env.buffers();
    (0..env.num_envs())
        .map(|i| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let valid: Vec<usize> = (0..k).filter(|&s| b.mask[i * k + s] != 0).collect();
            if valid.is_empty() {
                0
            } else {
                valid[(*state >> 33) as usize % valid.len()] as i64
            }
        })
        .collect()
}

fn snapshot(
    env: &VecEnv,
) -> (
    Vec<u32>,
    Vec<i8>,
    Vec<u32>,
    Vec<bool>,
    Vec<bool>,
    Vec<(u8, u8, u32, u32, u32)>,
) {
    let b = env.buffers();
    (
        b.obs.iter().map(|x| x.to_bits()).collect(),
        b.mask.clone(),
        b.reward.iter().map(|x| x.to_bits()).collect(),
        b.terminated.clone(),
        b.truncated.clone(),
        b.info
            .iter()
            .map(|i| {
                (
                    i.outcome as u8,
                    i.loss_cause,
                    i.node,
                    i.path_length,
                    i.latency_ms.to_bits(),
                )
            })
            .collect(),
    )
}

#[test]
fn mask_matches_topology_and_obs_are_finite_and_bounded() {
    let mut env = VecEnv::new(config("dynamic"), 256).unwrap();
    env.reset(Some(3)).unwrap();
    let mut rng = 1;
    let k = env.max_neighbors();
    for _ in 0..200 {
        let b = env.buffers();
        for i in 0..env.num_envs() {
            let node = b.info[i].node as usize;
            let twin = env.twin_of(i);
            let obs = &b.obs[i * env.obs_dim()..(i + 1) * env.obs_dim()];
            for s in 0..k {
                let present = twin.neighbors(node)[s] != NO_NEIGHBOR;
                assert_eq!(b.mask[i * k + s] != 0, present, "env {i} slot {s}");
                let f = &obs[s * FEATURES_PER_NEIGHBOR..(s + 1) * FEATURES_PER_NEIGHBOR];
                if present {
                    assert!((-1.0..=1.0).contains(&f[0]) && (0.0..1.0).contains(&f[1]));
                    assert!(f[2..].iter().all(|x| (0.0..=1.0).contains(x)), "{f:?}");
                } else {
                    assert!(f.iter().all(|&x| x == 0.0));
                }
            }
            assert!(obs.iter().all(|x| x.is_finite()));
        }
        let a = random_actions(&env, &mut rng);
        env.step(&a).unwrap();
    }
}

#[test]
fn delivered_packets_took_a_real_path() {
    let mut env = VecEnv::new(config("dynamic"), 128).unwrap();
    env.reset(Some(11)).unwrap();
    let n = env.num_envs();
    let mut paths: Vec<Vec<u32>> = (0..n).map(|i| vec![env.buffers().info[i].source]).collect();
    let mut delivered = 0;
    for _ in 0..400 {
        let a = shortest_path_actions(&env);
        // The neighbour each action names, read from the twin before stepping.
        let expected: Vec<u32> = (0..n)
            .map(|i| {
                env.twin_of(i)
                    .neighbors(env.buffers().info[i].node as usize)[a[i] as usize]
            })
            .collect();
        let was_reset: Vec<bool> = (0..n)
            .map(|i| env.buffers().terminated[i] || env.buffers().truncated[i])
            .collect();
        env.step(&a).unwrap();
        let b = env.buffers();
        for i in 0..n {
            let info = b.info[i];
            if was_reset[i] {
                assert!(info.reset && b.reward[i] == 0.0 && !b.terminated[i] && !b.truncated[i]);
                assert_eq!(info.path_length, 0);
                paths[i] = vec![info.source];
                continue;
            }
            if info.outcome != Outcome::Lost {
                assert_eq!(info.node, expected[i], "env {i} moved to a non-neighbour");
                paths[i].push(info.node);
            }
            assert_eq!(
                info.path_length as usize,
                paths[i].len() - 1 + (info.outcome == Outcome::Lost) as usize
            );
            if info.outcome == Outcome::Delivered {
                delivered += 1;
                assert_eq!(*paths[i].last().unwrap(), info.destination);
                assert_eq!(paths[i][0], info.source);
                assert!(info.latency_ms > 0.0);
            }
        }
    }
    assert!(delivered > 1000, "only {delivered} deliveries");
}

#[test]
fn same_seed_same_result_for_any_thread_count() {
    let run = |threads: usize, seed: u64| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut cfg = config("dynamic");
            cfg.env.envs_per_twin = 8;
            let mut env = VecEnv::new(cfg, 100).unwrap();
            env.reset(Some(seed)).unwrap();
            let mut rng = 7;
            for _ in 0..150 {
                let a = random_actions(&env, &mut rng);
                env.step(&a).unwrap();
            }
            snapshot(&env)
        })
    };
    assert_eq!(run(1, 42), run(2, 42));
    assert_eq!(run(1, 42), run(4, 42));
    assert_ne!(run(1, 42), run(1, 43));
}

#[test]
fn vector_env_agrees_with_single_envs_seeded_seed_plus_i() {
    let mut cfg = config("dynamic");
    cfg.env.envs_per_twin = 1;
    let n = 6;
    let mut vec_env = VecEnv::new(cfg.clone(), n).unwrap();
    vec_env.reset(Some(100)).unwrap();
    let mut singles: Vec<VecEnv> = (0..n)
        .map(|_| VecEnv::new(cfg.clone(), 1).unwrap())
        .collect();
    for (i, s) in singles.iter_mut().enumerate() {
        s.reset(Some(100 + i as u64)).unwrap();
    }
    let mut rng = 3;
    for _ in 0..300 {
        let a = random_actions(&vec_env, &mut rng);
        vec_env.step(&a).unwrap();
        for (i, s) in singles.iter_mut().enumerate() {
            s.step(&a[i..i + 1]).unwrap();
            let (vb, sb) = (vec_env.buffers(), s.buffers());
            let d = vec_env.obs_dim();
            assert_eq!(&vb.obs[i * d..(i + 1) * d], &sb.obs[..]);
            assert_eq!(vb.reward[i], sb.reward[0]);
            assert_eq!(vb.terminated[i], sb.terminated[0]);
            assert_eq!(vb.info[i], sb.info[0]);
        }
    }
}

#[test]
fn next_step_autoreset_ignores_the_action_after_an_episode_ends() {
    let mut env = VecEnv::new(config("small"), 64).unwrap();
    env.reset(Some(0)).unwrap();
    let mut rng = 5;
    let mut checked = 0;
    for _ in 0..100 {
        let done: Vec<bool> = (0..64)
            .map(|i| env.buffers().terminated[i] || env.buffers().truncated[i])
            .collect();
        let a = random_actions(&env, &mut rng);
        // Same step from a clone with different actions for the finished environments.
        let mut other = VecEnv::new(config("small"), 64).unwrap();
        other.reset(Some(0)).unwrap();
        env.step(&a).unwrap();
        let _ = &mut other;
        let b = env.buffers();
        for i in 0..64 {
            if done[i] {
                checked += 1;
                assert!(b.info[i].reset);
                assert_eq!(
                    (b.reward[i], b.terminated[i], b.truncated[i]),
                    (0.0, false, false)
                );
                assert_eq!(b.info[i].path_length, 0);
                assert_eq!(b.info[i].node, b.info[i].source);
            } else {
                assert!(!b.info[i].reset);
            }
        }
    }
    assert!(checked > 100);

    // The ignored action really is ignored: any value gives the same next state.
    let mut a_env = VecEnv::new(config("small"), 1).unwrap();
    a_env.reset(Some(9)).unwrap();
    let mut rng = 1;
    while !(a_env.buffers().terminated[0] || a_env.buffers().truncated[0]) {
        let a = random_actions(&a_env, &mut rng);
        a_env.step(&a).unwrap();
    }
    let mut results = vec![];
    for action in 0..a_env.max_neighbors() as i64 {
        let mut e = VecEnv::new(config("small"), 1).unwrap();
        e.reset(Some(9)).unwrap();
        let mut rng = 1;
        while !(e.buffers().terminated[0] || e.buffers().truncated[0]) {
            let a = random_actions(&e, &mut rng);
            e.step(&a).unwrap();
        }
        e.step(&[action]).unwrap();
        results.push(snapshot(&e));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn same_step_autoreset_returns_the_final_obs_in_final_obs() {
    let mut next = config("small");
    next.env.envs_per_twin = 1;
    let mut same = next.clone();
    same.env.autoreset_mode = AutoresetMode::SameStep;
    let mut a = VecEnv::new(next, 16).unwrap();
    let mut b = VecEnv::new(same, 16).unwrap();
    a.reset(Some(1)).unwrap();
    b.reset(Some(1)).unwrap();
    let mut rng = 2;
    let d = a.obs_dim();
    let mut ended = 0;
    // Up to each environment's first episode end the two modes see the same world.
    let mut first_done = vec![false; 16];
    for _ in 0..40 {
        let acts = random_actions(&b, &mut rng);
        a.step(&acts).unwrap();
        b.step(&acts).unwrap();
        let (ab, bb) = (a.buffers(), b.buffers());
        for i in 0..16 {
            if first_done[i] {
                continue;
            }
            assert_eq!(ab.reward[i], bb.reward[i]);
            assert_eq!(ab.terminated[i], bb.terminated[i]);
            if ab.terminated[i] || ab.truncated[i] {
                first_done[i] = true;
                ended += 1;
                assert_eq!(
                    &bb.final_obs[i * d..(i + 1) * d],
                    &ab.obs[i * d..(i + 1) * d]
                );
                assert_eq!(bb.final_info[i].outcome, ab.info[i].outcome);
                assert!(bb.info[i].reset && bb.info[i].path_length == 0);
            } else {
                assert_eq!(&bb.obs[i * d..(i + 1) * d], &ab.obs[i * d..(i + 1) * d]);
            }
        }
    }
    assert!(ended >= 10, "{ended}");
}

#[test]
fn invalid_actions_lose_the_packet_or_error_without_stepping() {
    let mut cfg = config("small");
    cfg.topology.max_neighbors = 16; // every node has empty slots
    let mut env = VecEnv::new(cfg.clone(), 8).unwrap();
    env.reset(Some(0)).unwrap();
    let k = env.max_neighbors();
    let masked: Vec<i64> = (0..8)
        .map(|i| {
            (0..k)
                .rev()
                .find(|&s| env.buffers().mask[i * k + s] == 0)
                .unwrap() as i64
        })
        .collect();
    env.step(&masked).unwrap();
    for i in 0..8 {
        assert_eq!(env.buffers().info[i].outcome, Outcome::Lost);
        assert_eq!(
            env.buffers().info[i].loss_cause,
            LossCause::InvalidAction as u8
        );
        assert_eq!(env.buffers().reward[i], -5.0);
    }

    cfg.env.invalid_action = InvalidAction::Error;
    let mut env = VecEnv::new(cfg, 8).unwrap();
    assert!(matches!(env.step(&[0; 8]), Err(EnvError::NotReset)));
    env.reset(Some(0)).unwrap();
    let before = snapshot(&env);
    let e = env.step(&masked).unwrap_err();
    assert!(matches!(e, EnvError::MaskedAction { env: 0, .. }), "{e}");
    assert_eq!(snapshot(&env), before, "a failed step changed state");
    assert!(env
        .step(&[0; 7])
        .unwrap_err()
        .to_string()
        .contains("expected 8 actions"));
    assert!(env
        .step(&[99; 8])
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(env
        .step(&[-1; 8])
        .unwrap_err()
        .to_string()
        .contains("out of range"));
}

#[test]
fn rewards_follow_the_spec() {
    let cfg = config("small");
    let rw = cfg.reward.clone();
    let mut env = VecEnv::new(cfg, 64).unwrap();
    env.reset(Some(4)).unwrap();
    let mut rng = 9;
    let (mut hops, mut deliveries) = (0, 0);
    for _ in 0..300 {
        let a = random_actions(&env, &mut rng);
        let pre: Vec<_> = (0..64)
            .map(|i| {
                let info = env.buffers().info[i];
                let t = env.twin_of(i);
                let slot = a[i] as usize;
                let v = t.neighbors(info.node as usize)[slot];
                (
                    t.link_metrics(info.node as usize)[slot],
                    v,
                    env.buffers().terminated[i] || env.buffers().truncated[i],
                    info.latency_ms,
                )
            })
            .collect();
        env.step(&a).unwrap();
        let b = env.buffers();
        for i in 0..64 {
            let (link, v, was_done, lat_before) = pre[i];
            let info = b.info[i];
            if was_done {
                continue;
            }
            match info.outcome {
                Outcome::Lost => assert_eq!(b.reward[i], rw.lost),
                Outcome::Delivered => {
                    deliveries += 1;
                    let lo = rw.delivered;
                    let hi =
                        rw.delivered + rw.hop_bonus_max + rw.latency_bonus_max + rw.trust_bonus_max;
                    assert!(
                        b.reward[i] >= lo && b.reward[i] <= hi + 1e-5,
                        "{}",
                        b.reward[i]
                    );
                }
                Outcome::InFlight | Outcome::TtlExpired => {
                    hops += 1;
                    let hop_latency = info.latency_ms - lat_before;
                    let trust = env.twin_of(i).trust(v as usize);
                    let expect = -rw.latency_weight * hop_latency / 100.0
                        - rw.loss_weight * link.packet_loss
                        + rw.trust_weight * trust;
                    // The tick after the action may update the relay's trust score; allow for it.
                    assert!(
                        (b.reward[i] - expect).abs() < 0.05,
                        "{} vs {expect}",
                        b.reward[i]
                    );
                }
            }
        }
    }
    assert!(
        hops > 1000 && deliveries > 100,
        "{hops} hops, {deliveries} deliveries"
    );
}

#[test]
fn ttl_truncates_and_shortest_path_delivers_on_the_static_mesh() {
    let mut cfg = config("small");
    cfg.env.ttl = 2;
    cfg.env.min_hops = 3;
    let mut env = VecEnv::new(cfg, 32).unwrap();
    env.reset(Some(0)).unwrap();
    let a = shortest_path_actions(&env);
    env.step(&a).unwrap();
    let a = shortest_path_actions(&env);
    env.step(&a).unwrap();
    let b = env.buffers();
    let truncated = (0..32).filter(|&i| b.truncated[i]).count();
    assert!(truncated > 20, "{truncated}");
    for i in 0..32 {
        if b.truncated[i] {
            assert_eq!(b.info[i].outcome, Outcome::TtlExpired);
            assert!(!b.terminated[i]);
        }
    }

    // On a static mesh, hop-count shortest path never exceeds TTL and never takes more hops
    // than the shortest path; what it loses, it loses on lossy links or in queues that the
    // 64 packets sharing each twin fill.
    let mut env = VecEnv::new(config("small"), 256).unwrap();
    env.reset(Some(0)).unwrap();
    let (mut delivered, mut ended) = (0, 0);
    for _ in 0..200 {
        let a = shortest_path_actions(&env);
        env.step(&a).unwrap();
        for i in 0..256 {
            let info = env.buffers().info[i];
            if info.outcome != Outcome::InFlight {
                ended += 1;
                assert_ne!(info.outcome, Outcome::TtlExpired);
                if info.outcome == Outcome::Lost {
                    let cause = info.loss_cause;
                    assert!(
                        cause == LossCause::LinkLoss as u8 || cause == LossCause::Congestion as u8,
                        "{cause}"
                    );
                } else {
                    delivered += 1;
                    assert_eq!(info.path_length, info.shortest_hops);
                }
            }
        }
    }
    let ratio = delivered as f64 / ended as f64;
    assert!(ratio > 0.7, "shortest path delivered {ratio}");
}

#[test]
fn churn_loses_packets_at_departed_nodes() {
    let mut cfg = config("dynamic");
    cfg.dynamics.leave_probability = 0.05;
    cfg.dynamics.join_probability = 0.2;
    let mut env = VecEnv::new(cfg, 256).unwrap();
    env.reset(Some(0)).unwrap();
    let mut rng = 4;
    let mut causes = std::collections::HashMap::new();
    for _ in 0..200 {
        let a = random_actions(&env, &mut rng);
        env.step(&a).unwrap();
        for info in &env.buffers().info {
            if info.outcome == Outcome::Lost {
                *causes.entry(info.loss_cause).or_insert(0) += 1;
            }
        }
    }
    assert!(
        causes
            .get(&(LossCause::NodeDown as u8))
            .copied()
            .unwrap_or(0)
            > 10,
        "{causes:?}"
    );
    assert!(
        causes
            .get(&(LossCause::UntrustedDrop as u8))
            .copied()
            .unwrap_or(0)
            > 10,
        "{causes:?}"
    );
}

#[test]
fn freifunk_twins_run_as_environments() {
    let topo = std::env::var("MESHRL_TOPOLOGIES").unwrap_or_else(|_| {
        format!(
            "{}/../../../shared/data/topologies",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let text = format!(
        "[topology]\nkind = \"file\"\npath = \"{topo}/freifunk-leipzig.json\"\n[env]\nttl = 64\n"
    );
    let cfg = EnvConfig::from_toml_str(&text, "inline.toml").unwrap();
    let mut env = VecEnv::new(cfg, 64).unwrap();
    env.reset(Some(0)).unwrap();
    let mut delivered = 0;
    for _ in 0..200 {
        let a = shortest_path_actions(&env);
        env.step(&a).unwrap();
        delivered += env
            .buffers()
            .info
            .iter()
            .filter(|i| i.outcome == Outcome::Delivered)
            .count();
    }
    assert!(delivered > 100, "{delivered}");
}

#[test]
fn shipped_configs_are_valid() {
    for name in ["small", "dynamic", "large"] {
        let cfg = config(name);
        assert_eq!(obs_dim(cfg.topology.max_neighbors), 49);
        VecEnv::new(cfg, 4).unwrap();
    }
    assert_eq!(config("small").topology.num_nodes, 16);
    assert_eq!(config("dynamic").topology.num_nodes, 32);
    assert_eq!(config("large").topology.num_nodes, 200);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn any_batch_size_and_grouping_steps_cleanly(b in 1usize..300, per in 1usize..100, seed in 0u64..100) {
        let mut cfg = config("dynamic");
        cfg.env.envs_per_twin = per;
        let mut env = VecEnv::new(cfg, b).unwrap();
        env.reset(Some(seed)).unwrap();
        let mut rng = seed + 1;
        for _ in 0..20 {
            let a = random_actions(&env, &mut rng);
            env.step(&a).unwrap();
            let buf = env.buffers();
            prop_assert!(buf.obs.iter().all(|x| x.is_finite()));
            prop_assert!(buf.reward.iter().all(|x| x.is_finite()));
            for i in 0..b {
                prop_assert!(!(buf.terminated[i] && buf.truncated[i]));
            }
        }
    }
}

fn routing(name: &str) -> EnvConfig {
    let mut cfg = config(name);
    cfg.env.features = meshrl_env::FeatureSet::Routing;
    cfg
}

/// The `routing` layout: 11 features per slot and 3 of context; the ETX route's slot has
/// `etx_excess` 0; the node a packet came from is flagged as visited.
#[test]
fn routing_features_show_the_etx_route_and_the_visited_set() {
    let cfg = routing("small");
    let k = cfg.topology.max_neighbors;
    let f = meshrl_env::FeatureSet::Routing.per_slot();
    let mut env = VecEnv::new(cfg, 16).unwrap();
    assert_eq!(env.obs_dim(), k * f + 3);
    env.reset(Some(3)).unwrap();
    let d = env.obs_dim();
    let mut saw_visited = 0;
    for _ in 0..40 {
        let b = env.buffers();
        let mut actions = Vec::new();
        for i in 0..16 {
            let (o, m) = (&b.obs[i * d..(i + 1) * d], &b.mask[i * k..(i + 1) * k]);
            let valid: Vec<usize> = (0..k).filter(|&s| m[s] != 0).collect();
            // Exactly the slots at the least path cost have excess 0; all in [0, 1].
            assert!(valid.iter().any(|&s| o[s * f + 7] == 0.0), "no ETX route among {valid:?}");
            assert!(valid.iter().all(|&s| (0.0..=1.0).contains(&o[s * f + 7])));
            assert!((0.0..=1.0).contains(&o[k * f + 1]) && (0.0..=1.0).contains(&o[k * f + 2]));
            let info = b.info[i];
            if info.path_length > 0 {
                // Some slot holds a node the packet passed through (the previous hop, unless
                // the link is gone).
                saw_visited += valid.iter().any(|&s| o[s * f + 10] == 1.0) as usize;
            }
            // Follow the ETX route.
            actions.push(valid.iter().copied().find(|&s| o[s * f + 7] == 0.0).unwrap_or(0) as i64);
        }
        env.step(&actions).unwrap();
    }
    assert!(saw_visited > 50, "visited flags seen {saw_visited} times");
}

/// Potential-based shaping telescopes: with `shaping_gamma = 1`, an episode's shaped return is
/// its unshaped return plus `shaping × min(etx(source → destination), 32)` (−Φ(s₀)), whatever
/// route the packet took.
#[test]
fn shaping_changes_each_return_by_the_start_potential_only() {
    let mut plain = routing("small");
    plain.env.autoreset_mode = AutoresetMode::SameStep;
    plain.reward.kind = meshrl_env::RewardKind::Delivery;
    let mut shaped = plain.clone();
    shaped.reward.shaping = 0.5;
    shaped.reward.shaping_gamma = 1.0;
    let n = 32;
    let (mut a, mut b) = (VecEnv::new(plain, n).unwrap(), VecEnv::new(shaped, n).unwrap());
    a.reset(Some(9)).unwrap();
    b.reset(Some(9)).unwrap();
    let mut adverts = meshrl_env::advert::Adverts::new(10);
    let mut state = 7u64;
    let mut checked = 0;
    for _ in 0..300 {
        assert_eq!(a.buffers().obs.len(), b.buffers().obs.len());
        let actions = random_actions(&a, &mut state);
        a.step(&actions).unwrap();
        b.step(&actions).unwrap();
        let (ba, bb) = (a.buffers(), b.buffers());
        for i in 0..n {
            if ba.terminated[i] || ba.truncated[i] {
                let (fa, fb) = (ba.final_info[i], bb.final_info[i]);
                assert_eq!((fa.source, fa.destination, fa.outcome), (fb.source, fb.destination, fb.outcome));
                // The static mesh's ETX distances never change, so any snapshot gives Φ(s₀).
                adverts.refresh(b.twin_of(i));
                let etx = adverts.to_destination(fa.destination as usize).etx[fa.source as usize];
                let want = 0.5 * etx.min(32.0);
                if fa.outcome == Outcome::TtlExpired {
                    continue; // truncated: the last Φ(s') stays in the return
                }
                let got = fb.episode_return - fa.episode_return;
                assert!((got - want).abs() < 1e-3, "env {i}: shaped − plain = {got}, −Φ(s₀) = {want}");
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "only {checked} episodes checked");
}

/// The `delivery` reward: 1 − latency cost for a delivered packet, 0 for a lost one.
#[test]
fn delivery_reward_pays_for_delivery_and_latency_only() {
    let mut cfg = config("small");
    cfg.reward.kind = meshrl_env::RewardKind::Delivery;
    cfg.env.autoreset_mode = AutoresetMode::SameStep;
    let budget = cfg.reward.latency_budget_ms;
    let w = cfg.reward.delivery_latency_weight;
    let mut env = VecEnv::new(cfg, 32).unwrap();
    env.reset(Some(1)).unwrap();
    let (mut delivered, mut lost) = (0, 0);
    for _ in 0..200 {
        let actions = shortest_path_actions(&env);
        env.step(&actions).unwrap();
        let b = env.buffers();
        for i in 0..32 {
            if b.terminated[i] {
                let fi = b.final_info[i];
                match fi.outcome {
                    Outcome::Delivered => {
                        let want = 1.0 - w * fi.latency_ms / budget;
                        assert!((fi.episode_return - want).abs() < 1e-4, "{} vs {want}", fi.episode_return);
                        delivered += 1;
                    }
                    Outcome::Lost => {
                        assert!(fi.episode_return <= 0.0 && fi.episode_return > -1.0);
                        lost += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(delivered > 100, "{delivered} delivered, {lost} lost");
}

/// A packet at a node without neighbours is lost to `no_route`, not to an invalid action,
/// and `invalid_action = "error"` does not refuse the step.
#[test]
fn a_stranded_packet_is_lost_to_no_route() {
    let mut cfg = config("small");
    cfg.topology.radio_range_m = 1.0; // nobody hears anybody
    cfg.topology.connected = false;
    cfg.env.invalid_action = InvalidAction::Error;
    let mut env = VecEnv::new(cfg, 4).unwrap();
    env.reset(Some(0)).unwrap();
    env.step(&[0, 0, 0, 0]).unwrap();
    let b = env.buffers();
    for i in 0..4 {
        assert!(b.terminated[i]);
        assert_eq!(b.info[i].loss_cause, LossCause::NoRoute as u8);
    }
}

#[test]
fn packets_start_only_at_the_sources() {
    let mut cfg = config("small");
    cfg.env.sources = vec![2, 5];
    let mut env = VecEnv::new(cfg.clone(), 16).unwrap();
    env.reset(Some(3)).unwrap();
    let mut state = 7u64;
    let mut starts = std::collections::BTreeSet::new();
    for _ in 0..200 {
        for info in &env.buffers().info {
            starts.insert(info.source);
        }
        let a = random_actions(&env, &mut state);
        env.step(&a).unwrap();
    }
    assert_eq!(starts, [2u32, 5].into_iter().collect());

    cfg.env.sources = vec![0, 10_000];
    let err = VecEnv::new(cfg, 4).unwrap_err().to_string();
    assert!(err.contains("env.sources") && err.contains("10000"), "{err}");
}

#[test]
fn a_topology_seed_gives_every_environment_the_same_mesh() {
    let mut cfg = config("small");
    cfg.env.envs_per_twin = 1;
    let neighbours = |env: &VecEnv, i: usize| {
        let t = env.twin_of(i);
        (0..t.num_nodes()).map(|u| t.neighbors(u).to_vec()).collect::<Vec<_>>()
    };
    let mut env = VecEnv::new(cfg.clone(), 2).unwrap();
    env.reset(Some(1)).unwrap();
    assert_ne!(neighbours(&env, 0), neighbours(&env, 1), "different seeds, different meshes");
    cfg.topology.seed = Some(99);
    let mut env = VecEnv::new(cfg, 2).unwrap();
    env.reset(Some(1)).unwrap();
    assert_eq!(neighbours(&env, 0), neighbours(&env, 1));
}
