//! `meshrl`: the command line. `meshrl eval` compares routing policies on scenarios.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use meshrl_env::EnvConfig;
use meshrl_eval::stats::{self, Paired, Summary};
use meshrl_eval::{baseline, evaluate, EvalOptions, BASELINES};

mod plot;

#[derive(Parser)]
#[command(
    name = "meshrl",
    version,
    about = "Train and evaluate packet-routing agents for wireless mesh networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Route the same packets with each policy on each scenario and compare them.
    Eval(EvalArgs),
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A policy: `baseline:NAME` (random, shortest_path, etx, latency, greedy_rssi,
    /// greedy_hops, q_routing, oracle) or `baseline:all`. Repeat to compare; the first is the
    /// reference of the paired comparisons.
    #[arg(long = "policy", required = true)]
    policies: Vec<String>,
    /// Scenario TOML (an environment config). Repeat for several.
    #[arg(long = "scenario", required = true)]
    scenarios: Vec<PathBuf>,
    /// Packets per policy and scenario.
    #[arg(long, default_value_t = 2000)]
    episodes: usize,
    /// Seed of the packets and the mesh evolution (the same for every policy).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Environments stepped in parallel (packets in flight).
    #[arg(long, default_value_t = 256)]
    num_envs: usize,
    /// Write one CSV row per (scenario, policy) here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write a PNG plot (delivery and latency per policy and scenario) here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

fn policy_names(specs: &[String]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for spec in specs {
        match spec.strip_prefix("baseline:") {
            Some("all") => names.extend(BASELINES.iter().map(|s| s.to_string())),
            Some(name) if BASELINES.contains(&name) || name == "hop_count" => {
                names.push(name.to_string())
            }
            Some(name) => {
                return Err(format!(
                    "unknown baseline `{name}`; known: {}",
                    BASELINES.join(", ")
                ));
            }
            None if Path::new(spec).exists() => {
                return Err(format!(
                    "`{spec}`: evaluating trained policies needs the PPO trainer, which is not part of this build yet"
                ));
            }
            None => return Err(format!("unknown policy `{spec}`: use baseline:NAME")),
        }
    }
    Ok(names)
}

fn run_eval(args: &EvalArgs) -> Result<(), String> {
    if args.episodes == 0 {
        return Err("--episodes must be at least 1".into());
    }
    let names = policy_names(&args.policies)?;
    let mut summaries: Vec<Summary> = Vec::new();
    let mut paired: Vec<Paired> = Vec::new();
    for path in &args.scenarios {
        let cfg = EnvConfig::from_toml_file(path).map_err(|e| e.to_string())?;
        let scenario = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let opts = EvalOptions {
            episodes: args.episodes,
            num_envs: args.num_envs,
            seed: args.seed,
        };
        let mut runs = Vec::new();
        for name in &names {
            let mut router = baseline(name, args.seed).expect("validated above");
            let start = Instant::now();
            let episodes = evaluate(&cfg, router.as_mut(), &opts).map_err(|e| e.to_string())?;
            let label = router.name();
            eprintln!(
                "[{scenario}] {label}: {} packets in {:.1} s",
                episodes.len(),
                start.elapsed().as_secs_f64()
            );
            summaries.push(stats::summarize(&label, &scenario, &episodes, args.seed));
            runs.push((label, episodes));
        }
        if let Some((first, rest)) = runs.split_first() {
            for other in rest {
                paired.push(stats::compare(
                    &first.0, &first.1, &other.0, &other.1, &scenario, args.seed,
                ));
            }
        }
    }
    if args.json {
        let out = serde_json::json!({ "summaries": summaries, "paired": paired });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", meshrl_eval::table(&summaries, &paired));
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, meshrl_eval::csv(&summaries))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        plot::write_png(path, &summaries)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Eval(args) => run_eval(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
