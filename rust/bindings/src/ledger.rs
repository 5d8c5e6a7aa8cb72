//! `meshrl._core` ledger and identities (`meshrl-trust`): read and check a model ledger, load
//! only proven weights, write a demo ledger, generate and read node keys. Reads release the
//! GIL; blocks and reports cross as JSON.

use std::path::PathBuf;

use meshrl_trust::ledger::decode_f32;
use meshrl_trust::{inspect, read_proven, write_demo, Hash32, Identity, SpiffeId};
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::{guard, trust_err};

fn json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Reads and checks the ledger at `path` without changing it; returns (blocks JSON,
/// report JSON). Tampering raises `CorruptFileError`.
#[pyfunction]
pub fn ledger_inspect(py: Python<'_>, path: PathBuf) -> PyResult<(String, String)> {
    py.detach(|| {
        guard(|| {
            let (blocks, report) = inspect(&path).map_err(trust_err)?;
            Ok((json(&blocks)?, json(&report)?))
        })
    })
}

/// The safetensors bytes of `model_hash` (hex) and, when the file holds one F32 tensor, its
/// values; only if the ledger at `path` proves that model (else `LookupError`).
#[pyfunction]
pub fn ledger_load_proven<'py>(
    py: Python<'py>,
    path: PathBuf,
    model_hash: &str,
) -> PyResult<(Bound<'py, PyBytes>, Option<Bound<'py, PyArray1<f32>>>)> {
    let hash = Hash32::from_hex(model_hash).map_err(trust_err)?;
    let (bytes, values) = py.detach(|| {
        guard(|| {
            let bytes = read_proven(&path, &hash).map_err(trust_err)?;
            let values = decode_f32(&bytes).ok();
            Ok((bytes, values))
        })
    })?;
    Ok((PyBytes::new(py, &bytes), values.map(|v| v.into_pyarray(py))))
}

/// Writes a demo ledger (see `meshrl_trust::write_demo`): `rounds` proven rounds, each agreed
/// by a real PBFT run among `validators` validators.
#[pyfunction]
pub fn ledger_write_demo(
    py: Python<'_>,
    path: PathBuf,
    rounds: u64,
    validators: usize,
    seed: u64,
) -> PyResult<()> {
    py.detach(|| {
        guard(|| {
            write_demo(&path, rounds, validators, seed).map_err(trust_err)?;
            Ok(())
        })
    })
}

/// Generates a node key from the OS's randomness and writes it to `path` (mode 0600, never
/// overwriting); returns (SPIFFE ID, public key hex).
#[pyfunction]
pub fn identity_generate(
    path: PathBuf,
    trust_domain: &str,
    node: &str,
) -> PyResult<(String, String)> {
    guard(|| {
        let id = SpiffeId::node(trust_domain, node).map_err(trust_err)?;
        let me = Identity::generate(id).map_err(trust_err)?;
        me.save(&path).map_err(trust_err)?;
        Ok(describe(&me))
    })
}

/// Reads a key file; returns (SPIFFE ID, public key hex).
#[pyfunction]
pub fn identity_load(path: PathBuf) -> PyResult<(String, String)> {
    guard(|| {
        let me = Identity::load(&path).map_err(trust_err)?;
        Ok(describe(&me))
    })
}

fn describe(me: &Identity) -> (String, String) {
    let hex: String = me
        .public_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (me.id().to_string(), hex)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ledger_inspect, m)?)?;
    m.add_function(wrap_pyfunction!(ledger_load_proven, m)?)?;
    m.add_function(wrap_pyfunction!(ledger_write_demo, m)?)?;
    m.add_function(wrap_pyfunction!(identity_generate, m)?)?;
    m.add_function(wrap_pyfunction!(identity_load, m)?)
}
