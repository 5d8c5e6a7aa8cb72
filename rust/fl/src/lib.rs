//! Byzantine-robust aggregation of flat `f32` model updates, and attacks to test it.
//!
//! Federated learning exchanges flat vectors (a PPO agent's `get_weights()`); this crate
//! aggregates `n` of them of length `d`. Rules take rows as `&[&[f32]]`, so a contiguous
//! `[n, d]` matrix and separately allocated client vectors are both read without copying, and
//! run in parallel with rayon. [`aggregate`] screens clients (wrong length, NaN/Inf, bad
//! weight) first and reports who was rejected and why. No ML dependency.

pub mod attacks;
mod blocks;
mod error;
mod network;
pub mod rules;
mod validate;

pub use error::FlError;
pub use rules::{
    bulyan, centered_clipping, fedavg, geometric_median, krum, median, nnm, set_aside,
    trimmed_mean,
};
pub use validate::{screen, OnInvalid, Rejection, Report};

/// An aggregation rule and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    FedAvg,
    Krum {
        num_byzantine: usize,
        num_selected: usize,
    },
    Median,
    TrimmedMean {
        beta: f64,
    },
    Bulyan {
        num_byzantine: usize,
    },
    GeometricMedian {
        nu: f64,
        max_iter: usize,
        eps: f64,
    },
    CenteredClipping {
        center: Option<Vec<f32>>,
        tau: f64,
        iterations: usize,
    },
}

impl Rule {
    /// Aggregates rows that are already screened.
    pub fn apply(&self, rows: &[&[f32]], weights: Option<&[f32]>) -> Result<Vec<f32>, FlError> {
        match self {
            Rule::FedAvg => fedavg(rows, weights),
            Rule::Krum {
                num_byzantine,
                num_selected,
            } => krum(rows, *num_byzantine, *num_selected, weights),
            Rule::Median => median(rows),
            Rule::TrimmedMean { beta } => trimmed_mean(rows, *beta),
            Rule::Bulyan { num_byzantine } => bulyan(rows, *num_byzantine),
            Rule::GeometricMedian { nu, max_iter, eps } => {
                geometric_median(rows, weights, *nu, *max_iter, *eps)
            }
            Rule::CenteredClipping {
                center,
                tau,
                iterations,
            } => centered_clipping(rows, weights, center.as_deref(), *tau, *iterations),
        }
    }
}

/// Screens the clients against length `dim`, then aggregates those accepted with `rule`.
/// Under `OnInvalid::Error` any rejection fails the call; under `Drop` the report lists them.
pub fn aggregate(
    rule: &Rule,
    rows: &[&[f32]],
    weights: Option<&[f32]>,
    dim: usize,
    on_invalid: OnInvalid,
) -> Result<(Vec<f32>, Report), FlError> {
    if let Some(w) = weights {
        if w.len() != rows.len() {
            return Err(FlError::InvalidArgument {
                param: "weights",
                reason: format!("has {} entries for {} clients", w.len(), rows.len()),
            });
        }
    }
    if matches!(rule, Rule::FedAvg | Rule::GeometricMedian { .. }) {
        // These rules notice a NaN or infinite input on their own, so they run first and the
        // values are read for a report only when they did: one pass over the updates fewer.
        let shapes = validate::screen_shapes(rows, weights, dim);
        if shapes.rejected.is_empty() || on_invalid == OnInvalid::Drop {
            if let Some(out) = unscreened(rule, rows, weights, &shapes) {
                return Ok((out, shapes));
            }
        }
    }
    let report = screen(rows, weights, dim);
    if !report.rejected.is_empty() && on_invalid == OnInvalid::Error {
        return Err(FlError::InvalidClients(report));
    }
    if report.accepted.is_empty() {
        let why = if report.rejected.is_empty() {
            String::new()
        } else {
            format!(" (rejected: {report})")
        };
        return Err(FlError::NoClients(why));
    }
    let kept: Vec<&[f32]> = report.accepted.iter().map(|&i| rows[i]).collect();
    let kept_weights: Option<Vec<f32>> =
        weights.map(|w| report.accepted.iter().map(|&i| w[i]).collect());
    let out = rule.apply(&kept, kept_weights.as_deref())?;
    Ok((out, report))
}

/// `rule` on the clients `shapes` accepted, unless a value turned out NaN or infinite (or the
/// rule failed): then `None`, and the caller screens and runs it again. FedAvg's mean turns
/// non-finite wherever an input does (weights are >= 0); the geometric median checks its
/// first distances.
fn unscreened(
    rule: &Rule,
    rows: &[&[f32]],
    weights: Option<&[f32]>,
    shapes: &Report,
) -> Option<Vec<f32>> {
    use rayon::prelude::*;
    if shapes.accepted.is_empty() {
        return None;
    }
    let kept: Vec<&[f32]> = shapes.accepted.iter().map(|&i| rows[i]).collect();
    let kept_weights: Option<Vec<f32>> =
        weights.map(|w| shapes.accepted.iter().map(|&i| w[i]).collect());
    let w = kept_weights.as_deref();
    match rule {
        Rule::FedAvg => {
            let out = fedavg(&kept, w).ok()?;
            out.par_chunks(1 << 16)
                .all(|c| c.iter().all(|x| x.is_finite()))
                .then_some(out)
        }
        Rule::GeometricMedian { nu, max_iter, eps } => {
            rules::geometric_median_unscreened(&kept, w, *nu, *max_iter, *eps).ok()?
        }
        _ => None,
    }
}
