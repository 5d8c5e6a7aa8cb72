//! Every way configuring, training, saving or loading a policy can fail.

use std::path::PathBuf;

/// A PPO error. Each variant names what was wrong; the bindings map each to one Python
/// exception (`rust/bindings/src/error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum PpoError {
    /// A config field out of range or inconsistent (checked before anything runs).
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error(transparent)]
    Env(#[from] meshrl_env::EnvError),
    /// Data handed to the learner at run time has the wrong shape or values (`what` names the
    /// argument: `obs`, `mask`, `actions`, `rollout`, `weights`, ...).
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: String, reason: String },
    /// A loss or gradient became NaN or infinite; the update was not applied.
    #[error("non-finite {0} during the PPO update (lower the learning rate or check rewards)")]
    NonFinite(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is not ours, truncated, edited or damaged.
    #[error("{}: corrupt file: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A sound file that does not fit: another architecture, another run's config.
    #[error("{}: {reason}", path.display())]
    Mismatch { path: PathBuf, reason: String },
}

impl PpoError {
    pub(crate) fn input(what: &str, reason: impl Into<String>) -> PpoError {
        PpoError::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(field: &str, reason: impl Into<String>) -> PpoError {
        PpoError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> PpoError {
        PpoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, reason: impl Into<String>) -> PpoError {
        PpoError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
