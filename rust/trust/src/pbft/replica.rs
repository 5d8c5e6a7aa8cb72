//! A PBFT replica (Castro & Liskov, OSDI 1999) as a deterministic state machine without I/O:
//! feed it messages, submitted values and timeouts with the driver's clock (ms); it returns
//! the messages to send and the values it decides. Normal case, checkpoints and watermarks
//! here; view changes in `view_change.rs`.
//!
//! Sequence number = round: value `v` is agreed at sequence number `v.round`, and rounds
//! execute in order. A replica accepts a proposal only for a value it was given with
//! [`Replica::submit`] (its own check of the aggregation), or any value under
//! [`Acceptance::Any`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::{invalid, TrustError};
use crate::hash::{Enc, Hash32};
use crate::identity::Identity;
use crate::validators::ValidatorSet;

pub use super::config::{Acceptance, Config};
use super::message::{Message, PreparedProof, ReplicaId, SignedMessage, Value};
use super::ConsensusProof;

/// Views ahead of (or behind) the current one whose votes are kept.
pub(super) const VOTE_VIEWS: u64 = 8;
/// The `what` of [`Replica::may_help`] for sending the current view and decisions.
pub(super) const CATCH_UP: u64 = u64::MAX;
/// Pre-prepares kept for later (a future view, an unknown value, beyond the watermark).
const WAITING_LIMIT: usize = 256;

/// What a replica asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send to one replica.
    Send {
        to: ReplicaId,
        message: SignedMessage,
    },
    /// Send to every other replica.
    Broadcast(SignedMessage),
    /// The value at `proof.seq` is decided (emitted in sequence order, once each).
    Decide(ConsensusProof),
}

/// Whether a replica works in a view or is changing view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Working in the current view.
    Normal,
    /// Asked to move to view `target`.
    ViewChange { target: u64 },
}

/// Counters of what a replica saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Messages dropped for a bad signature, wrong sender or malformed content.
    pub rejected: u64,
    /// Conflicting proposals seen (an equivocating primary).
    pub conflicts: u64,
    /// View changes this replica started.
    pub view_changes: u64,
}

#[derive(Default)]
pub(super) struct Slot {
    /// Accepted pre-prepares by view.
    pub pre_prepares: BTreeMap<u64, (Value, SignedMessage)>,
    pub prepares: BTreeMap<(u64, Hash32), BTreeMap<ReplicaId, SignedMessage>>,
    pub commits: BTreeMap<(u64, Hash32), BTreeMap<ReplicaId, SignedMessage>>,
    /// The prepared certificate of the highest view.
    pub prepared: Option<(u64, Value, PreparedProof)>,
    /// Views in which this replica sent a commit.
    pub committed_in: BTreeSet<u64>,
}

/// One PBFT replica. See the module documentation.
pub struct Replica {
    pub(super) id: ReplicaId,
    pub(super) identity: Identity,
    pub(super) validators: Arc<ValidatorSet>,
    pub(super) set_id: Hash32,
    pub(super) cfg: Config,
    pub(super) start: u64,
    pub(super) view: u64,
    pub(super) status: Status,
    pub(super) stable: u64,
    pub(super) stable_proof: Vec<SignedMessage>,
    pub(super) last_exec: u64,
    state: Hash32,
    candidates: BTreeMap<u64, Vec<Value>>,
    pub(super) slots: BTreeMap<u64, Slot>,
    pub(super) decided: BTreeMap<u64, ConsensusProof>,
    pub(super) checkpoints: BTreeMap<u64, BTreeMap<ReplicaId, SignedMessage>>,
    pub(super) view_changes: BTreeMap<u64, BTreeMap<ReplicaId, SignedMessage>>,
    pub(super) new_view: Option<SignedMessage>,
    pub(super) waiting: Vec<SignedMessage>,
    /// When this replica last helped a peer catch up, by (peer, what): catch-up answers are
    /// rate-limited, so replays cannot make two replicas answer each other forever.
    pub(super) helped: BTreeMap<(ReplicaId, u64), u64>,
    pub(super) deadline: Option<u64>,
    pub(super) attempts: u32,
    progressed: bool,
    pub(super) stats: ReplicaStats,
}

impl Replica {
    /// The replica of `identity` in `validators`, starting after sequence number `start` (its
    /// first decision is `start + 1`; 0 for a fresh instance).
    pub fn new(
        identity: Identity,
        validators: Arc<ValidatorSet>,
        cfg: Config,
        start: u64,
    ) -> Result<Self, TrustError> {
        let id = validators
            .index_of(identity.id())
            .ok_or_else(|| TrustError::UnknownNode(identity.id().to_string()))?;
        if validators.key(id) != Some(&identity.public_key()) {
            return Err(invalid("identity", "key differs from the validator set's"));
        }
        let k = cfg.checkpoint_interval;
        if k == 0 || cfg.watermark_window < k || cfg.watermark_window % k != 0 {
            return Err(invalid(
                "watermark_window",
                "must be a positive multiple of checkpoint_interval",
            ));
        }
        if cfg.timeout_ms == 0 || cfg.max_timeout_ms < cfg.timeout_ms {
            return Err(invalid(
                "timeout_ms",
                "must be positive and at most max_timeout_ms",
            ));
        }
        let set_id = validators.id();
        let mut e = Enc::new(b"meshrl-pbft-genesis-v1");
        e.hash(&set_id).u64(start);
        Ok(Replica {
            id,
            identity,
            set_id,
            cfg,
            start,
            view: 0,
            status: Status::Normal,
            stable: start,
            stable_proof: Vec::new(),
            last_exec: start,
            state: e.digest(),
            candidates: BTreeMap::new(),
            slots: BTreeMap::new(),
            decided: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            new_view: None,
            waiting: Vec::new(),
            helped: BTreeMap::new(),
            deadline: None,
            attempts: 0,
            progressed: false,
            stats: ReplicaStats::default(),
            validators,
        })
    }

    /// This replica's index.
    pub fn id(&self) -> ReplicaId {
        self.id
    }
    /// The current view.
    pub fn view(&self) -> u64 {
        self.view
    }
    /// Normal or changing view.
    pub fn status(&self) -> Status {
        self.status
    }
    /// The last sequence number executed.
    pub fn last_executed(&self) -> u64 {
        self.last_exec
    }
    /// The last stable checkpoint (the low watermark).
    pub fn stable_checkpoint(&self) -> u64 {
        self.stable
    }
    /// When the driver must call [`Replica::on_timeout`] (ms), if a timer runs.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }
    /// Counters.
    pub fn stats(&self) -> &ReplicaStats {
        &self.stats
    }
    /// The proof of the decision at `seq`, while retained.
    pub fn decision(&self, seq: u64) -> Option<&ConsensusProof> {
        self.decided.get(&seq)
    }
    /// A one-line summary of the replica's state, for debugging.
    pub fn summary(&self) -> String {
        format!(
            "replica {} view {} {:?} stable {} executed {} deadline {:?} attempts {} \
             pending {:?} view-change requests {:?} waiting {} {:?}",
            self.id,
            self.view,
            self.status,
            self.stable,
            self.last_exec,
            self.deadline,
            self.attempts,
            self.candidates
                .keys()
                .filter(|&&r| r > self.last_exec)
                .collect::<Vec<_>>(),
            self.view_changes
                .iter()
                .map(|(v, m)| (*v, m.keys().copied().collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
            self.waiting.len(),
            self.stats,
        )
    }

    /// The primary of `view`.
    pub fn primary_of(&self, view: u64) -> ReplicaId {
        (view % self.validators.len() as u64) as ReplicaId
    }
    pub(super) fn f(&self) -> usize {
        self.validators.f()
    }
    pub(super) fn quorum(&self) -> usize {
        self.validators.quorum()
    }
    pub(super) fn in_window(&self, seq: u64) -> bool {
        seq > self.stable && seq <= self.stable + self.cfg.watermark_window
    }
    pub(super) fn timeout(&self) -> u64 {
        let t = self
            .cfg
            .timeout_ms
            .saturating_mul(1u64 << self.attempts.min(20));
        t.min(self.cfg.max_timeout_ms)
    }
    pub(super) fn sign(&self, m: Message) -> SignedMessage {
        SignedMessage::sign(&self.identity, &self.validators, self.id, m)
    }
    pub(super) fn broadcast(&self, m: Message, out: &mut Vec<Output>) -> SignedMessage {
        let s = self.sign(m);
        out.push(Output::Broadcast(s.clone()));
        s
    }
    fn pending(&self) -> bool {
        self.candidates.keys().any(|&r| r > self.last_exec)
    }

    /// Gives the replica a value it checked itself for round `value.round` (a candidate it will
    /// accept, and propose when primary).
    pub fn submit(&mut self, now: u64, value: Value) -> Vec<Output> {
        let mut out = Vec::new();
        if value.round <= self.last_exec {
            return out;
        }
        let c = self.candidates.entry(value.round).or_default();
        if !c.contains(&value) {
            c.push(value);
        }
        self.retry_waiting(now, &mut out);
        self.progress(now, &mut out);
        out
    }

    /// Handles a message from another replica. Invalid messages are dropped and counted.
    pub fn on_message(&mut self, now: u64, msg: SignedMessage) -> Vec<Output> {
        let mut out = Vec::new();
        if msg.from as usize >= self.validators.len() || msg.from == self.id {
            return out;
        }
        if !msg.verify(&self.validators, &self.set_id) {
            self.stats.rejected += 1;
            return out;
        }
        self.dispatch(now, msg, &mut out);
        self.progress(now, &mut out);
        out
    }

    fn dispatch(&mut self, now: u64, msg: SignedMessage, out: &mut Vec<Output>) {
        match &msg.message {
            Message::PrePrepare { .. } => self.on_pre_prepare(now, msg, out),
            Message::Prepare { .. } => self.on_vote(msg, false, out),
            Message::Commit { .. } => self.on_vote(msg, true, out),
            Message::Checkpoint { seq, state } => {
                let (seq, state) = (*seq, *state);
                self.on_checkpoint(seq, state, msg, out)
            }
            Message::ViewChange(_) => self.on_view_change(now, msg, out),
            Message::NewView(_) => self.on_new_view(now, msg, out),
            Message::Fetch { after } => {
                let after = *after;
                if self.may_help(now, msg.from, CATCH_UP) {
                    self.send_decisions(msg.from, after, out)
                }
            }
            Message::Decision(p) => {
                if p.seq > self.last_exec && !self.decided.contains_key(&p.seq) {
                    if p.verify(&self.validators).is_ok() {
                        self.decided.insert(p.seq, (**p).clone());
                        self.execute(out);
                    } else {
                        self.stats.rejected += 1;
                    }
                }
            }
        }
    }

    /// Fires the timer if `now` is past the deadline: a view change (or its retransmission).
    pub fn on_timeout(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.deadline.is_none_or(|d| now < d) {
            return out;
        }
        self.deadline = None;
        // Checkpoints lost on the way would hold the low watermark back: send ours again.
        let last = self.last_exec - self.last_exec % self.cfg.checkpoint_interval;
        if last > self.stable {
            if let Some(own) = self.checkpoints.get(&last).and_then(|m| m.get(&self.id)) {
                out.push(Output::Broadcast(own.clone()));
            }
        }
        match self.status {
            Status::Normal => {
                if self.pending() {
                    self.start_view_change(now, self.view + 1, &mut out);
                }
            }
            Status::ViewChange { target } => {
                let votes = self.view_changes.get(&target).map_or(0, |m| m.len());
                if votes >= self.quorum() {
                    self.start_view_change(now, target + 1, &mut out);
                } else {
                    // Too few replicas joined: send ours again, and catch up meanwhile.
                    if let Some(own) = self.view_changes.get(&target).and_then(|m| m.get(&self.id))
                    {
                        out.push(Output::Broadcast(own.clone()));
                    }
                    self.broadcast(
                        Message::Fetch {
                            after: self.last_exec,
                        },
                        &mut out,
                    );
                    self.deadline = Some(now + self.timeout());
                }
            }
        }
        self.progress(now, &mut out);
        out
    }

    fn on_pre_prepare(&mut self, now: u64, msg: SignedMessage, out: &mut Vec<Output>) {
        let Message::PrePrepare { view, seq, value } = msg.message else {
            return;
        };
        if msg.from != self.primary_of(view) || value.round != seq {
            self.stats.rejected += 1;
            return;
        }
        let later = view > self.view || (view == self.view && self.status != Status::Normal);
        if view < self.view || view > self.view + VOTE_VIEWS || seq <= self.stable {
            return;
        }
        let unknown = self.cfg.acceptance == Acceptance::Submitted
            && !self
                .candidates
                .get(&seq)
                .is_some_and(|c| c.contains(&value));
        if later || unknown || !self.in_window(seq) {
            if self.waiting.len() >= WAITING_LIMIT {
                self.waiting.remove(0);
            }
            self.waiting.push(msg);
            return;
        }
        let slot = self.slots.entry(seq).or_default();
        if let Some((v, _)) = slot.pre_prepares.get(&view) {
            if *v != value {
                self.stats.conflicts += 1;
            }
            return;
        }
        self.accept_pre_prepare(now, view, seq, value, msg, out);
    }

    /// Records an accepted pre-prepare and, as a backup, sends the prepare.
    pub(super) fn accept_pre_prepare(
        &mut self,
        _now: u64,
        view: u64,
        seq: u64,
        value: Value,
        msg: SignedMessage,
        out: &mut Vec<Output>,
    ) {
        self.slots
            .entry(seq)
            .or_default()
            .pre_prepares
            .insert(view, (value, msg));
        if self.id != self.primary_of(view) {
            let digest = value.digest();
            let p = self.broadcast(Message::Prepare { view, seq, digest }, out);
            self.record_vote(seq, view, digest, p, false);
        }
        self.check_prepared(seq, view, out);
        self.check_committed(seq, view, value.digest(), out);
    }

    fn record_vote(
        &mut self,
        seq: u64,
        view: u64,
        digest: Hash32,
        msg: SignedMessage,
        commit: bool,
    ) {
        let slot = self.slots.entry(seq).or_default();
        let votes = if commit {
            &mut slot.commits
        } else {
            &mut slot.prepares
        };
        let from = msg.from;
        // At most two digests per sender, view and sequence number: enough to see a
        // conflicting vote, bounded against a flood of them.
        let seen = votes
            .range((view, Hash32::default())..)
            .take_while(|((v, _), _)| *v == view)
            .filter(|(_, m)| m.contains_key(&from))
            .count();
        if seen < 2 {
            votes
                .entry((view, digest))
                .or_default()
                .entry(from)
                .or_insert(msg);
        }
    }

    fn on_vote(&mut self, msg: SignedMessage, commit: bool, out: &mut Vec<Output>) {
        let (Message::Prepare { view, seq, digest } | Message::Commit { view, seq, digest }) =
            msg.message
        else {
            return;
        };
        if view + VOTE_VIEWS < self.view || view > self.view + VOTE_VIEWS || !self.in_window(seq) {
            return;
        }
        if !commit && msg.from == self.primary_of(view) {
            self.stats.rejected += 1;
            return;
        }
        self.record_vote(seq, view, digest, msg, commit);
        if commit {
            self.check_committed(seq, view, digest, out);
        } else {
            self.check_prepared(seq, view, out);
        }
    }

    /// Prepared: the pre-prepare and 2f matching prepares from backups, in the current view.
    fn check_prepared(&mut self, seq: u64, view: u64, out: &mut Vec<Output>) {
        if view != self.view || self.status != Status::Normal {
            return;
        }
        let need = 2 * self.f();
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        let Some((value, pp)) = slot.pre_prepares.get(&view) else {
            return;
        };
        if slot.committed_in.contains(&view) {
            return;
        }
        let digest = value.digest();
        let prepares: Vec<SignedMessage> = slot
            .prepares
            .get(&(view, digest))
            .map(|m| m.values().take(need).cloned().collect())
            .unwrap_or_default();
        if prepares.len() < need {
            return;
        }
        let proof = PreparedProof {
            pre_prepare: pp.clone(),
            prepares,
        };
        let value = *value;
        slot.prepared = Some((view, value, proof));
        slot.committed_in.insert(view);
        let c = self.broadcast(Message::Commit { view, seq, digest }, out);
        self.record_vote(seq, view, digest, c, true);
        self.check_committed(seq, view, digest, out);
    }

    /// Decided: 2f + 1 matching commits for a value this replica knows.
    fn check_committed(&mut self, seq: u64, view: u64, digest: Hash32, out: &mut Vec<Output>) {
        if seq <= self.last_exec || self.decided.contains_key(&seq) {
            return;
        }
        let quorum = self.quorum();
        let Some(slot) = self.slots.get(&seq) else {
            return;
        };
        let value = slot
            .pre_prepares
            .get(&view)
            .map(|(v, _)| *v)
            .filter(|v| v.digest() == digest)
            .or_else(|| {
                slot.prepared
                    .as_ref()
                    .map(|p| p.1)
                    .filter(|v| v.digest() == digest)
            });
        let Some(value) = value else {
            return;
        };
        let Some(commits) = slot.commits.get(&(view, digest)) else {
            return;
        };
        if commits.len() < quorum {
            return;
        }
        let proof = ConsensusProof {
            validator_set: self.set_id,
            view,
            seq,
            value,
            commits: commits.values().take(quorum).cloned().collect(),
        };
        self.decided.insert(seq, proof);
        self.execute(out);
    }

    /// Executes decisions in sequence order; checkpoints every K.
    pub(super) fn execute(&mut self, out: &mut Vec<Output>) {
        while let Some(p) = self.decided.get(&(self.last_exec + 1)) {
            let n = self.last_exec + 1;
            let mut e = Enc::new(b"meshrl-pbft-state-v1");
            e.hash(&self.state).hash(&p.value.digest());
            self.state = e.digest();
            self.last_exec = n;
            out.push(Output::Decide(p.clone()));
            self.candidates = self.candidates.split_off(&(n + 1));
            self.progressed = true;
            if n % self.cfg.checkpoint_interval == 0 {
                let state = self.state;
                let c = self.broadcast(Message::Checkpoint { seq: n, state }, out);
                self.checkpoints.entry(n).or_default().insert(self.id, c);
                self.check_stable(n, out);
            }
        }
        let keep = self.cfg.retain_decisions.max(1) as u64;
        if self.last_exec > keep {
            self.decided = self.decided.split_off(&(self.last_exec - keep + 1));
        }
    }

    pub(super) fn retry_waiting(&mut self, now: u64, out: &mut Vec<Output>) {
        for m in std::mem::take(&mut self.waiting) {
            self.on_pre_prepare(now, m, out);
        }
    }

    /// After every input: the primary proposes what it can, and the timer follows PBFT's rule
    /// (running while a submitted round waits to execute, restarted on progress).
    pub(super) fn progress(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.status == Status::Normal && self.primary_of(self.view) == self.id {
            let view = self.view;
            let rounds: Vec<(u64, Value)> = self
                .candidates
                .iter()
                .filter(|(&r, c)| {
                    r > self.last_exec
                        && !c.is_empty()
                        && self.in_window(r)
                        && !self.decided.contains_key(&r)
                        && !self
                            .slots
                            .get(&r)
                            .is_some_and(|s| s.pre_prepares.contains_key(&view))
                })
                .map(|(&r, c)| (r, c[0]))
                .collect();
            for (seq, value) in rounds {
                let msg = self.broadcast(Message::PrePrepare { view, seq, value }, out);
                self.accept_pre_prepare(now, view, seq, value, msg, out);
            }
        }
        if std::mem::take(&mut self.progressed) {
            self.attempts = 0;
            if self.status == Status::Normal {
                self.deadline = None;
            }
        }
        if self.status == Status::Normal {
            if !self.pending() {
                self.deadline = None;
            } else if self.deadline.is_none() {
                self.deadline = Some(now + self.timeout());
            }
        }
    }
}
