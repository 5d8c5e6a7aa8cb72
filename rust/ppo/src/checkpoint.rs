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
//! File layout (`file.rs`): the line `meshrl-ppo-checkpoint 2`, a JSON header line, a checksum
//! line over everything, then the weights (LE `f32`) and the optimizer record (burnpack bytes).

use std::path::Path;

use burn::optim::OptimizerRecord;
use burn::tensor::Bytes;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::rollout::{Episodes, Finished};
use crate::trainer::EnvShare;
use crate::{PpoConfig, PpoError, Trainer};

const MAGIC: &str = "meshrl-ppo-checkpoint 2";

#[derive(Serialize, Deserialize)]
struct Header {
    updates_done: u64,
    global_step: u64,
    total_steps: u64,
    checkpoint_every: u64,
    reseed_every: u64,
    ppo: PpoConfig,
    mix: Vec<EnvShare>,
    rng: Xoshiro256PlusPlus,
    param_ids: Vec<u64>,
    recent: Vec<(f32, bool, f32, u32)>,
    num_weights: usize,
    optimizer_bytes: usize,
}

/// What a checkpoint says about the run it came from.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    pub updates_done: u64,
    pub global_step: u64,
    pub total_steps: u64,
    pub checkpoint_every: u64,
    /// The run's PPO settings and environment mixture, to compare with a config given again.
    pub ppo: PpoConfig,
    pub mix: Vec<EnvShare>,
}

impl Trainer {
    /// Writes a checkpoint of this trainer to `path` (atomically).
    pub fn save_checkpoint(
        &self,
        path: &Path,
        total_steps: u64,
        checkpoint_every: u64,
    ) -> Result<(), PpoError> {
        let l = &self.learner;
        let mut payload = crate::file::f32_bytes(&l.get_weights());
        let num_weights = payload.len() / 4;
        let optimizer = l
            .optimizer()
            .to_record()
            .into_bytes()
            .map_err(|e| PpoError::input("optimizer state", format!("{e:?}")))?;
        payload.extend_from_slice(&optimizer);
        let header = Header {
            updates_done: self.updates_done(),
            global_step: l.global_step(),
            total_steps,
            checkpoint_every,
            reseed_every: self.reseed_every(),
            ppo: l.config().clone(),
            mix: self.mix().to_vec(),
            rng: l.rng_state().clone(),
            param_ids: crate::weights::param_ids(l.model()),
            recent: l
                .episodes()
                .iter()
                .map(|f| (f.ret, f.delivered, f.latency_ms, f.hops))
                .collect(),
            num_weights,
            optimizer_bytes: optimizer.len(),
        };
        crate::file::write_framed(path, MAGIC, &header, &payload)
    }

    /// Rebuilds the trainer saved in `path`, ready to continue its run with
    /// [`Trainer::train_run`] (same `total_steps` and `checkpoint_every`).
    pub fn resume(path: &Path) -> Result<(Trainer, CheckpointInfo), PpoError> {
        let (h, payload): (Header, _) = crate::file::read_framed(path, MAGIC, "PPO checkpoint")?;
        let bad = |why: String| PpoError::corrupt(path, why);
        if payload.len() != h.num_weights * 4 + h.optimizer_bytes {
            return Err(bad(format!(
                "holds {} bytes of state, the header says {}",
                payload.len(),
                h.num_weights * 4 + h.optimizer_bytes
            )));
        }
        let (w, opt) = payload.split_at(h.num_weights * 4);
        let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(opt.to_vec()))
            .map_err(|e| bad(format!("optimizer state: {e:?}")))?;
        let mut trainer = Trainer::with_mix(h.mix.clone(), h.ppo.clone(), h.reseed_every)?;
        let mut episodes = Episodes::default();
        for (ret, delivered, latency_ms, hops) in h.recent {
            episodes.push(Finished {
                ret,
                delivered,
                latency_ms,
                hops,
            });
        }
        trainer
            .learner
            .restore(&crate::file::f32s(w), &h.param_ids, record, h.rng, h.global_step, episodes)
            .map_err(|e| bad(e.to_string()))?;
        trainer.set_updates_done(h.updates_done);
        // The run reseeded its environments right after writing this checkpoint.
        trainer.reseed_env(h.updates_done)?;
        Ok((
            trainer,
            CheckpointInfo {
                updates_done: h.updates_done,
                global_step: h.global_step,
                total_steps: h.total_steps,
                checkpoint_every: h.checkpoint_every,
                ppo: h.ppo,
                mix: h.mix,
            },
        ))
    }
}
