"""Flower (https://flower.ai), for federations across real machines.

Needs Flower 1.41 (``pip install 'meshrl[flower]'``, Python >= 3.11); ``import meshrl`` never
imports it, ``import meshrl.flower`` does.

- :class:`MeshrlStrategy`: Flower's Message-API ``FedAvg`` with its ``aggregate_train``
  replaced by a :mod:`meshrl.fl` rule (Krum, median, trimmed mean, Bulyan, geometric median,
  centered clipping, FedAvg; optional nearest-neighbour mixing first). Each round it screens
  the replies one by one (an error reply, a missing record, a wrong length, NaN/Inf values or a
  bad example count rejects that reply, with the reason, instead of failing the round as
  Flower's ``FedAvg`` does), reports which clients the rule set aside, and keeps a
  :class:`RoundReport` per round in ``strategy.reports``.
- :func:`client_app`: a ``ClientApp`` whose ``@app.train()`` runs a meshrl worker
  (:class:`meshrl.federated.Worker`) on its own part of the twin: with ``--node-config
  'partition-id=P num-partitions=N'``, site P of the mesh split into N sites. Its
  ``@app.evaluate()`` routes that site's packets with the global model.
- :func:`server_app`: a ``ServerApp`` that runs a :class:`MeshrlStrategy` for
  ``num-server-rounds`` rounds from :func:`meshrl.federated.initial_weights` and evaluates the
  global model (:func:`meshrl.federated.evaluate`) on the same packets before the first round
  and after each one.

**Deltas, not weights.** The server sends the global weights (one flat float32 vector,
``ArrayRecord({"weights": ...})``); a meshrl client replies with its *delta*, local weights
minus the global weights it received (``ArrayRecord({"delta": ...})``), and the number of
environment steps it trained on as ``num-examples``. The rules aggregate deltas; the strategy
adds the aggregate to the global weights it sent. For clients that send weights back, as most
Flower apps do, pass ``updates="weights"``: the strategy subtracts the global weights first, so
the rules still see deltas. A model of several arrays is aggregated as one vector (the arrays
flattened in their record's order).

The example Flower App in ``examples/flower/`` runs these on a loopback deployment or on
real machines; see its README and ``docs/federated.md``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from logging import ERROR, INFO, WARNING
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.common.logger import log
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "meshrl.flower needs Flower 1.41 (Python >= 3.11): pip install 'meshrl[flower]' "
        f"({e})"
    ) from e

import meshrl.fl as fl

__all__ = [
    "MeshrlStrategy",
    "RoundReport",
    "SiteWorker",
    "Worker",
    "client_app",
    "federation_config",
    "server_app",
    "strategy_from_run_config",
    "worker_from_context",
]

RULES: dict[str, Callable[..., Any]] = {
    name: getattr(fl, name)
    for name in ("fedavg", "krum", "median", "trimmed_mean", "bulyan", "geometric_median", "centered_clipping")
}
"""The :mod:`meshrl.fl` rules a :class:`MeshrlStrategy` can run, by name."""

# Parameters the strategy fills in itself.
_OWN = {"updates", "weights", "on_invalid", "return_report"}
PARTITION_KEY = "partition-id"
"""Metric a meshrl client adds to its replies so reports can name partitions, not node ids."""


@dataclass
class RoundReport:
    """What a :class:`MeshrlStrategy` did with one round's training replies (node ids are
    Flower's; ``partitions`` maps those that reported a ``partition-id``)."""

    server_round: int
    rule: str
    accepted: list[int] = field(default_factory=list)
    """Node ids whose update went into the rule."""
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """``(node id, reason)`` of each reply screened out before the rule."""
    set_aside: list[int] = field(default_factory=list)
    """Accepted node ids that the rule set aside (see :func:`set_aside`)."""
    partitions: dict[int, int] = field(default_factory=dict)
    update_norm: float = float("nan")
    """L2 norm of the aggregated delta (NaN when the round was skipped)."""
    skipped: str | None = None
    """Why no new global model came out of this round, if none did."""


def set_aside(rule: str, params: Mapping[str, Any], rows: np.ndarray, aggregate: np.ndarray) -> list[int]:
    """Rows of ``rows`` (clients, parameters) that ``rule`` set aside when it produced ``aggregate``.

    Exact for Krum and multi-Krum (the clients not selected). Trimmed mean: clients trimmed at
    more than half of the coordinates. Centered clipping: clients farther than ``tau`` from the
    result (clipped). Median, Bulyan, geometric median and FedAvg keep no per-client decision;
    for them a client is flagged when its distance to the aggregate exceeds three times the
    median distance (an outlier flag, not the rule's own). The same definitions as
    ``meshrl_fl::set_aside`` in Rust.
    """
    n = len(rows)
    if n == 0:
        return []
    x = rows.astype(np.float64)
    if rule == "krum":
        f = int(params["num_byzantine"])
        if n > 2 * f + 2:
            sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
            k = max(1, n - f - 2)
            scores = np.array([np.sort(np.delete(sq[i], i))[:k].sum() for i in range(n)])
            kept = set(np.argsort(scores, kind="stable")[: min(max(1, int(params.get("num_selected", 1))), n)].tolist())
            return [i for i in range(n) if i not in kept]
        return []
    if rule == "trimmed_mean":
        k = int(math.floor(float(params["beta"]) * n))
        if k == 0:
            return []
        order = np.argsort(x, axis=0, kind="stable")
        trimmed = np.zeros(n, dtype=np.int64)
        for part in (order[:k], order[n - k :]):
            np.add.at(trimmed, part.ravel(), 1)
        return [i for i in range(n) if 2 * trimmed[i] > x.shape[1]]
    dist = np.linalg.norm(x - aggregate.astype(np.float64), axis=1)
    if rule == "centered_clipping":
        return [i for i in range(n) if dist[i] > float(params.get("tau", 1.0))]
    median = np.sort(dist)[n // 2]
    return [i for i in range(n) if dist[i] > 3.0 * median and dist[i] > 0.0]


def _flatten(record: ArrayRecord) -> np.ndarray:
    arrays = [a.numpy().ravel() for a in record.values()]
    if not arrays:
        return np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(arrays), dtype=np.float32)


def _layout(record: ArrayRecord) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    return [(key, tuple(a.shape), np.dtype(a.dtype)) for key, a in record.items()]


def _unflatten(flat: np.ndarray, layout: Sequence[tuple[str, tuple[int, ...], np.dtype]]) -> ArrayRecord:
    out, at = {}, 0
    for key, shape, dtype in layout:
        size = int(np.prod(shape, dtype=np.int64))
        out[key] = Array(np.ascontiguousarray(flat[at : at + size].reshape(shape), dtype=dtype))
        at += size
    return ArrayRecord(out)


def _mean_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """Flower's weighted mean of the clients' metrics, without the partition ids."""
    weights = [float(next(iter(r.metric_records.values()))[weighted_by_key]) for r in records]
    if not records or sum(weights) <= 0:
        return MetricRecord()
    out = aggregate_metricrecords(records, weighted_by_key)
    if PARTITION_KEY in out:
        del out[PARTITION_KEY]
    return out


class MeshrlStrategy(FedAvg):
    """Flower's ``FedAvg`` (sampling, messages, evaluation) with a :mod:`meshrl.fl` rule as the
    training aggregation.

    ``rule``: a name in :data:`RULES`; ``rule_params``: its parameters (``num_byzantine``,
    ``num_selected``, ``beta``, ``tau``, ...; checked here against the rule's signature).
    Rules that take ``weights`` (fedavg, krum, geometric_median, centered_clipping) are given
    each reply's example count (``weighted_by_key``, ``"num-examples"``). ``nnm``: mix the
    updates by nearest neighbours first (Allouah et al. 2023), with ``True`` taking
    ``rule_params["num_byzantine"]`` as ``f`` or an int giving it. ``updates``: what clients
    send, ``"delta"`` (meshrl's clients) or ``"weights"``. Centered clipping starts from the
    previous round's aggregate unless ``rule_params`` gives a ``center``. Every other keyword
    goes to ``FedAvg`` (``fraction_train``, ``min_available_nodes``, ...).

    The returned training metrics add ``meshrl/accepted``, ``meshrl/rejected`` and
    ``meshrl/set-aside`` (counts), ``meshrl/rejected-nodes`` and ``meshrl/set-aside-nodes``
    (node ids), ``meshrl/set-aside-partitions`` (where clients report ``partition-id``) and
    ``meshrl/update-norm``; the reasons are in ``strategy.reports`` and the log.
    """

    def __init__(
        self,
        rule: str = "fedavg",
        rule_params: Mapping[str, Any] | None = None,
        *,
        nnm: bool | int = False,
        updates: str = "delta",
        **fedavg_kwargs: Any,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; known: {sorted(RULES)}")
        params = dict(rule_params or {})
        signature = inspect.signature(RULES[rule])
        accepted = [p for p in signature.parameters if p not in _OWN]
        own = sorted(set(params) & _OWN)
        if own:
            raise ValueError(f"rule_params may not set {own}: the strategy sets them")
        try:
            signature.bind(np.zeros((1, 1), np.float32), **params)
        except TypeError as e:
            raise ValueError(f"bad rule_params for {rule}: {e}; it takes {accepted}") from None
        if updates not in ("delta", "weights"):
            raise ValueError(f"updates must be 'delta' or 'weights', got {updates!r}")
        if isinstance(nnm, bool):
            if nnm and "num_byzantine" not in params:
                raise ValueError("nnm=True takes f from rule_params['num_byzantine']; give it, or nnm=<f>")
            nnm_f = int(params["num_byzantine"]) if nnm else None
        elif isinstance(nnm, (int, np.integer)) and nnm >= 0:
            nnm_f = int(nnm)
        else:
            raise ValueError(f"nnm must be a bool or a count >= 0, got {nnm!r}")
        fedavg_kwargs.setdefault("train_metrics_aggr_fn", _mean_metrics)
        super().__init__(**fedavg_kwargs)
        self.rule = rule
        self.rule_params = params
        self.nnm = nnm_f
        self.updates = updates
        self.reports: list[RoundReport] = []
        self._weighted = "weights" in signature.parameters
        self._global: tuple[np.ndarray, list[tuple[str, tuple[int, ...], np.dtype]]] | None = None
        self._previous: np.ndarray | None = None

    def summary(self) -> None:
        log(INFO, "\t├──> meshrl rule: %s %s%s (clients send %s)", self.rule, self.rule_params,
            f" after nnm(f={self.nnm})" if self.nnm is not None else "", self.updates)
        super().summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        """FedAvg's, remembering the global weights sent (the deltas are added to them)."""
        self._global = (_flatten(arrays), _layout(arrays))
        return super().configure_train(server_round, arrays, config, grid)

    def _screen(self, msg: Message, dim: int) -> tuple[np.ndarray, float, int | None] | str:
        """A reply's flat update, example count and partition id, or why it is rejected."""
        if msg.has_error():
            return f"error reply (code {msg.error.code}): {msg.error.reason}"
        content = msg.content
        if len(content.array_records) != 1:
            return f"expected one ArrayRecord, got {len(content.array_records)}"
        if len(content.metric_records) != 1:
            return f"expected one MetricRecord, got {len(content.metric_records)}"
        metrics = next(iter(content.metric_records.values()))
        count = metrics.get(self.weighted_by_key)
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not math.isfinite(count) or count < 0:
            return f"{self.weighted_by_key!r} must be a finite number >= 0, got {count!r}"
        try:
            update = _flatten(next(iter(content.array_records.values())))
        except Exception as e:  # a malformed Array (bad dtype or bytes) from a client
            return f"unreadable arrays: {e}"
        if update.size != dim:
            return f"length {update.size}, expected {dim}"
        bad = np.flatnonzero(~np.isfinite(update))
        if bad.size:
            return f"{bad.size} non-finite values (first at coordinate {bad[0]})"
        partition = metrics.get(PARTITION_KEY)
        return update, float(count), partition if isinstance(partition, int) else None

    def aggregate_train(self, server_round: int, replies: Any) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Screens each reply, aggregates the accepted updates with the rule and returns the new
        global weights (global + aggregated delta) and the training metrics."""
        if self._global is None:
            raise RuntimeError("aggregate_train before configure_train: the strategy adds the deltas to the weights it sent")
        current, layout = self._global
        report = RoundReport(server_round, self.rule)
        self.reports.append(report)
        rows, counts, nodes, contents = [], [], [], []
        for msg in replies:
            node = int(msg.metadata.src_node_id)
            screened = self._screen(msg, current.size)
            if isinstance(screened, str):
                report.rejected.append((node, screened))
                log(WARNING, "round %d: rejected node %d: %s", server_round, node, screened)
                continue
            update, count, partition = screened
            rows.append(update - current if self.updates == "weights" else update)
            counts.append(count)
            nodes.append(node)
            contents.append(msg.content)
            if partition is not None:
                report.partitions[node] = partition
        report.accepted = nodes
        if not rows:
            report.skipped = "no acceptable replies"
            log(WARNING, "round %d: no acceptable replies; the global model stays", server_round)
            return None, self._metrics(report, contents)
        x = np.stack(rows)
        params = dict(self.rule_params)
        if self._weighted:
            params["weights"] = np.asarray(counts, dtype=np.float32)
        if self.rule == "centered_clipping" and "center" not in params:
            params["center"] = self._previous
        try:
            mixed = fl.nnm(x, self.nnm) if self.nnm is not None else x
            aggregate = RULES[self.rule](mixed, **params)
        except (ValueError, TypeError) as e:
            report.skipped = f"{self.rule} failed on {len(rows)} accepted replies: {e}"
            log(ERROR, "round %d: %s; the global model stays", server_round, report.skipped)
            return None, self._metrics(report, contents)
        report.set_aside = [nodes[i] for i in set_aside(self.rule, self.rule_params, mixed, aggregate)]
        report.update_norm = float(np.linalg.norm(aggregate))
        self._previous = aggregate
        log(INFO, "round %d: %s over %d replies (%d rejected), set aside %s, |update| %.4g", server_round, self.rule,
            len(rows), len(report.rejected), report.set_aside, report.update_norm)
        return _unflatten(current + aggregate, layout), self._metrics(report, contents)

    def _metrics(self, report: RoundReport, contents: list[RecordDict]) -> MetricRecord:
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key) if contents else MetricRecord()
        metrics["meshrl/accepted"] = len(report.accepted)
        metrics["meshrl/rejected"] = len(report.rejected)
        metrics["meshrl/set-aside"] = len(report.set_aside)
        metrics["meshrl/rejected-nodes"] = [node for node, _ in report.rejected]
        metrics["meshrl/set-aside-nodes"] = list(report.set_aside)
        metrics["meshrl/set-aside-partitions"] = [report.partitions[n] for n in report.set_aside if n in report.partitions]
        if math.isfinite(report.update_norm):
            metrics["meshrl/update-norm"] = report.update_norm
        return metrics


# ------------------------------------------------------------------------------------------
# Workers: what a ClientApp runs on its part of the twin.


class Worker(Protocol):
    """A federated worker: trains from the global weights, evaluates weights on its own traffic."""

    def fit(self, global_weights: np.ndarray, server_round: int) -> tuple[np.ndarray, int, dict[str, float]]:
        """``(delta, num_samples, metrics)``: local weights minus ``global_weights`` (float32)
        after training from them, the environment steps trained on and named metrics."""
        ...

    def evaluate(self, weights: np.ndarray) -> dict[str, float]:
        """Metrics of ``weights`` on this worker's own packets, at least ``delivery_ratio`` and
        ``episodes``."""
        ...


def _section(run_config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The run config's ``[prefix]`` table (Flower flattens it to ``prefix.key``), with
    snake_case keys."""
    return {k[len(prefix) + 1 :].replace("-", "_"): v for k, v in run_config.items() if k.startswith(prefix + ".")}


def federation_config(run_config: Mapping[str, Any], num_partitions: int = 1) -> dict[str, Any]:
    """The :mod:`meshrl.federated` config of a run: the environment of the ``[env]`` table
    (``config``: an env TOML on this machine, ``""`` for meshrl's defaults; every other key
    overrides a field by its unique name, e.g. ``num-nodes``, ``hop-cost``, ``seed``), the mesh
    drawn from the env's ``seed`` (``federation.mesh_seed``), split into ``num_partitions``
    sites, the PPO settings of the ``[ppo]`` table (:func:`meshrl.ppo.default_ppo_config`'s
    keys, dashes for underscores) and ``local-steps`` as whole PPO updates."""
    from meshrl.config import resolve_config
    from meshrl.ppo import default_ppo_config

    env_table = _section(run_config, "env")
    env = resolve_config(env_table.pop("config", "") or None, **env_table)
    ppo = _section(run_config, "ppo")
    steps_per_update = int(ppo.get("num_envs", default_ppo_config()["num_envs"])) * int(
        ppo.get("num_steps", default_ppo_config()["num_steps"]))
    return {
        "env": env,
        "federation": {
            "mesh_seed": int(env["seed"]),
            "sites": max(1, int(num_partitions)),
            "clients_per_round": max(1, int(num_partitions)),
            "min_participants": 1,
            "local_updates": max(1, -(-int(run_config.get("local-steps", 65536)) // steps_per_update)),
            "seed": int(ppo.get("seed", 0)),
        },
        "ppo": ppo,
    }


def _delivery(trainer: Any, episodes: int, seed: int) -> dict[str, float]:
    """The greedy policy's delivery (as nodes forward) on ``episodes`` packets (the same packets
    for the same seed), the sampled policy's, and ETX's on them for scale."""
    policies = trainer.evaluate(episodes=episodes, seed=seed)["policies"]
    greedy = policies["ppo (greedy)"]
    return {
        "delivery_ratio": float(greedy["delivery_ratio"]),
        "delivery_ci_low": float(greedy["delivery_ci"][0]),
        "delivery_ci_high": float(greedy["delivery_ci"][1]),
        "sampled_delivery_ratio": float(policies["ppo"]["delivery_ratio"]),
        "etx_delivery_ratio": float(policies["baseline:etx"]["delivery_ratio"]),
        "episodes": float(episodes),
    }


class SiteWorker:
    """A :class:`meshrl.federated.Worker` for partition ``partition_id`` of ``num_partitions``:
    the worker of site ``partition_id`` when the run's mesh is split into ``num_partitions``
    sites around spread-out centres (:func:`federation_config`). It learns from the packets its
    site's nodes originate (``env.sources``); each :meth:`fit` starts from the global weights
    with a fresh optimizer and environments seeded by (seed, worker, round)."""

    def __init__(self, run_config: Mapping[str, Any], partition_id: int = 0, num_partitions: int = 1):
        from meshrl import federated

        if not 0 <= partition_id < num_partitions:
            raise ValueError(f"partition-id {partition_id} out of range for num-partitions {num_partitions}")
        self.run_config = dict(run_config)
        self.config = federation_config(run_config, num_partitions)
        self.worker = federated.Worker(self.config, int(partition_id))

    @property
    def nodes(self) -> list[int]:
        """The mesh nodes whose packets this worker learns from."""
        return self.worker.nodes

    def fit(self, global_weights: np.ndarray, server_round: int) -> tuple[np.ndarray, int, dict[str, float]]:
        delta, num_samples, metrics = self.worker.fit(np.asarray(global_weights, dtype=np.float32), int(server_round))
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        return np.asarray(delta, dtype=np.float32), int(num_samples), clean

    def evaluate(self, weights: np.ndarray) -> dict[str, float]:
        """:func:`_delivery` on ``client-eval-episodes`` packets of this site (seed ``eval-seed``)."""
        from meshrl.ppo import Trainer

        env = json.loads(json.dumps(self.config["env"]))
        env["topology"]["seed"] = self.config["federation"]["mesh_seed"]
        env["env"]["sources"] = self.nodes
        trainer = Trainer(env, self.config["ppo"])
        trainer.set_weights(weights)
        return _delivery(trainer, int(self.run_config.get("client-eval-episodes", 256)), int(self.run_config.get("eval-seed", 7)))


def worker_from_context(context: Context) -> Worker:
    """A :class:`SiteWorker` for this SuperNode: partition ``partition-id`` of
    ``num-partitions`` from its ``--node-config`` (0 of 1 if absent), configured by the run
    config."""
    node = context.node_config
    return SiteWorker(context.run_config, int(node.get("partition-id", 0)), int(node.get("num-partitions", 1)))


def client_app(make_worker: Callable[[Context], Worker] = worker_from_context) -> ClientApp:
    """A Flower ``ClientApp`` running ``make_worker(context)`` (default:
    :func:`worker_from_context`).

    ``@app.train()``: reads the global weights (the message's one ArrayRecord, flattened),
    calls ``worker.fit(weights, server_round)`` and replies with ``ArrayRecord({"delta": ...})``
    and a MetricRecord with ``num-examples`` (the steps trained), ``partition-id`` and the
    worker's metrics. ``@app.evaluate()``: replies with ``worker.evaluate(weights)`` and
    ``num-examples`` = its episodes.
    """
    app = ClientApp()

    def weights_and_round(msg: Message) -> tuple[np.ndarray, int]:
        if len(msg.content.array_records) != 1:
            raise ValueError(f"expected one ArrayRecord with the global weights, got {len(msg.content.array_records)}")
        config = next(iter(msg.content.config_records.values()), ConfigRecord())
        return _flatten(next(iter(msg.content.array_records.values()))), int(config.get("server-round", 0))

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        weights, server_round = weights_and_round(msg)
        delta, num_samples, metrics = make_worker(context).fit(weights, server_round)
        record = MetricRecord({k: float(v) for k, v in metrics.items()})
        record["num-examples"] = int(num_samples)
        record[PARTITION_KEY] = int(context.node_config.get("partition-id", 0))
        delta = np.ascontiguousarray(delta, dtype=np.float32)
        content = RecordDict({"arrays": ArrayRecord({"delta": Array(delta)}), "metrics": record})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        weights, _ = weights_and_round(msg)
        metrics = make_worker(context).evaluate(weights)
        record = MetricRecord({k: float(v) for k, v in metrics.items() if k != "episodes"})
        record["num-examples"] = int(metrics.get("episodes", 1))
        return Message(content=RecordDict({"metrics": record}), reply_to=msg)

    return app


# ------------------------------------------------------------------------------------------
# The ServerApp.


def strategy_from_run_config(run_config: Mapping[str, Any]) -> MeshrlStrategy:
    """A :class:`MeshrlStrategy` from the run config's ``[strategy]`` table: ``rule``, the rule's
    parameters in kebab-case (``num-byzantine``, ``num-selected``, ``beta``, ``tau``, ...;
    those the rule does not take are ignored, so one table serves every rule), ``nnm`` (bool)
    and ``min-nodes`` (the nodes each round waits for and samples at least)."""
    table = _section(run_config, "strategy")
    rule = str(table.pop("rule", "fedavg"))
    nnm = bool(table.pop("nnm", False))
    min_nodes = int(table.pop("min_nodes", 2))
    takes = inspect.signature(RULES[rule]).parameters if rule in RULES else {}
    params = {k: v for k, v in table.items() if k in takes and k not in _OWN}
    fraction_evaluate = 1.0 if int(run_config.get("client-eval-episodes", 0)) > 0 else 0.0
    return MeshrlStrategy(rule, params, nnm=nnm, min_train_nodes=min_nodes, min_available_nodes=min_nodes,
                          min_evaluate_nodes=min_nodes, fraction_evaluate=fraction_evaluate)


class GlobalEvaluator:
    """The server-side evaluation before round 1 and after each round:
    :func:`meshrl.federated.evaluate`, the global model (greedy, as nodes forward) and ETX on the
    same ``server-eval-episodes`` packets of the whole mesh's traffic (seed ``eval-seed``)."""

    def __init__(self, run_config: Mapping[str, Any]):
        from meshrl import federated

        self.federated = federated
        self.config = federation_config(run_config)
        self.episodes = int(run_config.get("server-eval-episodes", 1024))
        self.seed = int(run_config.get("eval-seed", 7))

    def initial_weights(self) -> np.ndarray:
        """:func:`meshrl.federated.initial_weights` of the run's config."""
        return np.asarray(self.federated.initial_weights(self.config), dtype=np.float32)

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        out = self.federated.evaluate(self.config, _flatten(arrays), episodes=self.episodes, seed=self.seed, baselines=("etx",))
        model, etx = out["summaries"][0], out["summaries"][1]
        ci = model["delivery_ci"]
        low, high = (ci["low"], ci["high"]) if isinstance(ci, Mapping) else ci
        return MetricRecord({
            "delivery_ratio": float(model["delivery_ratio"]),
            "delivery_ci_low": float(low),
            "delivery_ci_high": float(high),
            "etx_delivery_ratio": float(etx["delivery_ratio"]),
            "episodes": float(model["episodes"]),
        })


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in record.items()}


def server_app(make_strategy: Callable[[Context], MeshrlStrategy] | None = None) -> ServerApp:
    """A Flower ``ServerApp``: ``make_strategy(context)`` (default:
    :func:`strategy_from_run_config`) from meshrl's initial weights for ``num-server-rounds``,
    evaluating the global model on the same packets before round 1 and after each round. With
    ``results-path`` set in the run config it writes a JSON summary there (rounds, the
    evaluations, the training metrics and each :class:`RoundReport`)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run = context.run_config
        strategy = make_strategy(context) if make_strategy is not None else strategy_from_run_config(run)
        evaluator = GlobalEvaluator(run)
        start = time.monotonic()
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord({"weights": Array(evaluator.initial_weights())}),
            num_rounds=int(run.get("num-server-rounds", 3)),
            evaluate_fn=evaluator,
        )
        path = str(run.get("results-path", "") or "")
        if path:
            summary = {
                "strategy": type(strategy).__name__,
                "rule": strategy.rule,
                "rule_params": {k: v for k, v in strategy.rule_params.items() if np.isscalar(v)},
                "nnm": strategy.nnm,
                "rounds": len(strategy.reports),
                "wall_s": time.monotonic() - start,
                "server_eval": {str(r): _plain(m) for r, m in result.evaluate_metrics_serverapp.items()},
                "client_eval": {str(r): _plain(m) for r, m in result.evaluate_metrics_clientapp.items()},
                "train_metrics": {str(r): _plain(m) for r, m in result.train_metrics_clientapp.items()},
                "reports": [asdict(r) | {"partitions": {str(k): v for k, v in r.partitions.items()}} for r in strategy.reports],
            }
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=1, default=float)
            os.replace(tmp, path)

    return app
