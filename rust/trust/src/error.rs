//! Errors of identities, agreement and the ledger.

use std::path::PathBuf;

/// Every way a trust operation can fail; each names the node, block or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A parameter is out of range.
    #[error("invalid `{param}`: {reason}")]
    InvalidArgument { param: &'static str, reason: String },
    /// A string is not a SPIFFE ID of the form `spiffe://<trust-domain>/mesh/node/<id>`.
    #[error("bad SPIFFE ID `{id}`: {reason}")]
    BadSpiffeId { id: String, reason: String },
    /// A node that is not in the trust bundle (or not a validator) signed something.
    #[error("unknown node `{0}`: not in the trust bundle")]
    UnknownNode(String),
    /// A signature does not verify: forged, or the signed content was changed.
    #[error("bad signature on {what}")]
    BadSignature { what: String },
    /// A signed payload was seen before (same or older round and sequence).
    #[error("replayed {what}")]
    Replay { what: String },
    /// A consensus proof does not prove its value.
    #[error("invalid consensus proof: {0}")]
    InvalidProof(String),
    /// PBFT did not commit the value within the simulated time budget.
    #[error("no agreement: {0}")]
    NoAgreement(String),
    /// The ledger does not prove the model a node asked for.
    #[error("model {0} is not proven by the ledger")]
    NotProven(String),
    /// A block cannot be appended (it breaks a ledger rule).
    #[error("cannot append: {0}")]
    Rejected(String),
    /// An existing ledger belongs to another run (other genesis) or holds another model for a
    /// round than the run computes.
    #[error("{} {reason}", path.display())]
    Mismatch { path: PathBuf, reason: String },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A secret key file is readable by group or others.
    #[error("{}: key file mode {mode:o} is readable by others; run `chmod 600` on it", path.display())]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    /// A file (ledger, key, bundle, weights) is not ours, truncated, edited or damaged.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The ledger's content was changed after it was written: `block` is the first bad one.
    #[error("{}: block {block} was tampered with: {reason}", path.display())]
    Tampered {
        path: PathBuf,
        block: u64,
        reason: String,
    },
}

pub(crate) fn invalid(param: &'static str, reason: impl Into<String>) -> TrustError {
    TrustError::InvalidArgument {
        param,
        reason: reason.into(),
    }
}

pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> TrustError {
    TrustError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> TrustError {
    TrustError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
