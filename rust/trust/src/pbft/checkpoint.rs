//! Checkpoints and catching up: every K sequence numbers a replica signs its state digest;
//! 2f + 1 matching checkpoints make it stable, which moves the low watermark and discards the
//! log below it. A replica that fell behind asks for the decisions it lacks (`Fetch`) and gets
//! them as self-certifying consensus proofs.

use std::collections::BTreeMap;

use crate::hash::Hash32;

use super::message::{Message, ReplicaId, SignedMessage};
use super::replica::{Output, Replica};
use super::ConsensusProof;

impl Replica {
    pub(super) fn on_checkpoint(
        &mut self,
        seq: u64,
        state: Hash32,
        msg: SignedMessage,
        out: &mut Vec<Output>,
    ) {
        let far = self.stable + 16 * self.cfg.watermark_window;
        if seq <= self.stable || seq > far || seq % self.cfg.checkpoint_interval != 0 {
            return;
        }
        let _ = state;
        self.checkpoints
            .entry(seq)
            .or_default()
            .entry(msg.from)
            .or_insert(msg);
        self.check_stable(seq, out);
    }

    pub(super) fn check_stable(&mut self, seq: u64, out: &mut Vec<Output>) {
        let Some(all) = self.checkpoints.get(&seq) else {
            return;
        };
        let mut by_state: BTreeMap<Hash32, Vec<SignedMessage>> = BTreeMap::new();
        for m in all.values() {
            if let Message::Checkpoint { state, .. } = &m.message {
                by_state.entry(*state).or_default().push(m.clone());
            }
        }
        if let Some(proof) = by_state.into_values().find(|p| p.len() >= self.quorum()) {
            let proof = proof[..self.quorum()].to_vec();
            self.make_stable(seq, proof, out);
        }
    }

    /// Moves the low watermark to `seq` and discards the log up to it.
    pub(super) fn make_stable(
        &mut self,
        seq: u64,
        proof: Vec<SignedMessage>,
        out: &mut Vec<Output>,
    ) {
        if seq <= self.stable {
            return;
        }
        self.stable = seq;
        self.stable_proof = proof;
        self.slots = self.slots.split_off(&(seq + 1));
        self.checkpoints = self.checkpoints.split_off(&(seq + 1));
        if self.last_exec < seq {
            // The others moved on without us: ask for the decisions we lack.
            self.broadcast(
                Message::Fetch {
                    after: self.last_exec,
                },
                out,
            );
        }
    }

    /// Sends `to` the retained decisions after `after` (at most L of them).
    pub(super) fn send_decisions(&mut self, to: ReplicaId, after: u64, out: &mut Vec<Output>) {
        if after >= self.last_exec {
            return;
        }
        let proofs: Vec<ConsensusProof> = self
            .decided
            .range(after + 1..=self.last_exec)
            .take(self.cfg.watermark_window as usize)
            .map(|(_, p)| p.clone())
            .collect();
        for p in proofs {
            let message = self.sign(Message::Decision(Box::new(p)));
            out.push(Output::Send { to, message });
        }
    }

    /// Whether to answer `peer` about `what` now: at most once per half base timeout.
    pub(super) fn may_help(&mut self, now: u64, peer: ReplicaId, what: u64) -> bool {
        let gap = (self.cfg.timeout_ms / 2).max(1);
        match self.helped.get(&(peer, what)) {
            Some(&t) if now < t + gap => false,
            _ => {
                if self.helped.len() > 4 * self.validators.len() * 64 {
                    self.helped.clear();
                }
                self.helped.insert((peer, what), now);
                true
            }
        }
    }
}
