//! Errors a user of the environment can cause.

use meshrl_twin::TwinError;

/// Every way configuring or stepping an environment can fail; each names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Twin(#[from] TwinError),
    /// A configuration value is out of range.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// A config file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A config file is not valid TOML for this schema (unknown or mistyped field).
    #[error("bad config `{path}`: {message}")]
    Parse { path: String, message: String },
    /// `step` got the wrong number of actions.
    #[error("expected {expected} actions (one per environment), got {got}")]
    ActionCount { expected: usize, got: usize },
    /// An action is not a neighbour slot index.
    #[error("action {action} of environment {env} is out of range: must be in 0..{max_neighbors}")]
    ActionOutOfRange {
        env: usize,
        action: i64,
        max_neighbors: usize,
    },
    /// An action names an empty slot while `invalid_action = "error"`.
    #[error("action {action} of environment {env} is masked (no neighbour in that slot)")]
    MaskedAction { env: usize, action: i64 },
    /// `step` before `reset`.
    #[error("step called before reset")]
    NotReset,
}

impl EnvError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        EnvError::InvalidConfig {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
