//! Adam with its state on the host: the same f32 operations, in the same order, as burn's
//! `Adam` (β₁ 0.9, β₂ 0.999, ε 1e-5 as CleanRL's PPO sets it, no AMSGrad, no weight decay),
//! so a run gives bit for bit the weights it gave with burn's optimizer (a test compares them).
//!
//! Why not burn's `ModuleOptimizer`: it runs ~13 tensor ops per parameter tensor, each a
//! dispatch and an allocation, and on the small minibatches PPO takes (64–128 rows) that was
//! 15 % of the update on `flex` (BENCHMARKS.md, "The update, phase by phase"). Here each
//! parameter tensor costs three transfers (gradient and value out, new value in) and one loop.
//! The state is a plain vector per tensor, which is also what a checkpoint stores.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// Adam's state for every float parameter of a module, in the module's visit order (the order
/// of [`crate::weights::flatten`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adam {
    slots: Vec<Slot>,
}

/// One parameter tensor's steps taken and moments (empty before its first step).
#[derive(Clone, Debug, Default, PartialEq)]
struct Slot {
    time: u32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// One step at learning rate `lr` on every parameter of `model` that has a gradient in
    /// `grads`, each gradient first multiplied by `scale` when given (the global-norm clip).
    #[cfg(test)]
    pub fn step<M: Module>(&mut self, model: M, grads: &mut GradientsParams, lr: f64, scale: Option<f32>) -> M {
        let mut host = HostGrads::take(&model, grads);
        if let Some(s) = scale {
            host.scale(s);
        }
        self.apply(model, host, lr)
    }

    /// One step at learning rate `lr` on every parameter of `model` with a gradient in `grads`
    /// (taken with [`HostGrads::take`] from the same model).
    pub fn apply<M: Module>(&mut self, model: M, grads: HostGrads, lr: f64) -> M {
        model.map(&mut Step {
            adam: self,
            grads: grads.0.into_iter(),
            next: 0,
            lr: lr as f32,
        })
    }

    /// Steps taken per parameter tensor, and the moments (`m` then `v`) of those that have
    /// taken one, as one vector: what a checkpoint stores.
    pub fn state(&self) -> (Vec<u32>, Vec<f32>) {
        let times = self.slots.iter().map(|s| s.time).collect();
        let moments = self.slots.iter().flat_map(|s| s.m.iter().chain(&s.v).copied()).collect();
        (times, moments)
    }

    /// Rebuilds the state [`Adam::state`] gave, for parameter tensors of `sizes` elements (in
    /// visit order); what does not fit is an error that says so.
    pub fn from_state(times: &[u32], moments: &[f32], sizes: &[usize]) -> Result<Adam, String> {
        if times.len() > sizes.len() {
            return Err(format!("step counts for {} parameter tensors, the network has {}", times.len(), sizes.len()));
        }
        let expected: usize = times.iter().zip(sizes).map(|(&t, &n)| if t > 0 { 2 * n } else { 0 }).sum();
        if moments.len() != expected {
            return Err(format!("{} moment values, the step counts need {expected}", moments.len()));
        }
        let mut rest = moments;
        let slots = times
            .iter()
            .zip(sizes)
            .map(|(&time, &n)| {
                if time == 0 {
                    return Slot::default();
                }
                let (m, tail) = rest.split_at(n);
                let (v, tail) = tail.split_at(n);
                rest = tail;
                Slot { time, m: m.to_vec(), v: v.to_vec() }
            })
            .collect();
        Ok(Adam { slots })
    }
}

/// Every parameter tensor's gradient on the host, in the module's visit order (`None` where a
/// parameter has none): one transfer per tensor, so the global norm, the clip and Adam's step
/// need no further tensor op.
#[derive(Debug)]
pub struct HostGrads(Vec<Option<Vec<f32>>>);

impl HostGrads {
    /// Moves `model`'s gradients out of `grads` to the host.
    pub fn take<M: Module>(model: &M, grads: &mut GradientsParams) -> HostGrads {
        struct Take<'a>(&'a mut GradientsParams, Vec<Option<Vec<f32>>>);
        impl ModuleVisitor for Take<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let g = self.0.remove::<D>(param.id);
                self.1.push(g.map(|g| g.into_data().try_into_vec::<f32>().expect("f32 gradients")));
            }
        }
        let mut take = Take(grads, Vec::new());
        model.visit(&mut take);
        HostGrads(take.1)
    }

    /// The global L2 norm over every gradient (f64 sums).
    pub fn norm(&self) -> f64 {
        let sq: f64 = self.0.iter().flatten().flatten().map(|&x| (x as f64) * (x as f64)).sum();
        sq.sqrt()
    }

    /// Multiplies every gradient by `s`.
    pub fn scale(&mut self, s: f32) {
        self.0.iter_mut().flatten().flatten().for_each(|x| *x *= s);
    }
}

struct Step<'a> {
    adam: &'a mut Adam,
    grads: std::vec::IntoIter<Option<Vec<f32>>>,
    next: usize,
    lr: f32,
}

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let i = self.next;
        self.next += 1;
        let (id, tensor, mapper) = param.consume();
        let Some(g) = self.grads.next().flatten() else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        if self.adam.slots.len() <= i {
            self.adam.slots.resize(i + 1, Slot::default());
        }
        let strategy = tensor.gradient_checkpointing_strategy();
        let require_grad = tensor.is_require_grad();
        let inner = tensor.inner();
        let (shape, device) = (inner.shape(), inner.device());
        let mut p = inner.into_data().try_into_vec::<f32>().expect("f32 parameters");
        update(&mut self.adam.slots[i], &mut p, &g, self.lr);
        let mut t = Tensor::from_inner(Tensor::<D>::from_data(TensorData::new(p, shape), &device));
        if let Some(s) = strategy {
            t = t.with_gradient_checkpointing_strategy(s);
        }
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Adam's update of `p` with gradient `g`, as burn's `AdaptiveMomentum::transform` and
/// `Adam::step` compute it, operation for operation.
fn update(slot: &mut Slot, p: &mut [f32], g: &[f32], lr: f32) {
    let (f1, f2) = (1.0 - BETA_1, 1.0 - BETA_2);
    if slot.time == 0 {
        slot.m = g.iter().map(|&x| x * f1).collect();
        slot.v = g.iter().map(|&x| (x * x) * f2).collect();
    } else {
        for ((m, v), &x) in slot.m.iter_mut().zip(slot.v.iter_mut()).zip(g) {
            *m = *m * BETA_1 + x * f1;
            *v = *v * BETA_2 + (x * x) * f2;
        }
    }
    slot.time = slot.time.saturating_add(1);
    // β^t is 0 in f32 long before t reaches i32::MAX; burn casts its step count the same way.
    let t = slot.time.min(i32::MAX as u32) as i32;
    let bias2 = (1.0 - BETA_2.powi(t)).sqrt();
    let factor = bias2 / (1.0 - BETA_1.powi(t));
    let eps = EPSILON * bias2;
    for ((p, m), v) in p.iter_mut().zip(&slot.m).zip(&slot.v) {
        *p -= (*m * factor) / (v.sqrt() + eps) * lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Activation, Architecture};
    use crate::policy::{init, ActorCritic, PolicySpec};
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::Device;

    fn spec() -> PolicySpec {
        PolicySpec {
            obs_dim: 4 * 3 + 2,
            num_actions: 4,
            hidden: vec![8, 8],
            activation: Activation::Tanh,
            architecture: Architecture::Slots,
            per_slot: 3,
            context: 2,
            feature_set: None,
        }
    }

    /// Gradients of a loss that touches every parameter, for a batch drawn from `seed`.
    fn grads(model: &ActorCritic, seed: u64) -> GradientsParams {
        let d = model.spec.obs_dim;
        let device = Device::flex().autodiff();
        let mut z = seed;
        let obs: Vec<f32> = (0..16 * d)
            .map(|_| {
                z = z.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(obs, [16, d]), &device);
        let valid = Tensor::<2>::ones([16, 4], &device).greater_elem(0.5);
        let (logits, v) = model.logits_and_value(x, valid);
        let loss = logits.powi_scalar(2).mean() * 30.0 + v.mean();
        GradientsParams::from_grads(loss.backward(), model)
    }

    /// The same weights as burn's `Adam` after several steps, clipped and not, bit for bit.
    #[test]
    fn steps_match_burns_adam_bit_for_bit() {
        let device = Device::flex().autodiff();
        let mut ours = init(&spec(), Some(3), &device);
        let mut theirs = init(&spec(), Some(3), &device);
        let mut adam = Adam::default();
        let mut optim = AdamConfig::new().with_epsilon(1e-5).init();
        for step in 0..6u64 {
            let scale = (step % 2 == 1).then_some(0.37f32);
            let lr = 3e-3 / (step + 1) as f64;
            let mut g = grads(&ours, step);
            ours = adam.step(ours, &mut g, lr, scale);
            let mut g = grads(&theirs, step);
            if let Some(s) = scale {
                g = scaled(&theirs, g, s);
            }
            theirs = optim.step(lr, theirs, g);
            let bits = |m: &ActorCritic| crate::weights::flatten(m).iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(&theirs), "after step {step}");
        }
        assert_ne!(crate::weights::flatten(&ours), crate::weights::flatten(&init(&spec(), Some(3), &device)));
    }

    fn scaled(model: &ActorCritic, mut grads: GradientsParams, s: f32) -> GradientsParams {
        struct Scale<'a>(&'a mut GradientsParams, f32);
        impl burn::module::ModuleVisitor for Scale<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.remove::<D>(param.id) {
                    self.0.register(param.id, g.mul_scalar(self.1));
                }
            }
        }
        model.visit(&mut Scale(&mut grads, s));
        grads
    }

    /// The host gradients are burn's, in visit order: their norm is the global norm burn's ops
    /// give, and scaling them scales that norm.
    #[test]
    fn host_gradients_give_the_global_norm() {
        let device = Device::flex().autodiff();
        let model = init(&spec(), Some(3), &device);
        let mut g = grads(&model, 1);
        struct Sq<'a>(&'a GradientsParams, f64, usize);
        impl burn::module::ModuleVisitor for Sq<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = self.0.get::<D>(param.id).expect("every parameter has a gradient");
                self.1 += t.powi_scalar(2).sum().into_scalar::<f32>() as f64;
                self.2 += 1;
            }
        }
        let mut sq = Sq(&g, 0.0, 0);
        model.visit(&mut sq);
        let (expected, tensors) = (sq.1.sqrt(), sq.2);
        let mut host = HostGrads::take(&model, &mut g);
        assert_eq!(host.0.iter().flatten().count(), tensors);
        assert!(expected > 0.1, "{expected}");
        assert!((host.norm() - expected).abs() < 1e-5 * expected, "{} vs {expected}", host.norm());
        host.scale(0.5);
        assert!((host.norm() - 0.5 * expected).abs() < 1e-5 * expected);
        assert!(HostGrads::take(&model, &mut g).0.iter().all(Option::is_none), "taken once");
    }

    #[test]
    fn a_step_count_at_its_limit_still_gives_finite_updates() {
        let mut slot = Slot { time: u32::MAX, m: vec![0.1; 3], v: vec![0.01; 3] };
        let mut p = vec![1.0f32; 3];
        update(&mut slot, &mut p, &[0.5, -0.5, 0.0], 1e-3);
        assert_eq!(slot.time, u32::MAX);
        assert!(p.iter().all(|x| x.is_finite() && (x - 1.0).abs() < 1e-2 && *x != 1.0), "{p:?}");
    }

    #[test]
    fn state_round_trips_and_misfits_are_errors() {
        let device = Device::flex().autodiff();
        let mut model = init(&spec(), Some(3), &device);
        let mut adam = Adam::default();
        for step in 0..2 {
            let mut g = grads(&model, step);
            model = adam.step(model, &mut g, 1e-3, None);
        }
        let sizes = crate::weights::param_sizes(&model);
        let (times, moments) = adam.state();
        assert_eq!(times, vec![2; sizes.len()]);
        assert_eq!(moments.len(), 2 * sizes.iter().sum::<usize>());
        assert_eq!(Adam::from_state(&times, &moments, &sizes).unwrap(), adam);
        let e = Adam::from_state(&times, &moments[1..], &sizes).unwrap_err();
        assert!(e.contains("moment values"), "{e}");
        let e = Adam::from_state(&[1; 99], &moments, &sizes).unwrap_err();
        assert!(e.contains("99 parameter tensors"), "{e}");
        assert_eq!(Adam::from_state(&[], &[], &sizes).unwrap(), Adam::default());
    }
}
