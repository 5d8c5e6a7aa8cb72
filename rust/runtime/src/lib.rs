//! Runs a routing policy exported by `meshrl export` on a mesh node: `#![no_std]` + `alloc`,
//! no ML framework, no allocation per call after loading.
//!
//! ```no_run
//! # fn main() -> Result<(), meshrl_runtime::Error> {
//! use meshrl_runtime::{NodeContext, Policy, SlotMeasurement};
//! let bytes: &[u8] = &[]; // the contents of policy.safetensors
//! let policy = Policy::from_bytes(bytes)?;
//! // Made once: the only allocations besides loading.
//! let mut scratch = policy.scratch();
//! let mut obs = vec![0.0f32; policy.obs_dim()];
//! let mut mask = vec![false; policy.num_actions()];
//! // Per packet: the neighbour table in raw units (`None`: empty slot), then the next hop.
//! let mut table = vec![None; policy.num_actions()];
//! table[0] = Some(SlotMeasurement { rssi_dbm: -60.0, latency_ms: 4.0, ..Default::default() });
//! let here = NodeContext { queue: 0.2, hops_taken: 1, ttl: 32 };
//! policy.obs_spec().build(&table, &here, &mut obs, &mut mask, &mut scratch)?;
//! let slot = policy.act(&obs, &mask, &mut scratch)?; // index into the neighbour table
//! # let _ = slot; Ok(()) }
//! ```
//!
//! # File format (`meshrl-policy` version 2)
//!
//! A safetensors file. Tensors, all `F32`: `actor.{i}.weight` `[d_out, d_in]` (PyTorch's
//! layout) and `actor.{i}.bias` `[d_out]` for layers `i = 0..=len(hidden)`; optionally the
//! critic (`critic.{i}.*`, and `critic_head.0.*` for `slots`), which nodes do not need.
//! `__metadata__` holds strings; those this crate reads:
//!
//! | key | value |
//! |---|---|
//! | `format` | `meshrl-policy` |
//! | `format_version` | `2` (`1` still loads, see below) |
//! | `architecture` | `mlp` or `slots` |
//! | `feature_set` | `spec` or `routing` (see [`FeatureSet`]) |
//! | `per_slot`, `context` | features per neighbour slot and after the slots: the feature set's (6 and 1, or 11 and 3) |
//! | `obs_dim`, `num_actions` | integers; `obs_dim = num_actions * per_slot + context` |
//! | `hidden` | widths, comma separated (`64,64`) |
//! | `activation` | `tanh` or `relu` (after every layer but the last) |
//! | `obs.rssi_center_dbm`, `obs.rssi_scale_db`, `obs.latency_half_ms`, `obs.hops_scale`, `obs.bandwidth_scale_mbps`, `obs.etx_half`, `obs.etx_excess_scale`, `obs.path_latency_half_ms` | normalization constants, see [`ObsSpec`] |
//! | `obs.slot_features`, `obs.context_features` | the feature names, comma separated, in order |
//! | `checksum` | `fnv1a64:` + 16 hex digits of [`metadata_checksum`]: FNV-1a 64 over the actor tensors' bytes (layer by layer, weight then bias), continued over every other metadata entry sorted by key as `key` NUL `value` LF |
//!
//! The actor by architecture:
//!
//! - `mlp`: one MLP over the whole observation, widths `obs_dim, hidden.., num_actions`.
//! - `slots`: one MLP applied to each neighbour slot `s`, input = slot `s`'s `per_slot`
//!   features followed by the `context` features (the observation's last `context` values),
//!   widths `per_slot + context, hidden.., 1`; its output is slot `s`'s logit.
//!
//! Version 1 files (no `architecture`, `feature_set`, `per_slot`, `context` or the routing
//! constants) are `spec` features with an `mlp` actor, and their checksum covers the actor
//! tensors only. Other keys (`model_card`, `training_config`, `meshrl_version`, layouts in
//! words) are for people and tools; they are not needed to act, but version 2's checksum
//! covers them: an edited activation, constant or card is a corrupt file.
//!
//! The layouts, constants, names and checksum come from the `meshrl-format` crate, the
//! contract shared with the environment and the exporter; this crate re-exports what a node
//! needs ([`FeatureSet`], [`SlotMeasurement`], [`NodeContext`], ...).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod load;
mod nn;
mod obs;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub use error::Error;
pub use load::{MAX_HIDDEN_LAYERS, MAX_METADATA_ENTRIES, MAX_WIDTH, OLDEST_FORMAT_VERSION};
pub use meshrl_format::{exp, tanh};
pub use meshrl_format as format;
pub use meshrl_format::{
    fnv1a64, metadata_checksum, FeatureSet, NodeContext, SlotMeasurement, EXPORT_FORMAT,
    EXPORT_VERSION, FNV_OFFSET,
};
pub use nn::Scratch;
pub use obs::ObsSpec;

use nn::Layer;

/// Nonlinearity after each hidden layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
}

/// How the actor reads an observation (metadata `architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// One MLP over the whole observation, one output per slot.
    Mlp,
    /// One MLP shared by all slots, scoring each from its features and the context.
    Slots,
}

impl Architecture {
    /// Name in the file's metadata.
    pub const fn name(self) -> &'static str {
        match self {
            Architecture::Mlp => "mlp",
            Architecture::Slots => "slots",
        }
    }
}

/// A loaded, validated policy (the actor network and its observation layout).
#[derive(Clone, Debug)]
pub struct Policy {
    layers: Vec<Layer>,
    activation: Activation,
    architecture: Architecture,
    obs: ObsSpec,
    hidden: Vec<usize>,
    format_version: u32,
    checksum: u64,
}

impl Policy {
    /// Observation length: `num_actions * per_slot + context`.
    pub fn obs_dim(&self) -> usize {
        self.obs.obs_dim()
    }

    /// Number of actions (neighbour slots).
    pub fn num_actions(&self) -> usize {
        self.obs.num_slots()
    }

    /// Hidden layer widths.
    pub fn hidden(&self) -> &[usize] {
        &self.hidden
    }

    /// The hidden layers' nonlinearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// How the actor reads an observation.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The observation's feature set.
    pub fn feature_set(&self) -> FeatureSet {
        self.obs.feature_set()
    }

    /// The file's `format_version` (1 or 2).
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// The observation layout, and the builder of observations from raw measurements.
    pub fn obs_spec(&self) -> &ObsSpec {
        &self.obs
    }

    /// The file's checksum (its metadata `checksum`, verified).
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// Working memory for [`Policy::logits`], [`Policy::act`], [`Policy::probs`] and
    /// [`ObsSpec::build`]: make it once, reuse it for every call.
    pub fn scratch(&self) -> Scratch {
        Scratch::for_policy(self)
    }

    fn check_obs(&self, obs: &[f32]) -> Result<(), Error> {
        if obs.len() != self.obs_dim() {
            return Err(Error::Input {
                what: "obs",
                reason: format!("length {}, the policy expects {}", obs.len(), self.obs_dim()),
            });
        }
        if let Some(i) = obs.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input {
                what: "obs",
                reason: format!("entry {i} is {}", obs[i]),
            });
        }
        Ok(())
    }

    fn check_mask(&self, mask: &[bool]) -> Result<(), Error> {
        if mask.len() != self.num_actions() {
            return Err(Error::Input {
                what: "mask",
                reason: format!(
                    "length {}, the policy has {} neighbour slots",
                    mask.len(),
                    self.num_actions()
                ),
            });
        }
        if !mask.iter().any(|&m| m) {
            return Err(Error::Input {
                what: "mask",
                reason: String::from("no valid neighbour (every slot is masked)"),
            });
        }
        Ok(())
    }

    /// The actor's logits (unmasked), `num_actions` values borrowed from `scratch`.
    pub fn logits<'s>(&self, obs: &[f32], scratch: &'s mut Scratch) -> Result<&'s [f32], Error> {
        self.check_obs(obs)?;
        scratch.check(self)?;
        Ok(match self.architecture {
            Architecture::Mlp => nn::mlp_logits(&self.layers, self.activation, obs, scratch),
            Architecture::Slots => nn::slot_logits(
                &self.layers,
                self.activation,
                self.obs.num_slots(),
                self.obs.per_slot(),
                obs,
                scratch,
            ),
        })
    }

    /// The next hop: the valid slot with the largest logit (the lowest index on ties).
    pub fn act(&self, obs: &[f32], mask: &[bool], scratch: &mut Scratch) -> Result<usize, Error> {
        self.check_mask(mask)?;
        let logits = self.logits(obs, scratch)?;
        let mut best = usize::MAX;
        for (s, (&l, &m)) in logits.iter().zip(mask).enumerate() {
            if m && (best == usize::MAX || l > logits[best]) {
                best = s;
            }
        }
        Ok(best)
    }

    /// The policy's probabilities over slots, 0 for masked ones, written to `out`.
    pub fn probs(
        &self,
        obs: &[f32],
        mask: &[bool],
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), Error> {
        self.check_mask(mask)?;
        if out.len() != self.num_actions() {
            return Err(Error::Input {
                what: "out",
                reason: format!("length {}, expected {}", out.len(), self.num_actions()),
            });
        }
        let logits = self.logits(obs, scratch)?;
        let max = logits
            .iter()
            .zip(mask)
            .filter(|(_, &m)| m)
            .map(|(&l, _)| l)
            .fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0f32;
        for ((o, &l), &m) in out.iter_mut().zip(logits).zip(mask) {
            *o = if m { exp(l - max) } else { 0.0 };
            total += *o;
        }
        out.iter_mut().for_each(|o| *o /= total);
        Ok(())
    }
}
