"""Run an exported routing policy with NumPy only: the Python twin of the ``meshrl-runtime``
crate, for mesh nodes that run Python.

>>> from meshrl.runtime import Policy, NeighborMeasurement
>>> policy = Policy.load("policy.safetensors")        # from `meshrl export` or Trainer.export
>>> obs, mask = policy.obs_spec.build([NeighborMeasurement(-60, 4.0, 0.1, 2, 39.0, 0.9)]
...                                   + [None] * (policy.num_actions - 1), queue=0.2)
>>> policy.act(obs, mask)                            # index of the neighbour slot
0

This module imports nothing from meshrl's compiled core: copy this one file next to NumPy and
it works. The file format is described in ``rust/runtime/src/lib.rs`` (safetensors, actor
tensors ``actor.{i}.weight`` ``[d_out, d_in]`` and ``actor.{i}.bias``, string metadata). Every
defect of a file raises :class:`PolicyFileError` naming it; bad calls raise ``ValueError``.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["Policy", "ObsSpec", "NeighborMeasurement", "PolicyFileError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "meshrl-policy"
FORMAT_VERSION = 1
FEATURES_PER_NEIGHBOR = 6
MAX_WIDTH = 1 << 16
MAX_HIDDEN_LAYERS = 16
_MAX_HEADER = 100_000_000
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class PolicyFileError(ValueError):
    """The bytes are not a valid exported meshrl policy (the message says why)."""


def fnv1a64(data: bytes, h: int = 0xCBF29CE484222325) -> int:
    """FNV-1a, 64 bit (the export's checksum)."""
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass(frozen=True)
class NeighborMeasurement:
    """What a node knows about one neighbour, in raw units."""

    rssi_dbm: float
    latency_ms: float
    packet_loss: float
    hops_to_destination: Optional[int]  # 0: the neighbour is the destination; None: no route
    bandwidth_mbps: float
    trust: float


@dataclass(frozen=True)
class ObsSpec:
    """The observation layout and normalization constants the policy was trained with."""

    num_slots: int
    rssi_center_dbm: float
    rssi_scale_db: float
    latency_half_ms: float
    hops_scale: float
    bandwidth_scale_mbps: float

    @property
    def obs_dim(self) -> int:
        return self.num_slots * FEATURES_PER_NEIGHBOR + 1

    def features(self, m: NeighborMeasurement) -> np.ndarray:
        """The six normalized features of one neighbour (float32)."""
        hops = 1.0 if m.hops_to_destination is None else min(float(m.hops_to_destination), self.hops_scale) / self.hops_scale
        return np.array(
            [
                (m.rssi_dbm - self.rssi_center_dbm) / self.rssi_scale_db,
                m.latency_ms / (m.latency_ms + self.latency_half_ms),
                m.packet_loss,
                hops,
                m.bandwidth_mbps / self.bandwidth_scale_mbps,
                m.trust,
            ],
            dtype=np.float32,
        )

    def build(self, neighbors: Sequence[Optional[NeighborMeasurement]], queue: float) -> tuple[np.ndarray, np.ndarray]:
        """Observation ``(obs_dim,)`` float32 and mask ``(num_slots,)`` bool from the neighbour
        table (``None``: empty slot) and the local queue occupancy (0..1)."""
        if len(neighbors) != self.num_slots:
            raise ValueError(f"neighbors: {len(neighbors)} slots, the policy has {self.num_slots}")
        obs = np.zeros(self.obs_dim, dtype=np.float32)
        mask = np.zeros(self.num_slots, dtype=bool)
        for s, m in enumerate(neighbors):
            if m is not None:
                obs[s * FEATURES_PER_NEIGHBOR:(s + 1) * FEATURES_PER_NEIGHBOR] = self.features(m)
                mask[s] = True
        obs[-1] = queue
        return obs, mask


def _meta(metadata: dict[str, str], key: str) -> str:
    if key not in metadata:
        raise PolicyFileError(f"bad policy file: metadata `{key}`: missing")
    return metadata[key]


def _uint(metadata: dict[str, str], key: str, text: Optional[str] = None) -> int:
    s = _meta(metadata, key) if text is None else text
    if not s.strip().isdigit():
        raise PolicyFileError(f"bad policy file: metadata `{key}`: `{s}` is not a non-negative integer")
    return int(s)


def _float(metadata: dict[str, str], key: str, positive: bool = False) -> float:
    s = _meta(metadata, key)
    try:
        v = float(s)
    except ValueError:
        v = float("nan")
    if not np.isfinite(v):
        raise PolicyFileError(f"bad policy file: metadata `{key}`: `{s}` is not a finite number")
    if positive and v <= 0:
        raise PolicyFileError(f"bad policy file: metadata `{key}`: {v} must be positive")
    return v


def _parse_safetensors(data: bytes) -> tuple[dict[str, Any], dict[str, str], memoryview]:
    """Header entries, metadata and the tensor bytes; checks the container's consistency."""
    bad = "bad policy file: not a safetensors file: "
    if len(data) < 8:
        raise PolicyFileError(bad + f"{len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise PolicyFileError(bad + f"header of {n} bytes does not fit in {len(data)} bytes")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PolicyFileError(bad + f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise PolicyFileError(bad + "header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise PolicyFileError(bad + "__metadata__ must map strings to strings")
    body = memoryview(data)[8 + n:]
    for name, info in header.items():
        ok = (
            isinstance(info, dict)
            and info.get("dtype") in _DTYPE_SIZES
            and isinstance(info.get("shape"), list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in info["shape"])
            and isinstance(info.get("data_offsets"), list)
            and len(info["data_offsets"]) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in info["data_offsets"])
        )
        if not ok:
            raise PolicyFileError(bad + f"tensor `{name}` has a malformed entry")
        begin, end = info["data_offsets"]
        size = int(np.prod(info["shape"], dtype=np.int64)) * _DTYPE_SIZES[info["dtype"]]
        if not (0 <= begin <= end <= len(body)) or end - begin != size:
            raise PolicyFileError(bad + f"tensor `{name}`: offsets {info['data_offsets']} do not fit its "
                                  f"{info['dtype']}{info['shape']} in {len(body)} data bytes")
    return header, metadata, body


class Policy:
    """A loaded, validated policy: the actor network and its observation constants."""

    def __init__(self, data: bytes):
        header, meta, body = _parse_safetensors(data)
        if _meta(meta, "format") != FORMAT:
            raise PolicyFileError(f"bad policy file: metadata `format`: `{meta['format']}`, expected `{FORMAT}`")
        version = _uint(meta, "format_version")
        if version != FORMAT_VERSION:
            raise PolicyFileError(f"bad policy file: metadata `format_version`: {version}; this runtime reads version {FORMAT_VERSION}")
        obs_dim = _uint(meta, "obs_dim")
        k = _uint(meta, "num_actions")
        if not 1 <= k <= MAX_WIDTH:
            raise PolicyFileError(f"bad policy file: metadata `num_actions`: {k} is outside 1..={MAX_WIDTH}")
        if obs_dim != k * FEATURES_PER_NEIGHBOR + 1:
            raise PolicyFileError(f"bad policy file: metadata `obs_dim`: {obs_dim}, but {k} neighbour slots need {k * FEATURES_PER_NEIGHBOR + 1}")
        hidden = [_uint(meta, "hidden", p) for p in _meta(meta, "hidden").split(",") if p.strip()]
        if any(not 1 <= h <= MAX_WIDTH for h in hidden):
            raise PolicyFileError(f"bad policy file: metadata `hidden`: width {min(hidden)} is outside 1..={MAX_WIDTH}")
        if len(hidden) > MAX_HIDDEN_LAYERS:
            raise PolicyFileError(f"bad policy file: metadata `hidden`: {len(hidden)} layers, at most {MAX_HIDDEN_LAYERS}")
        activation = _meta(meta, "activation")
        if activation not in ("tanh", "relu"):
            raise PolicyFileError(f"bad policy file: metadata `activation`: `{activation}`, expected `tanh` or `relu`")
        spec = ObsSpec(
            num_slots=k,
            rssi_center_dbm=_float(meta, "obs.rssi_center_dbm"),
            rssi_scale_db=_float(meta, "obs.rssi_scale_db", positive=True),
            latency_half_ms=_float(meta, "obs.latency_half_ms", positive=True),
            hops_scale=_float(meta, "obs.hops_scale", positive=True),
            bandwidth_scale_mbps=_float(meta, "obs.bandwidth_scale_mbps", positive=True),
        )
        text = _meta(meta, "checksum")
        digits = text[len("fnv1a64:"):] if text.startswith("fnv1a64:") else ""
        if len(digits) != 16 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise PolicyFileError(f"bad policy file: metadata `checksum`: `{text}`, expected `fnv1a64:` and 16 hex digits")
        expected = int(digits, 16)

        widths = [obs_dim, *hidden, k]
        checksum = 0xCBF29CE484222325
        self._layers: list[tuple[np.ndarray, np.ndarray]] = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            tensors = []
            for part, shape in (("weight", [d_out, d_in]), ("bias", [d_out])):
                name = f"actor.{i}.{part}"
                info = header.get(name)
                if info is None:
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: missing")
                if info["dtype"] != "F32":
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: dtype is {info['dtype']}, expected F32")
                if info["shape"] != shape:
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: shape is {info['shape']}, the metadata implies {shape}")
                raw = bytes(body[info["data_offsets"][0]:info["data_offsets"][1]])
                checksum = fnv1a64(raw, checksum)
                values = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
                if not np.all(np.isfinite(values)):
                    j = int(np.flatnonzero(~np.isfinite(values.ravel()))[0])
                    raise PolicyFileError(f"bad policy file: tensor `{name}`: value {j} is {values.ravel()[j]} (weights must be finite)")
                tensors.append(values)
            # Stored transposed, [d_in, d_out], so a batch is one matmul.
            self._layers.append((np.ascontiguousarray(tensors[0].T), tensors[1]))
        if f"actor.{len(self._layers)}.weight" in header:
            raise PolicyFileError(f"bad policy file: metadata `hidden`: says {len(hidden)} hidden layers, the file holds more actor layers")
        if checksum != expected:
            raise PolicyFileError(f"bad policy file: checksum mismatch (metadata fnv1a64:{expected:016x}, weights fnv1a64:{checksum:016x}): the file is corrupt")
        self.obs_spec = spec
        self.hidden = hidden
        self.activation = activation
        self.checksum = checksum
        self.metadata = dict(meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Policy":
        """Reads and validates an exported policy file."""
        with open(path, "rb") as f:
            return cls(f.read())

    @classmethod
    def from_bytes(cls, data: bytes) -> "Policy":
        return cls(data)

    @property
    def obs_dim(self) -> int:
        return self.obs_spec.obs_dim

    @property
    def num_actions(self) -> int:
        return self.obs_spec.num_slots

    @property
    def model_card(self) -> dict[str, Any]:
        """The human-readable model card (architecture, observation layout, training config)."""
        return json.loads(self.metadata.get("model_card", "{}"))

    def _obs(self, obs: Any) -> tuple[np.ndarray, bool]:
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        x2 = x.reshape(1, -1) if single else x
        if x2.ndim != 2 or x2.shape[1] != self.obs_dim:
            raise ValueError(f"obs: shape {x.shape}, the policy expects ({self.obs_dim},) or (n, {self.obs_dim})")
        if not np.all(np.isfinite(x2)):
            raise ValueError("obs: contains NaN or infinite entries")
        return x2, single

    def _mask(self, mask: Any, n: int) -> np.ndarray:
        m = np.asarray(mask)
        m2 = m.reshape(1, -1) if m.ndim == 1 else m
        if m2.shape != (n, self.num_actions):
            raise ValueError(f"mask: shape {m.shape}, expected ({self.num_actions},) or ({n}, {self.num_actions})")
        m2 = m2.astype(bool)
        if not np.all(m2.any(axis=1)):
            raise ValueError("mask: no valid neighbour (every slot is masked) in some row")
        return m2

    def logits(self, obs: Any) -> np.ndarray:
        """Unmasked logits, ``(K,)`` for one observation or ``(n, K)`` for a batch."""
        x, single = self._obs(obs)
        h = x
        last = len(self._layers) - 1
        for i, (w, b) in enumerate(self._layers):
            h = h @ w + b
            if i < last:
                h = np.tanh(h) if self.activation == "tanh" else np.maximum(h, 0.0)
        return h[0] if single else h

    def act(self, obs: Any, mask: Any) -> Any:
        """The next hop: the valid slot with the largest logit (lowest index on ties); an int
        for one observation, an array for a batch."""
        x, single = self._obs(obs)
        m = self._mask(mask, x.shape[0])
        logits = np.where(m, self.logits(x), -np.inf)
        a = np.argmax(logits, axis=1)
        return int(a[0]) if single else a

    def probs(self, obs: Any, mask: Any) -> np.ndarray:
        """Probabilities over slots (0 for masked ones)."""
        x, single = self._obs(obs)
        m = self._mask(mask, x.shape[0])
        logits = np.where(m, self.logits(x), -np.inf)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return p[0] if single else p
