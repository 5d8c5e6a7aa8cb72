"""Each aggregation rule against Flower's own function for it and a NumPy implementation.

n = 100 clients, d = 1,000,000 parameters (400 MB of float32). Flower's functions are those of
``flwr/server/strategy/aggregate.py`` (``aggregate``, ``aggregate_median``,
``aggregate_trimmed_avg``, ``aggregate_krum``, ``aggregate_bulyan``), called with one layer
per client and one example each; Flower has no geometric median, centered clipping or NNM,
so those rules are compared with NumPy only. FedAvg accumulates in f64 (NumPy's `mean` in
f32, so both are shown). NumPy Krum uses the Gram-matrix trick for distances (X Xᵀ through
BLAS). FedAvg is also compared with a plain memory copy of the same bytes. Times are the best
of --repeat runs (Flower's Bulyan, which runs Flower's Krum 80 times, once); ratios are
their time / meshrl time. Every meshrl call includes screening the clients for NaN/Inf.

    python python/benchmarks/bench_fl.py [--n 100] [--d 1000000] [--repeat 3] [--no-flower-bulyan]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from meshrl import fl

try:
    from flwr.server.strategy import aggregate as flwr_agg
except ImportError:  # Flower is an optional extra
    flwr_agg = None


def np_krum(x, f):
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    gram = (x @ x.T).astype(np.float64)
    dist = sq[:, None] + sq[None, :] - 2 * gram
    k = max(1, len(x) - f - 2)
    scores = np.sort(dist, axis=1)[:, 1 : k + 1].sum(1)
    return x[np.argmin(scores)]


def np_trimmed_mean(x, beta):
    lo = int(beta * len(x))
    part = np.partition(x, (lo, len(x) - lo - 1), axis=0)
    return part[lo : len(x) - lo].mean(0)


def np_bulyan(x, f):
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    dist = sq[:, None] + sq[None, :] - 2 * (x @ x.T).astype(np.float64)
    remaining, chosen = list(range(len(x))), []
    for _ in range(len(x) - 2 * f):
        sub = dist[np.ix_(remaining, remaining)]
        k = max(1, len(remaining) - f - 2)
        scores = np.sort(sub, axis=1)[:, 1 : k + 1].sum(1)
        chosen.append(remaining.pop(int(np.argmin(scores))))
    sel = x[chosen]
    med = np.median(sel, axis=0)
    beta = len(x) - 4 * f
    idx = np.argpartition(np.abs(sel - med), beta - 1, axis=0)[:beta]
    return np.take_along_axis(sel, idx, axis=0).mean(0)


def np_geometric_median(x, max_iter=100, eps=1e-6, nu=1e-6):
    z = x.mean(0)
    obj = np.linalg.norm(x - z, axis=1).sum()
    for _ in range(max_iter):
        b = 1.0 / np.maximum(nu, np.linalg.norm(x - z, axis=1))
        z = (b / b.sum()) @ x
        new = np.linalg.norm(x - z, axis=1).sum()
        done = abs(obj - new) <= eps * new
        obj = new
        if done:
            break
    return z


def np_centered_clipping(x, tau=1.0, iterations=3):
    v = np.median(x, axis=0)
    for _ in range(iterations):
        diff = x - v
        scale = np.minimum(1.0, tau / np.linalg.norm(diff, axis=1))
        v = v + (diff * scale[:, None]).mean(0)
    return v


def np_nnm(x, f):
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    dist = sq[:, None] + sq[None, :] - 2 * (x @ x.T).astype(np.float64)
    keep = len(x) - f
    idx = np.argsort(dist, axis=1, kind="stable")[:, :keep]
    return np.stack([x[i].mean(0) for i in idx])


def flower_cases(x, f):
    """Flower's function for each rule it has, on `results` = [([client update], 1), ...]."""
    if flwr_agg is None:
        return {}
    results = [([row], 1) for row in x]
    return {
        "fedavg": lambda: flwr_agg.aggregate(results),
        "median": lambda: flwr_agg.aggregate_median(results),
        "trimmed mean (0.1)": lambda: flwr_agg.aggregate_trimmed_avg(results, 0.1),
        "krum": lambda: flwr_agg.aggregate_krum(results, f, 0),
        "bulyan": lambda: flwr_agg.aggregate_bulyan(list(results), f, flwr_agg.aggregate_krum, to_keep=0),
    }


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--d", type=int, default=1_000_000)
    parser.add_argument("--f", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-flower-bulyan", action="store_true",
                        help="skip Flower's Bulyan (several minutes at d = 1M)")
    args = parser.parse_args()
    n, d, f = args.n, args.d, args.f
    x = np.random.default_rng(0).normal(1.0, 0.1, size=(n, d)).astype(np.float32)
    flower = flower_cases(x, f)
    if args.no_flower_bulyan:
        flower.pop("bulyan", None)
    print(f"n = {n}, d = {d:,}, f = {f}; best of {args.repeat}\n")
    print("| rule | meshrl (s) | Flower (s) | Flower / meshrl | NumPy (s) | NumPy / meshrl |")
    print("|---|---|---|---|---|---|")
    cases = [
        ("fedavg", lambda: fl.fedavg(x), lambda: x.mean(0)),
        ("fedavg, NumPy in f64", lambda: fl.fedavg(x), lambda: x.mean(0, dtype=np.float64)),
        ("median", lambda: fl.median(x), lambda: np.median(x, axis=0)),
        ("trimmed mean (0.1)", lambda: fl.trimmed_mean(x, 0.1), lambda: np_trimmed_mean(x, 0.1)),
        ("krum", lambda: fl.krum(x, f), lambda: np_krum(x, f)),
        ("bulyan", lambda: fl.bulyan(x, f), lambda: np_bulyan(x, f)),
        ("geometric median", lambda: fl.geometric_median(x), lambda: np_geometric_median(x)),
        ("centered clipping (3 it.)", lambda: fl.centered_clipping(x, tau=1.0, iterations=3),
         lambda: np_centered_clipping(x, 1.0, 3)),
        ("nnm", lambda: fl.nnm(x, f), lambda: np_nnm(x, f)),
    ]
    for name, ours, theirs in cases:
        t_ours = best_of(ours, args.repeat)
        t_np = best_of(theirs, max(1, args.repeat - 1))
        if name in flower:
            t_fl = best_of(flower[name], 1 if name == "bulyan" else max(1, args.repeat - 1))
            fl_cells = f"{t_fl:.3f} | **{t_fl / t_ours:.1f}x**"
        else:
            fl_cells = "– | –"
        print(f"| {name} | {t_ours:.3f} | {fl_cells} | {t_np:.3f} | {t_np / t_ours:.1f}x |", flush=True)
    out = np.empty_like(x)
    t_copy = best_of(lambda: np.copyto(out, x), args.repeat)
    t_avg = best_of(lambda: fl.fedavg(x), args.repeat)
    gbs = x.nbytes / 1e9
    print(f"\nFedAvg reads {gbs:.2f} GB in {t_avg:.3f} s ({gbs / t_avg:.1f} GB/s); "
          f"a memory copy of the same bytes takes {t_copy:.3f} s ({gbs / t_copy:.1f} GB/s read); "
          f"FedAvg / copy time = {t_avg / t_copy:.2f}")


if __name__ == "__main__":
    main()
