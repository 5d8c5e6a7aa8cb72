//! A client of secure aggregation: a state machine that answers the server's five rounds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chacha20::ChaCha20Rng;
use curve25519_dalek::Scalar;
use rand::SeedableRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use super::crypto::{
    advert_message, apply_mask, channel_key, consistency_message, mask_secret_from_seed,
    pairwise_mask_key, seed_commitment, self_mask_key, share_commitment, ShareChannel,
};
use super::identity::{verify_advert, verify_survivor_signature, Identity};
use super::shamir::{random_scalar, split};
use super::{
    AdvertiseKeys, EncryptedShare, MaskedInput, Quantizer, RevealedShare, SecAggConfig,
    ShareCommitment, ShareKeys, SurvivorSignature, Topology, UnmaskRequest, UnmaskResponse,
};
use crate::error::{invalid, protocol, PrivacyError, SecretKind, Stage};

/// Bytes of a share pair's plaintext: owner, holder, two field elements.
const SHARE_PLAINTEXT: usize = 8 + 8 + 32 + 32;

/// A neighbour's advertised keys.
struct Peer {
    cipher_pk: [u8; 32],
    mask_pk: [u8; 32],
}

/// One client's side of a session. Call [`Client::advertise_keys`], [`Client::share_keys`],
/// [`Client::masked_input`], [`Client::check_consistency`] and [`Client::unmask`] in that
/// order, each once.
pub struct Client {
    config: SecAggConfig,
    topology: Arc<Topology>,
    quantizer: Quantizer,
    id: usize,
    identity: Option<Identity>,
    rng: ChaCha20Rng,
    next: Option<Stage>,
    cipher_secret: StaticSecret,
    mask_seed: Scalar,
    mask_secret: StaticSecret,
    self_seed: Scalar,
    peers: BTreeMap<usize, Peer>,
    channel_keys: BTreeMap<usize, [u8; 32]>,
    /// owner → (mask-key-seed share, self-mask-seed share), this client's own included.
    held: BTreeMap<usize, (Scalar, Scalar)>,
    /// The (survivors, dropped) sets this client confirmed in the consistency check.
    confirmed: Option<(Vec<usize>, Vec<usize>)>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.mask_seed.zeroize();
        self.self_seed.zeroize();
        for k in self.channel_keys.values_mut() {
            k.zeroize();
        }
        for (a, b) in self.held.values_mut() {
            a.zeroize();
            b.zeroize();
        }
    }
}

impl Client {
    /// Client `id` of a session. Its secrets come from `seed` (ChaCha20): tests and
    /// simulations derive it from a run seed, a deployment draws it from the OS
    /// (`getrandom`). `identity` is required when `config.sign_messages`.
    pub fn new(
        config: &SecAggConfig,
        id: usize,
        seed: [u8; 32],
        identity: Option<Identity>,
    ) -> Result<Self, PrivacyError> {
        config.validate()?;
        Self::with_topology(config, Arc::new(Topology::new(config)), id, seed, identity)
    }

    pub(crate) fn with_topology(
        config: &SecAggConfig,
        topology: Arc<Topology>,
        id: usize,
        seed: [u8; 32],
        identity: Option<Identity>,
    ) -> Result<Self, PrivacyError> {
        if id >= config.num_clients {
            return Err(invalid(
                "id",
                format!(
                    "must be below num_clients = {}, got {id}",
                    config.num_clients
                ),
            ));
        }
        match &identity {
            None if config.sign_messages => {
                return Err(invalid(
                    "identity",
                    "sign_messages is on but no identity was given",
                ))
            }
            _ => {}
        }
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut bytes = [0u8; 32];
        rand::Rng::fill_bytes(&mut rng, &mut bytes);
        let cipher_secret = StaticSecret::from(bytes);
        bytes.zeroize();
        let mask_seed = random_scalar(&mut rng);
        let self_seed = random_scalar(&mut rng);
        Ok(Self {
            quantizer: Quantizer::new(&config.quantization, config.num_clients)?,
            mask_secret: mask_secret_from_seed(&mask_seed, config.session, id),
            config: config.clone(),
            topology,
            id,
            identity,
            rng,
            next: Some(Stage::AdvertiseKeys),
            cipher_secret,
            mask_seed,
            self_seed,
            peers: BTreeMap::new(),
            channel_keys: BTreeMap::new(),
            held: BTreeMap::new(),
            confirmed: None,
        })
    }

    /// This client's id.
    pub fn id(&self) -> usize {
        self.id
    }

    fn enter(&mut self, stage: Stage) -> Result<(), PrivacyError> {
        if self.next != Some(stage) {
            return Err(protocol(
                stage,
                format!(
                    "client {} expected {:?}",
                    self.id,
                    self.next.map(|s| s.to_string())
                ),
            ));
        }
        self.next = None;
        Ok(())
    }

    /// Round 0: the public keys, signed when the client has an identity.
    pub fn advertise_keys(&mut self) -> Result<AdvertiseKeys, PrivacyError> {
        self.enter(Stage::AdvertiseKeys)?;
        let cipher_public_key = PublicKey::from(&self.cipher_secret).to_bytes();
        let mask_public_key = PublicKey::from(&self.mask_secret).to_bytes();
        let self_mask_commitment = seed_commitment(&self.self_seed, self.config.session, self.id);
        let signature = self.identity.as_ref().map(|i| {
            let msg = advert_message(
                self.config.session,
                self.id,
                &cipher_public_key,
                &mask_public_key,
                &self_mask_commitment,
            );
            i.signer.sign(&msg)
        });
        self.next = Some(Stage::ShareKeys);
        Ok(AdvertiseKeys {
            client: self.id,
            cipher_public_key,
            mask_public_key,
            self_mask_commitment,
            signature,
        })
    }

    /// Round 1: given the server's roster of advertisements, splits both seeds `t`-of-`k`
    /// among the live neighbours and seals each neighbour's pair of shares.
    pub fn share_keys(&mut self, roster: &[AdvertiseKeys]) -> Result<ShareKeys, PrivacyError> {
        self.enter(Stage::ShareKeys)?;
        let (n, me, session) = (self.config.num_clients, self.id, self.config.session);
        let mut seen = BTreeSet::new();
        let mut found_self = false;
        for a in roster {
            if a.client >= n || !seen.insert(a.client) {
                return Err(protocol(
                    Stage::ShareKeys,
                    format!("roster lists client {} twice or out of range", a.client),
                ));
            }
            if !self.topology.linked(me, a.client) {
                continue;
            }
            if let Some(id) = &self.identity {
                verify_advert(a, session, id.directory.as_ref())?;
            }
            if a.client == me {
                let mine = (
                    PublicKey::from(&self.cipher_secret).to_bytes(),
                    PublicKey::from(&self.mask_secret).to_bytes(),
                );
                if (a.cipher_public_key, a.mask_public_key) != mine {
                    return Err(protocol(
                        Stage::ShareKeys,
                        format!("the roster altered client {me}'s own keys"),
                    ));
                }
                found_self = true;
            } else {
                self.peers.insert(
                    a.client,
                    Peer {
                        cipher_pk: a.cipher_public_key,
                        mask_pk: a.mask_public_key,
                    },
                );
            }
        }
        if !found_self {
            return Err(protocol(
                Stage::ShareKeys,
                format!("the roster lacks client {me}"),
            ));
        }
        let alive = self.peers.len() + 1;
        if alive < self.config.threshold {
            return Err(PrivacyError::ThresholdNotMet {
                stage: Stage::ShareKeys,
                alive,
                threshold: self.config.threshold,
            });
        }
        let mut holders: Vec<usize> = self.peers.keys().copied().collect();
        holders.push(me);
        holders.sort_unstable();
        let xs: Vec<u64> = holders.iter().map(|&h| h as u64 + 1).collect();
        let t = self.config.threshold;
        let mask_shares = split(&self.mask_seed, t, &xs, &mut self.rng);
        let self_shares = split(&self.self_seed, t, &xs, &mut self.rng);
        let mut shares = Vec::with_capacity(holders.len() - 1);
        let mut commitments = Vec::with_capacity(holders.len());
        for ((&h, ms), ss) in holders.iter().zip(&mask_shares).zip(&self_shares) {
            commitments.push(ShareCommitment {
                holder: h,
                mask_key: share_commitment(&ms.y, session, me, h, SecretKind::MaskKey),
                self_mask: share_commitment(&ss.y, session, me, h, SecretKind::SelfMask),
            });
            if h == me {
                self.held.insert(me, (ms.y, ss.y));
                continue;
            }
            let key = channel_key(
                &self.cipher_secret,
                &self.peers[&h].cipher_pk,
                session,
                me,
                h,
            )
            .ok_or_else(|| {
                protocol(
                    Stage::ShareKeys,
                    format!("client {h}'s cipher key is a low-order point"),
                )
            })?;
            let mut plaintext = [0u8; SHARE_PLAINTEXT];
            plaintext[..8].copy_from_slice(&(me as u64).to_le_bytes());
            plaintext[8..16].copy_from_slice(&(h as u64).to_le_bytes());
            plaintext[16..48].copy_from_slice(ms.y.as_bytes());
            plaintext[48..].copy_from_slice(ss.y.as_bytes());
            let ciphertext = ShareChannel::new(&key, session, me, h).seal(&plaintext);
            plaintext.zeroize();
            self.channel_keys.insert(h, key);
            shares.push(EncryptedShare {
                from: me,
                to: h,
                ciphertext,
            });
        }
        self.next = Some(Stage::MaskedInput);
        Ok(ShareKeys {
            client: me,
            shares,
            commitments,
        })
    }

    /// Opens one sealed share pair addressed to this client.
    fn open(&self, e: &EncryptedShare) -> Result<(Scalar, Scalar), PrivacyError> {
        let tampered = PrivacyError::TamperedShare {
            from: e.from,
            to: self.id,
        };
        let key = self.channel_keys.get(&e.from).ok_or_else(|| {
            protocol(
                Stage::MaskedInput,
                format!(
                    "client {} received a share from client {}, not a live neighbour",
                    self.id, e.from
                ),
            )
        })?;
        let mut pt = ShareChannel::new(key, self.config.session, e.from, self.id)
            .open(&e.ciphertext)
            .ok_or(tampered)?;
        let parsed = (pt.len() == SHARE_PLAINTEXT
            && pt[..8] == (e.from as u64).to_le_bytes()
            && pt[8..16] == (self.id as u64).to_le_bytes())
        .then(|| {
            let a: Option<Scalar> =
                Scalar::from_canonical_bytes(pt[16..48].try_into().expect("32 bytes")).into();
            let b: Option<Scalar> =
                Scalar::from_canonical_bytes(pt[48..].try_into().expect("32 bytes")).into();
            a.zip(b)
        })
        .flatten();
        pt.zeroize();
        parsed.ok_or(PrivacyError::TamperedShare {
            from: e.from,
            to: self.id,
        })
    }

    /// Round 2: opens the shares relayed by the server (their senders are the live
    /// neighbours), then sends `input` (length `d`, finite; clipped to the clip range)
    /// quantized and masked.
    pub fn masked_input(
        &mut self,
        inbox: &[EncryptedShare],
        input: &[f32],
    ) -> Result<MaskedInput, PrivacyError> {
        self.enter(Stage::MaskedInput)?;
        if input.len() != self.config.dim {
            return Err(invalid(
                "input",
                format!(
                    "has length {}, expected dim = {}",
                    input.len(),
                    self.config.dim
                ),
            ));
        }
        let mut masked = vec![0u64; input.len()];
        self.quantizer.quantize(input, &mut masked)?;
        for e in inbox {
            if e.to != self.id || self.held.contains_key(&e.from) {
                return Err(protocol(
                    Stage::MaskedInput,
                    format!(
                        "client {} got a misaddressed or repeated share from client {}",
                        self.id, e.from
                    ),
                ));
            }
            let pair = self.open(e)?;
            self.held.insert(e.from, pair);
        }
        let alive = self.held.len();
        if alive < self.config.threshold {
            return Err(PrivacyError::ThresholdNotMet {
                stage: Stage::MaskedInput,
                alive,
                threshold: self.config.threshold,
            });
        }
        let (bits, session, me) = (self.quantizer.bits(), self.config.session, self.id);
        apply_mask(
            &mut masked,
            &self_mask_key(&self.self_seed, session, me),
            bits,
            false,
        );
        for &v in self.held.keys().filter(|&&v| v != me) {
            let mut key =
                pairwise_mask_key(&self.mask_secret, &self.peers[&v].mask_pk, session, me, v)
                    .ok_or_else(|| {
                        protocol(
                            Stage::MaskedInput,
                            format!("client {v}'s mask key is a low-order point"),
                        )
                    })?;
            apply_mask(&mut masked, &key, bits, me > v);
            key.zeroize();
        }
        self.next = Some(Stage::ConsistencyCheck);
        Ok(MaskedInput { client: me, masked })
    }

    /// Round 3 (consistency check): signs the survivor and dropped sets the server announced.
    /// Refuses sets that list a client both ways, omit this client, or leave fewer than `t` of
    /// its neighbourhood alive, so nothing is confirmed that could later reveal too much.
    pub fn check_consistency(
        &mut self,
        request: &UnmaskRequest,
    ) -> Result<SurvivorSignature, PrivacyError> {
        self.enter(Stage::ConsistencyCheck)?;
        let stage = Stage::ConsistencyCheck;
        let n = self.config.num_clients;
        let ascending = |v: &[usize]| v.windows(2).all(|w| w[0] < w[1]);
        if !ascending(&request.survivors) || !ascending(&request.dropped) {
            return Err(protocol(
                stage,
                "the announced sets repeat a client or are not ascending",
            ));
        }
        let survivors: BTreeSet<usize> = request.survivors.iter().copied().collect();
        let dropped: BTreeSet<usize> = request.dropped.iter().copied().collect();
        if let Some(&bad) = survivors.iter().chain(&dropped).find(|&&u| u >= n) {
            return Err(protocol(
                stage,
                format!("the request names client {bad}, beyond num_clients"),
            ));
        }
        if let Some(both) = survivors.intersection(&dropped).next() {
            return Err(protocol(
                stage,
                format!("the request asks for both secrets of client {both}"),
            ));
        }
        if !survivors.contains(&self.id) {
            return Err(protocol(
                stage,
                format!(
                    "the request omits client {} although it sent its input",
                    self.id
                ),
            ));
        }
        let alive = self.held.keys().filter(|u| survivors.contains(u)).count();
        if alive < self.config.threshold {
            return Err(PrivacyError::ThresholdNotMet {
                stage,
                alive,
                threshold: self.config.threshold,
            });
        }
        let signature = self.identity.as_ref().map(|i| {
            i.signer.sign(&consistency_message(
                self.config.session,
                &request.survivors,
                &request.dropped,
            ))
        });
        self.confirmed = Some((request.survivors.clone(), request.dropped.clone()));
        self.next = Some(Stage::Unmasking);
        Ok(SurvivorSignature {
            client: self.id,
            signature,
        })
    }

    /// Round 4: reveals, for each neighbour, the share the request asks for: of the mask-key
    /// seed if it dropped, of the self-mask seed if its input arrived, never both. Refuses
    /// unless the request repeats the sets this client confirmed and carries valid signatures
    /// over them from at least `t` of its neighbourhood (this client included).
    pub fn unmask(&mut self, request: &UnmaskRequest) -> Result<UnmaskResponse, PrivacyError> {
        self.enter(Stage::Unmasking)?;
        let (survivors, dropped) = self
            .confirmed
            .take()
            .expect("check_consistency ran before unmasking");
        if request.survivors != survivors || request.dropped != dropped {
            return Err(protocol(
                Stage::Unmasking,
                format!(
                    "the server changed the survivor set since client {} confirmed it",
                    self.id
                ),
            ));
        }
        let mut signers = BTreeSet::new();
        for s in &request.signatures {
            if !signers.insert(s.client) || survivors.binary_search(&s.client).is_err() {
                return Err(protocol(
                    Stage::Unmasking,
                    format!("client {} signed twice or is not a survivor", s.client),
                ));
            }
            // Only the neighbourhood counts towards t (SecAgg+: Bell et al. 2020).
            if !self.held.contains_key(&s.client) {
                continue;
            }
            if let Some(id) = &self.identity {
                verify_survivor_signature(
                    s,
                    self.config.session,
                    &survivors,
                    &dropped,
                    id.directory.as_ref(),
                )?;
            }
        }
        let alive = self.held.keys().filter(|u| signers.contains(u)).count();
        if alive < self.config.threshold {
            return Err(PrivacyError::ThresholdNotMet {
                stage: Stage::Unmasking,
                alive,
                threshold: self.config.threshold,
            });
        }
        let mut response = UnmaskResponse {
            client: self.id,
            mask_key_shares: Vec::new(),
            self_mask_shares: Vec::new(),
        };
        for (&owner, (mask_share, self_share)) in &self.held {
            if dropped.binary_search(&owner).is_ok() {
                response.mask_key_shares.push(RevealedShare {
                    owner,
                    value: mask_share.to_bytes(),
                });
            } else if survivors.binary_search(&owner).is_ok() {
                response.self_mask_shares.push(RevealedShare {
                    owner,
                    value: self_share.to_bytes(),
                });
            }
        }
        Ok(response)
    }
}
