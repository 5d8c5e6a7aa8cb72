//! The aggregation rules. Each takes the clients' rows (`n` slices of length `d`) and optional
//! per-client weights (example counts) and returns the aggregate (length `d`). Where Flower has
//! the rule, the semantics match `flwr/server/strategy/aggregate.py`.

use crate::blocks::{
    distance, from_key, mix_and_measure, mixed_rows, pairwise_sq_distances, per_block_sorted,
    per_coordinate, sq_distances_to, to_key, weighted_sum,
};
use crate::error::{invalid, FlError};
use crate::network::{Network, LANES, MAX_CLIENTS};

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
        *k = to_key(f32::from_bits(*k));
    }
    keys
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
        middle_mean(below, from_key(*m))
    }
}

/// The median of an even count: the mean of the two middle values, in f64.
fn middle_mean(a: f32, b: f32) -> f32 {
    ((a as f64 + b as f64) / 2.0) as f32
}

/// Region cuts that put the median's one or two values in a region of their own.
fn median_cuts(n: usize) -> Vec<usize> {
    let mid = n / 2;
    let first = if n % 2 == 1 { mid } else { mid - 1 };
    [first, mid + 1].into_iter().filter(|&c| c > 0 && c < n).collect()
}

/// Coordinate-wise median. Unweighted (Flower's `aggregate_median`).
pub fn median(rows: &[&[f32]]) -> Result<Vec<f32>, FlError> {
    let d = dim(rows)?;
    let n = rows.len();
    let mut out = vec![0f32; d];
    if n > MAX_CLIENTS {
        per_coordinate(rows, &mut out, |v, _| median_of(v));
        return Ok(out);
    }
    let net = Network::regions(n, &median_cuts(n));
    let mid = n / 2;
    per_block_sorted(rows, &net, &mut out, |keys, out| {
        for (c, o) in out.iter_mut().enumerate() {
            *o = if n % 2 == 1 {
                from_key(keys[mid][c])
            } else {
                // The network leaves the two middle values at mid - 1 and mid, in either order.
                middle_mean(from_key(keys[mid - 1][c]), from_key(keys[mid][c]))
            };
        }
    });
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
    if cut > 0 && n <= MAX_CLIENTS {
        let net = Network::regions(n, &[lo, hi]);
        per_block_sorted(rows, &net, &mut out, |keys, out| {
            let mut acc = [0f64; LANES];
            for k in &keys[lo..hi] {
                for (a, &key) in acc.iter_mut().zip(k) {
                    *a += from_key(key) as f64;
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = (a / (hi - lo) as f64) as f32;
            }
        });
        return Ok(out);
    }
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
    if theta <= MAX_CLIENTS {
        // Sorted, the `beta` values closest to the median are a window of consecutive ones.
        let net = Network::regions(theta, &(1..theta).collect::<Vec<_>>());
        let mid = theta / 2;
        per_block_sorted(&chosen, &net, &mut out, |keys, out| {
            for (c, o) in out.iter_mut().enumerate() {
                let at = |i: usize| from_key(keys[i][c]);
                let med = if theta % 2 == 1 {
                    at(mid)
                } else {
                    middle_mean(at(mid - 1), at(mid))
                };
                // Slide right while the value entering is no farther than the one leaving
                // (on a tie either is right; going on keeps equal values such as -0 and 0
                // from stopping the slide short).
                let mut start = 0;
                while start + beta < theta
                    && (at(start + beta) - med).abs() <= (med - at(start)).abs()
                {
                    start += 1;
                }
                let s: f64 = (start..start + beta).map(|i| at(i) as f64).sum();
                *o = (s / beta as f64) as f32;
            }
        });
        return Ok(out);
    }
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
    weiszfeld(rows, weights, nu, max_iter, eps, false).map(|z| z.expect("not checked"))
}

/// [`geometric_median`] of rows nobody screened: `None` if some value is NaN or infinite.
/// The first pass tells: such a value makes the mean non-finite at its coordinate, and with
/// it every distance to the mean.
pub(crate) fn geometric_median_unscreened(
    rows: &[&[f32]],
    weights: Option<&[f32]>,
    nu: f64,
    max_iter: usize,
    eps: f64,
) -> Result<Option<Vec<f32>>, FlError> {
    weiszfeld(rows, weights, nu, max_iter, eps, true)
}

fn weiszfeld(
    rows: &[&[f32]],
    weights: Option<&[f32]>,
    nu: f64,
    max_iter: usize,
    eps: f64,
    check_finite: bool,
) -> Result<Option<Vec<f32>>, FlError> {
    if !(nu > 0.0 && nu.is_finite()) {
        return Err(invalid("nu", format!("must be > 0, got {nu}")));
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(invalid("eps", format!("must be >= 0, got {eps}")));
    }
    let alpha = normalized(weights, rows.len())?;
    let d = dim(rows)?;
    // Each pass computes the new z and, from the same read of the updates, its distances.
    let mut z = vec![0f32; d];
    let to_norms = |sq: Vec<f64>| -> Vec<f64> { sq.into_iter().map(f64::sqrt).collect() };
    let mut dists = to_norms(mix_and_measure(rows, &alpha, 0.0, &mut z));
    if check_finite && !dists.iter().all(|d| d.is_finite()) {
        return Ok(None);
    }
    let objective = |dists: &[f64]| -> f64 { dists.iter().zip(&alpha).map(|(d, a)| d * a).sum() };
    let mut obj = objective(&dists);
    let mut next = vec![0f32; d];
    for _ in 0..max_iter {
        let beta: Vec<f64> = alpha
            .iter()
            .zip(&dists)
            .map(|(a, d)| a / d.max(nu))
            .collect();
        let total: f64 = beta.iter().sum();
        let beta: Vec<f64> = beta.iter().map(|b| b / total).collect();
        let new_dists = to_norms(mix_and_measure(rows, &beta, 0.0, &mut next));
        std::mem::swap(&mut z, &mut next);
        let new_obj = objective(&new_dists);
        let done = (obj - new_obj).abs() <= eps * new_obj;
        obj = new_obj;
        dists = new_dists;
        if done {
            break;
        }
    }
    Ok(Some(z))
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
    if iterations == 0 {
        return Ok(v);
    }
    // Each pass moves v and, from the same read of the updates, measures the distances the
    // next iteration clips by.
    let mut sq = sq_distances_to(rows, &v);
    for _ in 0..iterations {
        let scale: Vec<f64> = sq
            .iter()
            .zip(&w)
            .map(|(&s, wi)| {
                let norm = s.sqrt();
                wi * if norm > tau { tau / norm } else { 1.0 }
            })
            .collect();
        // v + Σ s_i (x_i - v) = (1 - Σ s_i) v + Σ s_i x_i
        let keep = 1.0 - scale.iter().sum::<f64>();
        sq = mix_and_measure(rows, &scale, keep, &mut v);
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
    let chosen: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| {
                dist[i * n + a]
                    .total_cmp(&dist[i * n + b])
                    .then((a != i).cmp(&(b != i)))
                    .then(a.cmp(&b))
            });
            order.truncate(keep);
            order
        })
        .collect();
    let mut out = vec![0f32; n * d];
    mixed_rows(rows, &chosen, 1.0 / keep as f64, &mut out);
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

#[cfg(test)]
mod network_path_tests {
    //! The comparator-network paths of the coordinate-wise rules against a plain sort per
    //! coordinate, on random inputs with many ties and both zeros.
    use super::*;
    use proptest::prelude::*;

    fn column(rows: &[&[f32]], c: usize) -> Vec<f32> {
        let mut v: Vec<f32> = rows.iter().map(|r| r[c]).collect();
        v.sort_by(f32::total_cmp);
        v
    }

    fn mean(v: &[f32]) -> f32 {
        (v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64) as f32
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
    }

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n * d)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match s % 8 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => ((s >> 8) % 41) as f32 * 0.25 - 5.0,
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn network_rules_match_a_sort_per_coordinate(
            n in 1usize..=MAX_CLIENTS, d in 1usize..300, seed in 0u64..1000,
        ) {
            let x = data(n, d, seed);
            let rows: Vec<&[f32]> = x.chunks(d).collect();
            let med = median(&rows).unwrap();
            let cut = n / 5;
            let trimmed = trimmed_mean(&rows, if 2 * cut < n { cut as f64 / n as f64 + 1e-9 } else { 0.0 }).unwrap();
            for c in 0..d {
                let v = column(&rows, c);
                let m = if n % 2 == 1 { v[n / 2] } else { middle_mean(v[n / 2 - 1], v[n / 2]) };
                prop_assert_eq!(med[c].to_bits(), m.to_bits(), "median n {} coord {}", n, c);
                let t = if 2 * cut < n { mean(&v[cut..n - cut]) } else { mean(&v) };
                prop_assert!(close(trimmed[c], t), "trimmed n {} coord {}: {} vs {}", n, c, trimmed[c], t);
            }
        }

        #[test]
        fn network_bulyan_matches_a_sort_per_coordinate(
            f in 0usize..6, extra in 0usize..40, d in 1usize..200, seed in 0u64..1000,
        ) {
            let n = 4 * f + 3 + extra;
            let x = data(n, d, seed);
            let rows: Vec<&[f32]> = x.chunks(d).collect();
            let out = bulyan(&rows, f).unwrap();
            // Bulyan's coordinate stage on the clients its Krum rounds select.
            let dist = pairwise_sq_distances(&rows);
            let mut remaining: Vec<usize> = (0..n).collect();
            let mut chosen = Vec::new();
            for _ in 0..n - 2 * f {
                let scores = scores_among(&dist, n, &remaining, f);
                let candidates: Vec<&[f32]> = remaining.iter().map(|&i| rows[i]).collect();
                chosen.push(rows[remaining.remove(lowest(&scores, &candidates, 1)[0])]);
            }
            let beta = n - 4 * f;
            for c in 0..d {
                let v = column(&chosen, c);
                let t = v.len();
                let med = if t % 2 == 1 { v[t / 2] } else { middle_mean(v[t / 2 - 1], v[t / 2]) };
                let mut by_distance = v.clone();
                by_distance.sort_by(|a, b| (a - med).abs().total_cmp(&(b - med).abs()));
                // Ties in distance may pick either value; the k-th distance must agree.
                let kth = (by_distance[beta - 1] - med).abs();
                let inside: Vec<f32> = v.iter().copied().filter(|x| (x - med).abs() < kth).collect();
                let lo = mean(&[inside.clone(), vec![med - kth; beta - inside.len()]].concat());
                let hi = mean(&[inside.clone(), vec![med + kth; beta - inside.len()]].concat());
                prop_assert!(
                    out[c] >= lo.min(hi) - 1e-5 && out[c] <= lo.max(hi) + 1e-5,
                    "bulyan coord {}: {} not in [{}, {}]", c, out[c], lo, hi
                );
            }
        }
    }
}
