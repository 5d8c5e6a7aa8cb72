//! `meshrl federate`: run a federation round by round, log it, checkpoint it, export the
//! global model, then compare it with the routers to beat (and, with `--central`, with a
//! policy trained centrally on the same number of samples).

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use meshrl_federation::{evaluate_policies, train_central, Federation, FederationConfig, RoundReport};

use crate::FederateArgs;

/// Files of a federation's folder that a new run would overwrite.
const RUN_FILES: [&str; 9] = [
    "metrics.csv",
    "rounds.jsonl",
    "policy.weights",
    "federation.ckpt",
    "config.json",
    "tb",
    LEDGER,
    "ledger.mlg.head",
    "ledger.mlg.weights",
];

/// The model ledger's file in the run folder (`[trust]` without `trust.ledger`).
const LEDGER: &str = "ledger.mlg";

/// Baselines the global model is compared with, strongest first where known.
const BASELINES: [&str; 5] = ["etx", "etx_trust", "latency", "shortest_path", "random"];

fn csv_header() -> String {
    RoundReport::default().metrics().iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",")
}

fn csv_row(r: &RoundReport) -> String {
    r.metrics().iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>().join(",")
}

pub(crate) fn run_federate(args: &FederateArgs) -> Result<()> {
    let mut cfg = FederationConfig::load(&args.config)?;
    if let Some(r) = args.rounds {
        cfg.federation.rounds = r;
    }
    if let Some(s) = args.seed {
        cfg.federation.seed = s;
    }
    if let Some(trust) = cfg.trust.as_mut().filter(|t| t.ledger.is_none()) {
        let Some(dir) = &args.out else {
            bail!("[trust] records every model in a ledger: give --out (it goes to OUT/{LEDGER}) or set trust.ledger");
        };
        trust.ledger = Some(dir.join(LEDGER));
    }
    cfg.validate()?;
    if !(1..=meshrl_eval::MAX_EPISODES).contains(&args.eval_episodes) {
        bail!("--eval-episodes must be in 1..={}, got {}", meshrl_eval::MAX_EPISODES, args.eval_episodes);
    }
    let checkpoint = args.out.as_ref().map(|d| d.join("federation.ckpt"));
    let mut fed = if args.resume {
        let path = checkpoint.as_ref().expect("--resume requires --out");
        let fed = Federation::resume(path)?;
        let mut have = fed.config().clone();
        have.federation.rounds = cfg.federation.rounds;
        if have != cfg {
            bail!(
                "{} was written by a federation with a different config; resume with the same \
                 config (only `rounds` may grow)",
                path.display()
            );
        }
        eprintln!("resuming from {} after round {}", path.display(), fed.round());
        fed
    } else {
        if let Some(dir) = &args.out {
            crate::train::prepare_out(dir, args.force, &RUN_FILES)?;
        }
        Federation::new(cfg.clone())?
    };
    // Rounds beyond the checkpoint's config (`rounds` may grow on resume).
    let rounds = cfg.federation.rounds;

    let (mut csv, mut jsonl) = (None, None);
    if let Some(dir) = &args.out {
        meshrl_ppo::atomic_write(&dir.join("config.json"), serde_json::to_string_pretty(&cfg)?.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join("config.json").display()))?;
        let done = fed.round();
        let keep = |name: &str| -> String {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_default()
                .lines()
                .skip(usize::from(name.ends_with(".csv")))
                .take(done as usize)
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let (kept_csv, kept_json) = if args.resume { (keep("metrics.csv"), keep("rounds.jsonl")) } else { Default::default() };
        let open = |name: &str| {
            let p = dir.join(name);
            std::fs::File::create(&p).with_context(|| format!("cannot write {}", p.display()))
        };
        let mut f = open("metrics.csv")?;
        write!(f, "{}\n{kept_csv}", csv_header())?;
        csv = Some(f);
        let mut f = open("rounds.jsonl")?;
        write!(f, "{kept_json}")?;
        jsonl = Some(f);
    }
    let mut board = args.out.as_ref().map(|d| {
        let dir = if args.resume { d.join("tb").join(format!("resumed-at-round-{}", fed.round())) } else { d.join("tb") };
        crate::tb::Board::new(&dir)
    });
    eprintln!(
        "federating {} workers on a {}-node mesh: {} per round, {} local updates, rule `{}`{}, attack `{}` ({:.0} %)",
        fed.num_workers(),
        fed.config().env.topology.num_nodes,
        cfg.federation.clients_per_round,
        cfg.federation.local_updates,
        cfg.federation.rule,
        if cfg.federation.nnm { " after NNM" } else { "" },
        cfg.attack.kind,
        100.0 * cfg.attack.fraction
    );
    if let (Some(t), Some((validators, byzantine))) = (&cfg.trust, fed.validators()) {
        eprintln!(
            "trust: {} validators (workers {:?}; tolerate f = {}), {} Byzantine `{}`; ledger {}",
            validators.len(),
            validators,
            (validators.len() - 1) / 3,
            byzantine.iter().filter(|b| **b).count(),
            t.byzantine_behavior,
            fed.ledger_path().map_or(String::new(), |p| p.display().to_string())
        );
    }
    let start = Instant::now();
    while fed.round() < rounds {
        let r = fed.run_round()?;
        let delivery = r.global_delivery.map_or("   -  ".to_string(), |d| format!("{d:.3}"));
        let pbft = match (r.consensus_view, r.consensus_ms) {
            (Some(v), Some(ms)) => format!(" | PBFT view {v} in {ms:.0} ms"),
            _ => String::new(),
        };
        eprintln!(
            "round {:>4}/{rounds} | {:>3}/{:<3} updates | excluded {} | set aside {:>2} | stragglers {:>2} | lost {:>2} | alive {:>3} | delivery {delivery} | model {}{pbft} | {:.1} s{}",
            r.round,
            r.participants.len(),
            r.sampled.len(),
            r.excluded.len(),
            r.set_aside.len(),
            r.stragglers.len(),
            r.lost.len(),
            r.alive,
            &r.model_hash[..12],
            r.wall_s,
            r.failure.as_ref().map_or(String::new(), |f| format!(" | not completed: {f}"))
        );
        if let Some(b) = board.as_mut() {
            b.scalars(r.round, &r.metrics()[1..]);
        }
        if let Some(f) = csv.as_mut() {
            writeln!(f, "{}", csv_row(&r)).context("writing metrics.csv")?;
        }
        if let Some(f) = jsonl.as_mut() {
            writeln!(f, "{}", serde_json::to_string(&r)?).context("writing rounds.jsonl")?;
        }
        let every = args.checkpoint_every;
        if let Some(path) = &checkpoint {
            if every > 0 && (r.round % every == 0 || r.round == rounds) {
                fed.save_checkpoint(path)?;
            }
        }
    }
    eprintln!(
        "{} rounds in {:.1} s; {} samples aggregated; global model {}",
        fed.round(),
        start.elapsed().as_secs_f64(),
        fed.total_samples(),
        fed.model_hash()
    );
    if let Some(ledger) = fed.ledger_path() {
        eprintln!(
            "every accepted model is in {} with its consensus proof (check it with `meshrl ledger verify {}`)",
            ledger.display(),
            ledger.display()
        );
    }
    if let Some(dir) = &args.out {
        let path = dir.join("policy.weights");
        fed.global_learner()?.save(&path)?;
        eprintln!("saved {} (export it with `meshrl export {}`)", path.display(), dir.display());
    }

    let mut policies = vec![("federated".to_string(), fed.global_learner()?.policy())];
    if args.central {
        eprintln!("training the central baseline on {} samples...", fed.total_samples());
        let central = train_central(&cfg, fed.total_samples())?;
        policies.push(("central".to_string(), central.policy()));
    }
    let baselines: Vec<&str> = BASELINES.iter().copied().filter(|b| meshrl_eval::BASELINES.contains(b)).collect();
    let c = evaluate_policies(&cfg.env, &policies, &baselines, args.eval_episodes, cfg.federation.seed.wrapping_add(1_000_003))?;
    println!("{}", meshrl_eval::table(&c.summaries, &c.paired));
    Ok(())
}
