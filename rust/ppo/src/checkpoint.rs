//! Checkpoints: everything a run needs to continue exactly where it stopped, in one file
//! written atomically.
//!
//! A checkpoint holds the weights, Adam's state (step counts and moments), the trainer's RNG,
//! the update counter, the recent episode window and both configs.
//! It holds no environment state: at every checkpoint boundary (every `checkpoint_every`
//! updates) the run reseeds its environments from `(seed, update)`, in an uninterrupted run and
//! after a resume alike, so a resumed run is bit-for-bit the run that was not interrupted. The
//! price: episodes in flight at a boundary end there (their last transitions were already
//! bootstrapped from the critic, as at every rollout's end).
//!
//! File layout (`file.rs`): the line `meshrl-ppo-checkpoint 3`, a JSON header line (with Adam's
//! step count per parameter tensor), a checksum line over everything, then the weights and Adam's
//! moments (`m` then `v` of each parameter tensor that has taken a step, in the weights' order),
//! all little-endian `f32`. Version 2 held burn's optimizer record instead; a version-2 file is
//! a clear error ("another version of the format").

use std::path::Path;

use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::rollout::{Episodes, Finished};
use crate::trainer::EnvShare;
use crate::{PpoConfig, PpoError, Trainer};

const MAGIC: &str = "meshrl-ppo-checkpoint 3";

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
    recent: Vec<(f32, bool, f32, u32)>,
    num_weights: usize,
    /// Adam's steps per parameter tensor (weights' order); its moments follow the weights.
    adam_steps: Vec<u32>,
    num_moments: usize,
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
        let (adam_steps, moments) = l.adam().state();
        payload.extend_from_slice(&crate::file::f32_bytes(&moments));
        let header = Header {
            updates_done: self.updates_done(),
            global_step: l.global_step(),
            total_steps,
            checkpoint_every,
            reseed_every: self.reseed_every(),
            ppo: l.config().clone(),
            mix: self.mix().to_vec(),
            rng: l.rng_state().clone(),
            recent: l
                .episodes()
                .iter()
                .map(|f| (f.ret, f.delivered, f.latency_ms, f.hops))
                .collect(),
            num_weights,
            adam_steps,
            num_moments: moments.len(),
        };
        crate::file::write_framed(path, MAGIC, &header, &payload)
    }

    /// Rebuilds the trainer saved in `path`, ready to continue its run with
    /// [`Trainer::train_run`] (same `total_steps` and `checkpoint_every`).
    pub fn resume(path: &Path) -> Result<(Trainer, CheckpointInfo), PpoError> {
        let (h, payload): (Header, _) = crate::file::read_framed(path, MAGIC, "PPO checkpoint")?;
        let bad = |why: String| PpoError::corrupt(path, why);
        let expected = h.num_weights.checked_add(h.num_moments).and_then(|n| n.checked_mul(4));
        if expected != Some(payload.len()) {
            return Err(bad(format!(
                "holds {} bytes of state, the header says {} weights and {} moments",
                payload.len(),
                h.num_weights,
                h.num_moments
            )));
        }
        let (w, moments) = payload.split_at(h.num_weights * 4);
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
        let sizes = crate::weights::param_sizes(trainer.learner.model());
        let adam = crate::adam::Adam::from_state(&h.adam_steps, &crate::file::f32s(moments), &sizes)
            .map_err(|e| bad(format!("Adam's state: {e}")))?;
        trainer
            .learner
            .restore(&crate::file::f32s(w), adam, h.rng, h.global_step, episodes)
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
