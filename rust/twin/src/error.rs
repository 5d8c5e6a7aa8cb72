//! Errors a user can cause when building a twin.

/// Every way building or loading a twin can fail. Each names the field or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    /// A configuration value is out of its allowed range.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// A topology file could not be read.
    #[error("cannot read topology file `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A topology file was read but its contents are not a usable topology.
    #[error("bad topology file `{path}`: {reason}")]
    BadTopology { path: String, reason: String },
    /// A generated topology could not be made connected.
    #[error("could not generate a connected topology: {0}")]
    Disconnected(String),
}

impl TwinError {
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        TwinError::InvalidConfig {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
