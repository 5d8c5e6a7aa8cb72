"""Privacy for federated routers: differential privacy with an accountant, and secure
aggregation. The Rust core is ``rust/privacy``; ``docs/privacy.md`` explains the pieces and
which aggregation rules compose with them.

- :class:`RDPAccountant`: RDP of the Poisson-subsampled Gaussian mechanism with Opacus's
  method names (``step``, ``get_epsilon``, ``get_privacy_spent``) and the numbers of Google's
  ``dp-accounting`` 0.6 (its default orders and its (ε, δ) conversion).
- :func:`noise_multiplier_for`: the smallest noise multiplier meeting a target ε.
- :class:`DPFedAvg`: clip each update to L2 norm ``C``, add Gaussian noise ``z·C`` to the sum
  (server, distributed or local), fixed or adaptive ``C`` (Andrew et al. 2021).
- :func:`clip_l2`, :func:`add_gaussian_noise`, :func:`l2_sensitivity`,
  :func:`rule_sensitivity`: the building blocks, on NumPy arrays.
- :func:`secure_sum`: secure aggregation (Bonawitz et al. 2017; SecAgg+ with ``degree``) of
  every client in process, with scripted dropouts.

Bad arguments raise ``ValueError`` (``TypeError`` for a wrong type) naming the parameter; an
aborted or attacked secure aggregation raises :class:`SecureAggregationError`.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from meshrl import _core
from meshrl._core import SecureAggregationError

__all__ = [
    "DPFedAvg",
    "DPRound",
    "RDPAccountant",
    "SecureAggregationError",
    "SecureSum",
    "SUM_BASED_RULES",
    "STAGES",
    "add_gaussian_noise",
    "clip_l2",
    "compute_rdp",
    "l2_sensitivity",
    "noise_multiplier_for",
    "require_sum_based_rule",
    "rule_sensitivity",
    "secure_sum",
]

STAGES = ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking")
"""The stages of secure aggregation, in order (keys of ``secure_sum(dropouts=...)``)."""

SUM_BASED_RULES = ("fedavg",)
"""The ``meshrl.fl`` rules that can run on a secure sum; every other one needs the individual
updates (Krum, median, trimmed mean, Bulyan, geometric median, centered clipping, NNM)."""


def _vector(x: Any, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _matrix(x: Any, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be 2-D (n clients, d parameters) and non-empty, got shape {arr.shape}")
    return arr


class RDPAccountant:
    """Privacy spent by repeated Poisson-subsampled Gaussian steps, in Rényi DP.

    ``step(noise_multiplier=σ, sample_rate=q)`` records a step; ``get_epsilon(delta)`` and
    ``get_privacy_spent(delta) -> (epsilon, best_alpha)`` convert to (ε, δ)-DP. The orders are
    ``dp-accounting``'s defaults (1.1 … 10.9, 11 … 63, 128, 256, 512, 1024) unless ``orders`` is
    given. σ = 1.1, q = 0.1, 100 steps, δ = 1e-5 gives ε = 6.6208 at order 3.6 (dp-accounting
    0.6: 6.6208; Opacus 1.6: 6.6137).
    """

    def __init__(self, orders: Optional[Sequence[float]] = None) -> None:
        self._inner = _core.RdpAccountant(None if orders is None else [float(a) for a in orders])

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Records ``steps`` steps with noise multiplier ``noise_multiplier`` (noise std over
        the L2 sensitivity, ≥ 0) and sample rate ``sample_rate`` in (0, 1]."""
        self._inner.step(float(noise_multiplier), float(sample_rate), steps)

    def get_epsilon(self, delta: float) -> float:
        """ε spent so far at ``delta`` in (0, 1)."""
        return self._inner.get_epsilon(float(delta))

    def get_privacy_spent(self, delta: float) -> tuple[float, float]:
        """``(epsilon, best_alpha)`` spent so far at ``delta`` in (0, 1)."""
        return self._inner.get_privacy_spent(float(delta))

    @property
    def history(self) -> list[tuple[float, float, int]]:
        """``(noise_multiplier, sample_rate, steps)`` per run of identical steps (Opacus's)."""
        return self._inner.history()

    @property
    def orders(self) -> list[float]:
        """The RDP orders α."""
        return self._inner.orders()

    @property
    def rdp(self) -> list[float]:
        """RDP spent at each order, in nats."""
        return self._inner.rdp()

    def __len__(self) -> int:
        return len(self.history)

    def __repr__(self) -> str:
        return f"RDPAccountant(history={self.history})"


def compute_rdp(noise_multiplier: float, sample_rate: float, steps: int, orders: Optional[Sequence[float]] = None) -> list[float]:
    """RDP (nats) at each order after ``steps`` steps (Opacus's ``compute_rdp``)."""
    return _core.compute_rdp(float(noise_multiplier), float(sample_rate), steps,
                             None if orders is None else [float(a) for a in orders])


def noise_multiplier_for(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier (to 1e-6 relative) whose ε after ``steps`` steps at
    ``sample_rate`` stays ≤ ``target_epsilon`` at ``delta`` (bisection, default orders)."""
    return _core.noise_multiplier_for(float(target_epsilon), float(delta), float(sample_rate), steps)


def clip_l2(update: Any, clip_norm: float) -> tuple[np.ndarray, float]:
    """``(clipped copy, norm before)``: ``update`` scaled to L2 norm ≤ ``clip_norm`` (> 0)."""
    return _core.clip_l2(_vector(update, "update"), float(clip_norm))


def add_gaussian_noise(x: Any, stddev: float, seed: int = 0) -> np.ndarray:
    """A float32 copy of 1-D ``x`` plus N(0, stddev²) per coordinate (ChaCha20, ``seed``)."""
    return _core.add_gaussian_noise(_vector(x, "x"), float(stddev), seed)


def l2_sensitivity(bound: str, clip_norm: float, *, num_clients: Optional[int] = None,
                   kept: Optional[int] = None, of: Optional[int] = None) -> float:
    """L2 sensitivity (add or remove one client) of an output bounded as ``bound`` says:
    ``"sum"`` (C), ``"mean"`` (C / num_clients), ``"convex_combination"`` (2C),
    ``"coordinate_wise"`` (2C·sqrt(of / kept))."""
    return _core.l2_sensitivity(bound, float(clip_norm), num_clients, kept, of)


def rule_sensitivity(rule: str, clip_norm: float, num_clients: int, *, num_byzantine: int = 0, beta: float = 0.1) -> float:
    """L2 sensitivity of a ``meshrl.fl`` rule's output over ``num_clients`` updates clipped to
    ``clip_norm``: add Gaussian noise of std ``z ×`` this after the rule and step the
    accountant with ``z``. See ``docs/privacy.md`` for each rule's bound."""
    return _core.rule_sensitivity(rule, float(clip_norm), num_clients, num_byzantine, float(beta))


def require_sum_based_rule(rule: str) -> None:
    """Raises ``ValueError`` naming ``rule`` unless it can run on a secure sum."""
    _core.require_sum_based_rule(rule)


class DPRound(NamedTuple):
    """One DP-FedAvg round."""

    sum: np.ndarray
    """Noisy sum of the clipped updates, float32 ``(d,)``."""
    mean: np.ndarray
    """``sum / num_clients``: the DP-FedAvg update."""
    clip_norm: float
    """The clip norm used this round."""
    next_clip_norm: float
    """The clip norm of the next round (changes under adaptive clipping)."""
    noise_stddev: float
    """Standard deviation of the noise on the sum, per coordinate."""
    noisy_unclipped_fraction: Optional[float]
    """Adaptive clipping's noisy fraction of unclipped updates (``None`` when fixed)."""
    num_clients: int
    """Clients in the round."""


class DPFedAvg:
    """DP-FedAvg's server (McMahan et al. 2018).

    Each update is clipped to L2 norm ``C`` (``clip_norm``; the initial ``C`` when
    ``adaptive``); the sum gets N(0, (z·C)²) per coordinate, ``z = noise_multiplier``, added by
    the server (``noise="server"``), split among the clients (``"distributed"``, for use with
    secure aggregation) or added by each client to its own update (``"local"``). With
    ``adaptive=True``, ``C ← C·exp(−η(b̃ − γ))`` after each round, ``b̃`` the noisy fraction of
    unclipped updates and ``γ = target_unclipped_quantile``: ``C`` grows while too many updates
    are clipped. Step the accountant with ``z`` once per round.
    """

    def __init__(self, noise_multiplier: float, clip_norm: float = 1.0, *, adaptive: bool = False,
                 target_unclipped_quantile: float = 0.5, clip_learning_rate: float = 0.2,
                 clipped_count_stddev: Optional[float] = None, noise: str = "server", seed: int = 0) -> None:
        self._inner = _core.DpFedAvg(
            float(noise_multiplier), float(clip_norm), bool(adaptive), float(target_unclipped_quantile),
            float(clip_learning_rate), None if clipped_count_stddev is None else float(clipped_count_stddev),
            noise, seed,
        )

    @property
    def clip_norm(self) -> float:
        """The clip norm the next round will use."""
        return self._inner.clip_norm

    def update_noise_multiplier(self, num_clients: int) -> float:
        """The noise multiplier applied to the updates (above ``z`` under adaptive clipping,
        which spends part of the budget on the count)."""
        return self._inner.update_noise_multiplier(num_clients)

    def aggregate(self, updates: Any) -> DPRound:
        """One round over ``updates``, a ``(num_clients, d)`` array."""
        return DPRound(**self._inner.aggregate(_matrix(updates, "updates")))

    def client_contribution(self, update: Any, num_clients: int, seed: int = 0) -> np.ndarray:
        """A client's clipped (and, by placement, noised) update, with the unclipped bit
        appended under adaptive clipping, ready to be summed (securely or not)."""
        return self._inner.client_contribution(_vector(update, "update"), num_clients, seed)

    def finish_round(self, summed: Any, num_clients: int) -> DPRound:
        """Finishes a round from the sum of ``num_clients`` contributions."""
        return DPRound(**self._inner.finish_round(_vector(summed, "summed"), num_clients))


class SecureSum(NamedTuple):
    """What a secure aggregation session produced."""

    sum: np.ndarray
    """Sum of the included clients' inputs (each clipped to ±clip_range), float32 ``(d,)``."""
    included: list[int]
    """Clients whose inputs are in the sum."""
    dropouts: list[tuple[int, str]]
    """``(client, stage)`` of every other client (and of those that left after sending)."""
    forged_shares: list[tuple[int, int, str]]
    """``(holder, owner, secret)`` of each forged share detected and left out."""
    max_error: float
    """Bound on the quantization error of ``sum``, per coordinate."""

    def mean(self) -> np.ndarray:
        """``sum / len(included)``."""
        return self.sum / np.float32(max(1, len(self.included)))


def secure_sum(inputs: Sequence[Any], threshold: int, *, clip_range: float = 1.0, modulus_bits: int = 32,
               degree: Optional[int] = None, graph_seed: int = 0,
               dropouts: Optional[Mapping[str, Sequence[int]]] = None, session: int = 0,
               sign_messages: bool = True, seed: int = 0) -> SecureSum:
    """Secure aggregation of ``inputs`` (one 1-D array per client, ``None`` for a client that
    does not take part; or a 2-D array, one row per client), every party run in process.

    ``threshold`` (t) shares rebuild a secret; at least t clients must remain at every stage.
    Values are clipped to ``[-clip_range, clip_range]`` and quantized into Z_2^modulus_bits.
    ``degree`` (even) switches to SecAgg+ over a Harary graph of that degree. ``dropouts`` maps
    a stage of :data:`STAGES` to the clients that stop before sending that stage's message.
    Everything random derives from ``seed``.
    """
    if isinstance(inputs, np.ndarray):
        if inputs.ndim != 2:
            raise ValueError(f"inputs must be 2-D (n clients, d) or a list of 1-D arrays, got shape {inputs.shape}")
        rows: list[Optional[np.ndarray]] = [np.ascontiguousarray(r, dtype=np.float32) for r in inputs]
    else:
        rows = [None if x is None else _vector(x, f"inputs[{i}]") for i, x in enumerate(inputs)]
    if not any(r is not None for r in rows):
        raise ValueError("inputs holds no client input")
    if dropouts is not None:
        unknown = [k for k in dropouts if k not in STAGES]
        if unknown:
            raise ValueError(f"dropouts keys must be stages {STAGES}, got {unknown}")
        dropouts = {k: list(v) for k, v in dropouts.items()}
    out = _core.secure_sum(rows, threshold, float(clip_range), modulus_bits, degree, graph_seed, dropouts,
                           session, bool(sign_messages), seed)
    return SecureSum(**out)
