//! Which activation keeps a PPO MLP fast on burn's `flex` backend?
//!
//! `flex` applies `tanh` element by element with the scalar libm `tanhf`, on one thread, while
//! its matmul is a multithreaded GEMM; so a `tanh` MLP spends most of its forward in `tanh`.
//! Candidates, each timed on the same network and inputs (best of 20 after warm-up):
//! - `tanh`: burn's `activation::tanh`;
//! - `relu`: the cheap reference;
//! - `2·sigmoid(2x) − 1`: exact tanh through flex's `sigmoid` (scalar `expf`);
//! - `1 − 2 / (exp(2x) + 1)`: exact tanh through `exp` and element-wise tensor ops;
//! - `rational`: the clamped Padé-style approximation `x (27 + x²) / (27 + 9x²)`
//!   (max error ~2e-2; changes the function, so a trained policy must keep using it).

use std::time::Instant;

use burn::module::Initializer;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{activation, Device, Distribution, Tensor};

struct Mlp {
    l1: Linear,
    l2: Linear,
    head: Linear,
}

/// Orthogonal weights (gain `gain`) and a zero bias. `LinearConfig::with_initializer(Orthogonal)`
/// would also apply the orthogonal initializer to the 1-D bias, which panics at the first
/// forward pass in burn 0.22.1, so the parameters are set here.
fn layer(d_in: usize, d_out: usize, gain: f64, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out).init(device);
    linear.weight = Initializer::Orthogonal { gain }.init([d_in, d_out], device);
    linear.bias = Some(Initializer::Zeros.init([d_out], device));
    linear
}

fn forward(m: &Mlp, x: Tensor<2>, act: &dyn Fn(Tensor<2>) -> Tensor<2>) -> Tensor<2> {
    let h = act(m.l1.forward(x));
    let h = act(m.l2.forward(h));
    m.head.forward(h)
}

fn main() {
    let device = Device::flex();
    device.seed(0);
    let s2 = std::f64::consts::SQRT_2;
    let m = Mlp {
        l1: layer(43, 64, s2, &device),
        l2: layer(64, 64, s2, &device),
        head: layer(64, 8, 0.01, &device),
    };
    let x = Tensor::<2>::random([4096, 43], Distribution::Normal(0.0, 1.0), &device);
    let candidates: Vec<(&str, Box<dyn Fn(Tensor<2>) -> Tensor<2>>)> = vec![
        ("tanh", Box::new(activation::tanh)),
        ("relu", Box::new(activation::relu)),
        (
            "2*sigmoid(2x)-1",
            Box::new(|t: Tensor<2>| {
                activation::sigmoid(t.mul_scalar(2.0))
                    .mul_scalar(2.0)
                    .sub_scalar(1.0)
            }),
        ),
        (
            "1-2/(exp(2x)+1)",
            Box::new(|t: Tensor<2>| {
                t.mul_scalar(2.0)
                    .clamp(-30.0, 30.0)
                    .exp()
                    .add_scalar(1.0)
                    .recip()
                    .mul_scalar(-2.0)
                    .add_scalar(1.0)
            }),
        ),
        (
            "rational",
            Box::new(|t: Tensor<2>| {
                let t = t.clamp(-3.0, 3.0);
                let t2 = t.clone().powi_scalar(2);
                t.mul(t2.clone().add_scalar(27.0))
                    .div(t2.mul_scalar(9.0).add_scalar(27.0))
            }),
        ),
    ];
    let reference: Vec<f32> = forward(&m, x.clone(), &activation::tanh)
        .into_data()
        .try_to_vec()
        .unwrap();
    println!(
        "threads: {}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
    );
    let mut base = None;
    for (name, act) in &candidates {
        for _ in 0..3 {
            let _ = forward(&m, x.clone(), act.as_ref()).into_data();
        }
        let mut best = f64::INFINITY;
        let mut out = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            out = forward(&m, x.clone(), act.as_ref())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        let err = out
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let base_ms = *base.get_or_insert(best * 1e3);
        println!(
            "{name:>18}: {:7.3} ms  ({:4.2}x tanh)  max |logit - tanh logit| = {err:.2e}",
            best * 1e3,
            base_ms / (best * 1e3)
        );
    }
}
