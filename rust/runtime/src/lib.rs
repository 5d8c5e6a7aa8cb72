//! Runs a routing policy exported by `meshrl export` on a mesh node: `#![no_std]` + `alloc`,
//! no ML framework, no allocation per call after loading.
//!
//! ```no_run
//! # fn main() -> Result<(), meshrl_runtime::Error> {
//! let bytes: &[u8] = &[]; // the contents of policy.safetensors
//! let policy = meshrl_runtime::Policy::from_bytes(bytes)?;
//! let mut scratch = policy.scratch(); // the only allocation besides loading
//! let obs = vec![0.0f32; policy.obs_dim()];
//! let mask = vec![true; policy.num_actions()];
//! let slot = policy.act(&obs, &mask, &mut scratch)?; // index into the neighbour table
//! # let _ = slot; Ok(()) }
//! ```
//!
//! # File format (`meshrl-policy` version 1)
//!
//! A safetensors file. Tensors, all `F32`: `actor.{i}.weight` `[d_out, d_in]` (PyTorch's
//! layout) and `actor.{i}.bias` `[d_out]` for layers `i = 0..=len(hidden)`; optionally the same
//! for `critic.{i}`. `__metadata__` holds strings; those this crate reads:
//!
//! | key | value |
//! |---|---|
//! | `format` | `meshrl-policy` |
//! | `format_version` | `1` |
//! | `obs_dim`, `num_actions` | integers; `obs_dim = num_actions * 6 + 1` |
//! | `hidden` | widths, comma separated (`64,64`) |
//! | `activation` | `tanh` or `relu` (after every layer but the last) |
//! | `obs.rssi_center_dbm`, `obs.rssi_scale_db`, `obs.latency_half_ms`, `obs.hops_scale`, `obs.bandwidth_scale_mbps` | normalization constants, see [`ObsSpec`] |
//! | `checksum` | `fnv1a64:` + 16 hex digits over the actor tensors' bytes, layer by layer, weight then bias |
//!
//! Other keys (`model_card`, `training_config`, `meshrl_version`, layouts in words) are for
//! people and tools; they are not needed to act.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod math;
mod obs;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use safetensors::tensor::{Dtype, SafeTensors};

pub use error::Error;
pub use math::{exp, tanh};
pub use obs::{NeighborMeasurement, ObsSpec, FEATURES_PER_NEIGHBOR, FEATURE_NAMES};

/// The `format` metadata value.
pub const FORMAT: &str = "meshrl-policy";
/// The `format_version` this crate reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest layer width accepted (a guard against absurd files).
pub const MAX_WIDTH: usize = 1 << 16;
/// Most hidden layers accepted.
pub const MAX_HIDDEN_LAYERS: usize = 16;

/// Nonlinearity after each hidden layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
}

/// One dense layer, weights stored `[d_in][d_out]` so the forward pass is a sequence of
/// contiguous multiply-adds the compiler vectorizes.
#[derive(Clone, Debug)]
struct Layer {
    d_in: usize,
    d_out: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Layer {
    #[inline]
    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let y = &mut y[..self.d_out];
        y.copy_from_slice(&self.b);
        for (xi, row) in x[..self.d_in].iter().zip(self.w.chunks_exact(self.d_out)) {
            let xi = *xi;
            for (yj, wij) in y.iter_mut().zip(row) {
                *yj += xi * wij;
            }
        }
    }
}

/// Working memory for one forward pass; make it once with [`Policy::scratch`].
#[derive(Clone, Debug)]
pub struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// A loaded, validated policy (the actor network and the observation constants).
#[derive(Clone, Debug)]
pub struct Policy {
    layers: Vec<Layer>,
    activation: Activation,
    obs: ObsSpec,
    num_actions: usize,
    hidden: Vec<usize>,
    checksum: u64,
}

/// FNV-1a, 64 bit, continuing from `h` (start with [`FNV_OFFSET`]).
pub fn fnv1a64(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a's initial state.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn meta<'a>(
    map: &'a safetensors::tensor::Metadata,
    key: &'static str,
) -> Result<&'a str, Error> {
    map.metadata()
        .as_ref()
        .and_then(|m| m.get(key))
        .map(|s| s.as_str())
        .ok_or(Error::Metadata {
            key,
            reason: String::from("missing"),
        })
}

fn parse_usize(s: &str, key: &'static str) -> Result<usize, Error> {
    s.trim().parse::<usize>().map_err(|_| Error::Metadata {
        key,
        reason: format!("`{s}` is not a non-negative integer"),
    })
}

pub(crate) fn parse_f32(s: &str, key: &'static str) -> Result<f32, Error> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::Metadata {
            key,
            reason: format!("`{s}` is not a finite number"),
        }),
    }
}

fn tensor_f32(
    st: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    checksum: &mut u64,
) -> Result<Vec<f32>, Error> {
    let view = st.tensor(name).map_err(|_| Error::Tensor {
        name: String::from(name),
        reason: String::from("missing"),
    })?;
    if view.dtype() != Dtype::F32 {
        return Err(Error::Tensor {
            name: String::from(name),
            reason: format!("dtype is {:?}, expected F32", view.dtype()),
        });
    }
    if view.shape() != shape {
        return Err(Error::Tensor {
            name: String::from(name),
            reason: format!(
                "shape is {:?}, the metadata implies {:?}",
                view.shape(),
                shape
            ),
        });
    }
    let data = view.data();
    *checksum = fnv1a64(*checksum, data);
    let mut out = Vec::with_capacity(data.len() / 4);
    for (i, c) in data.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if !v.is_finite() {
            return Err(Error::Tensor {
                name: String::from(name),
                reason: format!("value {i} is {v} (weights must be finite)"),
            });
        }
        out.push(v);
    }
    Ok(out)
}

impl Policy {
    /// Parses and validates an exported policy: the safetensors container, the metadata, every
    /// tensor's dtype and shape against the metadata, finite weights, and the checksum.
    pub fn from_bytes(bytes: &[u8]) -> Result<Policy, Error> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e:?}")))?;
        let format_name = meta(&header, "format")?;
        if format_name != FORMAT {
            return Err(Error::Metadata {
                key: "format",
                reason: format!("`{format_name}`, expected `{FORMAT}`"),
            });
        }
        let version = parse_usize(meta(&header, "format_version")?, "format_version")?;
        if version != FORMAT_VERSION as usize {
            return Err(Error::Metadata {
                key: "format_version",
                reason: format!("{version}; this runtime reads version {FORMAT_VERSION}"),
            });
        }
        let obs_dim = parse_usize(meta(&header, "obs_dim")?, "obs_dim")?;
        let num_actions = parse_usize(meta(&header, "num_actions")?, "num_actions")?;
        if num_actions == 0 || num_actions > MAX_WIDTH {
            return Err(Error::Metadata {
                key: "num_actions",
                reason: format!("{num_actions} is outside 1..={MAX_WIDTH}"),
            });
        }
        if obs_dim != num_actions * FEATURES_PER_NEIGHBOR + 1 {
            return Err(Error::Metadata {
                key: "obs_dim",
                reason: format!(
                    "{obs_dim}, but {num_actions} neighbour slots need {}",
                    num_actions * FEATURES_PER_NEIGHBOR + 1
                ),
            });
        }
        let hidden_text = meta(&header, "hidden")?;
        let mut hidden = Vec::new();
        for part in hidden_text.split(',').filter(|p| !p.trim().is_empty()) {
            let h = parse_usize(part, "hidden")?;
            if h == 0 || h > MAX_WIDTH {
                return Err(Error::Metadata {
                    key: "hidden",
                    reason: format!("width {h} is outside 1..={MAX_WIDTH}"),
                });
            }
            hidden.push(h);
        }
        if hidden.len() > MAX_HIDDEN_LAYERS {
            return Err(Error::Metadata {
                key: "hidden",
                reason: format!("{} layers, at most {MAX_HIDDEN_LAYERS}", hidden.len()),
            });
        }
        let activation = match meta(&header, "activation")? {
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            other => {
                return Err(Error::Metadata {
                    key: "activation",
                    reason: format!("`{other}`, expected `tanh` or `relu`"),
                })
            }
        };
        let obs = ObsSpec::from_metadata(num_actions, |k| meta(&header, k))?;
        let expected_checksum = {
            let text = meta(&header, "checksum")?;
            text.strip_prefix("fnv1a64:")
                .filter(|h| h.len() == 16)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or(Error::Metadata {
                    key: "checksum",
                    reason: format!("`{text}`, expected `fnv1a64:` and 16 hex digits"),
                })?
        };

        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e:?}")))?;
        let mut widths = Vec::with_capacity(hidden.len() + 2);
        widths.push(obs_dim);
        widths.extend_from_slice(&hidden);
        widths.push(num_actions);
        let mut checksum = FNV_OFFSET;
        let mut layers = Vec::with_capacity(widths.len() - 1);
        for (i, pair) in widths.windows(2).enumerate() {
            let (d_in, d_out) = (pair[0], pair[1]);
            let w = tensor_f32(
                &st,
                &format!("actor.{i}.weight"),
                &[d_out, d_in],
                &mut checksum,
            )?;
            let b = tensor_f32(&st, &format!("actor.{i}.bias"), &[d_out], &mut checksum)?;
            // [d_out][d_in] in the file -> [d_in][d_out] here.
            let mut wt = vec![0.0f32; d_in * d_out];
            for o in 0..d_out {
                for j in 0..d_in {
                    wt[j * d_out + o] = w[o * d_in + j];
                }
            }
            layers.push(Layer {
                d_in,
                d_out,
                w: wt,
                b,
            });
        }
        if st.tensor(&format!("actor.{}.weight", layers.len())).is_ok() {
            return Err(Error::Metadata {
                key: "hidden",
                reason: format!(
                    "says {} hidden layers, the file holds more actor layers",
                    hidden.len()
                ),
            });
        }
        if checksum != expected_checksum {
            return Err(Error::Checksum {
                expected: expected_checksum,
                actual: checksum,
            });
        }
        Ok(Policy {
            layers,
            activation,
            obs,
            num_actions,
            hidden,
            checksum,
        })
    }

    /// Observation length.
    pub fn obs_dim(&self) -> usize {
        self.obs.obs_dim()
    }

    /// Number of actions (neighbour slots).
    pub fn num_actions(&self) -> usize {
        self.num_actions
    }

    /// Hidden layer widths.
    pub fn hidden(&self) -> &[usize] {
        &self.hidden
    }

    /// The hidden layers' nonlinearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// How to build observations for this policy.
    pub fn obs_spec(&self) -> &ObsSpec {
        &self.obs
    }

    /// The checksum of the actor's weights (as in the file's metadata).
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// Working memory for [`Policy::logits`], [`Policy::act`] and [`Policy::probs`].
    pub fn scratch(&self) -> Scratch {
        let width = self.scratch_width();
        Scratch {
            a: vec![0.0; width],
            b: vec![0.0; width],
        }
    }

    fn scratch_width(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.d_out)
            .max()
            .unwrap_or(0)
            .max(self.obs_dim())
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
        if mask.len() != self.num_actions {
            return Err(Error::Input {
                what: "mask",
                reason: format!(
                    "length {}, the policy has {} neighbour slots",
                    mask.len(),
                    self.num_actions
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

    fn check_scratch(&self, scratch: &Scratch) -> Result<(), Error> {
        let need = self.scratch_width();
        if scratch.a.len() < need || scratch.b.len() < need {
            return Err(Error::Input {
                what: "scratch",
                reason: String::from("made for a smaller policy; use this policy's scratch()"),
            });
        }
        Ok(())
    }

    /// The actor's logits (unmasked), `num_actions` values borrowed from `scratch`.
    pub fn logits<'s>(&self, obs: &[f32], scratch: &'s mut Scratch) -> Result<&'s [f32], Error> {
        self.check_obs(obs)?;
        self.check_scratch(scratch)?;
        let Scratch { a, b } = scratch;
        let (mut x, mut y) = (a, b);
        x[..obs.len()].copy_from_slice(obs);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            layer.forward(x, y);
            if i < last {
                let h = &mut y[..layer.d_out];
                match self.activation {
                    Activation::Tanh => h.iter_mut().for_each(|v| *v = tanh(*v)),
                    Activation::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
                }
            }
            core::mem::swap(&mut x, &mut y);
        }
        Ok(&x[..self.num_actions])
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
        if out.len() != self.num_actions {
            return Err(Error::Input {
                what: "out",
                reason: format!("length {}, expected {}", out.len(), self.num_actions),
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
