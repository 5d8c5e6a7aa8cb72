"""Distance of each rule's aggregate to the honest mean under each attack.

n = 50 clients of which f = 10 (20 %) are Byzantine; honest updates are N(1, 0.1²) in d
dimensions. Prints a Markdown table (rows: attacks, columns: rules) of
‖aggregate − mean(honest)‖ / ‖mean(honest)‖.

    python python/benchmarks/byzantine_matrix.py [--d 10000] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from meshrl import fl
from meshrl.fl import attacks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--f", type=int, default=10)
    parser.add_argument("--d", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, f, d = args.n, args.f, args.d
    rng = np.random.default_rng(args.seed)
    honest = (1.0 + 0.1 * rng.standard_normal((n - f, d))).astype(np.float32)
    target = honest.astype(np.float64).mean(0)
    scale = np.linalg.norm(target)

    attack_makers = {
        "none (all honest)": lambda: (1.0 + 0.1 * rng.standard_normal((f, d))).astype(np.float32),
        "sign flip (x10)": lambda: attacks.sign_flip(honest, f, scale=10.0),
        "gaussian (sigma 10)": lambda: attacks.gaussian(honest, f, sigma=10.0, seed=args.seed),
        "IPM (tau 0.5)": lambda: attacks.inner_product_manipulation(honest, f, tau=0.5),
        "IPM (tau 10)": lambda: attacks.inner_product_manipulation(honest, f, tau=10.0),
        "ALIE (tau 1.5)": lambda: attacks.a_little_is_enough(honest, f, tau=1.5),
    }
    rules = {
        "fedavg": fl.fedavg,
        "krum": lambda x: fl.krum(x, f),
        "multi-krum (m=20)": lambda x: fl.krum(x, f, num_selected=20),
        "median": fl.median,
        "trimmed mean (0.2)": lambda x: fl.trimmed_mean(x, 0.2),
        "bulyan": lambda x: fl.bulyan(x, f),
        "geometric median": fl.geometric_median,
        "centered clipping": lambda x: fl.centered_clipping(x, tau=1.0, iterations=3),
        "nnm + krum": lambda x: fl.krum(fl.nnm(x, f), f),
    }
    print(f"n = {n}, f = {f} Byzantine, d = {d}; cell: ||aggregate - honest mean|| / ||honest mean||\n")
    print("| attack | " + " | ".join(rules) + " |")
    print("|---|" + "---|" * len(rules))
    for name, make in attack_makers.items():
        x = np.concatenate([honest, make()])
        cells = [np.linalg.norm(rule(x) - target) / scale for rule in rules.values()]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
