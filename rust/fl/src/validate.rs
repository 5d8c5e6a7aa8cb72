//! Screening client updates: wrong length or non-finite values are rejected with a reason.

use std::fmt;

/// Why a client's update was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The vector's length differs from the model's.
    WrongLength { got: usize, expected: usize },
    /// The vector holds NaN or ±Inf at this many coordinates (first at `first`).
    NonFinite { count: usize, first: usize },
    /// The client's weight (example count) is negative or not finite.
    BadWeight,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::WrongLength { got, expected } => {
                write!(f, "length {got}, expected {expected}")
            }
            Rejection::NonFinite { count, first } => {
                write!(f, "{count} non-finite values (first at coordinate {first})")
            }
            Rejection::BadWeight => write!(f, "negative or non-finite weight"),
        }
    }
}

/// Which clients were kept and which were rejected, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub accepted: Vec<usize>,
    pub rejected: Vec<(usize, Rejection)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .rejected
            .iter()
            .map(|(i, r)| format!("client {i}: {r}"))
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

/// What to do with clients whose update is unusable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnInvalid {
    /// Fail, naming every rejected client.
    #[default]
    Error,
    /// Aggregate the rest and report the rejected ones.
    Drop,
}

/// Screens `rows` (and `weights`, if given) against length `dim`.
pub fn screen(rows: &[&[f32]], weights: Option<&[f32]>, dim: usize) -> Report {
    screen_with(rows, weights, dim, true)
}

/// [`screen`] without reading the values: lengths and weights only. For rules whose result
/// turns non-finite whenever an input does (FedAvg), so the values need a look only then.
pub(crate) fn screen_shapes(rows: &[&[f32]], weights: Option<&[f32]>, dim: usize) -> Report {
    screen_with(rows, weights, dim, false)
}

fn screen_with(rows: &[&[f32]], weights: Option<&[f32]>, dim: usize, values: bool) -> Report {
    use rayon::prelude::*;
    let verdicts: Vec<Option<Rejection>> = rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            if row.len() != dim {
                return Some(Rejection::WrongLength {
                    got: row.len(),
                    expected: dim,
                });
            }
            if let Some(w) = weights {
                if !(w[i].is_finite() && w[i] >= 0.0) {
                    return Some(Rejection::BadWeight);
                }
            }
            if values && crate::blocks::has_non_finite(row) {
                let count = row.iter().filter(|x| !x.is_finite()).count();
                let first = row.iter().position(|x| !x.is_finite()).unwrap_or(0);
                return Some(Rejection::NonFinite { count, first });
            }
            None
        })
        .collect();
    let mut report = Report::default();
    for (i, v) in verdicts.into_iter().enumerate() {
        match v {
            None => report.accepted.push(i),
            Some(r) => report.rejected.push((i, r)),
        }
    }
    report
}
