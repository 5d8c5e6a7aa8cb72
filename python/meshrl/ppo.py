"""PPO from Python, on burn in Rust (CPU ``flex`` backend by default; ``device="auto"`` takes a GPU
through wgpu when there is one).

Two classes, as in the Rust crate:

- :class:`Learner`: the actor-critic, its optimizer and RNG, for any environment. Sample actions,
  store transitions, update; weights in and out (flat, for federated learning); act; export.
  :meth:`Learner.for_vector_env` + :meth:`Learner.train_vector_env` train on any Gymnasium
  ``VectorEnv``.
- :class:`Trainer`: a learner and the Rust routing environments; rollouts never cross into Python.

>>> trainer = meshrl.ppo.Trainer(config="configs/train/small.toml")
>>> trainer.train(callback=lambda stats: print(stats["charts/SPS"]))
>>> trainer.evaluate()["summaries"][0]["delivery_ratio"]

``callback(stats)`` is called after each update with CleanRL's metric names
(``charts/episodic_return``, ``losses/approx_kl``, ``routing/delivery_ratio``, ``time/update_s``, ...)
and stops training when it returns ``False``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

import numpy as np

from meshrl import _core
from meshrl.config import resolve_config

__all__ = ["Learner", "Trainer", "default_ppo_config"]


def default_ppo_config() -> dict[str, Any]:
    """Every PPO setting with its default (the prototype's values)."""
    return json.loads(_core.default_ppo_config())


def _ppo_config(ppo: Mapping[str, Any] | None, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    cfg = dict(base) if base is not None else default_ppo_config()
    unknown = set(ppo or {}) - set(default_ppo_config())
    if unknown:
        raise ValueError(f"unknown PPO setting(s) {sorted(unknown)}; known: {sorted(default_ppo_config())}")
    cfg.update(ppo or {})
    return cfg


def _intervals(d: dict[str, Any]) -> Any:
    """95 % intervals as ``(low, high)`` tuples, as :func:`meshrl.eval.compare` gives them."""
    return (d["low"], d["high"]) if set(d) == {"low", "high"} else d


def _flat(a: Any, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


class Learner:
    """PPO's actor-critic, optimizer and RNG for ``obs_dim`` observations and ``num_actions``
    discrete actions (``ppo``: settings, see :func:`default_ppo_config`)."""

    def __init__(self, obs_dim: int, num_actions: int, ppo: Mapping[str, Any] | None = None):
        self.ppo_config = _ppo_config(ppo)
        self._core = _core.Learner(int(obs_dim), int(num_actions), json.dumps(self.ppo_config))

    @classmethod
    def _of(cls, core: Any, ppo_config: dict[str, Any]) -> "Learner":
        """The learner inside a :class:`Trainer` (shares its state)."""
        learner = object.__new__(cls)
        learner.ppo_config = ppo_config
        learner._core = core
        return learner

    @classmethod
    def for_vector_env(cls, envs: Any, ppo: Mapping[str, Any] | None = None) -> "Learner":
        """A learner for a ``gymnasium.vector.VectorEnv`` with a flat ``Box`` observation space and
        a ``Discrete`` action space; ``num_envs`` comes from ``envs``. Train it with
        :meth:`train_vector_env`. An ``info["action_mask"]`` (n × actions, 1 = valid) is used when
        the environment gives one."""
        from gymnasium import spaces

        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"observations must be a flat Box, got {obs_space}")
        if not isinstance(act_space, spaces.Discrete):
            raise ValueError(f"actions must be Discrete, got {act_space}")
        cfg = _ppo_config(ppo)
        cfg["num_envs"] = int(envs.num_envs)
        return cls(int(obs_space.shape[0]), int(act_space.n), cfg)

    @property
    def spec(self) -> dict[str, Any]:
        """The network's shape: obs_dim, num_actions, hidden, activation, architecture, ..."""
        return json.loads(self._core.spec)

    @property
    def num_actions(self) -> int:
        return int(self.spec["num_actions"])

    @property
    def global_step(self) -> int:
        return self._core.global_step

    @property
    def device(self) -> str:
        """The backend the network runs on: ``flex`` (the CPU), ``wgpu`` or ``cuda``; what
        ``device="auto"`` resolved to."""
        return self._core.device

    def sample(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampled actions, their log-probabilities and the critic's values for a batch."""
        return self._core.sample(_flat(obs, np.float32), _flat(mask, np.int8))

    def values(self, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The critic's values for a batch of observations."""
        return self._core.values(_flat(obs, np.float32), None if mask is None else _flat(mask, np.int8))

    def store_transition(self, obs, mask, actions, logps, values, rewards, dones) -> None:
        """Stores one step of every environment (rewards include γ·V(final obs) for truncated
        episodes)."""
        self._core.store_transition(
            _flat(obs, np.float32), _flat(mask, np.int8), _flat(actions, np.int64), _flat(logps, np.float32),
            _flat(values, np.float32), _flat(rewards, np.float32), _flat(dones, bool),
        )

    def update(self, last_obs: np.ndarray, lr: float | None = None) -> dict[str, float]:
        """One PPO update on the stored transitions (``last_obs`` follow the last stored step)."""
        return self._core.update_from_buffer(_flat(last_obs, np.float32), float(self.ppo_config["learning_rate"] if lr is None else lr))

    def record_episode(self, episodic_return: float) -> None:
        """Reports a finished episode's return (for ``charts/episodic_return``)."""
        self._core.record_episode(float(episodic_return))

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
            raise ValueError(f"envs has {n} environments, the learner was made for {cfg['num_envs']}")
        k = self.num_actions
        num_updates = max(1, -(-int(total_steps) // (n * t_max)))
        obs, info = envs.reset(seed=cfg["seed"] if seed is None else seed)
        ep_return = np.zeros(n, dtype=np.float64)
        stats: dict[str, float] = {}
        for update in range(num_updates):
            lr = cfg["learning_rate"] * (1.0 - update / num_updates if cfg["anneal_lr"] else 1.0)
            for _ in range(t_max):
                mask = info.get("action_mask") if isinstance(info, dict) else None
                m = np.ones((n, k), np.int8) if mask is None else np.asarray(mask, np.int8)
                actions, logps, values = self.sample(obs, m)
                next_obs, reward, terminated, truncated, info = envs.step(actions)
                reward = np.asarray(reward, dtype=np.float32).copy()
                ep_return += reward
                terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
                cut = np.flatnonzero(truncated & ~terminated)
                if len(cut):
                    final = np.stack([np.asarray(info["final_obs"][i], np.float32) for i in cut])
                    reward[cut] += gamma * self.values(final)
                done = terminated | truncated
                for i in np.flatnonzero(done):
                    self.record_episode(float(ep_return[i]))
                    ep_return[i] = 0.0
                self.store_transition(obs, m, actions, logps, values, reward, done)
                obs = next_obs
            stats = self.update(obs, lr)
            if callback is not None and callback(stats) is False:
                break
        return stats

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
        """Reads weights saved by :meth:`save` for the same network shape."""
        self._core.load(os.fspath(path))

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The actor's unmasked logits ``(n, K)`` for observations ``(n, obs_dim)``."""
        return self._core.logits(_flat(obs, np.float32)).reshape(-1, self.num_actions)

    def get_action(self, obs: np.ndarray, mask: np.ndarray, deterministic: bool = False, seed: int = 0) -> np.ndarray:
        """Actions for observations ``(n, obs_dim)`` and masks ``(n, K)``: masked slots are never
        chosen; NaN observations and rows without a valid action raise ``ValueError``."""
        return self._core.get_action(_flat(obs, np.float32), _flat(mask, np.int8), bool(deterministic), int(seed))

    def export(self, path: str | os.PathLike[str], critic: bool = False, training_config: Mapping[str, Any] | None = None) -> int:
        """Exports the policy for mesh nodes: the actor in safetensors (f32) with a model card in
        its metadata (observation layout and constants, architecture, configs, checksum). Load it
        with :mod:`meshrl.runtime` (NumPy only), the ``meshrl-runtime`` Rust crate or the
        ``safetensors`` package. Returns the checksum."""
        config = json.dumps(dict(training_config) if training_config is not None else {"train": {"ppo": self.ppo_config}})
        return self._core.export(os.fspath(path), bool(critic), config)


class Trainer:
    """Trains a masked actor-critic with PPO on the Rust routing environments.

    Either ``config=`` a training TOML (``configs/train/*.toml``: environment or mixture, total
    steps, PPO settings), or ``env`` (a TOML path or dict, plus keyword overrides of its fields)
    and ``ppo`` (a dict of PPO settings; see :func:`default_ppo_config`). ``trainer.learner`` is
    its :class:`Learner` (shared state): weights, acting and export.
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
        self.eval_scenarios: list[str] = []
        reseed_every = 0
        if config is not None:
            if env is not None or env_overrides:
                raise ValueError("give either config= (a training TOML) or env=/overrides, not both")
            mix_json, ppo_json, self.total_steps, reseed_every, self.eval_scenarios = _core.load_train_config(os.fspath(config))
            mix = json.loads(mix_json)
            ppo_cfg = _ppo_config(ppo, json.loads(ppo_json))
            if len(mix) == 1:
                mix[0]["num_envs"] = ppo_cfg["num_envs"]
            elif "num_envs" in (ppo or {}):
                raise ValueError("num_envs of a mixture is the sum of its [[mix]] shares; set them in the config")
        else:
            ppo_cfg = _ppo_config(ppo)
            mix = [{"env": resolve_config(env, **env_overrides), "num_envs": ppo_cfg["num_envs"]}]
        self.ppo_config = ppo_cfg
        self._core = _core.Trainer(json.dumps(mix), json.dumps(ppo_cfg), int(reseed_every))
        self.mix = json.loads(self._core.mix)
        self.env_config = self.mix[0]["env"]
        self.learner = Learner._of(self._core.learner, ppo_cfg)

    @property
    def global_step(self) -> int:
        return self.learner.global_step

    @property
    def device(self) -> str:
        """The backend training runs on: ``flex`` (the CPU), ``wgpu`` or ``cuda``."""
        return self.learner.device

    def train(self, steps: int | None = None, callback: Callable[[dict], Any] | None = None) -> dict[str, float]:
        """Trains for ``steps`` environment steps (default: the training config's
        ``total_steps``); returns the last update's stats. ``callback(stats)`` runs after every
        update with the trainer free to use (``get_weights``, ``evaluate``, acting, export);
        returning ``False`` stops training. Ctrl-C stops it between updates."""
        if steps is None:
            if self.total_steps is None:
                raise ValueError("give steps= (no training config with total_steps was loaded)")
            steps = self.total_steps
        return self._core.train(int(steps), callback)

    def evaluate(
        self,
        episodes: int = 2048,
        seed: int = 1_000_003,
        scenario: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The policy (``ppo`` sampled, ``ppo (greedy)``) next to ETX, ETX with trust, the latency
        router, backpressure, shortest path and random, on ``episodes`` packets the training
        never saw, under the scenario's own load and paired on the same packets. ``scenario``: an
        environment TOML or dict (default: the first training environment). Returns
        ``{"scenario", "policies": {name: summary}, "summaries": [...], "best_baseline",
        "paired": [...]}`` (names: ``ppo``, ``ppo (greedy)``, ``baseline:etx``, ...); ``paired``
        holds the policy − ETX and policy − best baseline delivery differences with 95 %
        intervals."""
        if scenario is None:
            name, scenario_json = "eval", None
        else:
            name = os.path.splitext(os.path.basename(os.fspath(scenario)))[0] if not isinstance(scenario, Mapping) else "scenario"
            scenario_json = json.dumps(resolve_config(scenario))
        result = json.loads(self._core.evaluate(int(episodes), int(seed), scenario_json, name), object_hook=_intervals)
        result["policies"] = {s["policy"]: s for s in result["summaries"]}
        return result

    # The learner's acting, weights and export, for convenience.
    def get_weights(self) -> np.ndarray:
        return self.learner.get_weights()

    def set_weights(self, weights: np.ndarray) -> None:
        self.learner.set_weights(weights)

    def save(self, path: str | os.PathLike[str]) -> None:
        self.learner.save(path)

    def load(self, path: str | os.PathLike[str]) -> None:
        self.learner.load(path)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        return self.learner.logits(obs)

    def get_action(self, obs: np.ndarray, mask: np.ndarray, deterministic: bool = False, seed: int = 0) -> np.ndarray:
        return self.learner.get_action(obs, mask, deterministic, seed)

    def export(self, path: str | os.PathLike[str], critic: bool = False) -> int:
        """Exports the policy for mesh nodes (see :meth:`Learner.export`) with this trainer's
        configs in the model card."""
        config = {"train": {"ppo": self.ppo_config, "total_steps": self.total_steps}, "env": self.env_config}
        return self.learner.export(path, critic, config)
