//! Errors of differential privacy, accounting and secure aggregation.

/// A stage of the secure aggregation protocol, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Round 0: clients publish two X25519 public keys (signed when identities exist).
    AdvertiseKeys,
    /// Round 1: clients send encrypted Shamir shares of their two seeds to their neighbours.
    ShareKeys,
    /// Round 2: clients send their quantized, masked inputs.
    MaskedInput,
    /// Round 3: surviving clients sign the survivor set the server announced (Bonawitz et
    /// al.'s consistency check), so that no two of them are told different sets.
    ConsistencyCheck,
    /// Round 4: surviving clients reveal the shares the server needs to remove the masks.
    Unmasking,
}

impl Stage {
    /// The five stages in protocol order.
    pub const ALL: [Stage; 5] = [
        Stage::AdvertiseKeys,
        Stage::ShareKeys,
        Stage::MaskedInput,
        Stage::ConsistencyCheck,
        Stage::Unmasking,
    ];
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::AdvertiseKeys => "advertise_keys",
            Stage::ShareKeys => "share_keys",
            Stage::MaskedInput => "masked_input",
            Stage::ConsistencyCheck => "consistency_check",
            Stage::Unmasking => "unmasking",
        })
    }
}

/// Which of a client's two secrets a Shamir share belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKind {
    /// The seed of the client's X25519 mask key (revealed only if the client dropped out).
    MaskKey,
    /// The seed of the client's self mask (revealed only if the client's input was received).
    SelfMask,
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretKind::MaskKey => "mask-key seed",
            SecretKind::SelfMask => "self-mask seed",
        })
    }
}

/// Every way a privacy operation can fail; each names the parameter, client or stage at fault.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// A parameter is out of range (negative σ, a sampling rate outside (0, 1], ...).
    #[error("invalid `{param}`: {reason}")]
    InvalidArgument { param: &'static str, reason: String },
    /// An input vector holds NaN or ±Inf.
    #[error("`{param}` holds a non-finite value ({value}) at index {index}")]
    NonFinite {
        param: &'static str,
        index: usize,
        value: f32,
    },
    /// Fewer clients than the reconstruction threshold are still in the protocol: it aborts
    /// before any share is revealed, so nothing about any input is learned.
    #[error(
        "secure aggregation aborted at {stage}: {alive} client(s) left, the threshold is {threshold}; nothing was revealed"
    )]
    ThresholdNotMet {
        stage: Stage,
        alive: usize,
        threshold: usize,
    },
    /// Fewer than `threshold` valid shares of a secret came back, so it cannot be rebuilt.
    /// The sum is not computed.
    #[error(
        "secure aggregation aborted: only {valid} valid share(s) of client {owner}'s {kind} (threshold {threshold}); the sum was not computed"
    )]
    NotEnoughShares {
        owner: usize,
        kind: SecretKind,
        valid: usize,
        threshold: usize,
    },
    /// An encrypted share failed authentication: it was altered in transit (or forged).
    #[error(
        "the share from client {from} to client {to} failed authentication (tampered or forged)"
    )]
    TamperedShare { from: usize, to: usize },
    /// A message's signature does not verify against the sender's identity key.
    #[error("client {client}'s {stage} message has a missing or invalid signature")]
    BadSignature { client: usize, stage: Stage },
    /// A message breaks the protocol (wrong stage, unknown or duplicate sender, a request
    /// that would reveal both secrets of one client, ...).
    #[error("protocol violation at {stage}: {reason}")]
    Protocol { stage: Stage, reason: String },
}

pub(crate) fn invalid(param: &'static str, reason: impl Into<String>) -> PrivacyError {
    PrivacyError::InvalidArgument {
        param,
        reason: reason.into(),
    }
}

pub(crate) fn protocol(stage: Stage, reason: impl Into<String>) -> PrivacyError {
    PrivacyError::Protocol {
        stage,
        reason: reason.into(),
    }
}

/// Checks that every value of `v` is finite.
pub(crate) fn check_finite(param: &'static str, v: &[f32]) -> Result<(), PrivacyError> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(PrivacyError::NonFinite {
            param,
            index,
            value: v[index],
        }),
        None => Ok(()),
    }
}

/// Checks that `x` is finite and positive.
pub(crate) fn check_positive(param: &'static str, x: f64) -> Result<(), PrivacyError> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(invalid(param, format!("must be finite and > 0, got {x}")))
    }
}

/// Checks that `x` is finite and non-negative.
pub(crate) fn check_non_negative(param: &'static str, x: f64) -> Result<(), PrivacyError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(invalid(param, format!("must be finite and >= 0, got {x}")))
    }
}
