//! Analyze → Plan → Execute: one [`MapeLoop`] per mesh, ticked after the twin.
//!
//! Every `analyze_every` ticks the loop scores each (node, neighbour) pair with its detector
//! and plans:
//!
//! - **quarantine** a node whose mean misbehaviour score over its observers stayed at least
//!   `quarantine_threshold` for `persistence` checks in a row; at most one quarantine every
//!   `min_ticks_between_quarantines`, at most `max_quarantined_fraction` of the nodes at once;
//!   never on less than `quarantine_min_evidence` overheard decisions in the window, and not
//!   while the node's own queue averaged `quarantine_max_queue` or more over the window
//!   (drops at a filling queue are congestion, which the tune below answers, not
//!   misbehaviour);
//! - **readmit** a quarantined node after a period of good behaviour: over the last
//!   `readmit_after_ticks` its neighbours overheard at least `readmit_min_evidence` of its
//!   forwarding decisions (routes avoid it, but it still forwards background traffic), it
//!   kept at least `readmit_forwarding_ratio` of them, and its score is below
//!   `readmit_threshold`. A period with enough evidence of bad behaviour starts a new one;
//!   the detector's score alone cannot readmit (a node routes avoid leaves little evidence,
//!   and little evidence looks innocent);
//! - **avoid** a link whose failure score stayed at least `link_threshold` for
//!   `link_persistence` checks (at most `max_avoided_links`), and restore it after
//!   `restore_link_after_ticks` below half that;
//! - **tune** the router under congestion: when at least `congestion_fraction` of the nodes
//!   have queues at least `congestion_queue` full, make it queue-aware
//!   (`queue_weight = tuned_queue_weight`) and re-advertise every `tuned_refresh_ticks`;
//!   undo it after `untune_after_ticks` of calm. This one is a fixed rule, not learned;
//! - **reserve transit** at an overloaded node: when a node's own offered load is at least
//!   `overload_factor` × its service rate and its queue is at least `congestion_queue` full,
//!   its own packets may fill at most `1 − transit_reserve` of its queue; the rest is kept
//!   for the packets it forwards, and its own packets beyond the limit wait at the source
//!   (transit priority: what is dropped is the traffic that overloads the node, not the
//!   traffic other nodes already spent airtime on). Lifted after `untune_after_ticks` with
//!   the node's own load below the threshold. A node knows its own load; nothing learned.
//!
//! Execute writes the directives on the twin (`set_quarantined`, `set_link_avoided`,
//! `set_local_queue_limit`) and the router (`set_parameter`); every action goes to
//! [`Knowledge`] with its reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use meshrl_env::twin::{Overheard, Twin, NO_NEIGHBOR};
use meshrl_eval::Router;
use serde::{Deserialize, Serialize};

use crate::detector::{Detector, LINK, NODE};
use crate::knowledge::{Action, ActionKind, Knowledge, TickMetrics};
use crate::monitor::Monitor;
use crate::MapekError;

/// The loop's settings (`[mapek]` in an incident file). Ticks are the twin's (10 ms by
/// default); scores are the detector's probabilities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// The monitor's feature window (the detectors are trained on the same).
    pub window_ticks: usize,
    pub analyze_every: u64,
    pub quarantine_threshold: f32,
    pub persistence: u32,
    pub quarantine_min_evidence: u32,
    pub quarantine_max_queue: f32,
    pub min_ticks_between_quarantines: u64,
    pub max_quarantined_fraction: f64,
    pub readmit_threshold: f32,
    pub readmit_after_ticks: u64,
    pub readmit_min_evidence: u64,
    pub readmit_forwarding_ratio: f64,
    pub link_threshold: f32,
    pub link_persistence: u32,
    pub max_avoided_links: usize,
    pub restore_link_after_ticks: u64,
    pub congestion_queue: f32,
    pub congestion_fraction: f32,
    pub tuned_queue_weight: f64,
    pub tuned_refresh_ticks: u64,
    /// The router's own advertisement period, restored when the tune is undone.
    pub default_refresh_ticks: u64,
    pub untune_after_ticks: u64,
    /// Share of an overloaded node's queue kept for transit (0 turns the action off).
    pub transit_reserve: f32,
    /// A node is overloaded when its own offered load is at least this × its service rate.
    pub overload_factor: f64,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            window_ticks: 20,
            analyze_every: 2,
            quarantine_threshold: 0.5,
            persistence: 3,
            quarantine_min_evidence: 4,
            quarantine_max_queue: 0.5,
            min_ticks_between_quarantines: 20,
            max_quarantined_fraction: 0.1,
            readmit_threshold: 0.2,
            readmit_after_ticks: 100,
            readmit_min_evidence: 8,
            readmit_forwarding_ratio: 0.9,
            link_threshold: 0.5,
            link_persistence: 2,
            max_avoided_links: 8,
            restore_link_after_ticks: 100,
            congestion_queue: 0.8,
            congestion_fraction: 0.1,
            tuned_queue_weight: 4.0,
            tuned_refresh_ticks: 2,
            default_refresh_ticks: 10,
            untune_after_ticks: 50,
            transit_reserve: 0.1,
            overload_factor: 1.0,
        }
    }
}

impl LoopConfig {
    /// Checks every value; the error names the field (`mapek.…`).
    pub fn validate(&self, origin: &str) -> Result<(), MapekError> {
        let bad = |f: &str, r: String| Err(MapekError::config(origin, &format!("mapek.{f}"), r));
        for (f, v) in [
            ("quarantine_threshold", self.quarantine_threshold),
            ("readmit_threshold", self.readmit_threshold),
            ("link_threshold", self.link_threshold),
            ("congestion_queue", self.congestion_queue),
            ("quarantine_max_queue", self.quarantine_max_queue),
            ("congestion_fraction", self.congestion_fraction),
            ("transit_reserve", self.transit_reserve),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(f, format!("must be in [0, 1], got {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.readmit_forwarding_ratio) {
            return bad(
                "readmit_forwarding_ratio",
                format!("must be in [0, 1], got {}", self.readmit_forwarding_ratio),
            );
        }
        if !(0.0..=1.0).contains(&self.max_quarantined_fraction) {
            return bad(
                "max_quarantined_fraction",
                format!("must be in [0, 1], got {}", self.max_quarantined_fraction),
            );
        }
        if self.readmit_threshold > self.quarantine_threshold {
            return bad(
                "readmit_threshold",
                format!(
                    "must not exceed quarantine_threshold ({}), got {}",
                    self.quarantine_threshold, self.readmit_threshold
                ),
            );
        }
        for (f, v) in [
            ("window_ticks", self.window_ticks as u64),
            ("analyze_every", self.analyze_every),
            ("persistence", self.persistence as u64),
            ("link_persistence", self.link_persistence as u64),
            ("tuned_refresh_ticks", self.tuned_refresh_ticks),
            ("default_refresh_ticks", self.default_refresh_ticks),
        ] {
            if v == 0 {
                return bad(f, "must be at least 1".into());
            }
        }
        if !(self.tuned_queue_weight.is_finite() && self.tuned_queue_weight >= 0.0) {
            return bad(
                "tuned_queue_weight",
                format!(
                    "must be a finite number >= 0, got {}",
                    self.tuned_queue_weight
                ),
            );
        }
        if !(self.overload_factor.is_finite() && self.overload_factor > 0.0) {
            return bad(
                "overload_factor",
                format!("must be a finite number > 0, got {}", self.overload_factor),
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
struct LinkTrack {
    streak: u32,
    avoided: bool,
    good_since: Option<u64>,
}

/// One mesh's MAPE-K loop.
#[derive(Clone, Debug)]
pub struct MapeLoop {
    cfg: LoopConfig,
    detector: Arc<Detector>,
    monitor: Monitor,
    streak: Vec<u32>,
    quarantined: Vec<bool>,
    /// Start of a quarantined node's current probation period and its record then.
    probation: Vec<Option<(u64, Overheard)>>,
    last_quarantine: Option<u64>,
    links: BTreeMap<(usize, usize), LinkTrack>,
    tuned: bool,
    calm_since: Option<u64>,
    /// Nodes whose queue keeps a reserve for transit, and since when their load is normal.
    reserved: Vec<bool>,
    normal_since: Vec<Option<u64>>,
    pub knowledge: Knowledge,
}

impl MapeLoop {
    pub fn new(cfg: LoopConfig, detector: Arc<Detector>) -> Self {
        MapeLoop {
            monitor: Monitor::new(cfg.window_ticks),
            cfg,
            detector,
            streak: Vec::new(),
            quarantined: Vec::new(),
            probation: Vec::new(),
            last_quarantine: None,
            links: BTreeMap::new(),
            tuned: false,
            calm_since: None,
            reserved: Vec::new(),
            normal_since: Vec::new(),
            knowledge: Knowledge::default(),
        }
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Nodes quarantined now.
    pub fn quarantined(&self) -> Vec<usize> {
        (0..self.quarantined.len())
            .filter(|&u| self.quarantined[u])
            .collect()
    }

    fn log(&mut self, tick: u64, kind: ActionKind, score: f32, reason: String) {
        self.knowledge.actions.push(Action {
            tick,
            kind,
            score,
            reason,
        });
    }

    /// One tick of the loop: monitor the twin; every `analyze_every` ticks analyze, plan and
    /// execute on the twin and the router.
    pub fn step(&mut self, twin: &mut Twin, router: &mut dyn Router) {
        let n = twin.num_nodes();
        if self.streak.len() != n {
            self.streak = vec![0; n];
            self.quarantined = vec![false; n];
            self.probation = vec![None; n];
            self.reserved = vec![false; n];
            self.normal_since = vec![None; n];
        }
        self.monitor.record(twin);
        let now = twin.ticks();
        let congested = self.record_metrics(twin);
        if now % self.cfg.analyze_every != 0 || now < self.cfg.window_ticks as u64 {
            return;
        }
        self.plan_nodes_and_links(twin, now);
        self.plan_tuning(router, now, congested);
        self.plan_transit(twin, now);
    }

    /// Nodes whose queue keeps a reserve for transit now.
    pub fn transit_reserved(&self) -> Vec<usize> {
        (0..self.reserved.len())
            .filter(|&u| self.reserved[u])
            .collect()
    }

    fn plan_transit(&mut self, twin: &mut Twin, now: u64) {
        let cfg = self.cfg.clone();
        if cfg.transit_reserve <= 0.0 {
            return;
        }
        let service = twin.config().traffic.service_packets_per_tick;
        let share = 1.0 - cfg.transit_reserve;
        for u in 0..twin.num_nodes() {
            let load = twin.offered_load(u);
            let overloaded = load >= cfg.overload_factor * service;
            if !self.reserved[u] {
                if overloaded && twin.is_active(u) && twin.queue(u) >= cfg.congestion_queue {
                    twin.set_local_queue_limit(u, share);
                    self.reserved[u] = true;
                    self.normal_since[u] = None;
                    let reason = format!(
                        "own traffic {load:.1} packets/tick ≥ {:.0} % of its service rate ({service:.1}), queue {:.0} % full: its own packets may fill {:.0} % of the queue, {:.0} % kept for transit",
                        cfg.overload_factor * 100.0,
                        twin.queue(u) * 100.0,
                        share * 100.0,
                        cfg.transit_reserve * 100.0
                    );
                    let kind = ActionKind::ReserveTransit { node: u, share };
                    self.log(now, kind, (load / service) as f32, reason);
                }
            } else if overloaded {
                self.normal_since[u] = None;
            } else {
                let since = *self.normal_since[u].get_or_insert(now);
                if now - since >= cfg.untune_after_ticks {
                    twin.set_local_queue_limit(u, 1.0);
                    self.reserved[u] = false;
                    self.normal_since[u] = None;
                    let reason = format!(
                        "own traffic {load:.1} packets/tick below {:.0} % of its service rate for {} ticks: the whole queue open to it again",
                        cfg.overload_factor * 100.0,
                        cfg.untune_after_ticks
                    );
                    let kind = ActionKind::ReserveTransit {
                        node: u,
                        share: 1.0,
                    };
                    self.log(now, kind, (load / service) as f32, reason);
                }
            }
        }
    }

    fn record_metrics(&mut self, twin: &Twin) -> f32 {
        let n = twin.num_nodes();
        let active: Vec<usize> = (0..n).filter(|&u| twin.is_active(u)).collect();
        let m = active.len().max(1) as f32;
        let mean_queue = active.iter().map(|&u| twin.queue(u)).sum::<f32>() / m;
        let congested = active
            .iter()
            .filter(|&&u| twin.queue(u) >= self.cfg.congestion_queue)
            .count() as f32
            / m;
        let (mut loss, mut links) = (0.0f32, 0u32);
        for &u in &active {
            for (s, &v) in twin.neighbors(u).iter().enumerate() {
                if v != NO_NEIGHBOR {
                    loss += twin.link_metrics(u)[s].packet_loss;
                    links += 1;
                }
            }
        }
        self.knowledge.metrics.push(TickMetrics {
            tick: twin.ticks(),
            mean_queue,
            congested_fraction: congested,
            mean_link_loss: loss / links.max(1) as f32,
            active_nodes: active.len() as u32,
            quarantined: self.quarantined.iter().filter(|q| **q).count() as u32,
            avoided_links: self.links.values().filter(|l| l.avoided).count() as u32,
        });
        congested
    }

    fn plan_nodes_and_links(&mut self, twin: &mut Twin, now: u64) {
        let n = twin.num_nodes();
        let cfg = self.cfg.clone();
        // Analyze: every observer's view of every neighbour.
        let mut node_sum = vec![0f32; n];
        let mut node_count = vec![0u32; n];
        let mut evidence = vec![[0f32; 3]; n];
        let mut link_score: BTreeMap<(usize, usize), f32> = BTreeMap::new();
        for o in self.monitor.observe() {
            let p = self.detector.predict(&o.features);
            let v = o.neighbor as usize;
            node_sum[v] += p[NODE];
            node_count[v] += 1;
            evidence[v] = [o.features[0], o.features[1], o.features[5]];
            let key = (
                o.observer.min(o.neighbor) as usize,
                o.observer.max(o.neighbor) as usize,
            );
            let e = link_score.entry(key).or_insert(0.0);
            *e = e.max(p[LINK]);
        }
        // Plan and execute: nodes.
        let max_q = (cfg.max_quarantined_fraction * n as f64).floor() as usize;
        for v in 0..n {
            if node_count[v] == 0 {
                continue; // down, or nobody lists it: no evidence either way
            }
            let score = node_sum[v] / node_count[v] as f32;
            let window = self.monitor.window();
            let [ratio, ev, queue_mean] = evidence[v];
            let decisions = (ev * 65f32.ln()).exp() - 1.0;
            let forwarded = (ratio * (decisions + 2.0) - 1.0).max(0.0);
            let seen = format!(
                "{forwarded:.0} of {decisions:.0} overheard forwarding decisions kept in the last {window} ticks"
            );
            if self.quarantined[v] {
                let (since, then) = self.probation[v].unwrap_or((now, twin.overheard(v)));
                if now - since < cfg.readmit_after_ticks {
                    continue;
                }
                let rec = twin.overheard(v);
                let kept = rec.forwarded - then.forwarded;
                let decisions = kept + rec.dropped - then.dropped;
                if decisions < cfg.readmit_min_evidence {
                    continue; // not enough seen yet: the period goes on
                }
                let ratio = kept as f64 / decisions as f64;
                if ratio >= cfg.readmit_forwarding_ratio && score < cfg.readmit_threshold {
                    twin.set_quarantined(v, false);
                    self.quarantined[v] = false;
                    self.probation[v] = None;
                    self.streak[v] = 0;
                    let reason = format!(
                        "good behaviour since tick {since}: kept {kept} of {decisions} overheard forwarding decisions (≥ {:.0} % needed), p(misbehaving) = {score:.2} < {}",
                        cfg.readmit_forwarding_ratio * 100.0,
                        cfg.readmit_threshold
                    );
                    self.log(now, ActionKind::Readmit { node: v }, score, reason);
                } else {
                    self.probation[v] = Some((now, rec)); // a bad period: start again
                }
                continue;
            }
            if score >= cfg.quarantine_threshold {
                self.streak[v] += 1;
            } else {
                self.streak[v] = 0;
            }
            let rate_ok = self
                .last_quarantine
                .is_none_or(|t| now >= t + cfg.min_ticks_between_quarantines);
            let room = self.quarantined.iter().filter(|q| **q).count() < max_q;
            let evident = decisions + 0.5 >= cfg.quarantine_min_evidence as f32;
            let congested = queue_mean >= cfg.quarantine_max_queue;
            if self.streak[v] >= cfg.persistence && rate_ok && room && evident && !congested {
                twin.set_quarantined(v, true);
                self.quarantined[v] = true;
                self.probation[v] = Some((now, twin.overheard(v)));
                self.last_quarantine = Some(now);
                let reason = format!(
                    "p(misbehaving) = {score:.2} (mean of {} observers, {}) for {} checks; {seen}",
                    node_count[v],
                    self.detector.name(),
                    self.streak[v]
                );
                self.log(now, ActionKind::Quarantine { node: v }, score, reason);
            }
        }
        // Links.
        let avoided_now = self.links.values().filter(|l| l.avoided).count();
        let mut avoided = avoided_now;
        for (&(a, b), &score) in &link_score {
            let track = self.links.entry((a, b)).or_default();
            if track.avoided {
                if score < cfg.link_threshold / 2.0 {
                    let since = *track.good_since.get_or_insert(now);
                    if now - since >= cfg.restore_link_after_ticks {
                        track.avoided = false;
                        track.good_since = None;
                        track.streak = 0;
                        twin.set_link_avoided(a, b, false);
                        avoided -= 1;
                        let reason = format!(
                            "p(link fails) below {} for {} ticks",
                            cfg.link_threshold / 2.0,
                            cfg.restore_link_after_ticks
                        );
                        self.knowledge.actions.push(Action {
                            tick: now,
                            kind: ActionKind::RestoreLink { a, b },
                            score,
                            reason,
                        });
                    }
                } else {
                    track.good_since = None;
                }
                continue;
            }
            if score >= cfg.link_threshold {
                track.streak += 1;
            } else {
                track.streak = 0;
            }
            if track.streak >= cfg.link_persistence && avoided < cfg.max_avoided_links {
                track.avoided = true;
                track.good_since = None;
                twin.set_link_avoided(a, b, true);
                avoided += 1;
                let loss_from = |x: usize, y: usize| {
                    (0..twin.max_neighbors())
                        .find(|&s| twin.neighbors(x)[s] as usize == y)
                        .map(|s| twin.link_metrics(x)[s].packet_loss)
                };
                let loss = loss_from(a, b)
                    .or_else(|| loss_from(b, a))
                    .unwrap_or(f32::NAN);
                let reason = format!(
                    "p(link fails within the horizon) = {score:.2} ({}) for {} checks; frame loss now {:.0} %",
                    self.detector.name(),
                    track.streak,
                    loss * 100.0
                );
                self.knowledge.actions.push(Action {
                    tick: now,
                    kind: ActionKind::AvoidLink { a, b },
                    score,
                    reason,
                });
            }
        }
    }

    fn plan_tuning(&mut self, router: &mut dyn Router, now: u64, congested: f32) {
        let cfg = &self.cfg;
        let busy = congested >= cfg.congestion_fraction;
        if !self.tuned && busy {
            let (q, r) = (cfg.tuned_queue_weight, cfg.tuned_refresh_ticks as f64);
            let ok =
                router.set_parameter("queue_weight", q) & router.set_parameter("refresh_ticks", r);
            self.tuned = true;
            self.calm_since = None;
            let reason = format!(
                "{:.0} % of the nodes have queues at least {:.0} % full (threshold {:.0} %): queue-aware routes, adverts every {r} ticks{}",
                congested * 100.0,
                cfg.congestion_queue * 100.0,
                cfg.congestion_fraction * 100.0,
                if ok { "" } else { " (the router has no such parameters)" }
            );
            let kind = ActionKind::Tune {
                parameter: "queue_weight".into(),
                value: q,
            };
            self.log(now, kind, congested, reason);
        } else if self.tuned {
            if congested < cfg.congestion_fraction / 2.0 {
                let since = *self.calm_since.get_or_insert(now);
                if now - since >= cfg.untune_after_ticks {
                    let r = cfg.default_refresh_ticks as f64;
                    router.set_parameter("queue_weight", 0.0);
                    router.set_parameter("refresh_ticks", r);
                    self.tuned = false;
                    self.calm_since = None;
                    let reason = format!(
                        "congestion below {:.0} % for {} ticks: back to queue-blind routes, adverts every {r} ticks",
                        self.cfg.congestion_fraction * 50.0,
                        self.cfg.untune_after_ticks
                    );
                    let kind = ActionKind::Tune {
                        parameter: "queue_weight".into(),
                        value: 0.0,
                    };
                    self.log(now, kind, congested, reason);
                }
            } else {
                self.calm_since = None;
            }
        }
    }
}
