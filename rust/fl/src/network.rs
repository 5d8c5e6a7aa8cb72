//! Order statistics of many coordinates at once by a comparator network.
//!
//! For a few hundred clients, the coordinate-wise rules (median, trimmed mean, Bulyan) spend
//! their time choosing order statistics of `n` values per coordinate. A selection per
//! coordinate branches on every comparison and mispredicts half of them. A comparator network
//! (Batcher's odd–even merge sort) does the same fixed sequence of `min`/`max` for every
//! coordinate, so [`LANES`] coordinates go through it side by side in SIMD registers with no
//! branch at all. The network is pruned to what a rule reads: it only needs to put each value
//! in the right *region* of sorted positions (below the median, the median, above it), not to
//! order values within a region.

/// Coordinates per network pass. `n × LANES` keys (25 KB for 100 clients) stay in L1.
pub(crate) const LANES: usize = 64;

/// Above this many clients the network's `O(n log² n)` comparisons per coordinate cost more
/// than a selection's `O(n)`, and the rules select per coordinate instead.
pub(crate) const MAX_CLIENTS: usize = 256;

/// A comparator network on `n` wires: after applying `pairs` in order (each puts the smaller
/// value on its first wire), every value sits in the right region of sorted positions.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    pub(crate) n: usize,
    pairs: Vec<(u16, u16)>,
}

impl Network {
    /// The network that sorts `n` values into the regions whose first positions are `cuts`
    /// (ascending, inside `1..n`): values within one region come out in some order, across
    /// regions in sorted order.
    pub(crate) fn regions(n: usize, cuts: &[usize]) -> Network {
        assert!(n <= MAX_CLIENTS, "network for {n} > {MAX_CLIENTS} wires");
        let mut region = vec![0usize; n];
        for (pos, r) in region.iter_mut().enumerate() {
            *r = cuts.iter().filter(|&&c| c <= pos).count();
        }
        Network {
            n,
            pairs: prune(&batcher(n), &region),
        }
    }

    /// Comparators in the network.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Applies the network to `LANES` columns at once: `keys[i][c]` is client `i`'s key at
    /// coordinate `c` of the block. Keys are `u32` in the floats' total order (see
    /// `rules::to_key`), so `min`/`max` are exact and vectorize.
    pub(crate) fn apply(&self, keys: &mut [[u32; LANES]]) {
        debug_assert_eq!(keys.len(), self.n);
        crate::blocks::dispatch!(apply_pairs(&self.pairs, keys))
    }
}

#[inline(always)]
fn apply_pairs(pairs: &[(u16, u16)], keys: &mut [[u32; LANES]]) {
    for &(a, b) in pairs {
        let (a, b) = (a as usize, b as usize);
        // a < b always, so the split puts row a in `lo` and row b at the start of `hi`.
        let (lo, hi) = keys.split_at_mut(b);
        let (x, y) = (&mut lo[a], &mut hi[0]);
        for c in 0..LANES {
            let (p, q) = (x[c], y[c]);
            x[c] = p.min(q);
            y[c] = p.max(q);
        }
    }
}

/// Batcher's odd–even merge sort on the next power of two above `n`, keeping only the
/// comparators inside `0..n`: the missing wires act as `+∞`, which no comparator moves.
fn batcher(n: usize) -> Vec<(u16, u16)> {
    let size = n.next_power_of_two();
    let mut pairs = Vec::new();
    let mut p = 1;
    while p < size {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < size {
                for i in 0..k.min(size - j - k) {
                    let (a, b) = (i + j, i + j + k);
                    if a / (2 * p) == b / (2 * p) && b < n {
                        pairs.push((a as u16, b as u16));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    pairs
}

/// Drops the comparators whose outcome cannot change which region a value ends in. Walking
/// back from the end, a wire no later kept comparator touches delivers its value to its
/// position's region whatever the value; a comparator between two such wires of the same
/// region only swaps values within that region, so it goes. Any other comparator stays and
/// its wires' destinations become value-dependent.
fn prune(pairs: &[(u16, u16)], region: &[usize]) -> Vec<(u16, u16)> {
    const MIXED: usize = usize::MAX;
    let mut dest = region.to_vec();
    let mut kept: Vec<(u16, u16)> = pairs
        .iter()
        .rev()
        .filter(|&&(a, b)| {
            let (a, b) = (a as usize, b as usize);
            if dest[a] != MIXED && dest[a] == dest[b] {
                return false;
            }
            dest[a] = MIXED;
            dest[b] = MIXED;
            true
        })
        .copied()
        .collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(net: &Network, column: &[u32]) -> Vec<u32> {
        let mut keys = vec![[0u32; LANES]; net.n];
        for (i, &v) in column.iter().enumerate() {
            keys[i][3] = v;
        }
        net.apply(&mut keys);
        keys.iter().map(|k| k[3]).collect()
    }

    /// Each region's multiset must match the sorted input's.
    fn check(net: &Network, cuts: &[usize], column: &[u32]) {
        let out = run(net, column);
        let mut sorted = column.to_vec();
        sorted.sort_unstable();
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(column.len());
        for w in bounds.windows(2) {
            let mut got = out[w[0]..w[1]].to_vec();
            got.sort_unstable();
            assert_eq!(
                got,
                sorted[w[0]..w[1]],
                "n {} cuts {cuts:?} input {column:?}",
                net.n
            );
        }
    }

    #[test]
    fn full_sort_of_every_zero_one_input_up_to_12() {
        // The 0-1 principle: a network sorting every 0/1 input sorts every input.
        for n in 1..=12 {
            let cuts: Vec<usize> = (1..n).collect();
            let net = Network::regions(n, &cuts);
            for bits in 0u32..(1 << n) {
                let column: Vec<u32> = (0..n).map(|i| (bits >> i) & 1).collect();
                check(&net, &cuts, &column);
            }
        }
    }

    #[test]
    fn pruned_regions_of_every_zero_one_input_up_to_13() {
        for n in 2..=13 {
            for cuts in [vec![n / 2], vec![(n - 1) / 2, n / 2 + 1], vec![1, n - 1]] {
                let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c > 0 && c < n).collect();
                let net = Network::regions(n, &cuts);
                for bits in 0u32..(1 << n) {
                    let column: Vec<u32> = (0..n).map(|i| (bits >> i) & 1).collect();
                    check(&net, &cuts, &column);
                }
            }
        }
    }

    #[test]
    fn random_inputs_up_to_the_largest_network() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Few distinct values, so ties are common.
            (s % 37) as u32 * 0x0100_0001
        };
        for n in [3, 17, 64, 99, 100, 101, 128, 200, MAX_CLIENTS] {
            for cuts in [
                vec![n / 2],
                vec![(n - 1) / 2, n / 2 + 1],
                vec![n / 10, n - n / 10],
            ] {
                let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c > 0 && c < n).collect();
                let net = Network::regions(n, &cuts);
                for _ in 0..20 {
                    let column: Vec<u32> = (0..n).map(|_| next()).collect();
                    check(&net, &cuts, &column);
                }
            }
        }
    }

    #[test]
    fn pruning_drops_comparators() {
        let full = Network::regions(100, &(1..100).collect::<Vec<_>>());
        let median = Network::regions(100, &[49, 51]);
        assert!(
            median.len() < full.len(),
            "{} vs {}",
            median.len(),
            full.len()
        );
    }
}
