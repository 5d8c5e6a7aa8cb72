//! The server of secure aggregation: relays keys and shares, collects masked inputs, and
//! removes the masks from their sum with the shares the survivors reveal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use curve25519_dalek::Scalar;
use rayon::prelude::*;
use x25519_dalek::PublicKey;

use super::crypto::{
    apply_mask, mask_secret_from_seed, modulus_mask, pairwise_mask_key, seed_commitment,
    self_mask_key, share_commitment,
};
use super::identity::{verify_advert, verify_survivor_signature, IdentityDirectory};
use super::shamir::{combine, lagrange_at_zero};
use super::{
    AdvertiseKeys, EncryptedShare, ForgedShare, MaskedInput, Quantizer, SecAggConfig,
    SecAggOutcome, ShareCommitment, ShareKeys, SurvivorSignature, Topology, UnmaskRequest,
    UnmaskResponse,
};
use crate::error::{invalid, protocol, PrivacyError, SecretKind, Stage};

/// The server's side of a session. Call the five `receive_*` methods in order, each once,
/// with the messages that arrived before that stage's deadline; a client missing from a
/// stage has dropped out.
pub struct Server {
    config: SecAggConfig,
    topology: Arc<Topology>,
    quantizer: Quantizer,
    directory: Option<Arc<dyn IdentityDirectory>>,
    next: Option<Stage>,
    adverts: BTreeMap<usize, AdvertiseKeys>,
    commitments: HashMap<(usize, usize), ShareCommitment>,
    shared: BTreeSet<usize>,
    masked: BTreeMap<usize, Vec<u64>>,
    /// The sets announced after round 2, and who confirmed them in round 3.
    announced: Option<UnmaskRequest>,
    confirmed: BTreeSet<usize>,
}

impl Server {
    /// The server of a session; `directory` (the clients' identities) is required when
    /// `config.sign_messages`.
    pub fn new(
        config: &SecAggConfig,
        directory: Option<Arc<dyn IdentityDirectory>>,
    ) -> Result<Self, PrivacyError> {
        config.validate()?;
        Self::with_topology(config, Arc::new(Topology::new(config)), directory)
    }

    pub(crate) fn with_topology(
        config: &SecAggConfig,
        topology: Arc<Topology>,
        directory: Option<Arc<dyn IdentityDirectory>>,
    ) -> Result<Self, PrivacyError> {
        match &directory {
            None if config.sign_messages => {
                return Err(invalid(
                    "directory",
                    "sign_messages is on but no directory was given",
                ))
            }
            _ => {}
        }
        Ok(Self {
            quantizer: Quantizer::new(&config.quantization, config.num_clients)?,
            config: config.clone(),
            topology,
            directory,
            next: Some(Stage::AdvertiseKeys),
            adverts: BTreeMap::new(),
            commitments: HashMap::new(),
            shared: BTreeSet::new(),
            masked: BTreeMap::new(),
            announced: None,
            confirmed: BTreeSet::new(),
        })
    }

    fn enter(&mut self, stage: Stage) -> Result<(), PrivacyError> {
        if self.next != Some(stage) {
            return Err(protocol(
                stage,
                format!("the server expected {:?}", self.next.map(|s| s.to_string())),
            ));
        }
        self.next = None;
        Ok(())
    }

    /// Aborts unless every client in `alive` keeps at least `t` live holders.
    fn check_threshold(
        &self,
        stage: Stage,
        alive: &BTreeSet<usize>,
        owners: &BTreeSet<usize>,
    ) -> Result<(), PrivacyError> {
        let t = self.config.threshold;
        let fewest = owners
            .iter()
            .map(|&u| self.topology.live_holders(u, alive))
            .min()
            .unwrap_or(0);
        if fewest < t {
            return Err(PrivacyError::ThresholdNotMet {
                stage,
                alive: fewest,
                threshold: t,
            });
        }
        Ok(())
    }

    /// Round 0: checks the advertisements (ids, duplicates, signatures) and returns the roster
    /// to broadcast.
    pub fn receive_adverts(
        &mut self,
        adverts: Vec<AdvertiseKeys>,
    ) -> Result<Vec<AdvertiseKeys>, PrivacyError> {
        self.enter(Stage::AdvertiseKeys)?;
        for a in adverts {
            if a.client >= self.config.num_clients || self.adverts.contains_key(&a.client) {
                return Err(protocol(
                    Stage::AdvertiseKeys,
                    format!("client {} is out of range or advertised twice", a.client),
                ));
            }
            if let Some(d) = &self.directory {
                verify_advert(&a, self.config.session, d.as_ref())?;
            }
            self.adverts.insert(a.client, a);
        }
        let alive: BTreeSet<usize> = self.adverts.keys().copied().collect();
        self.check_threshold(Stage::AdvertiseKeys, &alive, &alive)?;
        self.next = Some(Stage::ShareKeys);
        Ok(self.adverts.values().cloned().collect())
    }

    /// Round 1: checks the sealed shares and commitments, keeps the commitments, and returns
    /// each client's inbox (index = client id; empty for clients that dropped).
    pub fn receive_shares(
        &mut self,
        messages: Vec<ShareKeys>,
    ) -> Result<Vec<Vec<EncryptedShare>>, PrivacyError> {
        self.enter(Stage::ShareKeys)?;
        let mut all = Vec::new();
        for m in messages {
            let u = m.client;
            if !self.adverts.contains_key(&u) || !self.shared.insert(u) {
                return Err(protocol(
                    Stage::ShareKeys,
                    format!("client {u} did not advertise keys or shared twice"),
                ));
            }
            let expected: BTreeSet<usize> = self
                .adverts
                .keys()
                .copied()
                .filter(|&v| self.topology.linked(u, v))
                .collect();
            let committed: BTreeSet<usize> = m.commitments.iter().map(|c| c.holder).collect();
            let sent: BTreeSet<usize> = m.shares.iter().map(|s| s.to).collect();
            let mut with_self = sent.clone();
            with_self.insert(u);
            if committed != expected
                || with_self != expected
                || sent.len() != m.shares.len()
                || committed.len() != m.commitments.len()
                || m.shares.iter().any(|s| s.from != u || s.to == u)
            {
                return Err(protocol(Stage::ShareKeys, format!("client {u}'s shares or commitments do not cover its live neighbours exactly once")));
            }
            for c in m.commitments {
                self.commitments.insert((u, c.holder), c);
            }
            all.extend(m.shares);
        }
        self.check_threshold(Stage::ShareKeys, &self.shared, &self.shared)?;
        let mut inboxes = vec![Vec::new(); self.config.num_clients];
        for s in all {
            if self.shared.contains(&s.to) {
                inboxes[s.to].push(s);
            }
        }
        self.next = Some(Stage::MaskedInput);
        Ok(inboxes)
    }

    /// Round 2: collects the masked inputs and announces who survived and who dropped, for the
    /// survivors to confirm. Aborts, before anything is revealed, if some secret would have
    /// fewer than `t` live holders.
    pub fn receive_masked_inputs(
        &mut self,
        messages: Vec<MaskedInput>,
    ) -> Result<UnmaskRequest, PrivacyError> {
        self.enter(Stage::MaskedInput)?;
        let top = modulus_mask(self.quantizer.bits());
        for m in messages {
            let u = m.client;
            if !self.shared.contains(&u) || self.masked.contains_key(&u) {
                return Err(protocol(
                    Stage::MaskedInput,
                    format!("client {u} did not share keys or sent its input twice"),
                ));
            }
            if m.masked.len() != self.config.dim || m.masked.iter().any(|&w| w > top) {
                return Err(protocol(Stage::MaskedInput, format!("client {u}'s masked input has the wrong length or words beyond the modulus")));
            }
            self.masked.insert(u, m.masked);
        }
        let survivors: BTreeSet<usize> = self.masked.keys().copied().collect();
        if survivors.len() < self.config.threshold {
            return Err(PrivacyError::ThresholdNotMet {
                stage: Stage::MaskedInput,
                alive: survivors.len(),
                threshold: self.config.threshold,
            });
        }
        self.check_threshold(Stage::MaskedInput, &survivors, &self.shared)?;
        self.next = Some(Stage::ConsistencyCheck);
        let request = UnmaskRequest {
            survivors: survivors.into_iter().collect(),
            dropped: self
                .shared
                .iter()
                .copied()
                .filter(|u| !self.masked.contains_key(u))
                .collect(),
            signatures: Vec::new(),
        };
        self.announced = Some(request.clone());
        Ok(request)
    }

    /// Round 3: collects the survivors' signatures over the announced sets (each checked when
    /// messages are signed) and returns the request for shares, carrying them. Aborts, before
    /// anything is revealed, if some secret would have fewer than `t` confirming holders.
    pub fn receive_consistency_signatures(
        &mut self,
        messages: Vec<SurvivorSignature>,
    ) -> Result<UnmaskRequest, PrivacyError> {
        self.enter(Stage::ConsistencyCheck)?;
        let mut request = self
            .announced
            .take()
            .expect("receive_masked_inputs ran before the consistency check");
        for m in messages {
            let u = m.client;
            if !self.masked.contains_key(&u) || !self.confirmed.insert(u) {
                return Err(protocol(
                    Stage::ConsistencyCheck,
                    format!("client {u} sent no input or confirmed twice"),
                ));
            }
            if let Some(d) = &self.directory {
                verify_survivor_signature(
                    &m,
                    self.config.session,
                    &request.survivors,
                    &request.dropped,
                    d.as_ref(),
                )?;
            }
            request.signatures.push(m);
        }
        request.signatures.sort_unstable_by_key(|s| s.client);
        if self.confirmed.len() < self.config.threshold {
            return Err(PrivacyError::ThresholdNotMet {
                stage: Stage::ConsistencyCheck,
                alive: self.confirmed.len(),
                threshold: self.config.threshold,
            });
        }
        self.check_threshold(Stage::ConsistencyCheck, &self.confirmed, &self.shared)?;
        self.next = Some(Stage::Unmasking);
        Ok(request)
    }

    /// Round 4: checks every revealed share against its dealer's commitment (a forged one is
    /// named and left out), rebuilds the secrets from `t` valid shares each, checks them
    /// against the dealers' public keys and commitments, and only then unmasks the sum.
    pub fn receive_unmask_responses(
        &mut self,
        responses: Vec<UnmaskResponse>,
    ) -> Result<SecAggOutcome, PrivacyError> {
        self.enter(Stage::Unmasking)?;
        let session = self.config.session;
        let mut responders = BTreeSet::new();
        let mut valid: BTreeMap<(usize, SecretKind), Vec<(u64, Scalar)>> = BTreeMap::new();
        let mut forged = Vec::new();
        for r in &responses {
            let h = r.client;
            if !self.confirmed.contains(&h) || !responders.insert(h) {
                return Err(protocol(
                    Stage::Unmasking,
                    format!("client {h} did not confirm the survivor set or answered twice"),
                ));
            }
            let revealed = r
                .mask_key_shares
                .iter()
                .map(|s| (s, SecretKind::MaskKey))
                .chain(r.self_mask_shares.iter().map(|s| (s, SecretKind::SelfMask)));
            for (s, kind) in revealed {
                let wanted = match kind {
                    SecretKind::MaskKey => {
                        self.shared.contains(&s.owner) && !self.masked.contains_key(&s.owner)
                    }
                    SecretKind::SelfMask => self.masked.contains_key(&s.owner),
                };
                if !wanted {
                    continue; // not asked for: never used
                }
                let value: Option<Scalar> = Scalar::from_canonical_bytes(s.value).into();
                let ok = match (value, self.commitments.get(&(s.owner, h))) {
                    (Some(y), Some(c)) => {
                        let expect = match kind {
                            SecretKind::MaskKey => &c.mask_key,
                            SecretKind::SelfMask => &c.self_mask,
                        };
                        share_commitment(&y, session, s.owner, h, kind) == *expect
                    }
                    _ => false,
                };
                match (ok, value) {
                    (true, Some(y)) => valid
                        .entry((s.owner, kind))
                        .or_default()
                        .push((h as u64 + 1, y)),
                    _ => forged.push(ForgedShare {
                        holder: h,
                        owner: s.owner,
                        kind,
                    }),
                }
            }
        }
        // Every secret needed, rebuilt and checked before anything about the sum is computed.
        let t = self.config.threshold;
        let needed = self.shared.iter().map(|&u| {
            (
                u,
                if self.masked.contains_key(&u) {
                    SecretKind::SelfMask
                } else {
                    SecretKind::MaskKey
                },
            )
        });
        let mut lagrange: HashMap<Vec<u64>, Vec<Scalar>> = HashMap::new();
        let mut self_keys = Vec::new();
        let mut dropped_secrets = Vec::new();
        for (owner, kind) in needed {
            let mut shares = valid.remove(&(owner, kind)).unwrap_or_default();
            if shares.len() < t {
                return Err(PrivacyError::NotEnoughShares {
                    owner,
                    kind,
                    valid: shares.len(),
                    threshold: t,
                });
            }
            shares.sort_unstable_by_key(|s| s.0);
            shares.truncate(t);
            let xs: Vec<u64> = shares.iter().map(|s| s.0).collect();
            let ys: Vec<Scalar> = shares.iter().map(|s| s.1).collect();
            let coefficients = lagrange
                .entry(xs)
                .or_insert_with_key(|xs| lagrange_at_zero(xs));
            let secret = combine(&ys, coefficients);
            let advert = &self.adverts[&owner];
            let inconsistent = || {
                protocol(Stage::Unmasking, format!("client {owner}'s {kind} rebuilt from verified shares does not match its advertised key: its dealing was inconsistent"))
            };
            match kind {
                SecretKind::SelfMask => {
                    if seed_commitment(&secret, session, owner) != advert.self_mask_commitment {
                        return Err(inconsistent());
                    }
                    self_keys.push(self_mask_key(&secret, session, owner));
                }
                SecretKind::MaskKey => {
                    let sk = mask_secret_from_seed(&secret, session, owner);
                    if PublicKey::from(&sk).to_bytes() != advert.mask_public_key {
                        return Err(inconsistent());
                    }
                    dropped_secrets.push((owner, sk));
                }
            }
        }
        // The masks to remove: every survivor's self mask, and each dropped client's pairwise
        // mask with each surviving neighbour (which added it with sign + if its id is lower).
        let mut removals: Vec<([u8; 32], bool)> =
            self_keys.into_iter().map(|k| (k, true)).collect();
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for (i, (v, _)) in dropped_secrets.iter().enumerate() {
            pairs.extend(
                self.masked
                    .keys()
                    .filter(|&&w| self.topology.linked(*v, w))
                    .map(|&w| (i, w)),
            );
        }
        let pairwise: Vec<Option<([u8; 32], bool)>> = pairs
            .par_iter()
            .map(|&(i, w)| {
                let (v, sk) = &dropped_secrets[i];
                pairwise_mask_key(sk, &self.adverts[&w].mask_public_key, session, *v, w)
                    .map(|k| (k, w < *v))
            })
            .collect();
        for p in pairwise {
            removals.push(p.ok_or_else(|| {
                protocol(
                    Stage::Unmasking,
                    "a survivor's mask key is a low-order point",
                )
            })?);
        }
        let bits = self.quantizer.bits();
        let modmask = modulus_mask(bits);
        let d = self.config.dim;
        let add = |mut a: Vec<u64>, b: Vec<u64>| {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.wrapping_add(y) & modmask;
            }
            a
        };
        let rows: Vec<&Vec<u64>> = self.masked.values().collect();
        let inputs = rows.par_iter().fold(
            || vec![0u64; d],
            |mut acc, y| {
                for (x, w) in acc.iter_mut().zip(y.iter()) {
                    *x = x.wrapping_add(*w) & modmask;
                }
                acc
            },
        );
        let masks = removals.par_iter().fold(
            || vec![0u64; d],
            |mut acc, (key, negate)| {
                apply_mask(&mut acc, key, bits, *negate);
                acc
            },
        );
        let total = inputs.chain(masks).reduce(|| vec![0u64; d], add);
        let included: Vec<usize> = self.masked.keys().copied().collect();
        let dropouts = (0..self.config.num_clients)
            .filter_map(|u| {
                let stage = if !self.adverts.contains_key(&u) {
                    Stage::AdvertiseKeys
                } else if !self.shared.contains(&u) {
                    Stage::ShareKeys
                } else if !self.masked.contains_key(&u) {
                    Stage::MaskedInput
                } else if !self.confirmed.contains(&u) {
                    Stage::ConsistencyCheck
                } else if !responders.contains(&u) {
                    Stage::Unmasking
                } else {
                    return None;
                };
                Some((u, stage))
            })
            .collect();
        Ok(SecAggOutcome {
            sum: self.quantizer.dequantize_sum(&total, included.len()),
            max_error: self.quantizer.max_error(included.len()),
            included,
            dropouts,
            forged_shares: forged,
        })
    }
}
