//! Every way loading or acting can fail.

use alloc::string::String;
use core::fmt;

/// A bad policy file or a bad call. Never a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not a well-formed safetensors file (truncated, random, bad header).
    Format(String),
    /// A metadata entry is missing, malformed or inconsistent with the others.
    Metadata { key: &'static str, reason: String },
    /// A tensor is missing or has the wrong dtype, shape or values.
    Tensor { name: String, reason: String },
    /// The actor's weights (and, from format version 2, the metadata) do not match the
    /// checksum in the metadata: the file is corrupt or was edited.
    Checksum { expected: u64, actual: u64 },
    /// A call's argument is wrong (observation length, mask, buffer).
    Input { what: &'static str, reason: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Format(why) => write!(f, "bad policy file: {why}"),
            Error::Metadata { key, reason } => {
                write!(f, "bad policy file: metadata `{key}`: {reason}")
            }
            Error::Tensor { name, reason } => {
                write!(f, "bad policy file: tensor `{name}`: {reason}")
            }
            Error::Checksum { expected, actual } => write!(
                f,
                "bad policy file: checksum mismatch (metadata `checksum` fnv1a64:{expected:016x}, \
                 the file's weights and metadata fnv1a64:{actual:016x}): the file is corrupt or \
                 was edited"
            ),
            Error::Input { what, reason } => write!(f, "bad `{what}`: {reason}"),
        }
    }
}

impl core::error::Error for Error {}
