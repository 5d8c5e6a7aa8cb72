//! `meshrl._core` MAPE-K: load incident files, evaluate them with and without the loop.

use meshrl_mapek::{evaluate_incident, report, train_detectors, IncidentFile};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::{guard, mapek_err};

/// Reads and validates an incident file; returns it as JSON (its scenario resolved).
#[pyfunction]
pub fn load_incident(path: &str) -> PyResult<String> {
    let file = IncidentFile::load(path).map_err(mapek_err)?;
    serde_json::to_string(&file).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Trains the detectors on the first file's scenario and evaluates every incident file with
/// and without the loop. `ledger` overrides `[detector] ledger`. Returns (JSON of
/// `{detectors, incidents}`, markdown tables).
#[pyfunction]
#[pyo3(signature = (paths, ledger=None))]
pub fn evaluate_incidents(
    py: Python<'_>,
    paths: Vec<String>,
    ledger: Option<String>,
) -> PyResult<(String, String)> {
    if paths.is_empty() {
        return Err(PyValueError::new_err("give at least one incident file"));
    }
    let mut files = paths
        .iter()
        .map(IncidentFile::load)
        .collect::<Result<Vec<_>, _>>()
        .map_err(mapek_err)?;
    if let Some(l) = ledger {
        files[0].detector.ledger = Some(l.into());
    }
    py.detach(|| {
        guard(|| {
            let f = &files[0];
            let detectors = train_detectors(&f.scenario, &f.mapek, &f.detector, &f.run.router)
                .map_err(mapek_err)?;
            let reports = files
                .iter()
                .map(|f| evaluate_incident(f, &detectors))
                .collect::<Result<Vec<_>, _>>()
                .map_err(mapek_err)?;
            let json =
                serde_json::json!({ "detectors": detectors, "incidents": reports }).to_string();
            let tables = format!(
                "{}\n{}\n{}",
                report::held_out_table(&detectors),
                report::incident_table(&reports, "federated"),
                report::detector_table(&reports)
            );
            Ok((json, tables))
        })
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load_incident, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_incidents, m)?)?;
    Ok(())
}
