//! Errors of the federation.

use std::path::PathBuf;

/// Everything that can go wrong in a federation, named for the user.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid federation config field `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// Input given at run time (weights, node ids) is unusable.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: String, reason: String },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A checkpoint belongs to a different federation or is damaged.
    #[error("{path}: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error(transparent)]
    Ppo(#[from] meshrl_ppo::PpoError),
    #[error(transparent)]
    Env(#[from] meshrl_env::EnvError),
    #[error(transparent)]
    Fl(#[from] meshrl_fl::FlError),
    /// Signatures, PBFT or the ledger (`[trust]`).
    #[error(transparent)]
    Trust(#[from] meshrl_trust::TrustError),
}

impl FederationError {
    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        FederationError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn input(what: &str, reason: impl Into<String>) -> Self {
        FederationError::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
