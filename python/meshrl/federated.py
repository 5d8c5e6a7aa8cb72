"""Federated routers: mesh nodes train one routing policy together.

A :class:`Federation` runs a coordinator and one learning worker per mesh node (or per site) in
one process, on a seeded virtual clock: heartbeats register the workers, each round samples K
alive ones, the global model and the updates travel the twin's own mesh (so stragglers and lost
updates come from its links), a Byzantine-robust rule from :mod:`meshrl.fl` aggregates, and each
global model is named by its SHA-256. Faults (dropouts, crashes, stragglers, NaN updates) and
attacks (sign flip, IPM, ALIE, Gaussian, reward poisoning) come from the config, and so do
differential privacy (``privacy``: clipping, noise, ε per round from the RDP accountant),
secure aggregation (``secagg``: the coordinator sees only the sum; FedAvg only) and trust
(``trust``: every update signed, 3f + 1 validators agree with PBFT on each round's model, the
model ledger records it with its proof, and the next round's model is read back from the ledger;
a round without a proof is not accepted).

>>> fed = meshrl.federated.Federation("configs/federate/mesh20.toml", trust={"ledger": "runs/l.mlg"})
>>> fed.run(3)
>>> meshrl.ledger.Ledger(fed.ledger_path).latest_model()

>>> fed = meshrl.federated.Federation("configs/federate/mesh20.toml")
>>> fed.run(callback=lambda r: print(r["round"], r["global_delivery"]))
>>> fed.evaluate(central=True)["summaries"]

:class:`Worker` is one worker on its own (what a Flower client runs; see :mod:`meshrl.flower`).
The config is a TOML path (``configs/federate/*.toml``) or a dict with the same sections
(``env``: a TOML path or an environment dict; ``federation``, ``network``, ``faults``,
``attack``, ``privacy``, ``secagg``, ``trust``, ``ppo``); keyword arguments override whole fields of a section, e.g.
``Federation(path, federation={"rule": "median"}, attack={"kind": "ipm", "fraction": 0.2})``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from meshrl import _core

__all__ = ["Federation", "Worker", "load_config", "initial_weights", "evaluate", "BASELINES"]

#: Baselines the global model is compared with by default, strongest first where known.
BASELINES = ("etx", "etx_trust", "latency", "shortest_path", "random")

_SECTIONS = ("federation", "network", "faults", "attack", "privacy", "secagg", "trust", "ppo")


def load_config(config: str | os.PathLike[str] | Mapping[str, Any], **overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved federation config as a dict: the environment loaded (its overrides applied),
    every section with its defaults, then ``overrides`` (section → fields) on top."""
    if isinstance(config, (str, os.PathLike)):
        cfg = json.loads(_core.load_federation_config(os.fspath(config)))
    elif isinstance(config, Mapping):
        cfg = json.loads(json.dumps(dict(config)))
    else:
        raise TypeError(f"config must be a TOML path or a dict, not {type(config).__name__}")
    for section, fields in overrides.items():
        if section not in _SECTIONS and section != "env":
            raise ValueError(f"unknown federation config section `{section}`; sections: env, {', '.join(_SECTIONS)}")
        if not isinstance(fields, Mapping):
            raise TypeError(f"override of section `{section}` must be a dict, got {type(fields).__name__}")
        current = cfg.get(section)
        if section == "env" and isinstance(current, str):
            raise ValueError("env is a path in this config; override its fields in the TOML's [overrides] instead")
        cfg[section] = {**(current or {}), **fields}
    return cfg


def _core_config(config: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the Rust constructors."""
    if isinstance(config, (str, os.PathLike)) and not overrides:
        return {"path": os.fspath(config)}
    try:
        text = json.dumps(load_config(config, **overrides), allow_nan=False)
    except ValueError as e:
        raise ValueError(f"federation config holds a value JSON cannot carry (NaN or infinite?): {e}") from None
    return {"config_json": text}


def _weights(w: Any) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(w, dtype=np.float32).reshape(-1))
    return a


class Federation:
    """A coordinator and its workers on the twin's mesh, one process, a seeded virtual clock."""

    def __init__(self, config: str | os.PathLike[str] | Mapping[str, Any], **overrides: Mapping[str, Any]):
        self._core = _core.Federation(**_core_config(config, overrides))
        self.config: dict[str, Any] = json.loads(self._core.config)

    @classmethod
    def resume(cls, path: str | os.PathLike[str]) -> "Federation":
        """Continues a federation from a checkpoint written by :meth:`save_checkpoint`."""
        self = cls.__new__(cls)
        self._core = _core.Federation.resume(os.fspath(path))
        self.config = json.loads(self._core.config)
        return self

    @property
    def round(self) -> int:
        """Rounds run so far."""
        return self._core.round

    @property
    def num_workers(self) -> int:
        return self._core.num_workers

    @property
    def byzantine(self) -> list[bool]:
        """Which workers the attack controls."""
        return list(self._core.byzantine)

    @property
    def model_hash(self) -> str:
        """SHA-256 of the global model as a safetensors file: its name in the model ledger."""
        return self._core.model_hash

    @property
    def ledger_path(self) -> str | None:
        """The model ledger (``trust`` only); read it with :class:`meshrl.ledger.Ledger`."""
        return self._core.ledger_path

    @property
    def validators(self) -> tuple[list[int], list[bool]] | None:
        """The PBFT validators (worker indices, in replica order) and which of them are
        Byzantine (``trust`` only)."""
        v = self._core.validators
        return None if v is None else (list(v[0]), list(v[1]))

    @property
    def total_samples(self) -> int:
        """Environment steps behind every aggregated update so far."""
        return self._core.total_samples

    def site(self, worker: int) -> list[int]:
        """The mesh nodes whose traffic ``worker`` learns from."""
        return list(self._core.site(int(worker)))

    def run_round(self) -> dict[str, Any]:
        """Runs one round; returns its report (participants, excluded and set-aside updates,
        stragglers, lost workers, ``model_hash``, ``global_delivery``, ...)."""
        return json.loads(self._core.run_round())

    def run(self, rounds: int | None = None, callback: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
        """Runs ``rounds`` rounds (default: up to the config's ``federation.rounds``);
        ``callback(report)`` after each, stopping early when it returns ``False``. Returns the
        reports of the rounds run."""
        if rounds is None:
            rounds = max(0, int(self.config["federation"]["rounds"]) - self.round)
        if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 0:
            raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
        reports = []
        for _ in range(int(rounds)):
            report = self.run_round()
            reports.append(report)
            if callback is not None and callback(report) is False:
                break
        return reports

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every round's report so far."""
        return json.loads(self._core.history())

    def global_weights(self) -> np.ndarray:
        """The global model's weights (flat float32, :meth:`meshrl.ppo.Learner.get_weights`'s layout)."""
        return self._core.global_weights()

    def set_global_weights(self, weights: Any) -> None:
        self._core.set_global_weights(_weights(weights))

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Writes a checkpoint atomically; :meth:`resume` continues it to the same result."""
        self._core.save_checkpoint(os.fspath(path))

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Saves the global model as a weights file (``meshrl export`` reads it)."""
        self._core.save_weights(os.fspath(path))

    def export(self, path: str | os.PathLike[str]) -> int:
        """Exports the global model for mesh nodes (``meshrl.runtime``); returns the checksum."""
        return self._core.export(os.fspath(path))

    def evaluate(
        self,
        episodes: int = 2000,
        seed: int = 1_000_003,
        baselines: Sequence[str] = BASELINES,
        central: bool = False,
    ) -> dict[str, Any]:
        """The global model (greedy) next to ``baselines`` on ``episodes`` packets of the whole
        mesh's traffic, paired on the same packets; with ``central=True`` also a policy trained
        centrally on the samples the federation aggregated. Returns ``{"summaries": [...],
        "policies": {name: summary}, "paired": [...]}`` (``paired``: federated − each other)."""
        central_samples = self.total_samples if central else None
        if central and not central_samples:
            raise ValueError("central=True needs at least one completed round (no samples aggregated yet)")
        out = json.loads(self._core.evaluate(int(episodes), int(seed), list(baselines), central_samples))
        out["policies"] = {s["policy"]: s for s in out["summaries"]}
        return out


class Worker:
    """One worker of a federation on its own: a Learner on the traffic of its node (or site).
    What a Flower client runs."""

    def __init__(self, config: str | os.PathLike[str] | Mapping[str, Any], worker: int, **overrides: Mapping[str, Any]):
        if isinstance(worker, bool) or not isinstance(worker, (int, np.integer)) or worker < 0:
            raise ValueError(f"worker must be a non-negative integer, got {worker!r}")
        self._core = _core.FederatedWorker(int(worker), **_core_config(config, overrides))
        self.worker = int(worker)

    @property
    def nodes(self) -> list[int]:
        """The mesh nodes whose packets the worker learns from."""
        return list(self._core.nodes)

    def fit(self, global_weights: Any, round: int) -> tuple[np.ndarray, int, dict[str, float]]:
        """One round from ``global_weights``: the local PPO updates. Returns (delta = local −
        global weights, environment steps trained on, metrics)."""
        return self._core.fit(_weights(global_weights), int(round))


def initial_weights(config: str | os.PathLike[str] | Mapping[str, Any], **overrides: Mapping[str, Any]) -> np.ndarray:
    """The global model a federation with this config starts from."""
    return Federation(config, **overrides).global_weights()


def evaluate(
    config: str | os.PathLike[str] | Mapping[str, Any],
    weights: Any,
    episodes: int = 1000,
    seed: int = 1_000_003,
    baselines: Sequence[str] = (),
) -> dict[str, Any]:
    """Delivery of a model with ``weights`` on the federation's mesh (its whole traffic), next to
    ``baselines``; ``result["delivery_ratio"]`` is the model's."""
    fed = Federation(config)
    fed.set_global_weights(weights)
    out = fed.evaluate(episodes=episodes, seed=seed, baselines=baselines)
    out["delivery_ratio"] = out["summaries"][0]["delivery_ratio"]
    return out
