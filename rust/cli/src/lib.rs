//! `meshrl`, the command line, as a library: the `meshrl` binary and the Python extension
//! (`meshrl` after `pip install`) both call [`run`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod eval;
mod federate;
mod ledger;
mod plot;
mod tb;
mod train;

#[derive(Parser)]
#[command(
    name = "meshrl",
    version,
    about = "Train and evaluate packet-routing agents for wireless mesh networks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Route the same packets with each policy on each scenario and compare them.
    Eval(EvalArgs),
    /// Train a PPO routing policy and compare it with ETX, the latency router and the best
    /// baseline on its scenarios.
    Train(TrainArgs),
    /// Train one routing policy across the mesh's nodes: a coordinator, a worker per node,
    /// robust aggregation, faults and attacks, in a seeded virtual-time simulation.
    Federate(FederateArgs),
    /// Export a trained policy for mesh nodes (safetensors + model card), for
    /// `meshrl-runtime` or `meshrl.runtime`.
    Export(ExportArgs),
    /// Show or verify a model ledger (hash-chained, signed `MODEL_UPDATE` and
    /// `CONSENSUS_PROOF` blocks).
    Ledger(ledger::LedgerArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A run folder from `meshrl train --out` (or its `policy.weights`).
    pub run: PathBuf,
    /// Output file.
    #[arg(short = 'o', long = "output", default_value = "policy.safetensors")]
    pub output: PathBuf,
    /// Also export the critic (nodes do not need it).
    #[arg(long)]
    pub critic: bool,
}

#[derive(clap::Args)]
pub struct FederateArgs {
    /// Federation config (`configs/federate/*.toml`): the mesh, rounds, rule, faults, attack.
    pub config: PathBuf,
    /// Folder for `metrics.csv` (one row per round), `rounds.jsonl` (each round's report: who
    /// took part, who was excluded or set aside), TensorBoard events (`tb/`), `config.json`,
    /// the checkpoint `federation.ckpt` and the global model `policy.weights`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override `federation.rounds` (on `--resume`, rounds may grow).
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Override `federation.seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Checkpoint every N rounds (0: never).
    #[arg(long, default_value_t = 1)]
    pub checkpoint_every: u64,
    /// Continue the federation in OUT from its checkpoint; the global model ends the same as
    /// an uninterrupted run's.
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Overwrite the federation in OUT if there is one.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Also train a policy centrally on the samples the federation aggregated, and compare.
    #[arg(long)]
    pub central: bool,
    /// Packets for the final comparison with the baselines.
    #[arg(long, default_value_t = 2000)]
    pub eval_episodes: usize,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training config (`configs/train/*.toml`): the environment, total steps, PPO settings.
    pub config: PathBuf,
    /// Folder for `metrics.csv` (one row per update, CleanRL's metric names), TensorBoard events
    /// (`tb/`), `config.json`, checkpoints and the trained `policy.weights`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override `total_steps`.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Override the PPO seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Packets per scenario for the final comparison with the baselines.
    #[arg(long, default_value_t = 2048)]
    pub eval_episodes: usize,
    /// Overwrite the run in OUT if there is one (its metrics, events, weights and checkpoint).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Backend: auto (a GPU through wgpu if this build has it and the machine has one, else
    /// the CPU), cpu (flex), wgpu (needs a build with `--features wgpu`) or cuda (an NVIDIA GPU; needs `--features cuda`).
    #[arg(long)]
    pub device: Option<String>,
    /// Checkpoint to OUT/checkpoint.ckpt every N updates (overrides `checkpoint_every`).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Continue the run in OUT from its last checkpoint (same config); the result is the one
    /// an uninterrupted run gives.
    #[arg(long, requires = "out")]
    pub resume: bool,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A policy: `baseline:NAME` (random, shortest_path, etx, etx_trust, latency, greedy_rssi,
    /// greedy_hops, backpressure, q_routing, oracle), `baseline:all`, or a trained policy (a
    /// run folder from `meshrl train --out`, or its `policy.weights`). Repeat to compare; the
    /// first is the reference of the paired comparisons.
    #[arg(long = "policy", required_unless_present = "incidents")]
    pub policies: Vec<String>,
    /// Scenario TOML (an environment config). Repeat for several.
    #[arg(long = "scenario", required_unless_present = "incidents")]
    pub scenarios: Vec<PathBuf>,
    /// An incident file (`configs/eval/incidents/*.toml`): run it with and without the MAPE-K
    /// loop (federated, local-only and threshold detectors) on the same packets, against the
    /// mesh without the incident. Repeat for several; the detectors are trained once, on the
    /// first file's scenario. Takes the place of --policy and --scenario.
    #[arg(long = "incident", conflicts_with_all = ["policies", "scenarios"])]
    pub incidents: Vec<PathBuf>,
    /// With --incident: write every action the loops took (JSON lines, with reasons) here.
    #[arg(long, requires = "incidents")]
    pub actions: Option<PathBuf>,
    /// With --incident: record the federated detector's training rounds in a model ledger
    /// here (signed updates, PBFT among the nodes, the model served from the ledger; check it
    /// with `meshrl ledger verify`). Overrides `[detector] ledger`.
    #[arg(long, requires = "incidents")]
    pub ledger: Option<PathBuf>,
    /// Packets per policy and scenario.
    #[arg(long, default_value_t = 2000)]
    pub episodes: usize,
    /// Seed of the packets and the mesh evolution (the same for every policy).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Environments stepped in parallel (packets in flight; at most --episodes). Default: the
    /// scenario's own load (whole twins of its `envs_per_twin` packets, about 256 environments).
    #[arg(long)]
    pub num_envs: Option<usize>,
    /// Write one CSV row per (scenario, policy) here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write a PNG plot (delivery and latency per policy and scenario) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also evaluate trained policies greedily (argmax), as nodes forward.
    #[arg(long)]
    pub greedy: bool,
}

/// Keeps memory the command frees for its next allocations (glibc only; elsewhere a no-op).
///
/// burn's `flex` allocates a fresh tensor per op, so a PPO update frees and reallocates the same
/// multi-megabyte activations every minibatch. By default glibc hands the top of its heap back
/// to the OS once twice the (adaptive) mmap threshold is free there, and the next minibatch
/// faults every page back in: ~13 % of the update on `dynamic-routing.toml` (4,096 × 8 slot
/// rows per minibatch), whose `meshrl train` took 34 s instead of 24–27 s (BENCHMARKS.md). Fixed
/// thresholds (allocations below 32 MiB from the heap, trimmed only above 1 GiB free) keep those
/// pages; the peak resident memory is the same (155 / 157 MB for that run). A library cannot
/// decide this for its host process, so only the command does it: Python users of
/// `meshrl.ppo.Trainer` can get the same with `GLIBC_TUNABLES` (README.md, "Train a router").
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters, valid at any time; a value it refuses
    // leaves glibc's default, which is correct, only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Parses `args` (the program name first) and runs the command; returns the process exit
/// code: 0 on success, 2 on an error (printed to stderr), clap's codes for bad usage.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    keep_freed_memory();
    let result = match &cli.command {
        Command::Eval(args) => eval::run_eval(args),
        Command::Train(args) => train::run_train(args),
        Command::Federate(args) => federate::run_federate(args),
        Command::Export(args) => eval::run_export(args),
        Command::Ledger(args) => ledger::run_ledger(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}
