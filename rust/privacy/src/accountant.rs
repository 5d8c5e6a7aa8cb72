//! Rényi-DP accounting of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang
//! 2019), computed as Google's `dp-accounting` 0.6 `RdpAccountant` does, with Opacus's names.
//!
//! One step of DP-SGD or DP-FedAvg releases `f(S) + N(0, σ²Δ²)` where `S` holds each record
//! (client) independently with probability `q` (the sample rate) and `Δ` is `f`'s L2
//! sensitivity; `σ` is the noise multiplier. Its RDP at order `α` is `log(A_α) / (α − 1)`, with
//! `A_α` summed exactly for integer `α` and by the two-sided series of Mironov et al. §3.3 for
//! fractional `α` (`dp-accounting`'s `_compute_log_a_int` / `_compute_log_a_frac`, including
//! its stopping rule: an order whose series has not converged after 1,000 terms counts as
//! infinite and is never the optimum). RDP adds up over steps.
//!
//! The conversion to (ε, δ) is the one `dp-accounting` 0.6 uses (`compute_epsilon`): the
//! improved bound of Canonne, Kamath & Steinke 2020 (Prop. 12; also Asoodeh et al. 2020,
//! eq. 20, and Balle et al. 2020 Thm. 21),
//! `ε = min_α [ rdp_α + log((α − 1)/α) − (log δ + log α)/(α − 1) ]`, over orders `α > 1.01`;
//! an order whose RDP is below `−log(1 − δ²)` gives ε = 0. Opacus 1.6 uses the same formula
//! but a fractional-order series that stops at an absolute (not relative) threshold and other
//! default orders, hence its slightly different numbers (6.6137 against 6.6208 at
//! σ = 1.1, q = 0.1, 100 steps, δ = 1e-5).

use crate::error::{check_positive, invalid, PrivacyError};

/// `dp-accounting`'s `DEFAULT_RDP_ORDERS`: 1.1, 1.2, …, 10.9, then 11, 12, …, 63, then 128,
/// 256, 512, 1024 (156 orders).
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + x as f64 / 10.0).collect();
    orders.extend((11..64).map(|a| a as f64));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// `dp-accounting`'s cap on the terms of the fractional-order series.
const MAX_STEPS_LOG_A_FRAC: usize = 1000;

/// `log(exp(x) + exp(y))`, stable.
fn log_add(x: f64, y: f64) -> f64 {
    let (a, b) = if x < y { (x, y) } else { (y, x) };
    if a == f64::NEG_INFINITY {
        return b;
    }
    (a - b).exp().ln_1p() + b
}

/// `log |Γ(x)|`.
fn ln_gamma(x: f64) -> f64 {
    libm::lgamma_r(x).0
}

/// `log |C(n, k)|` through `log Γ`, valid for fractional `n` (as SciPy's `gammaln`).
fn log_comb(n: f64, k: f64) -> f64 {
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
}

/// `log(erfc(x))`, accurate far into the tail where `erfc` underflows.
fn log_erfc(x: f64) -> f64 {
    if x < 20.0 {
        libm::erfc(x).ln()
    } else {
        // The Laurent series of log(erfc(x)) at infinity (as dp-accounting's fallback); its
        // first omitted term is below 1e-11 at x = 20.
        let x2 = x * x;
        -std::f64::consts::PI.ln() / 2.0 - x.ln() - x2 - 0.5 / x2 + 0.625 / (x2 * x2)
            - 37.0 / 24.0 / (x2 * x2 * x2)
            + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
    }
}

/// `log(A_α)` for integer `α`, `0 < q < 1`.
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let log1mq = (-q).ln_1p();
    let a = alpha as f64;
    (0..=alpha).fold(f64::NEG_INFINITY, |log_a, i| {
        let i = i as f64;
        let coef = log_comb(a, i) + i * q.ln() + (a - i) * log1mq;
        log_add(log_a, coef + (i * i - i) / (2.0 * sigma * sigma))
    })
}

/// `log(A_α)` for fractional `α`, `0 < q < 1`: both halves of the integral (Mironov et al.
/// §3.3), stopped as `dp-accounting` stops; `+∞` when the series does not settle.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let log1mq = (-q).ln_1p();
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    for i in 0..MAX_STEPS_LOG_A_FRAC {
        let i = i as f64;
        let coef = log_comb(alpha, i);
        let j = alpha - i;
        let log_t0 = coef + i * q.ln() + j * log1mq;
        let log_t1 = coef + j * q.ln() + i * log1mq;
        let log_e0 = 0.5f64.ln() + log_erfc((i - z0) / sqrt2_sigma);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / sqrt2_sigma);
        let log_s0 = log_t0 + (i * i - i) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        last_s0 = log_s0;
        last_s1 = log_s1;
    }
    f64::INFINITY
}

fn check_sample_rate(q: f64) -> Result<(), PrivacyError> {
    if q > 0.0 && q <= 1.0 {
        Ok(())
    } else {
        Err(invalid(
            "sample_rate",
            format!("must be in (0, 1], got {q}"),
        ))
    }
}

fn check_noise_multiplier(sigma: f64) -> Result<(), PrivacyError> {
    if sigma.is_finite() && sigma >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            "noise_multiplier",
            format!("must be finite and >= 0, got {sigma}"),
        ))
    }
}

fn check_delta(delta: f64) -> Result<(), PrivacyError> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(invalid("delta", format!("must be in (0, 1), got {delta}")))
    }
}

fn check_orders(orders: &[f64]) -> Result<(), PrivacyError> {
    if orders.is_empty() {
        return Err(invalid("orders", "is empty"));
    }
    match orders.iter().find(|a| !(a.is_finite() && **a > 1.0)) {
        Some(a) => Err(invalid(
            "orders",
            format!("every order must be finite and > 1, got {a}"),
        )),
        None => Ok(()),
    }
}

/// RDP of one step of the Poisson-subsampled Gaussian mechanism at order `alpha`, in nats.
///
/// Never above the full-batch Gaussian's `α / 2σ²`: subsampling cannot cost privacy (joint
/// convexity of `exp((α − 1) D_α)`), while the fractional-order series sums the absolute values
/// of its alternating terms (as `dp-accounting` does) and so overshoots when `q` is near 1
/// and `σ` is small. Without the cap, ε could fall when `q` rises to 1.
fn rdp_one_order(q: f64, sigma: f64, alpha: f64) -> f64 {
    let full_batch = alpha / (2.0 * sigma * sigma);
    if sigma == 0.0 {
        f64::INFINITY
    } else if q == 1.0 {
        full_batch
    } else if alpha.fract() == 0.0 {
        (log_a_int(q, sigma, alpha as u64) / (alpha - 1.0)).min(full_batch)
    } else {
        (log_a_frac(q, sigma, alpha) / (alpha - 1.0)).min(full_batch)
    }
}

/// RDP (nats) at each of `orders` after `steps` steps of the Poisson-subsampled Gaussian
/// mechanism with noise multiplier `noise_multiplier` (noise std / L2 sensitivity) and sample
/// rate `sample_rate` (probability that a record joins a step). Opacus's `compute_rdp`.
pub fn compute_rdp(
    noise_multiplier: f64,
    sample_rate: f64,
    steps: u64,
    orders: &[f64],
) -> Result<Vec<f64>, PrivacyError> {
    check_noise_multiplier(noise_multiplier)?;
    check_sample_rate(sample_rate)?;
    check_orders(orders)?;
    if steps == 0 {
        return Ok(vec![0.0; orders.len()]);
    }
    Ok(orders
        .iter()
        .map(|&a| steps as f64 * rdp_one_order(sample_rate, noise_multiplier, a))
        .collect())
}

/// The (ε, best order) of `rdp` (nats, one value per order) at `delta`, by the conversion the
/// module documentation gives. ε is `+∞` when no order gives a finite bound.
pub fn epsilon_from_rdp(
    orders: &[f64],
    rdp: &[f64],
    delta: f64,
) -> Result<(f64, f64), PrivacyError> {
    check_delta(delta)?;
    check_orders(orders)?;
    if orders.len() != rdp.len() {
        return Err(invalid(
            "rdp",
            format!("has {} values for {} orders", rdp.len(), orders.len()),
        ));
    }
    let mut best = (f64::INFINITY, orders[0]);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r.is_nan() {
            f64::INFINITY
        } else if r < 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    Ok((best.0.max(0.0), best.1))
}

/// One entry of an accountant's history: `steps` steps at one noise multiplier and sample rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AccountantStep {
    /// Noise standard deviation divided by the L2 sensitivity.
    pub noise_multiplier: f64,
    /// Probability that a record (client) takes part in a step, in (0, 1].
    pub sample_rate: f64,
    /// Number of steps.
    pub steps: u64,
}

/// An RDP accountant with Opacus's interface (`step`, `get_epsilon`, `get_privacy_spent`) and
/// `dp-accounting`'s orders and conversion.
#[derive(Clone, Debug)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
    history: Vec<AccountantStep>,
    /// Per-step RDP of the last (σ, q), so repeated identical steps cost one multiply.
    cache: Option<(f64, f64, Vec<f64>)>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl RdpAccountant {
    /// An accountant over [`default_orders`] with nothing spent.
    pub fn new() -> Self {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        Self {
            orders,
            rdp,
            history: Vec::new(),
            cache: None,
        }
    }

    /// An accountant over the given orders (each finite and > 1).
    pub fn with_orders(orders: Vec<f64>) -> Result<Self, PrivacyError> {
        check_orders(&orders)?;
        let rdp = vec![0.0; orders.len()];
        Ok(Self {
            orders,
            rdp,
            history: Vec::new(),
            cache: None,
        })
    }

    /// Records `steps` steps with noise multiplier `noise_multiplier` (noise std / L2
    /// sensitivity, ≥ 0; 0 means no privacy) and sample rate `sample_rate` in (0, 1].
    pub fn step(
        &mut self,
        noise_multiplier: f64,
        sample_rate: f64,
        steps: u64,
    ) -> Result<(), PrivacyError> {
        check_noise_multiplier(noise_multiplier)?;
        check_sample_rate(sample_rate)?;
        if steps == 0 {
            return Ok(()); // nothing released (and 0 × ∞ would poison the RDP with NaN)
        }
        let per_step = match &self.cache {
            Some((s, q, r)) if *s == noise_multiplier && *q == sample_rate => r.clone(),
            _ => {
                let r = compute_rdp(noise_multiplier, sample_rate, 1, &self.orders)?;
                self.cache = Some((noise_multiplier, sample_rate, r.clone()));
                r
            }
        };
        for (total, r) in self.rdp.iter_mut().zip(&per_step) {
            *total += steps as f64 * r;
        }
        match self.history.last_mut() {
            Some(last)
                if last.noise_multiplier == noise_multiplier && last.sample_rate == sample_rate =>
            {
                last.steps = last.steps.saturating_add(steps)
            }
            _ => self.history.push(AccountantStep {
                noise_multiplier,
                sample_rate,
                steps,
            }),
        }
        Ok(())
    }

    /// ε spent so far at `delta` in (0, 1).
    pub fn get_epsilon(&self, delta: f64) -> Result<f64, PrivacyError> {
        Ok(self.get_privacy_spent(delta)?.0)
    }

    /// (ε, the order α that gives it) spent so far at `delta` in (0, 1).
    pub fn get_privacy_spent(&self, delta: f64) -> Result<(f64, f64), PrivacyError> {
        epsilon_from_rdp(&self.orders, &self.rdp, delta)
    }

    /// The RDP orders α.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// The RDP spent so far at each order, in nats.
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    /// The steps recorded, consecutive identical (σ, q) merged.
    pub fn history(&self) -> &[AccountantStep] {
        &self.history
    }
}

/// ε at `delta` after `steps` steps at (`noise_multiplier`, `sample_rate`), default orders.
pub fn epsilon_for(
    noise_multiplier: f64,
    sample_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<f64, PrivacyError> {
    let orders = default_orders();
    let rdp = compute_rdp(noise_multiplier, sample_rate, steps, &orders)?;
    Ok(epsilon_from_rdp(&orders, &rdp, delta)?.0)
}

/// The smallest noise multiplier (to a relative 1e-6) whose ε after `steps` steps at
/// `sample_rate` stays ≤ `target_epsilon` at `delta`, found by bisection over default orders.
/// The returned value always meets the target (it is the upper end of the final bracket).
pub fn noise_multiplier_for(
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    steps: u64,
) -> Result<f64, PrivacyError> {
    check_positive("target_epsilon", target_epsilon)?;
    check_delta(delta)?;
    check_sample_rate(sample_rate)?;
    if steps == 0 {
        return Err(invalid("steps", "must be >= 1"));
    }
    let eps = |sigma: f64| epsilon_for(sigma, sample_rate, steps, delta);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while eps(hi)? > target_epsilon {
        lo = hi;
        hi *= 2.0;
        if hi > 1e6 {
            return Err(invalid(
                "target_epsilon",
                format!("{target_epsilon} needs a noise multiplier above 1e6 at this delta, sample_rate and steps"),
            ));
        }
    }
    for _ in 0..200 {
        if hi - lo <= 1e-6 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if eps(mid)? > target_epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_orders_match_dp_accounting() {
        let o = default_orders();
        assert_eq!(o.len(), 99 + 53 + 4);
        assert!((o[0] - 1.1).abs() < 1e-12 && (o[98] - 10.9).abs() < 1e-12);
        assert_eq!(o[99], 11.0);
        assert_eq!(*o.last().unwrap(), 1024.0);
    }

    #[test]
    fn log_erfc_is_continuous_where_the_series_takes_over() {
        let below = libm::erfc(19.999_999).ln();
        let above = log_erfc(20.0);
        assert!((below - above).abs() < 1e-4, "{below} vs {above}");
        assert!((log_erfc(-3.0) - libm::erfc(-3.0).ln()).abs() < 1e-15);
        assert!(log_erfc(40.0).is_finite());
    }

    #[test]
    fn full_batch_gaussian_is_alpha_over_two_sigma_squared() {
        let r = compute_rdp(2.0, 1.0, 3, &[2.0, 10.5]).unwrap();
        assert!((r[0] - 3.0 * 2.0 / 8.0).abs() < 1e-12);
        assert!((r[1] - 3.0 * 10.5 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn integer_and_fractional_series_agree_near_an_integer() {
        // RDP is continuous in α, so the fractional series just off an integer order must
        // come close to the exact binomial sum at it.
        let (q, s) = (0.05, 1.3);
        for a in [2u64, 3, 7, 20] {
            let exact = log_a_int(q, s, a) / (a as f64 - 1.0);
            let near = log_a_frac(q, s, a as f64 + 1e-7) / (a as f64 + 1e-7 - 1.0);
            assert!(
                (exact - near).abs() < 1e-5 * exact.abs().max(1e-9),
                "α={a}: {exact} vs {near}"
            );
        }
    }

    #[test]
    fn epsilon_is_zero_without_steps_and_infinite_without_noise() {
        let acc = RdpAccountant::new();
        assert_eq!(acc.get_epsilon(1e-5).unwrap(), 0.0);
        let mut acc = RdpAccountant::new();
        acc.step(0.0, 0.1, 0).unwrap();
        assert_eq!(acc.get_epsilon(1e-5).unwrap(), 0.0);
        assert!(acc.history().is_empty());
        acc.step(0.0, 0.1, 1).unwrap();
        assert!(acc.get_epsilon(1e-5).unwrap().is_infinite());
    }

    #[test]
    fn bad_arguments_name_the_parameter() {
        let mut acc = RdpAccountant::new();
        let msg = |e: PrivacyError| e.to_string();
        assert!(msg(acc.step(-1.0, 0.1, 1).unwrap_err()).contains("noise_multiplier"));
        assert!(msg(acc.step(f64::NAN, 0.1, 1).unwrap_err()).contains("noise_multiplier"));
        assert!(msg(acc.step(1.0, 0.0, 1).unwrap_err()).contains("sample_rate"));
        assert!(msg(acc.step(1.0, 1.5, 1).unwrap_err()).contains("sample_rate"));
        assert!(msg(acc.get_epsilon(0.0).unwrap_err()).contains("delta"));
        assert!(msg(acc.get_epsilon(1.0).unwrap_err()).contains("delta"));
        assert!(msg(RdpAccountant::with_orders(vec![0.5]).unwrap_err()).contains("orders"));
        assert!(
            msg(noise_multiplier_for(-1.0, 1e-5, 0.1, 10).unwrap_err()).contains("target_epsilon")
        );
        assert!(msg(noise_multiplier_for(1.0, 1e-5, 0.1, 0).unwrap_err()).contains("steps"));
    }

    #[test]
    fn history_merges_identical_steps_and_rdp_adds_up() {
        let mut acc = RdpAccountant::new();
        acc.step(1.1, 0.1, 40).unwrap();
        acc.step(1.1, 0.1, 60).unwrap();
        acc.step(2.0, 0.1, 1).unwrap();
        assert_eq!(acc.history().len(), 2);
        assert_eq!(acc.history()[0].steps, 100);
        let once = compute_rdp(1.1, 0.1, 100, acc.orders()).unwrap();
        let extra = compute_rdp(2.0, 0.1, 1, acc.orders()).unwrap();
        for ((t, a), b) in acc.rdp().iter().zip(&once).zip(&extra) {
            if a.is_finite() {
                assert!((t - a - b).abs() <= 1e-9 * t.abs());
            }
        }
    }
}
