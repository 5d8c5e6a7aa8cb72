//! Errors of the MAPE-K crate; each names what is wrong.

use std::path::PathBuf;

use meshrl_env::EnvError;

/// Every way loading an incident, training a detector or running the loop can fail.
#[derive(Debug, thiserror::Error)]
pub enum MapekError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Fl(#[from] meshrl_fl::FlError),
    /// The detector ledger (`detector.ledger`): a file error, another run's ledger, no
    /// agreement.
    #[error("detector ledger: {0}")]
    Trust(#[from] meshrl_trust::TrustError),
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An incident file or a loop / training setting is malformed or out of range.
    #[error("bad incident config `{origin}`: field `{field}`: {reason}")]
    InvalidConfig {
        origin: String,
        field: String,
        reason: String,
    },
}

impl MapekError {
    pub(crate) fn config(origin: &str, field: &str, reason: impl Into<String>) -> Self {
        MapekError::InvalidConfig {
            origin: origin.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
