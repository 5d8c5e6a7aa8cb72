//! Fixed-point quantization of `f32` inputs into `Z_{2^bits}` so that sums of up to `n`
//! inputs never wrap.
//!
//! Each value is clipped to `[−r, r]` and mapped to the nearest of `L + 1` levels,
//! `q = round((x + r) / s)` with step `s = 2r / L` and `L = ⌊(2^bits − 1) / n⌋`, so `q ∈ [0, L]`
//! and a sum of `k ≤ n` of them stays below `2^bits`. The sum dequantizes as `Σq·s − k·r`,
//! off the true sum of clipped values by at most `k·s/2` per coordinate (plus the f32
//! rounding of the result).

use crate::error::{check_finite, invalid, PrivacyError};
use crate::secagg::crypto::modulus_mask;

/// Quantization settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantization {
    /// r: inputs are clipped to `[−r, r]` per coordinate (> 0, in the inputs' units).
    pub clip_range: f32,
    /// The modulus is `2^modulus_bits`, 8..=64. 32 keeps a d = 10,000 vector at 40 kB.
    pub modulus_bits: u32,
}

impl Default for Quantization {
    fn default() -> Self {
        Self {
            clip_range: 1.0,
            modulus_bits: 32,
        }
    }
}

/// A [`Quantization`] resolved for `n` clients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantizer {
    clip_range: f64,
    bits: u32,
    levels: u64,
    step: f64,
}

impl Quantizer {
    /// Resolves `q` for sums of up to `num_clients` inputs.
    pub fn new(q: &Quantization, num_clients: usize) -> Result<Self, PrivacyError> {
        let r = q.clip_range;
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid(
                "clip_range",
                format!("must be finite and > 0, got {r}"),
            ));
        }
        if !(8..=64).contains(&q.modulus_bits) {
            return Err(invalid(
                "modulus_bits",
                format!("must be in 8..=64, got {}", q.modulus_bits),
            ));
        }
        let n = num_clients.max(1) as u64;
        let levels = modulus_mask(q.modulus_bits) / n;
        if levels < 1 {
            return Err(invalid(
                "modulus_bits",
                format!(
                    "2^{} is too small for sums of {num_clients} inputs",
                    q.modulus_bits
                ),
            ));
        }
        Ok(Self {
            clip_range: r as f64,
            bits: q.modulus_bits,
            levels,
            step: 2.0 * r as f64 / levels as f64,
        })
    }

    /// The modulus exponent.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// The quantization step `s` (input units).
    pub fn step(&self) -> f64 {
        self.step
    }

    /// The largest error of a dequantized sum of `count` inputs, per coordinate (input units).
    pub fn max_error(&self, count: usize) -> f64 {
        count as f64 * self.step / 2.0
    }

    /// Quantizes `x` (finite values; clipped to `[−r, r]`) into `out`.
    pub fn quantize(&self, x: &[f32], out: &mut [u64]) -> Result<(), PrivacyError> {
        check_finite("input", x)?;
        let r = self.clip_range;
        for (o, &v) in out.iter_mut().zip(x) {
            let v = (v as f64).clamp(-r, r);
            *o = (((v + r) / self.step).round() as u64).min(self.levels);
        }
        Ok(())
    }

    /// Dequantizes a sum of `count` quantized inputs (values in `Z_{2^bits}`).
    pub fn dequantize_sum(&self, sum: &[u64], count: usize) -> Vec<f32> {
        let offset = count as f64 * self.clip_range;
        sum.iter()
            .map(|&s| (s as f64 * self.step - offset) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn extremes_map_to_the_ends_and_sums_never_wrap() {
        let q = Quantizer::new(
            &Quantization {
                clip_range: 2.0,
                modulus_bits: 16,
            },
            10,
        )
        .unwrap();
        let mut out = [0u64; 4];
        q.quantize(&[-5.0, -2.0, 2.0, 9.0], &mut out).unwrap();
        // L = ⌊(2^16 − 1)/10⌋ = 6553 levels: ten inputs at the top still fit in 16 bits.
        assert_eq!(out, [0, 0, 6553, 6553]);
        let top = [6553u64; 10]
            .iter()
            .fold(0u64, |a, &q| (a + q) & modulus_mask(16));
        assert_eq!(top, 65530);
    }

    #[test]
    fn bad_settings_name_the_parameter() {
        let e = |q: Quantization| Quantizer::new(&q, 100).unwrap_err().to_string();
        assert!(e(Quantization {
            clip_range: 0.0,
            modulus_bits: 32
        })
        .contains("clip_range"));
        assert!(e(Quantization {
            clip_range: f32::NAN,
            modulus_bits: 32
        })
        .contains("clip_range"));
        assert!(e(Quantization {
            clip_range: 1.0,
            modulus_bits: 65
        })
        .contains("modulus_bits"));
        let q = Quantizer::new(&Quantization::default(), 3).unwrap();
        assert!(q
            .quantize(&[f32::NAN], &mut [0])
            .unwrap_err()
            .to_string()
            .contains("input"));
    }

    proptest! {
        #[test]
        fn sum_error_within_bound(xs in proptest::collection::vec(-1.5f32..1.5, 1..40), bits in 16u32..=64) {
            let q = Quantizer::new(&Quantization { clip_range: 1.0, modulus_bits: bits }, 40).unwrap();
            let mut sum = 0u64;
            let mut truth = 0f64;
            for &x in &xs {
                let mut o = [0u64];
                q.quantize(&[x], &mut o).unwrap();
                sum = sum.wrapping_add(o[0]) & modulus_mask(bits);
                truth += (x as f64).clamp(-1.0, 1.0);
            }
            let got = q.dequantize_sum(&[sum], xs.len())[0] as f64;
            // f32 output rounding: 2^-24 relative; u64 → f64 rounding is negligible here.
            let bound = q.max_error(xs.len()) + 1e-6 * (1.0 + truth.abs());
            prop_assert!((got - truth).abs() <= bound, "{} vs {} (bound {})", got, truth, bound);
        }
    }
}
