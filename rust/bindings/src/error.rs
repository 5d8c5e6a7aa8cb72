//! Every core error becomes a Python exception here, and nowhere else.

use std::panic::{catch_unwind, AssertUnwindSafe};

use meshrl_env::twin::TwinError;
use meshrl_env::EnvError;
use meshrl_ppo::PpoError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::PyErr;

create_exception!(
    meshrl,
    MeshrlError,
    PyException,
    "Base class of meshrl's own errors."
);
create_exception!(
    meshrl,
    TopologyError,
    MeshrlError,
    "A topology file is malformed or a topology could not be generated."
);
create_exception!(
    meshrl,
    EnvStateError,
    MeshrlError,
    "An environment was used in the wrong state (stepped before reset, or after close)."
);
create_exception!(
    meshrl,
    CorruptFileError,
    MeshrlError,
    "A file meshrl reads (weights, checkpoint, export) is not ours, truncated, edited or damaged."
);
create_exception!(
    meshrl,
    NonFiniteError,
    MeshrlError,
    "A loss or gradient became NaN or infinite during a PPO update; the update was not applied."
);
create_exception!(
    meshrl,
    InternalError,
    MeshrlError,
    "A bug inside meshrl (a Rust panic caught at the boundary); please report it."
);
create_exception!(
    meshrl,
    SecureAggregationError,
    MeshrlError,
    "Secure aggregation aborted: too few clients or valid shares were left (nothing was revealed), or a key, share or message failed authentication."
);

fn io_err(path: &impl std::fmt::Display, source: &std::io::Error) -> PyErr {
    let msg = format!("{path}: {source}");
    if source.kind() == std::io::ErrorKind::NotFound {
        PyFileNotFoundError::new_err(msg)
    } else {
        PyOSError::new_err(msg)
    }
}

/// Maps a twin error: bad values are `ValueError`, bad files `TopologyError` or `OSError`.
pub fn twin_err(e: TwinError) -> PyErr {
    match &e {
        TwinError::InvalidConfig { .. } => PyValueError::new_err(e.to_string()),
        TwinError::Io { path, source } => io_err(path, source),
        TwinError::BadTopology { .. } | TwinError::Disconnected(_) => {
            TopologyError::new_err(e.to_string())
        }
    }
}

/// Maps an environment error: bad arguments are `ValueError`, misuse `EnvStateError`.
pub fn env_err(e: EnvError) -> PyErr {
    match e {
        EnvError::Twin(t) => twin_err(t),
        EnvError::Io {
            ref path,
            ref source,
        } => io_err(path, source),
        EnvError::NotReset => EnvStateError::new_err(format!("{e}: call reset() first")),
        EnvError::InvalidConfig { .. }
        | EnvError::Parse { .. }
        | EnvError::ActionCount { .. }
        | EnvError::ActionOutOfRange { .. }
        | EnvError::MaskedAction { .. } => PyValueError::new_err(e.to_string()),
    }
}

/// Maps a PPO error: bad settings or data are `ValueError`, files `OSError` (missing:
/// `FileNotFoundError`) or `CorruptFileError`, a diverging update `NonFiniteError`.
pub fn ppo_err(e: PpoError) -> PyErr {
    match e {
        PpoError::Env(e) => env_err(e),
        PpoError::Io { ref path, ref source } => io_err(&path.display(), source),
        PpoError::Corrupt { .. } => CorruptFileError::new_err(e.to_string()),
        PpoError::NonFinite(_) => NonFiniteError::new_err(e.to_string()),
        PpoError::InvalidConfig { .. } | PpoError::InvalidInput { .. } | PpoError::Mismatch { .. } => {
            PyValueError::new_err(e.to_string())
        }
    }
}

/// Maps an aggregation error: every one is a bad argument (`ValueError`).
pub fn fl_err(e: meshrl_fl::FlError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Maps a federation error: bad settings, input or a foreign checkpoint are `ValueError`;
/// what comes from PPO, the environment or the rules is mapped as theirs.
pub fn federation_err(e: meshrl_federation::FederationError) -> PyErr {
    use meshrl_federation::FederationError as F;
    match e {
        F::Ppo(e) => ppo_err(e),
        F::Env(e) => env_err(e),
        F::Fl(e) => fl_err(e),
        F::Trust(e) => trust_err(e),
        F::Io { ref path, ref source } => io_err(&path.display(), source),
        F::InvalidConfig { .. } | F::InvalidInput { .. } | F::Mismatch { .. } => PyValueError::new_err(e.to_string()),
    }
}

/// Maps a privacy error: bad arguments and non-finite inputs are `ValueError`; an aborted or
/// attacked secure aggregation is `SecureAggregationError`.
pub fn privacy_err(e: meshrl_privacy::PrivacyError) -> PyErr {
    use meshrl_privacy::PrivacyError as P;
    match e {
        P::InvalidArgument { .. } | P::NonFinite { .. } => PyValueError::new_err(e.to_string()),
        P::ThresholdNotMet { .. }
        | P::NotEnoughShares { .. }
        | P::TamperedShare { .. }
        | P::BadSignature { .. }
        | P::Protocol { .. } => SecureAggregationError::new_err(e.to_string()),
    }
}

/// Maps a trust error: a tampered or damaged ledger, key or weights file is
/// `CorruptFileError`, a model the ledger does not prove `LookupError`, a key file others can
/// read `PermissionError`, files `OSError`, bad arguments `ValueError`.
pub fn trust_err(e: meshrl_trust::TrustError) -> PyErr {
    use meshrl_trust::TrustError as T;
    match e {
        T::Io { ref path, ref source } => io_err(&path.display(), source),
        T::Corrupt { .. } | T::Tampered { .. } | T::BadSignature { .. } | T::InvalidProof(_) => {
            CorruptFileError::new_err(e.to_string())
        }
        T::NotProven(_) => pyo3::exceptions::PyLookupError::new_err(e.to_string()),
        T::KeyFilePermissions { .. } => pyo3::exceptions::PyPermissionError::new_err(e.to_string()),
        T::InvalidArgument { .. }
        | T::BadSpiffeId { .. }
        | T::UnknownNode(_)
        | T::Replay { .. }
        | T::Rejected(_)
        | T::Mismatch { .. }
        | T::NoAgreement(_) => PyValueError::new_err(e.to_string()),
    }
}

/// Maps a MAPE-K error: a bad incident file or setting is `ValueError` (naming the field),
/// files `OSError`; environment and aggregation errors as theirs.
pub fn mapek_err(e: meshrl_mapek::MapekError) -> PyErr {
    use meshrl_mapek::MapekError as M;
    match e {
        M::Env(e) => env_err(e),
        M::Fl(e) => fl_err(e),
        M::Io { ref path, ref source } => io_err(&path.display(), source),
        M::InvalidConfig { .. } => PyValueError::new_err(e.to_string()),
        M::Trust(e) => trust_err(e),
    }
}

/// Runs `f`, turning a panic into `InternalError` so no panic reaches the interpreter.
pub fn guard<T>(f: impl FnOnce() -> Result<T, PyErr>) -> Result<T, PyErr> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(InternalError::new_err(format!(
                "internal error (please report): {msg}"
            )))
        }
    }
}
