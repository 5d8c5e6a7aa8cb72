//! `meshrl._core`: the Python extension. Thin: it converts types and errors and releases the
//! GIL around real work. One file per core crate, plus `error.rs`.

use pyo3::prelude::*;

mod cli;
mod env;
mod error;
mod eval;
mod federation;
mod fl;
mod ledger;
mod mapek;
mod ppo;
mod privacy;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MeshrlError", py.get_type::<error::MeshrlError>())?;
    m.add("TopologyError", py.get_type::<error::TopologyError>())?;
    m.add("EnvStateError", py.get_type::<error::EnvStateError>())?;
    m.add("InternalError", py.get_type::<error::InternalError>())?;
    m.add("CorruptFileError", py.get_type::<error::CorruptFileError>())?;
    m.add("NonFiniteError", py.get_type::<error::NonFiniteError>())?;
    env::register(m)?;
    fl::register(m)?;
    federation::register(m)?;
    eval::register(m)?;
    ppo::register(m)?;
    privacy::register(m)?;
    ledger::register(m)?;
    mapek::register(m)?;
    cli::register(m)?;
    Ok(())
}
