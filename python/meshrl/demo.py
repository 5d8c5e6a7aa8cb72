"""Route packets on a mesh with reference policies and print how they do.

    python -m meshrl.demo [CONFIG.toml] [--num-envs N] [--steps S] [--seed SEED]

Until PPO training lands this is the project's main job: it steps the native vector env and
compares a random valid next hop with hop-count shortest path (read off the observation).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import meshrl
from meshrl.envs import LOSS_CAUSES, OUTCOMES

HOPS = 3  # index of hop_count_to_destination within a neighbour slot


def shortest_path(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The valid slot whose neighbour is fewest hops from the destination."""
    k = mask.shape[1]
    hops = obs[:, : k * 6].reshape(len(obs), k, 6)[:, :, HOPS]
    return np.where(mask > 0, hops, np.inf).argmin(axis=1).astype(np.int64)


def random_valid(obs: np.ndarray, mask: np.ndarray, rng=np.random.default_rng(0)) -> np.ndarray:
    return (rng.random(mask.shape) * (mask > 0)).argmax(axis=1).astype(np.int64)


def run(policy, config: str | None, num_envs: int, steps: int, seed: int) -> dict:
    env = meshrl.MeshRoutingVecEnv(num_envs=num_envs, config=config, copy=False)
    obs, info = env.reset(seed=seed)
    counts = {name: 0 for name in OUTCOMES[1:]}
    causes = {name: 0 for name in LOSS_CAUSES[1:]}
    latency, hops = [], []
    start = time.perf_counter()
    for _ in range(steps):
        obs, _, term, trunc, info = env.step(policy(obs, info["action_mask"]))
        ended = term | trunc
        for code in info["outcome"][ended]:
            counts[OUTCOMES[code]] += 1
        for code in info["loss_cause"][term]:
            if code:
                causes[LOSS_CAUSES[code]] += 1
        delivered = info["outcome"] == 1
        latency.extend(info["latency_ms"][delivered])
        hops.extend(info["path_length"][delivered])
    elapsed = time.perf_counter() - start
    ended = sum(counts.values())
    return {
        "episodes": ended,
        "delivery_ratio": counts["delivered"] / max(ended, 1),
        "latency_ms": float(np.mean(latency)) if latency else float("nan"),
        "hops": float(np.mean(hops)) if hops else float("nan"),
        "causes": causes,
        "sps": num_envs * steps / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshrl.demo", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=None, help="environment TOML (default: built-in defaults)")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"meshrl {meshrl.__version__}: {args.num_envs} environments x {args.steps} steps on {args.config or 'defaults'}")
    for name, policy in [("random", random_valid), ("shortest_path", shortest_path)]:
        r = run(policy, args.config, args.num_envs, args.steps, args.seed)
        lost = ", ".join(f"{k} {v}" for k, v in r["causes"].items() if v)
        print(
            f"{name:>14}: delivery {r['delivery_ratio']:.3f} over {r['episodes']} packets, "
            f"latency {r['latency_ms']:.1f} ms, {r['hops']:.2f} hops, {r['sps']:,.0f} env-steps/s; lost: {lost or 'none'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
