//! The actor-critic: two separate MLPs over the observation, orthogonally initialized (hidden
//! gain √2, actor head 0.01, critic head 1, zero biases), and the masked categorical over
//! neighbour slots.

use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{activation, Bool, Device, Tensor};

use crate::config::Activation;

/// Logit given to masked (invalid) actions: `exp` of it underflows to exactly 0.
pub const MASKED_LOGIT: f32 = -1e9;

/// A multilayer perceptron.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
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
    pub fn new(
        d_in: usize,
        hidden: &[usize],
        d_out: usize,
        head_gain: f64,
        device: &Device,
    ) -> Mlp {
        let mut layers = Vec::new();
        let mut prev = d_in;
        for &h in hidden {
            layers.push(orthogonal(prev, h, std::f64::consts::SQRT_2, device));
            prev = h;
        }
        layers.push(orthogonal(prev, d_out, head_gain, device));
        Mlp { layers }
    }

    pub fn forward(&self, x: Tensor<2>, act: Activation) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = match act {
                    // tanh(x) = 1 − 2 / (exp(2x) + 1), clamped so exp stays finite.
                    Activation::Tanh => h
                        .mul_scalar(2.0)
                        .clamp(-30.0, 30.0)
                        .exp()
                        .add_scalar(1.0)
                        .recip()
                        .mul_scalar(-2.0)
                        .add_scalar(1.0),
                    Activation::Relu => activation::relu(h),
                };
            }
        }
        h
    }
}

/// Separate actor (logits over neighbour slots) and critic (state value).
#[derive(Module, Debug)]
pub struct ActorCritic {
    pub actor: Mlp,
    pub critic: Mlp,
}

impl ActorCritic {
    pub fn new(
        obs_dim: usize,
        num_actions: usize,
        hidden: &[usize],
        device: &Device,
    ) -> ActorCritic {
        ActorCritic {
            actor: Mlp::new(obs_dim, hidden, num_actions, 0.01, device),
            critic: Mlp::new(obs_dim, hidden, 1, 1.0, device),
        }
    }

    /// Logits `[n, K]` with invalid slots (mask false) set to [`MASKED_LOGIT`].
    pub fn masked_logits(
        &self,
        obs: Tensor<2>,
        valid: Tensor<2, Bool>,
        act: Activation,
    ) -> Tensor<2> {
        self.actor
            .forward(obs, act)
            .mask_fill(valid.bool_not(), MASKED_LOGIT)
    }

    /// State values `[n]`.
    pub fn value(&self, obs: Tensor<2>, act: Activation) -> Tensor<1> {
        let v = self.critic.forward(obs, act);
        let n = v.dims()[0];
        v.reshape([n])
    }
}

/// Log-probabilities `[n, K]` of the masked categorical.
pub fn log_probs(masked_logits: Tensor<2>) -> Tensor<2> {
    activation::log_softmax(masked_logits, 1)
}
