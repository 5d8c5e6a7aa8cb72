"""Env-steps/s of the native vector env against SyncVectorEnv over the single env.

Both run the same config with random valid actions; only `step` is timed. The single env is
Rust too, so the ratio measures what batching in Rust saves over a Python loop.

    python python/benchmarks/bench_vec_env.py [--num-envs 4096] [--config configs/env/dynamic.toml]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import gymnasium
import numpy as np

import meshrl

ROOT = pathlib.Path(__file__).resolve().parents[2]


def random_valid(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(mask.shape) * (mask > 0)).argmax(axis=-1).astype(np.int64)


def steps_per_second(env, steps: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    spent = 0.0
    for _ in range(steps):
        actions = random_valid(info["action_mask"], rng)
        t = time.perf_counter()
        _, _, _, _, info = env.step(actions)
        spent += time.perf_counter() - t
    return env.num_envs * steps / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--config", default=str(ROOT / "configs/env/dynamic.toml"))
    parser.add_argument("--native-steps", type=int, default=300)
    parser.add_argument("--sync-steps", type=int, default=10)
    args = parser.parse_args()

    native = gymnasium.make_vec(meshrl.ENV_ID, num_envs=args.num_envs, config=args.config)
    sync = gymnasium.make_vec(meshrl.ENV_ID, num_envs=args.num_envs, config=args.config, vectorization_mode="sync")
    native_sps = steps_per_second(native, args.native_steps)
    sync_sps = steps_per_second(sync, args.sync_steps)
    native_copy_free = gymnasium.make_vec(meshrl.ENV_ID, num_envs=args.num_envs, config=args.config, copy=False)
    view_sps = steps_per_second(native_copy_free, args.native_steps)
    print(f"config {args.config}, num_envs {args.num_envs}")
    print(f"native MeshRoutingVecEnv (copy=True):  {native_sps:12,.0f} env-steps/s")
    print(f"native MeshRoutingVecEnv (copy=False): {view_sps:12,.0f} env-steps/s")
    print(f"SyncVectorEnv over MeshRoutingEnv:     {sync_sps:12,.0f} env-steps/s")
    print(f"ratio native/sync: {native_sps / sync_sps:.0f}x (copy=False: {view_sps / sync_sps:.0f}x)")


if __name__ == "__main__":
    main()
