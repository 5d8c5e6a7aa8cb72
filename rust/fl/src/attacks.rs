//! Byzantine attacks: each makes `f` malicious updates from the honest ones, to test rules.
//! Outputs are row-major `[f, d]`.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::blocks::weighted_sum;
use crate::error::{invalid, FlError};

fn mean_and_std(honest: &[&[f32]]) -> Result<(Vec<f32>, Vec<f32>), FlError> {
    let h = honest.len();
    let d = honest
        .first()
        .map(|r| r.len())
        .ok_or_else(|| invalid("honest", "needs at least one vector"))?;
    let mut mean = vec![0f32; d];
    weighted_sum(honest, &vec![1.0 / h as f64; h], &mut mean);
    let mut std = vec![0f32; d];
    std.par_iter_mut().enumerate().for_each(|(c, s)| {
        let m = mean[c] as f64;
        let var: f64 = honest
            .iter()
            .map(|r| (r[c] as f64 - m).powi(2))
            .sum::<f64>()
            / h as f64;
        *s = var.sqrt() as f32;
    });
    Ok((mean, std))
}

fn repeat(v: &[f32], f: usize) -> Vec<f32> {
    v.repeat(f)
}

/// Sign flipping: every Byzantine client sends `-scale · mean(honest)`.
pub fn sign_flip(honest: &[&[f32]], f: usize, scale: f32) -> Result<Vec<f32>, FlError> {
    let (mean, _) = mean_and_std(honest)?;
    Ok(repeat(
        &mean.iter().map(|x| -scale * x).collect::<Vec<_>>(),
        f,
    ))
}

/// Gaussian noise: each Byzantine client sends `mean(honest) + N(0, sigma² I)`, seeded.
pub fn gaussian(honest: &[&[f32]], f: usize, sigma: f32, seed: u64) -> Result<Vec<f32>, FlError> {
    if !(sigma >= 0.0 && sigma.is_finite()) {
        return Err(invalid("sigma", format!("must be >= 0, got {sigma}")));
    }
    let (mean, _) = mean_and_std(honest)?;
    let normal = Normal::new(0.0f32, sigma).map_err(|e| invalid("sigma", e.to_string()))?;
    let d = mean.len();
    let mut out = vec![0f32; f * d];
    out.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_add(i as u64));
        for (o, m) in row.iter_mut().zip(&mean) {
            *o = m + normal.sample(&mut rng);
        }
    });
    Ok(out)
}

/// Inner-product manipulation (Xie et al. 2020): every Byzantine client sends
/// `-tau · mean(honest)`, making the aggregate's inner product with the true mean negative
/// for large enough `tau`.
pub fn inner_product_manipulation(
    honest: &[&[f32]],
    f: usize,
    tau: f32,
) -> Result<Vec<f32>, FlError> {
    sign_flip(honest, f, tau)
}

/// A Little Is Enough (Baruch et al. 2019): every Byzantine client sends
/// `mean(honest) + tau · std(honest)` per coordinate (population std), small enough to pass
/// as honest yet shifting coordinate-wise rules.
pub fn a_little_is_enough(honest: &[&[f32]], f: usize, tau: f32) -> Result<Vec<f32>, FlError> {
    let (mean, std) = mean_and_std(honest)?;
    Ok(repeat(
        &mean
            .iter()
            .zip(&std)
            .map(|(m, s)| m + tau * s)
            .collect::<Vec<_>>(),
        f,
    ))
}
