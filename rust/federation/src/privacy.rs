//! `[privacy]` and `[secagg]` in a federation: DP-FedAvg (clipping, Gaussian noise, the RDP
//! accountant's ε per round) and secure aggregation, from `meshrl-privacy`.

use meshrl_fl::Rule;
use meshrl_privacy::dp::{add_gaussian_noise, l2_sensitivity, seeded_rng, AdaptiveClipping, OutputBound};
use meshrl_privacy::{
    clip_l2, secure_sum, Clipping, DpConfig, DpFedAvg, Dropouts, NoisePlacement, RdpAccountant, SecAggConfig,
};
use serde::{Deserialize, Serialize};

use crate::FederationError;

/// Differential privacy (`[privacy]`): each update clipped to L2 norm `clip_norm`, Gaussian
/// noise of standard deviation `noise_multiplier × sensitivity` on the aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// z: noise over the aggregate's L2 sensitivity (> 0).
    pub noise_multiplier: f64,
    /// C: the clip norm (the first round's C under adaptive clipping), in update units.
    pub clip_norm: f64,
    /// Adaptive clipping (Andrew et al. 2021; FedAvg only): C tracks `target_quantile` of the
    /// update norms with geometric rate `clip_learning_rate`.
    pub adaptive: bool,
    pub target_quantile: f64,
    pub clip_learning_rate: f64,
    /// δ of the (ε, δ) guarantee reported per round.
    pub delta: f64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            noise_multiplier: 1.0,
            clip_norm: 0.1,
            adaptive: false,
            target_quantile: 0.5,
            clip_learning_rate: 0.2,
            delta: 1e-5,
        }
    }
}

/// Secure aggregation (`[secagg]`): the coordinator learns only the sum of the updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecAggSection {
    /// t: shares needed to unmask; 0 takes ⌈2n/3⌉ + 1 (capped at n) of a round's n updates.
    pub threshold: usize,
    /// Updates are clipped to [−clip_range, clip_range] per coordinate before quantization.
    pub clip_range: f32,
    /// Bits of the fixed-point ring (8..=64).
    pub modulus_bits: u32,
}

impl Default for SecAggSection {
    fn default() -> Self {
        SecAggSection {
            threshold: 0,
            clip_range: 1.0,
            modulus_bits: 32,
        }
    }
}

fn privacy_err(field: &str, e: meshrl_privacy::PrivacyError) -> FederationError {
    FederationError::config(field, e.to_string())
}

/// Checks `[privacy]` and `[secagg]` against the rule they must run with.
pub(crate) fn validate(
    privacy: Option<&PrivacyConfig>,
    secagg: Option<&SecAggSection>,
    rule: &str,
    nnm: bool,
) -> Result<(), FederationError> {
    if let Some(p) = privacy {
        dp_config(p, p.clip_norm, 2).validate().map_err(|e| privacy_err("privacy", e))?;
        if !(p.noise_multiplier > 0.0 && p.noise_multiplier.is_finite()) {
            return Err(FederationError::config(
                "privacy.noise_multiplier",
                format!("must be > 0 (the accountant needs noise), got {}", p.noise_multiplier),
            ));
        }
        if !(p.delta > 0.0 && p.delta < 1.0) {
            return Err(FederationError::config("privacy.delta", format!("must be in (0, 1), got {}", p.delta)));
        }
        if p.adaptive && rule != "fedavg" {
            return Err(FederationError::config(
                "privacy.adaptive",
                format!("adaptive clipping runs with `fedavg` only (its clipped-count estimate is a mean), not `{rule}`"),
            ));
        }
    }
    if let Some(s) = secagg {
        if rule != "fedavg" || nnm {
            return Err(FederationError::config(
                "secagg",
                format!(
                    "secure aggregation gives the coordinator only the sum of the updates; `{rule}`{} needs \
                     each update. Use rule = \"fedavg\" with [secagg], or drop [secagg]",
                    if nnm { " after NNM" } else { "" }
                ),
            ));
        }
        if !(s.clip_range > 0.0 && s.clip_range.is_finite()) {
            return Err(FederationError::config("secagg.clip_range", format!("must be > 0, got {}", s.clip_range)));
        }
        if !(8..=64).contains(&s.modulus_bits) {
            return Err(FederationError::config("secagg.modulus_bits", format!("must be in 8..=64, got {}", s.modulus_bits)));
        }
    }
    Ok(())
}

/// DP-FedAvg's settings for a round of `clients` updates. The noise on the count of unclipped
/// updates is σ_b = max(m/20, z): Andrew et al.'s m/20, raised to z where m is small, because
/// the update's noise z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) needs σ_b > z/2.
fn dp_config(p: &PrivacyConfig, clip_norm: f64, clients: usize) -> DpConfig {
    DpConfig {
        noise_multiplier: p.noise_multiplier,
        clipping: if p.adaptive {
            Clipping::Adaptive(AdaptiveClipping {
                initial_clip_norm: clip_norm,
                target_unclipped_quantile: p.target_quantile,
                learning_rate: p.clip_learning_rate,
                clipped_count_stddev: Some((clients as f64 / 20.0).max(p.noise_multiplier)),
            })
        } else {
            Clipping::Fixed { clip_norm }
        },
        noise: NoisePlacement::Server,
    }
}

/// What privacy did to one round's aggregate.
pub(crate) struct Private {
    pub aggregate: Vec<f32>,
    /// C for the next round.
    pub next_clip_norm: f64,
}

/// Aggregates `rows` under `[privacy]` and/or `[secagg]`: FedAvg through DP-FedAvg (clipped,
/// noised sum over n) or a robust rule on clipped rows plus noise scaled to its sensitivity;
/// with secure aggregation the sum comes from the SecAgg protocol.
#[allow(clippy::too_many_arguments)]
pub(crate) fn aggregate(
    privacy: Option<&PrivacyConfig>,
    secagg: Option<&SecAggSection>,
    rule: &Rule,
    rule_name: &str,
    assumed_byzantine: usize,
    trim_beta: f64,
    rows: &[&[f32]],
    clip_norm: f64,
    seed: u64,
    session: u64,
) -> Result<Private, String> {
    let n = rows.len();
    let d = rows.first().map_or(0, |r| r.len());
    let sum_of = |inputs: &[Vec<f32>]| -> Result<Vec<f32>, String> {
        match secagg {
            Some(s) => {
                let t = if s.threshold == 0 { (2 * n).div_ceil(3).saturating_add(1).min(n) } else { s.threshold };
                let mut cfg = SecAggConfig::new(n, t, d + inputs.first().map_or(0, |r| r.len() - d));
                cfg.quantization.clip_range = s.clip_range;
                cfg.quantization.modulus_bits = s.modulus_bits;
                cfg.session = session;
                let opt: Vec<Option<&[f32]>> = inputs.iter().map(|r| Some(r.as_slice())).collect();
                secure_sum(&opt, &cfg, &Dropouts::default(), seed).map(|o| o.sum).map_err(|e| format!("secure aggregation failed: {e}"))
            }
            None => {
                let mut sum = vec![0f64; inputs.first().map_or(0, |r| r.len())];
                for r in inputs {
                    for (s, x) in sum.iter_mut().zip(r) {
                        *s += *x as f64;
                    }
                }
                Ok(sum.into_iter().map(|x| x as f32).collect())
            }
        }
    };
    match (privacy, rule_name) {
        (None, _) => {
            // Secure aggregation alone: the mean from the secure sum (equal sample counts).
            let inputs: Vec<Vec<f32>> = rows.iter().map(|r| r.to_vec()).collect();
            let sum = sum_of(&inputs)?;
            Ok(Private { aggregate: sum.iter().map(|x| x / n as f32).collect(), next_clip_norm: clip_norm })
        }
        (Some(p), "fedavg") => {
            let mut dp = DpFedAvg::new(dp_config(p, clip_norm, n), seed).map_err(|e| e.to_string())?;
            let mut rng = seeded_rng(seed ^ 0xc11e);
            let contributions: Vec<Vec<f32>> = rows
                .iter()
                .map(|r| dp.client_contribution(r, n, &mut rng))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let sum = sum_of(&contributions)?;
            let round = dp.finish_round(&sum, n).map_err(|e| e.to_string())?;
            Ok(Private { aggregate: round.mean, next_clip_norm: round.next_clip_norm })
        }
        (Some(p), name) => {
            let clipped: Vec<Vec<f32>> = rows
                .iter()
                .map(|r| {
                    let mut v = r.to_vec();
                    clip_l2(&mut v, clip_norm).map(|_| v)
                })
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let refs: Vec<&[f32]> = clipped.iter().map(|r| r.as_slice()).collect();
            let mut out = rule.apply(&refs, None).map_err(|e| format!("aggregation failed: {e}"))?;
            let name = if name == "multi_krum" { "krum" } else { name };
            let bound = OutputBound::for_rule(name, n, assumed_byzantine, trim_beta).map_err(|e| e.to_string())?;
            let sigma = p.noise_multiplier * l2_sensitivity(bound, clip_norm).map_err(|e| e.to_string())?;
            add_gaussian_noise(&mut out, sigma, &mut seeded_rng(seed ^ 0x401e)).map_err(|e| e.to_string())?;
            Ok(Private { aggregate: out, next_clip_norm: clip_norm })
        }
    }
}

/// ε after `rounds` rounds of the subsampled Gaussian mechanism (RDP accountant).
pub(crate) fn epsilon(p: &PrivacyConfig, sample_rate: f64, rounds: u64) -> Result<f64, String> {
    let mut acc = RdpAccountant::new();
    acc.step(p.noise_multiplier, sample_rate, rounds).map_err(|e| e.to_string())?;
    acc.get_epsilon(p.delta).map_err(|e| e.to_string())
}
