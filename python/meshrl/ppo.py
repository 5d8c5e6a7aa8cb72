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

    @classmethod
    def for_vector_env(cls, envs: Any, ppo: Mapping[str, Any] | None = None) -> "Trainer":
        """A trainer for any ``gymnasium.vector.VectorEnv`` with a flat ``Box`` observation space
        and a ``Discrete`` action space (the slower path: the environment steps in Python).
        ``num_envs`` comes from ``envs``; train with :meth:`train_vector_env`. An
        ``info["action_mask"]`` (n × actions, 1 = valid) is used when the environment gives one."""
        from gymnasium import spaces

        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"observations must be a flat Box, got {obs_space}")
        if not isinstance(act_space, spaces.Discrete):
            raise ValueError(f"actions must be Discrete, got {act_space}")
        ppo_cfg = default_ppo_config()
        unknown = set(ppo or {}) - set(ppo_cfg)
        if unknown:
            raise ValueError(f"unknown PPO setting(s) {sorted(unknown)}; known: {sorted(ppo_cfg)}")
        ppo_cfg.update(ppo or {})
        ppo_cfg["num_envs"] = int(envs.num_envs)
        self = cls.__new__(cls)
        self.total_steps = None
        self.env_config = {}
        self.ppo_config = ppo_cfg
        self._num_actions = int(act_space.n)
        self._core = _core.Trainer.for_spaces(int(obs_space.shape[0]), self._num_actions, json.dumps(ppo_cfg))
        return self

    def train_vector_env(
        self,
        envs: Any,
        total_steps: int,
        callback: Callable[[dict], Any] | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        """PPO on a Python vector environment for ``total_steps`` steps (learning rate annealed
        over them when ``anneal_lr``). The environment must autoreset in SAME_STEP mode
        (``gymnasium.make_vec(..., vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})``)
        so truncated episodes can be bootstrapped from ``info["final_obs"]``. ``callback(stats)``
        after each update; returning ``False`` stops."""
        from gymnasium.vector import AutoresetMode

        mode = envs.metadata.get("autoreset_mode")
        if mode not in (AutoresetMode.SAME_STEP, "same_step", "SameStep"):
            raise ValueError(
                f"the vector env autoresets in {mode!r} mode; create it with "
                "vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP}"
            )
        cfg = self.ppo_config
        n, t_max, gamma = int(envs.num_envs), int(cfg["num_steps"]), float(cfg["gamma"])
        if n != cfg["num_envs"]:
            raise ValueError(f"envs has {n} environments, the trainer was made for {cfg['num_envs']}")
        num_updates = max(1, -(-int(total_steps) // (n * t_max)))
        obs, info = envs.reset(seed=cfg["seed"] if seed is None else seed)
        ep_return = np.zeros(n, dtype=np.float64)
        stats: dict[str, float] = {}
        for update in range(num_updates):
            lr = cfg["learning_rate"] * (1.0 - update / num_updates if cfg["anneal_lr"] else 1.0)
            for _ in range(t_max):
                o = np.ascontiguousarray(obs, dtype=np.float32).reshape(-1)
                mask = info.get("action_mask") if isinstance(info, dict) else None
                m = (np.ones((n, self._num_actions), np.int8) if mask is None else np.asarray(mask, np.int8)).reshape(-1)
                actions, logps, values = self._core.sample(o, np.ascontiguousarray(m))
                obs, reward, terminated, truncated, info = envs.step(actions)
                reward = np.asarray(reward, dtype=np.float32).copy()
                ep_return += reward
                truncated = np.asarray(truncated, dtype=bool)
                terminated = np.asarray(terminated, dtype=bool)
                cut = np.flatnonzero(truncated & ~terminated)
                if len(cut):
                    final = np.stack([np.asarray(info["final_obs"][i], np.float32) for i in cut])
                    reward[cut] += gamma * self._core.values(np.ascontiguousarray(final).reshape(-1))
                done = terminated | truncated
                for i in np.flatnonzero(done):
                    self._core.record_episode(float(ep_return[i]))
                    ep_return[i] = 0.0
                self._core.store_transition(o, np.ascontiguousarray(m), actions, logps, values, reward, done)
            stats = self._core.update_from_buffer(np.ascontiguousarray(obs, dtype=np.float32).reshape(-1), lr)
            if callback is not None and callback(stats) is False:
                break
        return stats

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
