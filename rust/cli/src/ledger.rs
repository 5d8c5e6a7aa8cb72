//! `meshrl ledger show|verify PATH`: the model ledger of `meshrl-trust`, read without changing
//! it.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use meshrl_trust::{inspect, BlockBody, Hash32, LedgerReport};

#[derive(clap::Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// List the blocks of a ledger (checked first: a tampered ledger is an error).
    Show {
        /// The ledger file.
        path: PathBuf,
        /// Print the blocks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every block: checksums, hash chain, signatures, consensus proofs, the head
    /// anchor and the stored weights. Exit code 0 when valid, 2 on any tampering.
    Verify {
        /// The ledger file.
        path: PathBuf,
        /// Also require this validator set ID (hex, from a trusted source).
        #[arg(long)]
        validator_set: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run_ledger(args: &LedgerArgs) -> anyhow::Result<()> {
    match &args.command {
        LedgerCommand::Show { path, json } => {
            let (blocks, report) =
                inspect(path).with_context(|| format!("reading ledger {}", path.display()))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&blocks)?);
                return Ok(());
            }
            for b in &blocks {
                let what = match &b.body {
                    BlockBody::Genesis(g) => format!(
                        "{} validators (f = {}), {} nodes in {}",
                        g.validators.len(),
                        (g.validators.len().max(1) - 1) / 3,
                        g.bundle.len(),
                        g.bundle.trust_domain
                    ),
                    BlockBody::ModelUpdate(u) => format!(
                        "round {} model {} rule {} participants {} set aside {}{}",
                        u.round,
                        u.model_hash.short(),
                        u.rule,
                        u.participants.len(),
                        u.set_aside.len(),
                        u.epsilon.map_or(String::new(), |e| format!(" epsilon {e}"))
                    ),
                    BlockBody::ConsensusProof(p) => format!(
                        "round {} model {} view {} commits {}",
                        p.value.round,
                        p.value.model_hash.short(),
                        p.view,
                        p.commits.len()
                    ),
                };
                println!(
                    "#{:<4} {:<15} {}  {}  by {}",
                    b.index,
                    b.body.kind(),
                    b.hash.short(),
                    what,
                    b.author
                );
            }
            print_warnings(&report);
            Ok(())
        }
        LedgerCommand::Verify {
            path,
            validator_set,
            json,
        } => {
            let (_, report) =
                inspect(path).with_context(|| format!("verifying ledger {}", path.display()))?;
            if let Some(want) = validator_set {
                let want = Hash32::from_hex(want).context("--validator-set")?;
                if want != report.validator_set {
                    bail!(
                        "{}: validator set {} is not the expected {}",
                        path.display(),
                        report.validator_set,
                        want
                    );
                }
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            println!(
                "valid: {} blocks ({} model updates, {} proven), head {}, validator set {} (f = {})",
                report.blocks,
                report.model_updates,
                report.consensus_proofs,
                report.head.short(),
                report.validator_set.short(),
                report.f
            );
            if let Some(p) = &report.latest_proven {
                println!("latest proven model: round {} {}", p.round, p.model_hash);
            }
            print_warnings(&report);
            Ok(())
        }
    }
}

fn print_warnings(r: &LedgerReport) {
    if !r.anchored {
        eprintln!("warning: no head file; a cut at a block boundary cannot be detected");
    }
    if let Some(t) = &r.torn_tail {
        eprintln!("warning: torn tail after the last block ({t}); an interrupted append, cut on the next open");
    }
    for h in &r.missing_weights {
        eprintln!("warning: weights {h} are not stored beside the ledger");
    }
}

#[cfg(test)]
mod tests {
    use meshrl_trust::{Genesis, Identity, Ledger, ModelUpdate, SpiffeId, TrustBundle};

    #[test]
    fn verify_exits_0_on_a_valid_ledger_and_2_on_a_tampered_one() {
        let dir = std::env::temp_dir().join(format!("meshrl-cli-ledger-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.bin");
        let me = Identity::from_seed(SpiffeId::node("cli.test", "c").unwrap(), 0);
        let genesis = Genesis {
            bundle: TrustBundle::from_keys([me.node_key()]).unwrap(),
            validators: vec![me.id().clone()],
        };
        let mut l = Ledger::create(&path, &me, genesis).unwrap();
        let update = ModelUpdate {
            round: 1,
            model_hash: l.put_weights(&[1.0, 2.0]).unwrap(),
            rule: "fedavg".into(),
            participants: vec![me.id().clone()],
            set_aside: vec![],
            epsilon: None,
            updates: vec![],
        };
        l.append_model_update(&me, update).unwrap();
        drop(l);
        let p = path.to_str().unwrap();
        assert_eq!(crate::run(["meshrl", "ledger", "verify", p]), 0);
        assert_eq!(crate::run(["meshrl", "ledger", "show", p]), 0);
        assert_eq!(crate::run(["meshrl", "ledger", "show", "--json", p]), 0);
        let zeros = "0".repeat(64);
        let pinned = [
            "meshrl",
            "ledger",
            "verify",
            "--validator-set",
            zeros.as_str(),
            p,
        ];
        assert_eq!(crate::run(pinned), 2);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(crate::run(["meshrl", "ledger", "verify", p]), 2);
        assert_eq!(
            crate::run(["meshrl", "ledger", "verify", "/nonexistent/ledger"]),
            2
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
