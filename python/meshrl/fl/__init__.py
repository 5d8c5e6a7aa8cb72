"""Byzantine-robust aggregation of flat float32 model updates.

Every rule takes ``updates``: a C-contiguous float32 array of shape ``(n, d)`` (read without
copying), any other 2-D array (converted to float32 once), or a list of 1-D arrays (which may
differ in length: the most common length is the model's). The GIL is released while Rust
aggregates, in parallel across coordinates and clients.

Clients whose update has the wrong length, NaN/Inf values or a bad weight are rejected:
``on_invalid="error"`` (default) raises ``ValueError`` naming each of them; ``"drop"``
aggregates the rest and warns. ``return_report=True`` returns an :class:`Aggregation` with the
aggregate and who was accepted or rejected, and why.

Counts (``num_byzantine``, ``num_selected``, ``max_iter``, ``iterations``) must be ints (Python
or NumPy, not bools or floats): a wrong type raises ``TypeError`` and a value out of range
(``num_byzantine`` and ``num_selected`` at most the number of clients) ``ValueError``, each
naming the parameter and its valid range.

Where Flower has the rule the semantics match ``flwr/server/strategy/aggregate.py``.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Sequence, Union

import numpy as np

from meshrl import _core
from meshrl.fl import attacks

__all__ = [
    "Aggregation",
    "attacks",
    "bulyan",
    "centered_clipping",
    "fedavg",
    "geometric_median",
    "krum",
    "median",
    "nnm",
    "trimmed_mean",
]

Updates = Union[np.ndarray, Sequence[np.ndarray]]


class Aggregation(NamedTuple):
    """An aggregate with the screening report."""

    aggregate: np.ndarray
    """The aggregated update, float32 ``(d,)``."""
    accepted: list[int]
    """Indices of the clients that were aggregated."""
    rejected: list[tuple[int, str]]
    """``(client index, reason)`` of each rejected client."""


def _as_updates(updates: Any) -> Any:
    if isinstance(updates, (list, tuple)):
        return [np.ascontiguousarray(u, dtype=np.float32).reshape(-1) for u in updates]
    arr = np.asarray(updates)
    if arr.ndim != 2:
        raise ValueError(f"updates must be 2-D (n clients, d parameters), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("no client updates to aggregate")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_vector(x: Any, name: str) -> np.ndarray | None:
    if x is None:
        return None
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _run(rule: str, updates: Updates, weights: Any, on_invalid: str, return_report: bool, **params: Any):
    out, accepted, rejected = _core.aggregate(
        rule, _as_updates(updates), weights=_as_vector(weights, "weights"), on_invalid=on_invalid, **params
    )
    if rejected and not return_report:
        detail = "; ".join(f"client {i}: {why}" for i, why in rejected)
        warnings.warn(f"{rule}: dropped {len(rejected)} invalid client update(s): {detail}", stacklevel=3)
    return Aggregation(out, accepted, rejected) if return_report else out


def fedavg(updates: Updates, weights: Any = None, *, on_invalid: str = "error", return_report: bool = False):
    """FedAvg: ``Σ_i w_i x_i / Σ_i w_i``, ``w_i`` the example counts (equal if ``None``)."""
    return _run("fedavg", updates, weights, on_invalid, return_report)


def krum(
    updates: Updates,
    num_byzantine: int,
    num_selected: int = 1,
    weights: Any = None,
    *,
    on_invalid: str = "error",
    return_report: bool = False,
):
    """Krum / Multi-Krum (Blanchard et al. 2017).

    Each client's score is the sum of squared Euclidean distances to its ``max(1, n - f - 2)``
    nearest other clients (distances computed exactly, not by the Gram identity). Krum
    (``num_selected=1``) returns the update with the lowest score; Multi-Krum returns the
    ``weights``-weighted mean of the ``num_selected`` lowest. Requires ``n > 2f + 2``. Exact ties
    are broken by comparing the vectors, so the result does not depend on client order.
    """
    return _run("krum", updates, weights, on_invalid, return_report,
                num_byzantine=num_byzantine, num_selected=num_selected)


def median(updates: Updates, *, on_invalid: str = "error", return_report: bool = False):
    """Coordinate-wise median (for even ``n`` the mean of the two middle values, as NumPy)."""
    return _run("median", updates, None, on_invalid, return_report)


def trimmed_mean(updates: Updates, beta: float, *, on_invalid: str = "error", return_report: bool = False):
    """Coordinate-wise trimmed mean: drop the ``int(beta * n)`` smallest and largest values per
    coordinate and average the rest. ``0 <= beta < 0.5``; an error if nothing remains."""
    return _run("trimmed_mean", updates, None, on_invalid, return_report, beta=float(beta))


def bulyan(updates: Updates, num_byzantine: int, *, on_invalid: str = "error", return_report: bool = False):
    """Bulyan (El Mhamdi et al. 2018): pick ``theta = n - 2f`` updates by repeated Krum (each
    pick removed), then per coordinate average the ``beta = theta - 2f`` picked values closest to
    their median. Requires ``n >= 4f + 3``."""
    return _run("bulyan", updates, None, on_invalid, return_report, num_byzantine=num_byzantine)


def geometric_median(
    updates: Updates,
    weights: Any = None,
    *,
    nu: float = 1e-6,
    max_iter: int = 100,
    eps: float = 1e-6,
    on_invalid: str = "error",
    return_report: bool = False,
):
    """Geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022).

    From the weighted mean ``z``, repeat ``z ← Σ β_i x_i / Σ β_i`` with
    ``β_i = α_i / max(nu, ‖z − x_i‖)`` until the objective ``Σ α_i ‖z − x_i‖`` changes by less
    than ``eps`` times itself, at most ``max_iter`` times; ``α_i`` are ``weights``.
    """
    return _run("geometric_median", updates, weights, on_invalid, return_report,
                nu=float(nu), max_iter=max_iter, eps=float(eps))


def centered_clipping(
    updates: Updates,
    center: Any = None,
    tau: float = 1.0,
    iterations: int = 1,
    weights: Any = None,
    *,
    on_invalid: str = "error",
    return_report: bool = False,
):
    """Centered clipping (Karimireddy et al. 2021).

    From ``center`` (the previous aggregate; the coordinate-wise median if ``None``), repeat
    ``iterations`` times ``v ← v + Σ w_i (x_i − v) · min(1, tau / ‖x_i − v‖)`` with ``w_i`` the
    normalized ``weights`` (equal if ``None``).
    """
    return _run("centered_clipping", updates, weights, on_invalid, return_report,
                center=_as_vector(center, "center"), tau=float(tau), iterations=iterations)


def nnm(updates: Updates, num_byzantine: int) -> np.ndarray:
    """Nearest-neighbour mixing (Allouah et al. 2023), a pre-aggregation step: each update is
    replaced by the mean of its ``n - f`` nearest updates (itself included). Returns the mixed
    ``(n, d)`` matrix; pass it to any rule, e.g. ``krum(nnm(x, f), f)``."""
    return _core.nnm(_as_updates(updates), num_byzantine)
