//! `VecEnv`: B routing environments stepped together into struct-of-arrays buffers.

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use meshrl_twin::{LossCause, Twin, UNREACHABLE};

use crate::advert::Adverts;
use crate::config::{AutoresetMode, EnvConfig, InvalidAction, RewardKind};
use crate::obs::{write_observation, write_spec_observation, FeatureSet, Header, NodeRows};
use crate::EnvError;

/// How a step ended for one environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// The packet is still travelling (or the environment was just reset).
    #[default]
    InFlight = 0,
    /// The packet reached its destination (terminated).
    Delivered = 1,
    /// The packet was lost; see `loss_cause` (terminated).
    Lost = 2,
    /// The packet used up its TTL (truncated).
    TtlExpired = 3,
}

/// What a user needs to evaluate routing, per environment and step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepInfo {
    pub outcome: Outcome,
    /// Index of the episode (packet) within this environment, from 0 at each seeded reset.
    pub episode: u64,
    /// `LossCause as u8` when `outcome == Lost`, else 0.
    pub loss_cause: u8,
    /// The environment started a new episode in this step (its action was ignored under
    /// NEXT_STEP autoreset, or it reset after finishing under SAME_STEP).
    pub reset: bool,
    pub source: u32,
    pub destination: u32,
    /// Node holding the packet now (the node it was lost at, if lost).
    pub node: u32,
    /// Hops taken so far in the episode.
    pub path_length: u32,
    /// Hop distance from source to destination when the episode began.
    pub shortest_hops: u32,
    /// End-to-end latency accumulated so far, ms.
    pub latency_ms: f32,
    /// Sum of rewards in the episode so far.
    pub episode_return: f32,
}

/// The state of one environment: one packet on its way.
#[derive(Clone, Debug)]
struct Packet {
    /// The episode's random stream: source and destination, then every hop's frame losses
    /// and relay behaviour. Reseeded per episode from (`seed`, `episode`), so episode `j` of
    /// environment `i` sees the same draws under any policy.
    rng: Xoshiro256PlusPlus,
    seed: u64,
    episode: u64,
    source: u32,
    dest: u32,
    node: u32,
    hops: u32,
    shortest_hops: u32,
    latency_ms: f32,
    relay_trust_sum: f32,
    episode_return: f32,
    /// Finished under NEXT_STEP: the next step resets instead of acting.
    needs_reset: bool,
    /// Finished in the current step (set in the action pass, consumed after the tick).
    done: bool,
    /// The header's visited set: the last [`VISITED_LEN`] nodes the packet was at (a ring).
    visited: [u32; VISITED_LEN],
    visited_len: u8,
    /// Shaping potential of the state last observed (`Φ(s)`, see `RewardConfig::shaping`).
    potential: f32,
}

/// Nodes a packet's header remembers (its visited set).
pub const VISITED_LEN: usize = 16;

impl Packet {
    fn visit(&mut self, node: u32) {
        let i = self.hops as usize % VISITED_LEN;
        self.visited[i] = node;
        self.visited_len = (self.visited_len as usize + 1).min(VISITED_LEN) as u8;
    }

    fn header(&self, ttl: u32) -> Header<'_> {
        Header {
            node: self.node as usize,
            dest: self.dest as usize,
            hops_taken: self.hops,
            ttl,
            visited: &self.visited[..self.visited_len as usize],
        }
    }
}

/// Contiguous output buffers, one row per environment.
#[derive(Clone, Debug, Default)]
pub struct StepBuffers {
    /// `[B, obs_dim]` observations.
    pub obs: Vec<f32>,
    /// `[B, max_neighbors]` valid-action mask (1 = a neighbour sits in the slot).
    pub mask: Vec<i8>,
    /// `[B]` rewards of the last step.
    pub reward: Vec<f32>,
    pub terminated: Vec<bool>,
    pub truncated: Vec<bool>,
    pub info: Vec<StepInfo>,
    /// `[B, obs_dim]` final observations of episodes that ended this step (SAME_STEP only;
    /// rows of other environments are stale).
    pub final_obs: Vec<f32>,
    /// `[B, max_neighbors]` masks of `final_obs` (SAME_STEP only).
    pub final_mask: Vec<i8>,
    /// Info of the step that ended an episode (SAME_STEP only).
    pub final_info: Vec<StepInfo>,
}

/// One twin and its share of every buffer, handed to a worker thread.
struct GroupView<'a> {
    twin: &'a mut Twin,
    adverts: &'a mut Adverts,
    node_rows: &'a mut NodeRows,
    packets: &'a mut [Packet],
    obs: &'a mut [f32],
    mask: &'a mut [i8],
    reward: &'a mut [f32],
    terminated: &'a mut [bool],
    truncated: &'a mut [bool],
    info: &'a mut [StepInfo],
    final_obs: &'a mut [f32],
    final_mask: &'a mut [i8],
    final_info: &'a mut [StepInfo],
}

/// B routing environments stepped together. Sub-environment `i` is seeded `seed + i`; groups of
/// `env.envs_per_twin` share a twin (seeded from their first member) and step in parallel
/// with rayon. The result is the same for any number of threads.
#[derive(Debug)]
pub struct VecEnv {
    cfg: EnvConfig,
    num_envs: usize,
    k: usize,
    obs_dim: usize,
    twins: Vec<Twin>,
    /// The routing protocol's advertisements on each twin.
    adverts: Vec<Adverts>,
    /// Each twin's per-node observation rows, shared by the packets at a node.
    node_rows: Vec<NodeRows>,
    packets: Vec<Packet>,
    buffers: StepBuffers,
    ready: bool,
}

impl VecEnv {
    /// Builds `num_envs` environments (1 ..= 10,000,000) from a validated config. Call `reset`
    /// before `step`.
    pub fn new(cfg: EnvConfig, num_envs: usize) -> Result<VecEnv, EnvError> {
        cfg.validate()?;
        if !(1..=10_000_000).contains(&num_envs) {
            return Err(EnvError::invalid(
                "num_envs",
                format!("must be in 1..=10000000, got {num_envs}"),
            ));
        }
        let k = cfg.topology.max_neighbors;
        let d = cfg.env.features.obs_dim(k);
        let same_step = cfg.env.autoreset_mode == AutoresetMode::SameStep;
        let finals = if same_step { num_envs } else { 0 };
        let buffers = StepBuffers {
            obs: vec![0.0; num_envs * d],
            mask: vec![0; num_envs * k],
            reward: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
            info: vec![StepInfo::default(); num_envs],
            final_obs: vec![0.0; finals * d],
            final_mask: vec![0; finals * k],
            final_info: vec![StepInfo::default(); finals],
        };
        let mut env = VecEnv {
            num_envs,
            k,
            obs_dim: d,
            twins: Vec::new(),
            adverts: Vec::new(),
            node_rows: Vec::new(),
            packets: Vec::new(),
            buffers,
            ready: false,
            cfg,
        };
        // Build the twins now so a bad topology fails here, not at reset.
        let seed = env.cfg.seed;
        env.build(|i| seed.wrapping_add(i as u64))?;
        Ok(env)
    }

    pub fn num_envs(&self) -> usize {
        self.num_envs
    }

    /// Neighbour-table slots, the size of the action space.
    pub fn max_neighbors(&self) -> usize {
        self.k
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    pub fn config(&self) -> &EnvConfig {
        &self.cfg
    }

    /// The output buffers of the last `reset` or `step`.
    pub fn buffers(&self) -> &StepBuffers {
        &self.buffers
    }

    /// The twins, in order; environment `i` lives on twin `i / envs_per_twin`.
    pub fn twins(&self) -> &[Twin] {
        &self.twins
    }

    /// The twins, mutably: for an incident or a control loop that changes the mesh between
    /// steps. Observations and masks already in the buffers describe the state before the
    /// change until the next step.
    pub fn twins_mut(&mut self) -> &mut [Twin] {
        &mut self.twins
    }

    /// Twin of environment `i`.
    pub fn twin_of(&self, i: usize) -> &Twin {
        &self.twins[i / self.cfg.env.envs_per_twin]
    }

    /// Rebuilds twins and packet RNGs: environment `i` gets `seed_of(i)`, and each twin the
    /// seed of its first environment.
    fn build(&mut self, seed_of: impl Fn(usize) -> u64 + Sync) -> Result<(), EnvError> {
        let per = self.cfg.env.envs_per_twin;
        let twin_cfg = self.cfg.twin_config();
        let groups = self.num_envs.div_ceil(per);
        self.twins = (0..groups)
            .into_par_iter()
            .map(|g| Twin::new(&twin_cfg, seed_of(g * per)))
            .collect::<Result<_, _>>()?;
        let n = self.twins[0].num_nodes();
        if let Some(&bad) = self.cfg.env.sources.iter().find(|&&s| s as usize >= n) {
            return Err(EnvError::invalid(
                "env.sources",
                format!("names node {bad}, the mesh has nodes 0..{n}"),
            ));
        }
        self.adverts = vec![Adverts::new(self.cfg.env.advert_period_ticks); groups];
        self.node_rows = vec![NodeRows::default(); groups];
        self.packets = (0..self.num_envs)
            .map(|i| Packet {
                rng: Xoshiro256PlusPlus::seed_from_u64(seed_of(i)),
                seed: seed_of(i),
                episode: 0,
                source: 0,
                dest: 0,
                node: 0,
                hops: 0,
                shortest_hops: 0,
                latency_ms: 0.0,
                relay_trust_sum: 0.0,
                episode_return: 0.0,
                needs_reset: false,
                done: false,
                visited: [0; VISITED_LEN],
                visited_len: 0,
                potential: 0.0,
            })
            .collect();
        Ok(())
    }

    /// Starts a new episode in every environment. With a seed, twins and RNGs are rebuilt from
    /// it (environment `i` gets `seed + i`), so the same seed replays the same run; without
    /// one, the twins keep evolving and each environment continues its random stream.
    pub fn reset(&mut self, seed: Option<u64>) -> Result<(), EnvError> {
        if let Some(s) = seed {
            self.build(|i| s.wrapping_add(i as u64))?;
        }
        self.start_all()
    }

    /// Like `reset`, with one seed per environment (`seeds.len() == num_envs`); a twin takes
    /// the seed of its first environment.
    pub fn reset_with_seeds(&mut self, seeds: &[u64]) -> Result<(), EnvError> {
        if seeds.len() != self.num_envs {
            return Err(EnvError::invalid(
                "seed",
                format!(
                    "expected {} seeds (one per environment), got {}",
                    self.num_envs,
                    seeds.len()
                ),
            ));
        }
        self.build(|i| seeds[i])?;
        self.start_all()
    }

    /// The config and one view per twin for the worker threads.
    fn groups(&mut self) -> (&EnvConfig, Vec<GroupView<'_>>) {
        let groups = split_groups(
            &self.cfg,
            &mut self.twins,
            &mut self.adverts,
            &mut self.node_rows,
            &mut self.packets,
            &mut self.buffers,
        );
        (&self.cfg, groups)
    }

    fn start_all(&mut self) -> Result<(), EnvError> {
        let (cfg, groups) = self.groups();
        let start = |g: GroupView<'_>| {
            g.node_rows.invalidate();
            for j in 0..g.packets.len() {
                start_episode(cfg, g.twin, &mut g.packets[j]);
                let (o, m) = rows(cfg, g.obs, g.mask, j);
                observe(cfg, g.twin, g.adverts, g.node_rows, &mut g.packets[j], o, m);
                g.reward[j] = 0.0;
                g.terminated[j] = false;
                g.truncated[j] = false;
                g.info[j] = info_of(&g.packets[j], Outcome::InFlight, 0, true);
            }
        };
        // One twin: stay on this thread (a rayon hand-off costs more than a small step).
        if groups.len() == 1 {
            groups.into_iter().for_each(start);
        } else {
            groups.into_par_iter().for_each(start);
        }
        self.ready = true;
        Ok(())
    }

    /// Steps every environment with `actions[i]`, a neighbour-slot index in
    /// `0..max_neighbors`. Out-of-range actions are an error; masked ones lose the packet
    /// (or are an error under `invalid_action = "error"`). On error nothing is stepped.
    pub fn step(&mut self, actions: &[i64]) -> Result<(), EnvError> {
        if !self.ready {
            return Err(EnvError::NotReset);
        }
        if actions.len() != self.num_envs {
            return Err(EnvError::ActionCount {
                expected: self.num_envs,
                got: actions.len(),
            });
        }
        let k = self.k;
        for (i, &a) in actions.iter().enumerate() {
            if a < 0 || a >= k as i64 {
                return Err(EnvError::ActionOutOfRange {
                    env: i,
                    action: a,
                    max_neighbors: k,
                });
            }
        }
        if self.cfg.env.invalid_action == InvalidAction::Error {
            for (i, &a) in actions.iter().enumerate() {
                let row = &self.buffers.mask[i * k..(i + 1) * k];
                // A node without neighbours has no valid action: its packet is lost to
                // `no_route` whatever is chosen.
                let stranded = row.iter().all(|&m| m == 0);
                if !self.packets[i].needs_reset && !stranded && row[a as usize] == 0 {
                    return Err(EnvError::MaskedAction { env: i, action: a });
                }
            }
        }
        let per = self.cfg.env.envs_per_twin;
        let (cfg, groups) = self.groups();
        if groups.len() == 1 {
            groups.into_iter().for_each(|g| step_group(cfg, g, actions));
        } else {
            groups
                .into_par_iter()
                .zip(actions.par_chunks(per))
                .for_each(|(g, acts)| step_group(cfg, g, acts));
        }
        Ok(())
    }
}

/// Cuts the twins, packets and every buffer into per-twin views for the worker threads.
fn split_groups<'a>(
    cfg: &EnvConfig,
    twins: &'a mut [Twin],
    adverts: &'a mut [Adverts],
    node_rows: &'a mut [NodeRows],
    packets: &'a mut [Packet],
    b: &'a mut StepBuffers,
) -> Vec<GroupView<'a>> {
    let per = cfg.env.envs_per_twin;
    let k = cfg.topology.max_neighbors;
    let d = cfg.env.features.obs_dim(k);
    let same_step = !b.final_info.is_empty();
    let finals_per = if same_step { per } else { 0 };
    let mut final_obs = b.final_obs.chunks_mut((finals_per * d).max(1));
    let mut final_mask = b.final_mask.chunks_mut((finals_per * k).max(1));
    let mut final_info = b.final_info.chunks_mut(finals_per.max(1));
    twins
        .iter_mut()
        .zip(adverts.iter_mut())
        .zip(node_rows.iter_mut())
        .zip(packets.chunks_mut(per))
        .zip(b.obs.chunks_mut(per * d))
        .zip(b.mask.chunks_mut(per * k))
        .zip(b.reward.chunks_mut(per))
        .zip(b.terminated.chunks_mut(per))
        .zip(b.truncated.chunks_mut(per))
        .zip(b.info.chunks_mut(per))
        .map(
            |(
                ((((((((twin, adverts), node_rows), packets), obs), mask), reward), terminated), truncated),
                info,
            )| {
                GroupView {
                    twin,
                    adverts,
                    node_rows,
                    packets,
                    obs,
                    mask,
                    reward,
                    terminated,
                    truncated,
                    info,
                    final_obs: final_obs.next().unwrap_or_default(),
                    final_mask: final_mask.next().unwrap_or_default(),
                    final_info: final_info.next().unwrap_or_default(),
                }
            },
        )
        .collect()
}

fn rows<'a>(
    cfg: &EnvConfig,
    obs: &'a mut [f32],
    mask: &'a mut [i8],
    j: usize,
) -> (&'a mut [f32], &'a mut [i8]) {
    let k = cfg.topology.max_neighbors;
    let d = cfg.env.features.obs_dim(k);
    (&mut obs[j * d..(j + 1) * d], &mut mask[j * k..(j + 1) * k])
}

/// Writes the packet's observation and stores its shaping potential `Φ(s)`.
fn observe(
    cfg: &EnvConfig,
    twin: &mut Twin,
    adverts: &mut Adverts,
    node_rows: &mut NodeRows,
    p: &mut Packet,
    obs: &mut [f32],
    mask: &mut [i8],
) {
    let dest = p.dest as usize;
    twin.refresh_hop_distances(dest);
    let shaping = cfg.reward.shaping;
    if cfg.env.features == FeatureSet::Routing || shaping != 0.0 {
        adverts.refresh(twin);
    }
    let header = p.header(cfg.env.ttl);
    if NodeRows::serves(cfg.env.features, twin) {
        write_spec_observation(node_rows, twin, &header, obs, mask);
    } else {
        write_observation(cfg.env.features, twin, adverts, &header, obs, mask);
    }
    p.potential = if shaping != 0.0 {
        let etx = adverts.to_destination(dest).etx[p.node as usize];
        -shaping * if etx.is_finite() { etx.min(32.0) } else { 32.0 }
    } else {
        0.0
    };
}

fn info_of(p: &Packet, outcome: Outcome, loss_cause: u8, reset: bool) -> StepInfo {
    StepInfo {
        outcome,
        episode: p.episode.saturating_sub(1),
        loss_cause,
        reset,
        source: p.source,
        destination: p.dest,
        node: p.node,
        path_length: p.hops,
        shortest_hops: p.shortest_hops,
        latency_ms: p.latency_ms,
        episode_return: p.episode_return,
    }
}

/// Seed of episode `episode` of the environment seeded `seed`.
pub fn episode_seed(seed: u64, episode: u64) -> u64 {
    meshrl_twin::splitmix64(
        seed ^ episode
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019),
    )
}

/// Samples a source with a neighbour and a destination at least `min_hops` away; after 64
/// failed draws (a shattered mesh) takes any two distinct active nodes.
fn start_episode(cfg: &EnvConfig, twin: &mut Twin, p: &mut Packet) {
    p.rng = Xoshiro256PlusPlus::seed_from_u64(episode_seed(p.seed, p.episode));
    p.episode += 1;
    let n = twin.num_nodes();
    let min_hops = cfg.env.min_hops;
    let pick_active = |twin: &Twin, rng: &mut Xoshiro256PlusPlus| loop {
        let u = rng.random_range(0..n);
        if twin.is_active(u) {
            break u;
        }
    };
    // A worker's own traffic starts at its sources; with none active, anywhere.
    let sources = &cfg.env.sources;
    let any_source = sources.iter().any(|&s| twin.is_active(s as usize));
    let pick_source = |twin: &Twin, rng: &mut Xoshiro256PlusPlus| {
        if !any_source {
            return pick_active(twin, rng);
        }
        loop {
            let u = sources[rng.random_range(0..sources.len())] as usize;
            if twin.is_active(u) {
                break u;
            }
        }
    };
    let mut chosen = None;
    let mut fallback = (0, 1 % n);
    for attempt in 0..64 {
        let s = pick_source(twin, &mut p.rng);
        let mut t = pick_active(twin, &mut p.rng);
        while t == s {
            t = pick_active(twin, &mut p.rng);
        }
        if attempt == 0 {
            fallback = (s, t);
        }
        let h = twin.hop_distances(t)[s];
        if h != UNREACHABLE && h >= min_hops {
            chosen = Some((s, t, h));
            break;
        }
    }
    let (s, t, h) = chosen.unwrap_or((fallback.0, fallback.1, UNREACHABLE));
    p.source = s as u32;
    p.dest = t as u32;
    p.node = s as u32;
    p.hops = 0;
    p.shortest_hops = if h == UNREACHABLE { 0 } else { h as u32 };
    p.latency_ms = 0.0;
    p.relay_trust_sum = 0.0;
    p.episode_return = 0.0;
    p.needs_reset = false;
    p.done = false;
    p.visited_len = 0;
    p.visit(s as u32);
}

/// Steps one twin's environments: every action over the current state, one tick of the twin,
/// then observations of the new state (and resets).
fn step_group(cfg: &EnvConfig, g: GroupView<'_>, actions: &[i64]) {
    let k = g.twin.max_neighbors();
    let d = cfg.env.features.obs_dim(k);
    let rw = &cfg.reward;
    let same_step = cfg.env.autoreset_mode == AutoresetMode::SameStep;

    // 1. Actions over the state the agents observed.
    for (j, p) in g.packets.iter_mut().enumerate() {
        g.terminated[j] = false;
        g.truncated[j] = false;
        g.reward[j] = 0.0;
        if p.needs_reset {
            continue;
        }
        let (u, slot) = (p.node as usize, actions[j] as usize);
        let link = g.twin.link_metrics(u)[slot];
        let hop = if g.twin.neighbors(u).iter().all(|&v| v == meshrl_twin::NO_NEIGHBOR) {
            meshrl_twin::Hop {
                next: u as u32,
                latency_ms: 0.0,
                lost: Some(LossCause::NoRoute),
            }
        } else {
            g.twin.transmit(u, slot, p.dest as usize, &mut p.rng)
        };
        p.hops += 1;
        p.latency_ms += hop.latency_ms;
        let (outcome, cause) = match hop.lost {
            Some(cause) => {
                g.terminated[j] = true;
                (Outcome::Lost, cause as u8)
            }
            None if hop.next == p.dest => {
                p.node = hop.next;
                g.terminated[j] = true;
                (Outcome::Delivered, 0)
            }
            None => {
                p.node = hop.next;
                p.visit(hop.next);
                p.relay_trust_sum += g.twin.trust(hop.next as usize);
                if p.hops >= cfg.env.ttl {
                    g.truncated[j] = true;
                    (Outcome::TtlExpired, 0)
                } else {
                    (Outcome::InFlight, 0)
                }
            }
        };
        g.reward[j] = hop_reward(cfg, p, outcome, hop.latency_ms, link.packet_loss, g.twin);
        // Shaping: −Φ(s) now; γ·Φ(s') is added once s' is observed (0 if s' is terminal).
        g.reward[j] -= p.potential;
        p.episode_return += g.reward[j];
        p.done = outcome != Outcome::InFlight;
        g.info[j] = info_of(p, outcome, cause, false);
    }

    // 2. The mesh moves on.
    g.twin.tick();
    g.node_rows.invalidate();

    // 3. Observations of the new state; losses the tick caused; resets.
    for (j, p) in g.packets.iter_mut().enumerate() {
        let (obs, mask) = rows(cfg, g.obs, g.mask, j);
        if p.needs_reset {
            start_episode(cfg, g.twin, p);
            observe(cfg, g.twin, g.adverts, g.node_rows, p, obs, mask);
            g.info[j] = info_of(p, Outcome::InFlight, 0, true);
            continue;
        }
        if !p.done {
            let u = p.node as usize;
            let cause = if !g.twin.is_active(u) {
                Some(LossCause::NodeDown)
            } else if g
                .twin
                .neighbors(u)
                .iter()
                .all(|&v| v == meshrl_twin::NO_NEIGHBOR)
            {
                Some(LossCause::NoRoute)
            } else {
                None
            };
            if let Some(cause) = cause {
                let lost = hop_reward(cfg, p, Outcome::Lost, 0.0, 0.0, g.twin) - p.potential;
                p.episode_return += lost - g.reward[j];
                g.reward[j] = lost;
                g.terminated[j] = true;
                g.truncated[j] = false;
                p.done = true;
                g.info[j] = info_of(p, Outcome::Lost, cause as u8, false);
            }
        }
        observe(cfg, g.twin, g.adverts, g.node_rows, p, obs, mask);
        if !g.terminated[j] && rw.shaping != 0.0 {
            // Non-terminal s' (a truncated episode's s' is too): + γ·Φ(s').
            let f = rw.shaping_gamma * p.potential;
            g.reward[j] += f;
            p.episode_return += f;
            g.info[j].episode_return = p.episode_return;
        }
        if p.done {
            if same_step {
                g.final_obs[j * d..(j + 1) * d].copy_from_slice(obs);
                g.final_mask[j * k..(j + 1) * k].copy_from_slice(mask);
                g.final_info[j] = g.info[j];
                start_episode(cfg, g.twin, p);
                observe(cfg, g.twin, g.adverts, g.node_rows, p, obs, mask);
                g.info[j] = info_of(p, Outcome::InFlight, 0, true);
            } else {
                p.needs_reset = true;
            }
            p.done = false;
        }
    }
}

/// The reward of a hop that ended in `outcome` (before shaping), with the hop's latency (ms),
/// the link's frame loss, and the packet at its new node.
fn hop_reward(
    cfg: &EnvConfig,
    p: &Packet,
    outcome: Outcome,
    hop_ms: f32,
    link_loss: f32,
    twin: &Twin,
) -> f32 {
    let rw = &cfg.reward;
    match (rw.kind, outcome) {
        (RewardKind::Delivery, Outcome::Delivered) => {
            1.0 - rw.delivery_latency_weight * hop_ms / rw.latency_budget_ms
        }
        (RewardKind::Delivery, Outcome::Lost) => 0.0,
        (RewardKind::Delivery, _) => {
            -rw.delivery_latency_weight * hop_ms / rw.latency_budget_ms - rw.hop_cost
        }
        (RewardKind::Spec, Outcome::Lost) => rw.lost,
        (RewardKind::Spec, Outcome::Delivered) => {
            let hop_bonus = if p.shortest_hops > 0 {
                rw.hop_bonus_max * p.shortest_hops as f32 / p.hops as f32
            } else {
                0.0
            };
            let latency_bonus =
                rw.latency_bonus_max * (1.0 - p.latency_ms / rw.latency_budget_ms).max(0.0);
            let relays = p.hops - 1;
            let trust_bonus = if relays == 0 {
                rw.trust_bonus_max
            } else {
                rw.trust_bonus_max * p.relay_trust_sum / relays as f32
            };
            rw.delivered + hop_bonus + latency_bonus + trust_bonus
        }
        (RewardKind::Spec, _) => {
            -rw.latency_weight * hop_ms / 100.0 - rw.loss_weight * link_loss
                + rw.trust_weight * twin.trust(p.node as usize)
                - rw.hop_cost
        }
    }
}
