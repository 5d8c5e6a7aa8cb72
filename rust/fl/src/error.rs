//! Errors of aggregation and attacks.

use crate::validate::Report;

/// Every way an aggregation can fail; each names the parameter or clients at fault.
#[derive(Debug, thiserror::Error)]
pub enum FlError {
    /// A parameter is out of range.
    #[error("invalid `{param}`: {reason}")]
    InvalidArgument { param: &'static str, reason: String },
    /// The rule cannot tolerate `f` Byzantine clients among `n`.
    #[error("{rule} needs {need} clients for num_byzantine = {f}, got {n}")]
    TooFewClients {
        rule: &'static str,
        n: usize,
        f: usize,
        need: String,
    },
    /// Some clients sent unusable vectors and `on_invalid` is `error`.
    #[error("rejected clients: {0}")]
    InvalidClients(Report),
    /// No client is left to aggregate.
    #[error("no valid client updates to aggregate{0}")]
    NoClients(String),
}

pub(crate) fn invalid(param: &'static str, reason: impl Into<String>) -> FlError {
    FlError::InvalidArgument {
        param,
        reason: reason.into(),
    }
}
