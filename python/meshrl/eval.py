"""Compare routing policies on the same packets (common random numbers).

>>> result = meshrl.eval.compare(["baseline:etx", "baseline:shortest_path"], "configs/eval/lossy.toml")
>>> result["summary"]["baseline:etx"]["delivery_ratio"]

The result is plain dicts and NumPy arrays (no pandas): ``summary`` per policy (delivery ratio
with a Wilson 95 % interval, mean and p95 latency with bootstrap intervals, mean hops, losses by
cause), ``paired`` comparisons of the first policy against each other one (paired bootstrap),
and ``episodes`` per policy as arrays (``delivered``, ``latency_ms``, ``hops``, ...), aligned
packet for packet across policies.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from meshrl import _core
from meshrl.config import resolve_config

__all__ = ["BASELINES", "compare"]

BASELINES: tuple[str, ...] = tuple(_core.BASELINES)
"""Baseline names accepted as ``baseline:NAME``."""


def compare(
    policies: Sequence[str],
    scenario: str | os.PathLike[str] | Mapping[str, Any],
    episodes: int = 2000,
    seed: int = 0,
    num_envs: int = 256,
) -> dict[str, Any]:
    """Routes ``episodes`` packets of ``scenario`` (a TOML path or config dict) with each policy
    (``baseline:NAME`` or ``baseline:all``) and compares them. See the module docstring."""
    names: list[str] = []
    for p in policies:
        if p == "baseline:all":
            names.extend(f"baseline:{b}" for b in BASELINES)
        else:
            names.append(p)
    cfg = resolve_config(scenario)
    if isinstance(scenario, (str, os.PathLike)):
        label = os.path.splitext(os.path.basename(os.fspath(scenario)))[0]
    else:
        label = "custom"
    raw, episodes_by_policy = _core.evaluate_baselines(names, json.dumps(cfg), label, int(episodes), int(seed), int(num_envs))
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
