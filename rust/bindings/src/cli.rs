//! `meshrl._core.cli_main`: the `meshrl` command inside the wheel (`[project.scripts]`), so
//! `pip install` is the whole install.

use pyo3::prelude::*;

use crate::error::guard;

/// Runs the `meshrl` command line with `argv` (the program name first); returns its exit code.
#[pyfunction]
pub fn cli_main(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    py.detach(|| guard(|| Ok(meshrl_cli::run(argv))))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cli_main, m)?)
}
