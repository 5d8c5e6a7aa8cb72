"""meshrl's PPO against Stable-Baselines3's PPO (PyTorch, CPU) on the same routing environment.

1. Training SPS with the prototype's hyper-parameters (8 envs × 128 steps, 10 epochs,
   minibatch 64, [64, 64] tanh, lr 3e-4) for both: ratio meshrl / SB3.
2. Training wall time to reach 95 % of shortest-path delivery (checked on 1,024 fresh packets
   after every 16,384 steps for meshrl, every 8,192 for SB3; the clock paused while checking):
   meshrl with the throughput config (configs/train/small.toml: one run of its 600 k steps)
   and with the prototype's settings (one run of 2 M steps), each evaluated from `train`'s
   callback, against SB3 with the prototype's settings; each given a time budget.
   SB3 has no action masking: it picks masked slots and loses those packets (invalid_action =
   "lose"), as a PyTorch user of this environment would see without sb3-contrib.

Both halves run in this script, on the same machine, one after the other.

    pip install stable-baselines3   # brings PyTorch
    python python/benchmarks/bench_sb3.py [--sps-steps 16384] [--sb3-budget-s 300] [--rounds 3 --sps-only]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

import meshrl
import meshrl.ppo

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = str(ROOT / "configs" / "env" / "small.toml")
OVERRIDES = dict(envs_per_twin=4)  # as the training configs: many meshes, not one
CPU = {"device": "cpu"}
# The prototype's hyper-parameters, as SB3's PPO runs them: SB3 does not clip the value loss
# (`clip_range_vf=None`), so neither does meshrl here (its own default, CleanRL's, does).
PROTOTYPE = dict(num_envs=8, num_steps=128, epochs=10, minibatch_size=64, learning_rate=3e-4,
                 clip_value_loss=False, **CPU)


def sb3_model(n_envs: int, seed: int):
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("meshrl/MeshRouting-v0", n_envs=n_envs, seed=seed,
                       env_kwargs=dict(config=SMALL, hop_cost=0.5, **OVERRIDES))
    return PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=10, learning_rate=3e-4, gamma=0.99,
               gae_lambda=0.95, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, seed=seed,
               policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh),
               device="cpu", verbose=0)


def sb3_delivery(model, episodes: int = 1024, seed: int = 1_000_003) -> float:
    """Delivery ratio of the SB3 policy (sampled actions) on fresh packets."""
    env = meshrl.MeshRoutingVecEnv(64, config=SMALL, hop_cost=0.5, **OVERRIDES)
    obs, _ = env.reset(seed=seed)
    delivered = done_count = 0
    while done_count < episodes:
        actions, _ = model.predict(obs, deterministic=False)
        obs, _, term, trunc, info = env.step(actions)
        ended = term | trunc
        if ended.any():
            delivered += int(np.sum(info["outcome"][ended] == meshrl.envs.OUTCOMES.index("delivered")))
            done_count += int(ended.sum())
    return delivered / done_count


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sps-steps", type=int, default=16384)
    p.add_argument("--sb3-budget-s", type=float, default=300.0)
    p.add_argument("--rounds", type=int, default=1,
                   help="SPS rounds, meshrl then SB3 in each (one ratio per round: this machine's noise)")
    p.add_argument("--sps-only", action="store_true", help="stop after the SPS rounds")
    args = p.parse_args()
    if args.rounds < 1 or args.sps_steps < 1:
        raise SystemExit("--rounds and --sps-steps must be at least 1")

    # 1. SPS, prototype hyper-parameters.
    for _ in range(args.rounds):
        t = meshrl.ppo.Trainer(SMALL, PROTOTYPE, hop_cost=0.5, **OVERRIDES)
        t.train(1024)  # warm-up
        t0 = time.perf_counter()
        t.train(args.sps_steps)
        ours = args.sps_steps / (time.perf_counter() - t0)
        model = sb3_model(8, 0)
        model.learn(1024)
        t0 = time.perf_counter()
        model.learn(args.sps_steps, reset_num_timesteps=False)
        theirs = args.sps_steps / (time.perf_counter() - t0)
        print(f"SPS, prototype settings: meshrl {ours:,.0f}  SB3 {theirs:,.0f}  ratio {ours / theirs:.1f}x", flush=True)
    if args.sps_only:
        return

    # 2. Time to 95 % of shortest path.
    small_cfg = ROOT / "configs" / "train" / "small.toml"
    evaluation = meshrl.ppo.Trainer(config=small_cfg, ppo=CPU).evaluate(episodes=1024)
    sp = evaluation["policies"]["baseline:shortest_path"]["delivery_ratio"]
    target = 0.95 * sp
    print(f"shortest path {sp:.3f}, target {target:.3f}")
    results = {}
    for label, make, total in [
        ("throughput config (configs/train/small.toml)", lambda: meshrl.ppo.Trainer(config=small_cfg, ppo=CPU), None),
        ("prototype settings", lambda: meshrl.ppo.Trainer(SMALL, PROTOTYPE, hop_cost=0.5, **OVERRIDES), 2_000_000),
    ]:
        # One run (its learning rate annealed over the whole run, as `meshrl train` does),
        # evaluated from the callback every 16,384 steps.
        # The clock pauses while a policy is evaluated, for both libraries.
        trainer, state = make(), dict(reached=None, next=16384, eval_s=0.0)

        def check(stats: dict) -> bool:
            if stats["global_step"] < state["next"]:
                return True
            state["next"] += 16384
            train_s = time.perf_counter() - start - state["eval_s"]
            paused = time.perf_counter()
            delivery = trainer.evaluate(episodes=1024)["policies"]["ppo"]["delivery_ratio"]
            state["eval_s"] += time.perf_counter() - paused
            if delivery >= target:
                state["reached"] = train_s
                return False
            return train_s < args.sb3_budget_s

        start = time.perf_counter()
        trainer.train(total or trainer.total_steps, callback=check)
        results[label] = state["reached"]
        print(f"meshrl, {label}: {'%.1f s' % state['reached'] if state['reached'] else 'not reached'} "
              f"({trainer.global_step:,} steps; evaluation excluded)")
    reached = min((r for r in results.values() if r), default=None)
    model = sb3_model(8, 0)
    start, sb3_reached, best, eval_s = time.perf_counter(), None, 0.0, 0.0
    while time.perf_counter() - start - eval_s < args.sb3_budget_s:
        model.learn(8 * 128 * 8, reset_num_timesteps=False)
        train_s = time.perf_counter() - start - eval_s
        paused = time.perf_counter()
        best = max(best, sb3_delivery(model))
        eval_s += time.perf_counter() - paused
        if best >= target:
            sb3_reached = train_s
            break
    print(f"SB3 (prototype settings): {'%.1f s' % sb3_reached if sb3_reached else 'not reached within %.0f s' % args.sb3_budget_s} "
          f"({model.num_timesteps:,} steps; best delivery {best:.3f})")
    if reached:
        bound = sb3_reached or args.sb3_budget_s
        print(f"time-to-95%-of-SP ratio (meshrl's faster setting): {'' if sb3_reached else '>= '}{bound / reached:.1f}x")


if __name__ == "__main__":
    main()
