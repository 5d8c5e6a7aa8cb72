//! Coordinate-block machinery shared by the rules: rows are read in cache-sized column blocks,
//! transposed so each coordinate's `n` values are contiguous, and blocks run in parallel.

use rayon::prelude::*;

/// Coordinates per block: `n × BLOCK` floats stay in L2 for the client counts FL uses.
pub(crate) const BLOCK: usize = 512;

/// For every coordinate `c`, calls `f(values, c)` with the `n` client values at `c` (in a
/// scratch buffer the closure may reorder) and stores its result in `out[c]`.
pub(crate) fn per_coordinate<F>(rows: &[&[f32]], out: &mut [f32], f: F)
where
    F: Fn(&mut [f32], usize) -> f32 + Sync,
{
    let n = rows.len();
    out.par_chunks_mut(BLOCK).enumerate().for_each_init(
        || vec![0f32; n * BLOCK],
        |buf, (b, out_block)| {
            let start = b * BLOCK;
            let len = out_block.len();
            for (i, row) in rows.iter().enumerate() {
                for (c, &x) in row[start..start + len].iter().enumerate() {
                    buf[c * n + i] = x;
                }
            }
            for (c, o) in out_block.iter_mut().enumerate() {
                *o = f(&mut buf[c * n..(c + 1) * n], start + c);
            }
        },
    );
}

/// `out = Σ_i w_i · rows[i]`, parallel over coordinate blocks, accumulating in f64.
pub(crate) fn weighted_sum(rows: &[&[f32]], w: &[f64], out: &mut [f32]) {
    out.par_chunks_mut(BLOCK * 8).enumerate().for_each_init(
        || vec![0f64; BLOCK * 8],
        |acc, (b, out_block)| {
            let start = b * BLOCK * 8;
            let len = out_block.len();
            let acc = &mut acc[..len];
            acc.fill(0.0);
            for (row, &wi) in rows.iter().zip(w) {
                if wi == 0.0 {
                    continue;
                }
                for (a, &x) in acc.iter_mut().zip(&row[start..start + len]) {
                    *a += wi * x as f64;
                }
            }
            for (o, a) in out_block.iter_mut().zip(acc.iter()) {
                *o = *a as f32;
            }
        },
    );
}

/// Squared Euclidean distances between all pairs of rows, `n × n` row-major, computed exactly
/// from differences (not the Gram-matrix identity, which cancels badly when updates are
/// close), in f32 within a block and f64 across blocks.
pub(crate) fn pairwise_sq_distances(rows: &[&[f32]]) -> Vec<f64> {
    let n = rows.len();
    let d = rows.first().map_or(0, |r| r.len());
    const PAIR_BLOCK: usize = 2048;
    let blocks = d.div_ceil(PAIR_BLOCK);
    let partial = (0..blocks)
        .into_par_iter()
        .fold(
            || vec![0f64; n * n],
            |mut acc, b| {
                let (s, e) = (b * PAIR_BLOCK, ((b + 1) * PAIR_BLOCK).min(d));
                for i in 0..n {
                    let ri = &rows[i][s..e];
                    for j in i + 1..n {
                        let rj = &rows[j][s..e];
                        acc[i * n + j] += sq_dist_f32(ri, rj) as f64;
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![0f64; n * n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut dist = partial;
    for i in 0..n {
        for j in 0..i {
            dist[i * n + j] = dist[j * n + i];
        }
    }
    dist
}

/// Squared distance of two equal-length slices, in eight independent lanes so it vectorizes.
#[inline]
pub(crate) fn sq_dist_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let t = x[l] - y[l];
            lanes[l] += t * t;
        }
    }
    let mut s: f32 = lanes.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

/// Euclidean norm of `a - b`, f64.
pub(crate) fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.par_chunks(1 << 14)
        .zip(b.par_chunks(1 << 14))
        .map(|(x, y)| sq_dist_f32(x, y) as f64)
        .sum::<f64>()
        .sqrt()
}
