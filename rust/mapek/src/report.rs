//! Markdown tables of incident reports and detector scores (for RESULTS.md and the CLI).

use std::fmt::Write;

use meshrl_env::twin::LocalTraffic;

use crate::evaluate::{Detectors, IncidentReport};

fn pct(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{:.1} %", 100.0 * x)
    }
}

/// Share of the nodes' own traffic their queues took (`None`: they offered none).
fn admitted(t: &LocalTraffic) -> Option<f64> {
    (t.offered > 0.0).then(|| t.admitted / t.offered)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or("–".into(), pct)
}

/// Per incident, the federated loop: delivery after the recovery horizon without and with the
/// loop against the healthy mesh, the share recovered, detection, false quarantines.
pub fn incident_table(reports: &[IncidentReport], detector: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| incident | healthy | without loop | with loop | recovered (first {} ticks) | recovered (after) | paired Δ after [95 % CI] | detected | time to detect (mean / max ticks) | precision | recall | false quarantines / sim. hour | healthy nodes ever quarantined | own traffic admitted (without → with loop) |",
        reports.first().map_or(100, |r| r.recovery_ticks)
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in reports {
        let Some(l) = r.with_detector(detector) else {
            continue;
        };
        let ttd = match (l.time_to_detect_mean, l.time_to_detect_max) {
            (Some(m), Some(x)) => format!("{m:.0} / {x}"),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:+.3} [{:+.3}, {:+.3}] | {}/{} | {} | {} | {} | {:.0} | {} | {} |",
            r.incident,
            pct(r.healthy.after),
            pct(r.without_loop.after),
            pct(l.delivery.after),
            opt_pct(l.recovered_during),
            opt_pct(l.recovered_after),
            l.paired_after,
            l.paired_after_ci.0,
            l.paired_after_ci.1,
            l.detected,
            l.twins,
            ttd,
            opt_pct(l.precision),
            opt_pct(l.recall),
            l.false_quarantines_per_hour,
            pct(l.healthy_quarantined_fraction),
            match (admitted(&r.without_loop_own_traffic), admitted(&l.own_traffic)) {
                (Some(a), Some(b)) => format!("{} → {}", pct(a), pct(b)),
                _ => "–".into(),
            },
        );
    }
    s
}

/// Every detector on every incident: recovered share, time to detect, false quarantines.
pub fn detector_table(reports: &[IncidentReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| incident | detector | delivery after | recovered (after) | detected | time to detect (mean ticks) | precision | quarantines (false) | false quarantines / sim. hour |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        for l in &r.with_loop {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}/{} | {} | {} | {} ({}) | {:.0} |",
                r.incident,
                l.detector,
                pct(l.delivery.after),
                opt_pct(l.recovered_after),
                l.detected,
                l.twins,
                l.time_to_detect_mean
                    .map_or("–".into(), |t| format!("{t:.0}")),
                opt_pct(l.precision),
                l.quarantines,
                l.false_quarantines,
                l.false_quarantines_per_hour,
            );
        }
    }
    s
}

/// The detectors on held-out meshes, per head.
pub fn held_out_table(d: &Detectors) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| detector | misbehaviour: precision | recall | F1 | AUC | link failure: precision | recall | F1 | AUC |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for x in &d.held_out {
        let (m, l) = (&x.misbehaviour, &x.link_failure);
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            x.detector, m.precision, m.recall, m.f1, m.auc, l.precision, l.recall, l.f1, l.auc
        );
    }
    s
}
