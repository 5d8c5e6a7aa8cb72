//! A seeded, deterministic network simulator for PBFT, in the spirit of Twins (Bano et al.
//! 2020) and TigerBeetle's VOPR: before the global stabilization time (GST) messages are
//! delayed, dropped, duplicated, reordered and cut by partitions; after it every message
//! arrives within Δ. Byzantine replicas are silent, *twins* (two honest instances with one key,
//! each talking to half of the others, which equivocates naturally) or *forgers* (replayed,
//! forged, conflicting and garbage messages; see `byzantine.rs`). Safety is checked on every
//! decision: no two honest replicas decide different values at one sequence number.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{invalid, TrustError};
use crate::identity::Identity;
use crate::validators::ValidatorSet;

use super::byzantine::Forger;
pub use super::schedule::{Outcome, Schedule};
use super::{Config, ConsensusProof, Output, Replica, SignedMessage, Status, Value};

/// A small deterministic generator (SplitMix64): the simulator's only source of randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// The network's behaviour; times in ms of simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Global stabilization time: faults stop here.
    pub gst_ms: u64,
    /// Δ: the largest delay of a message sent after GST (≥ 1).
    pub delta_ms: u64,
    /// The largest delay of a message sent before GST (≥ 1); random delays reorder.
    pub max_delay_ms: u64,
    /// Probability that a message sent before GST is lost.
    pub drop: f64,
    /// Probability that a message sent before GST is delivered twice.
    pub duplicate: f64,
    /// Probability that an epoch before GST splits the replicas into two random sides.
    pub partition: f64,
    /// Length of a partition epoch.
    pub partition_epoch_ms: u64,
    /// Simulated time after which the run stops.
    pub budget_ms: u64,
}

impl NetConfig {
    /// A network that is synchronous from the start: delays of 1..=5 ms, no faults.
    pub fn synchronous() -> Self {
        NetConfig {
            gst_ms: 0,
            delta_ms: 5,
            max_delay_ms: 5,
            drop: 0.0,
            duplicate: 0.0,
            partition: 0.0,
            partition_epoch_ms: 100,
            budget_ms: 60_000,
        }
    }
}

/// How a replica behaves in a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Follows the protocol.
    Honest,
    /// Sends nothing.
    Silent,
    /// Two honest instances with one key, each seeing half of the other replicas and
    /// preferring a different value: an equivocating primary, conflicting votes.
    Twins,
    /// Replays, forges and sends conflicting and garbage messages.
    Forger,
}

enum Node {
    Honest(Box<Replica>),
    Silent,
    Twins(Box<[Replica; 2]>, Vec<usize>),
    Forger(Box<Forger>),
}

enum Event {
    Deliver {
        to: usize,
        from: usize,
        half: usize,
        msg: SignedMessage,
    },
    Timer {
        node: usize,
        half: usize,
    },
    Submit {
        node: usize,
        half: Option<usize>,
        value: Value,
    },
}

/// The simulator: replicas, the network between them and the safety checker.
pub struct Simulator {
    validators: Arc<ValidatorSet>,
    nodes: Vec<Node>,
    net: NetConfig,
    rng: Rng,
    now: u64,
    next_event: u64,
    events: BTreeMap<(u64, u64), Event>,
    timers: Vec<[Option<u64>; 2]>,
    partition: (u64, Option<Vec<bool>>),
    decisions: BTreeMap<usize, BTreeMap<u64, ConsensusProof>>,
    chosen: BTreeMap<u64, Value>,
    violations: Vec<String>,
    view_at_gst: Option<u64>,
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
}

impl Simulator {
    /// Replicas of `identities` (the validator set, in order) behaving as `behaviors`, starting
    /// after sequence number `start`, on network `net`, seeded with `seed`.
    pub fn new(
        identities: Vec<Identity>,
        behaviors: Vec<Behavior>,
        cfg: Config,
        net: NetConfig,
        start: u64,
        seed: u64,
    ) -> Result<Self, TrustError> {
        if identities.len() != behaviors.len() {
            return Err(invalid("behaviors", "one per validator"));
        }
        if net.delta_ms == 0 || net.max_delay_ms == 0 || net.partition_epoch_ms == 0 {
            return Err(invalid(
                "net",
                "delays and the partition epoch must be at least 1 ms",
            ));
        }
        let validators = Arc::new(ValidatorSet::new(
            identities.iter().map(|i| i.node_key()).collect(),
        )?);
        let mut rng = Rng::new(seed);
        let n = identities.len();
        let mut nodes = Vec::with_capacity(n);
        for (i, (id, b)) in identities.into_iter().zip(&behaviors).enumerate() {
            let replica = |id: Identity| Replica::new(id, validators.clone(), cfg.clone(), start);
            nodes.push(match b {
                Behavior::Honest => Node::Honest(Box::new(replica(id)?)),
                Behavior::Silent => Node::Silent,
                Behavior::Twins => {
                    let sides = (0..n)
                        .map(|j| if j == i { 0 } else { rng.below(2) as usize })
                        .collect();
                    Node::Twins(Box::new([replica(id.clone())?, replica(id)?]), sides)
                }
                Behavior::Forger => {
                    Node::Forger(Box::new(Forger::new(id, i as u32, validators.clone())))
                }
            });
        }
        Ok(Simulator {
            validators,
            nodes,
            net,
            rng,
            now: 0,
            next_event: 0,
            events: BTreeMap::new(),
            timers: vec![[None; 2]; n],
            partition: (u64::MAX, None),
            decisions: BTreeMap::new(),
            chosen: BTreeMap::new(),
            violations: Vec::new(),
            view_at_gst: None,
            sent: 0,
            delivered: 0,
        })
    }

    fn schedule(&mut self, at: u64, e: Event) {
        self.events.insert((at, self.next_event), e);
        self.next_event += 1;
    }

    /// Submits `value` to replica `node` at time `at` (to both halves of twins).
    pub fn submit_at(&mut self, at: u64, node: usize, value: Value) {
        self.schedule(
            at,
            Event::Submit {
                node,
                half: None,
                value,
            },
        );
    }

    /// Submits `value` to one half of twins `node` only (to make the halves prefer different
    /// values); to the whole replica otherwise.
    pub fn submit_half_at(&mut self, at: u64, node: usize, half: usize, value: Value) {
        self.schedule(
            at,
            Event::Submit {
                node,
                half: Some(half),
                value,
            },
        );
    }

    /// The current simulated time (ms).
    pub fn now(&self) -> u64 {
        self.now
    }
    /// The decisions of each honest replica, by sequence number.
    pub fn decisions(&self) -> &BTreeMap<usize, BTreeMap<u64, ConsensusProof>> {
        &self.decisions
    }
    /// Safety violations found (empty when PBFT held).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }
    /// The validator set.
    pub fn validators(&self) -> &Arc<ValidatorSet> {
        &self.validators
    }
    /// Honest replica `i`.
    pub fn replica(&self, i: usize) -> Option<&Replica> {
        match self.nodes.get(i) {
            Some(Node::Honest(r)) => Some(r),
            _ => None,
        }
    }
    /// Indices of the honest replicas.
    pub fn honest(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.replica(i).is_some())
            .collect()
    }
    /// The highest view any honest replica is in or asks for, at GST (once GST passed).
    pub fn view_at_gst(&self) -> Option<u64> {
        self.view_at_gst
    }
    /// The highest view any honest replica is in or asks for now.
    pub fn max_honest_view(&self) -> u64 {
        self.honest()
            .into_iter()
            .filter_map(|i| self.replica(i))
            .map(|r| match r.status() {
                Status::Normal => r.view(),
                Status::ViewChange { target } => target,
            })
            .max()
            .unwrap_or(0)
    }

    /// Runs events in time order until `done` holds, no event is left, or the budget is spent.
    pub fn run_until(&mut self, mut done: impl FnMut(&Simulator) -> bool) {
        while !done(self) {
            let Some(((at, _), event)) = self.events.pop_first() else {
                return;
            };
            if at > self.net.budget_ms {
                return;
            }
            self.now = at;
            if self.view_at_gst.is_none() && at >= self.net.gst_ms {
                self.view_at_gst = Some(self.max_honest_view());
            }
            self.step(event);
        }
    }

    fn step(&mut self, event: Event) {
        let now = self.now;
        let n = self.nodes.len();
        let is_twins = |nodes: &[Node], i: usize| matches!(nodes[i], Node::Twins(..));
        match event {
            Event::Submit {
                node,
                half: only,
                value,
            } => match &mut self.nodes[node] {
                Node::Honest(r) => {
                    let out = r.submit(now, value);
                    self.handle(node, 0, out);
                }
                Node::Twins(..) => {
                    for half in (0..2).filter(|h| only.is_none_or(|o| o == *h)) {
                        let out = match &mut self.nodes[node] {
                            Node::Twins(halves, _) => halves[half].submit(now, value),
                            _ => Vec::new(),
                        };
                        self.handle(node, half, out);
                    }
                }
                Node::Forger(f) => f.learn(value),
                Node::Silent => {}
            },
            Event::Timer { node, half } => {
                self.timers[node][half] = None;
                let out = match &mut self.nodes[node] {
                    Node::Honest(r) => r.on_timeout(now),
                    Node::Twins(halves, _) => halves[half].on_timeout(now),
                    _ => Vec::new(),
                };
                self.handle(node, half, out);
            }
            Event::Deliver {
                to,
                from,
                half: from_half,
                msg,
            } => {
                self.delivered += 1;
                let from_twin = is_twins(&self.nodes, from);
                match &mut self.nodes[to] {
                    Node::Honest(r) => {
                        let out = r.on_message(now, msg);
                        self.handle(to, 0, out);
                    }
                    Node::Twins(halves, sides) => {
                        // Twins talk half to half (two worlds); others reach the half on
                        // their side.
                        let half = if from_twin { from_half } else { sides[from] };
                        let out = halves[half].on_message(now, msg);
                        self.handle(to, half, out);
                    }
                    Node::Forger(f) => {
                        let sends = f.on_message(msg, n, &mut self.rng);
                        for (dest, m) in sends {
                            self.send(to, 0, dest, m);
                        }
                    }
                    Node::Silent => {}
                }
            }
        }
    }

    /// Routes a replica's outputs, records its decisions and re-arms its timer.
    fn handle(&mut self, node: usize, half: usize, out: Vec<Output>) {
        let twins_side = match &self.nodes[node] {
            Node::Twins(_, sides) => Some(sides.clone()),
            _ => None,
        };
        let twins: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| matches!(n, Node::Twins(..)))
            .collect();
        let visible = |j: usize| twins[j] || twins_side.as_ref().is_none_or(|s| s[j] == half);
        for o in out {
            match o {
                Output::Send { to, message } => {
                    if visible(to as usize) {
                        self.send(node, half, to as usize, message);
                    }
                }
                Output::Broadcast(m) => {
                    for j in 0..self.nodes.len() {
                        if j != node && visible(j) {
                            self.send(node, half, j, m.clone());
                        }
                    }
                }
                Output::Decide(p) => {
                    if matches!(self.nodes[node], Node::Honest(_)) {
                        self.record(node, p);
                    }
                }
            }
        }
        let deadline = match &self.nodes[node] {
            Node::Honest(r) => r.deadline(),
            Node::Twins(h, _) => h[half].deadline(),
            _ => None,
        };
        if let Some(d) = deadline {
            if self.timers[node][half].is_none_or(|t| t != d) {
                self.timers[node][half] = Some(d);
                self.schedule(d.max(self.now), Event::Timer { node, half });
            }
        }
    }

    /// The safety checker.
    fn record(&mut self, node: usize, p: ConsensusProof) {
        if let Err(e) = p.verify(&self.validators) {
            self.violations.push(format!(
                "replica {node} decided seq {} with a bad proof: {e}",
                p.seq
            ));
        }
        match self.chosen.get(&p.seq) {
            Some(v) if *v != p.value => self.violations.push(format!(
                "seq {}: replica {node} decided {:?}, another honest replica {:?}",
                p.seq,
                p.value.digest(),
                v.digest()
            )),
            Some(_) => {}
            None => {
                self.chosen.insert(p.seq, p.value);
            }
        }
        let mine = self.decisions.entry(node).or_default();
        if mine.insert(p.seq, p.clone()).is_some() {
            self.violations
                .push(format!("replica {node} decided seq {} twice", p.seq));
        }
    }

    /// Hands a message to the network.
    fn send(&mut self, from: usize, half: usize, to: usize, msg: SignedMessage) {
        self.sent += 1;
        let now = self.now;
        if now >= self.net.gst_ms {
            let at = now + 1 + self.rng.below(self.net.delta_ms);
            self.schedule(
                at,
                Event::Deliver {
                    to,
                    from,
                    half,
                    msg,
                },
            );
            return;
        }
        let epoch = now / self.net.partition_epoch_ms;
        if self.partition.0 != epoch {
            let cut = self.rng.chance(self.net.partition);
            let sides = cut.then(|| {
                (0..self.nodes.len())
                    .map(|_| self.rng.chance(0.5))
                    .collect()
            });
            self.partition = (epoch, sides);
        }
        if let Some(sides) = &self.partition.1 {
            if sides[from] != sides[to] {
                return;
            }
        }
        if self.rng.chance(self.net.drop) {
            return;
        }
        let copies = if self.rng.chance(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + 1 + self.rng.below(self.net.max_delay_ms);
            let msg = msg.clone();
            self.schedule(
                at,
                Event::Deliver {
                    to,
                    from,
                    half,
                    msg,
                },
            );
        }
    }
}
