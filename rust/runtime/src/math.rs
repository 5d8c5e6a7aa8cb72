//! `exp` and `tanh` in plain `core` arithmetic (no `libm` in `no_std`).

const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
const LOG2E: f32 = core::f32::consts::LOG2_E;

/// `e^x` for `f32`, relative error below 2e-7 over the finite range; 0 below -87.3 and
/// infinity above 88.7.
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
    // x = k ln2 + r, |r| <= ln2 / 2.
    let t = x * LOG2E;
    let k = if t >= 0.0 { (t + 0.5) as i32 } else { (t - 0.5) as i32 };
    let kf = k as f32;
    let r = (x - kf * LN2_HI) - kf * LN2_LO;
    // e^r by its Taylor series to r^7 (error < 1e-8 on |r| <= 0.347).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // Scale by 2^k in two halves so 2^k itself never leaves f32's normal range.
    let k1 = k / 2;
    let k2 = k - k1;
    p * f32::from_bits(((k1 + 127) as u32) << 23) * f32::from_bits(((k2 + 127) as u32) << 23)
}

/// `tanh(x) = 1 − 2 / (e^{2x} + 1)`, the same composite the trainer uses, absolute error below
/// 3e-7.
#[inline]
pub fn tanh(x: f32) -> f32 {
    let e = exp((2.0 * x).clamp(-30.0, 30.0));
    1.0 - 2.0 / (e + 1.0)
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
        let mut x = -20.0f32;
        while x < 20.0 {
            worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
            x += 0.00113;
        }
        assert!(worst < 3e-7, "worst absolute error {worst}");
    }
}
