"""Time to a router that matches ETX on the dynamic scenario: meshrl against Stable-Baselines3's
``PPO`` and sb3-contrib's ``MaskablePPO`` (PyTorch, CPU), one after the other, same machine.

The scenario is ``configs/train/dynamic-routing.toml`` (the 32-node dynamic mesh with churn,
degradation and 10 % untrusted nodes, routing features, delivery reward). Every
``--eval-every`` environment steps each library's current policy routes the same
``--eval-episodes`` packets (seed ``--eval-seed``, 256 environments, 64 per twin: the scenario's
own load), greedily (argmax over valid slots: SB3's ``deterministic=True``), through
``meshrl.eval.compare`` (a policy callable, the same harness and packets as ETX's). Packets pair
up by (environment, episode): "matches ETX" is the paired delivery difference ≥ 0 (point
estimate; the 95 % interval is a paired bootstrap).

Both libraries run in this process, timed the same way: the clock starts when the trainer (and
its environments) are built, after the imports, and pauses while a policy is evaluated.

- meshrl: ``meshrl.ppo.Trainer`` on ``--meshrl-config`` (default dynamic-routing.toml; the
  config's own reseeding, as ``meshrl train`` runs it), evaluated from ``train``'s callback
  after every ``--eval-every`` steps; it trains on to the end of the run (``--meshrl-steps``,
  default the config's ``total_steps``) and reports the last policy too.
- SB3 / MaskablePPO: ``make_vec_env`` over ``meshrl/MeshRouting-v0`` (DummyVecEnv, Monitor),
  evaluated from a callback at rollout start (after the update).
  Stops at the first match or after ``--budget-s`` seconds of training.

    pip install "meshrl[bench]"   # or: pip install stable-baselines3 sb3-contrib
    python python/benchmarks/time_to_etx.py [--libs meshrl,sb3-ppo,sb3-maskable] [--budget-s 900]

Results and caveats: BENCHMARKS.md, "Time to a router that beats ETX".
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time
from typing import Callable

import numpy as np

import meshrl
import meshrl.eval
import meshrl.ppo
from meshrl import _core

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN_CONFIG = ROOT / "configs" / "train" / "dynamic-routing.toml"
EVAL_ENVS = 256  # whole twins of 64 packets: meshrl_ppo::own_load_envs for this scenario

Act = Callable[[np.ndarray, np.ndarray], np.ndarray]


def load_scenario() -> tuple[dict, dict, int]:
    """The training environment (overrides applied), meshrl's PPO settings and total steps."""
    mix_json, ppo_json, total_steps, _, _ = _core.load_train_config(str(TRAIN_CONFIG))
    return json.loads(mix_json)[0]["env"], json.loads(ppo_json), total_steps


def route(act: Act, env_cfg: dict, episodes: int, seed: int) -> dict[tuple[int, int], bool]:
    """Delivered or not for each (environment, episode), routed by ``act`` through meshrl.eval."""
    r = meshrl.eval.compare([("policy", act)], env_cfg, episodes=episodes, seed=seed, num_envs=EVAL_ENVS)
    e = r["episodes"]["policy"]
    return {(int(i), int(j)): bool(d) for i, j, d in zip(e["env"], e["episode"], e["delivered"])}


def paired(policy: dict, etx: dict, seed: int = 0) -> tuple[float, float, float, float]:
    """(policy delivery, policy - ETX, 95 % paired-bootstrap interval low, high)."""
    keys = sorted(set(policy) & set(etx))
    diff = np.array([policy[k] for k in keys], float) - np.array([etx[k] for k in keys], float)
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, len(diff), size=(2000, len(diff)))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return float(np.mean([policy[k] for k in keys])), float(diff.mean()), float(low), float(high)


class Etx:
    """ETX's outcome on the evaluation packets, and the comparison of a policy with it."""

    def __init__(self, env_cfg: dict, episodes: int, seed: int):
        self.env_cfg, self.episodes, self.seed = env_cfg, episodes, seed
        r = meshrl.eval.compare(["baseline:etx"], env_cfg, episodes=episodes, seed=seed, num_envs=EVAL_ENVS)
        e = r["episodes"]["baseline:etx"]
        self.outcome = {(int(i), int(j)): bool(d) for i, j, d in zip(e["env"], e["episode"], e["delivered"])}
        self.delivery = float(r["summary"]["baseline:etx"]["delivery_ratio"])

    def compare(self, act: Act) -> tuple[tuple[float, float, float, float], float]:
        t0 = time.perf_counter()
        outcome = route(act, self.env_cfg, self.episodes, self.seed)
        assert set(outcome) == set(self.outcome), "the policy's packets do not pair up with ETX's"
        return paired(outcome, self.outcome), time.perf_counter() - t0


def run_meshrl(etx: Etx, ppo_cfg: dict, overrides: dict, steps: int, eval_every: int, seed: int,
               stop_at_match: bool) -> dict:
    batch = ppo_cfg["num_envs"] * ppo_cfg["num_steps"]
    if eval_every % batch:
        raise SystemExit(f"--eval-every must be a multiple of meshrl's batch ({batch})")
    state = dict(eval_s=0.0, evals=[], reached=None)

    def clock(stats: dict) -> bool:
        # After each update the trainer is free: evaluate its policy, the clock paused.
        step = stats["global_step"]
        train_s = time.perf_counter() - start - state["eval_s"]
        if step % eval_every and step < steps:
            return True
        if state["reached"] is not None and step % 32768 and step < steps:
            return True  # past the match: every 32,768 steps and the last
        paused = time.perf_counter()
        result, _ = etx.compare(act)
        state["evals"].append((step, train_s, result))
        print(f"  meshrl step {step:>9,} train {train_s:7.2f} s  delivery {result[0]:.3f}  "
              f"vs ETX {result[1]:+.3f} [{result[2]:+.3f}, {result[3]:+.3f}]", flush=True)
        first_match = state["reached"] is None and result[1] >= 0
        if first_match:
            check_against_trainer(trainer, etx, result[0])
        state["eval_s"] += time.perf_counter() - paused
        if first_match:
            state["reached"] = (step, train_s, result, state["eval_s"])
        return not (first_match and stop_at_match)

    start = time.perf_counter()
    trainer = meshrl.ppo.Trainer(config=TRAIN_CONFIG, ppo={**overrides, "device": "cpu", "seed": seed})
    act = lambda o, m: trainer.get_action(o, m, deterministic=True)  # noqa: E731
    trainer.train(steps, callback=clock)
    wall = time.perf_counter() - start
    return dict(reached=state["reached"], evals=state["evals"], eval_s=state["eval_s"], wall=wall,
                last=state["evals"][-1] if state["evals"] else None)


def check_against_trainer(trainer: meshrl.ppo.Trainer, etx: Etx, delivery: float) -> None:
    """The Python harness against meshrl's own (Rust) one: same greedy delivery, same ETX."""
    pol = trainer.evaluate(episodes=etx.episodes, seed=etx.seed)["policies"]
    print(f"  check (Rust harness, Trainer.evaluate): ppo (greedy) {pol['ppo (greedy)']['delivery_ratio']:.4f} "
          f"(Python harness {delivery:.4f}), ETX {pol['baseline:etx']['delivery_ratio']:.4f} "
          f"(meshrl.eval.compare {etx.delivery:.4f})", flush=True)


def run_sb3(kind: str, etx: Etx, env_cfg: dict, settings: dict, n_envs: int, budget_s: float,
            eval_every: int, seed: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(2)
    if settings["n_steps"] * n_envs != eval_every and eval_every % (settings["n_steps"] * n_envs):
        raise SystemExit("--eval-every must be a multiple of SB3's rollout (n_envs * n_steps)")
    state = dict(eval_s=0.0, evals=[], reached=None, stop=False, next=eval_every)

    class Clock(BaseCallback):
        # At rollout start the update on every step so far is done: evaluate that policy.
        def _on_rollout_start(self) -> None:
            train_s = time.perf_counter() - start - state["eval_s"]
            if self.num_timesteps >= state["next"]:
                state["next"] += eval_every
                if kind == "sb3-maskable":
                    act = lambda o, m: self.model.predict(o, action_masks=m.astype(bool), deterministic=True)[0]  # noqa: E731
                else:
                    act = lambda o, m: self.model.predict(o, deterministic=True)[0]  # noqa: E731
                result, s = etx.compare(act)
                state["eval_s"] += s
                state["evals"].append((self.num_timesteps, train_s, result))
                print(f"  {kind} step {self.num_timesteps:>9,} train {train_s:7.2f} s  delivery {result[0]:.3f}  "
                      f"vs ETX {result[1]:+.3f} [{result[2]:+.3f}, {result[3]:+.3f}]", flush=True)
                if result[1] >= 0:
                    state["reached"] = (self.num_timesteps, train_s, result, state["eval_s"])
                    state["stop"] = True
            if train_s > budget_s:
                state["stop"] = True

        def _on_step(self) -> bool:
            return not state["stop"]

    start = time.perf_counter()
    env = make_vec_env(meshrl.ENV_ID, n_envs=n_envs, seed=seed, env_kwargs=dict(config=env_cfg))
    if kind == "sb3-maskable":
        from sb3_contrib import MaskablePPO as Algo
    else:
        Algo = PPO
    kwargs = dict(settings)
    arch = kwargs.pop("net_arch")
    activation = ACTIVATIONS[kwargs.pop("activation")]
    model = Algo("MlpPolicy", env, policy_kwargs=dict(net_arch=arch, activation_fn=getattr(torch.nn, activation)),
                 seed=seed, device="cpu", verbose=0, **kwargs)
    model.learn(total_timesteps=10**10, callback=Clock())
    env.close()
    return dict(reached=state["reached"], evals=state["evals"], eval_s=state["eval_s"],
                steps=model.num_timesteps, last=state["evals"][-1] if state["evals"] else None)


# SB3's settings: meshrl's rollout (8,192 steps) and learning rate, [64, 64] tanh MLP (SB3's
# MlpPolicy has no per-neighbour scoring), more epochs on smaller minibatches than meshrl.
SB3_SETTINGS = dict(n_steps=128, batch_size=1024, n_epochs=4, learning_rate=1e-3, gamma=0.99, gae_lambda=0.95,
                    clip_range=0.2, ent_coef=0.003, vf_coef=0.5, max_grad_norm=0.5, net_arch=[64, 64],
                    activation="tanh")
# `--sb3 activation=...`: the hidden layers' torch.nn module (meshrl's own names).
ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU"}


def describe(kind: str, ppo_cfg: dict, n_envs: int) -> str:
    if kind == "meshrl":
        name = TRAIN_CONFIG.relative_to(ROOT) if TRAIN_CONFIG.is_relative_to(ROOT) else TRAIN_CONFIG
        return (f"`{name}`: {ppo_cfg['architecture']} {ppo_cfg['hidden']} {ppo_cfg['activation']}, {ppo_cfg['num_envs']} envs x "
                f"{ppo_cfg['num_steps']}, {ppo_cfg['epochs']} epochs, mb {ppo_cfg['minibatch_size']}, lr {ppo_cfg['learning_rate']} annealed")
    s = SB3_SETTINGS
    return (f"MlpPolicy {s['net_arch']} {s['activation']}, make_vec_env {n_envs} x {s['n_steps']}, {s['n_epochs']} epochs, "
            f"mb {s['batch_size']}, lr {s['learning_rate']}, ent {s['ent_coef']}")


def settings(flag: str, items: list[str], known: dict, example: str) -> dict:
    """``KEY=JSON`` items of ``flag`` as a dict; unknown keys and values that are not JSON are errors."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"{flag} {item}: unknown setting {key!r}; known: {', '.join(known)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{flag} {item}: the value is not JSON ({e}); e.g. {flag} '{example}'") from None
    return out


def main() -> None:
    global TRAIN_CONFIG
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--libs", default="meshrl,sb3-ppo,sb3-maskable")
    p.add_argument("--budget-s", type=float, default=900.0, help="training seconds per SB3 run")
    p.add_argument("--meshrl-steps", type=int, default=None, help="default: the config's total_steps")
    p.add_argument("--eval-every", type=int, default=32768)
    p.add_argument("--eval-episodes", type=int, default=4096)
    p.add_argument("--eval-seed", type=int, default=1_000_003)
    p.add_argument("--sb3-envs", type=int, default=64)
    p.add_argument("--sb3-eval-every", type=int, default=None,
                   help="SB3's evaluation cadence (a multiple of its rollout; default --eval-every)")
    p.add_argument("--sb3", action="append", default=[], metavar="KEY=JSON",
                   help="override one of SB3's settings, e.g. --sb3 batch_size=512 --sb3 'net_arch=[32,32]'")
    p.add_argument("--meshrl", action="append", default=[], metavar="KEY=JSON",
                   help="override one of meshrl's PPO settings, e.g. --meshrl learning_rate=0.003")
    p.add_argument("--stop-at-match", action="store_true",
                   help="stop meshrl at its first match, as SB3 stops (default: train to the end and report it)")
    p.add_argument("--seeds", default="1", help="comma-separated training seeds; each library runs once per seed")
    p.add_argument("--meshrl-config", default=str(TRAIN_CONFIG),
                   help="meshrl's training config (the same scenario; default: dynamic-routing.toml)")
    args = p.parse_args()
    SB3_SETTINGS.update(settings("--sb3", args.sb3, SB3_SETTINGS, "net_arch=[32,32]"))
    if not isinstance(SB3_SETTINGS["activation"], str) or SB3_SETTINGS["activation"] not in ACTIVATIONS:
        raise SystemExit(f"--sb3 activation={json.dumps(SB3_SETTINGS['activation'])}: expected one of "
                         f"{', '.join(json.dumps(a) for a in ACTIVATIONS)}")
    shipped_env = load_scenario()[0]
    TRAIN_CONFIG = pathlib.Path(args.meshrl_config).resolve()
    if load_scenario()[0] != shipped_env:
        raise SystemExit(f"{TRAIN_CONFIG} trains another scenario than dynamic-routing.toml: not comparable")

    env_cfg, ppo_cfg, total_steps = load_scenario()
    meshrl_overrides = settings("--meshrl", args.meshrl, ppo_cfg, "hidden=[32,32]")
    ppo_cfg.update(meshrl_overrides)
    print(f"load before: {os.getloadavg()}", flush=True)
    etx = Etx(env_cfg, args.eval_episodes, args.eval_seed)
    print(f"ETX delivery on the {args.eval_episodes} evaluation packets: {etx.delivery:.4f}", flush=True)
    seeds = [int(x) for x in args.seeds.split(",")]
    rows: dict[tuple[str, int], dict] = {}
    for seed in seeds:
        for kind in args.libs.split(","):
            print(f"{kind}, seed {seed}:", flush=True)
            if kind == "meshrl":
                rows[kind, seed] = run_meshrl(etx, ppo_cfg, meshrl_overrides, args.meshrl_steps or total_steps,
                                              args.sb3_eval_every or args.eval_every, seed, args.stop_at_match)
            else:
                rows[kind, seed] = run_sb3(kind, etx, env_cfg, SB3_SETTINGS, args.sb3_envs, args.budget_s,
                                           args.sb3_eval_every or args.eval_every, seed)
            print(f"  load after {kind}: {os.getloadavg()}", flush=True)

    def train_s(r: dict) -> float:
        return r["reached"][1] if r["reached"] else float("inf")

    libs = list(dict.fromkeys(kind for kind, _ in rows))
    median = {kind: float(np.median([train_s(rows[kind, s]) for s in seeds])) for kind in libs}
    base = median.get("meshrl")
    print("\n| library | seed | settings | steps to match ETX | train wall s | eval s | delivery − ETX at that point [95 % CI] |")
    print("|---|---:|---|---:|---:|---:|---|")
    for (kind, seed), r in rows.items():
        hit = r["reached"]
        if hit:
            step, t, (d, diff, lo, hi), ev = hit
            print(f"| {kind} | {seed} | {describe(kind, ppo_cfg, args.sb3_envs)} | {step:,} | {t:.2f} | {ev:.1f} | "
                  f"{d:.3f} vs {etx.delivery:.3f}: {diff:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
        else:
            last = r["last"]
            best = max((e[2] for e in r["evals"]), key=lambda x: x[1], default=None)
            budget = last[1] if last else args.budget_s
            steps = r.get("steps", last[0] if last else 0)
            print(f"| {kind} | {seed} | {describe(kind, ppo_cfg, args.sb3_envs)} | not reached in {budget:.0f} s at "
                  f"{steps:,} steps | > {budget:.0f} | {r['eval_s']:.1f} | best {best[0]:.3f} vs {etx.delivery:.3f}: "
                  f"{best[1]:+.3f} [{best[2]:+.3f}, {best[3]:+.3f}] |" if best else f"| {kind} | {seed} | no evaluation |")
    print(f"\n| library | median train wall s to match ETX over seeds {args.seeds} | ratio vs meshrl |")
    print("|---|---:|---:|")
    for kind in libs:
        m = median[kind]
        ratio = "1.0×" if kind == "meshrl" else (f"{m / base:.1f}×" if base and base < float("inf") else "–")
        shown = f"{m:.2f}" if m < float("inf") else "not reached (most seeds)"
        print(f"| {kind} | {shown} | {ratio} |")

if __name__ == "__main__":
    main()
