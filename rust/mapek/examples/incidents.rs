//! Evaluates incident files with and without the loop and prints the tables
//! (`cargo run --release -p meshrl-mapek --example incidents -- configs/eval/incidents/*.toml`;
//! `meshrl eval --incident` does the same).

use meshrl_mapek::{evaluate_incident, report, train_detectors, IncidentFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<IncidentFile> = std::env::args()
        .skip(1)
        .map(IncidentFile::load)
        .collect::<Result<_, _>>()?;
    let Some(first) = files.first() else {
        eprintln!("usage: incidents FILE.toml...");
        return Ok(());
    };
    let t = std::time::Instant::now();
    let detectors = train_detectors(
        &first.scenario,
        &first.mapek,
        &first.detector,
        &first.run.router,
    )?;
    eprintln!(
        "detectors trained in {:.1} s: {:?}",
        t.elapsed().as_secs_f64(),
        detectors.training
    );
    for (name, t) in &detectors.thresholds {
        eprintln!("{name}: calibrated thresholds {t:?}");
    }
    print!("{}", report::held_out_table(&detectors));
    let mut reports = Vec::new();
    for f in &files {
        let t = std::time::Instant::now();
        let r = evaluate_incident(f, &detectors)?;
        eprintln!("{}: {:.1} s", f.name, t.elapsed().as_secs_f64());
        for l in &r.with_loop {
            for (g, a) in l.actions.iter().take(12) {
                eprintln!(
                    "  [{}] twin {g} t={} {:?} {}",
                    l.detector, a.tick, a.kind, a.reason
                );
            }
        }
        reports.push(r);
    }
    println!();
    print!("{}", report::incident_table(&reports, "federated"));
    println!();
    print!("{}", report::detector_table(&reports));
    Ok(())
}
