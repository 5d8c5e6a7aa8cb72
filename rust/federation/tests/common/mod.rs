//! Helpers shared by the federation's integration tests.
#![allow(dead_code)]

use std::path::Path;

use meshrl_federation::{Federation, FederationConfig};

pub fn configs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/federate")
}

/// A small, fast federation on the 20-node mesh: `extra` TOML is appended (sections must not
/// repeat the ones below).
pub fn config(federation: &str, extra: &str) -> FederationConfig {
    let text = format!(
        r#"
env = "../env/mesh20.toml"
[overrides.env]
features = "routing"
[overrides.reward]
kind = "delivery"
[federation]
rounds = 4
clients_per_round = 8
local_updates = 1
round_deadline_s = 20.0
mesh_seed = 7
eval_packets = 200
eval_every = 0
seed = 3
{federation}
[ppo]
architecture = "slots"
hidden = [16]
num_envs = 8
num_steps = 16
epochs = 1
minibatch_size = 64
{extra}
"#
    );
    FederationConfig::from_toml_str(&text, &configs(), "test.toml").unwrap()
}

pub fn run(cfg: FederationConfig, rounds: u64) -> Federation {
    let mut fed = Federation::new(cfg).unwrap();
    fed.run(rounds, |_| true).unwrap();
    fed
}
