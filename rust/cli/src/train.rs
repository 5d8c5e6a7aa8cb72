//! `meshrl train`: train, log, checkpoint, then compare with the routers to beat.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use meshrl_ppo::{Comparison, TrainConfig, Trainer, UpdateStats};

use crate::TrainArgs;

/// Files of a run folder that a new run would overwrite.
const RUN_FILES: [&str; 5] = ["metrics.csv", "policy.weights", "checkpoint.ckpt", "config.json", "tb"];

/// Refuses to write a new run over an old one (any of `run_files` in `dir`) unless `force`;
/// with it, removes the old run's files (and only those).
pub(crate) fn prepare_out(dir: &Path, force: bool, run_files: &[&str]) -> Result<()> {
    let existing: Vec<&str> = run_files.iter().copied().filter(|f| dir.join(f).exists()).collect();
    if !existing.is_empty() {
        if !force {
            bail!(
                "{} already holds a run ({}); use --resume to continue it, --force to overwrite \
                 it, or another --out",
                dir.display(),
                existing.join(", ")
            );
        }
        for f in existing {
            let p = dir.join(f);
            let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            removed.with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn csv_header() -> String {
    UpdateStats::default().metrics().iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",")
}

fn csv_row(s: &UpdateStats) -> String {
    s.metrics().iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>().join(",")
}

pub(crate) fn run_train(args: &TrainArgs) -> Result<()> {
    let loaded = TrainConfig::load(&args.config)?;
    let (mut cfg, mix) = (loaded.cfg, loaded.mix);
    if let Some(s) = args.steps {
        cfg.total_steps = s;
    }
    if let Some(s) = args.seed {
        cfg.ppo.seed = s;
    }
    if let Some(d) = &args.device {
        cfg.ppo.device = d.parse()?;
    }
    if let Some(n) = args.checkpoint_every {
        cfg.checkpoint_every = n;
    }
    if !(1..=meshrl_eval::MAX_EPISODES).contains(&args.eval_episodes) {
        bail!("--eval-episodes must be in 1..={}, got {}", meshrl_eval::MAX_EPISODES, args.eval_episodes);
    }
    let checkpoint = args.out.as_ref().map(|d| d.join("checkpoint.ckpt"));
    let mut trainer = if args.resume {
        let path = checkpoint.as_ref().expect("--resume requires --out");
        let (trainer, info) = Trainer::resume(path)?;
        let (mut have, mut want) = (info.ppo.clone(), cfg.ppo.clone());
        // The backend may change on resume; everything else must match.
        have.device = meshrl_ppo::DeviceChoice::Auto;
        want.device = meshrl_ppo::DeviceChoice::Auto;
        let want_mix = Trainer::with_mix(mix.clone(), cfg.ppo.clone(), cfg.reseed_every)
            .map(|t| t.mix().to_vec())?;
        let differs = [
            ("[ppo]", have != want),
            ("the environments", info.mix != want_mix),
            ("total_steps", info.total_steps != cfg.total_steps),
            ("checkpoint_every", info.checkpoint_every != cfg.checkpoint_every),
        ];
        if let Some((what, _)) = differs.iter().find(|(_, d)| *d) {
            bail!(
                "{} was written by a run with a different config ({what} differs); resume with \
                 the same config and flags",
                path.display()
            );
        }
        eprintln!(
            "resuming from {} at step {} (update {})",
            path.display(),
            info.global_step,
            info.updates_done
        );
        trainer
    } else {
        if let Some(dir) = &args.out {
            prepare_out(dir, args.force, &RUN_FILES)?;
        }
        Trainer::with_mix(mix.clone(), cfg.ppo.clone(), cfg.reseed_every)?
    };

    let mut csv = None;
    if let Some(dir) = &args.out {
        // The resolved configs, for `meshrl export`'s model card and for reproducing the run.
        let resolved = serde_json::json!({"train": cfg, "env": mix.first().map(|m| &m.env), "mix": mix});
        meshrl_ppo::atomic_write(&dir.join("config.json"), serde_json::to_string_pretty(&resolved)?.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join("config.json").display()))?;
        let path = dir.join("metrics.csv");
        // On resume keep the rows up to the checkpoint; later ones are recomputed.
        let kept: String = if args.resume {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter(|l| {
                    l.split(',').next().and_then(|s| s.parse::<f64>().ok())
                        <= Some(trainer.learner.global_step() as f64)
                })
                .map(|l| format!("{l}\n"))
                .collect()
        } else {
            String::new()
        };
        let mut f = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        write!(f, "{}\n{kept}", csv_header())?;
        csv = Some(f);
    }
    // TensorBoard events in OUT/tb, one writer per run: a resumed run writes to its own
    // subfolder (tensorboard-rs names files by the second, so a second writer in one folder
    // could overwrite the first one's file).
    let mut board = args.out.as_ref().map(|d| {
        let dir = if args.resume {
            d.join("tb").join(format!("resumed-at-{}", trainer.learner.global_step()))
        } else {
            d.join("tb")
        };
        crate::tb::Board::new(&dir)
    });
    eprintln!(
        "training on {} ({}): {} environments, {:?} policy, `{}` features",
        trainer.learner.device_name(),
        args.config.display(),
        cfg.ppo.num_envs,
        cfg.ppo.architecture,
        trainer.env_config().env.features.name()
    );
    let start = Instant::now();
    let total = cfg.total_steps;
    let mut io_error = None;
    trainer.train_run(total, cfg.checkpoint_every, checkpoint.as_deref(), |s| {
        eprint!(
            "\r[{:>5.1}%] step {:>9} | {:>7.0} SPS | return {:>6.2} | delivery {:.3} | hops {:>5.2} | kl {:.4} ",
            (100.0 * s.global_step as f64 / total as f64).min(100.0),
            s.global_step, s.sps, s.episodic_return, s.delivery_ratio, s.hops, s.approx_kl
        );
        if let Some(b) = board.as_mut() {
            b.scalars(s.global_step, &s.metrics()[1..]);
        }
        if let Some(f) = csv.as_mut() {
            if let Err(e) = writeln!(f, "{}", csv_row(s)) {
                io_error = Some(e);
                return false;
            }
        }
        true
    })?;
    eprintln!();
    if let Some(e) = io_error {
        bail!("writing metrics failed: {e}");
    }
    eprintln!("trained {} steps in {:.1} s", trainer.learner.global_step(), start.elapsed().as_secs_f64());
    if let Some(dir) = &args.out {
        let path = dir.join("policy.weights");
        trainer.learner.save(&path)?;
        eprintln!("saved {}", path.display());
    }

    // Compare on packets (and, for generated meshes, topologies) the training never saw, under
    // each scenario's own load.
    let policy = trainer.policy();
    let seed = cfg.ppo.seed.wrapping_add(1_000_003);
    for path in &loaded.eval {
        let mut scenario = cfg.load_env(path)?;
        scenario.env.features = trainer.env_config().env.features;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        let c = meshrl_ppo::compare(&policy, &name, &scenario, args.eval_episodes, seed)?;
        print_comparison(&c);
    }
    Ok(())
}

fn print_comparison(c: &Comparison) {
    println!(
        "{}: {} unseen packets under the scenario's own load (delivery ratio [95% CI], latency \
         of delivered packets)",
        c.scenario, c.summaries[0].episodes
    );
    for s in &c.summaries {
        println!(
            "  {:<26} {:.3} [{:.3}, {:.3}]  latency {:>6.1} ms  hops {:.2}",
            s.policy, s.delivery_ratio, s.delivery_ci.low, s.delivery_ci.high, s.latency_mean_ms, s.hops_mean
        );
    }
    println!("  best baseline: {}", c.best_baseline);
    // The pairs against the best baseline repeat those against ETX when ETX is the best.
    let repeated = |i: usize| i >= 2 && c.paired[i].b == c.paired[i - 2].b;
    for p in c.paired.iter().enumerate().filter(|(i, _)| !repeated(*i)).map(|(_, p)| p) {
        println!(
            "  {:<14} − {:<24} delivery {:+.3} [{:+.3}, {:+.3}]{}",
            p.a,
            p.b,
            p.delivery_diff,
            p.delivery_diff_ci.low,
            p.delivery_diff_ci.high,
            if p.delivery_significant { " significant" } else { "" }
        );
    }
}
