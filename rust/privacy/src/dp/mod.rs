//! DP-FedAvg (McMahan et al. 2018) with fixed or adaptive clipping (Andrew et al. 2021).
//!
//! Each client's update is clipped to L2 norm `C`; the server sums the clipped updates and
//! adds Gaussian noise of standard deviation `z·C` per coordinate, `z` the noise multiplier.
//! The sum's L2 sensitivity under adding or removing one client is `C`, so one round is the
//! Gaussian mechanism with noise multiplier `z`; with clients sampled at rate `q`, account it
//! with [`crate::RdpAccountant::step`]`(z, q, 1)`.
//!
//! **Adaptive clipping** (Andrew et al. 2021, Alg. 1): each client also reports the bit
//! `b_i = 1[‖Δ_i‖ ≤ C]`; the server forms the noisy fraction of unclipped updates
//! `b̃ = (Σ b_i + N(0, σ_b²)) / m` and moves the clip norm geometrically,
//! `C ← C · exp(−η (b̃ − γ))`, so `C` *grows* when fewer than a fraction `γ` of the updates
//! fit (too many clipped) and shrinks otherwise; it settles at the `γ`-quantile of the update
//! norms. The count costs privacy too: to keep the round's total at noise multiplier `z`, the
//! update noise uses `z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2)` (Andrew et al. §3.1), which needs
//! `2σ_b > z`. Account the round with `z`, not `z_Δ`.
//!
//! **Where the noise goes** ([`NoisePlacement`]): `Server` (central DP: the server, trusted
//! with the sum, adds `N(0, (z_Δ C)²)`), `Distributed` (each of `m` clients adds
//! `N(0, (z_Δ C)²/m)` before secure aggregation, so the sum carries the full noise and the
//! server never sees a less noisy value; fewer surviving clients mean less noise), and
//! `Local` (each client adds `N(0, (z C)²)` to its own clipped update: each update is private
//! on its own, against the server too, at `m` times the noise variance of the sum).

use rand::{Rng, RngExt, SeedableRng};
use rand_distr::StandardNormal;

use chacha20::ChaCha20Rng;

use crate::error::{check_finite, check_non_negative, check_positive, invalid, PrivacyError};

mod sensitivity;
pub use sensitivity::{l2_sensitivity, OutputBound};

/// The ChaCha20 RNG the crate uses for noise, seeded from `seed` (simulations, tests and
/// bindings; a deployment seeds its clients from the OS).
pub fn seeded_rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// L2 norm of `v`, accumulated in f64.
pub fn l2_norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// Scales `update` in place so its L2 norm is at most `clip_norm` (> 0); returns the norm
/// before clipping. An update already within the bound is left untouched. The result's norm,
/// computed in f64, never exceeds `clip_norm` (f32 rounding is absorbed by a 2⁻²² margin).
pub fn clip_l2(update: &mut [f32], clip_norm: f64) -> Result<f64, PrivacyError> {
    check_positive("clip_norm", clip_norm)?;
    check_finite("update", update)?;
    let norm = l2_norm(update);
    if norm <= clip_norm {
        return Ok(norm);
    }
    let mut current = norm;
    for _ in 0..4 {
        let scale = clip_norm / current * (1.0 - 2f64.powi(-22));
        for x in update.iter_mut() {
            *x = (*x as f64 * scale) as f32;
        }
        current = l2_norm(update);
        if current <= clip_norm {
            return Ok(norm);
        }
    }
    // Only reachable with subnormal values that rounding keeps above the bound.
    update.fill(0.0);
    Ok(norm)
}

/// Adds independent `N(0, stddev²)` noise to every coordinate of `v` (`stddev` ≥ 0, in the
/// units of `v`).
pub fn add_gaussian_noise<R: Rng + ?Sized>(
    v: &mut [f32],
    stddev: f64,
    rng: &mut R,
) -> Result<(), PrivacyError> {
    check_non_negative("stddev", stddev)?;
    if stddev > 0.0 {
        for x in v.iter_mut() {
            let n: f64 = rng.sample(StandardNormal);
            *x = (*x as f64 + stddev * n) as f32;
        }
    }
    Ok(())
}

/// How the clip norm `C` is chosen each round.
#[derive(Clone, Debug, PartialEq)]
pub enum Clipping {
    /// A constant clip norm `C` (> 0, in the units of the updates).
    Fixed { clip_norm: f64 },
    /// `C` tracks a quantile of the update norms (Andrew et al. 2021).
    Adaptive(AdaptiveClipping),
}

/// Adaptive clipping's parameters, with the defaults of Andrew et al. 2021 (and Flower's).
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveClipping {
    /// The clip norm of the first round (> 0). Default 0.1.
    pub initial_clip_norm: f64,
    /// γ: the fraction of updates that should fit under `C` (the quantile `C` tracks), in
    /// (0, 1). Default 0.5 (the median norm).
    pub target_unclipped_quantile: f64,
    /// η: the geometric learning rate of `C` (> 0). Default 0.2.
    pub learning_rate: f64,
    /// σ_b: standard deviation of the noise on the count of unclipped updates, in clients
    /// (≥ 0). `None`: `m / 20`, `m` the clients in the round (the paper's advice).
    pub clipped_count_stddev: Option<f64>,
}

impl Default for AdaptiveClipping {
    fn default() -> Self {
        Self {
            initial_clip_norm: 0.1,
            target_unclipped_quantile: 0.5,
            learning_rate: 0.2,
            clipped_count_stddev: None,
        }
    }
}

/// Who adds the Gaussian noise; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoisePlacement {
    /// The server adds `N(0, (z_Δ C)²)` to the sum (central DP).
    Server,
    /// Each client adds `N(0, (z_Δ C)²/m)` so the sum of `m` carries the full noise (for use
    /// with secure aggregation).
    Distributed,
    /// Each client adds `N(0, (z C)²)` to its own update (local DP). Fixed clipping only.
    Local,
}

/// DP-FedAvg's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DpConfig {
    /// z: noise standard deviation over the sum's L2 sensitivity `C` (≥ 0). This is the value
    /// to give the accountant.
    pub noise_multiplier: f64,
    /// Fixed or adaptive clip norm.
    pub clipping: Clipping,
    /// Who adds the noise.
    pub noise: NoisePlacement,
}

impl DpConfig {
    /// Checks every field; errors name the field.
    pub fn validate(&self) -> Result<(), PrivacyError> {
        check_non_negative("noise_multiplier", self.noise_multiplier)?;
        match &self.clipping {
            Clipping::Fixed { clip_norm } => check_positive("clip_norm", *clip_norm)?,
            Clipping::Adaptive(a) => {
                check_positive("initial_clip_norm", a.initial_clip_norm)?;
                let g = a.target_unclipped_quantile;
                if !(g > 0.0 && g < 1.0) {
                    return Err(invalid(
                        "target_unclipped_quantile",
                        format!("must be in (0, 1), got {g}"),
                    ));
                }
                check_positive("learning_rate", a.learning_rate)?;
                if let Some(s) = a.clipped_count_stddev {
                    check_non_negative("clipped_count_stddev", s)?;
                }
                if self.noise == NoisePlacement::Local {
                    return Err(invalid(
                        "clipping",
                        "adaptive clipping needs server-side or distributed noise: under local DP the count of unclipped updates would need its own local randomization",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What one DP-FedAvg round produced.
#[derive(Clone, Debug, PartialEq)]
pub struct DpRound {
    /// The noisy sum of the clipped updates (length `d`).
    pub sum: Vec<f32>,
    /// `sum / m`, `m` the clients in the round: the DP-FedAvg update.
    pub mean: Vec<f32>,
    /// The clip norm `C` used this round.
    pub clip_norm: f64,
    /// The clip norm for the next round (equal to `clip_norm` under fixed clipping).
    pub next_clip_norm: f64,
    /// The standard deviation of the noise on the sum, per coordinate (`z_Δ·C`).
    pub noise_stddev: f64,
    /// `b̃`: the noisy fraction of unclipped updates (adaptive clipping only; private).
    pub noisy_unclipped_fraction: Option<f64>,
    /// The number of clients `m` in the round.
    pub num_clients: usize,
}

/// The server side of DP-FedAvg: the current clip norm and the server's noise RNG.
#[derive(Debug)]
pub struct DpFedAvg {
    config: DpConfig,
    clip_norm: f64,
    rng: ChaCha20Rng,
}

impl DpFedAvg {
    /// Validates `config` and seeds the server's noise from `seed` (ChaCha20; a deployment
    /// passes a seed drawn from the OS).
    pub fn new(config: DpConfig, seed: u64) -> Result<Self, PrivacyError> {
        config.validate()?;
        let clip_norm = match &config.clipping {
            Clipping::Fixed { clip_norm } => *clip_norm,
            Clipping::Adaptive(a) => a.initial_clip_norm,
        };
        Ok(Self {
            config,
            clip_norm,
            rng: ChaCha20Rng::seed_from_u64(seed),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DpConfig {
        &self.config
    }

    /// The clip norm `C` the next round will use.
    pub fn clip_norm(&self) -> f64 {
        self.clip_norm
    }

    /// Whether contributions carry a trailing unclipped bit (adaptive clipping).
    pub fn is_adaptive(&self) -> bool {
        matches!(self.config.clipping, Clipping::Adaptive(_))
    }

    /// σ_b for `m` clients.
    fn count_stddev(&self, m: usize) -> f64 {
        match &self.config.clipping {
            Clipping::Adaptive(a) => a.clipped_count_stddev.unwrap_or(m as f64 / 20.0),
            Clipping::Fixed { .. } => 0.0,
        }
    }

    /// z_Δ, the update noise multiplier, for `m` clients (z itself under fixed clipping).
    pub fn update_noise_multiplier(&self, m: usize) -> Result<f64, PrivacyError> {
        let z = self.config.noise_multiplier;
        if !self.is_adaptive() || z == 0.0 {
            return Ok(z);
        }
        let sb = self.count_stddev(m);
        if 2.0 * sb <= z {
            return Err(invalid(
                "clipped_count_stddev",
                format!(
                    "must exceed noise_multiplier / 2 = {} for adaptive clipping, got {sb} (m = {m} clients)",
                    z / 2.0
                ),
            ));
        }
        Ok((z.powi(-2) - (2.0 * sb).powi(-2)).powf(-0.5))
    }

    /// A client's contribution for a round of `m` clients: its update clipped to the current
    /// `C`, noised as the placement says, with (adaptive clipping) the unclipped bit appended
    /// as a trailing coordinate (1.0 or 0.0), so the sum of contributions (plain or secure)
    /// carries the count. `rng` is the client's own.
    pub fn client_contribution<R: Rng + ?Sized>(
        &self,
        update: &[f32],
        m: usize,
        rng: &mut R,
    ) -> Result<Vec<f32>, PrivacyError> {
        if m == 0 {
            return Err(invalid("num_clients", "must be >= 1"));
        }
        let mut out = Vec::with_capacity(update.len() + 1);
        out.extend_from_slice(update);
        let norm = clip_l2(&mut out, self.clip_norm)?;
        let stddev = match self.config.noise {
            NoisePlacement::Server => 0.0,
            NoisePlacement::Local => self.config.noise_multiplier * self.clip_norm,
            NoisePlacement::Distributed => {
                self.update_noise_multiplier(m)? * self.clip_norm / (m as f64).sqrt()
            }
        };
        add_gaussian_noise(&mut out, stddev, rng)?;
        if self.is_adaptive() {
            out.push(if norm <= self.clip_norm { 1.0 } else { 0.0 });
        }
        Ok(out)
    }

    /// Finishes a round from the sum of `m` clients' [`Self::client_contribution`]s: adds the
    /// server's noise (placement `Server`), averages, and (adaptive clipping) moves `C` by the
    /// noisy unclipped count read from the trailing coordinate.
    pub fn finish_round(&mut self, summed: &[f32], m: usize) -> Result<DpRound, PrivacyError> {
        if m == 0 {
            return Err(invalid("num_clients", "must be >= 1"));
        }
        check_finite("summed", summed)?;
        let z_update = self.update_noise_multiplier(m)?;
        let (mut sum, count) = if self.is_adaptive() {
            let (last, rest) = summed.split_last().ok_or_else(|| {
                invalid(
                    "summed",
                    "is empty; adaptive clipping needs the trailing unclipped count",
                )
            })?;
            (rest.to_vec(), Some(*last as f64))
        } else {
            (summed.to_vec(), None)
        };
        if sum.is_empty() {
            return Err(invalid("summed", "has no update coordinates"));
        }
        let noise_stddev = z_update * self.clip_norm;
        if self.config.noise == NoisePlacement::Server {
            add_gaussian_noise(&mut sum, noise_stddev, &mut self.rng)?;
        }
        let mean = sum.iter().map(|&x| (x as f64 / m as f64) as f32).collect();
        let clip_norm = self.clip_norm;
        let mut noisy_fraction = None;
        if let (Clipping::Adaptive(a), Some(count)) = (&self.config.clipping, count) {
            let noise: f64 = self.rng.sample(StandardNormal);
            let b = (count + self.count_stddev(m) * noise) / m as f64;
            self.clip_norm *= (-a.learning_rate * (b - a.target_unclipped_quantile)).exp();
            noisy_fraction = Some(b);
        }
        Ok(DpRound {
            sum,
            mean,
            clip_norm,
            next_clip_norm: self.clip_norm,
            noise_stddev: match self.config.noise {
                NoisePlacement::Local => {
                    self.config.noise_multiplier * clip_norm * (m as f64).sqrt()
                }
                _ => noise_stddev,
            },
            noisy_unclipped_fraction: noisy_fraction,
            num_clients: m,
        })
    }

    /// One whole round in process: every client's contribution (client RNGs drawn from the
    /// server's), their sum in f64, then [`Self::finish_round`]. All updates must have the
    /// same length.
    pub fn aggregate(&mut self, updates: &[&[f32]]) -> Result<DpRound, PrivacyError> {
        let m = updates.len();
        let d = updates
            .first()
            .map(|u| u.len())
            .ok_or_else(|| invalid("updates", "no client updates"))?;
        if d == 0 {
            return Err(invalid("updates", "updates have length 0"));
        }
        if let Some((i, u)) = updates.iter().enumerate().find(|(_, u)| u.len() != d) {
            return Err(invalid(
                "updates",
                format!("update {i} has length {}, expected {d}", u.len()),
            ));
        }
        let mut acc = vec![0f64; d + usize::from(self.is_adaptive())];
        for u in updates {
            let mut client_rng = ChaCha20Rng::seed_from_u64(self.rng.random());
            let c = self.client_contribution(u, m, &mut client_rng)?;
            for (a, x) in acc.iter_mut().zip(&c) {
                *a += *x as f64;
            }
        }
        let summed: Vec<f32> = acc.into_iter().map(|x| x as f32).collect();
        self.finish_round(&summed, m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(z: f64, c: f64) -> DpConfig {
        DpConfig {
            noise_multiplier: z,
            clipping: Clipping::Fixed { clip_norm: c },
            noise: NoisePlacement::Server,
        }
    }

    #[test]
    fn clip_keeps_short_updates_and_scales_long_ones() {
        let mut v = vec![0.3f32, 0.4];
        assert_eq!(clip_l2(&mut v, 1.0).unwrap(), l2_norm(&[0.3, 0.4]));
        assert_eq!(v, vec![0.3, 0.4]);
        let mut v = vec![3.0f32, 4.0];
        assert_eq!(clip_l2(&mut v, 1.0).unwrap(), 5.0);
        assert!(l2_norm(&v) <= 1.0 && l2_norm(&v) > 0.99999);
        assert!((v[0] / v[1] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn clip_rejects_nan_and_bad_norms() {
        assert!(clip_l2(&mut [f32::NAN], 1.0)
            .unwrap_err()
            .to_string()
            .contains("update"));
        assert!(clip_l2(&mut [1.0], 0.0)
            .unwrap_err()
            .to_string()
            .contains("clip_norm"));
        assert!(clip_l2(&mut [1.0], f64::NAN)
            .unwrap_err()
            .to_string()
            .contains("clip_norm"));
    }

    #[test]
    fn without_noise_the_round_is_the_mean_of_clipped_updates() {
        let mut dp = DpFedAvg::new(fixed(0.0, 1.0), 0).unwrap();
        let a = [3.0f32, 4.0];
        let b = [0.1f32, 0.0];
        let r = dp.aggregate(&[&a, &b]).unwrap();
        assert!((r.sum[0] - 0.7).abs() < 1e-5 && (r.sum[1] - 0.8).abs() < 1e-5);
        assert!((r.mean[0] - 0.35).abs() < 1e-5);
        assert_eq!(r.clip_norm, 1.0);
        assert_eq!(r.next_clip_norm, 1.0);
    }

    #[test]
    fn adaptive_update_noise_is_above_z_and_needs_enough_count_noise() {
        let cfg = DpConfig {
            noise_multiplier: 1.0,
            clipping: Clipping::Adaptive(AdaptiveClipping::default()),
            noise: NoisePlacement::Server,
        };
        let dp = DpFedAvg::new(cfg, 0).unwrap();
        // m = 100: σ_b = 5, z_Δ = (1 − 1/100)^(−1/2).
        let z = dp.update_noise_multiplier(100).unwrap();
        assert!((z - (0.99f64).powf(-0.5)).abs() < 1e-12);
        // m = 10: σ_b = 0.5, 2σ_b = 1 = z: not enough.
        let e = dp.update_noise_multiplier(10).unwrap_err();
        assert!(e.to_string().contains("clipped_count_stddev"));
    }

    #[test]
    fn adaptive_with_local_noise_is_refused() {
        let cfg = DpConfig {
            noise_multiplier: 1.0,
            clipping: Clipping::Adaptive(AdaptiveClipping::default()),
            noise: NoisePlacement::Local,
        };
        assert!(DpFedAvg::new(cfg, 0)
            .unwrap_err()
            .to_string()
            .contains("clipping"));
    }
}
