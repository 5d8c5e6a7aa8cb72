//! t-of-n Shamir secret sharing over the prime field of Curve25519's group order
//! `ℓ = 2^252 + 27742317777372353535851937790883648493` (`curve25519-dalek`'s constant-time
//! `Scalar` arithmetic; only polynomial evaluation and Lagrange interpolation are ours).
//!
//! A secret is a field element: the protocol's seeds are uniform scalars (252 bits of
//! entropy) that HKDF expands into 256-bit keys. Holder `h` gets the point `x = h + 1`.

use curve25519_dalek::Scalar;
use rand::Rng;

/// One share: the polynomial's value at `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// The evaluation point, never 0.
    pub x: u64,
    /// The polynomial's value at `x`.
    pub y: Scalar,
}

/// A uniform field element.
pub(crate) fn random_scalar<R: Rng + ?Sized>(rng: &mut R) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Splits `secret` into one share per point of `xs` (distinct, non-zero), any `threshold`
/// of which rebuild it and fewer of which are independent of it.
pub fn split<R: Rng + ?Sized>(
    secret: &Scalar,
    threshold: usize,
    xs: &[u64],
    rng: &mut R,
) -> Vec<Share> {
    debug_assert!(threshold >= 1 && threshold <= xs.len());
    debug_assert!(xs.iter().all(|&x| x != 0));
    let mut coefficients = Vec::with_capacity(threshold);
    coefficients.push(*secret);
    coefficients.extend((1..threshold).map(|_| random_scalar(rng)));
    xs.iter()
        .map(|&x| {
            let xs = Scalar::from(x);
            let y = coefficients
                .iter()
                .rev()
                .fold(Scalar::ZERO, |acc, c| acc * xs + c);
            Share { x, y }
        })
        .collect()
}

/// The Lagrange coefficients at 0 of the points `xs` (distinct, non-zero).
pub fn lagrange_at_zero(xs: &[u64]) -> Vec<Scalar> {
    let points: Vec<Scalar> = xs.iter().map(|&x| Scalar::from(x)).collect();
    // λ_i = Π_{j≠i} x_j / (x_j − x_i): numerators and denominators, then one batch inversion.
    let mut numerators = Vec::with_capacity(points.len());
    let mut denominators = Vec::with_capacity(points.len());
    for (i, xi) in points.iter().enumerate() {
        let mut num = Scalar::ONE;
        let mut den = Scalar::ONE;
        for (j, xj) in points.iter().enumerate() {
            if i != j {
                num *= xj;
                den *= xj - xi;
            }
        }
        numerators.push(num);
        denominators.push(den);
    }
    Scalar::batch_invert(&mut denominators);
    numerators
        .into_iter()
        .zip(denominators)
        .map(|(n, d)| n * d)
        .collect()
}

/// Rebuilds the secret from shares at distinct points with precomputed coefficients.
pub fn combine(ys: &[Scalar], coefficients: &[Scalar]) -> Scalar {
    ys.iter().zip(coefficients).map(|(y, l)| y * l).sum()
}

/// Rebuilds the secret from exactly `threshold` (or more) shares at distinct points.
pub fn reconstruct(shares: &[Share]) -> Scalar {
    let xs: Vec<u64> = shares.iter().map(|s| s.x).collect();
    let ys: Vec<Scalar> = shares.iter().map(|s| s.y).collect();
    combine(&ys, &lagrange_at_zero(&xs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use proptest::prelude::*;
    use rand::SeedableRng;

    #[test]
    fn any_threshold_subset_rebuilds_and_fewer_do_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret = random_scalar(&mut rng);
        let xs: Vec<u64> = (1..=7).collect();
        let shares = split(&secret, 4, &xs, &mut rng);
        for start in 0..4 {
            assert_eq!(reconstruct(&shares[start..start + 4]), secret);
        }
        assert_eq!(
            reconstruct(&[shares[6], shares[0], shares[3], shares[5]]),
            secret
        );
        assert_eq!(reconstruct(&shares), secret);
        assert_ne!(reconstruct(&shares[..3]), secret);
    }

    #[test]
    fn threshold_one_is_the_secret_everywhere() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let secret = Scalar::from(42u64);
        assert!(split(&secret, 1, &[1, 5, 9], &mut rng)
            .iter()
            .all(|s| s.y == secret));
    }

    #[test]
    fn a_changed_share_changes_the_result() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let secret = random_scalar(&mut rng);
        let mut shares = split(&secret, 3, &[2, 4, 6], &mut rng);
        shares[1].y += Scalar::ONE;
        assert_ne!(reconstruct(&shares), secret);
    }

    proptest! {
        #[test]
        fn random_subsets_of_size_t_rebuild(seed in any::<u64>(), n in 2usize..20, t_frac in 0.0f64..1.0, pick in any::<u64>()) {
            let t = 1 + ((n - 1) as f64 * t_frac) as usize;
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let secret = random_scalar(&mut rng);
            let xs: Vec<u64> = (0..n as u64).map(|i| 3 * i + 1).collect();
            let shares = split(&secret, t, &xs, &mut rng);
            // A pseudo-random subset of size t.
            let mut idx: Vec<usize> = (0..n).collect();
            let mut p = pick;
            for i in (1..n).rev() {
                idx.swap(i, (p % (i as u64 + 1)) as usize);
                p = p.rotate_left(7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
            let subset: Vec<Share> = idx[..t].iter().map(|&i| shares[i]).collect();
            prop_assert_eq!(reconstruct(&subset), secret);
        }
    }
}
