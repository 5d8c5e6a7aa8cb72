"""Compare routing policies on the same packets (common random numbers).

>>> result = meshrl.eval.compare(["baseline:etx", "baseline:shortest_path"], "configs/eval/lossy.toml")
>>> result["summary"]["baseline:etx"]["delivery_ratio"]

Your own policy goes in as a callable ``act(obs, mask) -> actions``: ``obs`` is
``[num_envs, obs_dim]`` float32, ``mask`` ``[num_envs, max_neighbors]`` int8 (1 = valid), as
``MeshRoutingVecEnv`` gives them; it returns one integer slot per environment. It is called
once per step for all environments and routes the very packets the baselines route:

>>> model = stable_baselines3.PPO.load("ppo_mesh")
>>> act = lambda obs, mask: model.predict(obs, deterministic=True)[0]
>>> r = meshrl.eval.compare([("sb3", act), "baseline:etx"], "configs/eval/dynamic.toml")
>>> r["paired"][0]["delivery_diff"]   # sb3 - etx, same packets

A slot the mask hides loses the packet (``invalid_action``); a slot past the table, an
exception in ``act`` or a wrong number of actions stops the evaluation with an error.

The result is plain dicts and NumPy arrays (no pandas): ``summary`` per policy (delivery ratio
with a Wilson 95 % interval, mean and p95 latency with bootstrap intervals, mean hops, losses by
cause), ``paired`` comparisons of the first policy against each other one (paired bootstrap),
and ``episodes`` per policy as arrays (``delivered``, ``latency_ms``, ``hops``, ...), aligned
packet for packet across policies.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from meshrl import _core
from meshrl.config import resolve_config

__all__ = ["BASELINES", "compare"]

BASELINES: tuple[str, ...] = tuple(_core.BASELINES)
"""Baseline names accepted as ``baseline:NAME``."""


Act = Callable[[np.ndarray, np.ndarray], Any]


def compare(
    policies: Sequence[str | Act | tuple[str, Act]],
    scenario: str | os.PathLike[str] | Mapping[str, Any],
    episodes: int = 2000,
    seed: int = 0,
    num_envs: int = 256,
) -> dict[str, Any]:
    """Routes ``episodes`` packets of ``scenario`` (a TOML path or config dict) with each policy
    (``baseline:NAME``, ``baseline:all``, a callable ``act(obs, mask)`` or ``(name, act)``) and
    compares the first with each other one. See the module docstring."""
    if isinstance(policies, str) or callable(policies):
        policies = [policies]
    entries: list[str | tuple[str, Act]] = []
    for p in policies:
        if p == "baseline:all":
            entries.extend(f"baseline:{b}" for b in BASELINES)
        elif isinstance(p, str):
            entries.append(p)
        elif isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
            entries.append((p[0], p[1]))
        elif callable(p):
            entries.append((getattr(p, "__name__", type(p).__name__), p))
        else:
            raise TypeError(f"a policy is 'baseline:NAME', a callable act(obs, mask) or (name, act), got {p!r}")
    names = [e if isinstance(e, str) else e[0] for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"policy names must be unique, repeated: {', '.join(dupes)}")
    cfg = resolve_config(scenario)
    if isinstance(scenario, (str, os.PathLike)):
        label = os.path.splitext(os.path.basename(os.fspath(scenario)))[0]
    else:
        label = "custom"
    raw, episodes_by_policy = _core.evaluate_baselines(entries, json.dumps(cfg), label, int(episodes), int(seed), int(num_envs))
    data = json.loads(raw)
    summary = {s["policy"]: s for s in data["summaries"]}
    for s in summary.values():
        for key in ("delivery_ci", "latency_mean_ci", "latency_p95_ci"):
            s[key] = (s[key]["low"], s[key]["high"])
    return {
        "scenario": label,
        "policies": list(summary),
        "summary": summary,
        "paired": data["paired"],
        "episodes": dict(episodes_by_policy),
    }
