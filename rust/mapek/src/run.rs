//! Runs a scenario tick by tick with a router, incidents and (optionally) one MAPE-K loop per
//! twin, and records every packet with the tick it started.
//!
//! Pairing: as in `meshrl_eval::evaluate`, packet `j` of environment `i` draws its source,
//! destination and every hop's randomness from a stream seeded by (`seed + i`, `j`), and the
//! twins evolve from their own RNG, which neither routing nor the loop's directives touch
//! (a directive is routing state). Two runs with the same seed therefore route the same
//! packets over the same mesh evolution; queues aside, which their own traffic fills.

use meshrl_env::twin::Twin;
use meshrl_env::{AutoresetMode, EnvConfig, InvalidAction, Outcome, VecEnv};
use meshrl_eval::{baseline, Decision, Router};
use serde::Serialize;

use crate::incident::IncidentRun;
use crate::plan::MapeLoop;
use crate::MapekError;

/// One finished packet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PacketRecord {
    pub twin: u32,
    pub env: u32,
    pub episode: u64,
    /// Tick of the twin when the packet started and when it ended.
    pub start_tick: u64,
    pub end_tick: u64,
    pub delivered: bool,
    /// `LossCause as u8` when lost, else 0.
    pub loss_cause: u8,
    /// End-to-end latency, ms.
    pub latency_ms: f32,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Simulation {
    /// The scenario; `env.envs_per_twin` packets are in flight on each twin.
    pub cfg: EnvConfig,
    pub twins: usize,
    pub ticks: u64,
    pub seed: u64,
    /// Baseline router name; each twin gets its own instance (a tune acts on one mesh).
    pub router: String,
}

/// Runs `sim`. `incidents[g]` play out on twin `g`, then `loops[g]` (if given) monitors and
/// acts on it, then `observer(g, twin)` sees it (and may change it: a test's own event); all
/// once per tick, after the twin ticked.
pub fn simulate(
    sim: &Simulation,
    incidents: &mut [Vec<IncidentRun>],
    mut loops: Option<&mut [MapeLoop]>,
    observer: &mut dyn FnMut(usize, &mut Twin),
) -> Result<Vec<PacketRecord>, MapekError> {
    let mut cfg = sim.cfg.clone();
    cfg.env.autoreset_mode = AutoresetMode::NextStep;
    cfg.env.invalid_action = InvalidAction::Lose;
    let per = cfg.env.envs_per_twin;
    let num_envs = per * sim.twins;
    assert_eq!(incidents.len(), sim.twins, "one incident list per twin");
    if let Some(l) = &loops {
        assert_eq!(l.len(), sim.twins, "one loop per twin");
    }
    let mut env = VecEnv::new(cfg, num_envs)?;
    env.reset(Some(sim.seed))?;
    let mut routers: Vec<Box<dyn Router>> = (0..sim.twins)
        .map(|_| baseline(&sim.router, sim.seed).expect("router name validated by the caller"))
        .collect();
    routers.iter_mut().for_each(|r| r.reset());
    let (k, d) = (env.max_neighbors(), env.obs_dim());
    let mut start = vec![0u64; num_envs];
    let mut finished = vec![false; num_envs];
    let mut actions = vec![0i64; num_envs];
    let mut before = vec![0f32; num_envs];
    let mut from = vec![(0usize, 0usize); num_envs];
    let mut packets = Vec::new();
    for _ in 0..sim.ticks {
        {
            let b = env.buffers();
            for i in 0..num_envs {
                let info = &b.info[i];
                before[i] = info.latency_ms;
                from[i] = (info.node as usize, info.destination as usize);
                actions[i] = if finished[i] {
                    0 // ignored: this step resets the environment
                } else {
                    routers[i / per].next_hop(0, env.twin_of(i), &Decision::of(b, i, d, k)) as i64
                };
            }
        }
        env.step(&actions)?;
        let b = env.buffers();
        for i in 0..num_envs {
            let info = b.info[i];
            let twin = env.twin_of(i);
            if info.reset {
                start[i] = twin.ticks();
            } else if !finished[i] {
                let (node, dest) = from[i];
                routers[i / per].feedback(
                    0,
                    twin,
                    node,
                    actions[i] as usize,
                    dest,
                    &info,
                    info.latency_ms - before[i],
                );
            }
            finished[i] = b.terminated[i] || b.truncated[i];
            if finished[i] {
                packets.push(PacketRecord {
                    twin: (i / per) as u32,
                    env: i as u32,
                    episode: info.episode,
                    start_tick: start[i],
                    end_tick: twin.ticks(),
                    delivered: info.outcome == Outcome::Delivered,
                    loss_cause: info.loss_cause,
                    latency_ms: info.latency_ms,
                });
            }
        }
        let twins = env.twins_mut();
        for (g, twin) in twins.iter_mut().enumerate() {
            for incident in &mut incidents[g] {
                incident.apply(twin);
            }
            if let Some(loops) = loops.as_deref_mut() {
                loops[g].step(twin, routers[g].as_mut());
            }
            observer(g, twin);
        }
    }
    packets.sort_by_key(|p| (p.env, p.episode));
    Ok(packets)
}
