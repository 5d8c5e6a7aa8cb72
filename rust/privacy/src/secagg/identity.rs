//! Long-term identities that sign key advertisements, so a server cannot substitute a
//! client's keys. The protocol only needs these two traits: a deployment implements them over
//! its node identities (meshrl-trust's `Identity` and trust bundle); Ed25519 keys from
//! `ed25519-dalek` implement them here for simulations and tests.

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::crypto::{advert_message, consistency_message};
use super::{AdvertiseKeys, SurvivorSignature};
use crate::error::{PrivacyError, Stage};

/// Signs this client's messages with its long-term identity key.
pub trait IdentitySigner: Send + Sync {
    /// A signature over `message` (already domain-separated and bound to the session).
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

/// Checks clients' signatures against their identities (a PKI directory, a trust bundle).
pub trait IdentityDirectory: Send + Sync {
    /// Whether `signature` is client `client`'s over `message`; `false` for unknown clients.
    fn verify(&self, client: usize, message: &[u8], signature: &[u8; 64]) -> bool;
}

impl IdentitySigner for SigningKey {
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        Signer::sign(self, message).to_bytes()
    }
}

/// Ed25519 verifying keys indexed by client id; strict verification (no malleable or
/// small-order signatures).
#[derive(Clone, Debug)]
pub struct Ed25519Directory(pub Vec<VerifyingKey>);

impl IdentityDirectory for Ed25519Directory {
    fn verify(&self, client: usize, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.get(client).is_some_and(|k| {
            k.verify_strict(message, &Signature::from_bytes(signature))
                .is_ok()
        })
    }
}

/// A client's identity: how it signs, and how it checks its peers.
#[derive(Clone)]
pub struct Identity {
    /// Signs this client's advertisements.
    pub signer: Arc<dyn IdentitySigner>,
    /// Verifies every client's advertisements.
    pub directory: Arc<dyn IdentityDirectory>,
}

impl Identity {
    /// An Ed25519 identity: `signing_key` and the directory of every client's verifying key.
    pub fn ed25519(signing_key: SigningKey, directory: Arc<Ed25519Directory>) -> Self {
        Self {
            signer: Arc::new(signing_key),
            directory,
        }
    }
}

/// Checks an advertisement's signature.
pub(crate) fn verify_advert(
    advert: &AdvertiseKeys,
    session: u64,
    directory: &dyn IdentityDirectory,
) -> Result<(), PrivacyError> {
    let msg = advert_message(
        session,
        advert.client,
        &advert.cipher_public_key,
        &advert.mask_public_key,
        &advert.self_mask_commitment,
    );
    match advert.signature {
        Some(sig) if directory.verify(advert.client, &msg, &sig) => Ok(()),
        _ => Err(PrivacyError::BadSignature {
            client: advert.client,
            stage: Stage::AdvertiseKeys,
        }),
    }
}

/// Checks a survivor's signature over the announced sets.
pub(crate) fn verify_survivor_signature(
    signed: &SurvivorSignature,
    session: u64,
    survivors: &[usize],
    dropped: &[usize],
    directory: &dyn IdentityDirectory,
) -> Result<(), PrivacyError> {
    let msg = consistency_message(session, survivors, dropped);
    match signed.signature {
        Some(sig) if directory.verify(signed.client, &msg, &sig) => Ok(()),
        _ => Err(PrivacyError::BadSignature {
            client: signed.client,
            stage: Stage::ConsistencyCheck,
        }),
    }
}
