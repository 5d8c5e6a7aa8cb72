//! `meshrl._core` aggregation functions: read client updates zero-copy, aggregate with the GIL
//! released.

use meshrl_fl::{attacks, rules, OnInvalid, Rule};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList};

use crate::error::{fl_err, guard};

/// Client updates as borrowed NumPy arrays: one `[n, d]` matrix or a list of vectors.
enum Borrowed<'py> {
    Matrix(PyReadonlyArray2<'py, f32>),
    Vectors(Vec<PyReadonlyArray1<'py, f32>>),
}

impl<'py> Borrowed<'py> {
    fn extract(updates: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(list) = updates.cast::<PyList>() {
            let vectors = list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.extract::<PyReadonlyArray1<'py, f32>>().map_err(|_| {
                        PyTypeError::new_err(format!("update {i} is not a 1-D float32 array"))
                    })
                })
                .collect::<PyResult<Vec<_>>>()?;
            return Ok(Borrowed::Vectors(vectors));
        }
        updates
            .extract::<PyReadonlyArray2<'py, f32>>()
            .map(Borrowed::Matrix)
            .map_err(|_| {
                PyTypeError::new_err(
                    "updates must be a 2-D float32 array or a list of 1-D float32 arrays",
                )
            })
    }

    /// The rows, and the model length: the matrix's width, or the most common vector length.
    fn rows(&self) -> PyResult<(Vec<&[f32]>, usize)> {
        match self {
            Borrowed::Matrix(m) => {
                let d = m.shape()[1];
                let data = m
                    .as_slice()
                    .map_err(|_| PyValueError::new_err("updates must be C-contiguous"))?;
                if d == 0 {
                    return Err(PyValueError::new_err("updates have length 0"));
                }
                Ok((data.chunks(d).collect(), d))
            }
            Borrowed::Vectors(vs) => {
                let rows = vs
                    .iter()
                    .map(|v| {
                        v.as_slice()
                            .map_err(|_| PyValueError::new_err("updates must be C-contiguous"))
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                let mut counts = std::collections::BTreeMap::<usize, usize>::new();
                for r in &rows {
                    *counts.entry(r.len()).or_default() += 1;
                }
                let d = counts
                    .iter()
                    .max_by_key(|(len, c)| (**c, std::cmp::Reverse(**len)))
                    .map_or(0, |(l, _)| *l);
                Ok((rows, d))
            }
        }
    }
}

/// Largest `num_byzantine * d` an attack may produce: 2^31 float32 values (8 GiB). Above
/// that the allocation would overflow or abort the interpreter instead of raising.
const MAX_ATTACK_VALUES: u64 = 1 << 31;

/// Reads a count argument (`num_byzantine`, `num_selected`, `max_iter`, ...): an `int` (or
/// NumPy integer) in `lo..=hi`. Bools and floats are refused rather than truncated, and the
/// error names the parameter and its valid range: `TypeError` for the wrong type, `ValueError`
/// out of range (negative or huge values included, never an unnamed `OverflowError`).
/// `bound` says where `hi` comes from, e.g. "the number of clients". Every `hi` passed here
/// fits in `usize`, except `seed`'s, which is read as u64.
fn count(value: &Bound<'_, PyAny>, name: &str, lo: u64, hi: u64, bound: &str) -> PyResult<u64> {
    let kind = || {
        value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    };
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int in {lo}..={hi}{bound}, not a bool ({value})"
        )));
    }
    let index = value
        .py()
        .import("operator")?
        .call_method1("index", (value,))
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{name} must be an int in {lo}..={hi}{bound}, got {} {value}",
                kind()
            ))
        })?;
    if index.lt(lo)? || index.gt(hi)? {
        return Err(PyValueError::new_err(format!(
            "{name} must be in {lo}..={hi}{bound}, got {index}"
        )));
    }
    index.extract()
}

/// `count` of an optional argument: `default` when it is `None`.
fn count_or(
    value: &Option<Bound<'_, PyAny>>,
    default: u64,
    name: &str,
    lo: u64,
    hi: u64,
    bound: &str,
) -> PyResult<u64> {
    value
        .as_ref()
        .map_or(Ok(default), |v| count(v, name, lo, hi, bound))
}

fn weights_slice<'a>(w: &'a Option<PyReadonlyArray1<'_, f32>>) -> PyResult<Option<&'a [f32]>> {
    w.as_ref()
        .map(|w| {
            w.as_slice()
                .map_err(|_| PyValueError::new_err("weights must be C-contiguous"))
        })
        .transpose()
}

/// Aggregates `updates` with `rule`; returns (aggregate, accepted, rejected [(client, reason)]).
/// `num_byzantine` is required by `krum` and `bulyan`; the other counts default when `None`
/// (`num_selected` 1, `max_iter` 100, `iterations` 1, `dim` the most common update length).
#[pyfunction]
#[pyo3(signature = (rule, updates, weights=None, dim=None, on_invalid="error", num_byzantine=None,
                    num_selected=None, beta=0.1, nu=1e-6, max_iter=None, eps=1e-6, center=None,
                    tau=1.0, iterations=None))]
#[allow(clippy::too_many_arguments)]
pub fn aggregate<'py>(
    py: Python<'py>,
    rule: &str,
    updates: &Bound<'py, PyAny>,
    weights: Option<PyReadonlyArray1<'py, f32>>,
    dim: Option<Bound<'py, PyAny>>,
    on_invalid: &str,
    num_byzantine: Option<Bound<'py, PyAny>>,
    num_selected: Option<Bound<'py, PyAny>>,
    beta: f64,
    nu: f64,
    max_iter: Option<Bound<'py, PyAny>>,
    eps: f64,
    center: Option<PyReadonlyArray1<'py, f32>>,
    tau: f64,
    iterations: Option<Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyArray1<f32>>, Vec<usize>, Vec<(usize, String)>)> {
    let borrowed = Borrowed::extract(updates)?;
    let (rows, detected) = borrowed.rows()?;
    // Counts of clients are bounded by the clients given, so the rules' arithmetic on them
    // (2f + 2, 4f + 3, n - 2f) cannot overflow; each rule then states its own requirement.
    let n = rows.len() as u64;
    let clients = " (at most the number of clients)";
    let byzantine = |rule: &str| -> PyResult<usize> {
        let f = num_byzantine
            .as_ref()
            .ok_or_else(|| PyTypeError::new_err(format!("{rule} needs num_byzantine")))?;
        Ok(count(f, "num_byzantine", 0, n, clients)? as usize)
    };
    let rule = match rule {
        "fedavg" => Rule::FedAvg,
        "krum" => Rule::Krum {
            num_byzantine: byzantine("krum")?,
            num_selected: count_or(&num_selected, 1, "num_selected", 1, n.max(1), clients)?
                as usize,
        },
        "median" => Rule::Median,
        "trimmed_mean" => Rule::TrimmedMean { beta },
        "bulyan" => Rule::Bulyan {
            num_byzantine: byzantine("bulyan")?,
        },
        "geometric_median" => Rule::GeometricMedian {
            nu,
            max_iter: count_or(&max_iter, 100, "max_iter", 0, usize::MAX as u64, "")? as usize,
            eps,
        },
        "centered_clipping" => {
            let center = weights_slice(&center)?.map(|c| c.to_vec());
            Rule::CenteredClipping {
                center,
                tau,
                iterations: count_or(&iterations, 1, "iterations", 0, usize::MAX as u64, "")?
                    as usize,
            }
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown aggregation rule `{other}`"
            )))
        }
    };
    let d = match &dim {
        Some(v) => count(v, "dim", 1, usize::MAX as u64, "")? as usize,
        None => detected,
    };
    let on_invalid = match on_invalid {
        "error" => OnInvalid::Error,
        "drop" => OnInvalid::Drop,
        other => {
            return Err(PyValueError::new_err(format!(
                "on_invalid must be \"error\" or \"drop\", got {other:?}"
            )))
        }
    };
    let w = weights_slice(&weights)?;
    let (out, report) = py.detach(|| {
        guard(|| meshrl_fl::aggregate(&rule, &rows, w, d, on_invalid).map_err(fl_err))
    })?;
    let rejected = report
        .rejected
        .iter()
        .map(|(i, r)| (*i, r.to_string()))
        .collect();
    Ok((out.into_pyarray(py), report.accepted, rejected))
}

/// Nearest-neighbour mixing of a `[n, d]` float32 matrix; returns the mixed `[n, d]` matrix.
#[pyfunction]
pub fn nnm<'py>(
    py: Python<'py>,
    updates: &Bound<'py, PyAny>,
    num_byzantine: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let borrowed = Borrowed::extract(updates)?;
    let (rows, d) = borrowed.rows()?;
    let num_byzantine = count(
        &num_byzantine,
        "num_byzantine",
        0,
        rows.len() as u64,
        " (at most the number of clients)",
    )? as usize;
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(PyValueError::new_err(format!(
            "update {i} has length {}, expected {d}",
            r.len()
        )));
    }
    let n = rows.len();
    let out = py.detach(|| guard(|| rules::nnm(&rows, num_byzantine).map_err(fl_err)))?;
    out.into_pyarray(py).reshape([n, d])
}

/// Makes `num_byzantine` attack vectors `[f, d]` from honest updates.
#[pyfunction]
#[pyo3(signature = (attack, honest, num_byzantine, strength=1.0, seed=None))]
pub fn attack<'py>(
    py: Python<'py>,
    attack: &str,
    honest: &Bound<'py, PyAny>,
    num_byzantine: Bound<'py, PyAny>,
    strength: f32,
    seed: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let borrowed = Borrowed::extract(honest)?;
    let (rows, d) = borrowed.rows()?;
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(PyValueError::new_err(format!(
            "honest update {i} has length {}, expected {d}",
            r.len()
        )));
    }
    let most = MAX_ATTACK_VALUES / (d.max(1) as u64);
    let num_byzantine = count(
        &num_byzantine,
        "num_byzantine",
        0,
        most,
        &format!(" (at most 2^31 values in all for updates of length {d})"),
    )? as usize;
    let seed = count_or(&seed, 0, "seed", 0, u64::MAX, "")?;
    let out = py.detach(|| {
        guard(|| {
            match attack {
                "sign_flip" => attacks::sign_flip(&rows, num_byzantine, strength),
                "gaussian" => attacks::gaussian(&rows, num_byzantine, strength, seed),
                "inner_product_manipulation" => {
                    attacks::inner_product_manipulation(&rows, num_byzantine, strength)
                }
                "a_little_is_enough" => attacks::a_little_is_enough(&rows, num_byzantine, strength),
                other => return Err(PyValueError::new_err(format!("unknown attack `{other}`"))),
            }
            .map_err(fl_err)
        })
    })?;
    out.into_pyarray(py).reshape([num_byzantine, d])
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(aggregate, m)?)?;
    m.add_function(wrap_pyfunction!(nnm, m)?)?;
    m.add_function(wrap_pyfunction!(attack, m)?)?;
    Ok(())
}
