//! PBFT's view change: a replica that times out asks for view v + 1 with its prepared
//! certificates; the new primary gathers 2f + 1 such requests and re-proposes, in the new
//! view, the value of each sequence number prepared in any of them (the one of the highest
//! view). Backups recompute that choice before accepting it. A replica that sees f + 1
//! requests for later views joins the smallest; one that is behind is sent the current view's
//! new-view message and the decisions it lacks.

use std::collections::{BTreeMap, BTreeSet};

use super::message::{
    Message, NewView, PreparedProof, ReplicaId, SignedMessage, Value, ViewChange,
};
use super::replica::{Output, Replica, Status, CATCH_UP};

/// Views ahead of the current one whose view-change requests are kept.
const VIEW_CHANGE_VIEWS: u64 = 1 << 16;

impl Replica {
    /// Sends a view-change request for `target` and waits for its new view.
    pub(super) fn start_view_change(&mut self, now: u64, target: u64, out: &mut Vec<Output>) {
        self.status = Status::ViewChange { target };
        self.stats.view_changes += 1;
        self.attempts = self.attempts.saturating_add(1);
        let prepared = self
            .slots
            .range(self.stable + 1..)
            .filter_map(|(_, s)| s.prepared.as_ref().map(|p| p.2.clone()))
            .collect();
        let vc = ViewChange {
            new_view: target,
            stable: self.stable,
            checkpoint_proof: self.stable_proof.clone(),
            prepared,
            last_executed: self.last_exec,
        };
        let msg = self.broadcast(Message::ViewChange(vc), out);
        self.view_changes
            .entry(target)
            .or_default()
            .insert(self.id, msg);
        self.deadline = Some(now + self.timeout());
        self.try_new_view(now, target, out);
    }

    pub(super) fn on_view_change(&mut self, now: u64, msg: SignedMessage, out: &mut Vec<Output>) {
        let Message::ViewChange(vc) = &msg.message else {
            return;
        };
        let from = msg.from;
        if vc.new_view <= self.view {
            // The sender is behind: show it the current view and what it missed.
            if !self.may_help(now, from, CATCH_UP) {
                return;
            }
            if let Some(nv) = &self.new_view {
                out.push(Output::Send {
                    to: from,
                    message: nv.clone(),
                });
            }
            let after = vc.last_executed;
            self.send_decisions(from, after, out);
            return;
        }
        if vc.new_view > self.view + VIEW_CHANGE_VIEWS {
            return;
        }
        if let Status::ViewChange { target } = self.status {
            if vc.new_view < target && self.may_help(now, from, vc.new_view) {
                // The sender is still on a view we gave up: resend our request for it (sent
                // before and unchanged since, as we prepared nothing meanwhile), in case it was
                // lost; with it that view's primary can start it.
                if let Some(own) = self
                    .view_changes
                    .get(&vc.new_view)
                    .and_then(|m| m.get(&self.id))
                {
                    out.push(Output::Send {
                        to: from,
                        message: own.clone(),
                    });
                }
            }
        }
        if !self.valid_view_change(vc, from) {
            self.stats.rejected += 1;
            return;
        }
        let target = vc.new_view;
        self.view_changes
            .entry(target)
            .or_default()
            .entry(from)
            .or_insert(msg);
        // f + 1 replicas want a later view: at least one is honest, so join the smallest.
        let mine = match self.status {
            Status::Normal => self.view,
            Status::ViewChange { target } => target,
        };
        let mut first_view: BTreeMap<ReplicaId, u64> = BTreeMap::new();
        for (&v, senders) in self.view_changes.range(mine + 1..) {
            for &r in senders.keys() {
                first_view.entry(r).or_insert(v);
            }
        }
        if first_view.len() > self.f() {
            if let Some(&v) = first_view.values().min() {
                self.start_view_change(now, v, out);
            }
        }
        self.try_new_view(now, target, out);
    }

    /// As the primary of `target` with 2f + 1 requests: announce the new view.
    fn try_new_view(&mut self, now: u64, target: u64, out: &mut Vec<Output>) {
        if self.primary_of(target) != self.id || self.status != (Status::ViewChange { target }) {
            return;
        }
        let Some(requests) = self.view_changes.get(&target) else {
            return;
        };
        if requests.len() < self.quorum() {
            return;
        }
        let view_changes: Vec<SignedMessage> =
            requests.values().take(self.quorum()).cloned().collect();
        let pre_prepares = reproposals(&view_changes)
            .into_iter()
            .map(|(seq, value)| {
                self.sign(Message::PrePrepare {
                    view: target,
                    seq,
                    value,
                })
            })
            .collect();
        let nv = self.broadcast(
            Message::NewView(NewView {
                view: target,
                view_changes,
                pre_prepares,
            }),
            out,
        );
        self.enter_view(now, nv, out);
    }

    pub(super) fn on_new_view(&mut self, now: u64, msg: SignedMessage, out: &mut Vec<Output>) {
        let Message::NewView(nv) = &msg.message else {
            return;
        };
        let fresh = match self.status {
            Status::Normal => nv.view > self.view,
            Status::ViewChange { target } => nv.view >= target,
        };
        if !fresh {
            return;
        }
        if msg.from != self.primary_of(nv.view) || !self.valid_new_view(nv) {
            self.stats.rejected += 1;
            return;
        }
        self.enter_view(now, msg, out);
    }

    /// Starts the view of a checked new-view message.
    fn enter_view(&mut self, now: u64, msg: SignedMessage, out: &mut Vec<Output>) {
        let Message::NewView(nv) = &msg.message else {
            return;
        };
        let view = nv.view;
        self.view = view;
        self.status = Status::Normal;
        self.view_changes = self.view_changes.split_off(&(view + 1));
        // The latest stable checkpoint any of the 2f + 1 proved.
        let best = nv
            .view_changes
            .iter()
            .filter_map(|m| match &m.message {
                Message::ViewChange(vc) => Some((vc.stable, vc.checkpoint_proof.clone())),
                _ => None,
            })
            .max_by_key(|(s, _)| *s);
        if let Some((stable, proof)) = best {
            self.make_stable(stable, proof, out);
        }
        let pre_prepares = nv.pre_prepares.clone();
        self.new_view = Some(msg);
        for pp in pre_prepares {
            if let Message::PrePrepare { view, seq, value } = pp.message {
                if self.in_window(seq) {
                    self.accept_pre_prepare(now, view, seq, value, pp, out);
                }
            }
        }
        self.deadline = None;
        self.retry_waiting(now, out);
    }

    /// A view-change request is well formed and every certificate in it verifies.
    fn valid_view_change(&self, vc: &ViewChange, from: ReplicaId) -> bool {
        let _ = from;
        let k = self.cfg.checkpoint_interval;
        if vc.stable < self.start || (vc.stable != self.start && vc.stable % k != 0) {
            return false;
        }
        if vc.stable > self.start {
            let mut signers = BTreeSet::new();
            let mut states = BTreeSet::new();
            for c in &vc.checkpoint_proof {
                let Message::Checkpoint { seq, state } = &c.message else {
                    return false;
                };
                if *seq != vc.stable || !c.verify(&self.validators, &self.set_id) {
                    return false;
                }
                signers.insert(c.from);
                states.insert(*state);
            }
            if signers.len() < self.quorum() || states.len() != 1 {
                return false;
            }
        }
        let mut seqs = BTreeSet::new();
        for p in &vc.prepared {
            match self.valid_prepared(p, vc) {
                Some(seq) if seqs.insert(seq) => {}
                _ => return false,
            }
        }
        true
    }

    /// The sequence number of a valid prepared certificate inside `vc`.
    fn valid_prepared(&self, p: &PreparedProof, vc: &ViewChange) -> Option<u64> {
        let Message::PrePrepare { view, seq, value } = &p.pre_prepare.message else {
            return None;
        };
        let (view, seq) = (*view, *seq);
        if p.pre_prepare.from != self.primary_of(view)
            || view >= vc.new_view
            || value.round != seq
            || seq <= vc.stable
            || seq > vc.stable + self.cfg.watermark_window
            || !p.pre_prepare.verify(&self.validators, &self.set_id)
        {
            return None;
        }
        let digest = value.digest();
        let mut signers = BTreeSet::new();
        for m in &p.prepares {
            let Message::Prepare {
                view: v,
                seq: s,
                digest: d,
            } = &m.message
            else {
                return None;
            };
            if (*v, *s, *d) != (view, seq, digest)
                || m.from == self.primary_of(view)
                || !m.verify(&self.validators, &self.set_id)
            {
                return None;
            }
            signers.insert(m.from);
        }
        (signers.len() >= 2 * self.f()).then_some(seq)
    }

    /// A new-view message carries 2f + 1 valid requests for its view from distinct replicas
    /// and exactly the re-proposals they imply, signed by the new primary.
    fn valid_new_view(&self, nv: &NewView) -> bool {
        let mut senders = BTreeSet::new();
        for m in &nv.view_changes {
            let Message::ViewChange(vc) = &m.message else {
                return false;
            };
            if vc.new_view != nv.view
                || !m.verify(&self.validators, &self.set_id)
                || !self.valid_view_change(vc, m.from)
            {
                return false;
            }
            senders.insert(m.from);
        }
        if senders.len() < self.quorum() {
            return false;
        }
        let expected = reproposals(&nv.view_changes);
        let primary = self.primary_of(nv.view);
        let mut got = Vec::new();
        for m in &nv.pre_prepares {
            let Message::PrePrepare { view, seq, value } = &m.message else {
                return false;
            };
            if *view != nv.view || m.from != primary || !m.verify(&self.validators, &self.set_id) {
                return false;
            }
            got.push((*seq, *value));
        }
        got == expected
    }
}

/// The values a new view must re-propose: for each sequence number above the latest stable
/// checkpoint among the requests that some request prepared, the value prepared in the highest
/// view. Sequence numbers no request prepared are left to be proposed afresh (no value can
/// have been decided there: 2f + 1 requests include an honest replica of any decision's
/// prepared quorum).
pub(super) fn reproposals(view_changes: &[SignedMessage]) -> Vec<(u64, Value)> {
    let vcs: Vec<&ViewChange> = view_changes
        .iter()
        .filter_map(|m| match &m.message {
            Message::ViewChange(vc) => Some(vc),
            _ => None,
        })
        .collect();
    let min_s = vcs.iter().map(|vc| vc.stable).max().unwrap_or(0);
    let mut best: BTreeMap<u64, (u64, Value)> = BTreeMap::new();
    for vc in &vcs {
        for p in &vc.prepared {
            if let Message::PrePrepare { view, seq, value } = &p.pre_prepare.message {
                if *seq > min_s && best.get(seq).is_none_or(|(v, _)| view > v) {
                    best.insert(*seq, (*view, *value));
                }
            }
        }
    }
    best.into_iter().map(|(s, (_, v))| (s, v)).collect()
}
