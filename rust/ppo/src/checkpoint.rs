//! Checkpoints: everything a run needs to continue exactly where it stopped, in one file
//! written atomically.
//!
//! A checkpoint holds the weights, Adam's state (moments and step counts, burn's optimizer
//! record), the trainer's RNG, the update counter, the recent episode window and both configs.
//! It holds no environment state: at every checkpoint boundary (every `checkpoint_every`
//! updates) the run reseeds its environments from `(seed, update)`, in an uninterrupted run and
//! after a resume alike, so a resumed run is bit-for-bit the run that was not interrupted. The
//! price: episodes in flight at a boundary end there (their last transitions were already
//! bootstrapped from the critic, as at every rollout's end).
//!
//! File layout: the line `meshrl-ppo-checkpoint 1`, a JSON header line, then the weights (LE
//! `f32`) and the optimizer record (burnpack bytes); the header carries an FNV-1a checksum of
//! both.

use std::path::Path;

use burn::optim::OptimizerRecord;
use burn::tensor::Bytes;
use meshrl_env::EnvConfig;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::trainer::Finished;
use crate::weights::{atomic_write, fnv1a64};
use crate::{PpoConfig, PpoError, Trainer};

const MAGIC: &str = "meshrl-ppo-checkpoint 1";

#[derive(Serialize, Deserialize)]
struct Header {
    updates_done: u64,
    global_step: u64,
    total_steps: u64,
    checkpoint_every: u64,
    ppo: PpoConfig,
    env: EnvConfig,
    rng: Xoshiro256PlusPlus,
    param_ids: Vec<u64>,
    recent: Vec<(f32, bool, f32, u32)>,
    num_weights: usize,
    optimizer_bytes: usize,
    fnv1a64: String,
}

/// What a checkpoint says about the run it came from.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    pub updates_done: u64,
    pub global_step: u64,
    pub total_steps: u64,
    pub checkpoint_every: u64,
}

impl Trainer {
    /// Writes a checkpoint of this trainer to `path` (atomically).
    pub fn save_checkpoint(
        &self,
        path: &Path,
        total_steps: u64,
        checkpoint_every: u64,
    ) -> Result<(), PpoError> {
        let bad = |why: String| PpoError::Weights(format!("{}: {why}", path.display()));
        let env = self
            .env_config()
            .ok_or_else(|| bad("only trainers on the Rust environment checkpoint".into()))?;
        let weights: Vec<u8> = self.get_weights().iter().flat_map(|v| v.to_le_bytes()).collect();
        let optimizer = self
            .optimizer()
            .to_record()
            .into_bytes()
            .map_err(|e| bad(format!("optimizer state: {e:?}")))?;
        let mut payload = weights;
        let num_weights = payload.len() / 4;
        payload.extend_from_slice(&optimizer);
        let header = Header {
            updates_done: self.updates_done(),
            global_step: self.global_step(),
            total_steps,
            checkpoint_every,
            ppo: self.cfg.clone(),
            env: env.clone(),
            rng: self.rng_state().clone(),
            param_ids: crate::weights::param_ids(self.model()),
            recent: self
                .recent_episodes()
                .map(|f| (f.ret, f.delivered, f.latency_ms, f.hops))
                .collect(),
            num_weights,
            optimizer_bytes: optimizer.len(),
            fnv1a64: format!("{:016x}", fnv1a64(&payload)),
        };
        let json = serde_json::to_string(&header).map_err(|e| bad(e.to_string()))?;
        let mut bytes = format!("{MAGIC}\n{json}\n").into_bytes();
        bytes.extend_from_slice(&payload);
        atomic_write(path, &bytes).map_err(|e| bad(e.to_string()))
    }

    /// Rebuilds the trainer saved in `path`, ready to continue its run with
    /// [`Trainer::train_run`] (same `total_steps` and `checkpoint_every`).
    pub fn resume(path: &Path) -> Result<(Trainer, CheckpointInfo), PpoError> {
        let bad = |why: String| PpoError::Weights(format!("{}: {why}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut parts = bytes.splitn(3, |&b| b == b'\n');
        if parts.next() != Some(MAGIC.as_bytes()) {
            return Err(bad("not a meshrl PPO checkpoint (bad magic line)".into()));
        }
        let json = parts.next().ok_or_else(|| bad("truncated: no header".into()))?;
        let payload = parts.next().ok_or_else(|| bad("truncated: no state".into()))?;
        let h: Header =
            serde_json::from_slice(json).map_err(|e| bad(format!("bad header: {e}")))?;
        if payload.len() != h.num_weights * 4 + h.optimizer_bytes {
            return Err(bad(format!(
                "holds {} bytes of state, the header says {}",
                payload.len(),
                h.num_weights * 4 + h.optimizer_bytes
            )));
        }
        if format!("{:016x}", fnv1a64(payload)) != h.fnv1a64 {
            return Err(bad("checksum mismatch: the checkpoint is corrupt".into()));
        }
        let (w, opt) = payload.split_at(h.num_weights * 4);
        let weights: Vec<f32> = w
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(opt.to_vec()))
            .map_err(|e| bad(format!("optimizer state: {e:?}")))?;
        let mut trainer = Trainer::new(h.env.clone(), h.ppo.clone())?;
        trainer.restore(
            &weights,
            &h.param_ids,
            record,
            h.rng,
            h.updates_done,
            h.global_step,
            h.recent
                .into_iter()
                .map(|(ret, delivered, latency_ms, hops)| Finished {
                    ret,
                    delivered,
                    latency_ms,
                    hops,
                })
                .collect(),
        )?;
        // The run reseeded its environments right after writing this checkpoint.
        trainer.reseed_env(h.updates_done)?;
        Ok((
            trainer,
            CheckpointInfo {
                updates_done: h.updates_done,
                global_step: h.global_step,
                total_steps: h.total_steps,
                checkpoint_every: h.checkpoint_every,
            },
        ))
    }
}
