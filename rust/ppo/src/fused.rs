//! One burn op for a linear layer and its activation, `act(x · W + b)`, with its own backward pass.
//!
//! Composed from burn's ops, a `tanh` layer is nine autodiff nodes (the matmul, the bias add and
//! the seven ops of the exp composite), each a pass over the activations with a fresh tensor,
//! and the backward pass re-runs `exp`. On the small tensors PPO trains on (minibatches of 64
//! rows), that per-op cost, not arithmetic, is most of the update (BENCHMARKS.md, "The update,
//! phase by phase"). Here a layer is one node: forward is the matmul and one pass adding the bias
//! and applying the activation in place; backward is one pass for the activation's derivative
//! (from the saved output) and the three matmul/sum gradients.
//!
//! The op is a burn backend extension: `flex` runs the fused passes, the cubecl backends (wgpu,
//! CUDA) run the same maths as burn ops, and autodiff gets the backward pass below for either.
//! On `flex` the forward values are those of the composed layer: bit for bit for ReLU and a head
//! (same f32 operations in the same order), within 5e-7 for tanh (`meshrl_format::tanh`, the node
//! runtime's too: `exp` in plain arithmetic, so the pass vectorizes); the tanh derivative is `1 − y²` from the output, where the composite
//! differentiated its seven ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::Linear;
use burn::tensor::{DType, Shape, Tensor};

use crate::config::Activation;

/// The activation after a fused layer (`None`: a head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None,
    Tanh,
    Relu,
}

impl From<Activation> for Act {
    fn from(a: Activation) -> Act {
        match a {
            Activation::Tanh => Act::Tanh,
            Activation::Relu => Act::Relu,
        }
    }
}

#[inline(always)]
fn relu_f32(z: f32) -> f32 {
    if z <= 0.0 {
        0.0
    } else {
        z
    }
}

/// The layer as burn ops: `x [.., d] · W [d, h] + b [h]` over the flattened rows, then `act`.
fn linear_act_ops<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: FloatTensor<B>,
    act: Act,
) -> FloatTensor<B> {
    let (rows, out_shape) = flat_rows(&x.shape(), &w.shape());
    let x2 = B::float_reshape(x, rows);
    let z = B::float_matmul(x2, w);
    let h = z.shape()[1];
    let z = B::float_add(z, B::float_reshape(b, Shape::new([1, h])));
    B::float_reshape(act_ops::<B>(z, act), out_shape)
}

fn act_ops<B: Backend>(z: FloatTensor<B>, act: Act) -> FloatTensor<B> {
    match act {
        Act::None => z,
        Act::Relu => B::relu(z),
        Act::Tanh => {
            let e = B::float_exp(B::float_clamp_max(B::float_mul_scalar(z, 2.0.into()), 30.0.into()));
            let r = B::float_recip(B::float_add_scalar(e, 1.0.into()));
            B::float_add_scalar(B::float_mul_scalar(r, (-2.0).into()), 1.0.into())
        }
    }
}

/// `grad · act'(z)`, from the output `y = act(z)`.
fn act_backward_ops<B: Backend>(y: FloatTensor<B>, grad: FloatTensor<B>, act: Act) -> FloatTensor<B> {
    match act {
        Act::None => grad,
        Act::Relu => B::relu_backward(y, grad),
        Act::Tanh => {
            let d = B::float_add_scalar(B::float_neg(B::float_mul(y.clone(), y)), 1.0.into());
            B::float_mul(grad, d)
        }
    }
}

/// `[rows, d]` for an input of shape `x`, and the output's shape (`x`'s with the last dimension `h`).
fn flat_rows(x: &Shape, w: &Shape) -> (Shape, Shape) {
    let d = x[x.num_dims() - 1];
    let rows = x.num_elements() / d.max(1);
    let mut out = x.clone();
    let last = out.num_dims() - 1;
    out[last] = w[1];
    (Shape::new([rows, d]), out)
}

#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", feature = "cuda")), Autodiff)]
pub trait FusedBackend: Backend {
    /// `act(x · W + b)` over the last dimension of `x`.
    fn linear_act(x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>, act: Act) -> FloatTensor<Self> {
        linear_act_ops::<Self>(x, w, b, act)
    }

    /// `grad · act'` from the layer's output `y`.
    fn act_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>, act: Act) -> FloatTensor<Self> {
        act_backward_ops::<Self>(y, grad, act)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl FusedBackend for burn::backend::Cube {}

/// A contiguous f32 tensor that this op may overwrite (unique, at offset 0).
fn writable(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32 && t.is_unique() && t.layout().is_contiguous() && t.layout().start_offset() == 0
}

/// The f32 elements of a contiguous tensor, if it is one.
fn contiguous_f32(t: &FlexTensor) -> Option<&[f32]> {
    if t.dtype() != DType::F32 || !t.layout().is_contiguous() {
        return None;
    }
    let start = t.layout().start_offset();
    Some(&t.storage::<f32>()[start..start + t.layout().num_elements()])
}

impl FusedBackend for Flex {
    fn linear_act(x: FlexTensor, w: FlexTensor, b: FlexTensor, act: Act) -> FlexTensor {
        let (rows, out_shape) = flat_rows(&x.shape(), &w.shape());
        let mut z = Flex::float_matmul(Flex::float_reshape(x, rows), w);
        let h = z.shape()[1];
        let bias = match contiguous_f32(&b) {
            Some(bias) if writable(&z) && bias.len() == h => bias.to_vec(),
            _ => {
                let z = Flex::float_add(z, Flex::float_reshape(b, Shape::new([1, h])));
                return Flex::float_reshape(act_ops::<Flex>(z, act), out_shape);
            }
        };
        let n = z.layout().num_elements();
        let out = &mut z.storage_mut::<f32>()[..n];
        for row in out.chunks_exact_mut(h) {
            match act {
                Act::None => row.iter_mut().zip(&bias).for_each(|(v, c)| *v += c),
                Act::Tanh => row.iter_mut().zip(&bias).for_each(|(v, c)| *v = meshrl_format::tanh(*v + c)),
                Act::Relu => row.iter_mut().zip(&bias).for_each(|(v, c)| *v = relu_f32(*v + c)),
            }
        }
        Flex::float_reshape(z, out_shape)
    }

    fn act_backward(y: FlexTensor, mut grad: FlexTensor, act: Act) -> FlexTensor {
        if act == Act::None {
            return grad;
        }
        let same = y.shape() == grad.shape();
        match contiguous_f32(&y) {
            Some(out) if same && writable(&grad) => {
                let n = out.len();
                let g = &mut grad.storage_mut::<f32>()[..n];
                match act {
                    Act::Tanh => g.iter_mut().zip(out).for_each(|(g, y)| *g *= 1.0 - y * y),
                    // A select, not a conditional store, so the loop vectorizes.
                    _ => g
                        .iter_mut()
                        .zip(out)
                        .for_each(|(g, y)| *g = if *y <= 0.0 { 0.0 } else { *g }),
                }
                grad
            }
            _ => act_backward_ops::<Flex>(y, grad, act),
        }
    }
}

impl<B: FusedBackend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C> {
    fn linear_act(x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>, act: Act) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearActBackward(Act);

        impl<B: FusedBackend> Backward<B, 3> for LinearActBackward {
            /// The input, the weight and the output.
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let [node_x, node_w, node_b] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, w, y) = ops.state;
                let x_shape = x.shape();
                let (rows, _) = flat_rows(&x_shape, &w.shape());
                let h = w.shape()[1];
                let gz = B::float_reshape(B::act_backward(y, grad, self.0), Shape::new([rows[0], h]));
                if let Some(node) = node_b {
                    let gb = B::float_reshape(B::float_sum_dim(gz.clone(), 0), Shape::new([h]));
                    grads.register::<B>(node.id, gb);
                }
                if let Some(node) = node_w {
                    let x2 = B::float_reshape(x, rows);
                    grads.register::<B>(node.id, B::float_matmul(B::float_transpose(x2), gz.clone()));
                }
                if let Some(node) = node_x {
                    let gx = B::float_matmul(gz, B::float_transpose(w));
                    grads.register::<B>(node.id, B::float_reshape(gx, x_shape));
                }
            }
        }

        let (x, node_x) = x.into_parts();
        let (w, node_w) = w.into_parts();
        let (b, node_b) = b.into_parts();
        match LinearActBackward(act)
            .prepare::<C>([node_x, node_w, node_b])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::linear_act(x.clone(), w.clone(), b, act);
                prep.finish((x, w, y.clone()), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::linear_act(x, w, b, act)),
        }
    }
}

/// `act(layer(x))` as one op (see the module's doc).
pub fn linear_act<const D: usize>(x: Tensor<D>, layer: &Linear, act: Act) -> Tensor<D> {
    let w = layer.weight.val();
    let b = match &layer.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([w.dims()[1]], &w.device()),
    };
    Tensor::from_dispatch(<Dispatch as FusedBackend>::linear_act(
        x.into_dispatch(),
        w.into_dispatch(),
        b.into_dispatch(),
        act,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LinearConfig;
    use burn::tensor::{activation, Device, Distribution, TensorData};

    /// The layer as `Mlp` composed it before the fused op: burn's `Linear`, then the activation.
    fn composed<const D: usize>(x: Tensor<D>, layer: &Linear, act: Act) -> Tensor<D> {
        let z = layer.forward(x);
        match act {
            Act::None => z,
            Act::Relu => activation::relu(z),
            Act::Tanh => z
                .mul_scalar(2.0)
                .clamp_max(30.0)
                .exp()
                .add_scalar(1.0)
                .recip()
                .mul_scalar(-2.0)
                .add_scalar(1.0),
        }
    }

    fn layer(d_in: usize, d_out: usize, device: &Device) -> Linear {
        let mut l = LinearConfig::new(d_in, d_out).init(device);
        // A non-zero bias, and weights large enough that tanh saturates and ReLU cuts somewhere.
        l.weight = Param::from_tensor(Tensor::random([d_in, d_out], Distribution::Normal(0.0, 3.0), device));
        l.bias = Some(Param::from_tensor(Tensor::random([d_out], Distribution::Normal(0.0, 1.0), device)));
        l
    }

    fn close(a: Tensor<1>, b: Tensor<1>, tol: f32, what: &str) {
        let (a, b) = (a.into_data().try_into_vec::<f32>().unwrap(), b.into_data().try_into_vec::<f32>().unwrap());
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(x.is_finite() && y.is_finite(), "{what}[{i}]: {x} vs {y}");
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: fused {x}, composed {y}");
        }
    }

    /// Values and all three gradients (input, weight, bias) of the fused layer against burn's
    /// autodiff of the composed layer, for each activation, on a 2-D and a 3-D input (as `mlp`
    /// and `slots` feed it).
    #[test]
    fn fused_layer_matches_the_composed_layer_and_its_gradients() {
        let device = Device::flex().autodiff();
        for act in [Act::None, Act::Tanh, Act::Relu] {
            for shape in [vec![6, 5], vec![3, 4, 5]] {
                let l = layer(5, 7, &device);
                let x = Tensor::<1>::random([shape.iter().product::<usize>()], Distribution::Normal(0.0, 1.0), &device);
                let r = Tensor::<1>::random([shape[..shape.len() - 1].iter().product::<usize>() * 7], Distribution::Default, &device);
                let run = |fused: bool| {
                    let x = x.clone().require_grad();
                    let (y, flat) = if shape.len() == 2 {
                        let x2 = x.clone().reshape([shape[0], shape[1]]);
                        let y = if fused { linear_act(x2, &l, act) } else { composed(x2, &l, act) };
                        (y.clone().reshape([-1]), y.dims()[1])
                    } else {
                        let x3 = x.clone().reshape([shape[0], shape[1], shape[2]]);
                        let y = if fused { linear_act(x3, &l, act) } else { composed(x3, &l, act) };
                        (y.clone().reshape([-1]), y.dims()[2])
                    };
                    assert_eq!(flat, 7);
                    let grads = y.clone().mul(r.clone()).sum().backward();
                    let gw = l.weight.grad(&grads).unwrap().reshape([-1]);
                    let gb = l.bias.as_ref().unwrap().grad(&grads).unwrap();
                    (y.inner(), x.grad(&grads).unwrap(), gw, gb)
                };
                let (f, c) = (run(true), run(false));
                let what = format!("{act:?} {shape:?}");
                close(f.0, c.0, 1e-6, &format!("{what} output"));
                close(f.1, c.1, 1e-5, &format!("{what} input gradient"));
                close(f.2, c.2, 1e-5, &format!("{what} weight gradient"));
                close(f.3, c.3, 1e-5, &format!("{what} bias gradient"));
            }
        }
    }

    /// The whole fused forward on `flex` against the composite through `expf` (the tanh itself
    /// is `meshrl_format::tanh`, tested there against f64's).
    #[test]
    fn fused_forward_matches_the_composite() {
        let device = Device::flex();
        for act in [Act::None, Act::Tanh, Act::Relu] {
            let l = layer(9, 11, &device);
            let x = Tensor::<2>::random([13, 9], Distribution::Normal(0.0, 2.0), &device);
            let f = linear_act(x.clone(), &l, act).into_data().try_into_vec::<f32>().unwrap();
            let c = composed(x, &l, act).into_data().try_into_vec::<f32>().unwrap();
            for (a, b) in f.iter().zip(&c) {
                // ReLU and the head are the same f32 operations: bit for bit.
                let tol = if act == Act::Tanh { 5e-7 } else { 0.0 };
                assert!((a - b).abs() <= tol, "{act:?}: {a} vs {b}");
            }
        }
    }

    /// The in-place passes only run on tensors this op owns: a shared or strided input takes
    /// the burn-op path and leaves the caller's tensors as they were.
    #[test]
    fn shared_and_strided_tensors_are_not_overwritten() {
        let device = Device::flex();
        let y = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -0.25, 0.0, 0.9], [2, 2]), &device);
        let grad = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device);
        let v = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
        for (act, want) in [(Act::Tanh, vec![0.75, 2.0 * 0.9375, 3.0, 4.0 * (1.0 - 0.81)]), (Act::Relu, vec![1.0, 0.0, 0.0, 4.0])] {
            let backward = |g: Tensor<2>| {
                Tensor::<2>::from_dispatch(<Dispatch as FusedBackend>::act_backward(
                    y.clone().into_dispatch(),
                    g.into_dispatch(),
                    act,
                ))
            };
            let shared = backward(grad.clone());
            let own = backward(grad.clone().add_scalar(0.0));
            assert_eq!(v(grad.clone()), vec![1.0, 2.0, 3.0, 4.0], "{act:?}: the caller's gradient changed");
            for (got, w) in v(shared).iter().zip(&want).chain(v(own).iter().zip(&want)) {
                assert!((got - w).abs() < 1e-6, "{act:?}: {got} vs {w}");
            }
        }
        // A transposed (strided) input through the whole layer.
        let l = layer(4, 3, &device);
        let xt = Tensor::<2>::random([4, 6], Distribution::Default, &device).transpose();
        let f = linear_act(xt.clone(), &l, Act::Tanh).into_data().try_into_vec::<f32>().unwrap();
        let c = composed(xt, &l, Act::Tanh).into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(f.len(), 18);
        for (a, b) in f.iter().zip(&c) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
