//! The aggregation rules. Each takes the clients' rows (`n` slices of length `d`) and optional
//! per-client weights (example counts) and returns the aggregate (length `d`). Where Flower has
//! the rule, the semantics match `flwr/server/strategy/aggregate.py`.

use rayon::prelude::*;

use crate::blocks::{distance, pairwise_sq_distances, per_coordinate, weighted_sum};
use crate::error::{invalid, FlError};

fn normalized(weights: Option<&[f32]>, n: usize) -> Result<Vec<f64>, FlError> {
    let w: Vec<f64> = match weights {
        Some(w) => w.iter().map(|&x| x as f64).collect(),
        None => vec![1.0; n],
    };
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(invalid(
            "weights",
            format!("must sum to a positive finite number, got {total}"),
        ));
    }
    Ok(w.into_iter().map(|x| x / total).collect())
}

fn dim(rows: &[&[f32]]) -> Result<usize, FlError> {
    rows.first()
        .map(|r| r.len())
        .ok_or_else(|| FlError::NoClients(String::new()))
}

/// FedAvg: `Σ_i w_i x_i / Σ_i w_i`, with `w_i` the example counts (equal if none).
pub fn fedavg(rows: &[&[f32]], weights: Option<&[f32]>) -> Result<Vec<f32>, FlError> {
    let d = dim(rows)?;
    let w = normalized(weights, rows.len())?;
    let mut out = vec![0f32; d];
    weighted_sum(rows, &w, &mut out);
    Ok(out)
}

/// Krum scores (Blanchard et al. 2017) of the clients in `among` (indices into the `n × n`
/// squared-distance matrix `dist`): for each, the sum of squared distances to its
/// `max(1, m - f - 2)` nearest others in `among`, `m = among.len()`.
fn scores_among(dist: &[f64], n: usize, among: &[usize], num_byzantine: usize) -> Vec<f64> {
    let closest = (among.len().saturating_sub(num_byzantine + 2)).max(1);
    among
        .iter()
        .map(|&i| {
            let mut others: Vec<f64> = among
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| dist[i * n + j])
                .collect();
            let k = closest.min(others.len());
            if k == 0 {
                return 0.0;
            }
            others.select_nth_unstable_by(k - 1, f64::total_cmp);
            others[..k].iter().sum()
        })
        .collect()
}

/// Krum scores of every client. Returns (scores, squared-distance matrix).
pub fn krum_scores(rows: &[&[f32]], num_byzantine: usize) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len();
    let dist = pairwise_sq_distances(rows);
    let all: Vec<usize> = (0..n).collect();
    (scores_among(&dist, n, &all, num_byzantine), dist)
}

fn check_krum(n: usize, f: usize, rule: &'static str) -> Result<(), FlError> {
    if n <= 2 * f + 2 {
        return Err(FlError::TooFewClients {
            rule,
            n,
            f,
            need: format!("n > 2f + 2 = {}", 2 * f + 2),
        });
    }
    Ok(())
}

/// Indices of the `m` lowest scores. Exact ties (mutual nearest neighbours score the same
/// when Krum keeps one neighbour) are broken by comparing the vectors themselves, so the
/// choice does not depend on client order; Flower's `argmin` takes the first index instead.
fn lowest(scores: &[f64], rows: &[&[f32]], m: usize) -> Vec<usize> {
    let by_content = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[a]
            .total_cmp(&scores[b])
            .then_with(|| by_content(rows[a], rows[b]))
            .then(a.cmp(&b))
    });
    order.truncate(m);
    order
}

/// Krum (`num_selected = 1`): the update with the lowest Krum score. Multi-Krum
/// (`num_selected = m > 1`): the example-count-weighted mean of the `m` lowest-scoring updates.
/// Requires `n > 2f + 2`.
pub fn krum(
    rows: &[&[f32]],
    num_byzantine: usize,
    num_selected: usize,
    weights: Option<&[f32]>,
) -> Result<Vec<f32>, FlError> {
    let n = rows.len();
    check_krum(n, num_byzantine, "krum")?;
    if !(1..=n).contains(&num_selected) {
        return Err(invalid(
            "num_selected",
            format!("must be in 1..={n}, got {num_selected}"),
        ));
    }
    let (scores, _) = krum_scores(rows, num_byzantine);
    let best = lowest(&scores, rows, num_selected);
    if num_selected == 1 {
        return Ok(rows[best[0]].to_vec());
    }
    let chosen: Vec<&[f32]> = best.iter().map(|&i| rows[i]).collect();
    let w: Option<Vec<f32>> = weights.map(|w| best.iter().map(|&i| w[i]).collect());
    fedavg(&chosen, w.as_deref())
}

/// Rewrites floats in place as `u32` keys whose unsigned order is the floats' total order, so
/// selection compares integers. Exact for every finite value (inputs are screened).
fn to_keys(v: &mut [f32]) -> &mut [u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a u32.
    let keys: &mut [u32] =
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) };
    for k in keys.iter_mut() {
        *k = if *k >> 31 == 1 { !*k } else { *k | 0x8000_0000 };
    }
    keys
}

fn from_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// Median of `v` (mean of the two middle values when `len` is even, as NumPy). Scrambles `v`.
fn median_of(v: &mut [f32]) -> f32 {
    let n = v.len();
    let mid = n / 2;
    let keys = to_keys(v);
    let (lower, m, _) = keys.select_nth_unstable(mid);
    if n % 2 == 1 {
        from_key(*m)
    } else {
        let below = from_key(lower.iter().copied().max().unwrap_or(*m));
        ((below as f64 + from_key(*m) as f64) / 2.0) as f32
    }
}

/// Coordinate-wise median. Unweighted (Flower's `aggregate_median`).
pub fn median(rows: &[&[f32]]) -> Result<Vec<f32>, FlError> {
    let d = dim(rows)?;
    let mut out = vec![0f32; d];
    per_coordinate(rows, &mut out, |v, _| median_of(v));
    Ok(out)
}

/// Trimmed mean: per coordinate, drop the `int(beta * n)` smallest and largest values and
/// average the rest. Unweighted (Flower's `aggregate_trimmed_avg`). `beta` in [0, 0.5).
pub fn trimmed_mean(rows: &[&[f32]], beta: f64) -> Result<Vec<f32>, FlError> {
    let d = dim(rows)?;
    let n = rows.len();
    if !(0.0..0.5).contains(&beta) {
        return Err(invalid("beta", format!("must be in [0, 0.5), got {beta}")));
    }
    let cut = (beta * n as f64) as usize;
    if 2 * cut >= n {
        return Err(invalid(
            "beta",
            format!("cuts {cut} from each end of {n} clients: nothing remains"),
        ));
    }
    let (lo, hi) = (cut, n - cut);
    let mut out = vec![0f32; d];
    per_coordinate(rows, &mut out, |v, _| {
        if cut == 0 {
            return (v.iter().map(|&x| x as f64).sum::<f64>() / n as f64) as f32;
        }
        let keys = to_keys(v);
        keys.select_nth_unstable(lo);
        keys[lo..].select_nth_unstable(hi - 1 - lo);
        let s: f64 = keys[lo..hi].iter().map(|&k| from_key(k) as f64).sum();
        (s / (hi - lo) as f64) as f32
    });
    Ok(out)
}

/// Bulyan (El Mhamdi et al. 2018), as Flower: select `theta = n - 2f` updates by repeated Krum
/// (each pick removed before the next, Krum's `f` unchanged), then per coordinate average the
/// `beta = theta - 2f` selected values closest to their median. Requires `n >= 4f + 3`.
pub fn bulyan(rows: &[&[f32]], num_byzantine: usize) -> Result<Vec<f32>, FlError> {
    let n = rows.len();
    let f = num_byzantine;
    if n < 4 * f + 3 {
        return Err(FlError::TooFewClients {
            rule: "bulyan",
            n,
            f,
            need: format!("n >= 4f + 3 = {}", 4 * f + 3),
        });
    }
    let d = dim(rows)?;
    let theta = n - 2 * f;
    let beta = theta - 2 * f;
    // Distances once; each Krum round rescoring the remaining clients from them.
    let dist = pairwise_sq_distances(rows);
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut selected = Vec::with_capacity(theta);
    for _ in 0..theta {
        let scores = scores_among(&dist, n, &remaining, f);
        let candidates: Vec<&[f32]> = remaining.iter().map(|&i| rows[i]).collect();
        let best = lowest(&scores, &candidates, 1)[0];
        selected.push(remaining.remove(best));
    }
    let chosen: Vec<&[f32]> = selected.iter().map(|&i| rows[i]).collect();
    let mut out = vec![0f32; d];
    per_coordinate(&chosen, &mut out, |v, _| {
        let mut scratch = v.to_vec();
        let med = median_of(&mut scratch);
        v.select_nth_unstable_by(beta - 1, |a, b| (a - med).abs().total_cmp(&(b - med).abs()));
        let s: f64 = v[..beta].iter().map(|&x| x as f64).sum();
        (s / beta as f64) as f32
    });
    Ok(out)
}

/// Geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022): start from the weighted
/// mean `z`; repeat `z ← Σ_i β_i x_i / Σ_i β_i` with `β_i = α_i / max(nu, ‖z − x_i‖)` until the
/// objective `Σ_i α_i ‖z − x_i‖` changes by less than `eps` times itself, or `max_iter` times.
/// `α_i` are the example counts (equal if none).
pub fn geometric_median(
    rows: &[&[f32]],
    weights: Option<&[f32]>,
    nu: f64,
    max_iter: usize,
    eps: f64,
) -> Result<Vec<f32>, FlError> {
    if !(nu > 0.0 && nu.is_finite()) {
        return Err(invalid("nu", format!("must be > 0, got {nu}")));
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(invalid("eps", format!("must be >= 0, got {eps}")));
    }
    let alpha = normalized(weights, rows.len())?;
    let mut z = fedavg(rows, weights)?;
    let objective = |z: &[f32]| -> (f64, Vec<f64>) {
        let dists: Vec<f64> = rows.iter().map(|r| distance(z, r)).collect();
        (dists.iter().zip(&alpha).map(|(d, a)| d * a).sum(), dists)
    };
    let (mut obj, mut dists) = objective(&z);
    for _ in 0..max_iter {
        let beta: Vec<f64> = alpha
            .iter()
            .zip(&dists)
            .map(|(a, d)| a / d.max(nu))
            .collect();
        let total: f64 = beta.iter().sum();
        let beta: Vec<f64> = beta.iter().map(|b| b / total).collect();
        weighted_sum(rows, &beta, &mut z);
        let (new_obj, new_dists) = objective(&z);
        let done = (obj - new_obj).abs() <= eps * new_obj;
        obj = new_obj;
        dists = new_dists;
        if done {
            break;
        }
    }
    Ok(z)
}

/// Centered clipping (Karimireddy et al. 2021): starting from `center` (the previous
/// aggregate; the coordinate-wise median if none), repeat `iterations` times
/// `v ← v + Σ_i w_i (x_i − v) · min(1, tau / ‖x_i − v‖)` with `w_i` the normalized example
/// counts (equal if none).
pub fn centered_clipping(
    rows: &[&[f32]],
    weights: Option<&[f32]>,
    center: Option<&[f32]>,
    tau: f64,
    iterations: usize,
) -> Result<Vec<f32>, FlError> {
    let d = dim(rows)?;
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(invalid("tau", format!("must be > 0, got {tau}")));
    }
    let mut v = match center {
        Some(c) if c.len() != d => {
            return Err(invalid(
                "center",
                format!("has length {}, the updates {d}", c.len()),
            ))
        }
        Some(c) if c.iter().any(|x| !x.is_finite()) => {
            return Err(invalid("center", "holds NaN or Inf"))
        }
        Some(c) => c.to_vec(),
        None => median(rows)?,
    };
    let w = normalized(weights, rows.len())?;
    for _ in 0..iterations {
        let scale: Vec<f64> = rows
            .iter()
            .zip(&w)
            .map(|(r, wi)| {
                let norm = distance(r, &v);
                wi * if norm > tau { tau / norm } else { 1.0 }
            })
            .collect();
        // v + Σ s_i (x_i - v) = (1 - Σ s_i) v + Σ s_i x_i
        let keep = 1.0 - scale.iter().sum::<f64>();
        let mut moved = vec![0f32; d];
        weighted_sum(rows, &scale, &mut moved);
        v.par_iter_mut()
            .zip(moved)
            .for_each(|(vi, m)| *vi = (keep * *vi as f64 + m as f64) as f32);
    }
    Ok(v)
}

/// Nearest-neighbour mixing (Allouah et al. 2023), a pre-aggregation step: each update is
/// replaced by the mean of its `n − f` nearest updates (itself included) in Euclidean
/// distance. Returns the mixed rows, row-major `[n, d]`; feed them to any rule.
pub fn nnm(rows: &[&[f32]], num_byzantine: usize) -> Result<Vec<f32>, FlError> {
    let n = rows.len();
    let d = dim(rows)?;
    if num_byzantine >= n {
        return Err(FlError::TooFewClients {
            rule: "nnm",
            n,
            f: num_byzantine,
            need: format!("n > f = {num_byzantine}"),
        });
    }
    let keep = n - num_byzantine;
    let dist = pairwise_sq_distances(rows);
    let mut out = vec![0f32; n * d];
    for (i, row_out) in out.chunks_mut(d).enumerate() {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            dist[i * n + a]
                .total_cmp(&dist[i * n + b])
                .then((a != i).cmp(&(b != i)))
                .then(a.cmp(&b))
        });
        let chosen: Vec<&[f32]> = order[..keep].iter().map(|&j| rows[j]).collect();
        weighted_sum(&chosen, &vec![1.0 / keep as f64; keep], row_out);
    }
    Ok(out)
}

/// Which clients `rule` set aside when it produced `aggregate` from `rows`, for a round's
/// report. Exact for the selection rules: Krum and multi-Krum (the clients not selected).
/// Trimmed mean: clients trimmed at more than half of the coordinates. Centered clipping:
/// clients farther than `tau` from the result (clipped). Median, Bulyan, geometric median and
/// FedAvg keep no per-client decision; for them a client is flagged when its distance to the
/// aggregate exceeds three times the median distance, an outlier flag, not the rule's own.
pub fn set_aside(rule: &crate::Rule, rows: &[&[f32]], aggregate: &[f32]) -> Vec<usize> {
    use crate::Rule;
    let n = rows.len();
    if n == 0 {
        return Vec::new();
    }
    match rule {
        Rule::Krum {
            num_byzantine,
            num_selected,
        } if n > 2 * num_byzantine + 2 => {
            let (scores, _) = krum_scores(rows, *num_byzantine);
            let kept = lowest(&scores, rows, (*num_selected).clamp(1, n));
            (0..n).filter(|i| !kept.contains(i)).collect()
        }
        Rule::TrimmedMean { beta } => {
            let k = (beta * n as f64).floor() as usize;
            if k == 0 {
                return Vec::new();
            }
            let d = aggregate.len();
            let mut trimmed = vec![0usize; n];
            let mut order: Vec<usize> = (0..n).collect();
            for c in 0..d {
                order.sort_by(|&a, &b| rows[a][c].total_cmp(&rows[b][c]).then(a.cmp(&b)));
                for &i in order[..k].iter().chain(&order[n - k..]) {
                    trimmed[i] += 1;
                }
            }
            (0..n).filter(|&i| 2 * trimmed[i] > d).collect()
        }
        Rule::CenteredClipping { tau, .. } => {
            (0..n).filter(|&i| distance(rows[i], aggregate) > *tau).collect()
        }
        _ => {
            let dist: Vec<f64> = rows.iter().map(|r| distance(r, aggregate)).collect();
            let mut sorted = dist.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[n / 2];
            (0..n).filter(|&i| dist[i] > 3.0 * median && dist[i] > 0.0).collect()
        }
    }
}

#[cfg(test)]
mod set_aside_tests {
    use super::*;
    use crate::Rule;

    fn clients() -> Vec<Vec<f32>> {
        // Seven honest clients near (1, 1, 1), two attackers far away.
        let mut rows: Vec<Vec<f32>> =
            (0..7).map(|i| vec![1.0 + 0.01 * i as f32, 1.0 - 0.01 * i as f32, 1.0]).collect();
        rows.push(vec![-20.0, -20.0, -20.0]);
        rows.push(vec![30.0, 30.0, 30.0]);
        rows
    }

    #[test]
    fn every_rule_sets_the_attackers_aside_and_keeps_the_honest() {
        let rows = clients();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        for rule in [
            Rule::Krum { num_byzantine: 2, num_selected: 1 },
            Rule::Krum { num_byzantine: 2, num_selected: 5 },
            Rule::TrimmedMean { beta: 0.2 },
            Rule::Median,
            Rule::CenteredClipping { center: None, tau: 1.0, iterations: 3 },
        ] {
            let agg = rule.apply(&refs, None).unwrap();
            let aside = set_aside(&rule, &refs, &agg);
            assert!(aside.contains(&7) && aside.contains(&8), "{rule:?}: {aside:?}");
            if !matches!(rule, Rule::Krum { .. }) {
                assert_eq!(aside, vec![7, 8], "{rule:?}");
            }
        }
        // Krum with one selected sets aside everyone but the chosen client.
        let rule = Rule::Krum { num_byzantine: 2, num_selected: 1 };
        let agg = rule.apply(&refs, None).unwrap();
        assert_eq!(set_aside(&rule, &refs, &agg).len(), 8);
    }
}
