//! A training run's config file: which environment, how long, and the PPO settings.
//!
//! ```toml
//! env = "../env/small.toml"   # relative to this file
//! total_steps = 600000
//! hop_cost = 0.5              # overrides reward.hop_cost of the environment
//! envs_per_twin = 4           # overrides env.envs_per_twin (diverse meshes while training)
//! [ppo]
//! num_envs = 64
//! ```

use std::path::Path;

use meshrl_env::EnvConfig;
use serde::{Deserialize, Serialize};

use crate::{PpoConfig, PpoError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Environment config (TOML), relative to the training config.
    pub env: String,
    /// Environment steps to train for.
    pub total_steps: u64,
    /// Overrides `reward.hop_cost` of the environment.
    #[serde(default)]
    pub hop_cost: Option<f32>,
    /// Overrides `env.envs_per_twin` of the environment.
    #[serde(default)]
    pub envs_per_twin: Option<usize>,
    /// Write a checkpoint (and reseed the environments) every this many updates; 0: never.
    /// `meshrl train --resume` continues from the last one to the same result.
    #[serde(default)]
    pub checkpoint_every: u64,
    #[serde(default)]
    pub ppo: PpoConfig,
}

impl TrainConfig {
    /// Reads a training config and the environment config it names, with overrides applied.
    pub fn load(path: impl AsRef<Path>) -> Result<(TrainConfig, EnvConfig), PpoError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PpoError::InvalidConfig {
            field: name.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        let cfg: TrainConfig = toml::from_str(&text).map_err(|e| PpoError::InvalidConfig {
            field: name.clone(),
            reason: e.to_string(),
        })?;
        cfg.ppo.validate()?;
        if cfg.total_steps == 0 {
            return Err(PpoError::InvalidConfig {
                field: "total_steps".into(),
                reason: "must be at least 1".into(),
            });
        }
        let env_path = path.parent().unwrap_or(Path::new(".")).join(&cfg.env);
        let mut env = EnvConfig::from_toml_file(&env_path)?;
        if let Some(c) = cfg.hop_cost {
            env.reward.hop_cost = c;
        }
        if let Some(p) = cfg.envs_per_twin {
            env.env.envs_per_twin = p;
        }
        env.validate()?;
        Ok((cfg, env))
    }
}
