//! Analyze: detectors that turn a node's features about a neighbour into two probabilities,
//! "the neighbour drops or delays what it carries" and "the link to it fails within the
//! horizon".
//!
//! [`Mlp`] is the learned one (one hidden tanh layer, two sigmoid heads, plain `f32`, its
//! weights one flat vector so `meshrl-fl` can aggregate them); [`ThresholdRule`] is the fixed
//! rule it is compared with.

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::monitor::FEATURES;

/// Index of the misbehaviour head in a detector's output.
pub const NODE: usize = 0;
/// Index of the link-failure head.
pub const LINK: usize = 1;

/// A multilayer perceptron `FEATURES → hidden (tanh) → 2 (sigmoid)`. Weights are one flat
/// vector: `w1 [hidden × FEATURES]`, `b1 [hidden]`, `w2 [2 × hidden]`, `b2 [2]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub hidden: usize,
    pub weights: Vec<f32>,
}

/// Gradient of the weighted binary cross-entropy of one minibatch, and its mean loss.
pub struct Gradient {
    pub grad: Vec<f32>,
    pub loss: f32,
}

impl Mlp {
    /// Number of weights of an MLP with `hidden` units.
    pub fn num_weights(hidden: usize) -> usize {
        hidden * FEATURES + hidden + 2 * hidden + 2
    }

    /// Xavier-uniform weights, zero biases, from `seed`.
    pub fn new(hidden: usize, seed: u64) -> Mlp {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut weights = vec![0.0; Self::num_weights(hidden)];
        let a1 = (6.0 / (FEATURES + hidden) as f32).sqrt();
        for w in &mut weights[..hidden * FEATURES] {
            *w = (rng.random::<f32>() * 2.0 - 1.0) * a1;
        }
        let a2 = (6.0 / (hidden + 2) as f32).sqrt();
        let o2 = hidden * FEATURES + hidden;
        for w in &mut weights[o2..o2 + 2 * hidden] {
            *w = (rng.random::<f32>() * 2.0 - 1.0) * a2;
        }
        Mlp { hidden, weights }
    }

    fn offsets(&self) -> (usize, usize, usize) {
        let h = self.hidden;
        (h * FEATURES, h * FEATURES + h, h * FEATURES + 3 * h)
    }

    /// Hidden activations and the two probabilities.
    fn forward_into(&self, x: &[f32; FEATURES], hidden: &mut [f32]) -> [f32; 2] {
        let (ob1, ow2, ob2) = self.offsets();
        let w = &self.weights;
        for (j, hj) in hidden.iter_mut().enumerate() {
            let row = &w[j * FEATURES..(j + 1) * FEATURES];
            let z: f32 = row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + w[ob1 + j];
            *hj = z.tanh();
        }
        let mut out = [0.0; 2];
        for (o, p) in out.iter_mut().enumerate() {
            let row = &w[ow2 + o * self.hidden..ow2 + (o + 1) * self.hidden];
            let z: f32 = row
                .iter()
                .zip(hidden.iter())
                .map(|(a, b)| a * b)
                .sum::<f32>()
                + w[ob2 + o];
            *p = sigmoid(z);
        }
        out
    }

    /// The logit (pre-sigmoid score) of each head for one feature vector.
    pub fn logits(&self, x: &[f32; FEATURES]) -> [f32; 2] {
        self.predict(x).map(|p| {
            let p = p.clamp(1e-7, 1.0 - 1e-7);
            p.ln() - (1.0 - p).ln()
        })
    }

    /// Moves head `head`'s decision boundary to logit `z`: a score that was
    /// `sigmoid(z)` becomes 0.5 (the output bias falls by `z`).
    pub fn shift_boundary(&mut self, head: usize, z: f32) {
        let (_, _, ob2) = self.offsets();
        self.weights[ob2 + head] -= z;
    }

    /// `[p(misbehaving), p(link fails)]` for one feature vector.
    pub fn predict(&self, x: &[f32; FEATURES]) -> [f32; 2] {
        let mut hidden = vec![0.0; self.hidden];
        self.forward_into(x, &mut hidden)
    }

    /// Gradient of `Σ weight · BCE` over the batch, divided by the batch's total weight.
    /// `targets[i][head]` is 0 or 1, `weights[i][head]` ≥ 0 (0 leaves the head out).
    pub fn gradient(
        &self,
        x: &[[f32; FEATURES]],
        targets: &[[f32; 2]],
        weights: &[[f32; 2]],
    ) -> Gradient {
        let (ob1, ow2, ob2) = self.offsets();
        let h = self.hidden;
        let mut grad = vec![0.0; self.weights.len()];
        let mut hidden = vec![0.0; h];
        let mut dh = vec![0.0; h];
        let (mut loss, mut total) = (0.0f32, 0.0f32);
        for ((xi, ti), wi) in x.iter().zip(targets).zip(weights) {
            let p = self.forward_into(xi, &mut hidden);
            dh.fill(0.0);
            for o in 0..2 {
                if wi[o] == 0.0 {
                    continue;
                }
                total += wi[o];
                let pc = p[o].clamp(1e-6, 1.0 - 1e-6);
                loss -= wi[o] * (ti[o] * pc.ln() + (1.0 - ti[o]) * (1.0 - pc).ln());
                let dz = wi[o] * (p[o] - ti[o]);
                grad[ob2 + o] += dz;
                for j in 0..h {
                    grad[ow2 + o * h + j] += dz * hidden[j];
                    dh[j] += dz * self.weights[ow2 + o * h + j];
                }
            }
            for j in 0..h {
                let dz = dh[j] * (1.0 - hidden[j] * hidden[j]);
                if dz == 0.0 {
                    continue;
                }
                grad[ob1 + j] += dz;
                for (g, xf) in grad[j * FEATURES..(j + 1) * FEATURES].iter_mut().zip(xi) {
                    *g += dz * xf;
                }
            }
        }
        let scale = 1.0 / total.max(1e-6);
        grad.iter_mut().for_each(|g| *g *= scale);
        Gradient {
            grad,
            loss: loss * scale,
        }
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// The fixed rule: a neighbour misbehaves if, with at least `min_evidence` overheard
/// decisions in the window, it forwarded less than `min_forwarding_ratio` of them; a link
/// is about to fail if its frame loss is at least `link_loss` and rising.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdRule {
    pub min_forwarding_ratio: f32,
    pub min_evidence: f32,
    pub link_loss: f32,
    /// ... and it rose by at least this much over the window (a link fading, not one that
    /// has always been weak).
    pub link_loss_rise: f32,
}

impl Default for ThresholdRule {
    /// 80 % forwarding over ≥ 4 decisions; 35 % frame loss, up 10 points in a window (the
    /// failure label is 50 %).
    fn default() -> Self {
        ThresholdRule {
            min_forwarding_ratio: 0.8,
            min_evidence: 4.0,
            link_loss: 0.35,
            link_loss_rise: 0.1,
        }
    }
}

impl ThresholdRule {
    /// `[1 or 0, 1 or 0]` for one feature vector.
    pub fn predict(&self, x: &[f32; FEATURES]) -> [f32; 2] {
        // Undo the features' normalization: evidence = ln(1 + n) / ln 65.
        let n = (x[1] * 65f32.ln()).exp() - 1.0;
        let (f, total) = ((x[0] * (n + 2.0) - 1.0).max(0.0), n);
        let node = total >= self.min_evidence - 1e-3 && f < self.min_forwarding_ratio * total;
        let link = x[6] >= self.link_loss && x[7] >= self.link_loss_rise;
        [node as u8 as f32, link as u8 as f32]
    }
}

/// A detector the loop can run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Detector {
    /// A learned MLP; `name` says how it was trained (`federated`, `local`).
    Model {
        name: String,
        mlp: Mlp,
    },
    Threshold(ThresholdRule),
}

impl Detector {
    pub fn name(&self) -> &str {
        match self {
            Detector::Model { name, .. } => name,
            Detector::Threshold(_) => "threshold",
        }
    }

    /// `[p(misbehaving), p(link fails)]`.
    pub fn predict(&self, x: &[f32; FEATURES]) -> [f32; 2] {
        match self {
            Detector::Model { mlp, .. } => mlp.predict(x),
            Detector::Threshold(rule) => rule.predict(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let mlp = Mlp::new(5, 3);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let x: Vec<[f32; FEATURES]> = (0..4)
            .map(|_| std::array::from_fn(|_| rng.random::<f32>()))
            .collect();
        let t = vec![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]];
        let w = vec![[1.0, 2.0], [3.0, 0.0], [1.0, 1.0], [0.5, 1.0]];
        let g = mlp.gradient(&x, &t, &w);
        for i in [
            0,
            7,
            FEATURES * 5 + 2,
            mlp.weights.len() - 1,
            mlp.weights.len() - 4,
        ] {
            let (mut a, mut b) = (mlp.clone(), mlp.clone());
            a.weights[i] += 1e-2;
            b.weights[i] -= 1e-2;
            let num = (a.gradient(&x, &t, &w).loss - b.gradient(&x, &t, &w).loss) / 2e-2;
            assert!(
                (num - g.grad[i]).abs() < 2e-2,
                "weight {i}: {num} vs {}",
                g.grad[i]
            );
        }
    }

    #[test]
    fn threshold_rule_reads_the_window() {
        let mut x = [0.0; FEATURES];
        // 10 decisions, 5 forwarded.
        x[1] = (11f32).ln() / 65f32.ln();
        x[0] = 6.0 / 12.0;
        assert_eq!(ThresholdRule::default().predict(&x)[NODE], 1.0);
        x[0] = 11.0 / 12.0; // 10 of 10
        assert_eq!(ThresholdRule::default().predict(&x)[NODE], 0.0);
        x[1] = (3f32).ln() / 65f32.ln(); // 2 decisions: too little evidence
        x[0] = 1.0 / 4.0;
        assert_eq!(ThresholdRule::default().predict(&x)[NODE], 0.0);
    }
}
