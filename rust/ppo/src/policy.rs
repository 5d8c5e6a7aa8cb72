//! The actor-critic (two architectures), its seeded initialization, and the masked categorical
//! over neighbour slots.
//!
//! - `mlp`: separate actor and critic MLPs over the whole observation, orthogonally
//!   initialized (hidden gain √2, actor head 0.01, critic head 1, zero biases). Depends on
//!   slot order and count.
//! - `slots`: per-neighbour scoring. One actor MLP with shared weights scores each slot from
//!   that slot's features and the node's context, so the policy is permutation-equivariant over
//!   slots and works for any neighbour count; the critic embeds each slot the same way and pools
//!   over the valid ones (masked mean and max, as Deep Sets) before a linear head.

use burn::module::{Initializer, Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{activation, Bool, Device, Tensor, TensorData};
use rand::RngExt;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::config::{Activation, Architecture};
use crate::fused::{linear_act, Act};
use crate::PpoError;

/// Logit given to masked (invalid) actions: `exp` of it underflows to exactly 0.
pub const MASKED_LOGIT: f32 = -1e9;

/// Everything that fixes a policy network's shape: what a weights file, a checkpoint and an
/// export record about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub obs_dim: usize,
    /// Neighbour slots (discrete actions).
    pub num_actions: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    #[serde(default)]
    pub architecture: Architecture,
    /// Features per slot and after the slots (`obs_dim = num_actions × per_slot + context`);
    /// what the `slots` architecture splits the observation by. 0 when unknown (`mlp` only).
    #[serde(default)]
    pub per_slot: usize,
    #[serde(default)]
    pub context: usize,
    /// The observation's feature set (`spec`, `routing`), when it is the routing environment's.
    #[serde(default)]
    pub feature_set: Option<String>,
}

impl PolicySpec {
    /// Checks that the sizes fit together; the error names the field.
    pub fn validate(&self) -> Result<(), PpoError> {
        let bad = |field: &str, reason: String| {
            Err(PpoError::InvalidConfig {
                field: field.into(),
                reason,
            })
        };
        if self.obs_dim == 0 || self.num_actions == 0 {
            return bad(
                "obs_dim",
                format!(
                    "obs_dim and num_actions must be at least 1, got {} and {}",
                    self.obs_dim, self.num_actions
                ),
            );
        }
        crate::config::check_hidden(&self.hidden)?;
        // Parameters are f32 and the optimizer keeps two moments each: bound the size.
        let mut params = 0u128;
        let mut prev = self.obs_dim.max(self.per_slot + self.context) as u128;
        for &h in self.hidden.iter().chain([&self.num_actions]) {
            params += 2 * (prev + 1) * h as u128;
            prev = h as u128;
        }
        if params > crate::config::MAX_PARAMETERS as u128 {
            return bad(
                "ppo.hidden",
                format!(
                    "{:?} makes ~{params} parameters for {} inputs; at most {} fit in memory",
                    self.hidden,
                    self.obs_dim,
                    crate::config::MAX_PARAMETERS
                ),
            );
        }
        if self.architecture == Architecture::Slots
            && (self.per_slot == 0 || self.num_actions * self.per_slot + self.context != self.obs_dim)
        {
            return bad(
                "ppo.architecture",
                format!(
                    "`slots` needs observations of num_actions × per_slot + context values; got \
                     obs_dim {}, {} actions, per_slot {}, context {} (use `mlp` for \
                     observations without neighbour slots)",
                    self.obs_dim, self.num_actions, self.per_slot, self.context
                ),
            );
        }
        Ok(())
    }
}

/// A multilayer perceptron over the last dimension of its input.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    #[module(skip)]
    activation: Activation,
    /// Apply the activation after the last layer too (an embedding, not a head).
    #[module(skip)]
    activate_output: bool,
}

/// Orthogonal weights with `gain` and a zero bias. (burn 0.22's
/// `LinearConfig::with_initializer(Orthogonal)` would also apply it to the 1-D bias and panic.)
fn orthogonal(d_in: usize, d_out: usize, gain: f64, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out).init(device);
    linear.weight = Initializer::Orthogonal { gain }.init([d_in, d_out], device);
    linear.bias = Some(Initializer::Zeros.init([d_out], device));
    linear
}

impl Mlp {
    /// Hidden layers of gain √2, then a head of `d_out` with `head_gain`.
    pub fn new(
        d_in: usize,
        hidden: &[usize],
        d_out: usize,
        head_gain: f64,
        activation: Activation,
        device: &Device,
    ) -> Mlp {
        let mut layers = Vec::new();
        let mut prev = d_in;
        for &h in hidden {
            layers.push(orthogonal(prev, h, std::f64::consts::SQRT_2, device));
            prev = h;
        }
        layers.push(orthogonal(prev, d_out, head_gain, device));
        Mlp {
            layers,
            activation,
            activate_output: false,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let act = if i < last || self.activate_output {
                Act::from(self.activation)
            } else {
                Act::None
            };
            h = linear_act(h, layer, act);
        }
        h
    }

    /// The layers, input first (weights `[d_in, d_out]`).
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
}

/// Actor (logits over neighbour slots) and critic (state value).
#[derive(Module, Debug)]
pub struct ActorCritic {
    pub actor: Mlp,
    pub critic: Mlp,
    /// `slots` only: the critic's head over the pooled slot embeddings.
    pub critic_head: Option<Linear>,
    #[module(skip)]
    pub spec: PolicySpec,
}

impl ActorCritic {
    /// A network for a validated `spec`, seeded: the same `seed` gives the same weights,
    /// whatever other threads build meanwhile.
    pub fn seeded(spec: &PolicySpec, seed: u64, device: &Device) -> ActorCritic {
        init(spec, Some(seed), device)
    }

    /// A freshly initialized network for a validated `spec`. Its parameters initialize lazily
    /// from burn's process-wide generator, so a network built here and materialized while
    /// another thread seeds that generator shifts the other's draws: only [`init`] calls it,
    /// under its lock.
    fn new(spec: &PolicySpec, device: &Device) -> ActorCritic {
        let (act, h) = (spec.activation, &spec.hidden);
        match spec.architecture {
            Architecture::Mlp => ActorCritic {
                actor: Mlp::new(spec.obs_dim, h, spec.num_actions, 0.01, act, device),
                critic: Mlp::new(spec.obs_dim, h, 1, 1.0, act, device),
                critic_head: None,
                spec: spec.clone(),
            },
            Architecture::Slots => {
                let d_in = spec.per_slot + spec.context;
                let (embed, rest) = h.split_last().expect("validated: at least one layer");
                let mut critic = Mlp::new(d_in, rest, *embed, std::f64::consts::SQRT_2, act, device);
                critic.activate_output = true;
                ActorCritic {
                    actor: Mlp::new(d_in, h, 1, 0.01, act, device),
                    critic,
                    critic_head: Some(orthogonal(2 * embed, 1, 1.0, device)),
                    spec: spec.clone(),
                }
            }
        }
    }

    /// `[n, K, per_slot + context]`: each slot's features next to the node's context.
    fn slot_inputs(&self, x: Tensor<2>) -> Tensor<3> {
        let [n, d] = x.dims();
        let (k, f, g) = (self.spec.num_actions, self.spec.per_slot, self.spec.context);
        let slots = x.clone().slice([0..n, 0..k * f]).reshape([n, k, f]);
        if g == 0 {
            return slots;
        }
        let ctx = x.slice([0..n, k * f..d]).reshape([n, 1, g]).repeat_dim(1, k);
        Tensor::cat(vec![slots, ctx], 2)
    }

    /// Unmasked logits `[n, K]`.
    pub fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        match self.spec.architecture {
            Architecture::Mlp => self.actor.forward(x),
            Architecture::Slots => {
                let [n, _] = x.dims();
                let k = self.spec.num_actions;
                self.actor.forward(self.slot_inputs(x)).reshape([n, k])
            }
        }
    }

    /// Logits `[n, K]` with invalid slots (mask false) set to [`MASKED_LOGIT`].
    pub fn masked_logits(&self, x: Tensor<2>, valid: Tensor<2, Bool>) -> Tensor<2> {
        self.logits(x).mask_fill(valid.bool_not(), MASKED_LOGIT)
    }

    /// State values `[n]`; `valid` (`[n, K]`) says which slots hold a neighbour (the `slots`
    /// critic pools over those).
    pub fn value(&self, x: Tensor<2>, valid: Tensor<2, Bool>) -> Tensor<1> {
        let [n, _] = x.dims();
        match &self.critic_head {
            None => self.critic.forward(x).reshape([n]),
            Some(head) => self.pooled_value(head, self.critic.forward(self.slot_inputs(x)), valid),
        }
    }

    /// Unmasked logits `[n, K]` and state values `[n]` in one pass: the `slots` inputs (slice,
    /// repeat, concatenate) are built once for actor and critic. The same numbers as
    /// [`ActorCritic::logits`] and [`ActorCritic::value`].
    pub fn logits_and_value(&self, x: Tensor<2>, valid: Tensor<2, Bool>) -> (Tensor<2>, Tensor<1>) {
        let [n, _] = x.dims();
        match &self.critic_head {
            None => (self.actor.forward(x.clone()), self.critic.forward(x).reshape([n])),
            Some(head) => {
                let inputs = self.slot_inputs(x);
                let k = self.spec.num_actions;
                let logits = self.actor.forward(inputs.clone()).reshape([n, k]);
                (logits, self.pooled_value(head, self.critic.forward(inputs), valid))
            }
        }
    }

    /// The `slots` critic's value from slot embeddings `e` (`[n, K, H]`): mean and max over
    /// the valid slots, then the head.
    fn pooled_value(&self, head: &Linear, e: Tensor<3>, valid: Tensor<2, Bool>) -> Tensor<1> {
        let [n, k, h] = e.dims();
        let mf = valid.reshape([n, k, 1]).float();
        let count = mf.clone().sum_dim(1).clamp_min(1.0); // [n, 1, 1]
        let mean = (e.clone() * mf.clone()).sum_dim(1) / count; // [n, 1, H]
        // Empty slots pushed down by 1e9 with one broadcast add (no [n, K, H] mask): the same
        // max as masking them, as a valid slot's embedding is far above -1e9.
        let max = (e + (mf - 1.0).mul_scalar(1e9))
            .max_dim(1)
            .clamp_min(-10.0);
        let pooled = Tensor::cat(vec![mean, max], 2).reshape([n, 2 * h]);
        head.forward(pooled).reshape([n])
    }
}

/// Actor logits `[n × K]` and critic values `[n]` of a network (on its own device) for `obs`
/// (`n × obs_dim`) with valid-slot masks `mask` (`n × K`).
pub(crate) fn infer(model: &ActorCritic, obs: &[f32], mask: &[i8]) -> (Vec<f32>, Vec<f32>) {
    let (d, k) = (model.spec.obs_dim, model.spec.num_actions);
    let n = obs.len() / d;
    let device = model.devices().into_iter().next().unwrap_or_else(Device::flex);
    let x = Tensor::<2>::from_data(TensorData::new(obs.to_vec(), [n, d]), &device);
    let valid = valid_tensor(mask, n, k, &device);
    let (logits, values) = model.logits_and_value(x, valid);
    let logits = logits.into_data().try_to_vec::<f32>();
    let values = values.into_data().try_to_vec::<f32>();
    (
        logits.expect("f32 logits"),
        values.expect("f32 values"),
    )
}

pub(crate) fn valid_tensor(mask: &[i8], n: usize, k: usize, device: &Device) -> Tensor<2, Bool> {
    let m: Vec<f32> = mask.iter().map(|&v| v as f32).collect();
    Tensor::<2>::from_data(TensorData::new(m, [n, k]), device).greater_elem(0.5)
}

/// Checks a batch of `n × obs_dim` finite observations and `n × num_actions` masks of 0/1
/// with at least one valid slot per row; returns `n`.
pub(crate) fn check_batch(d: usize, k: usize, obs: &[f32], mask: &[i8]) -> Result<usize, PpoError> {
    if obs.is_empty() || obs.len() % d != 0 {
        return Err(PpoError::input(
            "obs",
            format!("must hold n × {d} values (n ≥ 1), got {}", obs.len()),
        ));
    }
    let n = obs.len() / d;
    if mask.len() != n * k {
        return Err(PpoError::input(
            "mask",
            format!("{n} observations need {n} × {k} mask values, got {}", mask.len()),
        ));
    }
    if let Some(i) = obs.iter().position(|v| !v.is_finite()) {
        return Err(PpoError::input(
            "obs",
            format!("row {}, entry {} is {}", i / d, i % d, obs[i]),
        ));
    }
    if let Some(i) = mask.iter().position(|&m| m != 0 && m != 1) {
        return Err(PpoError::input("mask", format!("entry {i} is {}; masks hold 0 or 1", mask[i])));
    }
    if let Some(row) = mask.chunks(k).position(|r| r.iter().all(|&m| m == 0)) {
        return Err(PpoError::input("mask", format!("row {row} has no valid action")));
    }
    Ok(n)
}

/// Log-probabilities `[n, K]` of the masked categorical.
pub fn log_probs(masked_logits: Tensor<2>) -> Tensor<2> {
    activation::log_softmax(masked_logits, 1)
}

/// Forces every parameter's lazy initialization now.
pub(crate) struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// burn's device seed may be process-wide and parameters initialize lazily, so two networks
/// built at once could interleave their draws. Seeding and initialization happen under this lock.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A network for `spec` on `device`, initialized now: from `seed` when given (the same seed
/// gives the same weights), else from whatever the device's generator holds (for networks
/// whose weights are about to be replaced).
pub(crate) fn init(spec: &PolicySpec, seed: Option<u64>, device: &Device) -> ActorCritic {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(seed) = seed {
        device.seed(seed);
    }
    let model = ActorCritic::new(spec, device);
    model.visit(&mut Materialize);
    model
}

/// Samples from masked logits on the CPU; returns (actions, log-probabilities). Rows without a
/// valid slot get action 0 (the environment resets them anyway). `deterministic` takes the
/// argmax (lowest slot on ties).
pub(crate) fn sample(
    logits: &[f32],
    mask: &[i8],
    k: usize,
    rng: &mut Xoshiro256PlusPlus,
    deterministic: bool,
) -> (Vec<i64>, Vec<f32>) {
    let n = mask.len() / k;
    let mut actions = Vec::with_capacity(n);
    let mut logps = Vec::with_capacity(n);
    for i in 0..n {
        let (row, m) = (&logits[i * k..(i + 1) * k], &mask[i * k..(i + 1) * k]);
        let valid = || (0..k).filter(|&s| m[s] != 0);
        let max = valid().map(|s| row[s]).fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            actions.push(0);
            logps.push(0.0);
            continue;
        }
        let total: f32 = valid().map(|s| (row[s] - max).exp()).sum();
        let a = if deterministic {
            valid()
                .fold(None, |best: Option<usize>, s| match best {
                    Some(b) if row[b] >= row[s] => Some(b),
                    _ => Some(s),
                })
                .unwrap_or(0)
        } else {
            let mut u = rng.random::<f32>() * total;
            let mut pick = valid().last().unwrap_or(0);
            for s in valid() {
                u -= (row[s] - max).exp();
                if u <= 0.0 {
                    pick = s;
                    break;
                }
            }
            pick
        };
        actions.push(a as i64);
        logps.push(row[a] - max - total.ln());
    }
    (actions, logps)
}
