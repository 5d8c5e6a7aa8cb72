//! A training run's config file: which environments, how long, and the PPO settings.
//!
//! ```toml
//! env = "../env/small.toml"   # one environment, relative to this file ...
//! total_steps = 600000
//! hop_cost = 0.5              # overrides reward.hop_cost of the environment(s)
//! envs_per_twin = 4           # overrides env.envs_per_twin
//! reseed_every = 4            # new meshes every 4 updates (0: never)
//! eval = ["../eval/dynamic.toml"]  # scenarios `meshrl train` compares on (default: `env`)
//! [overrides.env]             # any environment field, for every environment
//! features = "routing"
//! [[mix]]                     # ... or a mixture: `ppo.num_envs` is the sum of the shares
//! env = "mix/sparse.toml"
//! num_envs = 64
//! [ppo]
//! num_envs = 64
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::trainer::EnvShare;
use crate::{PpoConfig, PpoError};

/// One member of a training mixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    /// Environment config (TOML), relative to the training config.
    pub env: String,
    /// Environments (packets in flight) of the trainer that run it.
    pub num_envs: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Environment config (TOML), relative to the training config; or use `mix`.
    #[serde(default)]
    pub env: Option<String>,
    /// A mixture of environment configs to train one policy on.
    #[serde(default)]
    pub mix: Vec<MixEntry>,
    /// Environment steps to train for.
    pub total_steps: u64,
    /// Overrides `reward.hop_cost` of the environments.
    #[serde(default)]
    pub hop_cost: Option<f32>,
    /// Overrides `env.envs_per_twin` of the environments.
    #[serde(default)]
    pub envs_per_twin: Option<usize>,
    /// Fields set in every environment config (`[overrides.env]`, `[overrides.reward]`, ...).
    #[serde(default)]
    pub overrides: Option<toml::Table>,
    /// Draw new meshes every this many updates; 0: only at checkpoints.
    #[serde(default)]
    pub reseed_every: u64,
    /// Write a checkpoint (and reseed the environments) every this many updates; 0: never.
    /// `meshrl train --resume` continues from the last one to the same result.
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Scenario configs the policy is compared with the baselines on after training,
    /// relative to this file (default: `env`).
    #[serde(default)]
    pub eval: Vec<String>,
    #[serde(default)]
    pub ppo: PpoConfig,
}

/// A training config with everything it names loaded.
#[derive(Clone, Debug)]
pub struct LoadedTrainConfig {
    pub cfg: TrainConfig,
    /// The environments, overrides applied; `cfg.ppo.num_envs` is their sum.
    pub mix: Vec<EnvShare>,
    /// Scenarios to evaluate on after training.
    pub eval: Vec<PathBuf>,
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

impl TrainConfig {
    /// Reads a training config and the environment configs it names, with overrides applied.
    pub fn load(path: impl AsRef<Path>) -> Result<LoadedTrainConfig, PpoError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PpoError::io(path, e))?;
        let mut cfg: TrainConfig =
            toml::from_str(&text).map_err(|e| PpoError::config(&name, e.to_string()))?;
        if cfg.total_steps == 0 {
            return Err(PpoError::config("total_steps", "must be at least 1"));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let entries: Vec<MixEntry> = match (&cfg.env, cfg.mix.is_empty()) {
            (Some(env), true) => vec![MixEntry {
                env: env.clone(),
                num_envs: cfg.ppo.num_envs,
            }],
            (None, false) => {
                let raw: toml::Table = toml::from_str(&text).unwrap_or_default();
                let sum: usize = cfg.mix.iter().map(|m| m.num_envs).sum();
                let explicit = raw
                    .get("ppo")
                    .and_then(|p| p.get("num_envs"))
                    .and_then(|v| v.as_integer());
                if explicit.is_some_and(|n| n != sum as i64) {
                    return Err(PpoError::config(
                        "ppo.num_envs",
                        format!("is {}, the [[mix]] shares add up to {sum}: drop it or make them agree", explicit.unwrap_or(0)),
                    ));
                }
                cfg.ppo.num_envs = sum;
                cfg.mix.clone()
            }
            (Some(_), false) => {
                return Err(PpoError::config("mix", "give either `env` or `[[mix]]`, not both"))
            }
            (None, true) => {
                return Err(PpoError::config("env", "missing: give `env` or `[[mix]]`"))
            }
        };
        cfg.ppo.validate()?;
        let mut mix = Vec::with_capacity(entries.len());
        for (j, m) in entries.iter().enumerate() {
            if m.num_envs == 0 {
                return Err(PpoError::config(&format!("mix[{j}].num_envs"), "must be at least 1"));
            }
            mix.push(EnvShare {
                env: cfg.load_env(&dir.join(&m.env))?,
                num_envs: m.num_envs,
            });
        }
        let eval = if cfg.eval.is_empty() {
            entries.iter().take(1).map(|m| dir.join(&m.env)).collect()
        } else {
            cfg.eval.iter().map(|e| dir.join(e)).collect()
        };
        Ok(LoadedTrainConfig { cfg, mix, eval })
    }

    /// Reads one environment config with this training config's overrides applied.
    pub fn load_env(&self, path: &Path) -> Result<meshrl_env::EnvConfig, PpoError> {
        let mut env = load_env_config(path, self.overrides.as_ref())?;
        if let Some(c) = self.hop_cost {
            env.reward.hop_cost = c;
        }
        if let Some(p) = self.envs_per_twin {
            env.env.envs_per_twin = p;
        }
        env.validate()?;
        Ok(env)
    }
}

/// Reads an environment config (TOML) with `overrides` (`[overrides.env]`, `[overrides.reward]`,
/// ...) merged over it, validated.
pub fn load_env_config(
    path: &Path,
    overrides: Option<&toml::Table>,
) -> Result<meshrl_env::EnvConfig, PpoError> {
    let text = std::fs::read_to_string(path).map_err(|e| PpoError::io(path, e))?;
    let origin = path.display().to_string();
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| PpoError::config(&origin, e.to_string()))?;
    if let Some(over) = overrides {
        merge(&mut table, over);
    }
    let env = meshrl_env::EnvConfig::from_toml_str(&table.to_string(), &origin)?;
    env.validate()?;
    Ok(env)
}
