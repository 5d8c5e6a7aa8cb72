//! `meshrl`: the command line. `meshrl eval` compares routing policies on scenarios.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use meshrl_env::EnvConfig;
use meshrl_eval::stats::{self, Paired, Summary};
use meshrl_eval::{baseline, evaluate, EvalOptions, BASELINES};

mod plot;
mod tb;

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
    /// Train a PPO routing policy on the CPU and compare it with shortest-path routing.
    Train(TrainArgs),
    /// Export a trained policy for mesh nodes (safetensors + model card), for
    /// `meshrl-runtime` or `meshrl.runtime`.
    Export(ExportArgs),
}

#[derive(clap::Args)]
struct ExportArgs {
    /// A run folder from `meshrl train --out` (or its `policy.weights`).
    run: PathBuf,
    /// Output file.
    #[arg(short = 'o', long = "output", default_value = "policy.safetensors")]
    output: PathBuf,
    /// Also export the critic (nodes do not need it).
    #[arg(long)]
    critic: bool,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Training config (`configs/train/*.toml`): the environment, total steps, PPO settings.
    config: PathBuf,
    /// Folder for `metrics.csv` (one row per update, CleanRL's metric names), TensorBoard events
    /// (`tb/`), `config.json`, checkpoints and the trained `policy.weights`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override `total_steps`.
    #[arg(long)]
    steps: Option<u64>,
    /// Override the PPO seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Packets for the final comparison with shortest path.
    #[arg(long, default_value_t = 2048)]
    eval_episodes: usize,
    /// Backend: auto (a GPU through wgpu if this build has it and the machine has one, else
    /// the CPU), cpu (flex) or wgpu (needs a build with `--features wgpu`).
    #[arg(long)]
    device: Option<String>,
    /// Checkpoint to OUT/checkpoint.ckpt every N updates (overrides `checkpoint_every`).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Continue the run in OUT from its last checkpoint (same config); the result is the one
    /// an uninterrupted run gives.
    #[arg(long, requires = "out")]
    resume: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A policy: `baseline:NAME` (random, shortest_path, etx, latency, greedy_rssi,
    /// greedy_hops, q_routing, oracle), `baseline:all`, or a trained policy (a run folder from
    /// `meshrl train --out`, or its `policy.weights`). Repeat to compare; the first is the
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

/// A policy named on the command line.
enum PolicySpec {
    Baseline(String),
    /// A trained policy: a weights file or a run folder holding `policy.weights`.
    Trained(PathBuf),
}

fn policy_specs(specs: &[String]) -> Result<Vec<PolicySpec>, String> {
    let mut out = Vec::new();
    for spec in specs {
        match spec.strip_prefix("baseline:") {
            Some("all") => out.extend(
                BASELINES
                    .iter()
                    .map(|s| PolicySpec::Baseline(s.to_string())),
            ),
            Some(name) if BASELINES.contains(&name) || name == "hop_count" => {
                out.push(PolicySpec::Baseline(name.to_string()))
            }
            Some(name) => {
                return Err(format!(
                    "unknown baseline `{name}`; known: {}",
                    BASELINES.join(", ")
                ));
            }
            None if Path::new(spec).exists() => out.push(PolicySpec::Trained(PathBuf::from(spec))),
            None => {
                return Err(format!(
                "unknown policy `{spec}`: use baseline:NAME or a run folder / policy.weights file"
            ))
            }
        }
    }
    Ok(out)
}

fn router_for(
    spec: &PolicySpec,
    cfg: &EnvConfig,
    seed: u64,
) -> Result<Box<dyn meshrl_eval::Router>, String> {
    match spec {
        PolicySpec::Baseline(name) => Ok(baseline(name, seed).expect("validated above")),
        PolicySpec::Trained(path) => {
            let policy = meshrl_ppo::Policy::load(path).map_err(|e| e.to_string())?;
            let k = cfg.topology.max_neighbors;
            let obs_dim = meshrl_env::obs::obs_dim(k);
            if (policy.obs_dim(), policy.max_neighbors()) != (obs_dim, k) {
                return Err(format!(
                    "{} was trained for {} neighbour slots (obs_dim {}), the scenario has {k} (obs_dim {obs_dim})",
                    path.display(),
                    policy.max_neighbors(),
                    policy.obs_dim()
                ));
            }
            Ok(Box::new(meshrl_ppo::PolicyRouter {
                policy,
                name: format!("ppo:{}", path.display()),
                deterministic: false,
                seed,
            }))
        }
    }
}

fn run_eval(args: &EvalArgs) -> Result<(), String> {
    if args.episodes == 0 {
        return Err("--episodes must be at least 1".into());
    }
    let specs = policy_specs(&args.policies)?;
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
        for spec in &specs {
            let mut router = router_for(spec, &cfg, args.seed)?;
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

const METRICS: &str = "global_step,charts/episodic_return,charts/SPS,charts/learning_rate,losses/policy_loss,losses/value_loss,losses/entropy,losses/approx_kl,losses/clipfrac,losses/explained_variance,routing/delivery_ratio,routing/latency_ms,routing/hops,time/env_s,time/inference_s,time/update_s";

fn run_train(args: &TrainArgs) -> Result<(), String> {
    use std::io::Write;
    let (mut cfg, env_cfg) =
        meshrl_ppo::TrainConfig::load(&args.config).map_err(|e| e.to_string())?;
    if let Some(s) = args.steps {
        cfg.total_steps = s;
    }
    if let Some(s) = args.seed {
        cfg.ppo.seed = s;
    }
    if let Some(d) = &args.device {
        cfg.ppo.device = d.parse().map_err(|e: meshrl_ppo::PpoError| e.to_string())?;
    }
    if let Some(n) = args.checkpoint_every {
        cfg.checkpoint_every = n;
    }
    let checkpoint = args.out.as_ref().map(|d| d.join("checkpoint.ckpt"));
    let mut trainer = if args.resume {
        let path = checkpoint.as_ref().expect("--resume requires --out");
        let (trainer, info) = meshrl_ppo::Trainer::resume(path).map_err(|e| e.to_string())?;
        let mut want_env = env_cfg.clone();
        want_env.env.autoreset_mode = meshrl_env::AutoresetMode::SameStep;
        let (mut have_ppo, mut want_ppo) = (trainer.cfg.clone(), cfg.ppo.clone());
        // The backend may change on resume; everything else must match.
        have_ppo.device = meshrl_ppo::DeviceChoice::Auto;
        want_ppo.device = meshrl_ppo::DeviceChoice::Auto;
        if have_ppo != want_ppo
            || trainer.env_config() != Some(&want_env)
            || info.total_steps != cfg.total_steps
            || info.checkpoint_every != cfg.checkpoint_every
        {
            return Err(format!(
                "{} was written by a run with a different config (ppo, env, total_steps or \
                 checkpoint_every); resume with the same config and flags",
                path.display()
            ));
        }
        eprintln!(
            "resuming from {} at step {} (update {})",
            path.display(),
            info.global_step,
            info.updates_done
        );
        trainer
    } else {
        meshrl_ppo::Trainer::new(env_cfg.clone(), cfg.ppo.clone()).map_err(|e| e.to_string())?
    };
    let mut csv = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            // The resolved configs, for `meshrl export`'s model card and for reproducing the run.
            let resolved = serde_json::json!({"train": cfg, "env": env_cfg});
            let path = dir.join("config.json");
            meshrl_ppo::weights::atomic_write(
                &path,
                serde_json::to_string_pretty(&resolved).map_err(|e| e.to_string())?.as_bytes(),
            )
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let path = dir.join("metrics.csv");
            // On resume keep the rows up to the checkpoint; later ones are recomputed.
            let kept = if args.resume {
                let old = std::fs::read_to_string(&path).unwrap_or_default();
                old.lines()
                    .skip(1)
                    .filter(|l| {
                        l.split(',').next().and_then(|s| s.parse::<u64>().ok())
                            <= Some(trainer.global_step())
                    })
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            } else {
                String::new()
            };
            let mut f = std::fs::File::create(&path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            write!(f, "{METRICS}\n{kept}").map_err(|e| e.to_string())?;
            Some(f)
        }
        None => None,
    };
    // TensorBoard events in OUT/tb (CleanRL's tags), one writer per run.
    // A resumed run writes to its own subfolder (tensorboard-rs names files by the second, so a
    // second writer in one folder could overwrite the first one's file).
    let mut board = args.out.as_ref().map(|d| {
        let dir = if args.resume {
            d.join("tb").join(format!("resumed-at-{}", trainer.global_step()))
        } else {
            d.join("tb")
        };
        tb::Board::new(&dir)
    });
    eprintln!("training on {} ({})", trainer.device_name(), args.config.display());
    let start = Instant::now();
    let total = cfg.total_steps;
    let mut io_error = None;
    trainer
        .train_run(total, cfg.checkpoint_every, checkpoint.as_deref(), |s| {
            eprint!(
                "\r[{:>5.1}%] step {:>9} | {:>7.0} SPS | return {:>6.2} | delivery {:.3} | hops {:>5.2} | kl {:.4} ",
                (100.0 * s.global_step as f64 / total as f64).min(100.0), s.global_step, s.sps, s.episodic_return, s.delivery_ratio, s.hops, s.approx_kl
            );
            let values: [f64; 15] = [
                s.episodic_return as f64, s.sps, s.learning_rate, s.policy_loss as f64, s.value_loss as f64,
                s.entropy as f64, s.approx_kl as f64, s.clipfrac as f64, s.explained_variance as f64,
                s.delivery_ratio as f64, s.latency_ms as f64, s.hops as f64, s.env_s, s.inference_s, s.update_s,
            ];
            if let Some(b) = board.as_mut() {
                let named: Vec<(&str, f64)> = METRICS.split(',').skip(1).zip(values).collect();
                b.scalars(s.global_step, &named);
            }
            if let Some(f) = csv.as_mut() {
                let row = std::iter::once(s.global_step.to_string())
                    .chain(values.iter().map(|v| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(",");
                if let Err(e) = writeln!(f, "{row}") {
                    io_error = Some(e.to_string());
                    return false;
                }
            }
            true
        })
        .map_err(|e| e.to_string())?;
    eprintln!();
    if let Some(e) = io_error {
        return Err(format!("writing metrics failed: {e}"));
    }
    eprintln!(
        "trained {} steps in {:.1} s",
        trainer.global_step(),
        start.elapsed().as_secs_f64()
    );
    if let Some(dir) = &args.out {
        let path = dir.join("policy.weights");
        trainer.save(&path).map_err(|e| e.to_string())?;
        eprintln!("saved {}", path.display());
    }
    // Compare on packets (and, for generated meshes, topologies) the training never saw.
    let opts = EvalOptions {
        episodes: args.eval_episodes,
        num_envs: 64,
        seed: cfg.ppo.seed.wrapping_add(1_000_003),
    };
    let mut rows = Vec::new();
    for deterministic in [false, true] {
        let mut router = meshrl_ppo::PolicyRouter {
            policy: trainer.policy(),
            name: if deterministic {
                "ppo (greedy)".into()
            } else {
                "ppo".into()
            },
            deterministic,
            seed: 0,
        };
        let eps = evaluate(&env_cfg, &mut router, &opts).map_err(|e| e.to_string())?;
        rows.push(stats::summarize(&router.name, "eval", &eps, 0));
    }
    for name in ["shortest_path", "random"] {
        let mut r = baseline(name, 0).expect("known baseline");
        let eps = evaluate(&env_cfg, r.as_mut(), &opts).map_err(|e| e.to_string())?;
        rows.push(stats::summarize(&r.name(), "eval", &eps, 0));
    }
    println!("delivery ratio on {} unseen packets:", rows[0].episodes);
    for s in &rows {
        println!(
            "  {:<24} {:.3} [{:.3}, {:.3}]  latency {:.1} ms  hops {:.2}",
            s.policy,
            s.delivery_ratio,
            s.delivery_ci.low,
            s.delivery_ci.high,
            s.latency_mean_ms,
            s.hops_mean
        );
    }
    Ok(())
}

fn run_export(args: &ExportArgs) -> Result<(), String> {
    let policy = meshrl_ppo::Policy::load(&args.run).map_err(|e| e.to_string())?;
    let folder = if args.run.is_dir() {
        args.run.clone()
    } else {
        args.run.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let config_path = folder.join("config.json");
    let training_config = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| format!("{} is not valid JSON: {e}", config_path.display()))?,
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
    let checksum = policy.export(&args.output, &opts).map_err(|e| e.to_string())?;
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({size} bytes, obs_dim {}, {} actions, hidden {:?}, checksum fnv1a64:{checksum:016x})",
        args.output.display(),
        policy.obs_dim(),
        policy.max_neighbors(),
        policy.hidden()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Eval(args) => run_eval(args),
        Command::Train(args) => run_train(args),
        Command::Export(args) => run_export(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
