//! Federation checkpoints: the config, the coordinator's progress, the global model and the
//! server momentum, in the framed, checksummed, atomically written format of PPO
//! checkpoints. Workers keep no state between rounds, so a resumed federation computes
//! exactly what an uninterrupted one would.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::FederationConfig;
use crate::federation::{Federation, Progress};
use crate::FederationError;

const MAGIC: &str = "meshrl-federation-checkpoint 1";

#[derive(Serialize, Deserialize)]
struct Header {
    config: FederationConfig,
    progress: Progress,
    parameters: usize,
}

impl Federation {
    /// Writes a checkpoint to `path` (atomically).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<(), FederationError> {
        let header = Header {
            config: self.config().clone(),
            progress: self.progress.clone(),
            parameters: self.global_weights().len(),
        };
        let mut payload = meshrl_ppo::f32_bytes(self.global_weights());
        payload.extend(meshrl_ppo::f32_bytes(self.momentum()));
        Ok(meshrl_ppo::write_framed(path.as_ref(), MAGIC, &header, &payload)?)
    }

    /// Continues the federation saved in `path`.
    pub fn resume(path: impl AsRef<Path>) -> Result<Federation, FederationError> {
        let path = path.as_ref();
        let (header, payload): (Header, Vec<u8>) =
            meshrl_ppo::read_framed(path, MAGIC, "federation checkpoint")?;
        let mismatch = |reason: String| FederationError::Mismatch {
            path: path.to_path_buf(),
            reason,
        };
        let mut fed = Federation::new(header.config)?;
        let d = fed.global_weights().len();
        if header.parameters != d || payload.len() != 8 * d {
            return Err(mismatch(format!(
                "holds {} parameters ({} payload bytes); this federation's model has {d}",
                header.parameters,
                payload.len()
            )));
        }
        if header.progress.last_seen.len() != fed.num_workers() {
            return Err(mismatch(format!(
                "has {} workers; the config makes {}",
                header.progress.last_seen.len(),
                fed.num_workers()
            )));
        }
        let values = meshrl_ppo::f32s(&payload);
        fed.set_global_weights(&values[..d])?;
        fed.set_momentum(&values[d..]);
        fed.replay_mesh(header.progress.twin_ticks);
        fed.progress = header.progress;
        Ok(fed)
    }
}
