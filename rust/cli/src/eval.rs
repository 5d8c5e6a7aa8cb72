//! `meshrl eval` and `meshrl export`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use meshrl_env::EnvConfig;
use meshrl_eval::stats::{self, Paired, Summary};
use meshrl_eval::{baseline, evaluate, EvalOptions, BASELINES};

use crate::{EvalArgs, ExportArgs};

/// A policy named on the command line.
enum PolicyArg {
    Baseline(String),
    /// A trained policy: a weights file or a run folder holding `policy.weights`.
    Trained(PathBuf),
}

fn policy_args(specs: &[String]) -> Result<Vec<PolicyArg>> {
    let mut out = Vec::new();
    for spec in specs {
        match spec.strip_prefix("baseline:") {
            Some("all") => out.extend(BASELINES.iter().map(|s| PolicyArg::Baseline(s.to_string()))),
            Some(name) if BASELINES.contains(&name) || name == "hop_count" => {
                out.push(PolicyArg::Baseline(name.to_string()))
            }
            Some(name) => bail!("unknown baseline `{name}`; known: {}", BASELINES.join(", ")),
            None if Path::new(spec).exists() => out.push(PolicyArg::Trained(PathBuf::from(spec))),
            None => bail!(
                "unknown policy `{spec}`: use baseline:NAME or a run folder / policy.weights file"
            ),
        }
    }
    Ok(out)
}

fn router_for(p: &PolicyArg, cfg: &EnvConfig, seed: u64, greedy: bool) -> Result<Box<dyn meshrl_eval::Router>> {
    match p {
        PolicyArg::Baseline(name) => Ok(baseline(name, seed).expect("validated above")),
        PolicyArg::Trained(path) => {
            let policy = meshrl_ppo::Policy::load(path)?;
            let k = cfg.topology.max_neighbors;
            let obs_dim = cfg.env.features.obs_dim(k);
            if (policy.obs_dim(), policy.max_neighbors()) != (obs_dim, k) {
                bail!(
                    "{} was trained for {} neighbour slots (obs_dim {}), the scenario has {k} slots \
                     and `{}` features (obs_dim {obs_dim}); set the scenario's env.features to \
                     the policy's feature set ({})",
                    path.display(),
                    policy.max_neighbors(),
                    policy.obs_dim(),
                    cfg.env.features.name(),
                    policy.spec().feature_set.as_deref().unwrap_or("unknown")
                );
            }
            let suffix = if greedy { " (greedy)" } else { "" };
            Ok(Box::new(meshrl_ppo::PolicyRouter {
                policy,
                name: format!("ppo:{}{suffix}", path.display()),
                deterministic: greedy,
                seed,
            }))
        }
    }
}

/// A scenario file, with the feature set of the trained policies compared on it: a policy
/// sees the observation it was trained on, whatever the scenario file says.
fn scenario_config(path: &Path, policies: &[PolicyArg]) -> Result<EnvConfig> {
    let mut cfg = EnvConfig::from_toml_file(path)?;
    for p in policies {
        if let PolicyArg::Trained(run) = p {
            let policy = meshrl_ppo::Policy::load(run)?;
            if let Some(f) = policy.spec().feature_set.as_deref().and_then(meshrl_env::FeatureSet::from_name) {
                cfg.env.features = f;
            }
        }
    }
    Ok(cfg)
}

pub(crate) fn run_eval(args: &EvalArgs) -> Result<()> {
    if !args.incidents.is_empty() {
        return run_incidents(args);
    }
    let policies = policy_args(&args.policies)?;
    if !(1..=meshrl_eval::MAX_EPISODES).contains(&args.episodes) {
        bail!("--episodes must be in 1..={}, got {}", meshrl_eval::MAX_EPISODES, args.episodes);
    }
    let mut summaries: Vec<Summary> = Vec::new();
    let mut paired: Vec<Paired> = Vec::new();
    for path in &args.scenarios {
        let cfg = scenario_config(path, &policies)?;
        let opts = EvalOptions {
            episodes: args.episodes,
            num_envs: args
                .num_envs
                .unwrap_or_else(|| meshrl_ppo::own_load_envs(&cfg, args.episodes)),
            seed: args.seed,
        };
        opts.validate().context("check --episodes and --num-envs")?;
        let scenario = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let mut runs = Vec::new();
        for p in &policies {
            let modes: &[bool] = match p {
                PolicyArg::Trained(_) if args.greedy => &[false, true],
                _ => &[false],
            };
            for &greedy in modes {
                let mut router = router_for(p, &cfg, args.seed, greedy)?;
                let start = Instant::now();
                let episodes = evaluate(&cfg, router.as_mut(), &opts)?;
                let label = router.name();
                eprintln!(
                    "[{scenario}] {label}: {} packets in {:.1} s",
                    episodes.len(),
                    start.elapsed().as_secs_f64()
                );
                summaries.push(stats::summarize(&label, &scenario, &episodes, args.seed));
                runs.push((label, episodes));
            }
        }
        if let Some((first, rest)) = runs.split_first() {
            for other in rest {
                paired.push(stats::compare(&first.0, &first.1, &other.0, &other.1, &scenario, args.seed));
            }
        }
    }
    if args.json {
        let out = serde_json::json!({ "summaries": summaries, "paired": paired });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", meshrl_eval::table(&summaries, &paired));
    }
    if let Some(path) = &args.csv {
        meshrl_ppo::atomic_write(path, meshrl_eval::csv(&summaries).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        crate::plot::write_png(path, &summaries).map_err(anyhow::Error::msg)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

pub(crate) fn run_export(args: &ExportArgs) -> Result<()> {
    let policy = meshrl_ppo::Policy::load(&args.run)?;
    let folder = if args.run.is_dir() {
        args.run.clone()
    } else {
        args.run.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let config_path = folder.join("config.json");
    let training_config = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", config_path.display()))?,
        ),
        Err(_) => {
            eprintln!(
                "note: no {} next to the weights; the model card will have no training config",
                config_path.display()
            );
            None
        }
    };
    let opts = meshrl_ppo::ExportOptions {
        include_critic: args.critic,
        training_config,
    };
    let checksum = policy.export(&args.output, &opts)?;
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({size} bytes, {:?}, obs_dim {}, {} actions, hidden {:?}, checksum fnv1a64:{checksum:016x})",
        args.output.display(),
        policy.architecture(),
        policy.obs_dim(),
        policy.max_neighbors(),
        policy.hidden()
    );
    Ok(())
}

/// `meshrl eval --incident FILE...`: each incident without and with the MAPE-K loop.
fn run_incidents(args: &EvalArgs) -> Result<()> {
    use meshrl_mapek::{evaluate_incident, report, train_detectors, IncidentFile};
    let files: Vec<IncidentFile> = args
        .incidents
        .iter()
        .map(IncidentFile::load)
        .collect::<Result<_, _>>()?;
    let first = &files[0];
    let mut training = first.detector.clone();
    if let Some(path) = &args.ledger {
        training.ledger = Some(path.clone());
    }
    let start = Instant::now();
    let detectors = train_detectors(&first.scenario, &first.mapek, &training, &first.run.router)?;
    eprintln!(
        "detectors trained on {} samples from {} nodes in {:.1} s (local-only: node {})",
        detectors.training.get("samples").copied().unwrap_or(0),
        detectors.training.get("clients").copied().unwrap_or(0),
        start.elapsed().as_secs_f64(),
        detectors.local_node
    );
    if let Some(l) = &detectors.ledger {
        eprintln!(
            "federated detector: {} blocks in {} ({} validators); the loop runs model {}",
            l.blocks,
            l.path.display(),
            l.validators,
            &l.served[..12]
        );
    }
    for (name, [node, link]) in &detectors.thresholds {
        eprintln!("{name} detector decides at p(misbehaving) ≥ {node:.3}, p(link fails) ≥ {link:.3} (calibration: {:?})", first.detector.calibration);
    }
    let mut reports = Vec::new();
    for f in &files {
        let start = Instant::now();
        reports.push(evaluate_incident(f, &detectors)?);
        eprintln!("[{}] {} twins × {} ticks, 5 runs in {:.1} s", f.name, f.run.twins, f.run.ticks, start.elapsed().as_secs_f64());
    }
    if let Some(path) = &args.actions {
        let mut out = String::new();
        for r in &reports {
            for l in &r.with_loop {
                for (twin, a) in &l.actions {
                    let row = serde_json::json!({ "incident": r.incident, "detector": l.detector, "twin": twin, "entry": a });
                    out.push_str(&row.to_string());
                    out.push('\n');
                }
            }
        }
        meshrl_ppo::atomic_write(path, out.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        let out = serde_json::json!({ "detectors": detectors, "incidents": reports });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("Detectors on held-out meshes:\n");
        print!("{}", report::held_out_table(&detectors));
        println!("\nPer incident, the loop with the federated detector (delivery after the recovery horizon):\n");
        print!("{}", report::incident_table(&reports, "federated"));
        println!("\nEvery detector:\n");
        print!("{}", report::detector_table(&reports));
    }
    Ok(())
}
