"""PPO from Python: the Rust trainer (burn, CPU `flex` backend) on the Rust routing environment.

>>> trainer = meshrl.ppo.Trainer(config="configs/train/small.toml")
>>> trainer.train(callback=lambda stats: print(stats["charts/SPS"]))
>>> trainer.evaluate()["ppo"]["delivery_ratio"]

Rollouts never cross into Python; ``callback(stats)`` is called after each update with
CleanRL's metric names (``charts/episodic_return``, ``losses/approx_kl``,
``routing/delivery_ratio``, ...) and stops training when it returns ``False``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

import numpy as np

from meshrl import _core
from meshrl.config import resolve_config

__all__ = ["Trainer", "default_ppo_config"]


def default_ppo_config() -> dict[str, Any]:
    """Every PPO setting with its default (the prototype's values)."""
    return json.loads(_core.default_ppo_config())


class Trainer:
    """Trains a masked actor-critic with PPO.

    Either ``config=`` a training TOML (``configs/train/*.toml``: environment, total steps and
    PPO settings), or ``env`` (a TOML path or dict, plus keyword overrides of its fields) and
    ``ppo`` (a dict of PPO settings; see :func:`default_ppo_config`).
    """

    def __init__(
        self,
        env: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        ppo: Mapping[str, Any] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        **env_overrides: Any,
    ):
        self.total_steps: int | None = None
        if config is not None:
            if env is not None or env_overrides:
                raise ValueError("give either config= (a training TOML) or env=/overrides, not both")
            env_json, ppo_json, self.total_steps = _core.load_train_config(os.fspath(config))
            ppo_cfg = json.loads(ppo_json)
            ppo_cfg.update(ppo or {})
            env_cfg = json.loads(env_json)
        else:
            env_cfg = resolve_config(env, **env_overrides)
            ppo_cfg = default_ppo_config()
            unknown = set(ppo or {}) - set(ppo_cfg)
            if unknown:
                raise ValueError(f"unknown PPO setting(s) {sorted(unknown)}; known: {sorted(ppo_cfg)}")
            ppo_cfg.update(ppo or {})
        self.env_config = env_cfg
        self.ppo_config = ppo_cfg
        self._core = _core.Trainer(json.dumps(env_cfg), json.dumps(ppo_cfg))

    @property
    def global_step(self) -> int:
        return self._core.global_step

    def train(self, steps: int | None = None, callback: Callable[[dict], Any] | None = None) -> dict[str, float]:
        """Trains for ``steps`` environment steps (default: the training config's
        ``total_steps``); returns the last update's stats."""
        if steps is None:
            if self.total_steps is None:
                raise ValueError("give steps= (no training config with total_steps was loaded)")
            steps = self.total_steps
        return self._core.train(int(steps), callback)

    def evaluate(self, episodes: int = 2048, seed: int = 1_000_003) -> dict[str, dict[str, Any]]:
        """Delivery ratio (with a 95 % interval), latency and hops of the policy (sampled,
        ``ppo``; greedy, ``ppo_greedy``) next to ``shortest_path`` and ``random``, on packets
        the training never saw."""
        return self._core.evaluate(int(episodes), int(seed))

    def get_weights(self) -> np.ndarray:
        """All parameters as one flat float32 vector (what federated learning exchanges)."""
        return self._core.get_weights()

    def set_weights(self, weights: np.ndarray) -> None:
        """Replaces all parameters (same length as :meth:`get_weights`, finite values)."""
        arr = np.ascontiguousarray(weights, dtype=np.float32)
        if arr.ndim != 1:
            raise ValueError(f"weights must be 1-D, got shape {arr.shape}")
        self._core.set_weights(arr)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the weights atomically to ``path`` (a checksummed file)."""
        self._core.save(os.fspath(path))

    def load(self, path: str | os.PathLike[str]) -> None:
        """Reads weights saved by :meth:`save` for the same architecture."""
        self._core.load(os.fspath(path))

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The actor's unmasked logits ``(n, K)`` for observations ``(n, obs_dim)``."""
        o = np.ascontiguousarray(obs, dtype=np.float32)
        flat = self._core.logits(o.reshape(-1))
        return flat.reshape(-1, int(self.env_config["topology"]["max_neighbors"]))

    def export(self, path: str | os.PathLike[str], critic: bool = False) -> int:
        """Exports the policy for mesh nodes: the actor in safetensors (f32) with a model card
        in its metadata (observation layout and constants, architecture, this trainer's
        configs, checksum). Load it with :mod:`meshrl.runtime` (NumPy only), the
        ``meshrl-runtime`` Rust crate or the ``safetensors`` package. Returns the checksum."""
        config = json.dumps({"train": {"ppo": self.ppo_config, "total_steps": self.total_steps}, "env": self.env_config})
        return self._core.export(os.fspath(path), bool(critic), config)

    def get_action(self, obs: np.ndarray, mask: np.ndarray, deterministic: bool = False, seed: int = 0) -> np.ndarray:
        """Next-hop slots for observations ``(n, obs_dim)`` and masks ``(n, K)`` (invalid slots
        are never chosen)."""
        o = np.ascontiguousarray(obs, dtype=np.float32)
        m = np.ascontiguousarray(mask, dtype=np.int8)
        return self._core.get_action(o.reshape(-1), m.reshape(-1), bool(deterministic), int(seed))
