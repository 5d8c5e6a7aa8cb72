//! Secure aggregation: exact sums under dropouts at every stage, aborts below the threshold,
//! uniform masked vectors, and detection of tampered, forged or unsigned messages.

use std::sync::Arc;

use chacha20::ChaCha20Rng;
use ed25519_dalek::SigningKey;
use meshrl_privacy::secagg::{
    Client, Ed25519Directory, Graph, Identity, MaskedInput, Quantization, Server,
    SurvivorSignature, UnmaskRequest,
};
use meshrl_privacy::{secure_sum, Dropouts, PrivacyError, SecAggConfig, SecretKind, Stage};
use proptest::prelude::*;
use rand::{Rng, RngExt, SeedableRng};

fn inputs(n: usize, d: usize, seed: u64) -> Vec<Option<Vec<f32>>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| Some((0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect()))
        .collect()
}

/// Checks `sum` against the exact sum of `included` inputs (clipped to ±r).
fn assert_sum(
    sum: &[f32],
    inputs: &[Option<Vec<f32>>],
    included: &[usize],
    r: f32,
    max_error: f64,
) {
    for (j, &got) in sum.iter().enumerate() {
        let want: f64 = included
            .iter()
            .map(|&i| inputs[i].as_ref().unwrap()[j].clamp(-r, r) as f64)
            .sum();
        let tol = max_error + 1e-6 * (1.0 + want.abs());
        assert!(
            (got as f64 - want).abs() <= tol,
            "coordinate {j}: {got} vs {want} (tol {tol})"
        );
    }
}

fn config(n: usize, t: usize, d: usize) -> SecAggConfig {
    let mut c = SecAggConfig::new(n, t, d);
    c.session = 3;
    c
}

#[test]
fn exact_sum_with_0_to_n_minus_t_dropouts_at_each_stage() {
    let (n, t, d) = (10, 6, 257);
    let cfg = config(n, t, d);
    let x = inputs(n, d, 1);
    for stage in Stage::ALL {
        for k in 0..=n - t {
            // Drop k clients spread over the ids.
            let out: Vec<usize> = (0..k).map(|i| (3 * i + 1) % n).collect();
            let o = secure_sum(&x, &cfg, &Dropouts::at(stage, out.clone()), 42).unwrap();
            let expect_included: Vec<usize> = if stage >= Stage::ConsistencyCheck {
                (0..n).collect()
            } else {
                (0..n).filter(|i| !out.contains(i)).collect()
            };
            assert_eq!(o.included, expect_included, "{stage} k={k}");
            let mut expect_dropouts: Vec<(usize, Stage)> =
                out.iter().map(|&u| (u, stage)).collect();
            expect_dropouts.sort();
            assert_eq!(o.dropouts, expect_dropouts, "{stage} k={k}");
            assert!(o.forged_shares.is_empty());
            assert_sum(&o.sum, &x, &o.included, 1.0, o.max_error);
        }
    }
}

#[test]
fn exact_sum_with_dropouts_spread_over_all_stages() {
    let (n, t, d) = (12, 5, 100);
    let cfg = config(n, t, d);
    let mut x = inputs(n, d, 2);
    x[11] = None; // never joins
    let dropouts = Dropouts {
        advertise_keys: vec![0],
        share_keys: vec![3],
        masked_input: vec![5, 7],
        consistency_check: vec![],
        unmasking: vec![9, 10],
    };
    let o = secure_sum(&x, &cfg, &dropouts, 5).unwrap();
    assert_eq!(o.included, vec![1, 2, 4, 6, 8, 9, 10]);
    assert_eq!(
        o.dropouts,
        vec![
            (0, Stage::AdvertiseKeys),
            (3, Stage::ShareKeys),
            (5, Stage::MaskedInput),
            (7, Stage::MaskedInput),
            (9, Stage::Unmasking),
            (10, Stage::Unmasking),
            (11, Stage::AdvertiseKeys),
        ]
    );
    assert_sum(&o.sum, &x, &o.included, 1.0, o.max_error);
}

#[test]
fn secagg_plus_harary_graph_sums_exactly_under_dropouts() {
    let (n, d) = (30, 64);
    let mut cfg = config(n, 5, d);
    cfg.graph = Graph::Harary { degree: 8, seed: 9 };
    let x = inputs(n, d, 3);
    for stage in Stage::ALL {
        // Two dropouts: every neighbourhood of 9 keeps at least 7 ≥ t = 5.
        let o = secure_sum(&x, &cfg, &Dropouts::at(stage, [4, 17]), 8).unwrap();
        assert_sum(&o.sum, &x, &o.included, 1.0, o.max_error);
    }
}

#[test]
fn wider_modulus_and_clip_range() {
    let (n, d) = (6, 50);
    let mut cfg = config(n, 4, d);
    cfg.quantization = Quantization {
        clip_range: 0.5,
        modulus_bits: 64,
    };
    cfg.sign_messages = false;
    let x = inputs(n, d, 4);
    let o = secure_sum(&x, &cfg, &Dropouts::at(Stage::MaskedInput, [2]), 1).unwrap();
    assert!(o.max_error < 1e-15);
    assert_sum(&o.sum, &x, &o.included, 0.5, o.max_error);
}

#[test]
fn too_few_clients_at_any_stage_is_a_clear_error() {
    let (n, t, d) = (8, 5, 16);
    let cfg = config(n, t, d);
    let x = inputs(n, d, 5);
    for stage in Stage::ALL {
        let out: Vec<usize> = (0..=n - t).collect(); // n − t + 1 dropouts
        let e = secure_sum(&x, &cfg, &Dropouts::at(stage, out), 1).unwrap_err();
        match (stage, &e) {
            (
                Stage::Unmasking,
                PrivacyError::NotEnoughShares {
                    valid, threshold, ..
                },
            ) => {
                assert_eq!((*valid, *threshold), (t - 1, t))
            }
            (
                _,
                PrivacyError::ThresholdNotMet {
                    stage: s,
                    alive,
                    threshold,
                },
            ) => {
                assert_eq!((*s, *alive, *threshold), (stage, t - 1, t), "{e}")
            }
            _ => panic!("{stage}: unexpected {e}"),
        }
        assert!(e.to_string().contains("aborted"), "{e}");
    }
}

/// Every party of a session, built through the public API, and the messages up to round 2.
struct Session {
    clients: Vec<Client>,
    server: Server,
}

fn session(cfg: &SecAggConfig, seed: u64) -> Session {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys: Vec<SigningKey> = (0..cfg.num_clients)
        .map(|_| {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            SigningKey::from_bytes(&b)
        })
        .collect();
    let directory = Arc::new(Ed25519Directory(
        keys.iter().map(|k| k.verifying_key()).collect(),
    ));
    let clients = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            Client::new(cfg, i, s, Some(Identity::ed25519(k, directory.clone()))).unwrap()
        })
        .collect();
    Session {
        clients,
        server: Server::new(cfg, Some(directory)).unwrap(),
    }
}

impl Session {
    /// Rounds 0 and 1; returns the inboxes.
    fn share(&mut self) -> Vec<Vec<meshrl_privacy::secagg::EncryptedShare>> {
        let adverts = self
            .clients
            .iter_mut()
            .map(|c| c.advertise_keys().unwrap())
            .collect();
        let roster = self.server.receive_adverts(adverts).unwrap();
        let shares = self
            .clients
            .iter_mut()
            .map(|c| c.share_keys(&roster).unwrap())
            .collect();
        self.server.receive_shares(shares).unwrap()
    }

    fn mask(
        &mut self,
        inboxes: &[Vec<meshrl_privacy::secagg::EncryptedShare>],
        x: &[Option<Vec<f32>>],
    ) -> Vec<MaskedInput> {
        self.clients
            .iter_mut()
            .map(|c| {
                c.masked_input(&inboxes[c.id()], x[c.id()].as_ref().unwrap())
                    .unwrap()
            })
            .collect()
    }
}

impl Session {
    /// Round 3: every client confirms `announced`; returns the server's request for shares.
    fn confirm(&mut self, announced: &UnmaskRequest) -> Result<UnmaskRequest, PrivacyError> {
        let signatures = self
            .clients
            .iter_mut()
            .map(|c| c.check_consistency(announced).unwrap())
            .collect();
        self.server.receive_consistency_signatures(signatures)
    }
}

/// χ² statistic of the top 8 bits of 32-bit words against the uniform distribution.
fn chi_square_top_byte(words: &[u64]) -> f64 {
    let mut counts = [0f64; 256];
    for &w in words {
        counts[(w >> 24) as usize] += 1.0;
    }
    let e = words.len() as f64 / 256.0;
    counts.iter().map(|c| (c - e).powi(2) / e).sum()
}

#[test]
fn masked_vectors_look_uniform() {
    let (n, d) = (5, 40_000);
    let cfg = config(n, 3, d);
    let x: Vec<Option<Vec<f32>>> = (0..n).map(|_| Some(vec![0.0f32; d])).collect();
    let mut s = session(&cfg, 1);
    let inboxes = s.share();
    let masked = s.mask(&inboxes, &x);
    // χ² with 255 degrees of freedom: P(χ² > 377) ≈ 1e-6.
    for m in &masked {
        let chi = chi_square_top_byte(&m.masked);
        assert!(chi < 377.0, "client {}: χ² = {chi}", m.client);
        // Each of the 32 bits is set about half the time (5 σ band).
        for bit in 0..32 {
            let ones = m.masked.iter().filter(|&&w| (w >> bit) & 1 == 1).count() as f64;
            assert!(
                (ones / d as f64 - 0.5).abs() < 5.0 * 0.5 / (d as f64).sqrt(),
                "bit {bit}"
            );
        }
    }
    // The test can fail: the same inputs, quantized but unmasked, are constant.
    let q = meshrl_privacy::secagg::Quantizer::new(&cfg.quantization, n).unwrap();
    let mut plain = vec![0u64; d];
    q.quantize(&vec![0.0; d], &mut plain).unwrap();
    assert!(chi_square_top_byte(&plain) > 1e5);
}

#[test]
fn a_tampered_share_is_caught_by_its_recipient() {
    let cfg = config(5, 3, 8);
    let x = inputs(5, 8, 6);
    for byte in [0usize, 17, 95] {
        let mut s = session(&cfg, 2);
        let mut inboxes = s.share();
        let victim = &mut inboxes[2][1];
        let from = victim.from;
        victim.ciphertext[byte] ^= 0x01;
        let e = s.clients[2]
            .masked_input(&inboxes[2], x[2].as_ref().unwrap())
            .unwrap_err();
        assert!(
            matches!(e, PrivacyError::TamperedShare { from: f, to: 2 } if f == from),
            "{e}"
        );
    }
    // A share re-addressed to another client does not open there either.
    let mut s = session(&cfg, 2);
    let mut inboxes = s.share();
    let mut moved = inboxes[1].iter().find(|e| e.from == 0).unwrap().clone();
    moved.to = 3;
    inboxes[3].retain(|e| e.from != 0);
    inboxes[3].push(moved);
    let e = s.clients[3]
        .masked_input(&inboxes[3], x[3].as_ref().unwrap())
        .unwrap_err();
    assert!(
        matches!(e, PrivacyError::TamperedShare { from: 0, to: 3 }),
        "{e}"
    );
}

#[test]
fn forged_shares_are_named_and_left_out() {
    let (n, t) = (7, 4);
    let cfg = config(n, t, 32);
    let x = inputs(n, 32, 7);
    let run = |forgers: &[usize]| {
        let mut s = session(&cfg, 3);
        let inboxes = s.share();
        let masked = s.mask(&inboxes, &x);
        let announced = s.server.receive_masked_inputs(masked).unwrap();
        let request = s.confirm(&announced).unwrap();
        let mut responses: Vec<_> = s
            .clients
            .iter_mut()
            .map(|c| c.unmask(&request).unwrap())
            .collect();
        for &f in forgers {
            // Holder f lies about its share of client 0's self-mask seed.
            let share = responses[f]
                .self_mask_shares
                .iter_mut()
                .find(|r| r.owner == 0)
                .unwrap();
            share.value[0] ^= 0x02;
        }
        s.server.receive_unmask_responses(responses)
    };
    let o = run(&[1, 5]).unwrap();
    let mut forged: Vec<(usize, usize, SecretKind)> = o
        .forged_shares
        .iter()
        .map(|f| (f.holder, f.owner, f.kind))
        .collect();
    forged.sort_by_key(|f| f.0);
    assert_eq!(
        forged,
        vec![(1, 0, SecretKind::SelfMask), (5, 0, SecretKind::SelfMask)]
    );
    assert_sum(&o.sum, &x, &o.included, 1.0, o.max_error);
    // With n − t + 1 = 4 forgers only 3 < t valid shares of client 0's seed remain.
    let e = run(&[1, 2, 3, 5]).unwrap_err();
    assert!(
        matches!(
            e,
            PrivacyError::NotEnoughShares {
                owner: 0,
                kind: SecretKind::SelfMask,
                valid: 3,
                threshold: 4
            }
        ),
        "{e}"
    );
}

#[test]
fn unsigned_or_substituted_keys_are_refused() {
    let cfg = config(5, 3, 4);
    // The server checks signatures.
    let mut s = session(&cfg, 4);
    let mut adverts: Vec<_> = s
        .clients
        .iter_mut()
        .map(|c| c.advertise_keys().unwrap())
        .collect();
    adverts[2].mask_public_key[0] ^= 1;
    let e = s.server.receive_adverts(adverts).unwrap_err();
    assert!(
        matches!(
            e,
            PrivacyError::BadSignature {
                client: 2,
                stage: Stage::AdvertiseKeys
            }
        ),
        "{e}"
    );
    // So do the clients, against a server that substitutes a key in the roster.
    let mut s = session(&cfg, 4);
    let adverts: Vec<_> = s
        .clients
        .iter_mut()
        .map(|c| c.advertise_keys().unwrap())
        .collect();
    let roster = s.server.receive_adverts(adverts).unwrap();
    let mut swapped = roster.clone();
    swapped[3].cipher_public_key = roster[4].cipher_public_key;
    let e = s.clients[0].share_keys(&swapped).unwrap_err();
    assert!(
        matches!(e, PrivacyError::BadSignature { client: 3, .. }),
        "{e}"
    );
    // A missing signature is refused like a wrong one (same seed, so client 1's keys match).
    let mut unsigned = roster.clone();
    unsigned[3].signature = None;
    let mut s2 = session(&cfg, 4);
    s2.clients[1].advertise_keys().unwrap();
    let e = s2.clients[1].share_keys(&unsigned).unwrap_err();
    assert!(
        matches!(e, PrivacyError::BadSignature { client: 3, .. }),
        "{e}"
    );
    // And the intact roster passes.
    let mut s3 = session(&cfg, 4);
    s3.clients[1].advertise_keys().unwrap();
    s3.clients[1].share_keys(&roster).unwrap();
}

#[test]
fn clients_refuse_requests_that_would_reveal_too_much() {
    let cfg = config(6, 4, 4);
    let x = inputs(6, 4, 8);
    let mut s = session(&cfg, 5);
    let inboxes = s.share();
    let _ = s.mask(&inboxes, &x);
    let request = |survivors: Vec<usize>, dropped: Vec<usize>| UnmaskRequest {
        survivors,
        dropped,
        signatures: vec![],
    };
    // Both secrets of client 1: refused before anything is signed.
    assert!(matches!(
        s.clients[0]
            .check_consistency(&request(vec![0, 1, 2, 3, 4], vec![1, 5]))
            .unwrap_err(),
        PrivacyError::Protocol { .. }
    ));
    // Fewer than t survivors: nothing is confirmed, so no share can leave the client.
    let e = s.clients[2]
        .check_consistency(&request(vec![0, 1, 2], vec![3, 4, 5]))
        .unwrap_err();
    assert!(
        matches!(
            e,
            PrivacyError::ThresholdNotMet {
                stage: Stage::ConsistencyCheck,
                alive: 3,
                threshold: 4
            }
        ),
        "{e}"
    );
    // And a client answers once, in order.
    let ok = request((0..6).collect(), vec![]);
    s.clients[3].check_consistency(&ok).unwrap();
    assert!(matches!(
        s.clients[3].check_consistency(&ok).unwrap_err(),
        PrivacyError::Protocol { .. }
    ));
}

/// Bonawitz et al.'s attack on a protocol without the consistency check: the server tells
/// clients 0–2 that every input arrived and clients 3–5 that client 5 dropped, to collect
/// shares of both of client 5's secrets. Each group signs what it was told, and no client
/// reveals anything unless `t` of its neighbours signed the same sets.
#[test]
fn clients_refuse_to_unmask_when_the_server_shows_them_different_survivor_sets() {
    let (n, t) = (6, 4);
    let cfg = config(n, t, 4);
    let x = inputs(n, 4, 10);
    let mut s = session(&cfg, 7);
    let inboxes = s.share();
    let masked = s.mask(&inboxes, &x);
    let honest = s.server.receive_masked_inputs(masked).unwrap();
    assert_eq!((honest.survivors.len(), honest.dropped.len()), (6, 0));
    let told_5_dropped = UnmaskRequest {
        survivors: vec![0, 1, 2, 3, 4],
        dropped: vec![5],
        signatures: vec![],
    };
    let signatures: Vec<SurvivorSignature> = s
        .clients
        .iter_mut()
        .take(5)
        .map(|c| {
            let view = if c.id() < 3 { &honest } else { &told_5_dropped };
            c.check_consistency(view).unwrap()
        })
        .collect();
    // Client 0 is shown every signature as if all were over its own view: 3's and 4's fail.
    let mut forged = honest.clone();
    forged.signatures = signatures.clone();
    let e = s.clients[0].unmask(&forged).unwrap_err();
    assert!(
        matches!(
            e,
            PrivacyError::BadSignature {
                client: 3,
                stage: Stage::ConsistencyCheck
            }
        ),
        "{e}"
    );
    // With only the valid signatures, client 1 sees 3 < t confirmations and reveals nothing.
    let mut valid_only = honest.clone();
    valid_only.signatures = signatures[..3].to_vec();
    let e = s.clients[1].unmask(&valid_only).unwrap_err();
    assert!(
        matches!(
            e,
            PrivacyError::ThresholdNotMet {
                stage: Stage::Unmasking,
                alive: 3,
                threshold: 4
            }
        ),
        "{e}"
    );
    // Client 3 is asked with sets other than those it signed.
    let e = s.clients[3].unmask(&forged).unwrap_err();
    assert!(matches!(e, PrivacyError::Protocol { .. }), "{e}");
    // An honest server checks the signatures too: a tampered one is named.
    let mut s = session(&cfg, 7);
    let inboxes = s.share();
    let masked = s.mask(&inboxes, &x);
    let announced = s.server.receive_masked_inputs(masked).unwrap();
    let mut signatures: Vec<SurvivorSignature> = s
        .clients
        .iter_mut()
        .map(|c| c.check_consistency(&announced).unwrap())
        .collect();
    signatures[2].signature.as_mut().unwrap()[0] ^= 1;
    let e = s
        .server
        .receive_consistency_signatures(signatures)
        .unwrap_err();
    assert!(
        matches!(
            e,
            PrivacyError::BadSignature {
                client: 2,
                stage: Stage::ConsistencyCheck
            }
        ),
        "{e}"
    );
}

#[test]
fn a_consistent_session_unmasks_through_the_public_api() {
    let (n, t) = (6, 4);
    let cfg = config(n, t, 8);
    let x = inputs(n, 8, 11);
    let mut s = session(&cfg, 8);
    let inboxes = s.share();
    let mut masked = s.mask(&inboxes, &x);
    masked.pop(); // client 5 drops before its input
    s.clients.pop();
    let announced = s.server.receive_masked_inputs(masked).unwrap();
    assert_eq!(announced.dropped, vec![5]);
    let request = s.confirm(&announced).unwrap();
    assert_eq!(request.signatures.len(), 5);
    let responses = s
        .clients
        .iter_mut()
        .map(|c| c.unmask(&request).unwrap())
        .collect();
    let o = s.server.receive_unmask_responses(responses).unwrap();
    assert_eq!(o.included, vec![0, 1, 2, 3, 4]);
    assert_sum(&o.sum, &x, &o.included, 1.0, o.max_error);
}

#[test]
fn the_server_aborts_before_asking_for_shares_when_too_few_inputs_arrive() {
    let cfg = config(6, 4, 4);
    let x = inputs(6, 4, 9);
    let mut s = session(&cfg, 6);
    let inboxes = s.share();
    let masked = s.mask(&inboxes, &x);
    let e = s
        .server
        .receive_masked_inputs(masked.into_iter().take(3).collect())
        .unwrap_err();
    assert!(
        matches!(
            e,
            PrivacyError::ThresholdNotMet {
                stage: Stage::MaskedInput,
                alive: 3,
                threshold: 4
            }
        ),
        "{e}"
    );
}

#[test]
fn runs_are_reproducible_and_bad_arguments_are_named() {
    let cfg = config(5, 3, 10);
    let x = inputs(5, 10, 10);
    let a = secure_sum(&x, &cfg, &Dropouts::none(), 1).unwrap();
    assert_eq!(a, secure_sum(&x, &cfg, &Dropouts::none(), 1).unwrap());
    let e = |r: Result<_, PrivacyError>| r.unwrap_err().to_string();
    assert!(e(secure_sum(&x[..4], &cfg, &Dropouts::none(), 1)).contains("inputs"));
    let mut bad = x.clone();
    bad[1].as_mut().unwrap()[3] = f32::NAN;
    assert!(e(secure_sum(&bad, &cfg, &Dropouts::none(), 1)).contains("input 1 holds NaN"));
    bad[1] = Some(vec![0.0; 9]);
    assert!(e(secure_sum(&bad, &cfg, &Dropouts::none(), 1)).contains("input 1 has length 9"));
    assert!(e(secure_sum(
        &x,
        &cfg,
        &Dropouts::at(Stage::ShareKeys, [7]),
        1
    ))
    .contains("dropouts"));
    let mut huge = cfg.clone();
    huge.dim = 1 << 27;
    assert!(e(secure_sum(
        &vec![None::<Vec<f32>>; 5],
        &huge,
        &Dropouts::none(),
        1
    ))
    .contains("dim"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn random_sessions_sum_exactly(seed in any::<u64>(), n in 3usize..12, d in 1usize..40, r in 0.1f32..10.0) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let t = rng.random_range(2..=n);
        let mut cfg = config(n, t, d);
        cfg.quantization.clip_range = r;
        cfg.sign_messages = rng.random();
        let x: Vec<Option<Vec<f32>>> = (0..n).map(|_| Some((0..d).map(|_| rng.random_range(-2.0 * r..2.0 * r)).collect())).collect();
        // Up to n − t dropouts, each at a random stage.
        let mut ids: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() { ids.swap(i, rng.random_range(0..=i)); }
        let mut dropouts = Dropouts::none();
        for &u in &ids[..rng.random_range(0..=n - t)] {
            match rng.random_range(0..4) {
                0 => dropouts.advertise_keys.push(u),
                1 => dropouts.share_keys.push(u),
                2 => dropouts.masked_input.push(u),
                _ => dropouts.unmasking.push(u),
            }
        }
        let o = secure_sum(&x, &cfg, &dropouts, seed).unwrap();
        assert_sum(&o.sum, &x, &o.included, r, o.max_error);
    }
}
