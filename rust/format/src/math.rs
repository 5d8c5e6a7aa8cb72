//! `exp` and `tanh` in plain `core` arithmetic (no `libm` in `no_std`), shared by the trainer's
//! fused layer op and the node runtime so both compute the same activation. Branch-free in the
//! inner part, so a loop over a slice of them vectorizes.

const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5 · 2²³: adding it rounds an f32 below 2²² to an integer, left in the low mantissa bits.
const SHIFT: f32 = 12_582_912.0;

/// `e^x` for `x` in [−87.3, 88.7] (the caller clamps): `x = n ln 2 + r` with `|r| ≤ ln 2 / 2`,
/// `e^r` by its Taylor series to `r⁷` (error below 1e-8), scaled by `2ⁿ` in two halves so each
/// stays in f32's normal range. No branch.
#[inline]
fn exp_in_range(x: f32) -> f32 {
    let k = x * core::f32::consts::LOG2_E + SHIFT;
    let n = k - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let n = k.to_bits() as i32 - SHIFT.to_bits() as i32;
    let n1 = n >> 1;
    let n2 = n - n1;
    p * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23)
}

/// `e^x` for `f32`, relative error below 2e-7 over the finite range; 0 below −87.3 and
/// infinity above 88.7; NaN stays NaN.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > 88.72 {
        return f32::INFINITY;
    }
    if x < -87.33 {
        return 0.0;
    }
    exp_in_range(x)
}

/// `tanh(x) = 1 − 2 / (e^{2x} + 1)`, `2x` clamped to [−30, 30] (tanh is ±1 in f32 beyond);
/// absolute error below 3e-7; NaN stays NaN (a select, so loops over it still vectorize).
#[inline]
pub fn tanh(x: f32) -> f32 {
    let y = 1.0 - 2.0 / (exp_in_range((2.0 * x).clamp(-30.0, 30.0)) + 1.0);
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(200.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_matches_std() {
        let mut worst = 0.0f64;
        for i in -2_000_000..=2_000_000 {
            let x = i as f32 * 1e-5; // [−20, 20]
            worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst < 3e-7, "worst absolute error {worst}");
        let edges = [(0.0f32, 0.0f32), (1e-30, 0.0), (50.0, 1.0), (-50.0, -1.0), (f32::INFINITY, 1.0), (f32::NEG_INFINITY, -1.0), (f32::MAX, 1.0), (f32::MIN, -1.0)];
        for (x, want) in edges {
            assert!((tanh(x) - want).abs() < 3e-7, "tanh({x}) = {}", tanh(x));
        }
        assert!(tanh(f32::NAN).is_nan());
    }
}
