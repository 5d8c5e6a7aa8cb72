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

/// Runs `$body` (an expression using only inlined code) with AVX2 + FMA enabled when the CPU
/// has them, else as compiled for the baseline target. The wheel stays portable while the hot
/// loops vectorize 8 floats wide where they can.
macro_rules! dispatch {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the features were detected at run time.
                unsafe { wide(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

/// Coordinates per accumulation block of `weighted_sum`: each row is read 64 KB at a time
/// (long enough for the prefetcher) while the f64 accumulators stay in L2.
const SUM_BLOCK: usize = 16 * 1024;

/// `out = Σ_i w_i · rows[i]`, parallel over coordinate blocks, accumulating in f64, four rows
/// per pass over the accumulators.
pub(crate) fn weighted_sum(rows: &[&[f32]], w: &[f64], out: &mut [f32]) {
    out.par_chunks_mut(SUM_BLOCK).enumerate().for_each_init(
        || vec![0f64; SUM_BLOCK],
        |acc, (b, out_block)| {
            let start = b * SUM_BLOCK;
            let len = out_block.len();
            dispatch!(weighted_sum_block(
                rows,
                w,
                start,
                &mut acc[..len],
                out_block
            ))
        },
    );
}

#[inline(always)]
fn weighted_sum_block(rows: &[&[f32]], w: &[f64], start: usize, acc: &mut [f64], out: &mut [f32]) {
    let len = acc.len();
    acc.fill(0.0);
    let mut i = 0;
    while i + 4 <= rows.len() {
        let (r0, r1, r2, r3) = (
            &rows[i][start..start + len],
            &rows[i + 1][start..start + len],
            &rows[i + 2][start..start + len],
            &rows[i + 3][start..start + len],
        );
        let (w0, w1, w2, w3) = (w[i], w[i + 1], w[i + 2], w[i + 3]);
        for c in 0..len {
            acc[c] += w0 * r0[c] as f64 + w1 * r1[c] as f64 + w2 * r2[c] as f64 + w3 * r3[c] as f64;
        }
        i += 4;
    }
    for (row, &wi) in rows[i..].iter().zip(&w[i..]) {
        for (a, &x) in acc.iter_mut().zip(&row[start..start + len]) {
            *a += wi * x as f64;
        }
    }
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = *a as f32;
    }
}

/// Squared Euclidean distances between all pairs of rows, `n × n` row-major, computed exactly
/// from differences (not the Gram-matrix identity, which cancels badly when updates are
/// close), in f32 within a block and f64 across blocks. (Tiling four rows against each other
/// row measured slower here than this plain loop.)
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
                dispatch!(pairwise_block(rows, s, e, &mut acc));
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

#[inline(always)]
fn pairwise_block(rows: &[&[f32]], s: usize, e: usize, acc: &mut [f64]) {
    let n = rows.len();
    for i in 0..n {
        let ri = &rows[i][s..e];
        for j in i + 1..n {
            acc[i * n + j] += sq_dist_f32(ri, &rows[j][s..e]) as f64;
        }
    }
}

/// Squared distance of two equal-length slices, in eight independent lanes so it vectorizes.
#[inline(always)]
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
        .map(|(x, y)| dispatch!(sq_dist_f32(x, y)) as f64)
        .sum::<f64>()
        .sqrt()
}
