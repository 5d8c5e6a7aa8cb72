"""Gymnasium environments backed by the Rust routing environment.

- :class:`MeshRoutingEnv`: one environment, a ``gymnasium.Env``.
- :class:`MeshRoutingVecEnv`: a native ``gymnasium.vector.VectorEnv`` stepping every
  sub-environment in Rust, in parallel.

Observations are float32 vectors of ``max_neighbors * 6 + 1`` values (per neighbour slot:
rssi, latency, packet_loss, hop_count_to_destination, bandwidth, trust, normalized to roughly
[-1, 1]; then the local queue depth). The action is a neighbour slot; the valid ones are in
``info["action_mask"]`` (int8, 1 = valid), the convention of Gymnasium's Taxi.

Infos carry ``outcome``, ``packet`` (the packet's index within its environment, from 0 at each
seeded reset), ``loss_cause``, ``source``, ``destination``, ``node``, ``path_length``,
``shortest_hops``, ``latency_ms`` and ``episode_return``. The key ``episode`` is left to
episode-statistics wrappers (Gymnasium's ``RecordEpisodeStatistics``, SB3's ``Monitor``).

``render_mode="rgb_array"`` renders the mesh, its links coloured by packet loss, the packet's
path, its node and its destination (:func:`meshrl.render.draw_frame`); ``"ansi"`` a text
summary with the neighbour table of the packet's node (:func:`meshrl.render.describe`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from meshrl import _core, render
from meshrl.config import resolve_config

__all__ = ["MeshRoutingEnv", "MeshRoutingVecEnv", "LOSS_CAUSES", "OUTCOMES"]

LOSS_CAUSES: tuple[str, ...] = tuple(_core.LOSS_CAUSES)
"""Names of ``info["loss_cause"]`` codes (0 = none)."""
OUTCOMES: tuple[str, ...] = tuple(_core.OUTCOMES)
"""Names of ``info["outcome"]`` codes."""

_INFO_KEYS = ("outcome", "packet", "loss_cause", "source", "destination", "node", "path_length",
              "shortest_hops", "latency_ms", "episode_return")


# Features per neighbour slot and after the slots, by feature set (rust/format/src/obs.rs).
_LAYOUTS = {"spec": (6, 1), "routing": (11, 3)}


def _observation_space(max_neighbors: int, features: str = "spec") -> spaces.Box:
    per, context = _LAYOUTS[features]
    # Every feature is in [0, 1] but RSSI (the first of each slot), in [-1, 1].
    slot_low = np.zeros(per, dtype=np.float32)
    slot_low[0] = -1.0
    low = np.append(np.tile(slot_low, max_neighbors), np.zeros(context, dtype=np.float32))
    return spaces.Box(low=low, high=np.ones_like(low), dtype=np.float32)


def _check_actions(actions: Any, num_envs: int, max_neighbors: int) -> np.ndarray:
    arr = np.asarray(actions)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"actions must be integers (neighbour slots), got dtype {arr.dtype}")
    if arr.shape != (num_envs,):
        raise ValueError(f"actions must have shape ({num_envs},), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


_AUTORESET_MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}


def _autoreset_name(mode: str | AutoresetMode) -> str:
    """Config name of an autoreset mode given as the enum, its value or the config name."""
    for name, member in _AUTORESET_MODES.items():
        if mode in (name, member, member.value):
            return name
    raise ValueError(f"autoreset_mode {mode!r} is not supported: use NEXT_STEP or SAME_STEP")


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**62))


_RENDER_MODES = ("ansi", "rgb_array")
_RENDER_FPS = 4


def _check_render_mode(render_mode: str | None) -> str | None:
    if render_mode is not None and render_mode not in _RENDER_MODES:
        raise ValueError(f"render_mode {render_mode!r} is not supported: use one of {list(_RENDER_MODES)} or None")
    return render_mode


def _render(core: Any, env_index: int, mode: str, path: Sequence[int], info: dict[str, Any], ttl: int,
            size: tuple[int, int]) -> np.ndarray | str:
    network = core.network(env_index)
    if mode == "ansi":
        return render.describe(network, path, info, ttl)
    return render.draw_frame(network, path, info["node"], info["destination"], size)


class MeshRoutingEnv(gymnasium.Env):
    """Routes one packet per episode through a simulated mesh.

    ``config`` is a TOML path or a dict; other keyword arguments override config fields (see
    :func:`meshrl.resolve_config`). ``env.envs_per_twin`` is irrelevant here: the packet has
    its twin to itself.

    After an episode ends, ``reset()`` without a seed advances the twin by one tick while it
    starts the next packet, exactly as the vector environment's autoreset step does, so N of
    these under ``SyncVectorEnv`` match :class:`MeshRoutingVecEnv` step for step.

    ``render_mode`` is ``"rgb_array"`` (``render()`` returns a ``render_size`` ``(H, W, 3)``
    uint8 frame), ``"ansi"`` (a str) or ``None``.
    """

    metadata = {"render_modes": list(_RENDER_MODES), "render_fps": _RENDER_FPS}
    render_size: tuple[int, int] = render.FRAME_SIZE
    """``(height, width)`` of ``rgb_array`` frames, pixels."""

    def __init__(self, config: str | os.PathLike[str] | Mapping[str, Any] | None = None, render_mode: str | None = None, **overrides: Any):
        self.render_mode = _check_render_mode(render_mode)
        cfg = resolve_config(config, **overrides)
        cfg["env"]["autoreset_mode"] = "next_step"
        self.config = cfg
        self._core = _core.VecEnv(json.dumps(cfg), 1)
        self.max_neighbors = self._core.max_neighbors
        self.observation_space = _observation_space(self.max_neighbors, cfg["env"]["features"])
        assert self.observation_space.shape == (self._core.obs_dim,)
        self.action_space = spaces.Discrete(self.max_neighbors)
        self._obs = self._core.obs_view()
        self._mask = self._core.mask_view()
        self._reward = self._core.reward_view()
        self._terminated = self._core.terminated_view()
        self._truncated = self._core.truncated_view()
        self._started = False
        self._finished = False
        self._path: list[int] = []

    def _info(self) -> dict[str, Any]:
        raw = self._core.info()
        info: dict[str, Any] = {key: raw[key][0].item() for key in _INFO_KEYS}
        info["outcome_name"] = OUTCOMES[info["outcome"]]
        info["loss_cause_name"] = LOSS_CAUSES[info["loss_cause"]]
        info["action_mask"] = self._mask[0].copy()
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"unsupported reset options: {sorted(options)}")
        if seed is not None:
            self._core.reset(seed=int(seed))
        elif not self._started:
            self._core.reset(seed=_seed_from(self.np_random))
        elif self._finished:
            # The autoreset step: the twin ticks while the next packet starts.
            self._core.step(np.zeros(1, dtype=np.int64))
        else:
            self._core.reset()
        self._started = True
        self._finished = False
        info = self._info()
        self._path = [info["node"]]
        return self._obs[0].copy(), info

    def step(self, action: Any):
        if not self._started:
            raise _core.EnvStateError("step called before reset: call reset() first")
        if self._finished:
            raise _core.EnvStateError("the episode is over: call reset() before stepping again")
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
            arr = np.asarray(action)
            if arr.shape != () or arr.dtype.kind not in "iu":
                raise ValueError(f"action must be an integer neighbour slot, got {action!r}")
            action = int(arr)
        if not 0 <= int(action) < self.max_neighbors:
            raise ValueError(f"action {action} is out of range: must be in 0..{self.max_neighbors}")
        self._core.step(np.array([action], dtype=np.int64))
        terminated, truncated = bool(self._terminated[0]), bool(self._truncated[0])
        self._finished = terminated or truncated
        info = self._info()
        self._path = self._path[: info["path_length"]] + [info["node"]]
        return self._obs[0].copy(), float(self._reward[0]), terminated, truncated, info

    def render(self) -> np.ndarray | str | None:
        """The current state in ``render_mode``: a frame or a text (see the class doc)."""
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without a render_mode: pass render_mode='rgb_array' or 'ansi' to the constructor"
            )
            return None
        if not self._started:
            raise _core.EnvStateError("render called before reset: call reset() first")
        return _render(self._core, 0, self.render_mode, self._path, self._info(), self.config["env"]["ttl"],
                       self.render_size)

    def action_masks(self) -> np.ndarray:
        """The current valid-action mask as bool (the sb3-contrib MaskablePPO convention)."""
        return self._mask[0].astype(bool)


class MeshRoutingVecEnv(VectorEnv):
    """``num_envs`` routing environments stepped together in Rust.

    Sub-environment ``i`` is seeded ``seed + i``; groups of ``env.envs_per_twin`` share one
    twin (their packets cross the same queues). With ``envs_per_twin=1`` it agrees step for step
    with ``num_envs`` :class:`MeshRoutingEnv` under ``SyncVectorEnv``.

    ``copy=True`` (default) returns arrays you own. ``copy=False`` returns zero-copy, read-only
    views of the Rust buffers: the next ``step`` or ``reset`` overwrites them in place.
    ``autoreset_mode`` is ``"next_step"`` (default) or ``"same_step"`` (or the
    ``gymnasium.vector.AutoresetMode`` members); under SAME_STEP, finished episodes' last
    observations are in ``info["final_obs"]`` and their infos in ``info["final_info"]``.

    ``render_mode`` (``"rgb_array"``, ``"ansi"`` or ``None``): ``render()`` returns one frame
    or text per sub-environment, as Gymnasium's vector environments do; meant for small
    ``num_envs``.
    """

    render_size: tuple[int, int] = render.FRAME_SIZE
    """``(height, width)`` of ``rgb_array`` frames, pixels."""

    def __init__(
        self,
        num_envs: int = 1,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        copy: bool = True,
        autoreset_mode: str | AutoresetMode | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ):
        self.render_mode = _check_render_mode(render_mode)
        if not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        cfg = resolve_config(config, **overrides)
        if autoreset_mode is not None:
            cfg["env"]["autoreset_mode"] = _autoreset_name(autoreset_mode)
            cfg = resolve_config(cfg)
        self.config = cfg
        self.num_envs = int(num_envs)
        self.copy = bool(copy)
        self._core = _core.VecEnv(json.dumps(cfg), self.num_envs)
        self.max_neighbors = self._core.max_neighbors
        self.metadata = {
            "render_modes": list(_RENDER_MODES),
            "render_fps": _RENDER_FPS,
            "autoreset_mode": _AUTORESET_MODES[cfg["env"]["autoreset_mode"]],
        }
        self.single_observation_space = _observation_space(self.max_neighbors, cfg["env"]["features"])
        assert self.single_observation_space.shape == (self._core.obs_dim,)
        self.single_action_space = spaces.Discrete(self.max_neighbors)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._views = {
            "obs": self._core.obs_view(),
            "mask": self._core.mask_view(),
            "reward": self._core.reward_view(),
            "terminated": self._core.terminated_view(),
            "truncated": self._core.truncated_view(),
            "final_obs": self._core.final_obs_view(),
            "final_mask": self._core.final_mask_view(),
        }
        for view in self._views.values():
            view.flags.writeable = False
        self._same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        self._started = False
        self._closed = False
        # Nodes each packet has been at, by hop (only kept for rendering).
        self._paths = np.zeros((self.num_envs, cfg["env"]["ttl"] + 1), dtype=np.int64) if self.render_mode else None

    def _out(self, name: str) -> np.ndarray:
        view = self._views[name]
        return view.copy() if self.copy else view

    def _infos(self) -> dict[str, Any]:
        n = self.num_envs
        everywhere = np.ones(n, dtype=bool)
        infos: dict[str, Any] = {"action_mask": self._out("mask"), "_action_mask": everywhere}
        raw = self._core.info()
        if self._paths is not None:
            hop = np.minimum(raw["path_length"], self._paths.shape[1] - 1)
            self._paths[np.arange(n), hop] = raw["node"]
        for key, value in raw.items():
            infos[key] = value
            infos[f"_{key}"] = everywhere
        if self._same_step:
            ended = infos["reset"] & ~self._first_reset
            final = self._core.final_info()
            final_info: dict[str, Any] = {}
            for key, value in final.items():
                final_info[key] = value
                final_info[f"_{key}"] = ended
            final_info["action_mask"] = self._views["final_mask"].copy()
            final_info["_action_mask"] = ended
            infos["final_obs"] = self._views["final_obs"].copy()
            infos["_final_obs"] = ended
            infos["final_info"] = final_info
            infos["_final_info"] = ended
        return infos

    def _check_open(self) -> None:
        if self._closed:
            raise _core.EnvStateError("the environment is closed")

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        self._check_open()
        if options:
            raise ValueError(f"unsupported reset options: {sorted(options)}")
        if seed is None:
            if not self._started:
                self._np_random, _ = gymnasium.utils.seeding.np_random(None)
                self._core.reset(seed=_seed_from(self._np_random))
            else:
                self._core.reset()
        elif isinstance(seed, (int, np.integer)):
            self._np_random, _ = gymnasium.utils.seeding.np_random(int(seed))
            self._core.reset(seed=int(seed))
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds (one per environment), got {len(seeds)}")
            self._core.reset(seeds=seeds)
        self._started = True
        self._first_reset = np.ones(self.num_envs, dtype=bool)
        infos = self._infos()
        self._first_reset = np.zeros(self.num_envs, dtype=bool)
        return self._out("obs"), infos

    def step(self, actions: Any):
        self._check_open()
        if not self._started:
            raise _core.EnvStateError("step called before reset: call reset() first")
        self._core.step(_check_actions(actions, self.num_envs, self.max_neighbors))
        return (
            self._out("obs"),
            self._out("reward"),
            self._out("terminated"),
            self._out("truncated"),
            self._infos(),
        )

    def render(self) -> tuple[np.ndarray | str, ...] | None:
        """One frame (``rgb_array``) or text (``ansi``) per sub-environment."""
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without a render_mode: pass render_mode='rgb_array' or 'ansi' to the constructor"
            )
            return None
        self._check_open()
        if not self._started:
            raise _core.EnvStateError("render called before reset: call reset() first")
        raw = self._core.info()
        ttl = self.config["env"]["ttl"]
        frames = []
        for i in range(self.num_envs):
            info = {key: value[i].item() for key, value in raw.items()}
            info["outcome_name"] = OUTCOMES[info["outcome"]]
            info["loss_cause_name"] = LOSS_CAUSES[info["loss_cause"]]
            hops = min(info["path_length"], self._paths.shape[1] - 1)
            frames.append(_render(self._core, i, self.render_mode, self._paths[i, : hops + 1].tolist(), info, ttl,
                                  self.render_size))
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        self._closed = True

    def action_masks(self) -> np.ndarray:
        """Current valid-action masks as bool, shape (num_envs, max_neighbors)."""
        return self._views["mask"].astype(bool)
