//! The L2 sensitivity of an aggregation rule's output when every input was clipped to `C`:
//! what noise after a robust rule must be calibrated to (see `docs/privacy.md`).

use crate::error::{check_positive, invalid, PrivacyError};

/// How an aggregation rule's output is bounded when every input has L2 norm ≤ `C`; its L2
/// sensitivity follows ([`l2_sensitivity`]). See `docs/privacy.md` for which rule is which.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputBound {
    /// The sum of the clipped updates: adding or removing one client moves it by ≤ `C`.
    Sum,
    /// The mean over a fixed, public number of clients `m`: ≤ `C / m`.
    MeanOf { num_clients: usize },
    /// The output is a convex combination of the clipped inputs (Krum, multi-Krum, geometric
    /// median, centered clipping from a centre inside the ball, NNM then one of these): it
    /// stays in the ball of radius `C`, so any change moves it by ≤ `2C`.
    ConvexCombination,
    /// Per coordinate, the output is the mean of (or, for the median, bounded by) `kept` of
    /// `of` values (median: `kept = ⌈n/2⌉, of = n`; trimmed mean: `kept = n − 2⌊βn⌋, of = n`;
    /// Bulyan: `kept = θ − 2f, of = θ = n − 2f`). Cauchy–Schwarz bounds its norm by
    /// `C·√(of/kept)`, so any change moves it by ≤ `2C·√(of/kept)`.
    CoordinateWise { kept: usize, of: usize },
}

impl OutputBound {
    /// The bound of a `meshrl-fl` rule by its name (`fedavg` unweighted, `krum`,
    /// `geometric_median`, `centered_clipping`, `median`, `trimmed_mean`, `bulyan`) over
    /// `num_clients` clipped updates, `num_byzantine` (Krum, Bulyan's `f`) and `beta` (trimmed
    /// mean). For the coordinate-wise rules the worse of `n` and `n + 1` clients is taken, so
    /// the bound covers adding or removing a client. NNM keeps every mixed row in the ball, so
    /// NNM followed by a rule has that rule's bound.
    pub fn for_rule(
        rule: &str,
        num_clients: usize,
        num_byzantine: usize,
        beta: f64,
    ) -> Result<Self, PrivacyError> {
        let n = num_clients;
        if n == 0 {
            return Err(invalid("num_clients", "must be >= 1"));
        }
        let coordinate = |kept_of: &dyn Fn(usize) -> Result<(usize, usize), PrivacyError>| {
            let (a, b) = (kept_of(n)?, kept_of(n + 1)?);
            let worse = if a.1 * b.0 >= b.1 * a.0 { a } else { b };
            Ok(OutputBound::CoordinateWise {
                kept: worse.0,
                of: worse.1,
            })
        };
        match rule {
            "fedavg" => Ok(OutputBound::MeanOf { num_clients: n }),
            "krum" | "geometric_median" | "centered_clipping" => Ok(OutputBound::ConvexCombination),
            "median" => coordinate(&|n| Ok((n.div_ceil(2), n))),
            "trimmed_mean" => {
                if !(0.0..0.5).contains(&beta) {
                    return Err(invalid("beta", format!("must be in [0, 0.5), got {beta}")));
                }
                coordinate(&|n| {
                    let k = (beta * n as f64) as usize;
                    Ok((n - 2 * k, n))
                })
            }
            "bulyan" => coordinate(&|n| {
                let f = num_byzantine;
                if n < 4 * f + 3 {
                    return Err(invalid(
                        "num_byzantine",
                        format!("bulyan needs n >= 4f + 3, got n = {n}, f = {f}"),
                    ));
                }
                Ok((n - 4 * f, n - 2 * f))
            }),
            other => Err(invalid(
                "rule",
                format!("no sensitivity bound for `{other}`"),
            )),
        }
    }
}

/// The L2 sensitivity (add or remove one client) of a rule's output whose inputs were
/// clipped to `clip_norm`, by the bound `bound`. The noise to add is `z ×` this, and the
/// accountant is stepped with `z`.
pub fn l2_sensitivity(bound: OutputBound, clip_norm: f64) -> Result<f64, PrivacyError> {
    check_positive("clip_norm", clip_norm)?;
    Ok(match bound {
        OutputBound::Sum => clip_norm,
        OutputBound::MeanOf { num_clients } => {
            if num_clients == 0 {
                return Err(invalid("num_clients", "must be >= 1"));
            }
            clip_norm / num_clients as f64
        }
        OutputBound::ConvexCombination => 2.0 * clip_norm,
        OutputBound::CoordinateWise { kept, of } => {
            if kept == 0 || kept > of {
                return Err(invalid("kept", format!("must be in 1..={of}, got {kept}")));
            }
            2.0 * clip_norm * (of as f64 / kept as f64).sqrt()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::l2_norm;

    #[test]
    fn sensitivities() {
        assert_eq!(l2_sensitivity(OutputBound::Sum, 2.0).unwrap(), 2.0);
        assert_eq!(
            l2_sensitivity(OutputBound::MeanOf { num_clients: 4 }, 2.0).unwrap(),
            0.5
        );
        assert_eq!(
            l2_sensitivity(OutputBound::ConvexCombination, 2.0).unwrap(),
            4.0
        );
        let med = l2_sensitivity(OutputBound::CoordinateWise { kept: 5, of: 10 }, 1.0).unwrap();
        assert!((med - 2.0 * 2f64.sqrt()).abs() < 1e-12);
        assert!(l2_sensitivity(OutputBound::CoordinateWise { kept: 0, of: 10 }, 1.0).is_err());
    }

    #[test]
    fn rule_bounds_take_the_worse_client_count() {
        // Median of 10: kept 5 of 10; of 11: kept 6 of 11 (ratio 1.83 < 2): 5 of 10 is worse.
        assert_eq!(
            OutputBound::for_rule("median", 10, 0, 0.0).unwrap(),
            OutputBound::CoordinateWise { kept: 5, of: 10 }
        );
        assert_eq!(
            OutputBound::for_rule("median", 9, 0, 0.0).unwrap(),
            OutputBound::CoordinateWise { kept: 5, of: 10 }
        );
        assert_eq!(
            OutputBound::for_rule("trimmed_mean", 10, 0, 0.2).unwrap(),
            OutputBound::CoordinateWise { kept: 6, of: 10 }
        );
        assert_eq!(
            OutputBound::for_rule("bulyan", 11, 2, 0.0).unwrap(),
            OutputBound::CoordinateWise { kept: 3, of: 7 }
        );
        assert_eq!(
            OutputBound::for_rule("krum", 11, 2, 0.0).unwrap(),
            OutputBound::ConvexCombination
        );
        assert!(OutputBound::for_rule("bulyan", 10, 2, 0.0)
            .unwrap_err()
            .to_string()
            .contains("num_byzantine"));
        assert!(OutputBound::for_rule("mystery", 10, 0, 0.0)
            .unwrap_err()
            .to_string()
            .contains("rule"));
    }

    /// The bound is needed and holds: the coordinate-wise median of three clipped vectors
    /// can leave the ball of radius C (so `ConvexCombination` would be wrong for it), but not
    /// the ball of radius C·sqrt(of/kept).
    #[test]
    fn median_can_leave_the_clip_ball_but_not_its_bound() {
        let a = std::f32::consts::FRAC_1_SQRT_2; // each row has norm 1 = C
        let rows = [[a, a, 0.0], [a, 0.0, a], [0.0, a, a]];
        let med: Vec<f32> = (0..3)
            .map(|j| {
                let mut col: Vec<f32> = rows.iter().map(|r| r[j]).collect();
                col.sort_by(f32::total_cmp);
                col[1]
            })
            .collect();
        let norm = l2_norm(&med);
        assert!(norm > 1.2, "median norm {norm}");
        let OutputBound::CoordinateWise { kept, of } =
            OutputBound::for_rule("median", 3, 0, 0.0).unwrap()
        else {
            panic!("median is coordinate-wise")
        };
        assert!(norm <= (of as f64 / kept as f64).sqrt() + 1e-6);
        assert!((norm - 1.5f64.sqrt()).abs() < 1e-6); // tight at n = 3
    }
}
