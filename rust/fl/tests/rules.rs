use meshrl_fl::{aggregate, attacks, rules, FlError, OnInvalid, Rejection, Rule};
use proptest::prelude::*;

fn all_rules(f: usize) -> Vec<Rule> {
    vec![
        Rule::FedAvg,
        Rule::Krum {
            num_byzantine: f,
            num_selected: 1,
        },
        Rule::Krum {
            num_byzantine: f,
            num_selected: 3,
        },
        Rule::Median,
        Rule::TrimmedMean { beta: 0.2 },
        Rule::Bulyan { num_byzantine: f },
        Rule::GeometricMedian {
            nu: 1e-6,
            max_iter: 200,
            eps: 1e-9,
        },
        Rule::CenteredClipping {
            center: None,
            tau: 0.5,
            iterations: 3,
        },
    ]
}

fn matrix(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn rows(data: &[f32], d: usize) -> Vec<&[f32]> {
    data.chunks(d).collect()
}

#[test]
fn every_rule_returns_the_input_when_all_clients_agree() {
    let d = 700;
    let one = matrix(1, d, 3);
    let data = one.repeat(11);
    let r = rows(&data, d);
    for rule in all_rules(2) {
        let out = rule.apply(&r, None).unwrap();
        for (a, b) in out.iter().zip(&one) {
            assert!((a - b).abs() < 1e-6, "{rule:?}: {a} vs {b}");
        }
    }
    let mixed = rules::nnm(&r, 2).unwrap();
    assert!(mixed
        .iter()
        .zip(data.iter())
        .all(|(a, b)| (a - b).abs() < 1e-6));
}

#[test]
fn fedavg_weights_by_example_counts() {
    let data = vec![0.0f32, 10.0, 4.0, 20.0];
    let out = rules::fedavg(&rows(&data, 2), Some(&[3.0, 1.0])).unwrap();
    assert_eq!(out, vec![1.0, 12.5]);
    assert!(rules::fedavg(&rows(&data, 2), Some(&[0.0, 0.0])).is_err());
}

#[test]
fn median_matches_numpy_on_odd_and_even_counts() {
    let data = vec![3.0f32, 1.0, 2.0, 5.0];
    assert_eq!(rules::median(&rows(&data, 1)).unwrap(), vec![2.5]);
    assert_eq!(rules::median(&rows(&data[..3], 1)).unwrap(), vec![2.0]);
    // Trimmed mean with beta 0.25 of 4 cuts one from each end: mean(2, 3).
    assert_eq!(
        rules::trimmed_mean(&rows(&data, 1), 0.25).unwrap(),
        vec![2.5]
    );
}

#[test]
fn krum_picks_an_honest_client_and_rejects_too_many_byzantine() {
    let (h, f, d) = (12, 3, 50);
    let honest = matrix(h, d, 1);
    let byz = attacks::sign_flip(&rows(&honest, d), f, 10.0).unwrap();
    let mut all = honest.clone();
    all.extend(&byz);
    let r = rows(&all, d);
    let out = rules::krum(&r, f, 1, None).unwrap();
    assert!(
        r[..h].iter().any(|row| *row == &out[..]),
        "krum chose a Byzantine update"
    );
    let e = rules::krum(&r[..8], 3, 1, None).unwrap_err();
    assert!(
        matches!(e, FlError::TooFewClients { rule: "krum", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("n > 2f + 2"));
    let e = rules::bulyan(&r[..14], 3).unwrap_err();
    assert!(e.to_string().contains("n >= 4f + 3"), "{e}");
    assert!(rules::trimmed_mean(&r, 0.5)
        .unwrap_err()
        .to_string()
        .contains("beta"));
    assert!(rules::krum(&r, 1, 0, None)
        .unwrap_err()
        .to_string()
        .contains("num_selected"));
}

#[test]
fn bad_clients_are_reported_or_dropped() {
    let d = 10;
    let mut data = matrix(6, d, 2);
    data[2 * d + 4] = f32::NAN;
    data[4 * d] = f32::INFINITY;
    let mut r = rows(&data, d);
    let short = vec![0.0f32; 9];
    r.push(&short);
    let e = aggregate(&Rule::Median, &r, None, d, OnInvalid::Error).unwrap_err();
    let FlError::InvalidClients(report) = &e else {
        panic!("{e}")
    };
    assert_eq!(report.accepted, vec![0, 1, 3, 5]);
    assert_eq!(
        report.rejected[0],
        (2, Rejection::NonFinite { count: 1, first: 4 })
    );
    assert_eq!(
        report.rejected[2],
        (
            6,
            Rejection::WrongLength {
                got: 9,
                expected: 10
            }
        )
    );
    assert!(
        e.to_string()
            .contains("client 2: 1 non-finite values (first at coordinate 4)"),
        "{e}"
    );

    let (out, report) = aggregate(&Rule::Median, &r, None, d, OnInvalid::Drop).unwrap();
    let kept: Vec<&[f32]> = report.accepted.iter().map(|&i| r[i]).collect();
    assert_eq!(out, rules::median(&kept).unwrap());
    let w = [1.0f32, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0];
    let (_, report) = aggregate(&Rule::FedAvg, &r, Some(&w), d, OnInvalid::Drop).unwrap();
    assert!(report.rejected.contains(&(3, Rejection::BadWeight)));
    let e = aggregate(&Rule::FedAvg, &r[2..3], None, d, OnInvalid::Drop).unwrap_err();
    assert!(e.to_string().contains("no valid client"), "{e}");
}

#[test]
fn robust_rules_hold_under_attack_and_fedavg_breaks() {
    let (h, f, d) = (40, 10, 200);
    // Honest updates around 1 with spread 0.1, so flipping their sign is a real attack.
    let honest: Vec<f32> = matrix(h, d, 9).iter().map(|x| 1.0 + 0.1 * x).collect();
    let hr = rows(&honest, d);
    let mean = rules::fedavg(&hr, None).unwrap();
    let dist = |v: &[f32]| {
        v.iter()
            .zip(&mean)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let byz = attacks::sign_flip(&hr, f, 100.0).unwrap();
    let mut all = honest.clone();
    all.extend(&byz);
    let r = rows(&all, d);
    let broken = dist(&Rule::FedAvg.apply(&r, None).unwrap());
    for rule in [
        Rule::Median,
        Rule::TrimmedMean { beta: 0.25 },
        Rule::Krum {
            num_byzantine: f,
            num_selected: 1,
        },
        Rule::Bulyan { num_byzantine: f },
        Rule::GeometricMedian {
            nu: 1e-6,
            max_iter: 200,
            eps: 1e-8,
        },
    ] {
        let held = dist(&rule.apply(&r, None).unwrap());
        assert!(held * 10.0 < broken, "{rule:?}: {held} vs fedavg {broken}");
    }
}

#[test]
fn attacks_have_their_documented_form() {
    let d = 30;
    let honest = matrix(8, d, 4);
    let hr = rows(&honest, d);
    let mean = rules::fedavg(&hr, None).unwrap();
    let alie = attacks::a_little_is_enough(&hr, 2, 1.5).unwrap();
    for c in 0..d {
        let m = mean[c] as f64;
        let std = (hr.iter().map(|r| (r[c] as f64 - m).powi(2)).sum::<f64>() / 8.0).sqrt();
        assert!((alie[c] as f64 - (m + 1.5 * std)).abs() < 1e-5);
        assert_eq!(alie[c], alie[d + c]);
    }
    let ipm = attacks::inner_product_manipulation(&hr, 3, 0.5).unwrap();
    assert_eq!(ipm.len(), 3 * d);
    assert!((ipm[0] + 0.5 * mean[0]).abs() < 1e-6);
    let g1 = attacks::gaussian(&hr, 2, 1.0, 5).unwrap();
    assert_eq!(g1, attacks::gaussian(&hr, 2, 1.0, 5).unwrap());
    assert_ne!(g1[..d], g1[d..]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn rules_are_permutation_invariant(seed in 0u64..1000, rot in 1usize..10) {
        let (n, d) = (11, 40);
        let data = matrix(n, d, seed);
        let r = rows(&data, d);
        let mut p = r.clone();
        p.rotate_left(rot);
        p.swap(0, 5);
        for rule in all_rules(2) {
            let a = rule.apply(&r, None).unwrap();
            let b = rule.apply(&p, None).unwrap();
            for (x, y) in a.iter().zip(&b) {
                prop_assert!((x - y).abs() < 1e-5, "{:?}: {} vs {}", rule, x, y);
            }
        }
    }

    #[test]
    fn coordinate_rules_stay_in_the_honest_range(seed in 0u64..1000, f in 0usize..4, scale in -1e6f32..1e6) {
        let (h, d) = (12, 25);
        let honest = matrix(h, d, seed);
        let mut all = honest.clone();
        all.extend(vec![scale; f * d]);
        let r = rows(&all, d);
        let n = h + f;
        let beta = (f as f64 + 0.5) / n as f64; // cuts at least f from each end
        for rule in [Rule::Median, Rule::TrimmedMean { beta: beta.min(0.49) }] {
            let out = rule.apply(&r, None).unwrap();
            for c in 0..d {
                let col: Vec<f32> = (0..h).map(|i| honest[i * d + c]).collect();
                let (lo, hi) = col.iter().fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                prop_assert!(out[c] >= lo - 1e-6 && out[c] <= hi + 1e-6, "{:?} coord {}: {} not in [{}, {}]", rule, c, out[c], lo, hi);
            }
        }
    }
}

#[test]
fn rules_that_skip_screening_report_non_finite_clients_like_every_rule() {
    // FedAvg and the geometric median read the values only when a non-finite one shows in
    // their own arithmetic; the report and the result must be those of screening first.
    let d = 50;
    let mut data = matrix(6, d, 5);
    data[d + 7] = f32::NAN;
    data[3 * d + 49] = f32::NEG_INFINITY;
    let r = rows(&data, d);
    let w = [1.0f32, 2.0, 1.0, 0.0, 3.0, 1.0];
    let geomed = Rule::GeometricMedian {
        nu: 1e-6,
        max_iter: 50,
        eps: 1e-9,
    };
    for rule in [Rule::FedAvg, geomed] {
        for weights in [None, Some(&w[..])] {
            let e = aggregate(&rule, &r, weights, d, OnInvalid::Error).unwrap_err();
            let FlError::InvalidClients(report) = e else {
                panic!("{rule:?}: {e}")
            };
            let rejected: Vec<usize> = report.rejected.iter().map(|(i, _)| *i).collect();
            assert_eq!(rejected, vec![1, 3], "{rule:?}");
            let (out, report) = aggregate(&rule, &r, weights, d, OnInvalid::Drop).unwrap();
            assert_eq!(report.accepted, vec![0, 2, 4, 5]);
            let kept: Vec<&[f32]> = report.accepted.iter().map(|&i| r[i]).collect();
            let kept_w: Option<Vec<f32>> =
                weights.map(|w| report.accepted.iter().map(|&i| w[i]).collect());
            assert_eq!(
                out,
                rule.apply(&kept, kept_w.as_deref()).unwrap(),
                "{rule:?}"
            );
        }
        // All finite: no rejection, the rule's own result.
        let clean = matrix(6, d, 6);
        let rc = rows(&clean, d);
        let (out, report) = aggregate(&rule, &rc, None, d, OnInvalid::Error).unwrap();
        assert!(report.rejected.is_empty());
        assert_eq!(out, rule.apply(&rc, None).unwrap(), "{rule:?}");
    }
}
