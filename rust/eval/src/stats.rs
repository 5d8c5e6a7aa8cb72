//! Summaries with 95 % confidence intervals, and paired comparisons of two policies.

use std::collections::BTreeMap;

use meshrl_env::twin::LossCause;
use meshrl_env::Outcome;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::harness::Episode;

/// Bootstrap resamples behind every interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// A 95 % confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// How one policy did on one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub policy: String,
    pub scenario: String,
    pub episodes: usize,
    pub delivered: usize,
    pub delivery_ratio: f64,
    /// Wilson score interval.
    pub delivery_ci: Interval,
    /// Mean end-to-end latency of delivered packets, ms, with a bootstrap interval.
    pub latency_mean_ms: f64,
    pub latency_mean_ci: Interval,
    /// 95th percentile of delivered packets' latency, ms, with a bootstrap interval.
    pub latency_p95_ms: f64,
    pub latency_p95_ci: Interval,
    /// Mean hops of delivered packets.
    pub hops_mean: f64,
    /// Undelivered packets by cause (`link_loss`, ..., `ttl`).
    pub losses: BTreeMap<String, usize>,
}

/// Paired difference `a − b` over the same packets.
#[derive(Clone, Debug, Serialize)]
pub struct Paired {
    pub a: String,
    pub b: String,
    pub scenario: String,
    pub pairs: usize,
    /// Difference in delivery ratio, with a paired-bootstrap interval.
    pub delivery_diff: f64,
    pub delivery_diff_ci: Interval,
    /// Whether the delivery interval excludes 0.
    pub delivery_significant: bool,
    /// Mean latency difference over packets both delivered, ms.
    pub latency_diff_ms: f64,
    pub latency_diff_ci: Interval,
    pub latency_significant: bool,
    pub both_delivered: usize,
}

fn wilson(successes: usize, n: usize) -> Interval {
    if n == 0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    let (z, n_f) = (1.959_963_984_540_054, n as f64);
    let p = successes as f64 / n_f;
    let denom = 1.0 + z * z / n_f;
    let centre = (p + z * z / (2.0 * n_f)) / denom;
    let half = z * (p * (1.0 - p) / n_f + z * z / (4.0 * n_f * n_f)).sqrt() / denom;
    Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Percentile-bootstrap interval of `stat` over resamples of `values`.
fn bootstrap(values: &[f64], seed: u64, stat: impl Fn(&mut Vec<f64>) -> f64) -> Interval {
    if values.is_empty() {
        return Interval {
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut stats: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let mut sample: Vec<f64> = (0..values.len())
                .map(|_| values[rng.random_range(0..values.len())])
                .collect();
            stat(&mut sample)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    Interval {
        low: percentile(&stats, 0.025),
        high: percentile(&stats, 0.975),
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn p95(v: &mut Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 0.95)
}

/// Name of an episode's loss cause in reports (`ttl` for truncation).
pub fn cause_name(e: &Episode) -> Option<&'static str> {
    if e.outcome == Outcome::TtlExpired as u8 {
        return Some("ttl");
    }
    LossCause::ALL
        .iter()
        .find(|c| **c as u8 == e.loss_cause)
        .map(|c| c.name())
}

/// Summarizes one policy's episodes on one scenario.
pub fn summarize(policy: &str, scenario: &str, episodes: &[Episode], seed: u64) -> Summary {
    let delivered: Vec<&Episode> = episodes.iter().filter(|e| e.delivered()).collect();
    let latency: Vec<f64> = delivered.iter().map(|e| e.latency_ms as f64).collect();
    let mut sorted = latency.clone();
    sorted.sort_by(f64::total_cmp);
    let mut losses: BTreeMap<String, usize> = LossCause::ALL
        .iter()
        .map(|c| (c.name().to_string(), 0))
        .chain([("ttl".to_string(), 0)])
        .collect();
    for e in episodes.iter().filter(|e| !e.delivered()) {
        if let Some(name) = cause_name(e) {
            *losses.entry(name.to_string()).or_default() += 1;
        }
    }
    Summary {
        policy: policy.to_string(),
        scenario: scenario.to_string(),
        episodes: episodes.len(),
        delivered: delivered.len(),
        delivery_ratio: delivered.len() as f64 / episodes.len().max(1) as f64,
        delivery_ci: wilson(delivered.len(), episodes.len()),
        latency_mean_ms: mean(&latency),
        latency_mean_ci: bootstrap(&latency, seed, |v| mean(v)),
        latency_p95_ms: percentile(&sorted, 0.95),
        latency_p95_ci: bootstrap(&latency, seed ^ 1, p95),
        hops_mean: mean(&delivered.iter().map(|e| e.hops as f64).collect::<Vec<_>>()),
        losses,
    }
}

/// Paired comparison of two policies' episodes on the same packets (matched by environment
/// and episode index; unmatched episodes are ignored).
pub fn compare(
    a_name: &str,
    a: &[Episode],
    b_name: &str,
    b: &[Episode],
    scenario: &str,
    seed: u64,
) -> Paired {
    let index: std::collections::HashMap<(u32, u64), &Episode> =
        b.iter().map(|e| ((e.env, e.episode), e)).collect();
    let pairs: Vec<(&Episode, &Episode)> = a
        .iter()
        .filter_map(|x| index.get(&(x.env, x.episode)).map(|y| (x, *y)))
        .collect();
    let delivery: Vec<f64> = pairs
        .iter()
        .map(|(x, y)| x.delivered() as u8 as f64 - y.delivered() as u8 as f64)
        .collect();
    let latency: Vec<f64> = pairs
        .iter()
        .filter(|(x, y)| x.delivered() && y.delivered())
        .map(|(x, y)| x.latency_ms as f64 - y.latency_ms as f64)
        .collect();
    let delivery_ci = bootstrap(&delivery, seed, |v| mean(v));
    let latency_ci = bootstrap(&latency, seed ^ 2, |v| mean(v));
    let excludes_zero = |ci: &Interval| ci.low > 0.0 || ci.high < 0.0;
    Paired {
        a: a_name.to_string(),
        b: b_name.to_string(),
        scenario: scenario.to_string(),
        pairs: pairs.len(),
        delivery_diff: mean(&delivery),
        delivery_significant: excludes_zero(&delivery_ci),
        delivery_diff_ci: delivery_ci,
        latency_diff_ms: mean(&latency),
        latency_significant: excludes_zero(&latency_ci),
        latency_diff_ci: latency_ci,
        both_delivered: latency.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 50 of 100: 0.404..0.596 (standard tables).
        let ci = wilson(50, 100);
        assert!(
            (ci.low - 0.4038).abs() < 1e-3 && (ci.high - 0.5962).abs() < 1e-3,
            "{ci:?}"
        );
        let ci = wilson(0, 10);
        assert_eq!(ci.low, 0.0);
        assert!((ci.high - 0.2775).abs() < 1e-3);
    }

    #[test]
    fn bootstrap_interval_covers_the_mean() {
        let v: Vec<f64> = (0..500).map(|i| (i % 10) as f64).collect();
        let ci = bootstrap(&v, 1, |s| mean(s));
        assert!(
            ci.low < 4.5 && ci.high > 4.5 && ci.high - ci.low < 1.0,
            "{ci:?}"
        );
    }
}
