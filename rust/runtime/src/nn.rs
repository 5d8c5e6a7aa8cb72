//! The actor's forward pass for both architectures, in working memory made once.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::{tanh, Activation, Architecture, Error, Policy};

/// One dense layer, weights stored `[d_in][d_out]` so the forward pass is a sequence of
/// contiguous multiply-adds the compiler vectorizes.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub(crate) d_in: usize,
    pub(crate) d_out: usize,
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
}

/// `y += Σ_i x[i] · rows[i]` over the first `x.len()` rows of `d_out` weights.
#[inline]
fn accumulate(x: &[f32], rows: &[f32], y: &mut [f32]) {
    for (xi, row) in x.iter().zip(rows.chunks_exact(y.len())) {
        let xi = *xi;
        for (yj, wij) in y.iter_mut().zip(row) {
            *yj += xi * wij;
        }
    }
}

impl Layer {
    #[inline]
    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let y = &mut y[..self.d_out];
        y.copy_from_slice(&self.b);
        accumulate(&x[..self.d_in], &self.w, y);
    }
}

#[inline]
fn activate(activation: Activation, h: &mut [f32]) {
    match activation {
        Activation::Tanh => h.iter_mut().for_each(|v| *v = tanh(*v)),
        Activation::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// Working memory for one forward pass and one observation build; make it once with
/// [`Policy::scratch`].
#[derive(Clone, Debug)]
pub struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    /// `slots`: the first layer's bias plus its context term, shared by every slot.
    ctx: Vec<f32>,
    logits: Vec<f32>,
    /// The mask as `meshrl-format` wants it (0/1 bytes), for [`crate::ObsSpec::build`].
    pub(crate) valid: Vec<i8>,
}

/// Sizes of the buffers `policy` needs: (layer width, context term, slots).
fn sizes(policy: &Policy) -> (usize, usize, usize) {
    let widest = policy.layers.iter().map(|l| l.d_out).max().unwrap_or(0);
    match policy.architecture {
        Architecture::Mlp => (widest.max(policy.obs_dim()), 0, policy.num_actions()),
        Architecture::Slots => (widest, policy.layers[0].d_out, policy.num_actions()),
    }
}

impl Scratch {
    pub(crate) fn for_policy(policy: &Policy) -> Scratch {
        let (width, ctx, k) = sizes(policy);
        Scratch {
            a: vec![0.0; width],
            b: vec![0.0; width],
            ctx: vec![0.0; ctx],
            logits: vec![0.0; k],
            valid: vec![0; k],
        }
    }

    pub(crate) fn check(&self, policy: &Policy) -> Result<(), Error> {
        let (width, ctx, k) = sizes(policy);
        if self.a.len() < width
            || self.b.len() < width
            || self.ctx.len() < ctx
            || self.logits.len() < k
            || self.valid.len() < k
        {
            return Err(Error::Input {
                what: "scratch",
                reason: String::from("made for a smaller policy; use this policy's scratch()"),
            });
        }
        Ok(())
    }
}

/// `mlp`: the layers over the whole observation.
pub(crate) fn mlp_logits<'s>(
    layers: &[Layer],
    activation: Activation,
    obs: &[f32],
    scratch: &'s mut Scratch,
) -> &'s [f32] {
    let Scratch { a, b, logits, .. } = scratch;
    let (mut x, mut y): (&mut [f32], &mut [f32]) = (a, b);
    x[..obs.len()].copy_from_slice(obs);
    let last = layers.len() - 1;
    for (i, layer) in layers.iter().enumerate() {
        layer.forward(x, y);
        if i < last {
            activate(activation, &mut y[..layer.d_out]);
        }
        core::mem::swap(&mut x, &mut y);
    }
    let k = layers[last].d_out;
    logits[..k].copy_from_slice(&x[..k]);
    &logits[..k]
}

/// `slots`: the layers over each slot's features and the context, one logit per slot. The
/// first layer's context term is the same for every slot, so it is computed once.
pub(crate) fn slot_logits<'s>(
    layers: &[Layer],
    activation: Activation,
    num_slots: usize,
    per_slot: usize,
    obs: &[f32],
    scratch: &'s mut Scratch,
) -> &'s [f32] {
    let Scratch {
        a, b, ctx, logits, ..
    } = scratch;
    let first = &layers[0];
    let d0 = first.d_out;
    let shared = &mut ctx[..d0];
    shared.copy_from_slice(&first.b);
    accumulate(
        &obs[num_slots * per_slot..],
        &first.w[per_slot * d0..],
        shared,
    );
    let last = layers.len() - 1;
    for (s, logit) in logits[..num_slots].iter_mut().enumerate() {
        let (mut x, mut y): (&mut [f32], &mut [f32]) = (&mut a[..], &mut b[..]);
        let h = &mut x[..d0];
        h.copy_from_slice(shared);
        accumulate(&obs[s * per_slot..(s + 1) * per_slot], &first.w, h);
        if last > 0 {
            activate(activation, h);
        }
        for (i, layer) in layers.iter().enumerate().skip(1) {
            layer.forward(x, y);
            if i < last {
                activate(activation, &mut y[..layer.d_out]);
            }
            core::mem::swap(&mut x, &mut y);
        }
        *logit = x[0];
    }
    &logits[..num_slots]
}
