//! Plain-text table and CSV of summaries and paired comparisons.

use crate::stats::{Paired, Summary};

/// A fixed-width table: one row per (scenario, policy), then the paired comparisons.
pub fn table(summaries: &[Summary], paired: &[Paired]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<14} {:<24} {:>7} {:>22} {:>24} {:>24} {:>6}  losses\n",
        "scenario",
        "policy",
        "packets",
        "delivery [95% CI]",
        "latency ms [95% CI]",
        "p95 ms [95% CI]",
        "hops"
    ));
    for s in summaries {
        let losses: Vec<String> = s
            .losses
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!(
            "{:<14} {:<24} {:>7} {:>6.3} [{:.3}, {:.3}] {:>8.1} [{:>6.1}, {:>6.1}] {:>8.1} [{:>6.1}, {:>6.1}] {:>6.2}  {}\n",
            s.scenario,
            s.policy,
            s.episodes,
            s.delivery_ratio,
            s.delivery_ci.low,
            s.delivery_ci.high,
            s.latency_mean_ms,
            s.latency_mean_ci.low,
            s.latency_mean_ci.high,
            s.latency_p95_ms,
            s.latency_p95_ci.low,
            s.latency_p95_ci.high,
            s.hops_mean,
            losses.join(", ")
        ));
    }
    for p in paired {
        out.push_str(&format!(
            "\n{}: {} − {} over {} paired packets: delivery {:+.4} [{:+.4}, {:+.4}] ({}); latency {:+.2} ms [{:+.2}, {:+.2}] over {} delivered by both ({})\n",
            p.scenario,
            p.a,
            p.b,
            p.pairs,
            p.delivery_diff,
            p.delivery_diff_ci.low,
            p.delivery_diff_ci.high,
            if p.delivery_significant { "significant" } else { "not significant" },
            p.latency_diff_ms,
            p.latency_diff_ci.low,
            p.latency_diff_ci.high,
            p.both_delivered,
            if p.latency_significant { "significant" } else { "not significant" },
        ));
    }
    out
}

/// CSV with one row per (scenario, policy).
pub fn csv(summaries: &[Summary]) -> String {
    let causes: Vec<String> = summaries
        .first()
        .map(|s| s.losses.keys().cloned().collect())
        .unwrap_or_default();
    let mut out = String::from(
        "scenario,policy,episodes,delivered,delivery_ratio,delivery_ci_low,delivery_ci_high,latency_mean_ms,latency_mean_ci_low,latency_mean_ci_high,latency_p95_ms,latency_p95_ci_low,latency_p95_ci_high,hops_mean",
    );
    for c in &causes {
        out.push_str(&format!(",lost_{c}"));
    }
    out.push('\n');
    for s in summaries {
        out.push_str(&format!(
            "{},{},{},{},{:.6},{:.6},{:.6},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}",
            s.scenario,
            s.policy,
            s.episodes,
            s.delivered,
            s.delivery_ratio,
            s.delivery_ci.low,
            s.delivery_ci.high,
            s.latency_mean_ms,
            s.latency_mean_ci.low,
            s.latency_mean_ci.high,
            s.latency_p95_ms,
            s.latency_p95_ci.low,
            s.latency_p95_ci.high,
            s.hops_mean
        ));
        for c in &causes {
            out.push_str(&format!(",{}", s.losses.get(c).copied().unwrap_or(0)));
        }
        out.push('\n');
    }
    out
}
