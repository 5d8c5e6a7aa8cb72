"""Byzantine attacks that make ``num_byzantine`` malicious updates from honest ones.

Each returns a float32 array ``(num_byzantine, d)``; stack it under the honest updates to test
a rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meshrl import _core

__all__ = ["a_little_is_enough", "gaussian", "inner_product_manipulation", "sign_flip"]


def _honest(honest: Any) -> np.ndarray:
    arr = np.ascontiguousarray(honest, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"honest updates must be 2-D (h >= 1, d), got shape {arr.shape}")
    return arr


def sign_flip(honest: Any, num_byzantine: int, scale: float = 1.0) -> np.ndarray:
    """Every Byzantine client sends ``-scale * mean(honest)``."""
    return _core.attack("sign_flip", _honest(honest), num_byzantine, float(scale))


def gaussian(honest: Any, num_byzantine: int, sigma: float = 1.0, seed: int = 0) -> np.ndarray:
    """Each Byzantine client sends ``mean(honest) + N(0, sigma² I)`` (seeded)."""
    return _core.attack("gaussian", _honest(honest), num_byzantine, float(sigma), seed)


def inner_product_manipulation(honest: Any, num_byzantine: int, tau: float = 0.5) -> np.ndarray:
    """Inner-Product Manipulation (Xie et al. 2020): every Byzantine client sends
    ``-tau * mean(honest)``."""
    return _core.attack("inner_product_manipulation", _honest(honest), num_byzantine, float(tau))


def a_little_is_enough(honest: Any, num_byzantine: int, tau: float = 1.0) -> np.ndarray:
    """A Little Is Enough (Baruch et al. 2019): every Byzantine client sends
    ``mean(honest) + tau * std(honest)`` per coordinate (population std, ``ddof=0``)."""
    return _core.attack("a_little_is_enough", _honest(honest), num_byzantine, float(tau))
