//! PBFT: agreement in process, proofs, signatures and replay protection, determinism.

use std::sync::Arc;

use meshrl_trust::pbft::sim::{NetConfig, Schedule};
use meshrl_trust::pbft::{
    agree, Config, ConsensusProof, Message, Output, Replica, SignedMessage, Value,
};
use meshrl_trust::{Hash32, Identity, SpiffeId, TrustError, ValidatorSet};
use proptest::prelude::*;

fn validators(n: usize, seed: u64) -> Vec<Identity> {
    (0..n)
        .map(|i| Identity::from_seed(SpiffeId::node("test.mesh", &format!("v{i}")).unwrap(), seed))
        .collect()
}

fn set(ids: &[Identity]) -> ValidatorSet {
    ValidatorSet::new(ids.iter().map(|i| i.node_key()).collect()).unwrap()
}

fn value(round: u64) -> Value {
    Value {
        round,
        model_hash: Hash32::of(b"model"),
        certificate: Hash32::of(b"certificate"),
    }
}

#[test]
fn agree_returns_a_proof_of_2f_plus_1_commits() {
    for n in [1usize, 4, 7] {
        let ids = validators(n, 1);
        let vs = set(&ids);
        let mut net = NetConfig::synchronous();
        net.gst_ms = 500;
        net.drop = 0.1;
        net.max_delay_ms = 50;
        let p = agree(&ids, value(7), &net, 3).unwrap();
        assert_eq!(p.value, value(7));
        assert_eq!(p.seq, 7);
        assert!(p.commits.len() >= vs.quorum());
        p.verify(&vs).unwrap();
        // Deterministic under the seed.
        assert_eq!(agree(&ids, value(7), &net, 3).unwrap(), p);
    }
    assert!(agree(&validators(4, 1), value(0), &NetConfig::synchronous(), 0).is_err());
}

#[test]
fn agree_fails_when_too_few_validators_can_talk() {
    let ids = validators(4, 1);
    let mut net = NetConfig::synchronous();
    net.gst_ms = u64::MAX;
    net.drop = 1.0;
    net.budget_ms = 5_000;
    assert!(matches!(
        agree(&ids, value(1), &net, 0),
        Err(TrustError::NoAgreement(_))
    ));
}

fn proof() -> (Vec<Identity>, ValidatorSet, ConsensusProof) {
    let ids = validators(4, 2);
    let vs = set(&ids);
    let p = agree(&ids, value(3), &NetConfig::synchronous(), 0).unwrap();
    (ids, vs, p)
}

#[test]
fn every_change_to_a_proof_is_caught() {
    let (ids, vs, p) = proof();
    p.verify(&vs).unwrap();
    let mut q = p.clone();
    q.value.model_hash = Hash32::of(b"other model");
    assert!(q.verify(&vs).is_err(), "changed value");
    let mut q = p.clone();
    q.commits.truncate(vs.quorum() - 1);
    assert!(q.verify(&vs).is_err(), "too few commits");
    let mut q = p.clone();
    let first = q.commits[0].clone();
    q.commits = vec![first; vs.quorum()];
    assert!(q.verify(&vs).is_err(), "one signer counted thrice");
    let mut q = p.clone();
    q.commits[1].signature.0[0] ^= 1;
    assert!(matches!(
        q.verify(&vs),
        Err(TrustError::BadSignature { .. })
    ));
    let mut q = p.clone();
    q.view += 1;
    assert!(q.verify(&vs).is_err(), "replayed into another view");
    let other = set(&validators(4, 99));
    assert!(p.verify(&other).is_err(), "another validator set");
    // A commit signed by a real validator for another round is not a commit of this one.
    let stolen = SignedMessage::sign(
        &ids[0],
        &vs,
        0,
        Message::Commit {
            view: p.view,
            seq: 4,
            digest: value(4).digest(),
        },
    );
    let mut q = p.clone();
    q.commits[0] = stolen;
    assert!(
        q.verify(&vs).is_err(),
        "a commit of round 4 in round 3's proof"
    );
}

#[test]
fn replicas_reject_forged_and_misdirected_messages() {
    let ids = validators(4, 5);
    let vs = Arc::new(set(&ids));
    let mut backup = Replica::new(ids[1].clone(), vs.clone(), Config::default(), 0).unwrap();
    backup.submit(0, value(1));
    // A pre-prepare for view 0 from replica 2, which is not its primary.
    let wrong = SignedMessage::sign(
        &ids[2],
        &vs,
        2,
        Message::PrePrepare {
            view: 0,
            seq: 1,
            value: value(1),
        },
    );
    assert!(backup.on_message(1, wrong).is_empty());
    // The primary's, with a forged signature.
    let mut forged = SignedMessage::sign(
        &ids[0],
        &vs,
        0,
        Message::PrePrepare {
            view: 0,
            seq: 1,
            value: value(1),
        },
    );
    forged.from = 3;
    assert!(backup.on_message(1, forged).is_empty());
    assert_eq!(backup.stats().rejected, 2);
    // The real one is accepted: the backup prepares.
    let real = SignedMessage::sign(
        &ids[0],
        &vs,
        0,
        Message::PrePrepare {
            view: 0,
            seq: 1,
            value: value(1),
        },
    );
    let out = backup.on_message(1, real);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Broadcast(SignedMessage {
            message: Message::Prepare { seq: 1, .. },
            ..
        })
    )));
    // A value the backup was not given is not accepted (it waits).
    let mut b2 = Replica::new(ids[2].clone(), vs.clone(), Config::default(), 0).unwrap();
    let unknown = SignedMessage::sign(
        &ids[0],
        &vs,
        0,
        Message::PrePrepare {
            view: 0,
            seq: 1,
            value: value(1),
        },
    );
    assert!(b2.on_message(1, unknown).is_empty());
    assert!(
        !b2.submit(2, value(1)).is_empty(),
        "prepares once it has the value"
    );
}

#[test]
fn a_slow_primary_is_replaced() {
    let ids = validators(4, 6);
    let vs = Arc::new(set(&ids));
    let mut r = Replica::new(ids[1].clone(), vs, Config::default(), 0).unwrap();
    r.submit(0, value(1));
    let d = r.deadline().expect("a timer runs while a round waits");
    assert!(r.on_timeout(d - 1).is_empty(), "fires early");
    let out = r.on_timeout(d);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Broadcast(SignedMessage { message: Message::ViewChange(vc), .. }) if vc.new_view == 1
    )));
}

#[test]
fn schedules_are_deterministic() {
    for seed in [3u64, 17] {
        let s = Schedule::random(1, seed, None);
        assert_eq!(s.run().unwrap(), s.run().unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_field_change_breaks_a_vote_signature(view in 0u64..100, seq in 1u64..100, dv in 1u64..5, ds in 1u64..5, which in 0usize..3) {
        let ids = validators(4, 8);
        let vs = set(&ids);
        let m = SignedMessage::sign(&ids[2], &vs, 2, Message::Prepare { view, seq, digest: value(seq).digest() });
        prop_assert!(m.verify(&vs, &vs.id()));
        let mut t = m.clone();
        match (&mut t.message, which) {
            (Message::Prepare { view, .. }, 0) => *view += dv,
            (Message::Prepare { seq, .. }, 1) => *seq += ds,
            (Message::Prepare { digest, .. }, _) => *digest = value(seq + ds).digest(),
            _ => unreachable!(),
        }
        prop_assert!(!t.verify(&vs, &vs.id()));
        let mut relabelled = m.clone();
        relabelled.from = 1;
        prop_assert!(!relabelled.verify(&vs, &vs.id()));
    }
}
