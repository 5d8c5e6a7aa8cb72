//! Coordinate-block machinery shared by the rules: rows are read in cache-sized column blocks,
//! transposed so each coordinate's `n` values are contiguous, and blocks run in parallel.

use rayon::prelude::*;

use crate::network::{Network, LANES};

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
pub(crate) use dispatch;

/// Maps a float to a `u32` key whose unsigned order is the floats' total order (`-0 < +0`).
#[inline(always)]
pub(crate) fn to_key(x: f32) -> u32 {
    let k = x.to_bits();
    let negative = ((k as i32) >> 31) as u32;
    k ^ (negative | 0x8000_0000)
}

/// The inverse of [`to_key`].
#[inline(always)]
pub(crate) fn from_key(k: u32) -> f32 {
    let positive = ((k as i32) >> 31) as u32;
    f32::from_bits(k ^ (!positive | 0x8000_0000))
}

/// Coordinates per task of [`per_block_sorted`]: 16 network passes.
const SORTED_TASK: usize = 16 * LANES;

/// For every block of [`LANES`] coordinates: the clients' keys at those coordinates
/// (`keys[i][c]`, client `i`, coordinate `c` of the block) are put through `net`, then
/// `f(keys, out_block)` writes the block's results. Parallel over blocks. The last block may
/// be short; its extra columns hold zeros, which `f` ignores.
pub(crate) fn per_block_sorted<F>(rows: &[&[f32]], net: &Network, out: &mut [f32], f: F)
where
    F: Fn(&[[u32; LANES]], &mut [f32]) + Sync,
{
    let n = rows.len();
    out.par_chunks_mut(SORTED_TASK).enumerate().for_each_init(
        || vec![[0u32; LANES]; n],
        |keys, (t, out_task)| {
            for (b, out_block) in out_task.chunks_mut(LANES).enumerate() {
                let start = t * SORTED_TASK + b * LANES;
                let len = out_block.len();
                for (row, k) in rows.iter().zip(keys.iter_mut()) {
                    for (kc, &x) in k.iter_mut().zip(&row[start..start + len]) {
                        *kc = to_key(x);
                    }
                    k[len..].fill(0);
                }
                net.apply(keys);
                f(keys, out_block);
            }
        },
    );
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

/// Coordinates per block of the fused passes below: the block of every row (1.6 MB for 100
/// clients) is read from memory once and again from cache.
const FUSED_BLOCK: usize = 4 * 1024;

/// `v ← keep · v + Σ_i w_i rows[i]` (accumulated in f64, rounded once), and in the same pass
/// over the rows the squared Euclidean distance of every row to the new `v`: an iterative
/// rule's update and its next distances for one read of the updates instead of two.
/// Deterministic for any number of threads (per-block partials are added in block order).
pub(crate) fn mix_and_measure(rows: &[&[f32]], w: &[f64], keep: f64, v: &mut [f32]) -> Vec<f64> {
    let n = rows.len();
    let partials: Vec<Vec<f64>> = v
        .par_chunks_mut(FUSED_BLOCK)
        .enumerate()
        .map_init(
            || vec![0f64; FUSED_BLOCK],
            |acc, (b, v_block)| {
                let start = b * FUSED_BLOCK;
                let len = v_block.len();
                dispatch!(mix_and_measure_block(
                    rows,
                    w,
                    keep,
                    start,
                    &mut acc[..len],
                    v_block
                ))
            },
        )
        .collect();
    sum_partials(partials, n)
}

#[inline(always)]
fn mix_and_measure_block(
    rows: &[&[f32]],
    w: &[f64],
    keep: f64,
    start: usize,
    acc: &mut [f64],
    v: &mut [f32],
) -> Vec<f64> {
    let len = v.len();
    if keep == 0.0 {
        weighted_sum_block(rows, w, start, acc, v);
    } else {
        let mut moved = [0f32; FUSED_BLOCK];
        weighted_sum_block(rows, w, start, acc, &mut moved[..len]);
        for (vi, a) in v.iter_mut().zip(acc.iter()) {
            *vi = (keep * *vi as f64 + a) as f32;
        }
    }
    rows.iter()
        .map(|r| sq_dist_f32(v, &r[start..start + len]) as f64)
        .collect()
}

/// Squared Euclidean distance of every row to `v`, one pass, deterministic like
/// [`mix_and_measure`].
pub(crate) fn sq_distances_to(rows: &[&[f32]], v: &[f32]) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = v
        .par_chunks(FUSED_BLOCK)
        .enumerate()
        .map(|(b, v_block)| {
            let start = b * FUSED_BLOCK;
            let len = v_block.len();
            rows.iter()
                .map(|r| dispatch!(sq_dist_f32(v_block, &r[start..start + len])) as f64)
                .collect()
        })
        .collect();
    sum_partials(partials, rows.len())
}

fn sum_partials(partials: Vec<Vec<f64>>, n: usize) -> Vec<f64> {
    let mut total = vec![0f64; n];
    for p in partials {
        total.iter_mut().zip(p).for_each(|(t, x)| *t += x);
    }
    total
}

/// Coordinates per block of [`mixed_rows`]: every row's block, widened to f64 (200 KB for
/// 100 clients), stays in L2 while each output row's block is summed from it.
const MIX_BLOCK: usize = 256;

/// Coordinates summed at once in registers by [`mixed_rows`]: eight AVX2 vectors of f64, enough
/// independent additions to hide their latency.
const MIX_LANES: usize = 32;

/// `out[i] = w · Σ_{j ∈ chosen[i]} rows[j]` for every `i`, `out` row-major `[n, d]`, summed
/// in f64 in the order of `chosen[i]`. Blocked over coordinates, so the updates are read from
/// memory and widened to f64 once rather than once per output row.
pub(crate) fn mixed_rows(rows: &[&[f32]], chosen: &[Vec<usize>], w: f64, out: &mut [f32]) {
    let (n, d) = (rows.len(), rows.first().map_or(0, |r| r.len()));
    if d == 0 {
        return;
    }
    let blocks = d.div_ceil(MIX_BLOCK);
    let mut per_block: Vec<Vec<&mut [f32]>> = (0..blocks).map(|_| Vec::new()).collect();
    for row in out.chunks_mut(d) {
        for (b, seg) in row.chunks_mut(MIX_BLOCK).enumerate() {
            per_block[b].push(seg);
        }
    }
    per_block.into_par_iter().enumerate().for_each_init(
        || vec![0f64; n * MIX_BLOCK],
        |widened, (b, segs)| {
            let start = b * MIX_BLOCK;
            let len = segs.first().map_or(0, |s| s.len());
            dispatch!(mix_block(rows, chosen, w, start, len, widened, segs))
        },
    );
}

#[inline(always)]
fn mix_block(
    rows: &[&[f32]],
    chosen: &[Vec<usize>],
    w: f64,
    start: usize,
    len: usize,
    wide: &mut [f64],
    segs: Vec<&mut [f32]>,
) {
    for (j, row) in rows.iter().enumerate() {
        let dst = &mut wide[j * MIX_BLOCK..j * MIX_BLOCK + len];
        for (o, &x) in dst.iter_mut().zip(&row[start..start + len]) {
            *o = x as f64;
        }
    }
    for (seg, picked) in segs.into_iter().zip(chosen) {
        let mut c = 0;
        while c + MIX_LANES <= len {
            let mut acc = [0f64; MIX_LANES];
            for &j in picked {
                let src = &wide[j * MIX_BLOCK + c..j * MIX_BLOCK + c + MIX_LANES];
                for l in 0..MIX_LANES {
                    acc[l] += src[l];
                }
            }
            for l in 0..MIX_LANES {
                seg[c + l] = (acc[l] * w) as f32;
            }
            c += MIX_LANES;
        }
        for (cc, o) in seg.iter_mut().enumerate().skip(c) {
            let s: f64 = picked.iter().map(|&j| wide[j * MIX_BLOCK + cc]).sum();
            *o = (s * w) as f32;
        }
    }
}

/// Squared Euclidean distances between all pairs of rows, `n × n` row-major, computed exactly
/// from differences (not the Gram-matrix identity, which cancels badly when updates are
/// close), in f32 within a block and f64 across blocks; each row against four others at a
/// time (`sq_dist_f32_x4`).
pub(crate) fn pairwise_sq_distances(rows: &[&[f32]]) -> Vec<f64> {
    let n = rows.len();
    let d = rows.first().map_or(0, |r| r.len());
    const PAIR_BLOCK: usize = 1024;
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
        let mut j = i + 1;
        while j + 4 <= n {
            let b = [0, 1, 2, 3].map(|t| &rows[j + t][s..e]);
            for (t, d) in sq_dist_f32_x4(ri, b).into_iter().enumerate() {
                acc[i * n + j + t] += d as f64;
            }
            j += 4;
        }
        for j in j..n {
            acc[i * n + j] += sq_dist_f32(ri, &rows[j][s..e]) as f64;
        }
    }
}

/// Squared distances of `a` to four slices of its length: `a` is read once for the four, and
/// the 4 × 16 lanes (eight 8-wide accumulators) fit the 16 AVX2 registers with `a`'s chunk and
/// the differences, so loads (not add latency) bound the loop: 5 loads per 4 pairs, not 8.
#[inline(always)]
fn sq_dist_f32_x4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    const LANES: usize = 16;
    let (mut s0, mut s1, mut s2, mut s3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let ca = a.chunks_exact(LANES);
    let tail = a.len() - ca.remainder().len();
    let [b0, b1, b2, b3] = b.map(|r| r.chunks_exact(LANES));
    for ((((x, y0), y1), y2), y3) in ca.zip(b0).zip(b1).zip(b2).zip(b3) {
        let x: &[f32; LANES] = x.try_into().expect("chunk of LANES");
        let [y0, y1, y2, y3]: [&[f32; LANES]; 4] =
            [y0, y1, y2, y3].map(|y| y.try_into().expect("chunk of LANES"));
        for l in 0..LANES {
            let v = x[l];
            let (d0, d1, d2, d3) = (v - y0[l], v - y1[l], v - y2[l], v - y3[l]);
            s0[l] += d0 * d0;
            s1[l] += d1 * d1;
            s2[l] += d2 * d2;
            s3[l] += d3 * d3;
        }
    }
    let sums = [s0, s1, s2, s3];
    std::array::from_fn(|t| {
        let mut s: f32 = sums[t].iter().sum();
        for (x, y) in a[tail..].iter().zip(&b[t][tail..]) {
            s += (x - y) * (x - y);
        }
        s
    })
}

/// Squared distance of two equal-length slices, in 32 lanes: four independent 8-wide
/// accumulators, so the adds overlap instead of waiting on each other's latency.
#[inline(always)]
pub(crate) fn sq_dist_f32(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 32;
    let mut lanes = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
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

/// Whether `row` holds a NaN or an infinity. Compares the magnitude bits (an infinity's are
/// `0x7f80_0000`, a NaN's above) as integers in 32 lanes, so it runs at memory speed.
pub(crate) fn has_non_finite(row: &[f32]) -> bool {
    dispatch!(max_magnitude_bits(row)) >= 0x7f80_0000
}

#[inline(always)]
fn max_magnitude_bits(row: &[f32]) -> u32 {
    const LANES: usize = 32;
    let mut lanes = [0u32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for x in chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l].max(x[l].to_bits() & 0x7fff_ffff);
        }
    }
    let tail = rest
        .iter()
        .map(|x| x.to_bits() & 0x7fff_ffff)
        .max()
        .unwrap_or(0);
    lanes.into_iter().max().unwrap_or(0).max(tail)
}

/// Euclidean norm of `a - b`, f64.
pub(crate) fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.par_chunks(1 << 14)
        .zip(b.par_chunks(1 << 14))
        .map(|(x, y)| dispatch!(sq_dist_f32(x, y)) as f64)
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    //! The blocked and fused passes against plain per-row loops on random inputs.
    use super::*;
    use proptest::prelude::*;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n * d)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    fn naive_sq(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * a.abs().max(b.abs()).max(1.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn mix_and_measure_matches_separate_passes(
            n in 1usize..30, d in 1usize..10_000, keep in 0.0f64..1.0, seed in 0u64..1000,
        ) {
            let x = data(n, d, seed);
            let rows: Vec<&[f32]> = x.chunks(d).collect();
            let w: Vec<f64> = (0..n).map(|i| (i + 1) as f64 / (n * (n + 1) / 2) as f64).collect();
            let v0 = data(1, d, seed + 1);
            let mut moved = vec![0f32; d];
            weighted_sum(&rows, &w, &mut moved);
            let expected: Vec<f32> = v0
                .iter()
                .zip(&moved)
                .map(|(&v, &m)| if keep == 0.0 { m } else { (keep * v as f64 + m as f64) as f32 })
                .collect();
            let mut v = v0.clone();
            let sq = mix_and_measure(&rows, &w, keep, &mut v);
            for (a, b) in v.iter().zip(&expected) {
                // One rounding (fused) against two (moved, then v): at most an ulp or so apart.
                prop_assert!(close(*a as f64, *b as f64, 1e-6), "{} vs {}", a, b);
            }
            let again = sq_distances_to(&rows, &v);
            for (i, r) in rows.iter().enumerate() {
                let exact = naive_sq(r, &v);
                prop_assert!(close(sq[i], exact, 1e-5), "{} vs {}", sq[i], exact);
                prop_assert_eq!(sq[i], again[i]);
            }
        }

        #[test]
        fn mixed_rows_match_a_plain_sum_per_row(
            n in 1usize..20, d in 1usize..5_000, seed in 0u64..1000,
        ) {
            let x = data(n, d, seed);
            let rows: Vec<&[f32]> = x.chunks(d).collect();
            let chosen: Vec<Vec<usize>> =
                (0..n).map(|i| (0..n).filter(|j| (i + j) % 3 != 1 || *j == i).collect()).collect();
            let w = 1.0 / 3.0;
            let mut out = vec![0f32; n * d];
            mixed_rows(&rows, &chosen, w, &mut out);
            for (i, c) in chosen.iter().enumerate() {
                for k in 0..d {
                    let s: f64 = c.iter().map(|&j| rows[j][k] as f64).sum();
                    prop_assert_eq!(out[i * d + k], (s * w) as f32, "row {} coord {}", i, k);
                }
            }
        }

        #[test]
        fn pairwise_distances_match_naive(n in 1usize..12, d in 1usize..5_000, seed in 0u64..1000) {
            let x = data(n, d, seed);
            let rows: Vec<&[f32]> = x.chunks(d).collect();
            let dist = pairwise_sq_distances(&rows);
            for i in 0..n {
                for j in 0..n {
                    let exact = if i == j { 0.0 } else { naive_sq(rows[i], rows[j]) };
                    prop_assert!(close(dist[i * n + j], exact, 1e-5), "{} vs {}", dist[i * n + j], exact);
                }
            }
        }
    }

    #[test]
    fn non_finite_values_are_found_anywhere() {
        let mut row = vec![1.5f32; 100];
        assert!(!has_non_finite(&row));
        for (at, bad) in [(0, f32::NAN), (37, f32::INFINITY), (99, f32::NEG_INFINITY)] {
            row[at] = bad;
            assert!(has_non_finite(&row), "{bad} at {at}");
            row[at] = f32::MAX;
            assert!(!has_non_finite(&row));
        }
    }
}
