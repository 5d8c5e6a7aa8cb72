//! The protocol's primitives, each from a maintained crate: X25519 key agreement
//! (`x25519-dalek`), HKDF-SHA-256 (`hkdf`, `sha2`), ChaCha20 mask expansion (`chacha20`),
//! ChaCha20-Poly1305 share encryption (`chacha20poly1305`) and Ed25519 signatures
//! (`ed25519-dalek`). Every derived key is bound to the session and both client ids.

use chacha20::cipher::StreamCipher;
use chacha20::{ChaCha20, KeyIvInit};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::Scalar;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::error::SecretKind;

/// Domain-separation prefix of every derivation and signed message.
const DOMAIN: &[u8] = b"meshrl-secagg/v1";

/// HKDF-SHA-256 of `ikm` to a 256-bit key, salted with the session and labelled with
/// `label` and the ids.
fn derive(ikm: &[u8], session: u64, label: &[u8], ids: &[u64]) -> [u8; 32] {
    let mut salt = Vec::with_capacity(DOMAIN.len() + 8);
    salt.extend_from_slice(DOMAIN);
    salt.extend_from_slice(&session.to_le_bytes());
    let mut info = Vec::with_capacity(label.len() + 8 * ids.len());
    info.extend_from_slice(label);
    for id in ids {
        info.extend_from_slice(&id.to_le_bytes());
    }
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), ikm)
        .expand(&info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    out
}

/// The X25519 secret whose Shamir-shared seed is `seed` (so the server can rebuild the key
/// of a client that dropped out from its seed's shares).
pub(crate) fn mask_secret_from_seed(seed: &Scalar, session: u64, client: usize) -> StaticSecret {
    StaticSecret::from(derive(
        seed.as_bytes(),
        session,
        b"mask-key",
        &[client as u64],
    ))
}

/// The ChaCha20 key of the pairwise mask between `a` and `b`, from their X25519 agreement;
/// `None` if the peer's key is a low-order point (the agreement would be all zeros).
pub(crate) fn pairwise_mask_key(
    mine: &StaticSecret,
    theirs: &[u8; 32],
    session: u64,
    a: usize,
    b: usize,
) -> Option<[u8; 32]> {
    pair_key(mine, theirs, session, b"pairwise-mask", a, b)
}

/// A key of the pair (`a`, `b`) for `purpose`, from their X25519 agreement (the same from
/// either side); `None` if the peer's key is a low-order point (the agreement would be zeros).
fn pair_key(
    mine: &StaticSecret,
    theirs: &[u8; 32],
    session: u64,
    purpose: &[u8],
    a: usize,
    b: usize,
) -> Option<[u8; 32]> {
    let shared = mine.diffie_hellman(&PublicKey::from(*theirs));
    if !shared.was_contributory() {
        return None;
    }
    let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
    Some(derive(shared.as_bytes(), session, purpose, &[lo, hi]))
}

/// The ChaCha20 key of client `client`'s self mask, from its shared seed.
pub(crate) fn self_mask_key(seed: &Scalar, session: u64, client: usize) -> [u8; 32] {
    derive(seed.as_bytes(), session, b"self-mask", &[client as u64])
}

/// A commitment to a client's self-mask seed, published (signed) in its key advertisement so
/// that a seed rebuilt from inconsistent shares is caught.
pub(crate) fn seed_commitment(seed: &Scalar, session: u64, client: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(b"self-mask-seed");
    h.update(session.to_le_bytes());
    h.update((client as u64).to_le_bytes());
    h.update(seed.as_bytes());
    h.finalize().into()
}

/// A commitment to one Shamir share (owner, holder, kind), sent by the owner to the server
/// so that a share revealed later is checked before use. A share is a uniformly random
/// 252-bit field element, so its hash reveals nothing.
pub(crate) fn share_commitment(
    share: &Scalar,
    session: u64,
    owner: usize,
    holder: usize,
    kind: SecretKind,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(b"share");
    h.update(session.to_le_bytes());
    h.update((owner as u64).to_le_bytes());
    h.update((holder as u64).to_le_bytes());
    h.update([match kind {
        SecretKind::MaskKey => 0u8,
        SecretKind::SelfMask => 1u8,
    }]);
    h.update(share.as_bytes());
    h.finalize().into()
}

/// The bytes a client signs in its key advertisement.
pub(crate) fn advert_message(
    session: u64,
    client: usize,
    cipher_pk: &[u8; 32],
    mask_pk: &[u8; 32],
    self_mask_commitment: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 10 + 16 + 96);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(b"advertise");
    m.extend_from_slice(&session.to_le_bytes());
    m.extend_from_slice(&(client as u64).to_le_bytes());
    m.extend_from_slice(cipher_pk);
    m.extend_from_slice(mask_pk);
    m.extend_from_slice(self_mask_commitment);
    m
}

/// The bytes a survivor signs in the consistency check: the session and both announced sets
/// (each length-prefixed, so no two pairs of sets encode alike).
pub(crate) fn consistency_message(session: u64, survivors: &[usize], dropped: &[usize]) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(DOMAIN.len() + 11 + 8 + 16 + 8 * (survivors.len() + dropped.len()));
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(b"consistency");
    m.extend_from_slice(&session.to_le_bytes());
    for set in [survivors, dropped] {
        m.extend_from_slice(&(set.len() as u64).to_le_bytes());
        for &u in set {
            m.extend_from_slice(&(u as u64).to_le_bytes());
        }
    }
    m
}

/// The 256-bit key of the authenticated channel between `a` and `b` (both directions), from
/// their cipher keys' X25519 agreement; `None` if the peer's key is a low-order point.
pub(crate) fn channel_key(
    mine: &StaticSecret,
    theirs: &[u8; 32],
    session: u64,
    a: usize,
    b: usize,
) -> Option<[u8; 32]> {
    pair_key(mine, theirs, session, b"share-channel", a, b)
}

/// The channel from `from` to `to` through the server: ChaCha20-Poly1305 under their
/// [`channel_key`]. The nonce holds the direction, and each direction carries one message
/// per session, so no (key, nonce) pair repeats.
pub(crate) struct ShareChannel {
    aead: ChaCha20Poly1305,
    nonce: [u8; 12],
    aad: [u8; 24],
}

impl ShareChannel {
    pub(crate) fn new(key: &[u8; 32], session: u64, from: usize, to: usize) -> Self {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&(from as u32).to_le_bytes());
        nonce[4..8].copy_from_slice(&(to as u32).to_le_bytes());
        let mut aad = [0u8; 24];
        aad[..8].copy_from_slice(&session.to_le_bytes());
        aad[8..16].copy_from_slice(&(from as u64).to_le_bytes());
        aad[16..].copy_from_slice(&(to as u64).to_le_bytes());
        Self {
            aead: ChaCha20Poly1305::new(&(*key).into()),
            nonce,
            aad,
        }
    }

    pub(crate) fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        self.aead
            .encrypt(
                &self.nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &self.aad,
                },
            )
            .expect("a 64-byte share is far below ChaCha20-Poly1305's length limit")
    }

    /// `None` when the ciphertext does not authenticate.
    pub(crate) fn open(&self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        self.aead
            .decrypt(
                &self.nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: &self.aad,
                },
            )
            .ok()
    }
}

/// Bytes of keystream generated per ChaCha20 call.
const CHUNK: usize = 4096;

/// Adds (`negate == false`) or subtracts the mask expanded from `key` to `acc`, modulo
/// `2^bits`: the keystream of ChaCha20 under `key` (zero nonce: every key is used for one
/// mask only), read as little-endian `u32` words when `bits ≤ 32`, else `u64` words, each
/// reduced modulo `2^bits` (uniform, as `2^bits` divides the word range).
pub(crate) fn apply_mask(acc: &mut [u64], key: &[u8; 32], bits: u32, negate: bool) {
    let mut cipher = ChaCha20::new(&(*key).into(), &[0u8; 12].into());
    let modmask = modulus_mask(bits);
    let word = if bits <= 32 { 4 } else { 8 };
    let mut buf = [0u8; CHUNK];
    for block in acc.chunks_mut(CHUNK / word) {
        let bytes = &mut buf[..block.len() * word];
        cipher.write_keystream(bytes);
        if word == 4 {
            for (a, w) in block.iter_mut().zip(bytes.chunks_exact(4)) {
                let m = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64;
                *a = if negate {
                    a.wrapping_sub(m)
                } else {
                    a.wrapping_add(m)
                } & modmask;
            }
        } else {
            for (a, w) in block.iter_mut().zip(bytes.chunks_exact(8)) {
                let m = u64::from_le_bytes(w.try_into().expect("8-byte chunk")) & modmask;
                *a = if negate {
                    a.wrapping_sub(m)
                } else {
                    a.wrapping_add(m)
                } & modmask;
            }
        }
    }
}

/// `2^bits − 1` (all ones for 64 bits).
pub(crate) fn modulus_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_cancel_and_depend_on_the_whole_key() {
        let key = [7u8; 32];
        for bits in [8, 32, 40, 64] {
            let mut acc = vec![5u64; 3000];
            apply_mask(&mut acc, &key, bits, false);
            assert!(acc.iter().any(|&x| x != 5));
            assert!(acc.iter().all(|&x| x <= modulus_mask(bits)));
            apply_mask(&mut acc, &key, bits, true);
            assert!(acc.iter().all(|&x| x == 5), "bits {bits}");
        }
        let mut a = vec![0u64; 64];
        let mut b = vec![0u64; 64];
        let mut other = key;
        other[31] ^= 1;
        apply_mask(&mut a, &key, 32, false);
        apply_mask(&mut b, &other, 32, false);
        assert_ne!(a, b);
    }

    #[test]
    fn key_agreement_is_symmetric_and_session_bound() {
        let a = StaticSecret::from([1u8; 32]);
        let b = StaticSecret::from([2u8; 32]);
        let (pa, pb) = (
            PublicKey::from(&a).to_bytes(),
            PublicKey::from(&b).to_bytes(),
        );
        let k_ab = pairwise_mask_key(&a, &pb, 9, 3, 4).unwrap();
        assert_eq!(k_ab, pairwise_mask_key(&b, &pa, 9, 4, 3).unwrap());
        assert_ne!(k_ab, pairwise_mask_key(&a, &pb, 10, 3, 4).unwrap());
        // A low-order point (here the identity, all zeros) is refused.
        assert!(pairwise_mask_key(&a, &[0u8; 32], 9, 3, 4).is_none());
    }

    #[test]
    fn channel_rejects_any_flipped_bit_and_the_wrong_direction() {
        let a = StaticSecret::from([1u8; 32]);
        let b = StaticSecret::from([2u8; 32]);
        let (pa, pb) = (
            PublicKey::from(&a).to_bytes(),
            PublicKey::from(&b).to_bytes(),
        );
        let k_ab = channel_key(&a, &pb, 1, 0, 1).unwrap();
        let k_ba = channel_key(&b, &pa, 1, 1, 0).unwrap();
        assert_eq!(k_ab, k_ba);
        let tx = ShareChannel::new(&k_ab, 1, 0, 1);
        let rx = ShareChannel::new(&k_ba, 1, 0, 1);
        let ct = tx.seal(b"share bytes");
        assert_eq!(rx.open(&ct).unwrap(), b"share bytes");
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x10;
            assert!(rx.open(&bad).is_none(), "flip at byte {i} not detected");
        }
        let back = ShareChannel::new(&k_ba, 1, 1, 0);
        assert!(back.open(&ct).is_none());
    }
}
